/// An immutable slice of one index: the fingerprints one write (or a merge of writes) touched.
///
/// Postings are `(hash, id)` pairs sorted by hash, then id. To keep 100+ M postings in memory
/// they are split by the top 16 bits of the hash: `directory[b]..<directory[b + 1]` is the
/// range of bucket `b`, `lows` holds the low 16 bits and `ids` the fingerprint id: 6 bytes
/// a posting. A hash repeated in a fingerprint is stored repeatedly, so it scores repeatedly.
final class Segment: Sendable {
    static let bucketCount = 1 << 16

    /// Sorted ids this segment decides: inserted or deleted here. Newer segments shadow older ones.
    let docs: [UInt32]
    /// Index version that last wrote each of `docs`.
    let docVersions: [UInt64]
    /// Sorted ids of `docs` that are deletions.
    let deleted: [UInt32]
    let directory: [UInt32]
    let lows: [UInt16]
    let ids: [UInt32]

    var postingCount: Int { ids.count }
    /// A measure of the segment's size for the merge policy.
    var weight: Int { ids.count + docs.count }

    init(docs: [UInt32], docVersions: [UInt64], deleted: [UInt32], directory: [UInt32], lows: [UInt16], ids: [UInt32]) {
        self.docs = docs
        self.docVersions = docVersions
        self.deleted = deleted
        self.directory = directory
        self.lows = lows
        self.ids = ids
    }

    /// Builds a segment from the final state of each touched id (nil hashes: deleted).
    convenience init(changes: [UInt32: [UInt32]?], version: UInt64) {
        let docs = changes.keys.sorted()
        var deleted: [UInt32] = []
        var keys: [UInt64] = []
        keys.reserveCapacity(changes.values.reduce(0) { $0 + ($1?.count ?? 0) })
        for id in docs {
            guard let hashes = changes[id]! else {
                deleted.append(id)
                continue
            }
            for hash in hashes {
                keys.append(UInt64(hash) << 32 | UInt64(id))
            }
        }
        keys.sort()
        var directory = [UInt32](repeating: 0, count: Self.bucketCount + 1)
        var lows = [UInt16]()
        var ids = [UInt32]()
        lows.reserveCapacity(keys.count)
        ids.reserveCapacity(keys.count)
        for key in keys {
            directory[Int(key >> 48) + 1] += 1
            lows.append(UInt16(truncatingIfNeeded: key >> 32))
            ids.append(UInt32(truncatingIfNeeded: key))
        }
        for b in 0..<Self.bucketCount {
            directory[b + 1] += directory[b]
        }
        self.init(
            docs: docs, docVersions: [UInt64](repeating: version, count: docs.count), deleted: deleted,
            directory: directory, lows: lows, ids: ids)
    }

    /// The position of `id` in `docs`, if this segment decides it.
    func docIndex(_ id: UInt32) -> Int? {
        var low = 0
        var high = docs.count
        while low < high {
            let mid = (low + high) / 2
            if docs[mid] < id { low = mid + 1 } else { high = mid }
        }
        return low < docs.count && docs[low] == id ? low : nil
    }

    func contains(_ id: UInt32) -> Bool { docIndex(id) != nil }

    func isDeletion(_ id: UInt32) -> Bool { Self.sortedContains(deleted, id) }

    static func sortedContains(_ array: [UInt32], _ value: UInt32) -> Bool {
        var low = 0
        var high = array.count
        while low < high {
            let mid = (low + high) / 2
            if array[mid] < value { low = mid + 1 } else { high = mid }
        }
        return low < array.count && array[low] == value
    }

    /// Appends the id of every posting of `hash` to `hits` (once per stored occurrence).
    func collect(hash: UInt32, into hits: inout [UInt32]) {
        let bucket = Int(hash >> 16)
        let low16 = UInt16(truncatingIfNeeded: hash)
        var lower = Int(directory[bucket])
        var upper = Int(directory[bucket + 1])
        guard lower < upper else { return }
        lows.withUnsafeBufferPointer { lows in
            // lower bound of low16 in lows[lower..<upper]
            while lower < upper {
                let mid = (lower + upper) / 2
                if lows[mid] < low16 { lower = mid + 1 } else { upper = mid }
            }
        }
        var i = lower
        let end = Int(directory[bucket + 1])
        while i < end && lows[i] == low16 {
            hits.append(ids[i])
            i += 1
        }
    }

    /// Merges an older and a newer segment: what `newer` decides replaces what `older` had.
    /// - Parameter dropDeletions: true when nothing older remains, so deletions need not be kept.
    static func merge(older: Segment, newer: Segment, dropDeletions: Bool) -> Segment {
        // Ids of `older` that `newer` shadows; usually none (new ids), so the posting walk
        // below skips the membership test entirely.
        var shadowed = Set<UInt32>()
        var i = 0
        var j = 0
        while i < older.docs.count && j < newer.docs.count {
            if older.docs[i] < newer.docs[j] {
                i += 1
            } else if older.docs[i] > newer.docs[j] {
                j += 1
            } else {
                shadowed.insert(older.docs[i])
                i += 1
                j += 1
            }
        }

        var docs: [UInt32] = []
        var docVersions: [UInt64] = []
        var deleted: [UInt32] = []
        docs.reserveCapacity(older.docs.count + newer.docs.count - shadowed.count)
        docVersions.reserveCapacity(docs.capacity)
        let newerDeleted = Set(newer.deleted)
        let olderDeleted = Set(older.deleted)
        i = 0
        j = 0
        while i < older.docs.count || j < newer.docs.count {
            let takeNewer: Bool
            if i == older.docs.count {
                takeNewer = true
            } else if j == newer.docs.count {
                takeNewer = false
            } else if older.docs[i] == newer.docs[j] {
                i += 1  // shadowed: the newer one follows
                continue
            } else {
                takeNewer = newer.docs[j] < older.docs[i]
            }
            let (id, version, isDeleted): (UInt32, UInt64, Bool)
            if takeNewer {
                (id, version) = (newer.docs[j], newer.docVersions[j])
                isDeleted = newerDeleted.contains(id)
                j += 1
            } else {
                (id, version) = (older.docs[i], older.docVersions[i])
                isDeleted = olderDeleted.contains(id)
                i += 1
            }
            if isDeleted {
                if dropDeletions { continue }
                deleted.append(id)
            }
            docs.append(id)
            docVersions.append(version)
        }

        let total = older.postingCount + newer.postingCount
        var directory = [UInt32](repeating: 0, count: bucketCount + 1)
        var lows = [UInt16]()
        var ids = [UInt32]()
        lows.reserveCapacity(total)
        ids.reserveCapacity(total)
        for bucket in 0..<bucketCount {
            var a = Int(older.directory[bucket])
            let aEnd = Int(older.directory[bucket + 1])
            var b = Int(newer.directory[bucket])
            let bEnd = Int(newer.directory[bucket + 1])
            while a < aEnd || b < bEnd {
                let takeNewer: Bool
                if a == aEnd {
                    takeNewer = true
                } else if b == bEnd {
                    takeNewer = false
                } else {
                    let keyA = UInt64(older.lows[a]) << 32 | UInt64(older.ids[a])
                    let keyB = UInt64(newer.lows[b]) << 32 | UInt64(newer.ids[b])
                    takeNewer = keyB < keyA
                }
                if takeNewer {
                    lows.append(newer.lows[b])
                    ids.append(newer.ids[b])
                    b += 1
                } else {
                    if shadowed.isEmpty || !shadowed.contains(older.ids[a]) {
                        lows.append(older.lows[a])
                        ids.append(older.ids[a])
                    }
                    a += 1
                }
            }
            directory[bucket + 1] = UInt32(ids.count)
        }
        return Segment(docs: docs, docVersions: docVersions, deleted: deleted, directory: directory, lows: lows, ids: ids)
    }
}
