import Foundation
import Synchronization
import TestSupport
import Testing

/// AcoustID's HTTP client (`acoustid/future/fpindex/client.py`, unchanged, with aiohttp): its
/// index calls through the proxy get what they get from the real fpindex. aiohttp labels the
/// empty body of `PUT /:index` `application/octet-stream`, which the proxy once refused. With
/// `replica` consistency an index created (or deleted) through the proxy is on the replicas
/// when the reply comes, so the client's next call sees it, as on a single fpindex.
@Suite("AcoustID's HTTP client through the proxy", .timeLimit(.minutes(3)))
struct ProxyHTTPClientTests {
    static let expected =
        #"{"create": "ok", "create_again": "ok", "exists_after": true, "exists_after_delete": false, "exists_before": false}"#

    @Test func createsChecksAndDeletesAnIndexAsTheRealServerLetsIt() async throws {
        try await withCluster(replicas: 1) { cluster in
            try await cluster.restartProxy(
                readURL: cluster.replicas[0].devURL, arguments: ["--consistency", "replica", "--min-replicas", "1"])
            let fromProxy = try await Self.run(baseURL: cluster.proxyURL.withLock { $0 })
            #expect(fromProxy == Self.expected)
        }
        if let real = IndexServerKind.realBinary {
            let port = try FreePort.find()
            let (process, scratch) = try await IndexServerKind.real(binary: real).start(port: port, directory: nil)
            defer { if let scratch { TemporaryDirectory.remove(scratch) } }
            let fromReal = try await Self.run(baseURL: "http://127.0.0.1:\(port)")
            await process.stop(timeout: .seconds(2))
            #expect(fromReal == Self.expected)
        }
    }

    static func run(baseURL: String) async throws -> String {
        let script = try ChildProcess(
            name: "fpindex_client.py", executable: try Locations.toolsPython(),
            arguments: [Locations.fixture("acoustid/create_index.py"), baseURL])
        guard await script.waitForExit(timeout: .seconds(60)) == 0 else { throw TestFailure("create_index.py failed\n\(script.output)") }
        return script.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// The HTTP details of `HTTPDetails` through the proxy, with a replica behind it: every status
/// equals the real fpindex's, and error bodies follow `Accept`.
@Suite("HTTP details through the proxy as the real fpindex answers them", .timeLimit(.minutes(3)))
struct ProxyHTTPDetailTests {
    @Test func answersAsTheRealOne() async throws {
        try await withCluster(replicas: 1) { cluster in
            try await cluster.restartProxy(
                readURL: cluster.replicas[0].devURL, arguments: ["--consistency", "replica", "--min-replicas", "1"])
            try await HTTPDetails.expectRealAnswers(from: cluster.http)
        }
    }
}
