import FpindexAPI
import TestSupport
import Testing

/// The HTTP details real clients hit, as the real fpindex answers them (measured on it; with
/// `FPINDEX_REAL_BINARY` set, each row runs against it too): an empty body is fine whatever its
/// label on routes whose body is optional, null is a value only for optional fields, and error
/// bodies follow `Accept`.
@Suite("HTTP details as the real fpindex answers them", .timeLimit(.minutes(2)))
struct HTTPDetailTests {
    static let cases: [(String, HTTPMethod, String, String?, [(String, String)], Int)] = [
        ("create, empty body labelled octet-stream", .PUT, "/j", nil, [("Content-Type", "application/octet-stream")], 200),
        ("create, a body of a foreign type", .PUT, "/k", "x", [("Content-Type", "text/plain")], 415),
        ("delete index, empty body labelled octet-stream", .DELETE, "/j", nil, [("Content-Type", "application/octet-stream")], 200),
        ("delete fingerprint, empty body labelled text", .DELETE, "/i/5", nil, [("Content-Type", "text/plain")], 200),
        ("put fingerprint, empty body labelled text", .PUT, "/i/5", nil, [("Content-Type", "text/plain")], 415),
        ("update, empty body labelled text", .POST, "/i/_update", nil, [("Content-Type", "text/plain")], 415),
        ("update, empty body unlabelled", .POST, "/i/_update", nil, [], 400),
        ("search, empty body labelled text", .POST, "/i/_search", nil, [("Content-Type", "text/plain")], 415),
        ("search, timeout null", .POST, "/i/_search", #"{"query":[1],"timeout":null}"#, [], 400),
        ("search, limit null", .POST, "/i/_search", #"{"query":[1],"limit":null}"#, [], 400),
        ("search, min_score null", .POST, "/i/_search", #"{"query":[1],"min_score":null}"#, [], 200),
        ("update, metadata null", .POST, "/i/_update", #"{"changes":[],"metadata":null}"#, [], 200),
        ("update, changes null", .POST, "/i/_update", #"{"changes":null}"#, [], 400),
        ("create, expect_does_not_exist null", .PUT, "/m", #"{"expect_does_not_exist":null}"#, [], 400),
        ("create, generation null", .PUT, "/n", #"{"generation":null}"#, [], 200),
        ("delete, expect_exists null", .DELETE, "/n", #"{"expect_exists":null}"#, [], 400),
    ]

    @Test(arguments: IndexServerKind.all) func answersAsTheRealOne(server: IndexServerKind) async throws {
        let port = try FreePort.find()
        let (process, scratch) = try await server.start(port: port, directory: nil)
        defer { if let scratch { TemporaryDirectory.remove(scratch) } }
        let http = TestHTTPClient(baseURL: "http://127.0.0.1:\(port)")
        #expect(try await http.json(.PUT, "/i").status == 200)
        for (what, method, path, body, headers, status) in Self.cases {
            let labelled = body != nil && headers.isEmpty ? [("Content-Type", "application/json")] : headers
            let reply = try await http.request(method, path, body: body.map { Array($0.utf8) }, headers: labelled)
            #expect(reply.status == status, "\(what): \(reply.status) \(reply.text)")
        }
        // An error body in the format the client asked for.
        let refused = try await http.request(
            .POST, "/i/_search", body: Array(#"{"bad":1}"#.utf8),
            headers: [("Content-Type", "application/json"), ("Accept", "application/vnd.msgpack")])
        #expect(refused.status == 400)
        #expect(try ErrorResponse.decode(from: refused.body, format: .msgpack).error == "BadRequest")
        await process.stop()
    }
}
