/// One column of server-side Table output.
struct PrinterColumn: Sendable, Hashable {
    enum Special: Sendable, Hashable {
        case podReady, podStatus, podRestarts, servicePorts, eventObject, eventLastSeen, accessModes, nodeReady, endpoints
        case labelSelector(String)  // a metav1.LabelSelector at a dotted path, as text
        case count(String)  // number of members/elements at a dotted path
        case ratio(String, String)  // "a/b" of two dotted paths (missing = 0)
    }
    var name: String
    var type: String  // string, integer, number, boolean, date
    var jsonPath: String
    var description: String = ""
    var priority: Int = 0
    var format: String = ""
    var special: Special? = nil
}

/// The scale subresource's mapping (CRD `subresources.scale`).
struct ScalePaths: Sendable, Hashable {
    var specReplicasPath: String
    var statusReplicasPath: String
    var labelSelectorPath: String?
    /// Built-in workloads: the selector comes from `.spec.selector` (a LabelSelector).
    var selectorFromSpec: Bool = false
}

/// A kind the server serves: built in or from a CustomResourceDefinition.
struct ResourceType: Sendable, Hashable {
    var group: String
    var versions: [String]  // served; the first is the preferred and storage version
    var resource: String
    var singular: String
    var kind: String
    var shortNames: [String] = []
    var categories: [String] = []
    var namespaced: Bool
    var hasStatus: Bool = false
    var scale: ScalePaths? = nil
    var columns: [PrinterColumn] = []
    /// A CRD's printer columns per served version (`columns` holds the storage version's).
    var versionColumns: [String: [PrinterColumn]] = [:]
    /// The openAPIV3Schema of a CRD version (by version name).
    var schemas: [String: JSONValue] = [:]
    /// Stored as another type (events.k8s.io/v1 events are core v1 events).
    var storedAs: String? = nil
    var isCustom: Bool = false

    var storageKey: String { storedAs ?? "\(group)/\(resource)" }
    var typeKey: String { "\(group)/\(resource)" }
    var qualifiedResource: String { group.isEmpty ? resource : "\(resource).\(group)" }
    var preferredVersion: String { versions[0] }
    func apiVersion(_ version: String) -> String { group.isEmpty ? version : "\(group)/\(version)" }
    var listKind: String { kind + "List" }

    /// This type as served at `version` (a CRD's per-version printer columns).
    func at(version: String) -> ResourceType {
        var copy = self
        if let columns = versionColumns[version] { copy.columns = columns }
        return copy
    }
}

/// Built-in kinds and the kinds CRDs add; discovery is derived from it.
struct ResourceRegistry: Sendable {
    private(set) var types: [String: ResourceType] = [:]  // by typeKey

    init() {
        for type in ResourceRegistry.builtins { types[type.typeKey] = type }
    }

    mutating func register(_ type: ResourceType) { types[type.typeKey] = type }
    mutating func unregister(group: String, resource: String) { types["\(group)/\(resource)"] = nil }

    func lookup(group: String, version: String, resource: String) -> ResourceType? {
        guard let type = types["\(group)/\(resource)"], type.versions.contains(version) else { return nil }
        return type
    }

    func type(forKey key: String) -> ResourceType? { types[key] }

    /// The type whose kind and apiVersion match (for owner references and SSA bodies).
    func type(apiVersion: String, kind: String) -> ResourceType? {
        let (group, version) = splitAPIVersion(apiVersion)
        return types.values.first { $0.group == group && $0.kind == kind && $0.versions.contains(version) }
    }

    /// Groups with their versions, core first, others sorted.
    var groups: [(name: String, versions: [String])] {
        var byGroup: [String: [String]] = [:]
        for type in types.values {
            var list = byGroup[type.group] ?? []
            for version in type.versions where !list.contains(version) { list.append(version) }
            byGroup[type.group] = list
        }
        return byGroup.keys.sorted().map { ($0, ResourceRegistry.sortVersions(byGroup[$0]!)) }
    }

    func types(group: String, version: String) -> [ResourceType] {
        types.values.filter { $0.group == group && $0.versions.contains(version) }.sorted { $0.resource < $1.resource }
    }

    /// Kubernetes version priority: GA > beta > alpha, higher numbers first.
    static func sortVersions(_ versions: [String]) -> [String] {
        func rank(_ v: String) -> (Int, Int, Int) {
            let scanner = Array(v.dropFirst())
            var major = 0
            var i = 0
            while i < scanner.count, let d = scanner[i].wholeNumberValue {
                major = major * 10 + d
                i += 1
            }
            let rest = String(scanner[i...])
            if rest.isEmpty { return (3, major, 0) }
            let stage = rest.hasPrefix("beta") ? 2 : rest.hasPrefix("alpha") ? 1 : 0
            let minor = Int(rest.drop(while: { !$0.isNumber })) ?? 0
            return (stage, major, minor)
        }
        return versions.sorted { rank($0) > rank($1) }
    }

    /// `-o wide` columns of the workload kinds: container names, images and (optionally) the selector.
    static func workloadWideColumns(selector: Bool) -> [PrinterColumn] {
        [
            PrinterColumn(name: "Containers", type: "string", jsonPath: ".spec.template.spec.containers[*].name", priority: 1),
            PrinterColumn(name: "Images", type: "string", jsonPath: ".spec.template.spec.containers[*].image", priority: 1),
        ]
            + (selector
                ? [PrinterColumn(name: "Selector", type: "string", jsonPath: "", priority: 1, special: .labelSelector("spec.selector"))]
                : [])
    }

    static let ageColumn = PrinterColumn(
        name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp",
        description: "CreationTimestamp is a timestamp representing the server time when this object was created.")

    static let builtins: [ResourceType] = [
        ResourceType(
            group: "", versions: ["v1"], resource: "namespaces", singular: "namespace", kind: "Namespace", shortNames: ["ns"],
            namespaced: false, hasStatus: true,
            columns: [PrinterColumn(name: "Status", type: "string", jsonPath: ".status.phase"), ageColumn]),
        ResourceType(
            group: "", versions: ["v1"], resource: "pods", singular: "pod", kind: "Pod", shortNames: ["po"], categories: ["all"],
            namespaced: true, hasStatus: true,
            columns: [
                PrinterColumn(name: "Ready", type: "string", jsonPath: "", special: .podReady),
                PrinterColumn(name: "Status", type: "string", jsonPath: "", special: .podStatus),
                PrinterColumn(name: "Restarts", type: "string", jsonPath: "", special: .podRestarts), ageColumn,
                PrinterColumn(name: "IP", type: "string", jsonPath: ".status.podIP", priority: 1),
                PrinterColumn(name: "Node", type: "string", jsonPath: ".spec.nodeName", priority: 1),
            ]),
        ResourceType(
            group: "", versions: ["v1"], resource: "services", singular: "service", kind: "Service", shortNames: ["svc"],
            categories: ["all"], namespaced: true, hasStatus: true,
            columns: [
                PrinterColumn(name: "Type", type: "string", jsonPath: ".spec.type"),
                PrinterColumn(name: "Cluster-IP", type: "string", jsonPath: ".spec.clusterIP"),
                PrinterColumn(name: "Port(s)", type: "string", jsonPath: "", special: .servicePorts), ageColumn,
                PrinterColumn(name: "Selector", type: "string", jsonPath: ".spec.selector", priority: 1),
            ]),
        ResourceType(
            group: "", versions: ["v1"], resource: "nodes", singular: "node", kind: "Node", shortNames: ["no"],
            namespaced: false, hasStatus: true,
            columns: [
                PrinterColumn(name: "Status", type: "string", jsonPath: "", special: .nodeReady),
                PrinterColumn(name: "Roles", type: "string", jsonPath: ".metadata.labels.kubernetes\\.io/role"), ageColumn,
                PrinterColumn(name: "Version", type: "string", jsonPath: ".status.nodeInfo.kubeletVersion"),
                PrinterColumn(name: "Internal-IP", type: "string", jsonPath: ".status.addresses[0].address", priority: 1),
            ]),
        ResourceType(
            group: "", versions: ["v1"], resource: "endpoints", singular: "endpoints", kind: "Endpoints", shortNames: ["ep"],
            namespaced: true,
            columns: [PrinterColumn(name: "Endpoints", type: "string", jsonPath: "", special: .endpoints), ageColumn]),
        ResourceType(
            group: "discovery.k8s.io", versions: ["v1"], resource: "endpointslices", singular: "endpointslice",
            kind: "EndpointSlice", namespaced: true,
            columns: [
                PrinterColumn(name: "AddressType", type: "string", jsonPath: ".addressType"),
                PrinterColumn(name: "Ports", type: "string", jsonPath: ".ports[*].port"),
                PrinterColumn(name: "Endpoints", type: "string", jsonPath: ".endpoints[*].addresses[0]"), ageColumn,
            ]),
        ResourceType(
            group: "", versions: ["v1"], resource: "configmaps", singular: "configmap", kind: "ConfigMap", shortNames: ["cm"],
            namespaced: true,
            columns: [PrinterColumn(name: "Data", type: "integer", jsonPath: "", special: .count("data")), ageColumn]),
        ResourceType(
            group: "", versions: ["v1"], resource: "secrets", singular: "secret", kind: "Secret", namespaced: true,
            columns: [
                PrinterColumn(name: "Type", type: "string", jsonPath: ".type"),
                PrinterColumn(name: "Data", type: "integer", jsonPath: "", special: .count("data")), ageColumn,
            ]),
        ResourceType(
            group: "", versions: ["v1"], resource: "serviceaccounts", singular: "serviceaccount", kind: "ServiceAccount",
            shortNames: ["sa"], namespaced: true,
            columns: [PrinterColumn(name: "Secrets", type: "integer", jsonPath: "", special: .count("secrets")), ageColumn]),
        ResourceType(
            group: "", versions: ["v1"], resource: "persistentvolumeclaims", singular: "persistentvolumeclaim",
            kind: "PersistentVolumeClaim", shortNames: ["pvc"], namespaced: true, hasStatus: true,
            columns: [
                PrinterColumn(name: "Status", type: "string", jsonPath: ".status.phase"),
                PrinterColumn(name: "Volume", type: "string", jsonPath: ".spec.volumeName"),
                PrinterColumn(name: "Capacity", type: "string", jsonPath: ".status.capacity.storage"),
                PrinterColumn(name: "Access Modes", type: "string", jsonPath: "", special: .accessModes),
                PrinterColumn(name: "StorageClass", type: "string", jsonPath: ".spec.storageClassName"), ageColumn,
                PrinterColumn(name: "VolumeMode", type: "string", jsonPath: ".spec.volumeMode", priority: 1),
            ]),
        ResourceType(
            group: "", versions: ["v1"], resource: "events", singular: "event", kind: "Event", shortNames: ["ev"],
            namespaced: true,
            columns: [
                PrinterColumn(name: "Last Seen", type: "string", jsonPath: "", special: .eventLastSeen),
                PrinterColumn(name: "Type", type: "string", jsonPath: ".type"),
                PrinterColumn(name: "Reason", type: "string", jsonPath: ".reason"),
                PrinterColumn(name: "Object", type: "string", jsonPath: "", special: .eventObject),
                PrinterColumn(name: "Message", type: "string", jsonPath: ".message"),
                PrinterColumn(name: "Source", type: "string", jsonPath: ".source.component", priority: 1),
                PrinterColumn(name: "Count", type: "integer", jsonPath: ".count", priority: 1),
            ]),
        ResourceType(
            group: "events.k8s.io", versions: ["v1"], resource: "events", singular: "event", kind: "Event", shortNames: ["ev"],
            namespaced: true,
            columns: [
                PrinterColumn(name: "Last Seen", type: "string", jsonPath: "", special: .eventLastSeen),
                PrinterColumn(name: "Type", type: "string", jsonPath: ".type"),
                PrinterColumn(name: "Reason", type: "string", jsonPath: ".reason"),
                PrinterColumn(name: "Object", type: "string", jsonPath: "", special: .eventObject),
                PrinterColumn(name: "Message", type: "string", jsonPath: ".message"),
            ], storedAs: "/events"),
        ResourceType(
            group: "apps", versions: ["v1"], resource: "deployments", singular: "deployment", kind: "Deployment",
            shortNames: ["deploy"], categories: ["all"], namespaced: true, hasStatus: true,
            scale: ScalePaths(specReplicasPath: ".spec.replicas", statusReplicasPath: ".status.replicas", selectorFromSpec: true),
            columns: [
                PrinterColumn(name: "Ready", type: "string", jsonPath: "", special: .ratio("status.readyReplicas", "spec.replicas")),
                PrinterColumn(name: "Up-to-date", type: "integer", jsonPath: ".status.updatedReplicas"),
                PrinterColumn(name: "Available", type: "integer", jsonPath: ".status.availableReplicas"), ageColumn,
            ] + workloadWideColumns(selector: true)),
        ResourceType(
            group: "apps", versions: ["v1"], resource: "statefulsets", singular: "statefulset", kind: "StatefulSet",
            shortNames: ["sts"], categories: ["all"], namespaced: true, hasStatus: true,
            scale: ScalePaths(specReplicasPath: ".spec.replicas", statusReplicasPath: ".status.replicas", selectorFromSpec: true),
            columns: [
                PrinterColumn(name: "Ready", type: "string", jsonPath: "", special: .ratio("status.readyReplicas", "spec.replicas")),
                ageColumn,
            ] + workloadWideColumns(selector: false)),
        ResourceType(
            group: "apps", versions: ["v1"], resource: "replicasets", singular: "replicaset", kind: "ReplicaSet",
            shortNames: ["rs"], categories: ["all"], namespaced: true, hasStatus: true,
            scale: ScalePaths(specReplicasPath: ".spec.replicas", statusReplicasPath: ".status.replicas", selectorFromSpec: true),
            columns: [
                PrinterColumn(name: "Desired", type: "integer", jsonPath: ".spec.replicas"),
                PrinterColumn(name: "Current", type: "integer", jsonPath: ".status.replicas"),
                PrinterColumn(name: "Ready", type: "integer", jsonPath: ".status.readyReplicas"), ageColumn,
            ] + workloadWideColumns(selector: true)),
        ResourceType(
            group: "apps", versions: ["v1"], resource: "controllerrevisions", singular: "controllerrevision",
            kind: "ControllerRevision", namespaced: true,
            columns: [
                PrinterColumn(name: "Controller", type: "string", jsonPath: ".metadata.ownerReferences[0].name"),
                PrinterColumn(name: "Revision", type: "integer", jsonPath: ".revision"), ageColumn,
            ]),
        ResourceType(
            group: "policy", versions: ["v1"], resource: "poddisruptionbudgets", singular: "poddisruptionbudget",
            kind: "PodDisruptionBudget", shortNames: ["pdb"], namespaced: true, hasStatus: true,
            columns: [
                PrinterColumn(name: "Min Available", type: "string", jsonPath: ".spec.minAvailable"),
                PrinterColumn(name: "Max Unavailable", type: "string", jsonPath: ".spec.maxUnavailable"),
                PrinterColumn(name: "Allowed Disruptions", type: "integer", jsonPath: ".status.disruptionsAllowed"), ageColumn,
            ]),
        ResourceType(
            group: "networking.k8s.io", versions: ["v1"], resource: "networkpolicies", singular: "networkpolicy",
            kind: "NetworkPolicy", shortNames: ["netpol"], namespaced: true,
            columns: [
                PrinterColumn(name: "Pod-Selector", type: "string", jsonPath: "", special: .labelSelector("spec.podSelector")),
                ageColumn,
            ]),
        ResourceType(
            group: "coordination.k8s.io", versions: ["v1"], resource: "leases", singular: "lease", kind: "Lease",
            namespaced: true,
            columns: [PrinterColumn(name: "Holder", type: "string", jsonPath: ".spec.holderIdentity"), ageColumn]),
        // RBAC objects are stored and served (kubectl apply of manifests); kubesim does not authorize with them.
        ResourceType(
            group: "rbac.authorization.k8s.io", versions: ["v1"], resource: "roles", singular: "role", kind: "Role",
            namespaced: true, columns: [PrinterColumn(name: "Created At", type: "date", jsonPath: ".metadata.creationTimestamp")]),
        ResourceType(
            group: "rbac.authorization.k8s.io", versions: ["v1"], resource: "rolebindings", singular: "rolebinding",
            kind: "RoleBinding", namespaced: true,
            columns: [PrinterColumn(name: "Role", type: "string", jsonPath: ".roleRef.name"), ageColumn]),
        ResourceType(
            group: "rbac.authorization.k8s.io", versions: ["v1"], resource: "clusterroles", singular: "clusterrole",
            kind: "ClusterRole", namespaced: false,
            columns: [PrinterColumn(name: "Created At", type: "date", jsonPath: ".metadata.creationTimestamp")]),
        ResourceType(
            group: "rbac.authorization.k8s.io", versions: ["v1"], resource: "clusterrolebindings",
            singular: "clusterrolebinding", kind: "ClusterRoleBinding", namespaced: false,
            columns: [PrinterColumn(name: "Role", type: "string", jsonPath: ".roleRef.name"), ageColumn]),
        ResourceType(
            group: "apiextensions.k8s.io", versions: ["v1"], resource: "customresourcedefinitions",
            singular: "customresourcedefinition", kind: "CustomResourceDefinition", shortNames: ["crd", "crds"],
            categories: ["api-extensions"], namespaced: false, hasStatus: true,
            columns: [PrinterColumn(name: "Created At", type: "date", jsonPath: ".metadata.creationTimestamp")]),
    ]

    /// The type a CustomResourceDefinition serves, or the validation causes that stop it.
    static func customType(from crd: JSONValue) -> Result<ResourceType, KubeSimError> {
        var causes: [KubeSimError.Cause] = []
        let spec = crd["spec"] ?? [:]
        let group = spec["group"]?.stringValue ?? ""
        let names = spec["names"] ?? [:]
        let plural = names["plural"]?.stringValue ?? ""
        let kind = names["kind"]?.stringValue ?? ""
        let scope = spec["scope"]?.stringValue ?? ""
        if group.isEmpty || !group.contains(".") {
            causes.append(.init(reason: "FieldValueInvalid", message: "should be a domain with at least one dot", field: "spec.group"))
        }
        if plural.isEmpty { causes.append(.init(reason: "FieldValueRequired", message: "Required value", field: "spec.names.plural")) }
        if kind.isEmpty { causes.append(.init(reason: "FieldValueRequired", message: "Required value", field: "spec.names.kind")) }
        if scope != "Namespaced" && scope != "Cluster" {
            causes.append(
                .init(reason: "FieldValueNotSupported", message: "Unsupported value: \"\(scope)\"", field: "spec.scope"))
        }
        let name = crd.value(at: ["metadata", "name"])?.stringValue ?? ""
        if !plural.isEmpty, !group.isEmpty, name != "\(plural).\(group)" {
            causes.append(
                .init(reason: "FieldValueInvalid", message: "must be spec.names.plural+\".\"+spec.group", field: "metadata.name"))
        }
        let versions = (spec["versions"]?.arrayValue ?? []).filter { $0["served"]?.boolValue ?? true }
        if versions.isEmpty {
            causes.append(
                .init(
                    reason: "FieldValueInvalid", message: "must have exactly one version marked as storage version", field: "spec.versions")
            )
        }
        causes += Schema.crdProblems(crd)
        if !causes.isEmpty {
            let type = ResourceType(
                group: "apiextensions.k8s.io", versions: ["v1"], resource: "customresourcedefinitions", singular: "",
                kind: "CustomResourceDefinition", namespaced: false)
            return .failure(KubeSimError.invalid(type, name, causes))
        }
        let storage = versions.first { $0["storage"]?.boolValue == true } ?? versions[0]
        let versionNames =
            [storage["name"]?.stringValue ?? "v1"]
            + sortVersions(versions.compactMap { $0["name"]?.stringValue }).filter { $0 != storage["name"]?.stringValue }
        var schemas: [String: JSONValue] = [:]
        for version in versions {
            if let name = version["name"]?.stringValue, let schema = version.value(at: ["schema", "openAPIV3Schema"]) {
                schemas[name] = schema
            }
        }
        let subresources = storage["subresources"] ?? [:]
        var scale: ScalePaths?
        if let s = subresources["scale"] {
            scale = ScalePaths(
                specReplicasPath: s["specReplicasPath"]?.stringValue ?? ".spec.replicas",
                statusReplicasPath: s["statusReplicasPath"]?.stringValue ?? ".status.replicas",
                labelSelectorPath: s["labelSelectorPath"]?.stringValue)
        }
        func printerColumns(of version: JSONValue) -> [PrinterColumn] {
            guard let declared = version["additionalPrinterColumns"]?.arrayValue else { return [ageColumn] }
            return declared.map { column in
                PrinterColumn(
                    name: column["name"]?.stringValue ?? "", type: column["type"]?.stringValue ?? "string",
                    jsonPath: column["jsonPath"]?.stringValue ?? "", description: column["description"]?.stringValue ?? "",
                    priority: Int(column["priority"]?.intValue ?? 0), format: column["format"]?.stringValue ?? "")
            }
        }
        let columns = printerColumns(of: storage)
        var versionColumns: [String: [PrinterColumn]] = [:]
        for version in versions {
            if let name = version["name"]?.stringValue { versionColumns[name] = printerColumns(of: version) }
        }
        return .success(
            ResourceType(
                group: group, versions: versionNames, resource: plural,
                singular: names["singular"]?.stringValue ?? kind.lowercased(), kind: kind,
                shortNames: names["shortNames"]?.arrayValue?.compactMap(\.stringValue) ?? [],
                categories: names["categories"]?.arrayValue?.compactMap(\.stringValue) ?? [], namespaced: scope == "Namespaced",
                hasStatus: subresources["status"] != nil, scale: scale, columns: columns, versionColumns: versionColumns,
                schemas: schemas, isCustom: true))
    }
}

/// "apps/v1" -> ("apps", "v1"); "v1" -> ("", "v1").
func splitAPIVersion(_ apiVersion: String) -> (group: String, version: String) {
    guard let slash = apiVersion.lastIndex(of: "/") else { return ("", apiVersion) }
    return (String(apiVersion[..<slash]), String(apiVersion[apiVersion.index(after: slash)...]))
}
