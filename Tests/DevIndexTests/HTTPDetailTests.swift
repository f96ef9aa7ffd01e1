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
        try await HTTPDetails.expectRealAnswers(from: http)
        await process.stop()
    }
}
