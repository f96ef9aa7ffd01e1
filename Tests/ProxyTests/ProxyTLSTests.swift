import Foundation
import TestSupport
import Testing

/// HTTPS on the proxy's listener from PEM files, as a `kubernetes.io/tls` Secret provides them:
/// served as given, verified by a client that trusts it, renewed without a restart.
@Suite("fpindex-proxy serves HTTPS", .timeLimit(.minutes(2)))
struct ProxyTLSTests {
    /// Runs `script` with /bin/sh in `folder`; its standard output, or a failure with its output.
    static func shell(_ script: String, in folder: String) async throws -> String {
        let process = try ChildProcess(name: "sh", executable: "/bin/sh", arguments: ["-c", "cd '\(folder)' && \(script)"])
        guard await process.waitForExit(timeout: .seconds(60)) == 0 else { throw TestFailure("\(script) failed:\n\(process.output)") }
        return process.stdout
    }

    /// A self-signed P-256 certificate for 127.0.0.1 named `name`, as `name.crt` and `name.key`.
    static func makeCertificate(_ name: String, in folder: String) async throws {
        _ = try await shell(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=\(name)"
                + " -addext subjectAltName=IP:127.0.0.1 -keyout \(name).key -out \(name).crt 2>&1", in: folder)
    }

    /// The subject of the certificate the server at `port` presents.
    static func servedSubject(port: Int, in folder: String) async throws -> String {
        try await shell(
            "openssl s_client -connect 127.0.0.1:\(port) </dev/null 2>/dev/null | openssl x509 -noout -subject", in: folder)
    }

    @Test func servesItsCertificateAndTakesARenewedOneWithoutARestart() async throws {
        let folder = try TemporaryDirectory.make(prefix: "proxy-tls")
        defer { TemporaryDirectory.remove(folder) }
        try await Self.makeCertificate("first", in: folder)
        try await Self.makeCertificate("second", in: folder)
        _ = try await Self.shell("cp first.crt tls.crt && cp first.key tls.key", in: folder)
        try await withNATSServer { nats in
            let proxy = try ChildProcess(
                name: "fpindex-proxy", executable: try Locations.executable("fpindex-proxy"),
                arguments: ["--listen", "127.0.0.1:0", "--tls-cert", "\(folder)/tls.crt", "--tls-key", "\(folder)/tls.key"],
                environment: ["NATS_URL": nats.url, "FPINDEX_URL": "http://127.0.0.1:9"])
            defer { Task { await proxy.stop() } }
            let url = String(try await proxy.waitForLine(containing: "listening on ").split(separator: " ").last!)
            #expect(url.hasPrefix("https://127.0.0.1:"))
            let port = try #require(Int(url.split(separator: ":").last!))
            // Verified against the certificate as its own CA; plain HTTP is not answered.
            let health = try await Self.shell(
                "curl -s --cacert first.crt -o /dev/null -w '%{http_code}' https://127.0.0.1:\(port)/_health", in: folder)
            #expect(health == "200")
            let plain = try await Self.shell(
                "curl -s -m 5 -o /dev/null -w '%{http_code}' http://127.0.0.1:\(port)/_health || true", in: folder)
            #expect(plain != "200")
            #expect(try await Self.servedSubject(port: port, in: folder).contains("CN = first"))

            // Renewed as the kubelet rewrites a Secret volume: each file replaced at once.
            _ = try await Self.shell("cp second.key tls.key.new && mv tls.key.new tls.key && cp second.crt tls.crt.new && mv tls.crt.new tls.crt", in: folder)
            try await eventually("the renewed certificate served") {
                try await Self.servedSubject(port: port, in: folder).contains("CN = second") ? true : nil
            }
            let renewed = try await Self.shell(
                "curl -s --cacert second.crt -o /dev/null -w '%{http_code}' https://127.0.0.1:\(port)/_health", in: folder)
            #expect(renewed == "200")
            #expect(proxy.isRunning)
            #expect(proxy.output.contains("TLS certificate reloaded"))
        }
    }

    @Test func aKeyThatIsNotTheCertificatesIsAClearErrorAtStart() async throws {
        let folder = try TemporaryDirectory.make(prefix: "proxy-tls")
        defer { TemporaryDirectory.remove(folder) }
        try await Self.makeCertificate("first", in: folder)
        try await Self.makeCertificate("second", in: folder)
        for (arguments, message) in [
            (["--tls-cert", "\(folder)/first.crt", "--tls-key", "\(folder)/second.key"], "does not match the certificate"),
            (["--tls-cert", "\(folder)/first.crt"], "go together"),
            (["--tls-cert", "\(folder)/missing.crt", "--tls-key", "\(folder)/first.key"], "cannot read the TLS certificate"),
        ] {
            let proxy = try ChildProcess(
                name: "fpindex-proxy", executable: try Locations.executable("fpindex-proxy"),
                arguments: ["--listen", "127.0.0.1:0"] + arguments, environment: ["NATS_URL": "nats://127.0.0.1:9"])
            #expect(await proxy.waitForExit(timeout: .seconds(20)) != 0, "\(arguments)")
            #expect(proxy.output.contains(message), "\(proxy.output)")
        }
    }
}
