import FpindexAPI
import NIOCore
import TestSupport
import Testing

@Suite("fpindex-dev under concurrent searches and writes", .timeLimit(.minutes(3)))
struct ConcurrencyTests {
    /// Writers replace and add fingerprints while searchers look for ones committed before
    /// they started: a search must always see every committed fingerprint exactly once.
    @Test func searchesSeeEveryCommittedWrite() async throws {
        try await withDevIndex { dev in
            _ = try await dev.http.json(.PUT, "/c")
            let stable = (1...200).map { Change.insert(id: UInt32($0), hashes: [UInt32($0) * 7, 1_000_000 + UInt32($0)]) }
            let loaded = try await dev.http.request(
                .POST, "/c/_update", body: UpdateRequest(changes: stable).encoded(as: .msgpack),
                headers: [("Content-Type", "application/vnd.msgpack")])
            #expect(loaded.status == 200)

            try await withThrowingTaskGroup(of: Int.self) { group in
                for writer in 0..<2 {
                    group.addTask {
                        // New ids, plus rewrites of the stable ones with the same hashes (a replace).
                        for round in 0..<60 {
                            let base = UInt32(10_000 + writer * 100_000 + round * 50)
                            var changes = (0..<50).map { Change.insert(id: base + UInt32($0), hashes: [base, 5]) }
                            let rewritten = UInt32(round % 200 + 1)
                            changes.append(.insert(id: rewritten, hashes: [rewritten * 7, 1_000_000 + rewritten]))
                            let reply = try await dev.http.request(
                                .POST, "/c/_update", body: UpdateRequest(changes: changes).encoded(as: .msgpack),
                                headers: [("Content-Type", "application/vnd.msgpack")])
                            guard reply.status == 200 else { throw TestFailure("write failed: \(reply.status)") }
                        }
                        return 0
                    }
                }
                for searcher in 0..<3 {
                    group.addTask {
                        var checked = 0
                        for round in 0..<80 {
                            let id = UInt32((round * 3 + searcher) % 200 + 1)
                            let reply = try await dev.http.request(
                                .POST, "/c/_search", body: SearchRequest(query: [id * 7, 1_000_000 + id]).encoded(as: .msgpack),
                                headers: [("Content-Type", "application/vnd.msgpack")])
                            let results = try SearchResponse.decode(from: reply.body, format: .msgpack).results
                            guard results == [SearchResult(id: id, score: 2)] else {
                                throw TestFailure("search for \(id) saw \(results)")
                            }
                            checked += 1
                        }
                        return checked
                    }
                }
                var checked = 0
                for try await count in group { checked += count }
                #expect(checked == 240)
            }
            let info = try await dev.http.request(.GET, "/c").jsonObject()
            #expect(info["version"] as? Int == 121)
            // num_docs is a bound, as the real fpindex's; fpindex-dev's own metric is the live count.
            #expect(try #require((info["stats"] as? [String: Int])?["num_docs"]) >= 200 + 2 * 60 * 50)
            let metrics = try await dev.http.request(.GET, "/_metrics").text
            #expect(metrics.contains("fpindex_dev_fingerprints \(Double(200 + 2 * 60 * 50))\n"), "\(metrics)")
        }
    }
}
