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
    ///
    /// Postings are placed with a counting sort on the top 16 bits of the hash (which is also
    /// the directory), then each bucket (a handful of postings) is sorted by (low bits, id):
    /// linear time, where a general sort of 600 000 postings was the hot spot of bulk loads.
    convenience init(changes: [UInt32: [UInt32]?], version: UInt64) {
        let docs = changes.keys.sorted()
        var deleted: [UInt32] = []
        var directory = [UInt32](repeating: 0, count: Self.bucketCount + 1)
        var total = 0
        for id in docs {
            guard let hashes = changes[id]! else {
                deleted.append(id)
                continue
            }
            for hash in hashes { directory[Int(hash >> 16) + 1] += 1 }
            total += hashes.count
        }
        for b in 0..<Self.bucketCount { directory[b + 1] += directory[b] }
        var lows = [UInt16](repeating: 0, count: total)
        var ids = [UInt32](repeating: 0, count: total)
        var next = directory  // the next free slot of each bucket
        lows.withUnsafeMutableBufferPointer { lows in
            ids.withUnsafeMutableBufferPointer { ids in
                next.withUnsafeMutableBufferPointer { next in
                    // Ids ascend in `docs`, so each bucket fills in id order already.
                    for id in docs {
                        guard let hashes = changes[id]! else { continue }
                        hashes.withUnsafeBufferPointer { hashes in
                            for hash in hashes {
                                let bucket = Int(hash >> 16)
                                let slot = Int(next[bucket])
                                next[bucket] += 1
                                lows[slot] = UInt16(truncatingIfNeeded: hash)
                                ids[slot] = id
                            }
                        }
                    }
                }
                // Insertion sort by low bits within each bucket (stable: ids stay ascending for equal lows).
                for bucket in 0..<Self.bucketCount {
                    let start = Int(directory[bucket])
                    let end = Int(directory[bucket + 1])
                    guard end - start > 1 else { continue }
                    if end - start > 64 {
                        // A crowded bucket (skewed hashes): a general sort, not a quadratic one.
                        var keys = (start..<end).map { UInt64(lows[$0]) << 32 | UInt64(ids[$0]) }
                        keys.sort()
                        for (offset, key) in keys.enumerated() {
                            lows[start + offset] = UInt16(truncatingIfNeeded: key >> 32)
                            ids[start + offset] = UInt32(truncatingIfNeeded: key)
                        }
                        continue
                    }
                    for i in (start + 1)..<end {
                        let low = lows[i]
                        let id = ids[i]
                        var j = i - 1
                        while j >= start && lows[j] > low {
                            lows[j + 1] = lows[j]
                            ids[j + 1] = ids[j]
                            j -= 1
                        }
                        lows[j + 1] = low
                        ids[j + 1] = id
                    }
                }
            }
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

    /// Merges segments (oldest first) into one: for each id, what the newest of them decides wins.
    /// - Parameter dropDeletions: true when nothing older remains, so deletions need not be kept.
    static func merge(_ segments: [Segment], dropDeletions: Bool) -> Segment {
        precondition(!segments.isEmpty)
        // Which segment decides each id: the newest one that has it.
        var winner: [UInt32: Int] = [:]
        winner.reserveCapacity(segments.reduce(0) { $0 + $1.docs.count })
        for (position, segment) in segments.enumerated() {
            for id in segment.docs { winner[id] = position }
        }
        // Ids each segment lost to a newer one; usually none (new ids), so postings skip the test.
        var shadowed = [Set<UInt32>](repeating: [], count: segments.count)
        for (position, segment) in segments.enumerated().dropLast() {
            for id in segment.docs where winner[id] != position { shadowed[position].insert(id) }
        }

        var docs: [UInt32] = []
        var docVersions: [UInt64] = []
        var deleted: [UInt32] = []
        docs.reserveCapacity(winner.count)
        docVersions.reserveCapacity(winner.count)
        for id in winner.keys.sorted() {
            let segment = segments[winner[id]!]
            let isDeletion = segment.isDeletion(id)
            if isDeletion && dropDeletions { continue }
            if isDeletion { deleted.append(id) }
            docs.append(id)
            docVersions.append(segment.docVersions[segment.docIndex(id)!])
        }

        // Each segment's bucket is a run sorted by (low, id): the runs' keys are gathered into a
        // scratch buffer and k-way merged (k is small, about four), so nothing is sorted again.
        // Re-sorting every bucket was the hot spot of bulk loads (a third of fpindex-dev's time).
        let total = segments.reduce(0) { $0 + $1.postingCount }
        var directory = [UInt32](repeating: 0, count: bucketCount + 1)
        var lows = [UInt16](repeating: 0, count: total)
        var ids = [UInt32](repeating: 0, count: total)
        let runCount = segments.count
        let heads = UnsafeMutablePointer<Int>.allocate(capacity: runCount)
        let ends = UnsafeMutablePointer<Int>.allocate(capacity: runCount)
        defer {
            heads.deallocate()
            ends.deallocate()
        }
        var scratch = [UInt64](repeating: 0, count: 1024)
        var written = 0
        lows.withUnsafeMutableBufferPointer { outLows in
            ids.withUnsafeMutableBufferPointer { outIds in
                for bucket in 0..<bucketCount {
                    var needed = 0
                    for segment in segments {
                        needed += Int(segment.directory[bucket + 1]) - Int(segment.directory[bucket])
                    }
                    if needed == 0 {
                        directory[bucket + 1] = UInt32(written)
                        continue
                    }
                    if scratch.count < needed { scratch = [UInt64](repeating: 0, count: needed * 2) }
                    scratch.withUnsafeMutableBufferPointer { keys in
                        // Gather each run's surviving keys.
                        var filled = 0
                        for position in 0..<runCount {
                            let segment = segments[position]
                            let from = Int(segment.directory[bucket])
                            let to = Int(segment.directory[bucket + 1])
                            heads[position] = filled
                            let lost = shadowed[position]
                            segment.lows.withUnsafeBufferPointer { runLows in
                                segment.ids.withUnsafeBufferPointer { runIds in
                                    for i in from..<to {
                                        let id = runIds[i]
                                        if !lost.isEmpty && lost.contains(id) { continue }
                                        keys[filled] = UInt64(runLows[i]) << 32 | UInt64(id)
                                        filled += 1
                                    }
                                }
                            }
                            ends[position] = filled
                        }
                        // Merge the runs into the output.
                        while true {
                            var best = -1
                            var bestKey = UInt64.max
                            for position in 0..<runCount where heads[position] < ends[position] {
                                let key = keys[heads[position]]
                                if key < bestKey {
                                    bestKey = key
                                    best = position
                                }
                            }
                            guard best >= 0 else { break }
                            heads[best] += 1
                            outLows[written] = UInt16(truncatingIfNeeded: bestKey >> 32)
                            outIds[written] = UInt32(truncatingIfNeeded: bestKey)
                            written += 1
                        }
                    }
                    directory[bucket + 1] = UInt32(written)
                }
            }
        }
        if written < total {
            lows.removeLast(total - written)
            ids.removeLast(total - written)
        }
        return Segment(docs: docs, docVersions: docVersions, deleted: deleted, directory: directory, lows: lows, ids: ids)
    }
}
