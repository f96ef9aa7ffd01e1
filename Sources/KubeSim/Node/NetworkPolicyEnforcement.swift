import Foundation

/// NetworkPolicy ingress as a network plugin enforces it, for the pods of kubesim's node. Pure:
/// built from pods, namespaces and policies, it answers whether a connection is allowed (the
/// Service proxy asks before it forwards) and gives each isolated pod the nftables ruleset its
/// network namespace gets (pod-to-pod traffic on the bridge). As the Kubernetes documentation
/// says of every implementation, traffic from the node itself (kubelet probes, the Service
/// proxy, the host) is always allowed; so is a pod's own loopback.
struct NetworkPolicySnapshot: Equatable, Sendable {
    /// One ingress rule's grant: from these sources to these ports.
    struct Grant: Equatable, Sendable {
        /// Pod addresses the rule's selector peers match.
        var addresses: Set<String>
        /// ipBlock peers: a network and the networks cut out of it.
        var blocks: [Block]
        /// No `from` at all: every source.
        var anySource: Bool
        /// nil: every port.
        var ports: [Port]?
    }

    struct Block: Equatable, Sendable {
        var cidr: String
        var except: [String]
        /// Parsed once here, not for every connection the Service proxy checks.
        var network: CIDR?
        var excluded: [CIDR]

        init(cidr: String, except: [String]) {
            self.cidr = cidr
            self.except = except
            network = CIDR(cidr)
            excluded = except.compactMap(CIDR.init)
        }
    }

    struct Port: Equatable, Hashable, Sendable {
        var proto: String
        var number: Int
    }

    /// The grants of each isolated pod, by its address. A pod absent here takes everything.
    var isolated: [String: [Grant]] = [:]

    init() {}

    /// - Parameters:
    ///   - pods: every pod (with `status.podIP` once it has one).
    ///   - namespaces: every namespace (their labels are what namespace selectors match).
    ///   - policies: every NetworkPolicy.
    init(pods: [JSONValue], namespaces: [JSONValue], policies: [JSONValue]) {
        let namespaceLabels = Dictionary(namespaces.map { ($0.name, $0.labels) }, uniquingKeysWith: { first, _ in first })
        let addressed = pods.filter { $0.value(at: ["status", "podIP"])?.stringValue != nil && !$0.isDeleting }
        func selector(_ json: JSONValue) -> LabelSelector? {
            try? LabelSelector(parsing: LabelSelector.string(from: json))
        }
        for policy in policies where !policy.isDeleting {
            let spec = policy["spec"] ?? [:]
            let types = (spec["policyTypes"]?.arrayValue ?? ["Ingress"]).compactMap(\.stringValue)
            guard types.contains("Ingress"), let podSelector = selector(spec["podSelector"] ?? [:]) else { continue }
            let targets = addressed.filter { $0.namespace == policy.namespace && podSelector.matches($0.labels) }
            for target in targets {
                let address = target.value(at: ["status", "podIP"])?.stringValue ?? ""
                var grants = isolated[address] ?? []
                for rule in spec["ingress"]?.arrayValue ?? [] {
                    grants.append(
                        Self.grant(rule, policyNamespace: policy.namespace, target: target, pods: addressed, namespaceLabels: namespaceLabels))
                }
                isolated[address] = grants
            }
        }
    }

    static func grant(
        _ rule: JSONValue, policyNamespace: String, target: JSONValue, pods: [JSONValue], namespaceLabels: [String: [String: String]]
    ) -> Grant {
        var grant = Grant(addresses: [], blocks: [], anySource: false, ports: nil)
        let peers = rule["from"]?.arrayValue ?? []
        grant.anySource = peers.isEmpty
        for peer in peers {
            if let block = peer["ipBlock"], let cidr = block["cidr"]?.stringValue {
                grant.blocks.append(Block(cidr: cidr, except: (block["except"]?.arrayValue ?? []).compactMap(\.stringValue)))
                continue
            }
            let podSelector = peer["podSelector"].flatMap { try? LabelSelector(parsing: LabelSelector.string(from: $0)) }
            let namespaceSelector = peer["namespaceSelector"].flatMap { try? LabelSelector(parsing: LabelSelector.string(from: $0)) }
            for pod in pods {
                // A podSelector alone means the policy's own namespace.
                let inNamespace =
                    namespaceSelector.map { $0.matches(namespaceLabels[pod.namespace] ?? [:]) } ?? (pod.namespace == policyNamespace)
                guard inNamespace, podSelector?.matches(pod.labels) ?? true else { continue }
                if let address = pod.value(at: ["status", "podIP"])?.stringValue { grant.addresses.insert(address) }
            }
        }
        if let ports = rule["ports"]?.arrayValue, !ports.isEmpty {
            grant.ports = ports.compactMap { port in
                let proto = port["protocol"]?.stringValue ?? "TCP"
                // A protocol alone: every port of it (number 0).
                guard let value = port["port"] else { return Port(proto: proto, number: 0) }
                if let number = value.intValue { return Port(proto: proto, number: Int(number)) }
                // A named port is the target pod's container port of that name.
                guard let name = value.stringValue else { return nil }
                for container in target.value(at: ["spec", "containers"])?.arrayValue ?? [] {
                    for declared in container["ports"]?.arrayValue ?? [] where declared["name"]?.stringValue == name {
                        if let number = declared["containerPort"]?.intValue { return Port(proto: proto, number: Int(number)) }
                    }
                }
                return nil
            }
        }
        return grant
    }

    /// Whether a connection from `source` to `destination`:`port` is allowed. `source` nil or
    /// not a pod's address: the node, always allowed.
    func allows(source: String?, destination: String, port: Int, proto: String = "TCP", podAddresses: Set<String>) -> Bool {
        guard let grants = isolated[destination] else { return true }
        guard let source, podAddresses.contains(source) else { return true }
        return grants.contains { grant in
            let fromMatches =
                grant.anySource || grant.addresses.contains(source)
                || grant.blocks.contains { block in
                    guard let network = block.network, let address = CIDR("\(source)/32") else { return false }
                    return network.contains(address.address) && !block.excluded.contains { $0.contains(address.address) }
                }
            let portMatches =
                grant.ports.map { $0.contains(Port(proto: proto, number: port)) || $0.contains(Port(proto: proto, number: 0)) } ?? true
            return fromMatches && portMatches
        }
    }

    static let table = "kubesim_network_policy"

    /// The nftables script for the pod at `address`: its table replaced by the rules, or
    /// removed when no policy isolates it. `podSubnet` is the pods' network (e.g. `10.244`),
    /// `gateway` the node's address on it: sources outside the pods are the node.
    func nftScript(for address: String, podSubnet: String, gateway: String) -> String {
        // Adding first makes the delete valid when the table does not exist yet.
        var lines = ["add table inet \(Self.table)", "delete table inet \(Self.table)"]
        guard let grants = isolated[address] else { return lines.joined(separator: "\n") + "\n" }
        lines.append("table inet \(Self.table) {")
        lines.append("  chain ingress {")
        lines.append("    type filter hook input priority 0; policy accept;")
        lines.append("    ct state established,related accept")
        lines.append("    iif \"lo\" accept")
        lines.append("    ip saddr != \(podSubnet).0.0/16 accept")
        lines.append("    ip saddr \(gateway) accept")
        for grant in grants {
            var sources: [String] = []
            if grant.anySource {
                sources = [""]
            } else {
                if !grant.addresses.isEmpty { sources.append("ip saddr { \(grant.addresses.sorted().joined(separator: ", ")) } ") }
                for block in grant.blocks where block.network?.address.count == 4 {
                    let except = block.except.isEmpty ? "" : "ip saddr != { \(block.except.joined(separator: ", ")) } "
                    sources.append("ip saddr \(block.cidr) \(except)")
                }
            }
            let portMatches: [String]
            if let ports = grant.ports {
                let byProtocol = Dictionary(grouping: ports, by: \.proto)
                portMatches = byProtocol.keys.sorted().map { proto in
                    let numbers = byProtocol[proto]!.map(\.number)
                    if numbers.contains(0) { return "meta l4proto \(proto.lowercased()) " }
                    return "\(proto.lowercased()) dport { \(numbers.sorted().map(String.init).joined(separator: ", ")) } "
                }
            } else {
                portMatches = [""]
            }
            for source in sources {
                for port in portMatches { lines.append("    \(source)\(port)accept") }
            }
        }
        lines.append("    drop")
        lines.append("  }")
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }
}
