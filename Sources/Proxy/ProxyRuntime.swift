import FpindexAPI
import JetStream
import Logging
import ServiceLifecycle
import Synchronization

/// What the proxy knows at run time: the NATS connection (once made), whether the stream is
/// verified, and the index catalog.
public final class ProxyRuntime: Sendable {
    public let catalog = IndexCatalog()
    let progress = ReplicaProgress()
    private let client = Mutex<NATSClient?>(nil)
    private let streamVerified = Mutex<StreamInfo?>(nil)

    public init() {}

    /// The connection, if made. Writes need it; without it they answer 503.
    func connectedClient() throws(FpindexError) -> NATSClient {
        guard let client = client.withLock({ $0 }), client.state == .connected else {
            throw FpindexError(.serviceUnavailable, "not connected to NATS")
        }
        return client
    }

    var stream: StreamInfo? { streamVerified.withLock { $0 } }

    /// Ready: connected, stream verified, catalog replayed.
    public var isReady: Bool {
        client.withLock { $0?.state == .connected } && stream != nil && catalog.isSynced
    }

    public var natsState: NATSClient.State? { client.withLock { $0?.state } }

    func attach(_ client: NATSClient) { self.client.withLock { $0 = client } }
    func verified(_ info: StreamInfo) { streamVerified.withLock { $0 = info } }

    func detach() -> NATSClient? {
        client.withLock { current in
            defer { current = nil }
            return current
        }
    }
}

/// Connects to NATS (retrying with capped backoff), verifies or creates the stream, keeps the
/// index catalog current, and on graceful shutdown waits for in-flight publishes and closes.
/// It runs before the HTTP server in the service group, so it stops after it.
public struct NATSConnectionService: Service, CustomStringConvertible {
    public var description: String { "NATSConnectionService" }

    let configuration: ProxyConfiguration
    let runtime: ProxyRuntime
    let logger: Logger

    public init(configuration: ProxyConfiguration, runtime: ProxyRuntime, logger: Logger) {
        self.configuration = configuration
        self.runtime = runtime
        self.logger = logger
    }

    public func run() async throws {
        let client = try await NATSClient.connectRetrying(
            configuration.nats, logger: logger, sleep: sleepUnlessShuttingDown,
            keepTrying: { !Task.isShuttingDownGracefully && !Task.isCancelled })
        guard let client else { return }
        runtime.attach(client)
        var subscription: Subscription?
        var progressSubscription: Subscription?
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                let info =
                    configuration.manageStream
                    ? try await client.ensureStream(configuration.stream) : try await client.verifyStream(configuration.stream)
                runtime.verified(info)
                subscription = try await followLifecycle(client)
                progressSubscription = try await followReplicaProgress(client)
                break
            } catch {
                logger.error("the stream is not usable yet; retrying in 10 s", metadata: ["error": "\(error)"])
                await sleepUnlessShuttingDown(.seconds(10))
            }
        }
        try? await gracefulShutdown()
        subscription?.cancel()
        progressSubscription?.cancel()
        if let client = runtime.detach() {
            await client.close()
        }
    }

    /// Listens to the applied sequences the updaters announce, for `replica` consistency.
    private func followReplicaProgress(_ client: NATSClient) async throws -> Subscription {
        let subjects = StreamSubjects(prefix: configuration.stream.subjectPrefix)
        let progress = runtime.progress
        return try await client.subscribe(subject: subjects.allApplied) { subject, payload in
            guard let replica = subjects.appliedConsumer(in: subject),
                let applied = UInt64(String(decoding: payload, as: UTF8.self))
            else { return }
            progress.observe(replica: replica, applied: applied)
        }
    }

    /// Follows the lifecycle records with an ordered consumer; the catalog is synced once the
    /// consumer has nothing pending (or there are no records at all).
    private func followLifecycle(_ client: NATSClient) async throws -> Subscription {
        let subjects = StreamSubjects(prefix: configuration.stream.subjectPrefix)
        let catalog = runtime.catalog
        let logger = self.logger
        let subscription = try await client.subscribeOrdered(stream: configuration.stream.name, filter: subjects.allLifecycle) {
            message, pending in
            guard case .lifecycle(let index)? = subjects.parse(message.subject),
                let record = try? message.payload.withUnsafeBytes({ buffer throws(FpindexError) in
                    try LifecycleRecord.decode(payload: buffer)
                })
            else {
                logger.warning(
                    "ignoring a malformed lifecycle record",
                    metadata: ["stream.subject": "\(message.subject)", "stream.seq": "\(message.sequence)"])
                return
            }
            catalog.apply(index: index, operation: record.op, sequence: message.sequence)
            if pending == 0 { catalog.markSynced() }
        }
        let info = try await client.streamInfo(configuration.stream.name, subjectsFilter: subjects.allLifecycle)
        if (info?.state.subjects ?? [:]).isEmpty {
            catalog.markSynced()
        }
        return subscription
    }
}

/// Sleeps, but wakes at once when graceful shutdown begins.
func sleepUnlessShuttingDown(_ duration: Duration) async {
    try? await cancelWhenGracefulShutdown { try await Task.sleep(for: duration) }
}
