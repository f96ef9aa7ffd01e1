import FpindexAPI
import TestSupport
import Testing

/// The HTTP details real clients hit, as the real fpindex answers them (measured on it; with
/// `FPINDEX_REAL_BINARY` set, each row runs against it too): an empty body is fine whatever its
/// label on routes whose body is optional, null is a value only for optional fields, and error
/// bodies follow `Accept`.
@Suite("HTTP details as the real fpindex answers them", .timeLimit(.minutes(2)))
struct HTTPDetailTests {
    @Test(arguments: IndexServerKind.all) func answersAsTheRealOne(server: IndexServerKind) async throws {
        let port = try FreePort.find()
        let (process, scratch) = try await server.start(port: port, directory: nil)
        defer { if let scratch { TemporaryDirectory.remove(scratch) } }
        let http = TestHTTPClient(baseURL: "http://127.0.0.1:\(port)")
        #expect(try await http.json(.PUT, "/i").status == 200)
        for (what, method, path, body, headers, status) in HTTPDetails.withRealStatuses {
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
