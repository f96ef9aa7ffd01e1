import FpindexAPI
import FpindexHTTP
import HTTPTypes
import Hummingbird
import JetStream
import Logging
import Metrics
import NIOCore
import Prometheus

/// Answers fpindex's API: writes become stream messages, reads go to the read backend.
struct ProxyResponder: HTTPResponder {
    typealias Context = BasicRequestContext

    let configuration: ProxyConfiguration
    let runtime: ProxyRuntime
    let forwarder: ReadForwarder
    let registry: PrometheusCollectorRegistry
    let writer: StreamWriter
    let httpMetrics: HTTPMetrics
    let publishMetrics: PublishMetrics
    let lastSequenceHints = LastSequenceHints()
    let inFlightGauge: Metrics.Gauge
    let connectedGauge: Metrics.Gauge
    let indexesGauge: Metrics.Gauge
    /// The valid bearer tokens, when requests need one.
    let tokens: BearerTokens?
    let unauthorizedCounter: Metrics.Counter

    init(configuration: ProxyConfiguration, runtime: ProxyRuntime, forwarder: ReadForwarder, registry: PrometheusCollectorRegistry) {
        let factory = PrometheusMetricsFactory(registry: registry)
        self.configuration = configuration
        self.runtime = runtime
        self.forwarder = forwarder
        self.registry = registry
        self.writer = StreamWriter(subjects: StreamSubjects(prefix: configuration.stream.subjectPrefix))
        self.httpMetrics = HTTPMetrics(prefix: "fpindex_proxy", factory: factory)
        self.publishMetrics = PublishMetrics(factory: factory)
        self.inFlightGauge = Metrics.Gauge(label: "fpindex_proxy_publishes_in_flight", factory: factory)
        self.connectedGauge = Metrics.Gauge(label: "fpindex_proxy_nats_connected", factory: factory)
        self.indexesGauge = Metrics.Gauge(label: "fpindex_proxy_indexes", factory: factory)
        self.tokens = configuration.auth.map { BearerTokens($0.tokens) }
        self.unauthorizedCounter = Metrics.Counter(label: "fpindex_proxy_unauthorized_total", factory: factory)
    }

    var subjects: StreamSubjects { writer.subjects }
    var streamName: String { configuration.stream.name }

    func respond(to request: Request, context: Context) async throws -> Response {
        await FpindexHTTP.serve(request, logger: context.logger, metrics: httpMetrics, mapError: Self.fpindexError) { exchange in
            if let violation = configuration.limits.violation(
                target: request.uri.description.utf8.count,
                headers: request.headers.map { ($0.name.rawName.utf8.count, $0.value.utf8.count) })
            {
                exchange.routeLabel = "refused"
                throw violation
            }
            if request.uri.path == ProbePath.ready {
                exchange.routeLabel = "ready"
                return runtime.isReady
                    ? FpindexHTTP.text("OK\n", head: exchange.head)
                    : FpindexHTTP.text("NOT READY\n", status: .serviceUnavailable, head: exchange.head)
            }
            let route = try FpindexHTTP.route(request)
            exchange.routeLabel = route.label
            if configuration.auth?.protectReads == true, !route.isProbe { try authorize(request) }
            return try await handle(
                route, request: request, head: exchange.head, negotiation: &exchange.negotiation, logger: context.logger)
        }
    }

    /// NATS trouble is 503 `ServiceUnavailable`: the write was not acknowledged by the stream.
    static func fpindexError(from error: any Error, logger: Logger) -> FpindexError {
        guard let error = error as? JetStreamError else { return FpindexHTTP.fpindexError(from: error, logger: logger) }
        if case .publishRejected(let code) = error.kind, code == JetStreamError.wrongLastSequenceCode {
            return FpindexError(.versionMismatch, error.description)
        }
        logger.warning("NATS request failed", metadata: ["error": "\(error)"])
        return FpindexError(.serviceUnavailable, error.description)
    }

    func handle(_ route: FpindexRoute, request: Request, head: Bool, negotiation: inout Negotiation, logger: Logger) async throws
        -> Response
    {
        switch route {
        case .health:
            return FpindexHTTP.text("OK\n", head: head)

        case .metrics:
            connectedGauge.record(runtime.natsState == .connected ? 1 : 0)
            indexesGauge.record(runtime.catalog.existingCount)
            inFlightGauge.record((try? runtime.connectedClient().publishesInFlight) ?? 0)
            var bytes: [UInt8] = []
            registry.emit(into: &bytes)
            return FpindexHTTP.response(bytes: bytes, contentType: "text/plain; version=0.0.4; charset=utf-8")

        case .index(let name):
            switch request.method {
            case .put:
                try authorize(request)
                guard FpindexNames.isValidIndexName(name) else { throw FpindexError(.invalidIndexName, "bad index name") }
                let body: ByteBuffer
                (body, negotiation) = try await FpindexHTTP.readBody(request, optionalBody: true)
                let create = try FpindexHTTP.decodeOptional(
                    CreateIndexRequest.self, from: body, format: negotiation.request, empty: CreateIndexRequest())
                let consistency = try writeConsistency(request)
                let created = try await createIndex(name, create)
                try await awaitReplicas(created.version, consistency)
                return FpindexHTTP.response(created, format: negotiation.response)
            case .delete:
                try authorize(request)
                let body: ByteBuffer
                (body, negotiation) = try await FpindexHTTP.readBody(request, optionalBody: true)
                let delete = try FpindexHTTP.decodeOptional(
                    DeleteIndexRequest.self, from: body, format: negotiation.request, empty: DeleteIndexRequest())
                let consistency = try writeConsistency(request)
                let (deleted, sequence) = try await deleteIndex(name, delete)
                try await awaitReplicas(sequence, consistency)
                return FpindexHTTP.response(deleted, format: negotiation.response)
            default:
                return try await forward(route, request: request, negotiation: negotiation, logger: logger)
            }

        case .indexHealth, .status:
            return try await forward(route, request: request, negotiation: negotiation, logger: logger)

        case .search(let name):
            // A name no index can have answers as fpindex does, and is never sent to it.
            guard FpindexNames.isValidIndexName(name) else { throw FpindexError(.indexNotFound, "bad index name") }
            let body: ByteBuffer
            (body, negotiation) = try await FpindexHTTP.readBody(request)
            return try await forwarder.forward(route, method: .post, body: body, negotiation: negotiation, logger: logger)

        case .update(let name):
            try authorize(request)
            let body: ByteBuffer
            (body, negotiation) = try await FpindexHTTP.readBody(request)
            let update = try FpindexHTTP.decode(UpdateRequest.self, from: body, format: negotiation.request)
            try StreamWriter.validate(update)
            let consistency = try writeConsistency(request)
            try requireIndex(name)
            let version = try await publishUpdate(update, index: name)
            try await awaitReplicas(version, consistency)
            return FpindexHTTP.response(VersionResponse(version: version), format: negotiation.response)

        case .fingerprint(let name, let idText):
            guard FpindexNames.isValidIndexName(name) else { throw FpindexError(.indexNotFound, "bad index name") }
            let id = try FpindexNames.parseFingerprintId(idText)
            switch request.method {
            case .put:
                try authorize(request)
                let body: ByteBuffer
                (body, negotiation) = try await FpindexHTTP.readBody(request)
                let put = try FpindexHTTP.decode(PutFingerprintRequest.self, from: body, format: negotiation.request)
                let consistency = try writeConsistency(request)
                try requireIndex(name)
                let sequence = try await publishUpdate(UpdateRequest(changes: [.insert(id: id, hashes: put.hashes)]), index: name)
                try await awaitReplicas(sequence, consistency)
                return FpindexHTTP.response(EmptyResponse(), format: negotiation.response)
            case .delete:
                try authorize(request)
                (_, negotiation) = try await FpindexHTTP.readBody(request, optionalBody: true)
                let consistency = try writeConsistency(request)
                try requireIndex(name)
                let sequence = try await publishUpdate(UpdateRequest(changes: [.delete(id: id)]), index: name)
                try await awaitReplicas(sequence, consistency)
                return FpindexHTTP.response(EmptyResponse(), format: negotiation.response)
            default:
                try requireIndex(name)
                let generation = runtime.catalog.generation(name) ?? 0
                let client = try runtime.connectedClient()
                // Answered from the stream, so it reflects the latest acknowledged write. A
                // message older than the index's create record belonged to an earlier generation
                // (a write that raced with a delete): replicas skip it, and so does this.
                guard let message = try await client.lastMessage(stream: streamName, subject: subjects.fingerprint(name, id: id)),
                    message.sequence > generation,
                    let record = try? message.payload.withUnsafeBytes({ buffer throws(FpindexError) in
                        try FingerprintRecord.decode(payload: buffer)
                    }),
                    record.hashes != nil
                else { throw FpindexError(.fingerprintNotFound, "fingerprint \(id) not in \(name)") }
                return FpindexHTTP.response(VersionResponse(version: message.sequence), format: negotiation.response, head: head)
            }
        }
    }

    /// The consistency a write asks for (`Fpindex-Consistency`), else the configured one; read
    /// before anything is published, so a bad header refuses the write instead of following it.
    func writeConsistency(_ request: Request) throws(FpindexError) -> WriteConsistency {
        guard let asked = request.headers[Self.consistencyHeader] else { return configuration.consistency }
        guard let parsed = WriteConsistency(rawValue: asked.lowercased()) else {
            throw FpindexError.badRequest("Fpindex-Consistency must be stream or replica")
        }
        return parsed
    }

    /// A read fpindex answers, rebuilt from the route: nothing of the request but its method
    /// and the negotiated formats reaches fpindex.
    func forward(_ route: FpindexRoute, request: Request, negotiation: Negotiation, logger: Logger) async throws -> Response {
        guard let name = route.indexName, FpindexNames.isValidIndexName(name) else {
            throw FpindexError(.indexNotFound, "bad index name")
        }
        // A body on a read is not fpindex's business: read (bounded like any other) and dropped.
        do {
            _ = try await request.body.collect(upTo: FpindexNames.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw FpindexError(.bodyTooBig, "request body over \(FpindexNames.maxBodyBytes) bytes")
        }
        return try await forwarder.forward(route, method: request.method, body: nil, negotiation: negotiation, logger: logger)
    }

    /// Under `replica` consistency, waits until enough replicas applied `sequence`: a search
    /// right after the reply sees the write.
    func awaitReplicas(_ sequence: UInt64, _ consistency: WriteConsistency, timeout: Duration? = nil) async throws {
        guard consistency == .replica, sequence > 0 else { return }
        try await runtime.progress.wait(
            for: sequence, replicas: configuration.minReplicas, timeout: timeout ?? configuration.replicaTimeout)
    }

    static let consistencyHeader = HTTPField.Name("Fpindex-Consistency")!

    /// Writes (and protected reads) need one of the bearer tokens when tokens are configured.
    func authorize(_ request: Request) throws(FpindexError) {
        guard let tokens else { return }
        guard tokens.authorizes(request.headers[.authorization]) else {
            unauthorizedCounter.increment()
            throw FpindexError(.unauthorized, "missing or wrong bearer token")
        }
    }

    /// Which indexes exist is known only once the lifecycle records are replayed.
    func requireCatalog() throws(FpindexError) {
        guard runtime.catalog.isSynced else { throw FpindexError(.serviceUnavailable, "the index catalog is not loaded yet") }
    }

    func requireIndex(_ name: String) throws(FpindexError) {
        try requireCatalog()
        guard runtime.catalog.generation(name) != nil else { throw FpindexError(.indexNotFound, "index \(name) does not exist") }
    }

    /// Publishes an update's messages and returns the stream sequence of the last one.
    func publishUpdate(_ update: UpdateRequest, index: String) async throws -> UInt64 {
        let client = try runtime.connectedClient()
        let messages = writer.messages(for: update, index: index)
        guard !messages.isEmpty else {
            if update.expectedVersion != nil {
                throw FpindexError(.notImplemented, "expected_version needs at least one change")
            }
            // Nothing to write: the version is where the stream is now.
            return try await client.streamInfo(streamName)?.state.lastSeq ?? 0
        }
        guard let expected = update.expectedVersion else {
            return try await publishFenced(messages, client)
        }
        // Compare-and-swap on the index's subjects: the first message carries the check, so a
        // mismatch publishes nothing; the rest follow once it is stored.
        let first = try await client.publish(
            subject: messages[0].subject, payload: messages[0].payload,
            options: PublishOptions(
                expectedLastSubjectSequence: expected, expectedLastSubjectSequenceSubject: subjects.indexContents(index)))
        lastSequenceHints.record(messages[0].subject, first.sequence)
        let rest = try await publishFenced(Array(messages.dropFirst()), client)
        return max(first.sequence, rest)
    }

    func publishFenced(_ messages: [OutgoingMessage], _ client: NATSClient) async throws -> UInt64 {
        try await FencedPublish.publish(messages, stream: streamName, hints: lastSequenceHints, metrics: publishMetrics, client: client)
    }

    /// Lifecycle records are published on condition that the index's lifecycle subject is as
    /// this proxy knows it (`Nats-Expected-Last-Subject-Sequence`): two proxies, or two requests,
    /// creating the same index at once publish one create record, not two. A second one would
    /// start a new generation, and every replica would drop the writes made in between.
    /// When the condition fails, the record that won is read and the request decided again.
    static let lifecycleAttempts = 3

    func createIndex(_ name: String, _ request: CreateIndexRequest) async throws -> CreateIndexResponse {
        try requireCatalog()
        for _ in 0..<Self.lifecycleAttempts {
            let known = runtime.catalog.entry(name)
            if let known, known.exists {
                if request.expectDoesNotExist == true { throw FpindexError(.indexAlreadyExists, "index \(name) exists") }
                return CreateIndexResponse(version: known.sequence, ready: true, generation: known.sequence)
            }
            let client = try runtime.connectedClient()
            guard let ack = try await publishLifecycle(.create, index: name, after: known?.sequence ?? 0, client) else { continue }
            return CreateIndexResponse(version: ack.sequence, ready: true, generation: ack.sequence)
        }
        throw FpindexError(.serviceUnavailable, "index \(name) keeps changing under this request")
    }

    /// Publishes the delete record, then purges the index's subjects below it: writes that
    /// race with the delete, or go to an index re-created right after, survive.
    /// - Returns: the reply, and the delete record's sequence (0 when nothing was deleted).
    func deleteIndex(_ name: String, _ request: DeleteIndexRequest) async throws -> (DeleteIndexResponse, UInt64) {
        try requireCatalog()
        guard FpindexNames.isValidIndexName(name) else {
            if request.expectExists == true { throw FpindexError(.indexNotFound, "index \(name) does not exist") }
            return (DeleteIndexResponse(deleted: false), 0)
        }
        for _ in 0..<Self.lifecycleAttempts {
            guard let known = runtime.catalog.entry(name), known.exists else {
                if request.expectExists == true { throw FpindexError(.indexNotFound, "index \(name) does not exist") }
                return (DeleteIndexResponse(deleted: false), 0)
            }
            let client = try runtime.connectedClient()
            guard let ack = try await publishLifecycle(.delete, index: name, after: known.sequence, client) else { continue }
            try await client.purge(stream: streamName, filter: subjects.indexContents(name), upTo: ack.sequence)
            return (DeleteIndexResponse(deleted: true), ack.sequence)
        }
        throw FpindexError(.serviceUnavailable, "index \(name) keeps changing under this request")
    }

    /// Publishes a lifecycle record if the index's last one is still at `sequence` (0: none),
    /// and records it in the catalog. Nil when another record came first: the catalog then
    /// holds that one.
    func publishLifecycle(_ operation: LifecycleRecord.Operation, index: String, after sequence: UInt64, _ client: NATSClient)
        async throws -> PublishAck?
    {
        let subject = subjects.lifecycle(index)
        do {
            let ack = try await client.publish(
                subject: subject, payload: LifecycleRecord(operation).payload,
                options: PublishOptions(expectedLastSubjectSequence: sequence))
            runtime.catalog.apply(index: index, operation: operation, sequence: ack.sequence)
            return ack
        } catch let error as JetStreamError {
            guard case .publishRejected(let code) = error.kind, code == JetStreamError.wrongLastSequenceCode else { throw error }
        }
        if let last = try await client.lastMessage(stream: streamName, subject: subject),
            let record = try? last.payload.withUnsafeBytes({ buffer throws(FpindexError) in try LifecycleRecord.decode(payload: buffer) })
        {
            runtime.catalog.apply(index: index, operation: record.op, sequence: last.sequence)
        }
        return nil
    }
}

/// Compares secrets without leaking where they differ through timing.
func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for i in 0..<a.count { difference |= a[i] ^ b[i] }
    return difference == 0
}
