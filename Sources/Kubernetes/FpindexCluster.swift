/// The `FpindexCluster` custom resource (`fpindex.acoustid.org/v1alpha1`), see docs/design.md (section 7)
/// section 6 and `crds/fpindexclusters.yaml` (the schema, defaults and descriptions).
public struct FpindexCluster: KubernetesObject, Equatable {
    public static let resourceType = ResourceType.fpindexClusters
    public var apiVersion: String? = "fpindex.acoustid.org/v1alpha1"
    public var kind: String? = "FpindexCluster"
    public var metadata = ObjectMeta()
    public var spec = Spec()
    public var status: ClusterStatus?
    public init() {}

    enum CodingKeys: String, CodingKey { case apiVersion, kind, metadata, spec, status }

    /// An object without `spec` (allowed by the API) decodes with an empty one.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        apiVersion = try container.decodeIfPresent(String.self, forKey: .apiVersion)
        kind = try container.decodeIfPresent(String.self, forKey: .kind)
        metadata = try container.decodeIfPresent(ObjectMeta.self, forKey: .metadata) ?? ObjectMeta()
        spec = try container.decodeIfPresent(Spec.self, forKey: .spec) ?? Spec()
        status = try container.decodeIfPresent(ClusterStatus.self, forKey: .status)
    }

    public struct Spec: Codable, Sendable, Equatable {
        public var replicas: Int?
        public var nats: NATS?
        public var stream: Stream?
        public var index: Index?
        public var proxy: Proxy?
        public var updater: Updater?
        public var workerImage: String?
        public var imagePullPolicy: String?
        public var imagePullSecrets: [LocalObjectReference]?
        public var readiness: Readiness?
        public var nodeSelector: [String: String]?
        public var tolerations: [JSONValue]?
        public var affinity: JSONValue?
        public var networkPolicy: NetworkPolicySettings?
        public init() {}
    }

    public struct SecretKeySelector: Codable, Sendable, Equatable {
        public var name: String
        public var key: String?
        public init(name: String, key: String?) {
            self.name = name
            self.key = key
        }
    }

    public struct NATS: Codable, Sendable, Equatable {
        public var url: String?
        /// A NATS credentials file (JWT + NKey seed) in a Secret.
        public var credentialsSecret: SecretKeySelector?
        /// A Secret with `ca.crt` (and optionally `tls.crt`/`tls.key`) for TLS to NATS.
        public var tlsSecret: SecretKeySelector?
        /// Per-role credentials (least privilege: see manifests/nats); each falls back to
        /// `credentialsSecret`.
        public var proxyCredentialsSecret: SecretKeySelector?
        public var updaterCredentialsSecret: SecretKeySelector?
        public var controllerCredentialsSecret: SecretKeySelector?
        /// Per-role user and password (a `kubernetes.io/basic-auth` Secret: `username`,
        /// `password`), for a server configured with users, as manifests/nats's example; a
        /// role's user Secret wins over any credentials file.
        public var proxyUserSecret: LocalObjectReference?
        public var updaterUserSecret: LocalObjectReference?
        public var controllerUserSecret: LocalObjectReference?
        public init() {}
    }

    public struct Stream: Codable, Sendable, Equatable {
        public var name: String?
        public var subjectPrefix: String?
        public var replicas: Int?
        /// File or Memory.
        public var storage: String?
        /// Retain or Delete.
        public var deletionPolicy: String?
        public init() {}
    }

    public struct Index: Codable, Sendable, Equatable {
        public var image: String?
        /// Replaces the default command line (`fpindex --dir /data --host 0.0.0.0 --port <port>`).
        public var command: [String]?
        /// Appended to the command line.
        public var args: [String]?
        public var env: [EnvVar]?
        public var port: Int?
        public var resources: ResourceRequirements?
        public var storage: Storage?
        public init() {}
    }

    public struct Storage: Codable, Sendable, Equatable {
        public var size: String?
        public var storageClassName: String?
        /// `persistentVolumeClaimRetentionPolicy` of the StatefulSet.
        public var retentionPolicy: StatefulSet.RetentionPolicy?
        public init() {}
    }

    public struct Proxy: Codable, Sendable, Equatable {
        public var replicas: Int?
        /// The legacy line protocol's port (default 6080; 0: off).
        public var legacyPort: Int?
        /// The index the legacy protocol uses (default `main`).
        public var legacyIndex: String?
        public var resources: ResourceRequirements?
        public var args: [String]?
        public var auth: ProxyAuth?
        public var tls: ProxyTLS?
        public init() {}
    }

    /// HTTPS on the proxies' API port from a `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`).
    public struct ProxyTLS: Codable, Sendable, Equatable {
        public var secretName: String
        public init(secretName: String) { self.secretName = secretName }
    }

    /// Bearer tokens the proxies require: a Secret key holding one token a line.
    public struct ProxyAuth: Codable, Sendable, Equatable {
        public var tokenSecret: SecretKeySelector?
        /// Reads and searches need a token too.
        public var protectReads: Bool?
        public init(tokenSecret: SecretKeySelector?, protectReads: Bool? = nil) {
            self.tokenSecret = tokenSecret
            self.protectReads = protectReads
        }
    }

    /// Who may reach the index pods and the proxies (NetworkPolicy peers, as in a NetworkPolicy).
    public struct NetworkPolicySettings: Codable, Sendable, Equatable {
        /// Default true.
        public var enabled: Bool?
        /// May reach the index port besides this cluster's proxies.
        public var readers: [JSONValue]?
        /// May reach the proxies' API and legacy ports; empty or absent: anywhere.
        public var writers: [JSONValue]?
        /// May reach probe and metrics ports (the node's kubelet always can).
        public var monitoring: [JSONValue]?
        public init(enabled: Bool? = nil, readers: [JSONValue]? = nil, writers: [JSONValue]? = nil, monitoring: [JSONValue]? = nil) {
            self.enabled = enabled
            self.readers = readers
            self.writers = writers
            self.monitoring = monitoring
        }
    }

    public struct Updater: Codable, Sendable, Equatable {
        public var batchSize: Int?
        public var resources: ResourceRequirements?
        public init() {}
    }

    public struct Readiness: Codable, Sendable, Equatable {
        public var maxLag: Int?
        public init(maxLag: Int?) { self.maxLag = maxLag }
    }

    public struct ClusterStatus: Codable, Sendable, Equatable {
        public var observedGeneration: Int64?
        public var replicas: Int?
        public var readyReplicas: Int?
        public var selector: String?
        public var maxLag: Int?
        public var proxyReplicas: Int?
        public var proxyReadyReplicas: Int?
        public var stream: StreamStatus?
        public var replicaStatus: [ReplicaStatus]?
        public var conditions: [Condition]?
        public init() {}
    }

    public struct StreamStatus: Codable, Sendable, Equatable {
        public var name: String?
        public var messages: Int64?
        public var bytes: Int64?
        public var firstSeq: Int64?
        public var lastSeq: Int64?
        public init() {}
    }

    public struct ReplicaStatus: Codable, Sendable, Equatable {
        public var name: String
        public var consumer: String
        public var pending: Int64?
        public var ackFloor: Int64?
        public var caughtUp: Bool
        public var lastProgressTime: String?
        public init(name: String, consumer: String, caughtUp: Bool) {
            self.name = name
            self.consumer = consumer
            self.caughtUp = caughtUp
        }
    }
}
