/// What the real API server of the emulated version (Kubernetes 1.28) does to the pod specs of
/// built-in kinds (a Pod's `spec`, a workload's `spec.template.spec`) that a client can see:
/// fields that version does not have are dropped (as its decoder drops unknown fields, or
/// refused with `fieldValidation=Strict`), then lifecycle hooks and probes must name exactly
/// one handler. Without this kubesim accepted `preStop: {sleep: ...}`, which 1.28 drops and then
/// refuses as a hook with no handler.
enum PodSpecRules {
    /// The `sleep` lifecycle handler arrived in 1.29 (on by default from 1.30).
    static let lifecycleHandlers = ["exec", "httpGet", "tcpSocket"]
    static let probeHandlers = ["exec", "httpGet", "tcpSocket", "grpc"]

    /// Where the pod spec of `type` is, and how a field under it is named in errors.
    static func podSpecPath(_ type: ResourceType) -> [String]? {
        switch type.typeKey {
        case "/pods": return ["spec"]
        case "/podtemplates": return ["template", "spec"]
        case "apps/deployments", "apps/statefulsets", "apps/replicasets", "apps/daemonsets", "batch/jobs":
            return ["spec", "template", "spec"]
        default: return nil
        }
    }

    /// Drops the fields 1.28 does not know, then validates.
    /// - Returns: the object as the server would keep it.
    /// - Throws: 400 for a dropped field under `fieldValidation=Strict`; 422 with the real
    ///   server's causes for a hook or probe without exactly one handler.
    static func apply(_ type: ResourceType, _ object: JSONValue, name: String, strict: Bool) throws(KubeSimError) -> JSONValue {
        guard let path = podSpecPath(type), var spec = object.value(at: path), spec.objectValue != nil else { return object }
        let prefix = path.joined(separator: ".")
        var unknown: [String] = []
        var causes: [KubeSimError.Cause] = []
        for list in ["initContainers", "containers"] {
            guard var containers = spec[list]?.arrayValue else { continue }
            for i in containers.indices {
                let containerPath = "\(prefix).\(list)[\(i)]"
                for hook in ["postStart", "preStop"] {
                    guard var handler = containers[i].value(at: ["lifecycle", hook]) else { continue }
                    if handler["sleep"] != nil {
                        unknown.append("\(containerPath).lifecycle.\(hook).sleep")
                        handler["sleep"] = nil
                        containers[i].setValue(handler, at: ["lifecycle", hook])
                    }
                    causes += handlerProblems(handler, kinds: lifecycleHandlers, field: "\(containerPath).lifecycle.\(hook)")
                }
                for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                    guard let handler = containers[i][probe] else { continue }
                    causes += handlerProblems(handler, kinds: probeHandlers, field: "\(containerPath).\(probe)")
                }
            }
            spec[list] = .array(containers)
        }
        if strict, !unknown.isEmpty {
            let list = unknown.map { "unknown field \"\($0)\"" }.joined(separator: ", ")
            throw KubeSimError(
                code: 400, reason: "BadRequest",
                message: "\(type.kind) in version \"\(type.preferredVersion)\" cannot be handled as a \(type.kind): strict decoding error: \(list)")
        }
        if !causes.isEmpty { throw .invalid(type, name, causes) }
        var result = object
        result.setValue(spec, at: path)
        return result
    }

    /// `kinds` in the order the real validation looks at them: a second handler is named in the
    /// error's field (`...preStop.tcpSocket`).
    static func handlerProblems(_ handler: JSONValue, kinds: [String], field: String) -> [KubeSimError.Cause] {
        let present = kinds.filter { handler[$0] != nil && handler[$0]?.isNull == false }
        if present.isEmpty {
            return [.init(reason: "FieldValueRequired", message: "Required value: must specify a handler type", field: field)]
        }
        return present.dropFirst().map {
            .init(
                reason: "FieldValueForbidden", message: "Forbidden: may not specify more than 1 handler type",
                field: "\(field).\($0)")
        }
    }
}
