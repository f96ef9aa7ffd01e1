import Kubernetes

/// The names, labels and effective settings of one FpindexCluster: its spec with every default
/// applied (the CRD defaults them too, but a controller must not depend on it) and the names
/// of everything derived from it. Pure.
public struct ClusterModel: Sendable, Equatable {
    public var namespace: String
    public var name: String
    public var uid: String
    public var generation: Int64

    public var replicas: Int
    public var workerImage: String
    public var imagePullPolicy: String
    public var natsURL: String
    /// How a role authenticates to NATS: its user Secret, else its credentials file, else the
    /// shared credentials file; nil: anonymous.
    public var proxyCredentials: NATSCredentials?
    public var updaterCredentials: NATSCredentials?
    public var controllerCredentials: NATSCredentials?

    public enum NATSCredentials: Sendable, Equatable {
        /// A `.creds` file (user JWT and NKey seed) in a Secret key.
        case file(FpindexCluster.SecretKeySelector)
        /// A `kubernetes.io/basic-auth` Secret: keys `username` and `password`.
        case user(secretName: String)

        static func role(user: LocalObjectReference?, file: FpindexCluster.SecretKeySelector?, shared: FpindexCluster.SecretKeySelector?)
            -> NATSCredentials?
        {
            if let name = user?.name { return .user(secretName: name) }
            return (file ?? shared).map { .file($0) }
        }
    }
    public var tlsSecret: FpindexCluster.SecretKeySelector?
    public var streamName: String
    public var subjectPrefix: String
    public var streamReplicas: Int
    public var memoryStorage: Bool
    public var deletionPolicy: DeletionPolicy
    public var indexImage: String
    public var indexPort: Int
    public var proxyReplicas: Int
    /// The proxies' legacy line protocol port; 0 when it is off.
    public var proxyLegacyPort: Int
    public var proxyLegacyIndex: String
    /// The proxies' bearer tokens (a Secret key, one token a line); nil: writes open.
    public var proxyTokenSecret: FpindexCluster.SecretKeySelector?
    public var proxyProtectReads: Bool
    /// A `kubernetes.io/tls` Secret for HTTPS on the proxies' API port; nil: plain HTTP.
    public var proxyTLSSecret: String?
    public var networkPolicyEnabled: Bool
    public var networkReaders: [JSONValue]
    public var networkWriters: [JSONValue]
    public var networkMonitoring: [JSONValue]
    public var batchSize: Int
    public var maxLag: Int
    public var paused: Bool

    public enum DeletionPolicy: String, Sendable {
        case retain = "Retain"
        case delete = "Delete"
    }

    /// The annotation that stops every change to a cluster.
    public static let pausedAnnotation = "fpindex.acoustid.org/paused"
    /// The finalizer guarding the JetStream resources.
    public static let finalizer = "fpindex.acoustid.org/jetstream"
    public static let managedBy = "fpindex-controller"

    public init(_ cluster: FpindexCluster) {
        let spec = cluster.spec
        namespace = cluster.metadata.namespace ?? "default"
        name = cluster.metadata.name ?? ""
        uid = cluster.metadata.uid ?? ""
        generation = cluster.metadata.generation ?? 0
        replicas = max(0, spec.replicas ?? 2)
        workerImage = spec.workerImage ?? ""
        imagePullPolicy = spec.imagePullPolicy ?? "IfNotPresent"
        natsURL = spec.nats?.url ?? ""
        let nats = spec.nats
        proxyCredentials = .role(user: nats?.proxyUserSecret, file: nats?.proxyCredentialsSecret, shared: nats?.credentialsSecret)
        updaterCredentials = .role(user: nats?.updaterUserSecret, file: nats?.updaterCredentialsSecret, shared: nats?.credentialsSecret)
        controllerCredentials = .role(
            user: nats?.controllerUserSecret, file: nats?.controllerCredentialsSecret, shared: nats?.credentialsSecret)
        tlsSecret = spec.nats?.tlsSecret
        streamName = spec.stream?.name ?? "fpindex"
        subjectPrefix = spec.stream?.subjectPrefix ?? "fpindex"
        streamReplicas = max(1, spec.stream?.replicas ?? 1)
        memoryStorage = spec.stream?.storage == "Memory"
        deletionPolicy = spec.stream?.deletionPolicy == "Delete" ? .delete : .retain
        indexImage = spec.index?.image ?? ""
        indexPort = spec.index?.port ?? 6081
        proxyReplicas = max(0, spec.proxy?.replicas ?? 2)
        proxyLegacyPort = min(max(0, spec.proxy?.legacyPort ?? 6080), 65535)
        proxyLegacyIndex = spec.proxy?.legacyIndex ?? "main"
        proxyTokenSecret = spec.proxy?.auth?.tokenSecret
        proxyProtectReads = spec.proxy?.auth?.protectReads ?? false
        proxyTLSSecret = spec.proxy?.tls?.secretName
        networkPolicyEnabled = spec.networkPolicy?.enabled ?? true
        networkReaders = spec.networkPolicy?.readers ?? []
        networkWriters = spec.networkPolicy?.writers ?? []
        networkMonitoring = spec.networkPolicy?.monitoring ?? []
        batchSize = max(1, spec.updater?.batchSize ?? 4000)
        maxLag = max(0, spec.readiness?.maxLag ?? 1000)
        paused = cluster.metadata.annotations?[Self.pausedAnnotation] == "true"
    }

    // MARK: Names

    public var indexName: String { "\(name)-index" }
    public var readServiceName: String { "\(name)-index-read" }
    public var proxyName: String { "\(name)-proxy" }
    /// The durable consumer of replica `ordinal`: the pod's name, as the updater's `CONSUMER_NAME`.
    public func consumerName(ordinal: Int) -> String { "\(indexName)-\(ordinal)" }
    public func podName(ordinal: Int) -> String { "\(indexName)-\(ordinal)" }

    /// The ordinal of a pod or consumer of this cluster's StatefulSet, nil for other names.
    public func ordinal(of podOrConsumer: String) -> Int? {
        let prefix = indexName + "-"
        guard podOrConsumer.hasPrefix(prefix) else { return nil }
        let rest = podOrConsumer.dropFirst(prefix.count)
        guard let ordinal = Int(rest), ordinal >= 0, String(ordinal) == rest else { return nil }
        return ordinal
    }

    // MARK: Labels

    public static let instanceLabel = "app.kubernetes.io/instance"
    public static let componentLabel = "app.kubernetes.io/component"
    public static let managedByLabel = "app.kubernetes.io/managed-by"

    public func labels(component: String) -> [String: String] {
        [
            "app.kubernetes.io/name": "fpindex",
            Self.instanceLabel: name,
            Self.componentLabel: component,
            Self.managedByLabel: Self.managedBy,
            "app.kubernetes.io/part-of": "fpindex-cluster",
        ]
    }

    public func selectorLabels(component: String) -> [String: String] {
        [Self.instanceLabel: name, Self.componentLabel: component]
    }

    /// `status.selector`: the index pods, as the scale subresource reports it.
    public var indexSelector: String {
        "\(Self.instanceLabel)=\(name),\(Self.componentLabel)=index"
    }

    public var ownerReference: OwnerReference {
        OwnerReference(
            apiVersion: FpindexCluster.resourceType.apiVersion, kind: FpindexCluster.resourceType.kind, name: name,
            uid: uid, controller: true, blockOwnerDeletion: true)
    }

    /// Problems that make the spec unusable (the CRD's validation catches them first on a real
    /// API server; these guard a cluster created without it).
    public var specProblems: [String] {
        var problems: [String] = []
        if workerImage.isEmpty { problems.append("spec.workerImage is required") }
        if indexImage.isEmpty { problems.append("spec.index.image is required") }
        if natsURL.isEmpty { problems.append("spec.nats.url is required") }
        let token = #/^[A-Za-z0-9_-]+$/#
        if (try? token.wholeMatch(in: streamName)) == nil { problems.append("spec.stream.name must match [A-Za-z0-9_-]+") }
        if (try? token.wholeMatch(in: subjectPrefix)) == nil {
            problems.append("spec.stream.subjectPrefix must match [A-Za-z0-9_-]+")
        }
        if proxyProtectReads, proxyTokenSecret == nil {
            problems.append("spec.proxy.auth.protectReads needs spec.proxy.auth.tokenSecret")
        }
        return problems
    }
}
