import Foundation

/// Decoding of the Kubernetes protobuf encoding (`application/vnd.kubernetes.protobuf`) for the
/// few kinds `kubectl create namespace|configmap|secret|serviceaccount` send that way: the
/// `k8s\0` + `runtime.Unknown` envelope, ObjectMeta (name, generateName, namespace, labels,
/// annotations, ownerReferences, finalizers) and those kinds' own fields. Anything else is 415.
enum KubernetesProtobuf {
    /// One decoded field: a varint or the bytes of a length-delimited field.
    enum Field {
        case varint(UInt64)
        case bytes([UInt8])
    }

    static func fields(_ bytes: [UInt8]) throws(KubeSimError) -> [(Int, Field)] {
        var out: [(Int, Field)] = []
        var i = 0
        func varint() throws(KubeSimError) -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard i < bytes.count, shift < 64 else { throw KubeSimError.badRequest("malformed protobuf") }
                let b = bytes[i]
                i += 1
                value |= UInt64(b & 0x7F) << shift
                if b & 0x80 == 0 { return value }
                shift += 7
            }
        }
        while i < bytes.count {
            let key = try varint()
            let number = Int(key >> 3)
            switch key & 7 {
            case 0: out.append((number, .varint(try varint())))
            case 1: i += 8
            case 5: i += 4
            case 2:
                let length = Int(try varint())
                guard length >= 0, i + length <= bytes.count else { throw KubeSimError.badRequest("malformed protobuf") }
                out.append((number, .bytes(Array(bytes[i..<i + length]))))
                i += length
            default: throw KubeSimError.badRequest("malformed protobuf")
            }
        }
        return out
    }

    static func string(_ field: Field) -> String {
        if case .bytes(let b) = field { return String(decoding: b, as: UTF8.self) }
        return ""
    }

    static func bytes(_ field: Field) -> [UInt8] {
        if case .bytes(let b) = field { return b }
        return []
    }

    static func bool(_ field: Field) -> Bool {
        if case .varint(let v) = field { return v != 0 }
        return false
    }

    /// A `map<string, string|bytes>` (repeated entries key = 1, value = 2).
    static func map(_ entries: [Field], base64Values: Bool) throws(KubeSimError) -> JSONValue {
        var out: [String: JSONValue] = [:]
        for entry in entries {
            var key = ""
            var value: [UInt8] = []
            for (n, f) in try fields(bytes(entry)) {
                if n == 1 { key = string(f) }
                if n == 2 { value = bytes(f) }
            }
            out[key] = .string(base64Values ? Data(value).base64EncodedString() : String(decoding: value, as: UTF8.self))
        }
        return .object(out)
    }

    static func objectMeta(_ data: [UInt8]) throws(KubeSimError) -> JSONValue {
        var meta: [String: JSONValue] = [:]
        var labels: [Field] = []
        var annotations: [Field] = []
        var finalizers: [JSONValue] = []
        var owners: [JSONValue] = []
        for (n, f) in try fields(data) {
            switch n {
            case 1: meta["name"] = .string(string(f))
            case 2: meta["generateName"] = .string(string(f))
            case 3: meta["namespace"] = .string(string(f))
            case 6: meta["resourceVersion"] = .string(string(f))
            case 11: labels.append(f)
            case 12: annotations.append(f)
            case 13:
                var owner: [String: JSONValue] = [:]
                for (m, g) in try fields(bytes(f)) {
                    switch m {
                    case 1: owner["kind"] = .string(string(g))
                    case 3: owner["name"] = .string(string(g))
                    case 4: owner["uid"] = .string(string(g))
                    case 5: owner["apiVersion"] = .string(string(g))
                    case 6: owner["controller"] = .bool(bool(g))
                    case 7: owner["blockOwnerDeletion"] = .bool(bool(g))
                    default: break
                    }
                }
                owners.append(.object(owner))
            case 14: finalizers.append(.string(string(f)))
            default: break
            }
        }
        if !labels.isEmpty { meta["labels"] = try map(labels, base64Values: false) }
        if !annotations.isEmpty { meta["annotations"] = try map(annotations, base64Values: false) }
        if !finalizers.isEmpty { meta["finalizers"] = .array(finalizers) }
        if !owners.isEmpty { meta["ownerReferences"] = .array(owners) }
        return .object(meta)
    }

    /// The JSON form of a protobuf-encoded object of a supported kind.
    static func decode(_ body: [UInt8]) throws(KubeSimError) -> JSONValue {
        guard body.count >= 4, Array(body[0..<4]) == [0x6B, 0x38, 0x73, 0x00] else {
            throw KubeSimError.badRequest("protobuf body without the k8s envelope")
        }
        var apiVersion = ""
        var kind = ""
        var raw: [UInt8] = []
        for (n, f) in try fields(Array(body[4...])) {
            if n == 1 {
                for (m, g) in try fields(bytes(f)) {
                    if m == 1 { apiVersion = string(g) }
                    if m == 2 { kind = string(g) }
                }
            }
            if n == 2 { raw = bytes(f) }
        }
        var object: [String: JSONValue] = ["apiVersion": .string(apiVersion), "kind": .string(kind)]
        var mapFields: [Int: [Field]] = [:]
        for (n, f) in try fields(raw) {
            if n == 1 {
                object["metadata"] = try objectMeta(bytes(f))
            } else {
                mapFields[n, default: []].append(f)
            }
        }
        switch (apiVersion, kind) {
        case ("v1", "ConfigMap"):
            if let data = mapFields[2] { object["data"] = try map(data, base64Values: false) }
            if let binary = mapFields[3] { object["binaryData"] = try map(binary, base64Values: true) }
            if let immutable = mapFields[4]?.first { object["immutable"] = .bool(bool(immutable)) }
        case ("v1", "Secret"):
            if let data = mapFields[2] { object["data"] = try map(data, base64Values: true) }
            if let type = mapFields[3]?.first { object["type"] = .string(string(type)) }
            if let stringData = mapFields[4] { object["stringData"] = try map(stringData, base64Values: false) }
            if let immutable = mapFields[5]?.first { object["immutable"] = .bool(bool(immutable)) }
        case ("v1", "Namespace"):
            break
        case ("v1", "ServiceAccount"):
            if let automount = mapFields[4]?.first { object["automountServiceAccountToken"] = .bool(bool(automount)) }
        default:
            throw KubeSimError(
                code: 415, reason: "UnsupportedMediaType",
                message: "kubesim decodes protobuf bodies only for v1 Namespace, ConfigMap, Secret and ServiceAccount; send JSON")
        }
        return .object(object)
    }
}
