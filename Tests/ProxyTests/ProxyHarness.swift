import Foundation
import FpindexAPI
import JetStream
import Logging
import TestSupport

/// A real nats-server, a real fpindex-dev as the read backend, and the real fpindex-proxy
/// executable between them, plus a JetStream client to look at what reached the stream.
final class ProxyHarness: Sendable {
    let nats: NATSServer
    let dev: ChildProcess
    let devURL: String
    let proxy: ChildProcess
    let url: String
    let http: TestHTTPClient
    let inspector: NATSClient
    let subjects = StreamSubjects(prefix: "fpindex")

    /// `natsURL`: where the proxy connects, when not straight to `nats` (a relay in between).
    static func start(
        nats: NATSServer, natsURL: String? = nil, authToken: String? = nil, readURL: String? = nil, arguments: [String] = []
    ) async throws -> ProxyHarness {
        let dev = try ChildProcess(name: "fpindex-dev", executable: try Locations.executable("fpindex-dev"), arguments: ["--port", "0"])
        let devURL = String(try await dev.waitForLine(containing: "listening on ").split(separator: " ").last!)
        var environment = ["NATS_URL": natsURL ?? nats.url, "FPINDEX_URL": readURL ?? devURL, "LOG_LEVEL": "debug"]
        if let authToken { environment["AUTH_TOKEN"] = authToken }
        let proxy = try ChildProcess(
            name: "fpindex-proxy", executable: try Locations.executable("fpindex-proxy"), arguments: ["--listen", "127.0.0.1:0"] + arguments,
            environment: environment)
        let url = String(try await proxy.waitForLine(containing: "listening on ").split(separator: " ").last!)
        let http = TestHTTPClient(baseURL: url)
        try await eventually("the proxy to be ready\n\(proxy.output)") {
            try await http.request(.GET, "/_ready").status == 200 ? true : nil
        }
        let inspector = try await NATSClient.connect(NATSConfiguration(servers: [nats.url]), logger: Logger(label: "inspector"))
        return ProxyHarness(nats: nats, dev: dev, devURL: devURL, proxy: proxy, url: url, http: http, inspector: inspector)
    }

    private init(
        nats: NATSServer, dev: ChildProcess, devURL: String, proxy: ChildProcess, url: String, http: TestHTTPClient, inspector: NATSClient
    ) {
        self.nats = nats
        self.dev = dev
        self.devURL = devURL
        self.proxy = proxy
        self.url = url
        self.http = http
        self.inspector = inspector
    }

    func stop() async {
        await inspector.close()
        await proxy.stop()
        await dev.stop()
    }

    /// The stream's last sequence: unchanged after a refused write means nothing was published.
    func lastSequence() async throws -> UInt64 {
        try await inspector.streamInfo("fpindex")?.state.lastSeq ?? 0
    }

    func stored(_ subject: String) async throws -> StoredMessage? {
        try await inspector.lastMessage(stream: "fpindex", subject: subject)
    }
}

/// Runs `body` with a fresh nats-server and proxy, always cleaning up.
func withProxy<T>(authToken: String? = nil, _ body: (ProxyHarness) async throws -> T) async throws -> T {
    try await withNATSServer { nats in
        let harness = try await ProxyHarness.start(nats: nats, authToken: authToken)
        do {
            let result = try await body(harness)
            await harness.stop()
            return result
        } catch {
            print(harness.proxy.output)
            await harness.stop()
            throw error
        }
    }
}

extension HTTPReply {
    var errorName: String? { (try? jsonObject())?["error"] as? String }
}
