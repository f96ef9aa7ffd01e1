import FpindexAPI
import TestSupport
import Testing

@testable import DevIndex

/// The index engine against a brute-force model, through many writes, merges and deletions.
@Suite("Index engine")
struct EngineTests {
    struct Model {
        var docs: [UInt32: [UInt32]] = [:]

        func search(_ request: SearchRequest) -> [SearchResult] {
            let query = Set(request.query)
            let minScore = max(request.effectiveMinScore, 1)
            var results = docs.compactMap { id, hashes -> SearchResult? in
                let score = UInt32(hashes.filter(query.contains).count)
                return score >= minScore ? SearchResult(id: id, score: score) : nil
            }
            results.sort { $0.score != $1.score ? $0.score > $1.score : $0.id < $1.id }
            if let top = results.first {
                let cutoff = UInt64(top.score) * UInt64(request.effectiveScorePct) / 100
                results = results.filter { UInt64($0.score) >= cutoff }
            }
            return Array(results.prefix(request.effectiveLimit))
        }
    }

    /// Hashes drawn from 0...300 crowd one bucket of the segments' directory; drawn from a pool of
    /// random 32-bit values they spread over many buckets, as real fingerprints do.
    enum HashSpread: CaseIterable { case crowded, spread }

    @Test(arguments: [1, 2, 3], HashSpread.allCases)
    func matchesABruteForceModel(seed: Int, spread: HashSpread) throws {
        var random = SeededRandom(seed: UInt64(seed))
        var snapshot = IndexSnapshot.empty(generation: 1)
        var model = Model()
        let idSpace: ClosedRange<UInt32> = 1...400
        let pool: [UInt32] =
            switch spread {
            case .crowded: Array(0...300)
            case .spread: (0..<3000).map { _ in UInt32.random(in: 0...UInt32.max, using: &random) }
            }
        let hashSpace = 0...(pool.count - 1)
        for round in 0..<400 {
            var changes: [UInt32: [UInt32]?] = [:]
            for _ in 0..<Int.random(in: 0...12, using: &random) {
                let id = UInt32.random(in: idSpace, using: &random)
                if Int.random(in: 0..<4, using: &random) == 0 {
                    changes.updateValue(nil, forKey: id)
                } else {
                    changes[id] = .some(
                        (0..<Int.random(in: 0...30, using: &random)).map { _ in pool[Int.random(in: hashSpace, using: &random)] })
                }
            }
            snapshot = snapshot.applying(changes: changes, metadata: [])
            for (id, hashes) in changes { model.docs[id] = hashes }
            #expect(snapshot.version == UInt64(round + 1))
            #expect(snapshot.liveCount == model.docs.count, "round \(round)")
            if round % 80 == 79 { try checkPostings(snapshot, against: model) }
            if round % 20 == 0 {
                for _ in 0..<10 {
                    let request = SearchRequest(
                        query: (0..<Int.random(in: 1...40, using: &random)).map { _ in pool[Int.random(in: hashSpace, using: &random)] },
                        limit: 100, minScore: 1, scorePct: [0, 10, 50][Int.random(in: 0..<3, using: &random)])
                    #expect(try snapshot.search(request, deadline: nil) == model.search(request), "round \(round)")
                }
                for id in idSpace.prefix(50) {
                    #expect(snapshot.isLive(id) == (model.docs[id] != nil))
                }
                // The real fpindex's stats are bounds (deletions count): they cover every live id.
                let stats = snapshot.stats()
                if let low = model.docs.keys.min(), let high = model.docs.keys.max() {
                    #expect(stats.minDocId <= low && stats.minDocId != 0)
                    #expect(stats.maxDocId >= high)
                }
                #expect(Int(stats.numDocs) >= model.docs.count)
            }
        }
        // The merge policy keeps the segment count logarithmic: about three per tier (log4 of the size).
        let totalWeight = snapshot.segments.reduce(0) { $0 + $1.weight }
        var tiers = 1
        var weight = totalWeight
        while weight >= 4 {
            weight /= 4
            tiers += 1
        }
        #expect(snapshot.segments.count <= 3 * tiers, "\(snapshot.segments.count) segments for a total weight of \(totalWeight)")
    }

    /// Every segment is well formed, and the segment that decides each live id holds exactly
    /// its hashes (merges neither lose nor keep stale postings).
    func checkPostings(_ snapshot: IndexSnapshot, against model: Model) throws {
        var decided: [UInt32: [UInt32]] = [:]
        for (position, segment) in snapshot.segments.enumerated() {
            #expect(segment.docs == segment.docs.sorted() && Set(segment.docs).count == segment.docs.count)
            #expect(Set(segment.deleted).isSubset(of: segment.docs) && segment.docVersions.count == segment.docs.count)
            #expect(segment.directory.first == 0 && segment.directory.last == UInt32(segment.ids.count))
            var postings: [UInt32: [UInt32]] = [:]
            for bucket in 0..<Segment.bucketCount {
                let range = Int(segment.directory[bucket])..<Int(segment.directory[bucket + 1])
                try #require(range.lowerBound <= range.upperBound)
                for i in range {
                    postings[segment.ids[i], default: []].append(UInt32(bucket) << 16 | UInt32(segment.lows[i]))
                }
            }
            #expect(postings.keys.allSatisfy { segment.contains($0) && !segment.isDeletion($0) })
            for id in segment.docs where !segment.isDeletion(id) && !snapshot.isShadowed(id, after: position) {
                decided[id] = (postings[id] ?? []).sorted()
            }
        }
        #expect(decided == model.docs.mapValues { $0.sorted() })
    }

    @Test func aWriteKeepsTheLastChangeOfEachId() {
        var random = SeededRandom(seed: 11)
        for round in 0..<200 {
            var request = UpdateRequest(changes: [])
            var expected: [UInt32: [UInt32]?] = [:]
            // Few ids for some rounds (repeats), many for others (each id once).
            let idSpace: ClosedRange<UInt32> = round % 2 == 0 ? 1...8 : 1...1_000_000
            for _ in 0..<Int.random(in: 0...30, using: &random) {
                let id = UInt32.random(in: idSpace, using: &random)
                if Int.random(in: 0..<4, using: &random) == 0 {
                    request.changes.append(.delete(id: id))
                    expected.updateValue(nil, forKey: id)
                } else {
                    let hashes = (0..<Int.random(in: 0...5, using: &random)).map { _ in UInt32.random(in: 0...UInt32.max, using: &random) }
                    request.changes.append(.insert(id: id, hashes: hashes))
                    expected[id] = .some(hashes)
                }
                if Int.random(in: 0..<8, using: &random) == 0 {
                    request.changes.append(.setMetadata([MetadataEntry(key: "k", value: "v")]))
                }
            }
            let batch = ChangeBatch(FlatUpdateRequest(request))
            #expect(batch.ids == expected.keys.sorted(), "round \(round)")
            for (position, id) in batch.ids.enumerated() {
                let hashes: [UInt32]? = batch.isDeletion(position) ? nil : Array(batch.hashes(at: position))
                #expect(hashes == expected[id]!, "round \(round), id \(id)")
            }
        }
    }

    /// A built segment holds exactly its write's postings, each in its hash's bucket, and
    /// finds every hash: spread hashes, hashes sharing their top bits, and repeats.
    @Test(arguments: [UInt32.max, 0xffff, 300, 3])
    func aSegmentHoldsItsWritesPostings(hashLimit: UInt32) {
        var random = SeededRandom(seed: UInt64(hashLimit))
        for fingerprints in [0, 1, 2, 100, 600] {
            var changes: [UInt32: [UInt32]?] = [:]
            for id in 1...UInt32(fingerprints + 1) {
                if Int.random(in: 0..<10, using: &random) == 0 {
                    changes.updateValue(nil, forKey: id * 7)  // a deletion (assigning nil would remove the key)
                } else {
                    changes[id * 7] = (0..<Int.random(in: 0...150, using: &random)).map { _ in
                        UInt32.random(in: 0...hashLimit, using: &random)
                    }
                }
            }
            let segment = Segment(changes: ChangeBatch(changes), version: 1)
            var expected: [UInt32: [UInt32]] = [:]  // hash -> ids, once per occurrence
            for (id, hashes) in changes { for hash in hashes ?? [] { expected[hash, default: []].append(id) } }
            var stored: [UInt32: [UInt32]] = [:]
            #expect(segment.directory.first == 0 && segment.directory.last == UInt32(segment.ids.count))
            for bucket in 0..<Segment.bucketCount {
                for i in Int(segment.directory[bucket])..<Int(segment.directory[bucket + 1]) {
                    stored[UInt32(bucket) << 16 | UInt32(segment.lows[i]), default: []].append(segment.ids[i])
                }
            }
            #expect(stored.mapValues { $0.sorted() } == expected.mapValues { $0.sorted() }, "\(fingerprints) fingerprints")
            for (hash, ids) in expected.prefix(50) {
                var hits: [UInt32] = []
                segment.collect(hash: hash, into: &hits)
                #expect(hits.sorted() == ids.sorted())
            }
            let deletions = changes.filter { $0.value == nil }.keys.sorted()
            #expect(segment.deleted == deletions)
            #expect(fingerprints < 100 || !deletions.isEmpty)
        }
    }

    @Test func searchPastItsDeadlineTimesOut() {
        let snapshot = IndexSnapshot.empty(generation: 1).applying(changes: [1: .some([1])], metadata: [])
        #expect(throws: FpindexError(.searchTimeout)) {
            try snapshot.search(SearchRequest(query: [1]), deadline: .now - .seconds(1))
        }
    }

    @Test func logRecordsRoundTrip() throws {
        for record in [
            LogRecord.createIndex(name: "a", generation: 7), .deleteIndex(name: "b"),
            .update(name: "c", version: 9, changes: [.insert(id: 1, hashes: [1, 2]), .delete(id: 3)], metadata: ["k": "v"]),
        ] {
            let decoded = try record.encoded().withUnsafeBytes { buffer throws(FpindexError) in try LogRecord.decode(buffer) }
            #expect(decoded == record)
        }
        // zlib's check value for "123456789"
        #expect(Array("123456789".utf8).withUnsafeBytes { CRC32.checksum($0) } == 0xcbf4_3926)
    }
}

@Suite("Write-ahead log")
struct WriteAheadLogTests {
    @Test func recordsSpanningReadChunksReplayInOrder() throws {
        let dir = try TemporaryDirectory.make(prefix: "wal")
        defer { TemporaryDirectory.remove(dir) }
        let path = dir + "/test.wal"
        let records: [LogRecord] = (0..<3000).map { (n: Int) -> LogRecord in
            let hashes: [UInt32] = (0..<500).map { (h: Int) -> UInt32 in UInt32(h * n) }
            let change = Change.insert(id: UInt32(n + 1), hashes: hashes)
            return LogRecord.update(name: "i", version: UInt64(n + 1), changes: [change], metadata: ["n": String(n)])
        }
        do {
            let (wal, truncated) = try WriteAheadLog.open(path: path) { _ in Issue.record("a new log has no records") }
            #expect(truncated == 0)
            for record in records { try wal.append(record) }
            #expect(wal.size > 4 << 20)  // more than one read chunk
        }
        var replayed: [LogRecord] = []
        let (wal, truncated) = try WriteAheadLog.open(path: path) { replayed.append($0) }
        #expect(truncated == 0)
        #expect(replayed == records)
        #expect(wal.size > 0)
    }
}
