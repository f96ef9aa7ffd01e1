/// An immutable slice of one index: the fingerprints one write (or a merge of writes) touched.
///
/// Postings are `(hash, id)` pairs grouped by the top 16 bits of the hash: bucket `b` holds
/// `directory[b]..<directory[b + 1]`, `lows` the low 16 bits of each posting's hash and `ids`
/// the fingerprint id: 6 bytes a posting. Within a bucket postings are in no particular order
/// (a search scans the bucket), which makes building and merging segments counting and copying
/// rather than sorting: a merge concatenates the inputs' buckets. A hash repeated in a
/// fingerprint is stored repeatedly, so it scores repeatedly.
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

    /// Builds a segment from the final state of each touched id.
    ///
    /// Two counting passes of 8 bits instead of one of 16: the first spreads the postings over
    /// 256 ranges by the hash's top byte, the second places each range (a few thousand
    /// postings, in cache) by the next byte, which is where the bucket directory comes from. A
    /// single pass over 65 536 write positions misses the cache on nearly every posting.
    ///
    /// Between the passes a posting is 4 bytes: the hash's low 24 bits and the position of its
    /// id within a group of 256 ids. The first pass goes group by group and notes where each
    /// group's postings start in each range, so the second knows the group of every posting.
    /// (8-byte keys with the whole id cost a third more: the first pass writes all over memory.)
    convenience init(changes: ChangeBatch, version: UInt64) {
        let docs = changes.ids
        var deleted: [UInt32] = []
        for position in docs.indices where changes.isDeletion(position) { deleted.append(docs[position]) }
        let total = changes.withHashes { _, _, counts in counts.reduce(0) { $0 + max($1, 0) } }
        var directory = [UInt32](repeating: 0, count: Self.bucketCount + 1)
        var lows = [UInt16](unsafeUninitializedCapacity: total) { _, count in count = total }
        var ids = [UInt32](unsafeUninitializedCapacity: total) { _, count in count = total }
        let groupSize = 256
        let groups = (docs.count + groupSize - 1) / groupSize
        // entries: (hash << 8 | position in group), by top byte, group after group.
        let entries = UnsafeMutableBufferPointer<UInt32>.allocate(capacity: total)
        defer { entries.deallocate() }
        // groupStarts[g * 256 + d]: where group g's postings start in range d (g == groups: the ends).
        let groupStarts = UnsafeMutableBufferPointer<Int>.allocate(capacity: (groups + 1) * 256)
        defer { groupStarts.deallocate() }
        let cursors = UnsafeMutableBufferPointer<Int>.allocate(capacity: 256)
        defer { cursors.deallocate() }
        cursors.initialize(repeating: 0)
        changes.withHashes { hashes, starts, counts in
            // Only live ids have postings; a deletion's count is negative.
            var sizes = [Int](repeating: 0, count: 257)
            for position in docs.indices where counts[position] > 0 {
                let start = starts[position]
                for i in start..<(start &+ counts[position]) { sizes[Int(hashes[i] &>> 24) &+ 1] &+= 1 }
            }
            for digit in 0..<256 { cursors[digit] = sizes[digit] &+ (digit > 0 ? cursors[digit &- 1] : 0) }
            for group in 0..<groups {
                for digit in 0..<256 { groupStarts[group &* 256 &+ digit] = cursors[digit] }
                let first = group &* groupSize
                for position in first..<min(first &+ groupSize, docs.count) where counts[position] > 0 {
                    let offset = UInt32(truncatingIfNeeded: position &- first)
                    let start = starts[position]
                    for i in start..<(start &+ counts[position]) {
                        let hash = hashes[i]
                        let digit = Int(hash &>> 24)
                        entries[cursors[digit]] = hash &<< 8 | offset
                        cursors[digit] &+= 1
                    }
                }
            }
            for digit in 0..<256 { groupStarts[groups &* 256 &+ digit] = cursors[digit] }
        }
        directory.withUnsafeMutableBufferPointer { directory in
            lows.withUnsafeMutableBufferPointer { lows in
                ids.withUnsafeMutableBufferPointer { ids in
                    docs.withUnsafeBufferPointer { docs in
                        for top in 0..<256 {
                            let rangeStart = groups > 0 ? groupStarts[top] : 0
                            let rangeEnd = groups > 0 ? groupStarts[groups &* 256 &+ top] : 0
                            // cursors[d]: where the next posting of bucket (top << 8 | d) goes.
                            for digit in 0..<256 { cursors[digit] = 0 }
                            for i in rangeStart..<rangeEnd { cursors[Int(truncatingIfNeeded: entries[i] &>> 24)] &+= 1 }
                            var next = rangeStart
                            for digit in 0..<256 {
                                let count = cursors[digit]
                                cursors[digit] = next
                                next &+= count
                                directory[top &<< 8 | digit &+ 1] = UInt32(truncatingIfNeeded: next)
                            }
                            for group in 0..<groups {
                                let first = group &* groupSize
                                for i in groupStarts[group &* 256 &+ top]..<groupStarts[(group &+ 1) &* 256 &+ top] {
                                    let entry = entries[i]
                                    let digit = Int(truncatingIfNeeded: entry &>> 24)
                                    let at = cursors[digit]
                                    cursors[digit] = at &+ 1
                                    lows[at] = UInt16(truncatingIfNeeded: entry &>> 8)
                                    ids[at] = docs[first &+ Int(truncatingIfNeeded: entry & 0xff)]
                                }
                            }
                        }
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
        // Most lookups are for ids outside the segment's range (new ids during a bulk load).
        guard let first = docs.first, let last = docs.last, id >= first, id <= last else { return nil }
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
        let bucket = Int(hash &>> 16)
        let low = UInt16(truncatingIfNeeded: hash)
        let range = Int(directory[bucket])..<Int(directory[bucket &+ 1])
        guard !range.isEmpty else { return }
        lows.withUnsafeBufferPointer { lows in
            ids.withUnsafeBufferPointer { ids in
                // Sixteen lows at a time: in a large bucket nearly every block has no match.
                var i = range.lowerBound
                let wanted = SIMD16<UInt16>(repeating: low)
                let raw = UnsafeRawPointer(lows.baseAddress!)
                while i &+ 16 <= range.upperBound {
                    let block = raw.loadUnaligned(fromByteOffset: i &* 2, as: SIMD16<UInt16>.self)
                    if any(block .== wanted) {
                        for j in i..<(i &+ 16) where lows[j] == low { hits.append(ids[j]) }
                    }
                    i &+= 16
                }
                while i < range.upperBound {
                    if lows[i] == low { hits.append(ids[i]) }
                    i &+= 1
                }
            }
        }
    }

    /// Merges segments (oldest first) into one: for each id, what the newest of them decides wins.
    /// - Parameter dropDeletions: true when nothing older remains, so deletions need not be kept.
    ///
    /// Each bucket of the result is the same bucket of every input, one after the other,
    /// without the postings of ids a newer input decides: copies, no comparisons.
    static func merge(_ segments: [Segment], dropDeletions: Bool) -> Segment {
        precondition(!segments.isEmpty)
        let (docs, docVersions, deleted, lost) = mergeDocs(segments, dropDeletions: dropDeletions)
        let total = segments.reduce(0) { $0 + $1.postingCount }
        var directory = [UInt32](repeating: 0, count: bucketCount + 1)
        // Not zeroed first: everything below `written` is written, the rest is cut off.
        var lows = [UInt16](unsafeUninitializedCapacity: total) { _, count in count = total }
        var ids = [UInt32](unsafeUninitializedCapacity: total) { _, count in count = total }
        var written = 0
        withRuns(of: segments[...]) { runs in
            directory.withUnsafeMutableBufferPointer { directory in
                lows.withUnsafeMutableBufferPointer { lows in
                    ids.withUnsafeMutableBufferPointer { ids in
                        written = concatenate(runs, lost: lost, into: Postings(directory: directory, lows: lows, ids: ids))
                    }
                }
            }
        }
        if written < total {
            lows.removeLast(total - written)
            ids.removeLast(total - written)
        }
        return Segment(docs: docs, docVersions: docVersions, deleted: deleted, directory: directory, lows: lows, ids: ids)
    }

    /// Writes each bucket of every run, oldest run first, skipping the ids in the run's `lost`
    /// set, and the directory; returns the number of postings written.
    private static func concatenate(_ runs: [Run], lost: [Set<UInt32>], into output: Postings) -> Int {
        let runCount = runs.count
        var written = 0
        for bucket in 0..<bucketCount {
            for r in 0..<runCount {
                let run = runs[r]
                let start = Int(run.directory[bucket])
                let count = Int(run.directory[bucket &+ 1]) &- start
                guard count > 0 else { continue }
                let shadowed = lost[r]
                if shadowed.isEmpty {
                    (output.lows.baseAddress! + written).update(from: run.lows.baseAddress! + start, count: count)
                    (output.ids.baseAddress! + written).update(from: run.ids.baseAddress! + start, count: count)
                    written &+= count
                } else {
                    for i in start..<(start &+ count) where !shadowed.contains(run.ids[i]) {
                        output.lows[written] = run.lows[i]
                        output.ids[written] = run.ids[i]
                        written &+= 1
                    }
                }
            }
            output.directory[bucket &+ 1] = UInt32(truncatingIfNeeded: written)
        }
        return written
    }

    /// The merged doc lists: a k-way merge of the segments' sorted `docs` in which, for an id
    /// several segments decide, the newest wins. Also the ids each segment lost to a newer one
    /// (their postings are dropped).
    private static func mergeDocs(_ segments: [Segment], dropDeletions: Bool) -> (
        docs: [UInt32], docVersions: [UInt64], deleted: [UInt32], lost: [Set<UInt32>]
    ) {
        let count = segments.count
        var docs: [UInt32] = []
        var docVersions: [UInt64] = []
        var deleted: [UInt32] = []
        let capacity = segments.reduce(0) { $0 + $1.docs.count }
        docs.reserveCapacity(capacity)
        docVersions.reserveCapacity(capacity)
        var lost = [Set<UInt32>](repeating: [], count: count)
        var heads = [Int](repeating: 0, count: count)
        while true {
            var smallest = UInt32.max
            var found = false
            for s in 0..<count where heads[s] < segments[s].docs.count {
                let id = segments[s].docs[heads[s]]
                if !found || id < smallest {
                    smallest = id
                    found = true
                }
            }
            guard found else { break }
            var winner = -1
            for s in 0..<count where heads[s] < segments[s].docs.count && segments[s].docs[heads[s]] == smallest {
                if winner >= 0 { lost[winner].insert(smallest) }
                winner = s
            }
            let segment = segments[winner]
            let position = heads[winner]
            for s in 0..<count where heads[s] < segments[s].docs.count && segments[s].docs[heads[s]] == smallest { heads[s] += 1 }
            let isDeletion = segment.isDeletion(smallest)
            if isDeletion && dropDeletions { continue }
            if isDeletion { deleted.append(smallest) }
            docs.append(smallest)
            docVersions.append(segment.docVersions[position])
        }
        return (docs, docVersions, deleted, lost)
    }

    /// Where a merge writes: the directory (each bucket's end), low bits and ids.
    struct Postings {
        let directory: UnsafeMutableBufferPointer<UInt32>
        let lows: UnsafeMutableBufferPointer<UInt16>
        let ids: UnsafeMutableBufferPointer<UInt32>
    }

    /// One segment's postings, for the duration of a merge.
    struct Run {
        let directory: UnsafeBufferPointer<UInt32>
        let lows: UnsafeBufferPointer<UInt16>
        let ids: UnsafeBufferPointer<UInt32>
    }

    /// Calls `body` with every segment's postings as buffers (nested, so each stays valid).
    private static func withRuns<R>(of segments: ArraySlice<Segment>, collected: [Run] = [], _ body: ([Run]) -> R) -> R {
        guard let first = segments.first else { return body(collected) }
        return first.directory.withUnsafeBufferPointer { directory in
            first.lows.withUnsafeBufferPointer { lows in
                first.ids.withUnsafeBufferPointer { ids in
                    withRuns(of: segments.dropFirst(), collected: collected + [Run(directory: directory, lows: lows, ids: ids)], body)
                }
            }
        }
    }
}
