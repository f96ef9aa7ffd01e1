import Controller
import Foundation
import JetStream
import Kubernetes

/// Building blocks for the pure tests: clusters, JetStream answers, pods.
enum Fixtures {
    static func cluster(
        replicas: Int = 2, maxLag: Int = 100, deletionPolicy: String? = nil, deleting: Bool = false,
        finalizer: Bool = true, paused: Bool = false
    ) -> FpindexCluster {
        var cluster = FpindexCluster()
        cluster.metadata = ObjectMeta(name: "main", namespace: "fp")
        cluster.metadata.uid = "uid-main"
        cluster.metadata.generation = 3
        cluster.metadata.resourceVersion = "10"
        if finalizer { cluster.metadata.finalizers = [ClusterModel.finalizer] }
        if deleting { cluster.metadata.deletionTimestamp = "2026-11-29T06:00:00Z" }
        if paused { cluster.metadata.annotations = [ClusterModel.pausedAnnotation: "true"] }
        cluster.spec.replicas = replicas
        cluster.spec.workerImage = "fpindex-cluster:1"
        var nats = FpindexCluster.NATS()
        nats.url = "nats://nats:4222"
        cluster.spec.nats = nats
        var index = FpindexCluster.Index()
        index.image = "fpindex:1"
        index.args = ["--checkpoint-threshold", "500000"]
        cluster.spec.index = index
        var stream = FpindexCluster.Stream()
        stream.deletionPolicy = deletionPolicy
        cluster.spec.stream = stream
        cluster.spec.readiness = .init(maxLag: maxLag)
        return cluster
    }

    static func streamInfo(replicas: Int = 1, lastSeq: UInt64 = 500, prefix: String = "fpindex") -> StreamInfo {
        let json = """
            {"config": {"name": "fpindex", "subjects": ["\(prefix).>"], "retention": "limits", "storage": "file",
                        "num_replicas": \(replicas), "max_msgs_per_subject": 1, "max_msgs": -1, "max_bytes": -1,
                        "max_age": 0, "discard": "old", "duplicate_window": 120000000000, "allow_direct": true,
                        "deny_delete": false, "deny_purge": false},
             "created": "2026-11-29T05:00:00Z",
             "state": {"messages": \(lastSeq), "bytes": \(lastSeq * 600), "first_seq": 1, "last_seq": \(lastSeq)}}
            """
        return try! JSONDecoder().decode(StreamInfo.self, from: Data(json.utf8))
    }

    static func consumer(
        _ name: String, pending: UInt64, ackFloor: UInt64 = 0, filter: String = "fpindex.>", ackPolicy: String = "all",
        maxAckPending: Int = 16000, durable: Bool = true
    ) -> ConsumerInfo {
        let json = """
            {"name": "\(name)",
             "config": {\(durable ? "\"durable_name\": \"\(name)\", " : "")"name": "\(name)", "deliver_policy": "all", "ack_policy": "\(ackPolicy)",
                        "ack_wait": 60000000000, "max_ack_pending": \(maxAckPending), "max_deliver": -1,
                        "filter_subject": "\(filter)", "replay_policy": "instant"},
             "delivered": {"consumer_seq": \(ackFloor), "stream_seq": \(ackFloor)},
             "ack_floor": {"consumer_seq": \(ackFloor), "stream_seq": \(ackFloor)},
             "num_ack_pending": 0, "num_redelivered": 0, "num_pending": \(pending)}
            """
        return try! JSONDecoder().decode(ConsumerInfo.self, from: Data(json.utf8))
    }

    static func pod(_ name: String, ready: Bool) -> Pod {
        var pod = Pod()
        pod.metadata = ObjectMeta(name: name, namespace: "fp")
        var status = PodStatus()
        status.conditions = [PodCondition(type: "Ready", status: ready ? "True" : "False")]
        pod.status = status
        return pod
    }

    /// The children as an API server would hold them: what was asked plus server-set fields.
    static func children(of cluster: FpindexCluster, mutate: (ChildRole, inout Kubernetes.JSONValue) -> Void = { _, _ in })
        -> [ChildRole: Kubernetes.JSONValue]
    {
        let desired = DesiredChildren(cluster)
        var children: [ChildRole: Kubernetes.JSONValue] = [:]
        for role in ChildRole.allCases {
            guard var json = try! role.desired(desired) else { continue }
            json["metadata"]?["resourceVersion"] = .string("7")
            json["metadata"]?["uid"] = .string("child-\(role.rawValue)")
            json["status"] = .object(["observedGeneration": 1])
            mutate(role, &json)
            children[role] = json
        }
        return children
    }

    static func proxyAvailable(_ children: inout [ChildRole: Kubernetes.JSONValue], available: Int) {
        children[.proxyDeployment]?["status"] = .object([
            "replicas": .integer(Int64(available)), "availableReplicas": .integer(Int64(available)),
        ])
    }
}
