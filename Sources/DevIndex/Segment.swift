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

    /// Builds a segment from the final state of each touched id.
    ///
    /// Every posting becomes a 64-bit key, hash then id, and the keys are sorted with 8-bit
    /// counting passes (`radixSortByHash`). 8-bit digits keep the 256 write positions of each
    /// pass in cache; one pass on the 16-bit bucket scattered over 65 536 positions and cost
    /// three times as much.
    convenience init(changes: ChangeBatch, version: UInt64) {
        let docs = changes.ids
        var deleted: [UInt32] = []
        var keys = [UInt64](unsafeUninitializedCapacity: changes.hashCount) { buffer, count in
            var n = 0
            changes.withHashes { hashes, starts, counts in
                for position in docs.indices {
                    let id = docs[position]
                    guard counts[position] >= 0 else {
                        deleted.append(id)
                        continue
                    }
                    let start = starts[position]
                    for i in start..<(start &+ counts[position]) {
                        buffer[n] = UInt64(hashes[i]) &<< 32 | UInt64(id)
                        n &+= 1
                    }
                }
            }
            count = n
        }
        keys.withUnsafeMutableBufferPointer { Self.radixSortByHash($0) }
        var directory = [UInt32](repeating: 0, count: Self.bucketCount + 1)
        for key in keys { directory[Int(truncatingIfNeeded: key &>> 48) &+ 1] &+= 1 }
        for bucket in 0..<Self.bucketCount { directory[bucket &+ 1] &+= directory[bucket] }
        let (lows, ids) = Self.split(keys)
        self.init(
            docs: docs, docVersions: [UInt64](repeating: version, count: docs.count), deleted: deleted,
            directory: directory, lows: lows, ids: ids)
    }

    /// Sorts keys (hash << 32 | id) ascending. One counting pass on the top 8 bits splits them
    /// into 256 ranges of a few thousand; each range is then sorted while it is in cache. (Four
    /// passes over all the keys, each twice the size of the cache, took 40 % longer.)
    static func radixSortByHash(_ keys: UnsafeMutableBufferPointer<UInt64>) {
        let count = keys.count
        guard count > 1 else { return }
        let spare = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: count)
        defer { spare.deallocate() }
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: 256)
        defer { counts.deallocate() }
        let starts = UnsafeMutableBufferPointer<Int>.allocate(capacity: 257)
        defer { starts.deallocate() }
        starts.initialize(repeating: 0)
        for key in keys { starts[Int(truncatingIfNeeded: key &>> 56) &+ 1] &+= 1 }
        for digit in 0..<256 { starts[digit &+ 1] &+= starts[digit] }
        for digit in 0..<256 { counts[digit] = starts[digit] }
        for key in keys {
            let digit = Int(truncatingIfNeeded: key &>> 56)
            spare[counts[digit]] = key
            counts[digit] &+= 1
        }
        for digit in 0..<256 {
            let range = starts[digit]..<starts[digit &+ 1]
            var sorted = UnsafeMutableBufferPointer(rebasing: keys[range])
            let scratch = UnsafeMutableBufferPointer(rebasing: spare[range])
            guard range.count > 1 else {
                if range.count == 1 { sorted[0] = scratch[0] }
                continue
            }
            // Two passes sort on the top 24 bits of the hash, which nearly always tell keys
            // apart; an insertion sort on the whole key puts the few ties in order.
            countingPass(scratch, into: sorted, shift: 40, counts: counts)
            countingPass(sorted, into: scratch, shift: 48, counts: counts)
            if !insertionSort(scratch, into: sorted, maximumMoves: 8 * range.count) {
                // Many hashes share their top bits (not fingerprint data): a general sort.
                _ = sorted.update(fromContentsOf: scratch)
                sorted.sort()
            }
        }
    }

    /// Copies `source` into `target` in order by an insertion sort, giving up (false) once it
    /// has moved keys more than `maximumMoves` times.
    private static func insertionSort(
        _ source: UnsafeMutableBufferPointer<UInt64>, into target: UnsafeMutableBufferPointer<UInt64>, maximumMoves: Int
    ) -> Bool {
        var moves = 0
        for i in 0..<source.count {
            let key = source[i]
            var j = i
            while j > 0 && target[j &- 1] > key {
                target[j] = target[j &- 1]
                j &-= 1
            }
            target[j] = key
            moves &+= i &- j
            if moves > maximumMoves { return false }
        }
        return true
    }

    /// A stable counting sort of `source` into `target` by the 8 bits of each key at `shift`.
    @inline(__always)
    private static func countingPass(
        _ source: UnsafeMutableBufferPointer<UInt64>, into target: UnsafeMutableBufferPointer<UInt64>, shift: UInt64,
        counts: UnsafeMutablePointer<Int>
    ) {
        for digit in 0..<256 { counts[digit] = 0 }
        for key in source { counts[Int(truncatingIfNeeded: (key &>> shift) & 0xff)] &+= 1 }
        var running = 0
        for digit in 0..<256 {
            let digitCount = counts[digit]
            counts[digit] = running
            running &+= digitCount
        }
        for key in source {
            let digit = Int(truncatingIfNeeded: (key &>> shift) & 0xff)
            target[counts[digit]] = key
            counts[digit] &+= 1
        }
    }

    /// Sorted keys (hash << 32 | id) as the segment stores them: low 16 bits of the hash, and id.
    private static func split(_ keys: [UInt64]) -> (lows: [UInt16], ids: [UInt32]) {
        keys.withUnsafeBufferPointer { keys in
            let lows = [UInt16](unsafeUninitializedCapacity: keys.count) { buffer, count in
                for i in 0..<keys.count { buffer[i] = UInt16(truncatingIfNeeded: keys[i] &>> 32) }
                count = keys.count
            }
            let ids = [UInt32](unsafeUninitializedCapacity: keys.count) { buffer, count in
                for i in 0..<keys.count { buffer[i] = UInt32(truncatingIfNeeded: keys[i]) }
                count = keys.count
            }
            return (lows, ids)
        }
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
    ///
    /// Postings are merged a range of buckets at a time (about 64 K postings): each segment's
    /// range is one run of 64-bit keys (hash << 32 | id), the runs are merged pairwise with
    /// branch-free two-way merges, and the result is split back. Long runs keep per-bucket work
    /// out of the inner loops; merging bucket by bucket cost 15-30 ns a posting.
    static func merge(_ segments: [Segment], dropDeletions: Bool) -> Segment {
        precondition(!segments.isEmpty)
        let (docs, docVersions, deleted, lost) = mergeDocs(segments, dropDeletions: dropDeletions)
        let total = segments.reduce(0) { $0 + $1.postingCount }
        let bucketsPerChunk = max(1, min(bucketCount, (bucketCount << 16) / max(total, 1)))
        var directory = [UInt32](repeating: 0, count: bucketCount + 1)
        // Not zeroed first: the merge writes every position below `written`, the rest is cut off.
        var lows = [UInt16](unsafeUninitializedCapacity: total) { _, count in count = total }
        var ids = [UInt32](unsafeUninitializedCapacity: total) { _, count in count = total }
        var written = 0
        withRuns(of: segments[...]) { runs in
            var merger = RunMerger(runCount: segments.count, capacity: min(total, 1 << 17))
            defer { merger.deallocate() }
            directory.withUnsafeMutableBufferPointer { directory in
                lows.withUnsafeMutableBufferPointer { lows in
                    ids.withUnsafeMutableBufferPointer { ids in
                        let output = Postings(directory: directory, lows: lows, ids: ids)
                        for first in stride(from: 0, to: bucketCount, by: bucketsPerChunk) {
                            let buckets = first..<min(first + bucketsPerChunk, bucketCount)
                            written = merger.merge(buckets: buckets, runs: runs, lost: lost, into: output, at: written)
                        }
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

    /// Merges a range of buckets of several segments into sorted 64-bit keys.
    struct RunMerger {
        private var capacity: Int
        private var keys: UnsafeMutablePointer<UInt64>
        private var spare: UnsafeMutablePointer<UInt64>
        /// Run boundaries: run r is `bounds[r]..<bounds[r + 1]`.
        private let bounds: UnsafeMutablePointer<Int>
        private let nextBounds: UnsafeMutablePointer<Int>

        init(runCount: Int, capacity: Int) {
            self.capacity = max(capacity, 1)
            keys = .allocate(capacity: self.capacity)
            spare = .allocate(capacity: self.capacity)
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
            capacity = max(needed, capacity * 2)
            keys.deallocate()
            spare.deallocate()
            keys = .allocate(capacity: capacity)
            spare = .allocate(capacity: capacity)
        }

        /// Writes the merged postings of `buckets` to `output` from `offset`, and their
        /// directory entries; returns the end.
        mutating func merge(buckets: Range<Int>, runs: [Run], lost: [Set<UInt32>], into output: Postings, at offset: Int) -> Int {
            var needed = 0
            for run in runs { needed += Int(run.directory[buckets.upperBound] &- run.directory[buckets.lowerBound]) }
            guard needed > 0 else {
                for bucket in buckets { output.directory[bucket &+ 1] = UInt32(offset) }
                return offset
            }
            reserve(needed)
            // Gather each segment's surviving keys of the range: one sorted run per segment.
            var filled = 0
            var runCount = 0
            for (position, run) in runs.enumerated() {
                let start = filled
                var bucket = buckets.lowerBound
                var bucketEnd = Int(run.directory[bucket &+ 1])
                let end = Int(run.directory[buckets.upperBound])
                let shadowed = lost[position]
                var i = Int(run.directory[buckets.lowerBound])
                while i < end {
                    while i == bucketEnd {
                        bucket &+= 1
                        bucketEnd = Int(run.directory[bucket &+ 1])
                    }
                    let id = run.ids[i]
                    if shadowed.isEmpty || !shadowed.contains(id) {
                        keys[filled] = UInt64(bucket) &<< 48 | UInt64(run.lows[i]) &<< 32 | UInt64(id)
                        filled &+= 1
                    }
                    i &+= 1
                }
                if filled > start {
                    bounds[runCount] = start
                    runCount += 1
                }
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
            // Split the keys into the output, ending each bucket's directory entry on the way.
            var bucket = buckets.lowerBound
            for i in 0..<filled {
                let key = keys[i]
                let keyBucket = Int(truncatingIfNeeded: key &>> 48)
                while bucket < keyBucket {
                    output.directory[bucket &+ 1] = UInt32(truncatingIfNeeded: offset &+ i)
                    bucket &+= 1
                }
                output.lows[offset &+ i] = UInt16(truncatingIfNeeded: key &>> 32)
                output.ids[offset &+ i] = UInt32(truncatingIfNeeded: key)
            }
            while bucket < buckets.upperBound {
                output.directory[bucket &+ 1] = UInt32(truncatingIfNeeded: offset &+ filled)
                bucket &+= 1
            }
            return offset + filled
        }

        /// Merges the sorted `source[start..<middle]` and `source[middle..<end]` into `target[start..<end]`.
        ///
        /// Branch-free, and from both ends at once: the smallest remaining key goes to the front,
        /// the largest to the back, in two independent chains the processor runs side by side
        /// (each step of one chain waits for its own previous load). Equal keys are identical
        /// postings, so which copy goes first does not matter.
        @inline(__always)
        private static func mergeTwo(
            _ source: UnsafeMutablePointer<UInt64>, _ start: Int, _ middle: Int, _ end: Int, into target: UnsafeMutablePointer<UInt64>
        ) {
            var i = start  // next of the left run, from the front
            var j = middle  // next of the right run, from the front
            var o = start
            var iBack = middle &- 1  // last of the left run, from the back
            var jBack = end &- 1
            var oBack = end &- 1
            var steps = (end &- start) / 2
            while steps > 0 && i <= iBack && j <= jBack {
                takeSmaller(source, &i, &j, into: target, at: &o)
                let leftBack = source[iBack]
                let rightBack = source[jBack]
                let takeLeftBack = leftBack > rightBack
                target[oBack] = takeLeftBack ? leftBack : rightBack
                iBack &-= takeLeftBack ? 1 : 0
                jBack &-= takeLeftBack ? 0 : 1
                oBack &-= 1
                steps &-= 1
            }
            // What is left lies between the two ends: left[i...iBack] and right[j...jBack].
            while i <= iBack && j <= jBack {
                takeSmaller(source, &i, &j, into: target, at: &o)
            }
            if i <= iBack { (target + o).update(from: source + i, count: iBack &- i &+ 1) }
            if j <= jBack { (target + o).update(from: source + j, count: jBack &- j &+ 1) }
        }

        /// One step from the front: the smaller of `source[i]` and `source[j]` (the left one on
        /// a tie) goes to `target[o]`, without a branch.
        @inline(__always)
        private static func takeSmaller(
            _ source: UnsafeMutablePointer<UInt64>, _ i: inout Int, _ j: inout Int, into target: UnsafeMutablePointer<UInt64>,
            at o: inout Int
        ) {
            let left = source[i]
            let right = source[j]
            let takeLeft = left <= right
            target[o] = takeLeft ? left : right
            i &+= takeLeft ? 1 : 0
            j &+= takeLeft ? 0 : 1
            o &+= 1
        }
    }
}
