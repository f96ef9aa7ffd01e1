// Typed models of the kinds the controller reads and writes. Fields not listed are not decoded
// (see `KubernetesObject`); every field is optional so partial objects (apply configurations,
// patches) encode only what was set. Construct with `init()` and set what you need.

// MARK: - Pods

public struct Pod: KubernetesObject, Equatable {
    public static let resourceType = ResourceType.pods
    public var apiVersion: String? = "v1"
    public var kind: String? = "Pod"
    public var metadata = ObjectMeta()
    public var spec: PodSpec?
    public var status: PodStatus?
    public init() {}
}

public struct PodStatus: Codable, Sendable, Equatable {
    public var phase: String?
    public var conditions: [PodCondition]?
    public var podIP: String?
    public var hostIP: String?
    public var startTime: String?
    public var containerStatuses: [ContainerStatus]?
    public var message: String?
    public var reason: String?
    public init() {}
}

public struct PodCondition: Codable, Sendable, Equatable {
    public var type: String
    public var status: String
    public var lastTransitionTime: String?
    public var lastProbeTime: String?
    public var reason: String?
    public var message: String?
    public init(type: String, status: String) {
        self.type = type
        self.status = status
    }
}

public struct ContainerStatus: Codable, Sendable, Equatable {
    public var name: String
    public var ready: Bool
    public var restartCount: Int
    public var image: String?
    public var started: Bool?
    public var state: JSONValue?
    public var lastState: JSONValue?
    public init(name: String, ready: Bool, restartCount: Int) {
        self.name = name
        self.ready = ready
        self.restartCount = restartCount
    }
}

public struct PodTemplateSpec: Codable, Sendable, Equatable {
    public var metadata: ObjectMeta?
    public var spec: PodSpec?
    public init() {}
}

public struct PodSpec: Codable, Sendable, Equatable {
    public var containers: [Container] = []
    public var initContainers: [Container]?
    public var volumes: [Volume]?
    public var serviceAccountName: String?
    public var automountServiceAccountToken: Bool?
    public var securityContext: JSONValue?
    public var nodeSelector: [String: String]?
    public var tolerations: [JSONValue]?
    public var affinity: JSONValue?
    public var imagePullSecrets: [LocalObjectReference]?
    public var terminationGracePeriodSeconds: Int64?
    public var restartPolicy: String?
    public var priorityClassName: String?
    public var hostname: String?
    public var subdomain: String?
    public var nodeName: String?
    public init() {}
}

public struct LocalObjectReference: Codable, Sendable, Equatable {
    public var name: String
    public init(name: String) { self.name = name }
}

public struct Container: Codable, Sendable, Equatable {
    public var name: String
    public var image: String?
    public var imagePullPolicy: String?
    public var command: [String]?
    public var args: [String]?
    public var workingDir: String?
    public var env: [EnvVar]?
    public var envFrom: [JSONValue]?
    public var ports: [ContainerPort]?
    public var resources: ResourceRequirements?
    public var volumeMounts: [VolumeMount]?
    public var readinessProbe: Probe?
    public var livenessProbe: Probe?
    public var startupProbe: Probe?
    public var lifecycle: JSONValue?
    public var securityContext: JSONValue?
    public init(name: String) { self.name = name }
}

public struct EnvVar: Codable, Sendable, Equatable {
    public var name: String
    public var value: String?
    public var valueFrom: EnvVarSource?

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }

    public init(name: String, valueFrom: EnvVarSource) {
        self.name = name
        self.valueFrom = valueFrom
    }

    public struct EnvVarSource: Codable, Sendable, Equatable {
        public var fieldRef: FieldRef?
        public var secretKeyRef: KeyRef?
        public var configMapKeyRef: KeyRef?

        public static func field(_ path: String) -> EnvVarSource {
            EnvVarSource(fieldRef: FieldRef(fieldPath: path))
        }

        public static func secret(_ name: String, key: String, optional: Bool? = nil) -> EnvVarSource {
            EnvVarSource(secretKeyRef: KeyRef(name: name, key: key, optional: optional))
        }
    }

    public struct FieldRef: Codable, Sendable, Equatable {
        public var apiVersion: String?
        public var fieldPath: String
        public init(fieldPath: String) { self.fieldPath = fieldPath }
    }

    public struct KeyRef: Codable, Sendable, Equatable {
        public var name: String
        public var key: String
        public var optional: Bool?
    }
}

public struct ContainerPort: Codable, Sendable, Equatable {
    public var name: String?
    public var containerPort: Int
    public var `protocol`: String?
    public init(name: String?, containerPort: Int) {
        self.name = name
        self.containerPort = containerPort
    }
}

/// Quantities stay strings ("500m", "1Gi"), as the API returns them.
public struct ResourceRequirements: Codable, Sendable, Equatable {
    public var limits: [String: String]?
    public var requests: [String: String]?
    public init(limits: [String: String]? = nil, requests: [String: String]? = nil) {
        self.limits = limits
        self.requests = requests
    }
}

public struct VolumeMount: Codable, Sendable, Equatable {
    public var name: String
    public var mountPath: String
    public var readOnly: Bool?
    public var subPath: String?
    public init(name: String, mountPath: String, readOnly: Bool? = nil) {
        self.name = name
        self.mountPath = mountPath
        self.readOnly = readOnly
    }
}

public struct Volume: Codable, Sendable, Equatable {
    public var name: String
    public var emptyDir: JSONValue?
    public var secret: JSONValue?
    public var configMap: JSONValue?
    public var persistentVolumeClaim: JSONValue?
    public var projected: JSONValue?
    public init(name: String) { self.name = name }
}

public struct Probe: Codable, Sendable, Equatable {
    public var httpGet: HTTPGetAction?
    public var exec: ExecAction?
    public var tcpSocket: JSONValue?
    public var initialDelaySeconds: Int?
    public var periodSeconds: Int?
    public var timeoutSeconds: Int?
    public var failureThreshold: Int?
    public var successThreshold: Int?
    public init() {}

    public static func http(path: String, port: IntOrString, period: Int, failureThreshold: Int) -> Probe {
        var probe = Probe()
        probe.httpGet = HTTPGetAction(path: path, port: port)
        probe.periodSeconds = period
        probe.failureThreshold = failureThreshold
        return probe
    }

    public struct HTTPGetAction: Codable, Sendable, Equatable {
        public var path: String?
        public var port: IntOrString
        public var scheme: String?
        public init(path: String?, port: IntOrString) {
            self.path = path
            self.port = port
        }
    }

    public struct ExecAction: Codable, Sendable, Equatable {
        public var command: [String]
    }
}

// MARK: - Workloads

public struct Deployment: KubernetesObject, Equatable {
    public static let resourceType = ResourceType.deployments
    public var apiVersion: String? = "apps/v1"
    public var kind: String? = "Deployment"
    public var metadata = ObjectMeta()
    public var spec: Spec?
    public var status: Status?
    public init() {}

    public struct Spec: Codable, Sendable, Equatable {
        public var replicas: Int?
        public var selector: LabelSelector?
        public var template: PodTemplateSpec?
        public var strategy: JSONValue?
        public var minReadySeconds: Int?
        public var revisionHistoryLimit: Int?
        public var paused: Bool?
        public init() {}
    }

    public struct Status: Codable, Sendable, Equatable {
        public var observedGeneration: Int64?
        public var replicas: Int?
        public var updatedReplicas: Int?
        public var readyReplicas: Int?
        public var availableReplicas: Int?
        public var unavailableReplicas: Int?
        public var conditions: [JSONValue]?
        public init() {}
    }
}

public struct StatefulSet: KubernetesObject, Equatable {
    public static let resourceType = ResourceType.statefulSets
    public var apiVersion: String? = "apps/v1"
    public var kind: String? = "StatefulSet"
    public var metadata = ObjectMeta()
    public var spec: Spec?
    public var status: Status?
    public init() {}

    public struct Spec: Codable, Sendable, Equatable {
        public var replicas: Int?
        public var selector: LabelSelector?
        public var serviceName: String?
        public var template: PodTemplateSpec?
        public var volumeClaimTemplates: [PersistentVolumeClaim]?
        public var podManagementPolicy: String?
        public var updateStrategy: JSONValue?
        public var persistentVolumeClaimRetentionPolicy: RetentionPolicy?
        public var minReadySeconds: Int?
        public var revisionHistoryLimit: Int?
        public init() {}
    }

    public struct RetentionPolicy: Codable, Sendable, Equatable {
        /// Retain or Delete.
        public var whenDeleted: String?
        public var whenScaled: String?
        public init(whenDeleted: String?, whenScaled: String?) {
            self.whenDeleted = whenDeleted
            self.whenScaled = whenScaled
        }
    }

    public struct Status: Codable, Sendable, Equatable {
        public var observedGeneration: Int64?
        public var replicas: Int?
        public var readyReplicas: Int?
        public var currentReplicas: Int?
        public var updatedReplicas: Int?
        public var availableReplicas: Int?
        public var currentRevision: String?
        public var updateRevision: String?
        public init() {}
    }
}

public struct PersistentVolumeClaim: KubernetesObject, Equatable {
    public static let resourceType = ResourceType.persistentVolumeClaims
    public var apiVersion: String? = "v1"
    public var kind: String? = "PersistentVolumeClaim"
    public var metadata = ObjectMeta()
    public var spec: Spec?
    public var status: JSONValue?
    public init() {}

    public struct Spec: Codable, Sendable, Equatable {
        public var accessModes: [String]?
        public var storageClassName: String?
        public var resources: ResourceRequirements?
        public var volumeMode: String?
        public init() {}
    }
}

// MARK: - Networking and policy

public struct Service: KubernetesObject, Equatable {
    public static let resourceType = ResourceType.services
    public var apiVersion: String? = "v1"
    public var kind: String? = "Service"
    public var metadata = ObjectMeta()
    public var spec: Spec?
    public var status: JSONValue?
    public init() {}

    public struct Spec: Codable, Sendable, Equatable {
        public var type: String?
        public var selector: [String: String]?
        public var ports: [Port]?
        /// "None" for a headless service.
        public var clusterIP: String?
        public var publishNotReadyAddresses: Bool?
        public init() {}
    }

    public struct Port: Codable, Sendable, Equatable {
        public var name: String?
        public var port: Int
        public var targetPort: IntOrString?
        public var `protocol`: String?
        public init(name: String?, port: Int, targetPort: IntOrString?) {
            self.name = name
            self.port = port
            self.targetPort = targetPort
        }
    }
}

public struct PodDisruptionBudget: KubernetesObject, Equatable {
    public static let resourceType = ResourceType.podDisruptionBudgets
    public var apiVersion: String? = "policy/v1"
    public var kind: String? = "PodDisruptionBudget"
    public var metadata = ObjectMeta()
    public var spec: Spec?
    public var status: JSONValue?
    public init() {}

    public struct Spec: Codable, Sendable, Equatable {
        public var maxUnavailable: IntOrString?
        public var minAvailable: IntOrString?
        public var selector: LabelSelector?
        public init() {}
    }
}

// MARK: - Networking

public struct NetworkPolicy: KubernetesObject, Equatable {
    public static let resourceType = ResourceType.networkPolicies
    public var apiVersion: String? = "networking.k8s.io/v1"
    public var kind: String? = "NetworkPolicy"
    public var metadata = ObjectMeta()
    public var spec: Spec?
    public init() {}

    public struct Spec: Codable, Sendable, Equatable {
        public var podSelector: LabelSelector
        public var policyTypes: [String]?
        public var ingress: [IngressRule]?
        public init(podSelector: LabelSelector, policyTypes: [String]? = nil, ingress: [IngressRule]? = nil) {
            self.podSelector = podSelector
            self.policyTypes = policyTypes
            self.ingress = ingress
        }
    }

    /// Traffic from `from` (absent: from anywhere) to `ports` (absent: every port).
    public struct IngressRule: Codable, Sendable, Equatable {
        public var from: [JSONValue]?
        public var ports: [Port]?
        public init(from: [JSONValue]?, ports: [Port]?) {
            self.from = from
            self.ports = ports
        }
    }

    public struct Port: Codable, Sendable, Equatable {
        public var `protocol`: String?
        public var port: IntOrString?
        public init(port: IntOrString, protocol: String = "TCP") {
            self.port = port
            self.protocol = `protocol`
        }
    }
}

// MARK: - Coordination and events

public struct Lease: KubernetesObject, Equatable {
    public static let resourceType = ResourceType.leases
    public var apiVersion: String? = "coordination.k8s.io/v1"
    public var kind: String? = "Lease"
    public var metadata = ObjectMeta()
    public var spec: Spec?
    public init() {}

    public struct Spec: Codable, Sendable, Equatable {
        public var holderIdentity: String?
        public var leaseDurationSeconds: Int?
        /// MicroTime.
        public var acquireTime: String?
        /// MicroTime.
        public var renewTime: String?
        public var leaseTransitions: Int?
        public init() {}
    }
}

/// `events.k8s.io/v1` Event.
public struct Event: KubernetesObject, Equatable {
    public static let resourceType = ResourceType.events
    public var apiVersion: String? = "events.k8s.io/v1"
    public var kind: String? = "Event"
    public var metadata = ObjectMeta()
    /// MicroTime; required.
    public var eventTime: String?
    public var series: Series?
    public var reportingController: String?
    public var reportingInstance: String?
    public var action: String?
    public var reason: String?
    public var regarding: ObjectReference?
    public var related: ObjectReference?
    public var note: String?
    /// Normal or Warning.
    public var type: String?
    public init() {}

    public struct Series: Codable, Sendable, Equatable {
        public var count: Int
        /// MicroTime.
        public var lastObservedTime: String
        public init(count: Int, lastObservedTime: String) {
            self.count = count
            self.lastObservedTime = lastObservedTime
        }
    }
}

public struct ObjectReference: Codable, Sendable, Equatable {
    public var apiVersion: String?
    public var kind: String?
    public var name: String?
    public var namespace: String?
    public var uid: String?
    public var resourceVersion: String?
    public var fieldPath: String?
    public init(apiVersion: String?, kind: String?, name: String?, namespace: String?, uid: String?) {
        self.apiVersion = apiVersion
        self.kind = kind
        self.name = name
        self.namespace = namespace
        self.uid = uid
    }
}

public struct Namespace: KubernetesObject, Equatable {
    public static let resourceType = ResourceType.namespaces
    public var apiVersion: String? = "v1"
    public var kind: String? = "Namespace"
    public var metadata = ObjectMeta()
    public var status: JSONValue?
    public init() {}
}

public struct Secret: KubernetesObject, Equatable {
    public static let resourceType = ResourceType.secrets
    public var apiVersion: String? = "v1"
    public var kind: String? = "Secret"
    public var metadata = ObjectMeta()
    /// Base64 values.
    public var data: [String: String]?
    public var stringData: [String: String]?
    public var type: String?
    public init() {}
}

public struct ConfigMap: KubernetesObject, Equatable {
    public static let resourceType = ResourceType.configMaps
    public var apiVersion: String? = "v1"
    public var kind: String? = "ConfigMap"
    public var metadata = ObjectMeta()
    public var data: [String: String]?
    public init() {}
}

/// `autoscaling/v1` Scale, the body of every `scale` subresource.
public struct Scale: Codable, Sendable, Equatable {
    public var apiVersion: String? = "autoscaling/v1"
    public var kind: String? = "Scale"
    public var metadata = ObjectMeta()
    public var spec: Spec = Spec()
    public var status: ScaleStatus?

    public struct Spec: Codable, Sendable, Equatable {
        public var replicas: Int?
        public init(replicas: Int? = nil) { self.replicas = replicas }
    }

    public struct ScaleStatus: Codable, Sendable, Equatable {
        public var replicas: Int
        public var selector: String?
    }

    public init() {}
}
