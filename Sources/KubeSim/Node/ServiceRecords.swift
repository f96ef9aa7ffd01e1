import Foundation

/// EndpointSlices and Endpoints of a Service from the pods it selects, and the proxy's
/// backends from the slices. Pure.
enum EndpointBuilder {
    static func objects(service: JSONValue, pods: [JSONValue]) -> (slice: JSONValue, endpoints: JSONValue) {
        let servicePorts = service.value(at: ["spec", "ports"])?.arrayValue ?? []
        let publishNotReady = service.value(at: ["spec", "publishNotReadyAddresses"])?.boolValue == true
        var endpoints: [JSONValue] = []
        var readyAddresses: [JSONValue] = []
        var notReadyAddresses: [JSONValue] = []
        for pod in pods {
            guard let ip = pod.value(at: ["status", "podIP"])?.stringValue else { continue }
            let terminating = pod.isDeleting
            let serving = podReadyCondition(pod)
            let ready = (serving || publishNotReady) && !terminating
            var endpoint: [String: JSONValue] = [
                "addresses": [.string(ip)],
                "conditions": ["ready": .bool(ready), "serving": .bool(serving), "terminating": .bool(terminating)],
                "targetRef": ["kind": "Pod", "namespace": .string(pod.namespace), "name": .string(pod.name), "uid": .string(pod.uid)],
            ]
            if let node = pod.value(at: ["spec", "nodeName"]) { endpoint["nodeName"] = node }
            if let hostname = pod.value(at: ["spec", "hostname"]), pod.value(at: ["spec", "subdomain"])?.stringValue == service.name {
                endpoint["hostname"] = hostname
            }
            endpoints.append(.object(endpoint))
            let address: JSONValue = [
                "ip": .string(ip),
                "targetRef": ["kind": "Pod", "namespace": .string(pod.namespace), "name": .string(pod.name), "uid": .string(pod.uid)],
            ]
            if ready { readyAddresses.append(address) } else if !terminating { notReadyAddresses.append(address) }
        }
        let ports: [JSONValue] = servicePorts.map { port in
            var entry: [String: JSONValue] = [
                "protocol": port["protocol"] ?? "TCP", "port": .int(Int64(targetPort(port, pods: pods) ?? 0)),
            ]
            if let name = port["name"] { entry["name"] = name } else { entry["name"] = "" }
            return .object(entry)
        }
        let owner: JSONValue = [
            "apiVersion": "v1", "kind": "Service", "name": .string(service.name), "uid": .string(service.uid),
            "controller": true, "blockOwnerDeletion": true,
        ]
        let slice: JSONValue = [
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": [
                "name": .string(sliceName(service)), "namespace": .string(service.namespace),
                "labels": [
                    "kubernetes.io/service-name": .string(service.name),
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                ],
                "ownerReferences": [owner],
            ],
            "addressType": "IPv4", "endpoints": .array(endpoints), "ports": .array(ports),
        ]
        var subset: [String: JSONValue] = [:]
        if !readyAddresses.isEmpty { subset["addresses"] = .array(readyAddresses) }
        if !notReadyAddresses.isEmpty { subset["notReadyAddresses"] = .array(notReadyAddresses) }
        subset["ports"] = .array(ports)
        let legacy: JSONValue = [
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": [
                "name": .string(service.name), "namespace": .string(service.namespace),
                "labels": ["kubernetes.io/service-name": .string(service.name)], "ownerReferences": [owner],
            ],
            "subsets": readyAddresses.isEmpty && notReadyAddresses.isEmpty ? [] : [.object(subset)],
        ]
        return (slice, legacy)
    }

    /// `<service>-<5 characters>`, stable for the Service's uid.
    static func sliceName(_ service: JSONValue) -> String {
        let alphabet = Array("bcdfghjklmnpqrstvwxz2456789")
        var hash: UInt32 = 2_166_136_261
        for byte in service.uid.utf8 {
            hash ^= UInt32(byte)
            hash = hash &* 16_777_619
        }
        var suffix = ""
        for _ in 0..<5 {
            suffix.append(alphabet[Int(hash % UInt32(alphabet.count))])
            hash /= UInt32(alphabet.count)
        }
        return String(service.name.prefix(57)) + "-" + suffix
    }

    static func podReadyCondition(_ pod: JSONValue) -> Bool {
        (pod.value(at: ["status", "conditions"])?.arrayValue ?? []).contains {
            $0["type"]?.stringValue == "Ready" && $0["status"]?.stringValue == "True"
        }
    }

    /// A Service port's target: a number, or a named container port of the (first) pod that has it.
    static func targetPort(_ port: JSONValue, pods: [JSONValue]) -> Int? {
        let target = port["targetPort"] ?? port["port"] ?? .null
        if let number = target.intValue { return Int(number) }
        guard let name = target.stringValue else { return nil }
        if let number = Int(name) { return number }
        for pod in pods {
            for container in pod.value(at: ["spec", "containers"])?.arrayValue ?? [] {
                for declared in container["ports"]?.arrayValue ?? [] where declared["name"]?.stringValue == name {
                    return declared["containerPort"]?.intValue.map { Int($0) }
                }
            }
        }
        return nil
    }

    /// Ready endpoints of the slices for one Service port (matched by port name).
    static func backends(port: JSONValue, slices: [JSONValue]) -> [ServiceProxy.Backend] {
        let name = port["name"]?.stringValue ?? ""
        var result: [ServiceProxy.Backend] = []
        for slice in slices {
            guard
                let target = (slice["ports"]?.arrayValue ?? []).first(where: { ($0["name"]?.stringValue ?? "") == name })?["port"]?
                    .intValue, target > 0
            else { continue }
            for endpoint in slice["endpoints"]?.arrayValue ?? []
            where endpoint.value(at: ["conditions", "ready"])?.boolValue != false {
                for address in endpoint["addresses"]?.arrayValue ?? [] {
                    if let ip = address.stringValue { result.append(.init(host: ip, port: Int(target))) }
                }
            }
        }
        return result
    }
}

/// The names pods resolve: Services (`svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`),
/// headless Services as their ready endpoints, and pods with a hostname and subdomain.
struct DNSSnapshot: Equatable, Sendable {
    struct Record: Equatable, Sendable {
        var namespace: String
        var name: String  // service name, or "hostname.subdomain"
        var address: String
    }
    var records: [Record]

    init(records: [Record]) { self.records = records }

    init(services: [JSONValue], slices: [JSONValue], pods: [JSONValue]) {
        var records: [Record] = []
        for service in services where !service.isDeleting {
            let clusterIP = service.value(at: ["spec", "clusterIP"])?.stringValue ?? ""
            if clusterIP == "None" {
                for slice in slices
                where slice.namespace == service.namespace && slice.labels["kubernetes.io/service-name"] == service.name {
                    for endpoint in slice["endpoints"]?.arrayValue ?? []
                    where endpoint.value(at: ["conditions", "ready"])?.boolValue != false {
                        for address in endpoint["addresses"]?.arrayValue ?? [] {
                            if let ip = address.stringValue {
                                records.append(Record(namespace: service.namespace, name: service.name, address: ip))
                            }
                        }
                    }
                }
            } else if !clusterIP.isEmpty {
                records.append(Record(namespace: service.namespace, name: service.name, address: clusterIP))
            }
        }
        for pod in pods where !pod.isDeleting {
            guard let hostname = pod.value(at: ["spec", "hostname"])?.stringValue,
                let subdomain = pod.value(at: ["spec", "subdomain"])?.stringValue,
                let ip = pod.value(at: ["status", "podIP"])?.stringValue
            else { continue }
            records.append(Record(namespace: pod.namespace, name: "\(hostname).\(subdomain)", address: ip))
        }
        self.records = records.sorted { ($0.namespace, $0.name, $0.address) < ($1.namespace, $1.name, $1.address) }
    }

    /// The pod's `/etc/hosts`.
    func hostsFile(for pod: JSONValue, address: String) -> String {
        var lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        let hostname = pod.value(at: ["spec", "hostname"])?.stringValue ?? pod.name
        if let subdomain = pod.value(at: ["spec", "subdomain"])?.stringValue {
            lines.append("\(address)\t\(hostname).\(subdomain).\(pod.namespace).svc.cluster.local \(hostname)")
        } else {
            lines.append("\(address)\t\(hostname)")
        }
        for record in records {
            var names = [
                "\(record.name).\(record.namespace).svc.cluster.local", "\(record.name).\(record.namespace).svc",
                "\(record.name).\(record.namespace)",
            ]
            if record.namespace == pod.namespace { names.append(record.name) }
            lines.append("\(record.address)\t\(names.joined(separator: " "))")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
