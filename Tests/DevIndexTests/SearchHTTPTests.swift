import FpindexAPI
import TestSupport
import Testing

@Suite("fpindex-dev search scoring", .timeLimit(.minutes(2)))
struct SearchHTTPTests {
    /// docs/fpindex-api.md: a 40-hash query matching fingerprints with scores 40, 4, 3, 2.
    func loadWorkedExample(_ dev: DevIndexProcess) async throws -> [UInt32] {
        let query = (1...40).map { UInt32($0) * 1000 }
        _ = try await dev.http.json(.PUT, "/ex")
        let update = UpdateRequest(changes: [
            .insert(id: 1, hashes: query),
            .insert(id: 2, hashes: Array(query.prefix(4)) + [7, 8, 9]),
            .insert(id: 3, hashes: Array(query.suffix(3))),
            .insert(id: 4, hashes: [query[10], query[20]]),
            .insert(id: 5, hashes: [query[30], 1]),  // score 1: below the default min_score of 2
        ])
        let reply = try await dev.http.request(
            .POST, "/ex/_update", body: update.encoded(as: .json), headers: [("Content-Type", "application/json")])
        #expect(reply.status == 200)
        return query
    }

    func search(_ dev: DevIndexProcess, _ request: SearchRequest) async throws -> [SearchResult] {
        let reply = try await dev.http.request(
            .POST, "/ex/_search", body: request.encoded(as: .json), headers: [("Content-Type", "application/json")])
        guard reply.status == 200 else { throw TestFailure("search failed: \(reply.status) \(reply.text)") }
        return try SearchResponse.decode(from: reply.body, format: .json).results
    }

    @Test func workedExampleOfTheContract() async throws {
        try await withDevIndex { dev in
            let query = try await loadWorkedExample(dev)
            #expect(try await search(dev, SearchRequest(query: query)) == [SearchResult(id: 1, score: 40), SearchResult(id: 2, score: 4)])
            #expect(
                try await search(dev, SearchRequest(query: query, minScore: 1, scorePct: 0)) == [
                    SearchResult(id: 1, score: 40), SearchResult(id: 2, score: 4), SearchResult(id: 3, score: 3),
                    SearchResult(id: 4, score: 2), SearchResult(id: 5, score: 1),
                ])
            #expect(try await search(dev, SearchRequest(query: query, scorePct: 50)) == [SearchResult(id: 1, score: 40)])
            #expect(try await search(dev, SearchRequest(query: query, limit: 1, scorePct: 0)) == [SearchResult(id: 1, score: 40)])
            // limit 0 is clamped to 1, and a huge limit to 100.
            #expect(try await search(dev, SearchRequest(query: query, limit: 0)).count == 1)
            #expect(try await search(dev, SearchRequest(query: [])) == [])
        }
    }

    @Test func duplicatesInQueryAndStoredHashes() async throws {
        try await withDevIndex { dev in
            _ = try await dev.http.json(.PUT, "/ex")
            _ = try await dev.http.json(
                .POST, "/ex/_update", #"{"changes":[{"insert":{"id":1,"hashes":[5,5,5,6]}},{"insert":{"id":2,"hashes":[5,6]}}]}"#)
            // The query is de-duplicated; a stored hash counts each time it is stored.
            #expect(
                try await search(dev, SearchRequest(query: [5, 5, 6])) == [SearchResult(id: 1, score: 4), SearchResult(id: 2, score: 2)])
            // min_score defaults to ceil(query count before de-duplication / 20): 21 copies need 2.
            let many = [UInt32](repeating: 6, count: 21)
            #expect(try await search(dev, SearchRequest(query: many)) == [])
            #expect(try await search(dev, SearchRequest(query: many, minScore: 1)).count == 2)
        }
    }

    @Test func ties100LimitAndReplacement() async throws {
        try await withDevIndex { dev in
            _ = try await dev.http.json(.PUT, "/ex")
            let changes = (1...150).reversed().map { Change.insert(id: UInt32($0), hashes: [42]) }
            _ = try await dev.http.request(
                .POST, "/ex/_update", body: UpdateRequest(changes: changes).encoded(as: .msgpack),
                headers: [("Content-Type", "application/vnd.msgpack")])
            let results = try await search(dev, SearchRequest(query: [42], limit: 1000))
            #expect(results.count == 100)
            #expect(results.map(\.id) == (1...100).map { UInt32($0) })  // equal scores: ascending id
            // Replacing and deleting take effect in search, across segments.
            _ = try await dev.http.json(.PUT, "/ex/1", #"{"hashes":[43]}"#)
            _ = try await dev.http.json(.DELETE, "/ex/2")
            let after = try await search(dev, SearchRequest(query: [42], limit: 3))
            #expect(after.map(\.id) == [3, 4, 5])
            #expect(try await search(dev, SearchRequest(query: [43])) == [SearchResult(id: 1, score: 1)])
        }
    }

    @Test func searchTimeoutDefaultsAndBounds() async throws {
        try await withDevIndex { dev in
            let query = try await loadWorkedExample(dev)
            // timeout 0 means no deadline; a large one is capped, not refused.
            #expect(try await search(dev, SearchRequest(query: query, timeout: 0)).count == 2)
            #expect(try await search(dev, SearchRequest(query: query, timeout: 99_999)).count == 2)
        }
    }
}
