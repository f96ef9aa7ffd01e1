import FpindexAPI
import JetStream
import Kubernetes
import ReplicaConsumer

/// One change the reconciler makes, carrying everything needed to make it: `plan` decides
/// (pure), `apply` only carries out, with no decision of its own.
public enum Action: Sendable, Equatable {
    case addFinalizer
    /// Deletes the replicas' consumers and, with `deleteStream`, the stream: the finalizer's work.
    case cleanUpJetStream(consumers: [String], deleteStream: Bool)
    case removeFinalizer(FinalizerRelease)
    /// Creates the stream (`exists` false) or updates it to `settings`.
    case ensureStream(StreamSettings, exists: Bool)
    case createConsumer(ConsumerConfig)
    /// Updatable fields (ack wait, max ack pending) differ: `config` is the consumer with them repaired.
    case updateConsumer(ConsumerConfig, fields: [String])
    /// Fields JetStream cannot update (filter, ack policy) differ: recreate as `config`, which
    /// delivers from just after the old consumer's ack floor `resumeAfter`.
    case recreateConsumer(ConsumerConfig, resumeAfter: UInt64, fields: [String])
    case deleteConsumer(String)
    /// Creates a child from its encoded object.
    case createChild(ChildRole, object: JSONValue)
    /// Merge-patches a child with its wanted fields; `scale` when its replica count changes.
    case patchChild(ChildRole, patch: JSONValue, scale: ReplicaChange?)
    /// Deletes a child the spec no longer wants (a NetworkPolicy turned off).
    case deleteChild(ChildRole)
}

/// Why the finalizer is released, which the cluster's Event says.
public enum FinalizerRelease: Sendable, Equatable {
    /// The consumers (and the stream, under `deletionPolicy: Delete`) are gone.
    case jetStreamReleased
    /// NATS stayed unreachable past the bound: deletion goes on, JetStream resources stay behind.
    case natsUnreachable

    public var note: String {
        switch self {
        case .jetStreamReleased: "JetStream resources released"
        case .natsUnreachable: "NATS unreachable for too long; JetStream resources left behind"
        }
    }
}

/// A workload's replica count going from one value to another.
public struct ReplicaChange: Sendable, Equatable {
    public var from: Int
    public var to: Int
}

extension Action: CustomStringConvertible {
    /// One line for logs and tests: what is done to what, without the objects' contents.
    public var description: String {
        switch self {
        case .addFinalizer: "addFinalizer"
        case .cleanUpJetStream(let consumers, let deleteStream):
            "cleanUpJetStream(\(consumers.joined(separator: ",")), deleteStream: \(deleteStream))"
        case .removeFinalizer(let release): "removeFinalizer(\(release))"
        case .ensureStream(let settings, let exists): "\(exists ? "updateStream" : "createStream")(\(settings.name))"
        case .createConsumer(let config): "createConsumer(\(config.durableName))"
        case .updateConsumer(let config, let fields): "updateConsumer(\(config.durableName), \(fields.joined(separator: ",")))"
        case .recreateConsumer(let config, let resumeAfter, let fields):
            "recreateConsumer(\(config.durableName), after: \(resumeAfter), \(fields.joined(separator: ",")))"
        case .deleteConsumer(let name): "deleteConsumer(\(name))"
        case .createChild(let role, _): "createChild(\(role.rawValue))"
        case .patchChild(let role, _, let scale):
            "patchChild(\(role.rawValue)\(scale.map { ", replicas \($0.from) -> \($0.to)" } ?? ""))"
        case .deleteChild(let role): "deleteChild(\(role.rawValue))"
        }
    }
}

/// Decides what to change. Pure: everything it needs is in its arguments.
public enum Planner {
    /// The consumer the updater of replica `name` expects.
    public static func consumerConfig(_ model: ClusterModel, name: String, startSequence: UInt64? = nil) -> ConsumerConfig {
        ReplicaConsumer.config(name: name, subjectPrefix: model.subjectPrefix, batch: model.batchSize, startSequence: startSequence)
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
                if ours.isEmpty && !deleteStream { return [.removeFinalizer(.jetStreamReleased)] }
                return [.cleanUpJetStream(consumers: ours, deleteStream: deleteStream), .removeFinalizer(.jetStreamReleased)]
            case .unavailable:
                return finalizerExpired ? [.removeFinalizer(.natsUnreachable)] : []
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
                if !StreamConfig(desired.stream).differences(from: stream.config).isEmpty {
                    actions.append(.ensureStream(desired.stream, exists: true))
                }
            } else {
                actions.append(.ensureStream(desired.stream, exists: false))
            }
            for name in desired.consumers {
                let wanted = consumerConfig(model, name: name)
                guard let existing = consumers[name] else {
                    actions.append(.createConsumer(wanted))
                    continue
                }
                var drift = ReplicaConsumer.drift(existing.config, wanted: wanted)
                // Made ephemeral (a create request on the ephemeral subject naming it, which the
                // proxies' NATS user may send): it would be gone after a server restart. Created
                // again with its durable name, it is durable again, its state kept.
                if !existing.isDurable { drift.updatable.append("durable_name") }
                if !drift.immutable.isEmpty {
                    let resumeAfter = existing.ackFloor.streamSeq
                    let replacement = consumerConfig(model, name: name, startSequence: resumeAfter > 0 ? resumeAfter + 1 : nil)
                    actions.append(.recreateConsumer(replacement, resumeAfter: resumeAfter, fields: drift.immutable))
                } else if !drift.updatable.isEmpty {
                    actions.append(.updateConsumer(ReplicaConsumer.repaired(existing.config, wanted: wanted), fields: drift.updatable))
                }
            }
        }

        // Children whose wanted fields are not all present are written (created or patched).
        var jetStreamSeen = false
        if case .seen = observed.jetStream { jetStreamSeen = true }
        for role in ChildRole.allCases where !observed.foreign.contains(role) {
            let wanted: JSONValue
            do {
                guard let object = try role.desired(desired) else {
                    if observed.children[role] != nil { actions.append(.deleteChild(role)) }
                    continue
                }
                wanted = object
            } catch {
                continue
            }
            // Without JetStream the consumers of new replicas cannot be made: the StatefulSet
            // must not grow (or appear) before them, so no pod starts without its consumer.
            if role == .statefulSet, !jetStreamSeen {
                let current = observed.children[role]?[path: ["spec", "replicas"]]?.int
                guard let current, current >= model.replicas else { continue }
            }
            if let current = observed.children[role] {
                guard !wanted.isSubset(of: current) else { continue }
                var scale: ReplicaChange?
                if let from = current[path: ["spec", "replicas"]]?.int, let to = wanted[path: ["spec", "replicas"]]?.int, from != to {
                    scale = ReplicaChange(from: from, to: to)
                }
                actions.append(.patchChild(role, patch: wanted, scale: scale))
            } else {
                actions.append(.createChild(role, object: wanted))
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
