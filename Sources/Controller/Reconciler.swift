import Foundation
import JetStream
import Kubernetes
import Logging

/// Settings of the reconciler.
public struct ReconcilerSettings: Sendable {
    /// Field manager name on every write.
    public var fieldManager = "fpindex-controller"
    /// How often lag is re-read while a replica is not caught up (lag makes no watch event).
    public var lagRefresh: Duration = .seconds(2)
    /// How often a caught-up cluster's status (stream sequence, lag) is refreshed: writes make
    /// no watch event either, and `kubectl get fpc` should not be a minute behind.
    public var statusRefresh: Duration = .seconds(10)
    /// Pending messages without acknowledged progress for this long: `Stalled`.
    public var stallAfter: Duration = .seconds(300)
    /// Deletion waits this long for NATS before releasing the finalizer anyway.
    public var finalizerTimeout: Duration = .seconds(120)
    /// Log the actions instead of carrying them out (status is still computed, not written).
    public var dryRun = false

    public init() {}
}

/// What a reconcile asks of the queue.
public struct ReconcileResult: Sendable, Equatable {
    /// Come back after this long even without a watch event (nil: the periodic resync).
    public var requeueAfter: Duration?
    /// The cluster's max lag after this reconcile (for the metric), nil when unknown or deleted.
    public var maxLag: Int? = nil
    /// Whether the cluster's Ready condition is True (for the metric), nil when deleted.
    public var ready: Bool? = nil
    /// The stream's size and limit (for the metrics), nil when it was not seen.
    public var stream: StreamUsage? = nil
}

/// Reconciles one FpindexCluster: observe (reads only), plan (pure), apply (the only writer),
/// then the status. Level-based: everything is read afresh; nothing trusts a watch event.
public final class Reconciler: Sendable {
    let kubernetes: KubernetesClient
    let nats: NATSConnections
    let events: EventRecorder
    let settings: ReconcilerSettings
    let logger: Logger
    let now: @Sendable () -> Date

    public init(
        kubernetes: KubernetesClient, nats: NATSConnections, events: EventRecorder, settings: ReconcilerSettings,
        logger: Logger, now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.kubernetes = kubernetes
        self.nats = nats
        self.events = events
        self.settings = settings
        self.logger = logger
        self.now = now
    }

    public func reconcile(namespace: String, name: String) async throws -> ReconcileResult {
        let cluster: FpindexCluster
        do {
            cluster = try await kubernetes.get(FpindexCluster.self, namespace: namespace, name: name)
        } catch let error as KubernetesError where error.reason == .notFound {
            return ReconcileResult(requeueAfter: nil)  // Deleted: owner references clean up the rest.
        }
        let model = ClusterModel(cluster)
        let problems = model.specProblems
        let desired = problems.isEmpty ? DesiredChildren(model: model, spec: cluster.spec) : nil
        var observed = try await observe(cluster, model: model, natsUsable: !model.natsURL.isEmpty)

        let deletingSince = cluster.metadata.deletionTimestamp.flatMap(KubernetesTime.parse)
        let expired = deletingSince.map { now().timeIntervalSince($0) > Double(settings.finalizerTimeout.components.seconds) } ?? false
        let actions = Planner.plan(model: model, desired: desired, observed: observed, finalizerExpired: expired)
        if !actions.isEmpty {
            logger.debug("plan", metadata: ["cluster": "\(namespace)/\(name)", "actions": "\(actions)"])
        }
        var outcome = ApplyOutcome()
        if settings.dryRun {
            for action in actions { logger.info("dry run: would \(action)", metadata: ["cluster": "\(namespace)/\(name)"]) }
        } else {
            outcome = try await apply(actions, model: model, observed: observed)
        }
        if !problems.isEmpty {
            await events.record(
                .warning, reason: "InvalidSpec", action: "Reconcile", note: problems.joined(separator: "; "),
                regarding: model)
        }

        if cluster.metadata.deletionTimestamp != nil {
            if case .unavailable = observed.jetStream, !expired {
                return ReconcileResult(requeueAfter: settings.lagRefresh)
            }
            return ReconcileResult(requeueAfter: nil)
        }

        // Status, from what was observed and what applying ran into; JetStream is read again
        // after changes to it, so a new stream or consumer shows at once.
        if outcome.changed, case .seen = observed.jetStream { observed.jetStream = await observeJetStream(model) }
        let status = StatusCalculator.compute(
            model: model, observed: observed, outcome: outcome, specProblems: problems, now: now(),
            stallAfter: settings.stallAfter)
        if !settings.dryRun { try await writeStatus(status, previous: cluster.status, model: model) }

        var lagging = status.replicaStatus?.contains { !$0.caughtUp } ?? false
        if case .unavailable = observed.jetStream { lagging = true }
        let converging = outcome.changed || lagging || (status.readyReplicas ?? 0) < model.replicas
        var streamUsage: StreamUsage?
        if case .seen(let stream?, _) = observed.jetStream { streamUsage = StreamUsage(stream: stream, account: observed.account) }
        return ReconcileResult(
            requeueAfter: model.paused ? nil : converging ? settings.lagRefresh : settings.statusRefresh, maxLag: status.maxLag,
            ready: status.conditions?.contains { $0.type == "Ready" && $0.status == "True" } ?? false, stream: streamUsage)
    }

    // MARK: Observe

    func observe(_ cluster: FpindexCluster, model: ClusterModel, natsUsable: Bool) async throws -> Observed {
        var children: [ChildRole: JSONValue] = [:]
        var foreign: Set<ChildRole> = []
        for role in ChildRole.allCases {
            do {
                let object = try await kubernetes.get(
                    role.resourceType, namespace: model.namespace, name: role.name(model), as: DynamicObject.self)
                // Another owner's object of the same name is not ours to change; an orphan is adopted.
                let owners = object.json[path: ["metadata", "ownerReferences"]]?.array ?? []
                if owners.isEmpty || owners.contains(where: { $0["uid"]?.string == model.uid }) {
                    children[role] = object.json
                } else {
                    foreign.insert(role)
                }
            } catch let error as KubernetesError where error.reason == .notFound {
                continue
            }
        }
        let pods = try await kubernetes.list(
            Pod.self, namespace: model.namespace,
            options: ListOptions(labelSelector: "\(ClusterModel.instanceLabel)=\(model.name),\(ClusterModel.componentLabel)=index")
        ).items
        let jetStream: JetStreamObservation
        if natsUsable {
            jetStream = await observeJetStream(model)
        } else {
            jetStream = .unavailable("spec.nats.url is not set")
        }
        var observed = Observed(cluster: cluster, children: children, foreign: foreign, pods: pods, jetStream: jetStream)
        if case .seen(_?, _) = jetStream {
            // Only for the storage gauge: a server that does not answer leaves it unknown.
            observed.account = try? await JetStreamAccountUsage.read(try await nats.client(for: model))
        }
        return observed
    }

    func observeJetStream(_ model: ClusterModel) async -> JetStreamObservation {
        do {
            let client = try await nats.client(for: model)
            guard let stream = try await client.streamInfo(model.streamName) else {
                return .seen(stream: nil, consumers: [:])
            }
            var consumers: [String: ConsumerInfo] = [:]
            for name in try await client.consumerNames(stream: model.streamName) where model.ordinal(of: name) != nil {
                if let info = try await client.consumerInfo(stream: model.streamName, name: name) {
                    consumers[name] = info
                }
            }
            return .seen(stream: stream, consumers: consumers)
        } catch {
            await nats.dropBrokenConnections()
            return .unavailable("\(error)")
        }
    }

    // MARK: Apply

    /// Carries out the plan's actions in order. No decisions here: each action says what to
    /// write; this only writes it, records its Event, and notes what went wrong.
    func apply(_ actions: [Action], model: ClusterModel, observed: Observed) async throws -> ApplyOutcome {
        var outcome = ApplyOutcome()
        let cluster = "\(model.namespace)/\(model.name)"
        for role in observed.foreign.sorted(by: { $0.rawValue < $1.rawValue }) {
            let note = "\(role.resourceType.kind) \(role.name(model)) exists and belongs to another owner; leaving it alone"
            outcome.failures.append(note)
            await events.record(.warning, reason: "NotOwned", action: "Reconcile", note: note, regarding: model)
        }
        for action in actions {
            do {
                switch action {
                case .addFinalizer: try await addFinalizer(observed.cluster)
                case .removeFinalizer(let release): try await removeFinalizer(observed.cluster, release, model: model)
                case .cleanUpJetStream(let consumers, let deleteStream):
                    try await cleanUpJetStream(consumers: consumers, deleteStream: deleteStream, model: model)
                case .ensureStream(let settings, let exists):
                    try await ensureStream(settings, exists: exists, model: model, outcome: &outcome)
                case .createConsumer(let config): try await createConsumer(config, model: model, outcome: &outcome)
                case .updateConsumer(let config, _): try await updateConsumer(config, model: model, outcome: &outcome)
                case .recreateConsumer(let config, let resumeAfter, let fields):
                    try await recreateConsumer(config, resumeAfter: resumeAfter, fields: fields, model: model, outcome: &outcome)
                case .deleteConsumer(let name): try await deleteConsumer(name, model: model, outcome: &outcome)
                case .createChild(let role, let object): try await createChild(role, object, model: model, outcome: &outcome)
                case .patchChild(let role, let patch, let scale):
                    try await patchChild(role, patch, scale: scale, model: model, outcome: &outcome)
                case .deleteChild(let role): try await deleteChild(role, model: model, outcome: &outcome)
                }
            } catch let error as KubernetesError where error.reason == .conflict {
                throw error  // Someone else wrote first: re-read and decide again.
            } catch let error as KubernetesError where !error.isTransient {
                outcome.failures.append("\(action): \(error.message)")
                await events.record(
                    .warning, reason: "ReconcileFailed", action: "Reconcile", note: "\(action): \(error.message)",
                    regarding: model)
            } catch let error as ControllerError {
                outcome.failures.append(error.description)
                logger.warning("cannot reach NATS", metadata: ["cluster": "\(cluster)", "error": "\(error)"])
            } catch let error as JetStreamError {
                outcome.failures.append("\(action): \(error.message)")
                await nats.dropBrokenConnections()
                logger.warning("JetStream request failed", metadata: ["cluster": "\(cluster)", "error": "\(error)"])
            }
        }
        return outcome
    }

    func cleanUpJetStream(consumers: [String], deleteStream: Bool, model: ClusterModel) async throws {
        let client = try await nats.client(for: model)
        for name in consumers { try await client.deleteConsumer(stream: model.streamName, name: name) }
        if deleteStream { try await client.deleteStream(model.streamName) }
        await events.record(
            .normal, reason: "JetStreamReleased", action: "Delete",
            note: "deleted \(consumers.count) consumer(s)"
                + (deleteStream ? " and stream \(model.streamName)" : "; stream \(model.streamName) retained"),
            regarding: model)
    }

    /// A stream whose configuration JetStream refuses to change is reported in the status, not retried.
    func ensureStream(_ settings: StreamSettings, exists: Bool, model: ClusterModel, outcome: inout ApplyOutcome) async throws {
        let client = try await nats.client(for: model)
        do {
            try await client.ensureStream(settings)
            outcome.changed = true
            await events.record(
                .normal, reason: exists ? "StreamUpdated" : "StreamCreated", action: "Reconcile",
                note: "stream \(settings.name) (\(settings.subjectPrefix).>, \(settings.replicas) replica(s))", regarding: model)
        } catch let error as JetStreamError {
            guard case .configurationMismatch = error.kind else { throw error }
            outcome.streamError = error.message
            await events.record(.warning, reason: "StreamConfigRejected", action: "Reconcile", note: error.message, regarding: model)
        }
    }

    func createConsumer(_ config: ConsumerConfig, model: ClusterModel, outcome: inout ApplyOutcome) async throws {
        _ = try await nats.client(for: model).createConsumer(stream: model.streamName, config: config)
        outcome.changed = true
        await events.record(
            .normal, reason: "ConsumerCreated", action: "Reconcile", note: "consumer \(config.durableName)", regarding: model)
    }

    func updateConsumer(_ config: ConsumerConfig, model: ClusterModel, outcome: inout ApplyOutcome) async throws {
        _ = try await nats.client(for: model).createConsumer(stream: model.streamName, config: config)
        outcome.changed = true
        await events.record(
            .normal, reason: "ConsumerUpdated", action: "Reconcile", note: "consumer \(config.durableName) repaired",
            regarding: model)
    }

    func recreateConsumer(
        _ config: ConsumerConfig, resumeAfter: UInt64, fields: [String], model: ClusterModel, outcome: inout ApplyOutcome
    ) async throws {
        let client = try await nats.client(for: model)
        try await client.deleteConsumer(stream: model.streamName, name: config.durableName)
        _ = try await client.createConsumer(stream: model.streamName, config: config)
        outcome.changed = true
        await events.record(
            .warning, reason: "ConsumerReset", action: "Reconcile",
            note:
                "consumer \(config.durableName) had \(fields.joined(separator: ", ")) JetStream cannot change; recreated from sequence \(resumeAfter + 1)",
            regarding: model)
    }

    func deleteConsumer(_ name: String, model: ClusterModel, outcome: inout ApplyOutcome) async throws {
        try await nats.client(for: model).deleteConsumer(stream: model.streamName, name: name)
        outcome.changed = true
        await events.record(
            .normal, reason: "ConsumerDeleted", action: "Scale", note: "consumer \(name) of a scaled-away replica", regarding: model)
    }

    func createChild(_ role: ChildRole, _ object: JSONValue, model: ClusterModel, outcome: inout ApplyOutcome) async throws {
        _ = try await kubernetes.create(
            role.resourceType, namespace: model.namespace, body: object, fieldManager: settings.fieldManager,
            as: DynamicObject.self)
        outcome.changed = true
        await events.record(
            .normal, reason: "Created", action: "Create", note: "\(role.resourceType.kind) \(role.name(model))", regarding: model)
    }

    func patchChild(_ role: ChildRole, _ patch: JSONValue, scale: ReplicaChange?, model: ClusterModel, outcome: inout ApplyOutcome)
        async throws
    {
        _ = try await kubernetes.patch(
            role.resourceType, namespace: model.namespace, name: role.name(model), patch: .merge(patch),
            fieldManager: settings.fieldManager, as: DynamicObject.self)
        outcome.changed = true
        if role == .statefulSet, let scale {
            await events.record(
                .normal, reason: "Scaled", action: "Scale", note: "index replicas \(scale.from) -> \(scale.to)", regarding: model)
        } else {
            await events.record(
                .normal, reason: "Updated", action: "Update", note: "\(role.resourceType.kind) \(role.name(model))",
                regarding: model)
        }
    }

    func deleteChild(_ role: ChildRole, model: ClusterModel, outcome: inout ApplyOutcome) async throws {
        do {
            try await kubernetes.delete(role.resourceType, namespace: model.namespace, name: role.name(model))
        } catch let error as KubernetesError where error.reason == .notFound {
            return
        }
        outcome.changed = true
        await events.record(
            .normal, reason: "Deleted", action: "Delete", note: "\(role.resourceType.kind) \(role.name(model))", regarding: model)
    }

    func addFinalizer(_ cluster: FpindexCluster) async throws {
        guard let name = cluster.metadata.name else { return }
        var operations = [
            JSONPatchOperation(op: "test", path: "/metadata/resourceVersion", value: .string(cluster.metadata.resourceVersion ?? ""))
        ]
        if cluster.metadata.finalizers == nil {
            operations.append(JSONPatchOperation(op: "add", path: "/metadata/finalizers", value: [.string(ClusterModel.finalizer)]))
        } else {
            operations.append(JSONPatchOperation(op: "add", path: "/metadata/finalizers/-", value: .string(ClusterModel.finalizer)))
        }
        _ = try await kubernetes.patch(
            FpindexCluster.self, namespace: cluster.metadata.namespace, name: name, patch: .json(operations),
            fieldManager: settings.fieldManager)
    }

    func removeFinalizer(_ cluster: FpindexCluster, _ release: FinalizerRelease, model: ClusterModel) async throws {
        try await removeFinalizer(cluster)
        switch release {
        case .jetStreamReleased:
            await events.record(.normal, reason: "Finalized", action: "Delete", note: release.note, regarding: model)
        case .natsUnreachable:
            await events.record(.warning, reason: "FinalizerReleased", action: "Delete", note: release.note, regarding: model)
        }
    }

    func removeFinalizer(_ cluster: FpindexCluster) async throws {
        guard let name = cluster.metadata.name,
            let index = cluster.metadata.finalizers?.firstIndex(of: ClusterModel.finalizer)
        else { return }
        let operations = [
            JSONPatchOperation(op: "test", path: "/metadata/finalizers/\(index)", value: .string(ClusterModel.finalizer)),
            JSONPatchOperation(op: "remove", path: "/metadata/finalizers/\(index)"),
        ]
        do {
            _ = try await kubernetes.patch(
                FpindexCluster.self, namespace: cluster.metadata.namespace, name: name, patch: .json(operations),
                fieldManager: settings.fieldManager)
        } catch let error as KubernetesError where error.reason == .notFound {
            return  // Already gone: done.
        }
    }

    /// Merge-patches `/status` with exactly what changed (nulls for what went away); nothing
    /// when the status is unchanged, so a converged cluster causes no writes.
    func writeStatus(_ status: FpindexCluster.ClusterStatus, previous: FpindexCluster.ClusterStatus?, model: ClusterModel)
        async throws
    {
        let new = try JSONValue(encoding: status)
        let old = try previous.map { try JSONValue(encoding: $0) } ?? .object([:])
        guard let patch = old.mergePatch(to: new) else { return }
        do {
            _ = try await kubernetes.patch(
                FpindexCluster.resourceType, namespace: model.namespace, name: model.name,
                patch: .merge(["status": patch]), subresource: "status", fieldManager: settings.fieldManager,
                as: DynamicObject.self)
        } catch let error as KubernetesError where error.reason == .notFound {
            return
        }
    }
}
