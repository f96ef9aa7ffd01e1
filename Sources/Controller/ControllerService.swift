import Foundation
import FpindexAPI
import Hummingbird
import Kubernetes
import Logging
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle
import Synchronization

/// Settings of fpindex-controller (flags and environment are folded into this by the executable).
public struct ControllerConfiguration: Sendable {
    /// Watch one namespace (`--namespace`), or all when nil.
    public var namespace: String?
    /// Leader election (`--leader-elect`), nil to act without it.
    public var leaderElection: LeaderElector.Settings?
    /// Probes and metrics address (`--metrics-listen`, env METRICS_LISTEN; default 0.0.0.0:8080).
    public var metricsHost = "0.0.0.0"
    public var metricsPort = 8080
    /// Every cluster is reconciled at least this often, ±10 % (`--resync`; default 60 s).
    public var resync: Duration = .seconds(60)
    /// Concurrent reconciles (of different clusters).
    public var workers = 2
    /// Watches end after this long and resume (bounded `timeoutSeconds`).
    public var watchTimeout: Duration = .seconds(300)
    public var reconciler = ReconcilerSettings()
    /// A process-unique name: the lease holder and the events' reporting instance.
    public var identity: String

    public init(identity: String) { self.identity = identity }
}

/// Whether the controller is alive and ready, for the probes.
final class ControllerState: Sendable {
    private struct State {
        var waitingForLeadership = false
        var synced = false
        var shuttingDown = false
    }
    private let state = Mutex(State())

    func set(waiting: Bool) { state.withLock { $0.waitingForLeadership = waiting } }
    func markSynced() { state.withLock { $0.synced = true } }
    func markShuttingDown() { state.withLock { $0.shuttingDown = true } }
    /// Ready while standing by for leadership, or leading with the cluster list synced.
    var isReady: Bool { state.withLock { !$0.shuttingDown && ($0.waitingForLeadership || $0.synced) } }
}

/// Builds the controller's services in dependency order: the probes and metrics server first
/// (it answers until the end), then the controller (on SIGTERM its workers finish their key,
/// then the lease is released for a fast takeover).
public func buildControllerServices(
    configuration: ControllerConfiguration, kubernetes: KubernetesClient, registry: PrometheusCollectorRegistry,
    logger: Logger, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) throws -> [any ServiceLifecycle.Service] {
    let metrics = ControllerMetrics(factory: PrometheusMetricsFactory(registry: registry))
    let state = ControllerState()
    let router = Router()
    router.get(RouterPath(ProbePath.health)) { _, _ in "OK\n" }
    let readiness: @Sendable (Request, BasicRequestContext) async throws -> Response = { _, _ in
        let ready = state.isReady
        return Response(
            status: ready ? .ok : .serviceUnavailable, headers: [.contentType: "text/plain; charset=UTF-8"],
            body: .init(byteBuffer: ByteBuffer(string: ready ? "OK\n" : "NOT READY\n")))
    }
    router.get(RouterPath(ProbePath.ready), use: readiness)
    router.get(RouterPath(ProbePath.legacyReady), use: readiness)
    router.get(RouterPath(ProbePath.metrics)) { _, _ -> Response in
        var bytes: [UInt8] = []
        registry.emit(into: &bytes)
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
    let app = Application(
        router: router,
        configuration: ApplicationConfiguration(
            address: .hostname(configuration.metricsHost, port: configuration.metricsPort),
            serverName: "fpindex-controller"),
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? configuration.metricsPort) },
        logger: logger)
    let nats = try NATSConnections(kubernetes: kubernetes, logger: logger)
    let events = EventRecorder(kubernetes: kubernetes, instance: configuration.identity, logger: logger)
    let reconciler = Reconciler(
        kubernetes: kubernetes, nats: nats, events: events, settings: configuration.reconciler, logger: logger)
    let elector = configuration.leaderElection.map {
        LeaderElector(kubernetes: kubernetes, settings: $0, logger: logger)
    }
    let controller = ControllerService(
        configuration: configuration, kubernetes: kubernetes, reconciler: reconciler, nats: nats, elector: elector,
        metrics: metrics, state: state, logger: logger)
    return [app, controller]
}

/// The control loop: watches, the work queue, the workers and the resync.
public struct ControllerService: ServiceLifecycle.Service, Sendable {
    let configuration: ControllerConfiguration
    let kubernetes: KubernetesClient
    let reconciler: Reconciler
    let nats: NATSConnections
    let elector: LeaderElector?
    let metrics: ControllerMetrics
    let state: ControllerState
    let logger: Logger
    let queue = WorkQueue()

    /// Why one of the controller's concurrent tasks returned.
    private enum Ending {
        case workersFinished
        case shutdownRequested
        /// A background loop (a watch, the timers, the resync, leadership renewal) returned:
        /// only on cancellation, which shutdown brings; the others carry on meanwhile.
        case backgroundLoopReturned
    }

    public func run() async throws {
        defer { state.markShuttingDown() }
        if let elector {
            state.set(waiting: true)
            do {
                try await cancelWhenGracefulShutdown { try await elector.acquire() }
            } catch is CancellationError {
                await nats.closeAll()
                return  // Shut down while standing by.
            }
            state.set(waiting: false)
        }
        // Acting: the Lease is ours, or this is the only controller (no leader election), which
        // acts as the leader does: the "no leader" alert reads this gauge.
        metrics.leader.record(1)
        do {
            try await withThrowingTaskGroup(of: Ending.self) { group in
                if let elector {
                    group.addTask {
                        try await elector.holdLeadership()
                        return .backgroundLoopReturned
                    }
                }
                group.addTask {
                    await queue.runTimers()
                    return .backgroundLoopReturned
                }
                group.addTask {
                    try await watchClusters()
                    return .backgroundLoopReturned
                }
                for (type, selector) in Self.childWatches {
                    group.addTask {
                        try await watchChildren(type, labelSelector: selector)
                        return .backgroundLoopReturned
                    }
                }
                group.addTask {
                    try await resyncLoop()
                    return .backgroundLoopReturned
                }
                group.addTask {
                    await withTaskGroup(of: Void.self) { workers in
                        for _ in 0..<max(1, configuration.workers) { workers.addTask { await work() } }
                    }
                    return .workersFinished
                }
                group.addTask {
                    try? await gracefulShutdown()
                    return .shutdownRequested
                }
                while let ending = try await group.next() {
                    switch ending {
                    case .shutdownRequested:
                        logger.info("shutting down: finishing the reconciles in flight")
                        state.markShuttingDown()
                        await queue.shutDown()
                    case .workersFinished:
                        group.cancelAll()
                        return
                    case .backgroundLoopReturned:
                        continue
                    }
                }
            }
        } catch let error as LeaderElector.LostLeadership {
            metrics.leader.record(0)
            logger.critical("lost leadership; stopping", metadata: ["reason": "\(error)"])
            await nats.closeAll()
            throw error
        }
        metrics.leader.record(0)
        await elector?.release()
        await nats.closeAll()
    }

    /// Owned children, watched by the label every child carries.
    static let childWatches: [(ResourceType, String)] = [
        (.statefulSets, "\(ClusterModel.managedByLabel)=\(ClusterModel.managedBy)"),
        (.deployments, "\(ClusterModel.managedByLabel)=\(ClusterModel.managedBy)"),
        (.services, "\(ClusterModel.managedByLabel)=\(ClusterModel.managedBy)"),
        (.podDisruptionBudgets, "\(ClusterModel.managedByLabel)=\(ClusterModel.managedBy)"),
        (.networkPolicies, "\(ClusterModel.managedByLabel)=\(ClusterModel.managedBy)"),
        (.pods, "\(ClusterModel.managedByLabel)=\(ClusterModel.managedBy),\(ClusterModel.componentLabel)=index"),
    ]

    func work() async {
        while let key = await queue.get() {
            let started = ContinuousClock.now
            do {
                let result = try await reconciler.reconcile(namespace: key.namespace, name: key.name)
                await queue.forget(key)
                metrics.reconcileSuccess.increment()
                metrics.record(result, for: key)
                if let after = result.requeueAfter { await queue.add(key, after: after) }
            } catch let error as KubernetesError where error.reason == .conflict {
                metrics.reconcileConflict.increment()
                logger.debug("conflict; reconciling again", metadata: ["cluster": "\(key)"])
                await queue.add(key, after: .milliseconds(100))
            } catch is CancellationError {
                await queue.done(key)
                return
            } catch {
                metrics.reconcileError.increment()
                let failures = await queue.failureCount(key)
                logger.log(
                    level: failures > 3 ? .warning : .info, "reconcile failed; backing off",
                    metadata: ["cluster": "\(key)", "error": "\(error)", "failures": "\(failures + 1)"])
                await queue.addRateLimited(key)
            }
            metrics.reconcileDuration.record(duration: ContinuousClock.now - started)
            await queue.done(key)
            metrics.queueDepth.record(await queue.depth)
        }
    }

    func key(of object: DynamicObject, instanceLabel: Bool) -> ObjectKey? {
        guard let namespace = object.namespace else { return nil }
        if instanceLabel {
            guard let name = object.json[path: ["metadata", "labels", ClusterModel.instanceLabel]]?.string else {
                return nil
            }
            return ObjectKey(namespace: namespace, name: name)
        }
        return object.name.map { ObjectKey(namespace: namespace, name: $0) }
    }

    func watchClusters() async throws {
        try await keepWatching(FpindexCluster.resourceType, labelSelector: nil) { event in
            switch event {
            case .synced(let items, _):
                for item in items { if let key = key(of: item, instanceLabel: false) { await queue.add(key) } }
                state.markSynced()
            case .added(let item), .modified(let item):
                if let key = key(of: item, instanceLabel: false) { await queue.add(key) }
            case .deleted(let item):
                if let key = key(of: item, instanceLabel: false) {
                    metrics.remove(key)
                    await queue.add(key)
                }
            }
        }
    }

    func watchChildren(_ type: ResourceType, labelSelector: String) async throws {
        try await keepWatching(type, labelSelector: labelSelector) { event in
            switch event {
            case .synced(let items, _):
                for key in Set(items.compactMap { key(of: $0, instanceLabel: true) }) { await queue.add(key) }
            case .added(let item), .modified(let item), .deleted(let item):
                if let key = key(of: item, instanceLabel: true) { await queue.add(key) }
            }
        }
    }

    /// A list-watch that never gives up: a persistent failure (a missing CRD, lost permissions)
    /// is logged and retried after a pause instead of stopping the controller.
    func keepWatching(
        _ type: ResourceType, labelSelector: String?, _ handle: (ListWatchEvent<DynamicObject>) async -> Void
    ) async throws {
        let resource = type.resource
        while !Task.isCancelled {
            let watch = kubernetes.listWatch(
                type, namespace: configuration.namespace, labelSelector: labelSelector, as: DynamicObject.self,
                watchTimeout: configuration.watchTimeout
            ) { reason in metrics.watchRestarted(resource: resource, reason: reason.rawValue) }
            do {
                for try await event in watch { await handle(event) }
            } catch is CancellationError {
                return
            } catch {
                metrics.watchRestarted(resource: resource, reason: "error")
                logger.error("cannot watch \(type); retrying", metadata: ["error": "\(error)"])
                try await Task.sleep(for: .seconds(10))
            }
        }
    }

    /// Every cluster is reconciled periodically: JetStream changes make no watch events.
    func resyncLoop() async throws {
        while !Task.isCancelled {
            let jitter = Double.random(in: 0.9...1.1)
            try await Task.sleep(for: configuration.resync * jitter)
            do {
                let clusters = try await kubernetes.listAll(
                    FpindexCluster.resourceType, namespace: configuration.namespace, as: DynamicObject.self)
                for item in clusters.items { if let key = key(of: item, instanceLabel: false) { await queue.add(key) } }
            } catch {
                logger.warning("resync list failed", metadata: ["error": "\(error)"])
            }
        }
    }
}
