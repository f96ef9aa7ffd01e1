import FpindexAPI
import NIOHTTP1
import Testing

/// The HTTP details real clients hit, with the status the real fpindex answers each (measured
/// on it): an empty body is fine whatever its label on routes whose body is optional, and null
/// is a value only for optional fields. fpindex-dev and the proxy must answer the same.
public enum HTTPDetails {
    /// (what, method, path, body, headers, the real fpindex's status), after `PUT /i`.
    public static let withRealStatuses: [(String, HTTPMethod, String, String?, [(String, String)], Int)] = [
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

    /// Creates `/i` through `http`, sends every row and expects the real fpindex's status, and
    /// expects an error body in the format the client asked for.
    public static func expectRealAnswers(from http: TestHTTPClient) async throws {
        #expect(try await http.json(.PUT, "/i").status == 200)
        for (what, method, path, body, headers, status) in withRealStatuses {
            let labelled = body != nil && headers.isEmpty ? [("Content-Type", "application/json")] : headers
            let reply = try await http.request(method, path, body: body.map { Array($0.utf8) }, headers: labelled)
            #expect(reply.status == status, "\(what): \(reply.status) \(reply.text)")
        }
        let refused = try await http.request(
            .POST, "/i/_search", body: Array(#"{"bad":1}"#.utf8),
            headers: [("Content-Type", "application/json"), ("Accept", "application/vnd.msgpack")])
        #expect(refused.status == 400)
        #expect(try ErrorResponse.decode(from: refused.body, format: .msgpack).error == "BadRequest")
    }
}
