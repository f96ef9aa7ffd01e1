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
        let (docs, docVersions, deleted, lost) = mergeDocs(segments, dropDeletions: dropDeletions)
        let total = segments.reduce(0) { $0 + $1.postingCount }
        var directory = [UInt32](repeating: 0, count: bucketCount + 1)
        var lows = [UInt16](repeating: 0, count: total)
        var ids = [UInt32](repeating: 0, count: total)
        var written = 0
        withRuns(of: segments[...]) { runs in
            lows.withUnsafeMutableBufferPointer { outLows in
                ids.withUnsafeMutableBufferPointer { outIds in
                    var merger = BucketMerger(runCount: runs.count)
                    defer { merger.deallocate() }
                    for bucket in 0..<bucketCount {
                        written = merger.merge(bucket: bucket, runs: runs, lost: lost, lows: outLows, ids: outIds, at: written)
                        directory[bucket + 1] = UInt32(written)
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

    /// Merges one bucket of several segments. Each segment's bucket is a run sorted by (low,
    /// id); the runs' keys are gathered into a scratch buffer and merged pairwise, with
    /// branch-free two-way merges, until one run is left: about log2(k) cheap passes. (A k-way
    /// pick of the smallest head mispredicted a branch or two per posting and was the hot spot
    /// of bulk loads.)
    struct BucketMerger {
        private var capacity = 0
        private var keys = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        private var spare = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        /// Run boundaries: run r is `bounds[r]..<bounds[r + 1]`.
        private let bounds: UnsafeMutablePointer<Int>
        private let nextBounds: UnsafeMutablePointer<Int>

        init(runCount: Int) {
            bounds = .allocate(capacity: runCount + 1)
            nextBounds = .allocate(capacity: runCount + 1)
        }

        func deallocate() {
            keys.deallocate()
            spare.deallocate()
            bounds.deallocate()
            nextBounds.deallocate()
        }

        private mutating func reserve(_ needed: Int) {
            guard needed > capacity else { return }
            capacity = max(needed, capacity * 2, 1024)
            keys.deallocate()
            spare.deallocate()
            keys = .allocate(capacity: capacity)
            spare = .allocate(capacity: capacity)
        }

        /// Writes the merged postings of `bucket` to `lows`/`ids` from `offset`; returns the end.
        mutating func merge(
            bucket: Int, runs: [Run], lost: [Set<UInt32>], lows: UnsafeMutableBufferPointer<UInt16>,
            ids: UnsafeMutableBufferPointer<UInt32>, at offset: Int
        ) -> Int {
            var needed = 0
            for run in runs { needed += Int(run.directory[bucket + 1] &- run.directory[bucket]) }
            guard needed > 0 else { return offset }
            reserve(needed)
            // Gather the non-empty runs' surviving keys.
            var filled = 0
            var runCount = 0
            for (position, run) in runs.enumerated() {
                let from = Int(run.directory[bucket])
                let to = Int(run.directory[bucket + 1])
                guard from < to else { continue }
                bounds[runCount] = filled
                let shadowed = lost[position]
                if shadowed.isEmpty {
                    for i in from..<to {
                        keys[filled] = UInt64(run.lows[i]) &<< 32 | UInt64(run.ids[i])
                        filled &+= 1
                    }
                } else {
                    for i in from..<to where !shadowed.contains(run.ids[i]) {
                        keys[filled] = UInt64(run.lows[i]) &<< 32 | UInt64(run.ids[i])
                        filled &+= 1
                    }
                }
                if filled > bounds[runCount] { runCount += 1 }
            }
            bounds[runCount] = filled
            // Merge neighbouring runs until one is left.
            while runCount > 1 {
                var merged = 0
                var r = 0
                while r < runCount {
                    nextBounds[merged] = bounds[r]
                    if r + 1 < runCount {
                        Self.mergeTwo(keys, bounds[r], bounds[r + 1], bounds[r + 2], into: spare)
                    } else {
                        (spare + bounds[r]).update(from: keys + bounds[r], count: bounds[r + 1] - bounds[r])
                    }
                    merged += 1
                    r += 2
                }
                nextBounds[merged] = filled
                for i in 0...merged { bounds[i] = nextBounds[i] }
                runCount = merged
                swap(&keys, &spare)
            }
            for i in 0..<filled {
                let key = keys[i]
                lows[offset &+ i] = UInt16(truncatingIfNeeded: key &>> 32)
                ids[offset &+ i] = UInt32(truncatingIfNeeded: key)
            }
            return offset + filled
        }

        /// Merges the sorted `source[start..<middle]` and `source[middle..<end]` into `target[start..<end]`.
        @inline(__always)
        private static func mergeTwo(
            _ source: UnsafeMutablePointer<UInt64>, _ start: Int, _ middle: Int, _ end: Int, into target: UnsafeMutablePointer<UInt64>
        ) {
            var i = start
            var j = middle
            var o = start
            while i < middle && j < end {
                let left = source[i]
                let right = source[j]
                let takeLeft = left <= right
                target[o] = takeLeft ? left : right
                i &+= takeLeft ? 1 : 0
                j &+= takeLeft ? 0 : 1
                o &+= 1
            }
            if i < middle { (target + o).update(from: source + i, count: middle - i) }
            if j < end { (target + o).update(from: source + j, count: end - j) }
        }
    }
}
