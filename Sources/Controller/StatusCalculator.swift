import Foundation
import JetStream
import Kubernetes

/// What applying the plan ran into, for the status.
public struct ApplyOutcome: Sendable, Equatable {
    /// A stream change JetStream refused (the message names the field).
    public var streamError: String?
    /// Other failures, e.g. a child the API server refused.
    public var failures: [String] = []
    /// Children or consumers were written this round.
    public var changed = false

    public init(streamError: String? = nil, failures: [String] = [], changed: Bool = false) {
        self.streamError = streamError
        self.failures = failures
        self.changed = changed
    }
}

/// Computes the status from what was observed. Pure; `now` is given.
public enum StatusCalculator {
    public static let conditionTypes = [
        "Ready", "StreamReady", "ProxyAvailable", "ReplicasCaughtUp", "Progressing", "Stalled", "Paused",
    ]

    public static func compute(
        model: ClusterModel, observed: Observed, outcome: ApplyOutcome, specProblems: [String], now: Date,
        stallAfter: Duration = .seconds(300)
    ) -> FpindexCluster.ClusterStatus {
        let previous = observed.cluster.status
        var status = FpindexCluster.ClusterStatus()
        status.observedGeneration = model.generation
        status.selector = model.indexSelector

        // Index pods and their readiness.
        let pods = observed.pods.filter { pod in pod.metadata.name.flatMap(model.ordinal(of:)) != nil }
        status.replicas = pods.count
        status.readyReplicas =
            pods.filter { pod in
                guard let ordinal = pod.metadata.name.flatMap(model.ordinal(of:)), ordinal < model.replicas else {
                    return false
                }
                return pod.metadata.deletionTimestamp == nil
                    && pod.status?.conditions?.contains { $0.type == "Ready" && $0.status == "True" } == true
            }.count

        // The proxy Deployment.
        let deployment = observed.proxyDeployment
        status.proxyReplicas = deployment?.status?.replicas ?? 0
        status.proxyReadyReplicas = deployment?.status?.availableReplicas ?? 0

        // JetStream: stream state and per-replica lag, with hysteresis.
        let nowText = KubernetesTime.format(now)
        var replicaStatus: [FpindexCluster.ReplicaStatus] = []
        var natsProblem: String?
        var streamInfo: StreamInfo?
        switch observed.jetStream {
        case .unavailable(let message):
            natsProblem = message
            status.stream = previous?.stream
            replicaStatus = previous?.replicaStatus ?? []
        case .seen(let stream, let consumers):
            streamInfo = stream
            if let stream {
                var streamStatus = FpindexCluster.StreamStatus()
                streamStatus.name = stream.config.name
                streamStatus.messages = Int64(clamping: stream.state.messages)
                streamStatus.bytes = Int64(clamping: stream.state.bytes)
                streamStatus.firstSeq = Int64(clamping: stream.state.firstSeq)
                streamStatus.lastSeq = Int64(clamping: stream.state.lastSeq)
                status.stream = streamStatus
            }
            for ordinal in 0..<model.replicas {
                let name = model.consumerName(ordinal: ordinal)
                let before = previous?.replicaStatus?.first { $0.name == model.podName(ordinal: ordinal) }
                var replica = FpindexCluster.ReplicaStatus(
                    name: model.podName(ordinal: ordinal), consumer: name, caughtUp: false)
                if let consumer = consumers[name] {
                    let pending = Int64(clamping: consumer.lag)
                    let floor = Int64(clamping: consumer.ackFloor.streamSeq)
                    replica.pending = pending
                    replica.ackFloor = floor
                    let wasCaughtUp = before?.caughtUp ?? false
                    replica.caughtUp =
                        pending <= Int64(model.maxLag) || (wasCaughtUp && pending <= 2 * Int64(model.maxLag))
                    replica.lastProgressTime =
                        (before?.ackFloor == floor ? before?.lastProgressTime : nil) ?? nowText
                }
                replicaStatus.append(replica)
            }
        }
        status.replicaStatus = replicaStatus
        status.maxLag = Int(replicaStatus.compactMap(\.pending).max() ?? 0)

        // Conditions.
        var conditions: [String: (status: String, reason: String, message: String)] = [:]
        if let natsProblem {
            conditions["StreamReady"] = ("False", "NATSUnavailable", natsProblem)
        } else if let error = outcome.streamError {
            conditions["StreamReady"] = ("False", "StreamConfigRejected", error)
        } else if streamInfo == nil {
            conditions["StreamReady"] = ("False", "StreamMissing", "stream \(model.streamName) does not exist yet")
        } else {
            conditions["StreamReady"] = ("True", "StreamReady", "stream \(model.streamName) is configured")
        }

        if model.proxyReplicas == 0 {
            conditions["ProxyAvailable"] = ("True", "ScaledToZero", "no proxy replicas wanted")
        } else if (status.proxyReadyReplicas ?? 0) > 0 {
            conditions["ProxyAvailable"] = (
                "True", "Available", "\(status.proxyReadyReplicas ?? 0)/\(model.proxyReplicas) proxies available"
            )
        } else {
            conditions["ProxyAvailable"] = ("False", "Unavailable", "no proxy replica is available")
        }

        let lagging = replicaStatus.filter { !$0.caughtUp }
        if natsProblem != nil {
            conditions["ReplicasCaughtUp"] = ("Unknown", "NATSUnavailable", "consumer lag cannot be read")
        } else if model.replicas == 0 {
            conditions["ReplicasCaughtUp"] = ("True", "NoReplicas", "no index replicas wanted")
        } else if lagging.isEmpty {
            conditions["ReplicasCaughtUp"] = (
                "True", "CaughtUp", "every replica is within \(model.maxLag) messages (max lag \(status.maxLag ?? 0))"
            )
        } else {
            let detail = lagging.map { "\($0.name): \($0.pending.map(String.init) ?? "no consumer")" }
                .joined(separator: ", ")
            conditions["ReplicasCaughtUp"] = (
                "False", "Lagging", "\(lagging.count) replica(s) above max lag \(model.maxLag): \(detail)"
            )
        }

        let stalled = replicaStatus.filter { replica in
            guard (replica.pending ?? 0) > 0, let since = replica.lastProgressTime.flatMap(KubernetesTime.parse)
            else { return false }
            return now.timeIntervalSince(since) > Double(stallAfter.components.seconds)
        }
        if stalled.isEmpty {
            conditions["Stalled"] = ("False", "Progressing", "every replica with pending messages is applying them")
        } else {
            conditions["Stalled"] = (
                "True", "NoProgress",
                "no acknowledged progress for \(stallAfter.components.seconds)s: "
                    + stalled.map(\.name).joined(separator: ", ")
            )
        }

        let settled = (status.readyReplicas ?? 0) == model.replicas && (status.replicas ?? 0) == model.replicas
        if !specProblems.isEmpty {
            conditions["Progressing"] = ("False", "InvalidSpec", specProblems.joined(separator: "; "))
        } else if outcome.changed || !settled {
            conditions["Progressing"] = (
                "True", "Reconciling",
                "\(status.readyReplicas ?? 0)/\(model.replicas) replicas ready, \(status.replicas ?? 0) exist"
            )
        } else {
            conditions["Progressing"] = ("False", "Complete", "every replica exists and is ready")
        }

        conditions["Paused"] =
            model.paused
            ? ("True", "Paused", "annotation \(ClusterModel.pausedAnnotation)=true: no changes are made")
            : ("False", "Active", "the controller manages this cluster")

        // Ready: the first thing missing names the reason (the STATUS column).
        let ready: (String, String, String)
        if !specProblems.isEmpty {
            ready = ("False", "InvalidSpec", specProblems.joined(separator: "; "))
        } else if model.paused {
            ready = ("False", "Paused", "changes are paused")
        } else if conditions["StreamReady"]?.status != "True" {
            ready = ("False", conditions["StreamReady"]!.reason, conditions["StreamReady"]!.message)
        } else if conditions["ReplicasCaughtUp"]?.status != "True" {
            ready = ("False", "Lagging", conditions["ReplicasCaughtUp"]!.message)
        } else if (status.readyReplicas ?? 0) < model.replicas {
            ready = (
                "False", "ReplicasNotReady", "\(status.readyReplicas ?? 0)/\(model.replicas) replicas pass readiness"
            )
        } else if conditions["ProxyAvailable"]?.status != "True" {
            ready = ("False", "ProxyUnavailable", conditions["ProxyAvailable"]!.message)
        } else if !outcome.failures.isEmpty {
            ready = ("False", "ReconcileFailed", outcome.failures.joined(separator: "; "))
        } else {
            ready = ("True", "Ready", "\(model.replicas) replicas caught up and ready")
        }
        conditions["Ready"] = ready

        status.conditions = conditionTypes.compactMap { type in
            guard let value = conditions[type] else { return nil }
            let before = previous?.conditions?.first { $0.type == type }
            // The transition time moves only when the status flips.
            let transition = before?.status == value.status ? before?.lastTransitionTime ?? nowText : nowText
            return Condition(
                type: type, status: value.status, observedGeneration: model.generation, lastTransitionTime: transition,
                reason: value.reason, message: value.message)
        }
        return status
    }
}
