import ArgumentParser
import CommandSupport
import Foundation
import FpindexAPI
import JetStream
import Logging
import Metrics
import Prometheus
import Proxy
import ServiceLifecycle
import UnixSignals

@main
struct FpindexProxy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fpindex-proxy",
        abstract: "Speaks fpindex's HTTP API: writes become JetStream messages, reads and searches go to the read backend.",
        discussion: "A 200 for a write means the stream acknowledged every message of it. NATS down: 503 ServiceUnavailable.")

    @Option(help: "Address to listen on (env LISTEN_ADDR; default 0.0.0.0:8080; port 0 picks one and prints it).")
    var listen: String?

    @OptionGroup var nats: NATSOptions
    @OptionGroup var stream: StreamOptions

    @Option(help: "Where searches and index reads go (env FPINDEX_URL; default http://127.0.0.1:6081).")
    var readURL: String?

    @Option(help: "Bearer token required for writes (visible in the process list: prefer --auth-token-file or env AUTH_TOKEN).")
    var authToken: String?

    @Option(help: "File of bearer tokens for writes, one a line, any of them valid; re-read when it changes (env AUTH_TOKEN_FILE; AUTH_TOKEN holds a token itself).")
    var authTokenFile: String?

    @Flag(help: "Reads and searches need a bearer token too; /_health, /_ready and /_metrics never do (env PROTECT_READS=true).")
    var protectReads = false

    @Option(help: "PEM certificate chain for HTTPS on --listen (env TLS_CERT_FILE; with --tls-key; re-read when it changes).")
    var tlsCert: String?

    @Option(help: "PEM private key of --tls-cert (env TLS_KEY_FILE).")
    var tlsKey: String?

    @Flag(help: "Only verify the stream; never create or update it (when the operator manages it).")
    var noManageStream = false

    @Option(help: "When writes are answered: stream (durable) or replica (also applied by --min-replicas replicas; env CONSISTENCY).")
    var consistency: String?

    @Option(help: "Replicas that must apply a write under replica consistency (default 1).")
    var minReplicas: Int = 1

    @Option(help: "Milliseconds a write waits for replicas before 504 (default 5000).")
    var replicaTimeout: Int = 5000

    @Option(help: "Milliseconds a write waits for the stream's acknowledgement before 503 (default 10000).")
    var publishTimeout: Int = 10000

    @Option(help: "Milliseconds a forwarded read or search waits for the read backend before 503 (default 10000).")
    var readTimeout: Int = 10000

    @Option(help: "Longest request target (path and query) in bytes, else 414 (env MAX_REQUEST_TARGET; default 4096).")
    var maxRequestTarget: Int?

    @Option(help: "Largest header field in bytes, else 431 (env MAX_HEADER_BYTES; default 8192).")
    var maxHeaderBytes: Int?

    @Option(help: "Most header fields, else 431 (env MAX_HEADERS; default 100).")
    var maxHeaders: Int?

    @Option(help: "Serve the legacy line protocol (AcoustID's indexclient.py) on HOST:PORT (env LEGACY_LISTEN_ADDR; off by default; port 0 picks one and prints it).")
    var legacyListen: String?

    @Option(help: "The index the legacy protocol reads and writes (env LEGACY_INDEX; default main; created if missing).")
    var legacyIndex: String?

    @Flag(help: "Refuse writes on the legacy port (begin answers ERR read-only replica; env LEGACY_READ_ONLY=true).")
    var legacyReadOnly = false

    @Option(help: "Legacy protocol connections at once; one more is answered ERR too many connections (default 1024).")
    var legacyMaxConnections: Int = 1024

    @Option(help: "Milliseconds a legacy commit waits for replicas under replica consistency before ERR commit failed (env LEGACY_COMMIT_TIMEOUT; default 20000).")
    var legacyCommitTimeout: Int?

    @Option(help: "Log level (env LOG_LEVEL; default info).")
    var logLevel: String?

    /// The request limits: flags, then environment, then defaults. fpindex's own parser cannot
    /// take lines over about 8 KB, so the bounds may not go above that.
    func requestLimits() throws -> RequestLimits {
        func bound(_ flag: Int?, _ variable: String, _ name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
            let text = flag.map(String.init) ?? Settings.environment(variable) ?? String(value)
            guard let number = Int(text), range.contains(number) else {
                throw SettingsError("\(name) / \(variable): '\(text)' must be \(range.lowerBound)-\(range.upperBound)")
            }
            return number
        }
        return RequestLimits(
            maxTargetBytes: try bound(maxRequestTarget, ComponentEnvironment.maxRequestTarget, "--max-request-target", default: 4096, range: 256...8000),
            maxHeaderBytes: try bound(maxHeaderBytes, ComponentEnvironment.maxHeaderBytes, "--max-header-bytes", default: 8192, range: 256...65536),
            maxHeaders: try bound(maxHeaders, ComponentEnvironment.maxHeaders, "--max-headers", default: 100, range: 8...1000))
    }

    /// The legacy port's settings; nil when it is off.
    func legacySettings() throws -> LegacySettings? {
        guard let address = legacyListen ?? Settings.environment(ComponentEnvironment.legacyListenAddress) else { return nil }
        let (host, port) = try Settings.hostAndPort(address, flag: "--legacy-listen / LEGACY_LISTEN_ADDR")
        let index = legacyIndex ?? Settings.environment(ComponentEnvironment.legacyIndex) ?? "main"
        guard FpindexNames.isValidIndexName(index) else {
            throw SettingsError("--legacy-index / LEGACY_INDEX: '\(index)' is not an index name (1-255 of A-Z a-z 0-9 _ -)")
        }
        guard legacyMaxConnections >= 1 else { throw SettingsError("--legacy-max-connections must be at least 1") }
        let commitTimeout = legacyCommitTimeout.map(String.init) ?? Settings.environment(ComponentEnvironment.legacyCommitTimeout) ?? "20000"
        guard let commitMilliseconds = Int(commitTimeout), commitMilliseconds >= 1 else {
            throw SettingsError("--legacy-commit-timeout / LEGACY_COMMIT_TIMEOUT: '\(commitTimeout)' must be a number of milliseconds, at least 1")
        }
        return LegacySettings(
            host: host, port: port, index: index,
            readOnly: legacyReadOnly || Settings.environment(ComponentEnvironment.legacyReadOnly) == "true",
            maxConnections: legacyMaxConnections, commitTimeout: .milliseconds(commitMilliseconds))
    }

    /// Bearer tokens: `--auth-token`, else the token file (re-read when it changes), else
    /// `AUTH_TOKEN`; nil when none is configured (writes open).
    func authSettings() throws -> ProxyAuthSettings? {
        let protect = protectReads || Settings.environment(ComponentEnvironment.protectReads) == "true"
        var settings: ProxyAuthSettings?
        if let file = authToken == nil ? authTokenFile ?? Settings.environment(ComponentEnvironment.authTokenFile) : nil {
            guard let contents = FileManager.default.contents(atPath: file) else {
                throw SettingsError("--auth-token-file / AUTH_TOKEN_FILE: cannot read \(file)")
            }
            let tokens = BearerTokens.parse(String(decoding: contents, as: UTF8.self))
            guard !tokens.isEmpty else { throw SettingsError("--auth-token-file / AUTH_TOKEN_FILE: \(file) holds no token") }
            settings = ProxyAuthSettings(tokens: tokens, tokenFile: file, protectReads: protect)
        } else if let token = authToken ?? Settings.environment(ComponentEnvironment.authToken) {
            let tokens = BearerTokens.parse(token)
            guard !tokens.isEmpty else { throw SettingsError("--auth-token / AUTH_TOKEN is empty") }
            settings = ProxyAuthSettings(tokens: tokens, protectReads: protect)
        }
        guard settings != nil || !protect else {
            throw SettingsError("--protect-reads / PROTECT_READS needs a token (--auth-token-file, AUTH_TOKEN_FILE or AUTH_TOKEN)")
        }
        return settings
    }

    /// HTTPS on the listener when a certificate and key are given; both or neither.
    func tlsSettings() throws -> ProxyTLSSettings? {
        let certificate = tlsCert ?? Settings.environment(ComponentEnvironment.tlsCertificateFile)
        let key = tlsKey ?? Settings.environment(ComponentEnvironment.tlsKeyFile)
        switch (certificate, key) {
        case (nil, nil): return nil
        case (let certificate?, let key?): return ProxyTLSSettings(certificateFile: certificate, keyFile: key)
        default: throw SettingsError("--tls-cert / TLS_CERT_FILE and --tls-key / TLS_KEY_FILE go together")
        }
    }

    func writeConsistency() throws -> WriteConsistency {
        let text = consistency ?? Settings.environment(ComponentEnvironment.consistency) ?? "stream"
        guard let value = WriteConsistency(rawValue: text) else {
            throw SettingsError("--consistency / CONSISTENCY: '\(text)' must be stream or replica")
        }
        return value
    }

    func run() async throws {
        let listenAddress = try Settings.hostAndPort(
            listen ?? Settings.environment(ComponentEnvironment.listenAddress) ?? "0.0.0.0:8080", flag: "--listen / LISTEN_ADDR")
        let readURL = self.readURL ?? Settings.environment(ComponentEnvironment.fpindexURL) ?? "http://127.0.0.1:6081"
        guard readURL.hasPrefix("http://") || readURL.hasPrefix("https://") else {
            throw SettingsError("--read-url / FPINDEX_URL: '\(readURL)' is not an http(s) URL")
        }
        var natsConfiguration = try nats.configuration(name: "fpindex-proxy")
        natsConfiguration.publishTimeout = .milliseconds(max(publishTimeout, 1))
        let configuration = ProxyConfiguration(
            host: listenAddress.host, port: listenAddress.port, nats: natsConfiguration,
            stream: try stream.settings(), readURL: readURL,
            auth: try authSettings(), readTimeout: .milliseconds(max(readTimeout, 1)),
            manageStream: !noManageStream, consistency: try writeConsistency(), minReplicas: max(minReplicas, 1),
            replicaTimeout: .milliseconds(max(replicaTimeout, 1)), limits: try requestLimits(), legacy: try legacySettings(),
            tls: try tlsSettings())
        _ = try Settings.bootstrapLogging(level: logLevel)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let logger = Logger(label: "fpindex-proxy")
        let (services, _) = try buildProxyServices(
            configuration: configuration, registry: registry, logger: logger,
            onServerRunning: { port in
                print("fpindex-proxy listening on \(configuration.tls == nil ? "http" : "https")://\(listenAddress.host):\(port)")
                flushStandardOutput()
            },
            onLegacyListening: { [legacy = configuration.legacy] port in
                print("fpindex-proxy legacy protocol on \(legacy?.host ?? ""):\(port)")
                flushStandardOutput()
            })
        logger.info(
            "starting",
            metadata: [
                "nats.servers": "\(configuration.nats.redactedServers)", "stream.name": "\(configuration.stream.name)",
                "read.url": "\(readURL)", "auth": "\(configuration.auth.map { $0.protectReads ? "bearer token, reads too" : "bearer token for writes" } ?? "none")",
                "legacy": "\(configuration.legacy.map { "\($0.host):\($0.port) index \($0.index)\($0.readOnly ? " read-only" : "")" } ?? "off")",
            ])
        var groupConfiguration = ServiceGroupConfiguration(
            services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // Within the pod's grace period after its preStop wait (ShutdownBudget).
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(ShutdownBudget.gracefulShutdownSeconds)
        try await ServiceGroup(configuration: groupConfiguration).run()
    }
}
