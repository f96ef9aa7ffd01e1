import Foundation

/// Pure helpers of the workload controllers: object builders, hashes, readiness.
enum Workloads {
    static func builtin(_ key: String) -> ResourceType { ResourceRegistry.builtins.first { $0.typeKey == key }! }
    static let podType = builtin("/pods")
    static let claimType = builtin("/persistentvolumeclaims")
    static let deploymentType = builtin("apps/deployments")
    static let replicaSetType = builtin("apps/replicasets")
    static let statefulSetType = builtin("apps/statefulsets")
    static let controllerRevisionType = builtin("apps/controllerrevisions")
    static let eventType = builtin("/events")
    static let volumePathAnnotation = "kubesim.io/volume-path"

    static func volumePath(root: String, namespace: String, name: String) -> String {
        (root.hasSuffix("/") ? root : root + "/") + namespace + "/" + name
    }

    /// A pod-template hash as the real controllers make it: FNV-1a (32 bit) of the template,
    /// its decimal digits mapped onto the alphabet of generated names.
    static func templateHash(_ template: JSONValue) -> String {
        var hash: UInt32 = 2_166_136_261
        for byte in (canonical(template) ?? [:]).serializedBytes() {
            hash ^= UInt32(byte)
            hash = hash &* 16_777_619
        }
        let alphabet = Array("bcdfghjklmnpqrstvwxz2456789")
        return String(String(hash).unicodeScalars.map { alphabet[Int($0.value) % alphabet.count] })
    }

    /// The template without nulls and empty objects or lists, which Go clients add and drop
    /// freely (`creationTimestamp: null`, `resources: {}`): equal templates hash equal.
    static func canonical(_ value: JSONValue) -> JSONValue? {
        switch value {
        case .null: return nil
        case .object(let members):
            let kept = members.compactMapValues(canonical)
            return kept.isEmpty ? nil : .object(kept)
        case .array(let elements):
            return elements.isEmpty ? nil : .array(elements.map { canonical($0) ?? .null })
        default: return value
        }
    }

    /// maxSurge (rounded up) and maxUnavailable (rounded down) of a RollingUpdate Deployment;
    /// both 25% by default, and never both 0.
    static func rollingParameters(_ deployment: JSONValue) -> (surge: Int, unavailable: Int) {
        let replicas = deployment.specReplicas
        if deployment.value(at: ["spec", "strategy", "type"])?.stringValue == "Recreate" { return (0, replicas) }
        let rolling = deployment.value(at: ["spec", "strategy", "rollingUpdate"]) ?? [:]
        let surge = scaled(rolling["maxSurge"] ?? "25%", of: replicas, roundUp: true)
        var unavailable = scaled(rolling["maxUnavailable"] ?? "25%", of: replicas, roundUp: false)
        if surge == 0, unavailable == 0 { unavailable = 1 }
        return (surge, min(unavailable, replicas))
    }

    /// An IntOrString: an absolute number or a percentage of `total`.
    static func scaled(_ value: JSONValue, of total: Int, roundUp: Bool) -> Int {
        if let number = value.intValue { return Int(number) }
        guard let text = value.stringValue, text.hasSuffix("%"), let percent = Double(text.dropLast()) else { return 0 }
        let exact = percent * Double(total) / 100
        return Int(roundUp ? exact.rounded(.up) : exact.rounded(.down))
    }

    static func byController(_ objects: [JSONValue]) -> [String: [JSONValue]] {
        var result: [String: [JSONValue]] = [:]
        for object in objects {
            if let uid = object.controllerUID { result[uid, default: []].append(object) }
        }
        return result
    }

    static func ordinal(of podName: String, set: String) -> Int? {
        guard podName.hasPrefix(set + "-") else { return nil }
        let rest = podName.dropFirst(set.count + 1)
        guard !rest.isEmpty, rest.allSatisfy(\.isNumber) else { return nil }
        return Int(rest)
    }

    static func ownerReference(_ owner: JSONValue, controller: Bool) -> JSONValue {
        [
            "apiVersion": owner["apiVersion"] ?? "apps/v1", "kind": owner["kind"] ?? "", "name": .string(owner.name),
            "uid": .string(owner.uid), "controller": .bool(controller), "blockOwnerDeletion": true,
        ]
    }

    static func setCondition(_ conditions: inout [JSONValue], type: String, status: String, reason: String, message: String) {
        let now = JSONValue.string(Timestamps.format(Date()))
        let index = conditions.firstIndex { $0["type"]?.stringValue == type }
        let old = index.map { conditions[$0] }
        if let old, old["status"]?.stringValue == status, old["reason"]?.stringValue == reason,
            old["message"]?.stringValue == message
        {
            return
        }
        let transition = old?["status"]?.stringValue == status ? (old?["lastTransitionTime"] ?? now) : now
        let condition: JSONValue = [
            "type": .string(type), "status": .string(status), "reason": .string(reason), "message": .string(message),
            "lastUpdateTime": now, "lastTransitionTime": transition,
        ]
        if let index { conditions[index] = condition } else { conditions.append(condition) }
    }

    /// A StatefulSet's revision: its template as the strategic merge patch `kubectl rollout undo` applies.
    static func controllerRevision(set: JSONValue, name: String, hash: String, template: JSONValue, revision: Int) -> JSONValue {
        var labels = template.value(at: ["metadata", "labels"])?.objectValue ?? [:]
        labels["controller.kubernetes.io/hash"] = .string(hash)
        var patch = template
        patch["$patch"] = "replace"
        return [
            "apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": [
                "name": .string(name), "namespace": .string(set.namespace), "labels": .object(labels),
                "ownerReferences": [ownerReference(set, controller: true)],
            ],
            "data": ["spec": ["template": patch]], "revision": .int(Int64(revision)),
        ]
    }

    static func replicaSet(for deployment: JSONValue, hash: String, replicas: Int, revision: Int) -> JSONValue {
        var template = deployment.value(at: ["spec", "template"]) ?? [:]
        template.setValue(.string(hash), at: ["metadata", "labels", "pod-template-hash"])
        var selector = deployment.value(at: ["spec", "selector"]) ?? [:]
        selector.setValue(.string(hash), at: ["matchLabels", "pod-template-hash"])
        var labels = template.value(at: ["metadata", "labels"])?.objectValue ?? [:]
        labels["pod-template-hash"] = .string(hash)
        return [
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": [
                "name": .string("\(deployment.name)-\(hash)"), "namespace": .string(deployment.namespace), "labels": .object(labels),
                "annotations": ["deployment.kubernetes.io/revision": .string(String(revision))],
                "ownerReferences": [ownerReference(deployment, controller: true)],
            ],
            "spec": [
                "replicas": .int(Int64(replicas)), "selector": selector, "template": template,
                "minReadySeconds": deployment.value(at: ["spec", "minReadySeconds"]) ?? 0,
            ],
        ]
    }

    /// A pod of a ReplicaSet (named by `generateName`, like the real controller's).
    static func pod(for rs: JSONValue) -> JSONValue {
        let template = rs.value(at: ["spec", "template"]) ?? [:]
        var metadata = template["metadata"]?.objectValue ?? [:]
        metadata["name"] = nil
        metadata["generateName"] = .string(rs.name + "-")
        metadata["namespace"] = .string(rs.namespace)
        metadata["ownerReferences"] = [ownerReference(rs, controller: true)]
        return ["apiVersion": "v1", "kind": "Pod", "metadata": .object(metadata), "spec": podSpec(template)]
    }

    static func podSpec(_ template: JSONValue) -> JSONValue {
        var spec = template["spec"] ?? [:]
        if spec["restartPolicy"] == nil { spec["restartPolicy"] = "Always" }
        if spec["terminationGracePeriodSeconds"] == nil { spec["terminationGracePeriodSeconds"] = 30 }
        if spec["dnsPolicy"] == nil { spec["dnsPolicy"] = "ClusterFirst" }
        if spec["schedulerName"] == nil { spec["schedulerName"] = "default-scheduler" }
        return spec
    }

    /// Pod `<set>-<ordinal>` with its stable identity and its claims mounted as volumes.
    static func statefulPod(set: JSONValue, ordinal: Int, template: JSONValue, revision: String, claims: [(String, String)])
        -> JSONValue
    {
        let name = "\(set.name)-\(ordinal)"
        var metadata = template["metadata"]?.objectValue ?? [:]
        var labels = metadata["labels"]?.objectValue ?? [:]
        labels["controller-revision-hash"] = .string(revision)
        labels["statefulset.kubernetes.io/pod-name"] = .string(name)
        labels["apps.kubernetes.io/pod-index"] = .string(String(ordinal))
        metadata["labels"] = .object(labels)
        metadata["name"] = .string(name)
        metadata["generateName"] = nil
        metadata["namespace"] = .string(set.namespace)
        metadata["ownerReferences"] = [ownerReference(set, controller: true)]
        var spec = podSpec(template)
        spec["hostname"] = .string(name)
        if let service = set.value(at: ["spec", "serviceName"])?.stringValue, !service.isEmpty {
            spec["subdomain"] = .string(service)
        }
        var volumes = (spec["volumes"]?.arrayValue ?? []).filter { volume in
            !claims.contains { $0.0 == volume["name"]?.stringValue }
        }
        for (volume, claim) in claims {
            volumes.append(["name": .string(volume), "persistentVolumeClaim": ["claimName": .string(claim)]])
        }
        if !volumes.isEmpty { spec["volumes"] = .array(volumes) }
        return ["apiVersion": "v1", "kind": "Pod", "metadata": .object(metadata), "spec": spec]
    }

    static func claim(from template: JSONValue, name: String, set: JSONValue, owned: Bool, volumeRoot: String) -> JSONValue {
        var labels = template.value(at: ["metadata", "labels"])?.objectValue ?? [:]
        for (key, value) in set.value(at: ["spec", "selector", "matchLabels"])?.objectValue ?? [:] { labels[key] = value }
        var metadata: [String: JSONValue] = [
            "name": .string(name), "namespace": .string(set.namespace), "labels": .object(labels),
            "annotations": [volumePathAnnotation: .string(volumePath(root: volumeRoot, namespace: set.namespace, name: name))],
        ]
        if owned { metadata["ownerReferences"] = [ownerReference(set, controller: false)] }
        var spec = template["spec"] ?? [:]
        if spec["accessModes"] == nil { spec["accessModes"] = ["ReadWriteOnce"] }
        if spec["volumeMode"] == nil { spec["volumeMode"] = "Filesystem" }
        return ["apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": .object(metadata), "spec": spec]
    }

    /// The status a kubelet reports for a started pod whose containers are all ready.
    static func readyPodStatus(_ pod: JSONValue, ip: String) -> JSONValue {
        let now = JSONValue.string(Timestamps.format(Date()))
        let containers = pod.value(at: ["spec", "containers"])?.arrayValue ?? []
        let conditions: [JSONValue] = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"].map {
            ["type": .string($0), "status": "True", "lastProbeTime": .null, "lastTransitionTime": now]
        }
        return [
            "phase": "Running", "conditions": .array(conditions), "hostIP": "127.0.0.1", "hostIPs": [["ip": "127.0.0.1"]],
            "podIP": .string(ip), "podIPs": [["ip": .string(ip)]], "startTime": now, "qosClass": "BestEffort",
            "containerStatuses": .array(
                containers.map { container in
                    [
                        "name": container["name"] ?? "", "image": container["image"] ?? "", "imageID": "", "ready": true,
                        "started": true, "restartCount": 0, "state": ["running": ["startedAt": now]],
                    ]
                }),
        ]
    }
}

extension JSONValue {
    var name: String { value(at: ["metadata", "name"])?.stringValue ?? "" }
    var namespace: String { value(at: ["metadata", "namespace"])?.stringValue ?? "" }
    var uid: String { value(at: ["metadata", "uid"])?.stringValue ?? "" }
    var labels: [String: String] { (value(at: ["metadata", "labels"])?.objectValue ?? [:]).compactMapValues(\.stringValue) }
    var createdAt: String { value(at: ["metadata", "creationTimestamp"])?.stringValue ?? "" }
    var isDeleting: Bool { value(at: ["metadata", "deletionTimestamp"]) != nil }
    var specReplicas: Int { Int(value(at: ["spec", "replicas"])?.intValue ?? 1) }
    func annotation(_ key: String) -> String? { value(at: ["metadata", "annotations", key])?.stringValue }

    /// The uid of the owner reference with `controller: true`.
    var controllerUID: String? {
        (value(at: ["metadata", "ownerReferences"])?.arrayValue ?? []).first { $0["controller"]?.boolValue == true }?["uid"]?
            .stringValue
    }

    /// Running, with condition Ready True, and not being deleted.
    var isPodReady: Bool {
        guard !isDeleting, value(at: ["status", "phase"])?.stringValue == "Running" else { return false }
        return (value(at: ["status", "conditions"])?.arrayValue ?? []).contains {
            $0["type"]?.stringValue == "Ready" && $0["status"]?.stringValue == "True"
        }
    }
}
