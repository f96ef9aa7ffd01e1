import FpindexAPI
import FpindexClient
import Hummingbird
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

/// Builds the updater's services in dependency order: the probe server first (so probes keep
/// answering while the replicator finishes its last batch), then the replicator.
public func buildUpdaterServices(
    configuration: UpdaterConfiguration, registry: PrometheusCollectorRegistry, logger: Logger,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) -> (services: [any Service], status: UpdaterStatus) {
    let factory = PrometheusMetricsFactory(registry: registry)
    let status = UpdaterStatus(maxLag: configuration.maxLag, factory: factory)
    let router = Router()
    router.get(RouterPath(ProbePath.health)) { _, _ in "OK\n" }
    let readiness: @Sendable (Request, BasicRequestContext) async throws -> Response = { _, _ in
        let ready = status.isReady
        return Response(
            status: ready ? .ok : .serviceUnavailable, headers: [.contentType: "text/plain; charset=UTF-8"],
            body: .init(byteBuffer: ByteBuffer(string: ready ? "OK\n" : "NOT READY (\(status.phase.rawValue))\n")))
    }
    router.get(RouterPath(ProbePath.ready), use: readiness)
    router.get(RouterPath(ProbePath.legacyReady), use: readiness)
    router.get("/status") { _, _ -> Response in
        Response(
            status: .ok, headers: [.contentType: "application/json; charset=UTF-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: status.json())))
    }
    router.get(RouterPath(ProbePath.metrics)) { _, _ -> Response in
        status.recordConnectionState()
        var bytes: [UInt8] = []
        registry.emit(into: &bytes)
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
    let app = Application(
        router: router,
        configuration: ApplicationConfiguration(
            address: .hostname(configuration.host, port: configuration.port), serverName: "fpindex-updater"),
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? configuration.port) },
        logger: logger)
    let replicator = Replicator(
        configuration: configuration, status: status, fpindex: FpindexClient(baseURL: configuration.fpindexURL), logger: logger)
    return ([app, replicator], status)
}
