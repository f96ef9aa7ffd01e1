import Foundation

/// What the store lets a kind's strategy see: the stored objects of a type, read-only.
struct StoreView {
    let objects: (_ storageKey: String) -> [JSONValue]
    /// The first two octets of the /16 Service addresses come from.
    let serviceSubnet: String
}

/// How DELETE treats an object beyond finalizers and propagation.
enum DeletionBehaviour: Sendable {
    /// Finalizers and the propagation policy decide.
    case standard
    /// A pod bound to the node is marked and stopped with its grace period first.
    case gracefulPod
    /// A namespace is marked Terminating; the namespace controller empties it, then removes it.
    case namespace
}

/// What is particular to one kind, as the real API server's registry strategies hold it:
/// defaults on create, what an update keeps of the stored object, and checks before a write.
/// `ResourceStore` applies the generic rules (metadata, generation, conflicts, finalizers) and
/// asks the kind's strategy for the rest, so no kind is a branch in the store's write paths.
protocol KindStrategy: Sendable {
    /// Defaults and allocations the server makes on create.
    func prepareForCreate(_ object: inout JSONValue, _ view: StoreView)
    /// Fields an update keeps from the stored object when the client leaves them out.
    func prepareForUpdate(_ new: inout JSONValue, old: JSONValue, subresource: String?)
    /// Checks the object before it is stored (`old` on updates).
    func validate(_ object: JSONValue, old: JSONValue?, type: ResourceType, name: String) throws(KubeSimError)
    /// Refuses a DELETE the server never allows for this object.
    func checkDelete(type: ResourceType, name: String) throws(KubeSimError)
    var deletion: DeletionBehaviour { get }
    /// The type this object makes the server serve (a CustomResourceDefinition's), nil for others.
    func servedType(_ object: JSONValue) -> ResourceType?
    /// The status the server keeps for an object that serves a type.
    func servingStatus(_ object: JSONValue, now: Date) -> JSONValue?
}

extension KindStrategy {
    func prepareForCreate(_ object: inout JSONValue, _ view: StoreView) {}
    func prepareForUpdate(_ new: inout JSONValue, old: JSONValue, subresource: String?) {}
    func validate(_ object: JSONValue, old: JSONValue?, type: ResourceType, name: String) throws(KubeSimError) {}
    func checkDelete(type: ResourceType, name: String) throws(KubeSimError) {}
    var deletion: DeletionBehaviour { .standard }
    func servedType(_ object: JSONValue) -> ResourceType? { nil }
    func servingStatus(_ object: JSONValue, now: Date) -> JSONValue? { nil }
}

enum KindStrategies {
    static let customResourceDefinitions = "apiextensions.k8s.io/customresourcedefinitions"

    static func strategy(for type: ResourceType) -> any KindStrategy {
        switch type.typeKey {
        case "/namespaces": NamespaceStrategy()
        case "/services": ServiceStrategy()
        case "/secrets": SecretStrategy()
        case "/pods": PodStrategy()
        case "apps/deployments": WorkloadStrategy(kind: .deployment)
        case "apps/statefulsets": WorkloadStrategy(kind: .statefulSet)
        case "apps/replicasets": WorkloadStrategy(kind: .replicaSet)
        case "networking.k8s.io/networkpolicies": NetworkPolicyStrategy()
        case customResourceDefinitions: CustomResourceDefinitionStrategy()
        default: DefaultStrategy()
        }
    }
}

struct DefaultStrategy: KindStrategy {}

struct NamespaceStrategy: KindStrategy {
    /// Namespaces every cluster keeps.
    static let undeletable: Set<String> = ["default", "kube-system", "kube-public"]

    var deletion: DeletionBehaviour { .namespace }

    func checkDelete(type: ResourceType, name: String) throws(KubeSimError) {
        guard Self.undeletable.contains(name) else { return }
        throw KubeSimError(
            code: 403, reason: "Forbidden", message: "namespaces \"\(name)\" is forbidden: this namespace may not be deleted",
            name: name, kind: "namespaces")
    }

    func prepareForCreate(_ object: inout JSONValue, _ view: StoreView) {
        let name = object.value(at: ["metadata", "name"]) ?? ""
        object.setValue(name, at: ["metadata", "labels", "kubernetes.io/metadata.name"])
        object.setValue(["kubernetes"], at: ["spec", "finalizers"])
        object.setValue("Active", at: ["status", "phase"])
    }
}

struct ServiceStrategy: KindStrategy {
    func prepareForCreate(_ object: inout JSONValue, _ view: StoreView) {
        if object.value(at: ["spec", "type"]) == nil { object.setValue("ClusterIP", at: ["spec", "type"]) }
        let serviceType = object.value(at: ["spec", "type"])?.stringValue ?? "ClusterIP"
        let services = view.objects("/services")
        if object.value(at: ["spec", "clusterIP"]) == nil, serviceType != "ExternalName" {
            let ip = Self.freeClusterIP(services, subnet: view.serviceSubnet)
            object.setValue(.string(ip), at: ["spec", "clusterIP"])
            object.setValue([.string(ip)], at: ["spec", "clusterIPs"])
        }
        let needsNodePort = serviceType == "NodePort" || serviceType == "LoadBalancer"
        var usedNodePorts = needsNodePort ? Self.nodePorts(services) : []
        guard let ports = object.value(at: ["spec", "ports"])?.arrayValue else { return }
        object.setValue(
            .array(
                ports.map { port in
                    var p = port
                    if p["protocol"] == nil { p["protocol"] = "TCP" }
                    if p["targetPort"] == nil { p["targetPort"] = p["port"] }
                    if needsNodePort, p["nodePort"]?.intValue == nil, let free = (30000...32767).first(where: { !usedNodePorts.contains($0) }) {
                        usedNodePorts.insert(free)
                        p["nodePort"] = .int(Int64(free))
                    }
                    return p
                }), at: ["spec", "ports"])
    }

    /// Allocated once, kept by updates that leave them out (as the real registry does).
    func prepareForUpdate(_ new: inout JSONValue, old: JSONValue, subresource: String?) {
        guard subresource == nil else { return }
        for key in ["clusterIP", "clusterIPs"] where new.value(at: ["spec", key]) == nil {
            new.setValue(old.value(at: ["spec", key]), at: ["spec", key])
        }
    }

    /// The first free address of the service range (x.y.0.0/16) from x.y.0.10 (x.y.0.1 is the
    /// `kubernetes` Service's, as on real clusters).
    static func freeClusterIP(_ services: [JSONValue], subnet: String) -> String {
        let used = Set(services.compactMap { $0.value(at: ["spec", "clusterIP"])?.stringValue })
        for n in 10..<65_000 {
            let ip = "\(subnet).\(n / 256).\(n % 256)"
            if n % 256 != 0, n % 256 != 255, !used.contains(ip) { return ip }
        }
        return "\(subnet).255.254"
    }

    static func nodePorts(_ services: [JSONValue]) -> Set<Int> {
        var used: Set<Int> = []
        for service in services {
            for port in service.value(at: ["spec", "ports"])?.arrayValue ?? [] {
                if let nodePort = port["nodePort"]?.intValue { used.insert(Int(nodePort)) }
            }
        }
        return used
    }
}

struct SecretStrategy: KindStrategy {
    func prepareForCreate(_ object: inout JSONValue, _ view: StoreView) {
        if (object["type"]?.stringValue ?? "").isEmpty { object["type"] = "Opaque" }
        Self.mergeStringData(&object)
    }

    /// An update or patch with `stringData` changes `data` too (the real server converts it on
    /// every write; kubesim had stored it as a field of its own and left `data` alone).
    func prepareForUpdate(_ new: inout JSONValue, old: JSONValue, subresource: String?) {
        Self.mergeStringData(&new)
    }

    /// stringData is write-only: merged into data, base64-encoded.
    static func mergeStringData(_ object: inout JSONValue) {
        if let stringData = object["stringData"]?.objectValue {
            var data = object["data"]?.objectValue ?? [:]
            for (key, value) in stringData { data[key] = .string(Data((value.stringValue ?? "").utf8).base64EncodedString()) }
            object["data"] = .object(data)
            object["stringData"] = nil
        }
    }
}

struct PodStrategy: KindStrategy {
    var deletion: DeletionBehaviour { .gracefulPod }

    func prepareForCreate(_ object: inout JSONValue, _ view: StoreView) {
        if object.value(at: ["status", "phase"]) == nil { object.setValue("Pending", at: ["status", "phase"]) }
    }

    /// The node a pod is bound to stays (binding is its own subresource on the real server).
    func prepareForUpdate(_ new: inout JSONValue, old: JSONValue, subresource: String?) {
        if subresource == nil, new.value(at: ["spec", "nodeName"]) == nil {
            new.setValue(old.value(at: ["spec", "nodeName"]), at: ["spec", "nodeName"])
        }
    }
}

struct WorkloadStrategy: KindStrategy {
    enum Kind { case deployment, statefulSet, replicaSet }
    let kind: Kind

    func prepareForCreate(_ object: inout JSONValue, _ view: StoreView) {
        func setDefault(_ value: JSONValue, _ path: [String]) {
            if object.value(at: path) == nil { object.setValue(value, at: path) }
        }
        setDefault(1, ["spec", "replicas"])
        switch kind {
        case .deployment:
            setDefault("RollingUpdate", ["spec", "strategy", "type"])
            if object.value(at: ["spec", "strategy", "type"])?.stringValue == "RollingUpdate" {
                setDefault("25%", ["spec", "strategy", "rollingUpdate", "maxSurge"])
                setDefault("25%", ["spec", "strategy", "rollingUpdate", "maxUnavailable"])
            }
            setDefault(10, ["spec", "revisionHistoryLimit"])
            setDefault(600, ["spec", "progressDeadlineSeconds"])
        case .statefulSet:
            setDefault("OrderedReady", ["spec", "podManagementPolicy"])
            setDefault("RollingUpdate", ["spec", "updateStrategy", "type"])
            if object.value(at: ["spec", "updateStrategy", "type"])?.stringValue == "RollingUpdate" {
                setDefault(0, ["spec", "updateStrategy", "rollingUpdate", "partition"])
            }
            setDefault("Retain", ["spec", "persistentVolumeClaimRetentionPolicy", "whenScaled"])
            setDefault("Retain", ["spec", "persistentVolumeClaimRetentionPolicy", "whenDeleted"])
            setDefault(10, ["spec", "revisionHistoryLimit"])
        case .replicaSet:
            break
        }
    }
}

/// A CustomResourceDefinition defines a served type: it must be a usable one, and its status
/// says its names are accepted (the store registers and unregisters the type it serves).
struct CustomResourceDefinitionStrategy: KindStrategy {
    func validate(_ object: JSONValue, old: JSONValue?, type: ResourceType, name: String) throws(KubeSimError) {
        if case .failure(let error) = ResourceRegistry.customType(from: object) { throw error }
    }

    func servedType(_ object: JSONValue) -> ResourceType? {
        guard case .success(let served) = ResourceRegistry.customType(from: object) else { return nil }
        return served
    }

    func servingStatus(_ crd: JSONValue, now: Date) -> JSONValue? {
        let time = JSONValue.string(Timestamps.format(now))
        let versions = (crd.value(at: ["spec", "versions"])?.arrayValue ?? []).filter { $0["storage"]?.boolValue == true }
            .compactMap { $0["name"] }
        return [
            "acceptedNames": crd.value(at: ["spec", "names"]) ?? [:],
            "storedVersions": .array(versions),
            "conditions": [
                [
                    "type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                    "message": "no conflicts found", "lastTransitionTime": time,
                ],
                [
                    "type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted", "lastTransitionTime": time,
                ],
            ],
        ]
    }
}
