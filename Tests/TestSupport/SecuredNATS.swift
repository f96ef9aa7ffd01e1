import Foundation
import JetStream
import Logging

// manifests/nats/nats-server-permissions.conf on a real nats-server over TLS, for the suites
// that run components as their least-privilege NATS users (NATSPermissionTests, the
// controller's user Secret).

/// The example's users. Passwords are new for each server, given to it through its
/// environment as a Kubernetes Secret would be.
public enum NATSRole: String, CaseIterable, Sendable {
    case proxy = "fpindex-proxy"
    case updater = "fpindex-updater"
    case controller = "fpindex-controller"
    case tools = "fpindex-tools"

    public var passwordVariable: String {
        switch self {
        case .proxy: "FPINDEX_PROXY_PASSWORD"
        case .updater: "FPINDEX_UPDATER_PASSWORD"
        case .controller: "FPINDEX_CONTROLLER_PASSWORD"
        case .tools: "FPINDEX_TOOLS_PASSWORD"
        }
    }
}

/// nats-server running the example configuration, with the certificates it serves.
public struct SecuredNATS: Sendable {
    public let server: NATSServer
    public let certificates: String
    public let passwords: [NATSRole: String]

    public var url: String { "tls://127.0.0.1:\(server.port)" }
    public var caFile: String { certificates + "/ca.crt" }

    /// A client as `role`. A refused request or publish gets no reply at all (the server
    /// only logs the refusal), so it fails after `timeout`: refusal checks pass a short one.
    /// Connecting is retried up to the usual deadline, so a short timeout cannot make a
    /// connection on a loaded machine fail.
    public func connect(as role: NATSRole, timeout: Duration = .seconds(5)) async throws -> NATSClient {
        let configuration = NATSConfiguration(
            servers: [url], user: role.rawValue, password: passwords[role], tlsCAFile: caFile, name: role.rawValue, timeout: timeout,
            publishTimeout: timeout)
        return try await eventually("a connection as \(role.rawValue)") {
            try await NATSClient.connect(configuration, logger: Logger(label: role.rawValue))
        }
    }

    /// The environment that makes fpindex-proxy or fpindex-updater connect as `role`.
    public func environment(as role: NATSRole) -> [String: String] {
        ["NATS_URL": url, "NATS_TLS_CA": caFile, "NATS_USER": role.rawValue, "NATS_PASSWORD": passwords[role]!, "LOG_LEVEL": "info"]
    }

    /// Every permission violation the server logged, as its log lines.
    public var violations: [String] {
        server.process.stderr.split(separator: "\n").filter { $0.contains(" Violation - ") }.map(String.init)
    }

    /// Waits for the server to log that it refused `subject` to `role` (`Publish` or
    /// `Subscription`): nats-server logs each violation as it drops the message.
    public func expectViolation(_ role: NATSRole, _ kind: String = "Publish", subject: String) async throws {
        try await eventually("nats-server to refuse \(kind.lowercased()) on \(subject) to \(role.rawValue)") {
            violations.contains { $0.contains("user:\(role.rawValue)\"") && $0.contains("\(kind) Violation - Subject \"\(subject)\"") }
                ? true : nil
        }
    }
}

/// Starts nats-server with the example configuration: only its listen address, store,
/// monitoring port and certificate folder changed.
public func withSecuredNATS(_ body: (SecuredNATS) async throws -> Void) async throws {
    let example = Locations.packageRoot + "/manifests/nats/nats-server-permissions.conf"
    let text = try String(contentsOfFile: example, encoding: .utf8)
    let certificates = try await TestCertificates.make()
    defer { TemporaryDirectory.remove(certificates) }
    var passwords: [NATSRole: String] = [:]
    // nats-server parses an environment variable's value as a configuration value: a UUID
    // starting with digits can read as a date or number. Letters first keep it a string.
    for role in NATSRole.allCases { passwords[role] = "pw" + UUID().uuidString.replacingOccurrences(of: "-", with: "") }
    let server = try await NATSServer.start(
        environment: Dictionary(uniqueKeysWithValues: passwords.map { ($0.key.passwordVariable, $0.value) })
    ) { port, store in
        var configuration = text
        for (from, to) in [
            ("listen: 0.0.0.0:4222", "listen: 127.0.0.1:\(port)"), ("http_port: 8222", "http_port: -1"),
            ("store_dir: /data/jetstream", "store_dir: \(store)"), ("/etc/nats/tls/", certificates + "/"),
        ] {
            // The example changed under the test: say so rather than test something else.
            guard configuration.contains(from) else { throw TestFailure("\(example) no longer has '\(from)'") }
            configuration = configuration.replacingOccurrences(of: from, with: to)
        }
        return configuration
    }
    let nats = SecuredNATS(server: server, certificates: certificates, passwords: passwords)
    do {
        try await body(nats)
    } catch {
        print(server.process.output)
        await server.stop()
        throw error
    }
    await server.stop()
}
