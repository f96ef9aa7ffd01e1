import FpindexAPI
import JetStream
import Kubernetes

/// One change the reconciler makes. `plan` decides them (pure), `apply` carries them out.
public enum Action: Sendable, Equatable {
    case addFinalizer
    /// Deletes the replicas' consumers and, with `deleteStream`, the stream: the finalizer's work.
    case cleanUpJetStream(consumers: [String], deleteStream: Bool)
    case removeFinalizer(reason: String)
    case ensureStream
    case createConsumer(String)
    /// Updatable fields (ack wait, max ack pending) differ: update in place.
    case updateConsumer(String)
    /// Fields JetStream cannot update (filter, ack policy) differ: recreate from the ack floor.
    case recreateConsumer(String, resumeAfter: UInt64, fields: [String])
    case deleteConsumer(String)
    case createChild(ChildRole)
    case patchChild(ChildRole)
}

/// Decides what to change. Pure: everything it needs is in its arguments.
public enum Planner {
    /// The consumer the updater of `name` expects.
    public static func consumerConfig(_ model: ClusterModel, name: String) -> ConsumerConfig {
        ConsumerConfig(
            durableName: name, filterSubject: StreamSubjects(prefix: model.subjectPrefix).all, batch: model.batchSize)
    }

    /// Fields of an existing consumer that differ from what the updater needs; `immutable`
    /// ones need a new consumer.
    public static func consumerDrift(_ existing: ConsumerConfig, wanted: ConsumerConfig) -> (
        updatable: [String], immutable: [String]
    ) {
        var updatable: [String] = []
        var immutable: [String] = []
        if existing.filterSubject != wanted.filterSubject { immutable.append("filter_subject") }
        if existing.ackPolicy != wanted.ackPolicy { immutable.append("ack_policy") }
        if existing.maxAckPending < wanted.maxAckPending { updatable.append("max_ack_pending") }
        if existing.ackWait != wanted.ackWait { updatable.append("ack_wait") }
        if existing.maxDeliver != wanted.maxDeliver { updatable.append("max_deliver") }
        return (updatable, immutable)
    }

    /// - Parameters:
    ///   - desired: what the spec asks for (nil when the spec is unusable).
    ///   - finalizerExpired: deletion has waited longer than the bound for NATS.
    public static func plan(
        model: ClusterModel, desired: DesiredChildren?, observed: Observed, finalizerExpired: Bool
    ) -> [Action] {
        let cluster = observed.cluster
        let hasFinalizer = cluster.metadata.finalizers?.contains(ClusterModel.finalizer) ?? false

        // Deleting: only the finalizer's work is left; owner references remove the children.
        if cluster.metadata.deletionTimestamp != nil {
            guard hasFinalizer else { return [] }
            switch observed.jetStream {
            case .seen(let stream, let consumers):
                let ours = consumers.keys.filter { model.ordinal(of: $0) != nil }.sorted()
                let deleteStream = model.deletionPolicy == .delete && stream != nil
                if ours.isEmpty && !deleteStream { return [.removeFinalizer(reason: "JetStream resources released")] }
                return [
                    .cleanUpJetStream(consumers: ours, deleteStream: deleteStream),
                    .removeFinalizer(reason: "JetStream resources released"),
                ]
            case .unavailable:
                return finalizerExpired
                    ? [.removeFinalizer(reason: "NATS unreachable for too long; JetStream resources left behind")] : []
            }
        }
        if model.paused { return [] }
        guard let desired else { return hasFinalizer ? [] : [.addFinalizer] }
        var actions: [Action] = []
        if !hasFinalizer { actions.append(.addFinalizer) }

        // JetStream first: the stream, then consumers for every wanted replica, so no pod
        // starts without its consumer.
        if case .seen(let stream, let consumers) = observed.jetStream {
            if let stream {
                if !StreamConfig(desired.stream).differences(from: stream.config).isEmpty { actions.append(.ensureStream) }
            } else {
                actions.append(.ensureStream)
            }
            for name in desired.consumers {
                guard let existing = consumers[name] else {
                    actions.append(.createConsumer(name))
                    continue
                }
                let drift = consumerDrift(existing.config, wanted: consumerConfig(model, name: name))
                if !drift.immutable.isEmpty {
                    actions.append(.recreateConsumer(name, resumeAfter: existing.ackFloor.streamSeq, fields: drift.immutable))
                } else if !drift.updatable.isEmpty {
                    actions.append(.updateConsumer(name))
                }
            }
        }

        // Children whose wanted fields are not all present are written (created or patched).
        var jetStreamSeen = false
        if case .seen = observed.jetStream { jetStreamSeen = true }
        for role in ChildRole.allCases where !observed.foreign.contains(role) {
            guard let wanted = try? role.desired(desired) else { continue }
            // Without JetStream the consumers of new replicas cannot be made: the StatefulSet
            // must not grow (or appear) before them, so no pod starts without its consumer.
            if role == .statefulSet, !jetStreamSeen {
                let current = observed.children[role]?[path: ["spec", "replicas"]]?.int
                guard let current, current >= model.replicas else { continue }
            }
            if let current = observed.children[role] {
                if !wanted.isSubset(of: current) { actions.append(.patchChild(role)) }
            } else {
                actions.append(.createChild(role))
            }
        }

        // A scaled-away replica's consumer goes only once its pod is gone.
        if case .seen(_, let consumers) = observed.jetStream {
            let podNames = Set(observed.pods.compactMap(\.metadata.name))
            for name in consumers.keys.sorted() {
                guard let ordinal = model.ordinal(of: name), ordinal >= model.replicas else { continue }
                if !podNames.contains(name) { actions.append(.deleteConsumer(name)) }
            }
        }
        return actions
    }
}
