import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import LegacyProtocol
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

/// Builds the proxy's HTTP application and the services it runs with, in dependency order.
/// ServiceGroup stops services in reverse order, so the HTTP server stops first (answering
/// the requests in flight), then the read backend's connection pool closes, and the NATS
/// connection closes last, after in-flight writes got their acks.
/// - Throws: when the TLS certificate or key does not load.
public func buildProxyServices(
    configuration: ProxyConfiguration, registry: PrometheusCollectorRegistry, logger: Logger,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in },
    onLegacyListening: @escaping @Sendable (Int) -> Void = { _ in }
) throws -> (services: [any Service], runtime: ProxyRuntime) {
    // First what may throw: the read backend's HTTP client must not be left unclosed.
    var server = HTTPServerBuilder.http1()
    var watchers: [any Service] = []
    if let tls = configuration.tls {
        let certificate = try ServingCertificate(tls)
        server = try .tls(.http1(), tlsConfiguration: certificate.tlsConfiguration)
        watchers.append(
            FileWatcher(paths: [tls.certificateFile, tls.keyFile], interval: tls.reloadInterval) { contents in
                certificate.reload(contents, logger: logger)
            })
    }
    let runtime = ProxyRuntime()
    let forwarder = ReadForwarder(baseURL: configuration.readURL, timeout: configuration.readTimeout)
    let responder = ProxyResponder(configuration: configuration, runtime: runtime, forwarder: forwarder, registry: registry)
    let app = Application(
        responder: responder,
        server: server,
        configuration: ApplicationConfiguration(
            address: .hostname(configuration.host, port: configuration.port), serverName: "fpindex-proxy"),
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? configuration.port) },
        logger: logger
    )
    let connection = NATSConnectionService(configuration: configuration, runtime: runtime, logger: logger)
    var services: [any Service] = [connection, ForwarderShutdown(forwarder: forwarder)] + watchers
    if let auth = configuration.auth, let file = auth.tokenFile, let tokens = responder.tokens {
        let reloads = Metrics.Counter(label: "fpindex_proxy_auth_reloads_total", factory: PrometheusMetricsFactory(registry: registry))
        services.append(
            FileWatcher(paths: [file], interval: auth.reloadInterval) { contents in
                tokens.reload(contents[0], file: file, logger: logger, reloads: reloads)
            })
    }
    if let legacy = configuration.legacy {
        // Stops after the HTTP server and before NATS: a commit in progress gets its acks.
        services.append(
            LegacyServer(
                configuration: LegacyServerConfiguration(
                    host: legacy.host, port: legacy.port, maxConnections: legacy.maxConnections, readOnly: legacy.readOnly),
                backend: ProxyLegacyBackend(responder: responder, index: legacy.index, logger: logger), logger: logger,
                metricsFactory: PrometheusMetricsFactory(registry: registry), onListening: onLegacyListening))
    }
    return (services + [app], runtime)
}

/// Closes the read backend's connection pool when told to stop, which is after the HTTP
/// server has stopped (it is listed before the server).
struct ForwarderShutdown: Service, CustomStringConvertible {
    var description: String { "ForwarderShutdown" }

    let forwarder: ReadForwarder

    func run() async throws {
        try? await gracefulShutdown()
        await forwarder.shutdown()
    }
}
