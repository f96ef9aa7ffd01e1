import FpindexAPI
import FpindexHTTP
import Hummingbird
import Logging
import Metrics
import NIOCore
import Prometheus

/// Settings of an fpindex-dev server.
public struct DevIndexConfiguration: Sendable {
    /// Address to listen on (`--host`, default `127.0.0.1`).
    public var host: String
    /// Port to listen on (`--port`, default 8080; 0 picks a free one).
    public var port: Int
    /// Where to persist (`--dir`); nil keeps everything in memory only.
    public var directory: String?

    public init(host: String = "127.0.0.1", port: Int = 8080, directory: String? = nil) {
        self.host = host
        self.port = port
        self.directory = directory
    }
}

/// Builds the fpindex-dev HTTP application over a store.
///
/// - Parameters:
///   - configuration: where to listen.
///   - store: the indexes.
///   - registry: the Prometheus registry `/_metrics` exposes; the server's metrics are made in it.
///   - onServerRunning: called with the bound port once the server listens.
public func buildDevIndexApplication(
    configuration: DevIndexConfiguration,
    store: IndexStore,
    registry: PrometheusCollectorRegistry,
    logger: Logger,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) -> some ApplicationProtocol {
    let responder = DevIndexResponder(store: store, registry: registry)
    return Application(
        responder: responder,
        configuration: ApplicationConfiguration(
            address: .hostname(configuration.host, port: configuration.port), serverName: "fpindex-dev"),
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? configuration.port) },
        logger: logger
    )
}

/// Answers every route of docs/fpindex-api.md from an `IndexStore`.
struct DevIndexResponder: HTTPResponder {
    typealias Context = BasicRequestContext

    let store: IndexStore
    let registry: PrometheusCollectorRegistry
    let httpMetrics: HTTPMetrics
    let indexesGauge: Metrics.Gauge
    let fingerprintsGauge: Metrics.Gauge
    let segmentsGauge: Metrics.Gauge
    let searchResults: Metrics.Recorder
    let indexMetrics: IndexMetrics

    init(store: IndexStore, registry: PrometheusCollectorRegistry) {
        let factory = PrometheusMetricsFactory(registry: registry)
        self.store = store
        self.registry = registry
        self.httpMetrics = HTTPMetrics(prefix: "fpindex_dev", factory: factory)
        self.indexesGauge = Metrics.Gauge(label: "fpindex_dev_indexes", factory: factory)
        self.fingerprintsGauge = Metrics.Gauge(label: "fpindex_dev_fingerprints", factory: factory)
        self.segmentsGauge = Metrics.Gauge(label: "fpindex_dev_segments", factory: factory)
        self.searchResults = Metrics.Recorder(label: "fpindex_dev_search_results", factory: factory)
        self.indexMetrics = IndexMetrics(registry: registry)
    }

    func respond(to request: Request, context: Context) async throws -> Response {
        await FpindexHTTP.serve(request, logger: context.logger, metrics: httpMetrics) { exchange in
            let route = try FpindexHTTP.route(request)
            exchange.routeLabel = route.label
            return try await handle(route, request: request, head: exchange.head, negotiation: &exchange.negotiation)
        }
    }

    /// Answers one matched route. `negotiation` is updated once the body is read, so an error
    /// reply uses the same format a success would have.
    func handle(_ route: FpindexRoute, request: Request, head: Bool, negotiation: inout Negotiation) async throws -> Response {
        switch route {
        case .health:
            return FpindexHTTP.text("OK\n", head: head)

        case .metrics:
            let totals = store.totals()
            indexesGauge.record(totals.indexes)
            fingerprintsGauge.record(totals.fingerprints)
            segmentsGauge.record(totals.segments)
            for index in store.indexSizes() { indexMetrics.describe(index.name, docs: index.docs, version: index.version) }
            var bytes: [UInt8] = []
            registry.emit(into: &bytes)
            IndexMetrics.declareMissingFamilies(in: &bytes)
            return FpindexHTTP.response(bytes: bytes, contentType: "text/plain; version=0.0.4; charset=utf-8")

        case .index(let name):
            switch request.method {
            case .put:
                guard FpindexNames.isValidIndexName(name) else { throw FpindexError(.invalidIndexName, "bad index name") }
                let body: ByteBuffer
                (body, negotiation) = try await FpindexHTTP.readBody(request, optionalBody: true)
                let create = try FpindexHTTP.decodeOptional(
                    CreateIndexRequest.self, from: body, format: negotiation.request, empty: CreateIndexRequest())
                return FpindexHTTP.response(try await store.createIndex(name, create), format: negotiation.response)
            case .delete:
                let body: ByteBuffer
                (body, negotiation) = try await FpindexHTTP.readBody(request, optionalBody: true)
                let delete = try FpindexHTTP.decodeOptional(
                    DeleteIndexRequest.self, from: body, format: negotiation.request, empty: DeleteIndexRequest())
                let deleted = try await store.deleteIndex(name, delete)
                if deleted.deleted { indexMetrics.removed(name) }
                return FpindexHTTP.response(deleted, format: negotiation.response)
            default:
                let snapshot = try existing(name)
                let info = IndexInfo(version: snapshot.version, metadata: snapshot.metadata, stats: snapshot.stats())
                return FpindexHTTP.response(info, format: negotiation.response, head: head)
            }

        case .indexHealth(let name):
            _ = try existing(name)
            return FpindexHTTP.text("OK\n", head: head)

        case .status(let name):
            let snapshot = try existing(name)
            // Every acknowledged write is already durable, so the file version is the version.
            let status = IndexStatus(generation: snapshot.generation, version: snapshot.version, fileVersion: snapshot.version)
            return FpindexHTTP.response(status, format: negotiation.response)

        case .search(let name):
            _ = try existing(name)
            let body: ByteBuffer
            (body, negotiation) = try await FpindexHTTP.readBody(request)
            let search = try FpindexHTTP.decode(SearchRequest.self, from: body, format: negotiation.request)
            let started = ContinuousClock.now
            let reply = try store.search(name, search)
            indexMetrics.searched(name, results: reply.results.count, duration: ContinuousClock.now - started)
            searchResults.record(reply.results.count)
            return FpindexHTTP.response(reply, format: negotiation.response)

        case .update(let name):
            _ = try existing(name)
            let body: ByteBuffer
            (body, negotiation) = try await FpindexHTTP.readBody(request)
            let update = try FpindexHTTP.decode(FlatUpdateRequest.self, from: body, format: negotiation.request)
            let version = try await store.update(name, update)
            indexMetrics.updated(name)
            return FpindexHTTP.response(VersionResponse(version: version), format: negotiation.response)

        case .fingerprint(let name, let idText):
            guard FpindexNames.isValidIndexName(name) else { throw FpindexError(.indexNotFound, "bad index name") }
            let id = try FpindexNames.parseFingerprintId(idText)
            let snapshot = try existing(name)
            switch request.method {
            case .put:
                let body: ByteBuffer
                (body, negotiation) = try await FpindexHTTP.readBody(request)
                let put = try FpindexHTTP.decode(PutFingerprintRequest.self, from: body, format: negotiation.request)
                _ = try await store.update(name, UpdateRequest(changes: [.insert(id: id, hashes: put.hashes)]))
                indexMetrics.updated(name)
                return FpindexHTTP.response(EmptyResponse(), format: negotiation.response)
            case .delete:
                (_, negotiation) = try await FpindexHTTP.readBody(request, optionalBody: true)
                _ = try await store.update(name, UpdateRequest(changes: [.delete(id: id)]))
                indexMetrics.updated(name)
                return FpindexHTTP.response(EmptyResponse(), format: negotiation.response)
            default:
                guard let version = snapshot.fingerprintVersion(id) else {
                    throw FpindexError(.fingerprintNotFound, "fingerprint \(id) not in \(name)")
                }
                return FpindexHTTP.response(
                    VersionResponse(version: version), format: negotiation.response, head: head)
            }
        }
    }

    /// The snapshot of an existing index; a missing index, or a name that cannot be one, is 404.
    func existing(_ name: String) throws(FpindexError) -> IndexSnapshotView {
        guard FpindexNames.isValidIndexName(name), let snapshot = store.snapshot(name) else {
            throw FpindexError(.indexNotFound, "index \(name.prefix(255)) does not exist")
        }
        return snapshot
    }
}
