import Foundation

/// `networking.k8s.io/v1` NetworkPolicies as the real API server (1.28) defaults and validates
/// them (`pkg/apis/networking/validation`): ports, peers, ipBlocks and policy types, with its
/// wording. Without this kubesim stored any policy, and a controller could ship one the real
/// server refuses.
struct NetworkPolicyStrategy: KindStrategy {
    func prepareForCreate(_ object: inout JSONValue, _ view: StoreView) { Self.applyDefaults(&object) }

    func prepareForUpdate(_ new: inout JSONValue, old: JSONValue, subresource: String?) { Self.applyDefaults(&new) }

    /// Ports default to TCP; `policyTypes` defaults to Ingress, plus Egress when there are
    /// egress rules.
    static func applyDefaults(_ object: inout JSONValue) {
        guard var spec = object["spec"], spec.objectValue != nil else { return }
        for direction in ["ingress", "egress"] {
            guard var rules = spec[direction]?.arrayValue else { continue }
            for r in rules.indices {
                guard var ports = rules[r]["ports"]?.arrayValue else { continue }
                for p in ports.indices where ports[p]["protocol"] == nil { ports[p]["protocol"] = "TCP" }
                rules[r]["ports"] = .array(ports)
            }
            spec[direction] = .array(rules)
        }
        if (spec["policyTypes"]?.arrayValue ?? []).isEmpty {
            var types: [JSONValue] = ["Ingress"]
            if !(spec["egress"]?.arrayValue ?? []).isEmpty { types.append("Egress") }
            spec["policyTypes"] = .array(types)
        }
        object["spec"] = spec
    }

    func validate(_ object: JSONValue, old: JSONValue?, type: ResourceType, name: String) throws(KubeSimError) {
        let causes = Self.problems(object["spec"] ?? [:])
        if !causes.isEmpty { throw .invalid(type, name, causes) }
    }

    static func problems(_ spec: JSONValue) -> [KubeSimError.Cause] {
        var causes = LabelSelectorRules.problems(spec["podSelector"], field: "spec.podSelector")
        for (direction, peers) in [("ingress", "from"), ("egress", "to")] {
            for (r, rule) in (spec[direction]?.arrayValue ?? []).enumerated() {
                let rulePath = "spec.\(direction)[\(r)]"
                for (p, port) in (rule["ports"]?.arrayValue ?? []).enumerated() {
                    causes += portProblems(port, field: "\(rulePath).ports[\(p)]")
                }
                for (p, peer) in (rule[peers]?.arrayValue ?? []).enumerated() {
                    causes += peerProblems(peer, field: "\(rulePath).\(peers)[\(p)]")
                }
            }
        }
        let types = spec["policyTypes"]?.arrayValue ?? []
        if types.count > 2 {
            causes.append(.init(reason: "FieldValueInvalid", message: "Invalid value: \(types.count): may not specify more than two policyTypes", field: "spec.policyTypes"))
            return causes
        }
        for (i, policyType) in types.enumerated() where policyType != "Ingress" && policyType != "Egress" {
            causes.append(
                .init(
                    reason: "FieldValueNotSupported",
                    message: "Unsupported value: \(quoted(policyType)): supported values: \"Ingress\", \"Egress\"",
                    field: "spec.policyTypes[\(i)]"))
        }
        return causes
    }

    static func portProblems(_ port: JSONValue, field: String) -> [KubeSimError.Cause] {
        var causes: [KubeSimError.Cause] = []
        if let proto = port["protocol"], !["TCP", "UDP", "SCTP"].contains(proto.stringValue ?? "") {
            causes.append(
                .init(
                    reason: "FieldValueNotSupported",
                    message: "Unsupported value: \(quoted(proto)): supported values: \"TCP\", \"UDP\", \"SCTP\"", field: "\(field).protocol"))
        }
        if let number = port["port"]?.intValue {
            if !(1...65535).contains(number) {
                causes.append(
                    .init(reason: "FieldValueInvalid", message: "Invalid value: \(number): must be between 1 and 65535, inclusive", field: "\(field).port"))
            }
        } else if let name = port["port"]?.stringValue, !isPortName(name) {
            causes.append(
                .init(
                    reason: "FieldValueInvalid",
                    message: "Invalid value: \"\(name)\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                    field: "\(field).port"))
        }
        return causes
    }

    /// An IANA service name: 1-15 of a-z 0-9 and '-', at least one letter, no leading,
    /// trailing or double hyphen. (The real server gives a more specific message for each.)
    static func isPortName(_ name: String) -> Bool {
        let allowed = name.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" }
        return (1...15).contains(name.count) && allowed && name.contains(where: \.isLetter) && !name.hasPrefix("-")
            && !name.hasSuffix("-") && !name.contains("--")
    }

    static func peerProblems(_ peer: JSONValue, field: String) -> [KubeSimError.Cause] {
        var causes: [KubeSimError.Cause] = []
        var count = 0
        for selector in ["podSelector", "namespaceSelector"] where peer[selector] != nil && peer[selector] != .null {
            count += 1
            causes += LabelSelectorRules.problems(peer[selector], field: "\(field).\(selector)")
        }
        let ipBlock = peer["ipBlock"].flatMap { $0 == .null ? nil : $0 }
        if let ipBlock {
            count += 1
            causes += ipBlockProblems(ipBlock, field: "\(field).ipBlock")
        }
        if count == 0 {
            causes.append(.init(reason: "FieldValueRequired", message: "Required value: must specify a peer", field: field))
        } else if count > 1, ipBlock != nil {
            causes.append(.init(reason: "FieldValueForbidden", message: "Forbidden: may not specify both ipBlock and another peer", field: field))
        }
        return causes
    }

    static func ipBlockProblems(_ block: JSONValue, field: String) -> [KubeSimError.Cause] {
        guard let cidr = block["cidr"]?.stringValue, !cidr.isEmpty else {
            return [.init(reason: "FieldValueRequired", message: "Required value", field: "\(field).cidr")]
        }
        guard let network = CIDR(cidr) else {
            return [.init(reason: "FieldValueInvalid", message: "Invalid value: \"\(cidr)\": not a valid CIDR", field: "\(field).cidr")]
        }
        var causes: [KubeSimError.Cause] = []
        for (i, text) in (block["except"]?.arrayValue ?? []).enumerated() {
            let exceptText = text.stringValue ?? ""
            guard let except = CIDR(exceptText) else {
                causes.append(.init(reason: "FieldValueInvalid", message: "Invalid value: \"\(exceptText)\": not a valid CIDR", field: "\(field).except[\(i)]"))
                return causes
            }
            if !(network.contains(except.address) && network.prefix < except.prefix) {
                causes.append(
                    .init(reason: "FieldValueInvalid", message: "Invalid value: \"\(exceptText)\": must be a strict subset of `cidr`", field: "\(field).except[\(i)]"))
            }
        }
        return causes
    }

    static func quoted(_ value: JSONValue) -> String {
        if let text = value.stringValue { return "\"\(text)\"" }
        return "\(value)"
    }
}

/// An IPv4 or IPv6 network in CIDR notation, as Go's `net.ParseCIDR` reads it.
struct CIDR: Equatable, Sendable {
    let address: [UInt8]
    let prefix: Int

    init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let prefix = Int(parts[1]), String(prefix) == parts[1] || parts[1] == "0" else { return nil }
        var bytes: [UInt8]
        if parts[0].contains(":") {
            var address = in6_addr()
            guard inet_pton(AF_INET6, String(parts[0]), &address) == 1 else { return nil }
            bytes = withUnsafeBytes(of: &address) { Array($0) }
        } else {
            var address = in_addr()
            guard inet_pton(AF_INET, String(parts[0]), &address) == 1 else { return nil }
            bytes = withUnsafeBytes(of: &address) { Array($0) }
        }
        guard (0...(bytes.count * 8)).contains(prefix) else { return nil }
        self.address = bytes
        self.prefix = prefix
    }

    /// Whether `other` (an address of the same family) falls inside this network.
    func contains(_ other: [UInt8]) -> Bool {
        guard other.count == address.count else { return false }
        for bit in 0..<prefix {
            let byte = bit / 8
            let mask = UInt8(0x80) >> UInt8(bit % 8)
            if address[byte] & mask != other[byte] & mask { return false }
        }
        return true
    }
}

/// `metav1.LabelSelector` validation (`ValidateLabelSelector`): operators, and the values
/// each operator needs or forbids.
enum LabelSelectorRules {
    static func problems(_ selector: JSONValue?, field: String) -> [KubeSimError.Cause] {
        guard let selector, selector != .null else { return [] }
        var causes: [KubeSimError.Cause] = []
        for (i, expression) in (selector["matchExpressions"]?.arrayValue ?? []).enumerated() {
            let path = "\(field).matchExpressions[\(i)]"
            let values = expression["values"]?.arrayValue ?? []
            switch expression["operator"]?.stringValue ?? "" {
            case "In", "NotIn":
                if values.isEmpty {
                    causes.append(
                        .init(reason: "FieldValueRequired", message: "Required value: must be specified when `operator` is 'In' or 'NotIn'", field: "\(path).values"))
                }
            case "Exists", "DoesNotExist":
                if !values.isEmpty {
                    causes.append(
                        .init(
                            reason: "FieldValueForbidden", message: "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                            field: "\(path).values"))
                }
            case let other:
                causes.append(
                    .init(reason: "FieldValueInvalid", message: "Invalid value: \"\(other)\": not a valid selector operator", field: "\(path).operator"))
            }
        }
        return causes
    }
}
