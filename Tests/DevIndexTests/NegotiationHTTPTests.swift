import FpindexAPI
import TestSupport
import Testing

@Suite("fpindex-dev content negotiation", .timeLimit(.minutes(2)))
struct NegotiationHTTPTests {
    static let msgpack = [("Content-Type", "application/vnd.msgpack")]

    @Test func msgpackInMsgpackOut() async throws {
        try await withDevIndex { dev in
            _ = try await dev.http.json(.PUT, "/i")
            let update = UpdateRequest(changes: [.insert(id: 1, hashes: [10, 20, 30])], metadata: ["k": "v"])
            let reply = try await dev.http.request(.POST, "/i/_update", body: update.encoded(as: .msgpack), headers: Self.msgpack)
            #expect(reply.status == 200)
            #expect(reply.contentType == "application/vnd.msgpack")
            #expect(try VersionResponse.decode(from: reply.body, format: .msgpack) == VersionResponse(version: 1))

            let search = try await dev.http.request(
                .POST, "/i/_search", body: SearchRequest(query: [10, 20]).encoded(as: .msgpack), headers: Self.msgpack)
            #expect(try SearchResponse.decode(from: search.body, format: .msgpack).results == [SearchResult(id: 1, score: 2)])
        }
    }

    @Test func noContentTypeMeansMsgpackAndTheReplyFollows() async throws {
        try await withDevIndex { dev in
            _ = try await dev.http.json(.PUT, "/i")
            let put = try await dev.http.request(.PUT, "/i/3", body: PutFingerprintRequest(hashes: [1]).encoded(as: .msgpack))
            #expect(put.status == 200)
            #expect(put.contentType == "application/vnd.msgpack")
            #expect(put.body == [0x80])
            // An error for such a request is MessagePack too.
            let bad = try await dev.http.request(.PUT, "/i/3", body: [0x81, 0xa1, 0x68, 0xc0])
            #expect(bad.status == 400)
            #expect(try ErrorResponse.decode(from: bad.body, format: .msgpack).error == "BadRequest")
        }
    }

    @Test func acceptOverridesTheRequestFormat() async throws {
        try await withDevIndex { dev in
            _ = try await dev.http.json(.PUT, "/i")
            let reply = try await dev.http.json(.POST, "/i/_update", #"{"changes":[]}"#, headers: [("Accept", "application/vnd.msgpack")])
            #expect(reply.contentType == "application/vnd.msgpack")
            #expect(reply.body == [0x81, 0xa1, 0x76, 0x01])
            let info = try await dev.http.request(.GET, "/i", headers: [("Accept", "text/html;q=0.9, application/vnd.msgpack;q=0.8")])
            #expect(try IndexInfo.decode(from: info.body, format: .msgpack).version == 1)
            let error = try await dev.http.request(.GET, "/nope", headers: [("Accept", "application/vnd.msgpack")])
            #expect(error.status == 404)
            #expect(try ErrorResponse.decode(from: error.body, format: .msgpack).error == "IndexNotFound")
            let json = try await dev.http.request(
                .POST, "/i/_update", body: UpdateRequest(changes: []).encoded(as: .msgpack),
                headers: Self.msgpack + [("Accept", "application/json")])
            #expect(json.contentType == "application/json; charset=UTF-8")
            #expect(json.text == #"{"version":2}"#)
        }
    }

    @Test func unsupportedMediaTypeIsJSON() async throws {
        try await withDevIndex { dev in
            _ = try await dev.http.json(.PUT, "/i")
            let reply = try await dev.http.request(
                .POST, "/i/_search", body: Array(#"{"query":[1]}"#.utf8),
                headers: [("Content-Type", "text/plain"), ("Accept", "application/vnd.msgpack")])
            #expect(reply.status == 415)
            #expect(reply.contentType == "application/json; charset=UTF-8")
            #expect(reply.errorName == "UnsupportedMediaType")
            let parameters = try await dev.http.request(
                .POST, "/i/_search", body: Array(#"{"query":[1]}"#.utf8), headers: [("Content-Type", "Application/JSON; charset=utf-8")])
            #expect(parameters.status == 200)
        }
    }
}
