import Foundation

/// Patch algorithms: pure functions over `JSONValue`.
enum Patch {
    /// RFC 7386 JSON merge patch (`application/merge-patch+json`).
    static func merge(_ target: JSONValue, _ patch: JSONValue) -> JSONValue {
        guard case .object(let patchObject) = patch else { return patch }
        var result = target.objectValue ?? [:]
        for (key, value) in patchObject {
            if value.isNull {
                result[key] = nil
            } else {
                result[key] = merge(result[key] ?? .null, value)
            }
        }
        return .object(result)
    }

    /// What the real server answers for any JSON patch that does not apply (a failed `test`,
    /// a missing path, an unknown op): 422 with no detail at all.
    static let jsonPatchFailure: KubeSimError = {
        var error = KubeSimError(
            code: 422, reason: "Invalid", message: "the server rejected our request due to an error in our request")
        error.emptyDetails = true
        return error
    }()

    /// RFC 6902 JSON patch (`application/json-patch+json`), as the real server applies it: a
    /// `test` compares scalars by their JSON text as the client wrote it against the text the
    /// server would write (`"a\/b"` is not `"a/b"`, `2.0` is not `2`), and any failure is
    /// `jsonPatchFailure`.
    /// - Parameters:
    ///   - raw: the request body, for the text of each `test` value.
    static func jsonPatch(_ target: JSONValue, _ patch: JSONValue, raw: [UInt8]? = nil) throws(KubeSimError) -> JSONValue {
        do {
            return try applyJSONPatch(target, patch, testTexts: raw.map(testValueTexts) ?? [:])
        } catch let error where error.code == 400 {
            throw jsonPatchFailure
        }
    }

    private static func applyJSONPatch(_ target: JSONValue, _ patch: JSONValue, testTexts: [Int: [UInt8]]) throws(KubeSimError)
        -> JSONValue
    {
        guard let operations = patch.arrayValue else { throw .badRequest("json patch must be an array of operations") }
        var document = target
        for (number, operation) in operations.enumerated() {
            guard let op = operation["op"]?.stringValue, let path = operation["path"]?.stringValue else {
                throw .badRequest("json patch operation needs op and path")
            }
            let pointer = try parsePointer(path)
            switch op {
            case "add":
                guard let value = operation["value"] else { throw .badRequest("add operation does not have a value") }
                document = try pointerAdd(document, pointer[...], value)
            case "remove":
                document = try pointerRemove(document, pointer[...])
            case "replace":
                guard let value = operation["value"] else { throw .badRequest("replace operation does not have a value") }
                _ = try pointerGet(document, pointer[...])
                document = try pointerRemove(document, pointer[...])
                document = try pointerAdd(document, pointer[...], value)
            case "move", "copy":
                guard let from = operation["from"]?.stringValue else { throw .badRequest("\(op) operation needs from") }
                let fromPointer = try parsePointer(from)
                let value = try pointerGet(document, fromPointer[...])
                if op == "move" { document = try pointerRemove(document, fromPointer[...]) }
                document = try pointerAdd(document, pointer[...], value)
            case "test":
                let wanted = operation["value"] ?? .null
                guard let value = try? pointerGet(document, pointer[...]) else {
                    // A missing member equals only `null`.
                    guard wanted.isNull, (try? pointerGet(document, pointer.dropLast()[...])) != nil else {
                        throw jsonPatchFailure
                    }
                    continue
                }
                let equal =
                    if let text = testTexts[number] { serverText(value) == text } else { value == wanted }
                guard equal else { throw jsonPatchFailure }
            default:
                throw .badRequest("unexpected json patch operation \(op)")
            }
        }
        return document
    }

    /// The canonical text (see `JSONParser.canonicalText`) of each `test` operation's value,
    /// by operation index.
    static func testValueTexts(_ body: [UInt8]) -> [Int: [UInt8]] {
        var parser = JSONParser(bytes: body)
        var texts: [Int: [UInt8]] = [:]
        parser.skipWhitespace()
        guard parser.consume(UInt8(ascii: "[")) else { return [:] }
        var number = 0
        while true {
            parser.skipWhitespace()
            guard parser.consume(UInt8(ascii: "{")) else { return texts }
            var valueText: [UInt8]?
            var isTest = false
            while true {
                parser.skipWhitespace()
                if parser.consume(UInt8(ascii: "}")) { break }
                guard let key = try? parser.parseString() else { return texts }
                parser.skipWhitespace()
                guard parser.consume(UInt8(ascii: ":")) else { return texts }
                parser.skipWhitespace()
                if key == "value" {
                    guard let text = try? parser.canonicalText(depth: 0) else { return texts }
                    valueText = text
                } else {
                    guard let member = try? parser.parseValue(depth: 0) else { return texts }
                    if key == "op" { isTest = member == "test" }
                }
                parser.skipWhitespace()
                _ = parser.consume(UInt8(ascii: ","))
            }
            if isTest, let valueText { texts[number] = valueText }
            number += 1
            parser.skipWhitespace()
            guard parser.consume(UInt8(ascii: ",")) else { return texts }
        }
    }

    /// A value as the real server (Go's encoding/json) writes it, in the canonical form of
    /// `JSONParser.canonicalText`: keys sorted, `<`, `>`, `&`, U+2028 and U+2029 escaped.
    static func serverText(_ value: JSONValue) -> [UInt8] {
        var out: [UInt8] = []
        func write(_ value: JSONValue) {
            switch value {
            case .string(let s):
                var escaped: [UInt8] = []
                JSONValue.writeString(s, into: &escaped)
                for byte in escaped {
                    switch byte {
                    case UInt8(ascii: "<"): out += Array("\\u003c".utf8)
                    case UInt8(ascii: ">"): out += Array("\\u003e".utf8)
                    case UInt8(ascii: "&"): out += Array("\\u0026".utf8)
                    default: out.append(byte)
                    }
                }
                if s.unicodeScalars.contains(where: { $0 == "\u{2028}" || $0 == "\u{2029}" }) {
                    let text = String(decoding: out, as: UTF8.self)
                        .replacingOccurrences(of: "\u{2028}", with: "\\u2028").replacingOccurrences(of: "\u{2029}", with: "\\u2029")
                    out = Array(text.utf8)
                }
            case .array(let items):
                out.append(UInt8(ascii: "["))
                for (i, item) in items.enumerated() {
                    if i > 0 { out.append(UInt8(ascii: ",")) }
                    write(item)
                }
                out.append(UInt8(ascii: "]"))
            case .object(let object):
                out.append(UInt8(ascii: "{"))
                for (i, key) in object.keys.sorted().enumerated() {
                    if i > 0 { out.append(UInt8(ascii: ",")) }
                    JSONValue.writeString(key, into: &out)
                    out.append(UInt8(ascii: ":"))
                    write(object[key]!)
                }
                out.append(UInt8(ascii: "}"))
            default:
                value.write(into: &out)
            }
        }
        write(value)
        return out
    }

    static func parsePointer(_ path: String) throws(KubeSimError) -> [String] {
        if path.isEmpty { return [] }
        guard path.hasPrefix("/") else { throw .badRequest("json patch path must start with /: \(path)") }
        return path.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map {
            $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
        }
    }

    static func pointerGet(_ document: JSONValue, _ pointer: ArraySlice<String>) throws(KubeSimError) -> JSONValue {
        guard let key = pointer.first else { return document }
        switch document {
        case .object(let o):
            guard let child = o[key] else { throw .badRequest("json patch: path not found: \(key)") }
            return try pointerGet(child, pointer.dropFirst())
        case .array(let a):
            guard let i = Int(key), a.indices.contains(i) else { throw .badRequest("json patch: bad index \(key)") }
            return try pointerGet(a[i], pointer.dropFirst())
        default:
            throw .badRequest("json patch: path not found: \(key)")
        }
    }

    static func pointerAdd(_ document: JSONValue, _ pointer: ArraySlice<String>, _ value: JSONValue) throws(KubeSimError)
        -> JSONValue
    {
        guard let key = pointer.first else { return value }
        let last = pointer.count == 1
        switch document {
        case .object(var o):
            if last {
                o[key] = value
            } else {
                guard let child = o[key] else { throw .badRequest("json patch: path not found: \(key)") }
                o[key] = try pointerAdd(child, pointer.dropFirst(), value)
            }
            return .object(o)
        case .array(var a):
            if last {
                if key == "-" {
                    a.append(value)
                } else {
                    guard let i = Int(key), i >= 0, i <= a.count else { throw .badRequest("json patch: bad index \(key)") }
                    a.insert(value, at: i)
                }
            } else {
                guard let i = Int(key), a.indices.contains(i) else { throw .badRequest("json patch: bad index \(key)") }
                a[i] = try pointerAdd(a[i], pointer.dropFirst(), value)
            }
            return .array(a)
        default:
            throw .badRequest("json patch: path not found: \(key)")
        }
    }

    static func pointerRemove(_ document: JSONValue, _ pointer: ArraySlice<String>) throws(KubeSimError) -> JSONValue {
        guard let key = pointer.first else { return .null }
        let last = pointer.count == 1
        switch document {
        case .object(var o):
            guard let child = o[key] else { throw .badRequest("json patch: path not found: \(key)") }
            o[key] = last ? nil : try pointerRemove(child, pointer.dropFirst())
            return .object(o)
        case .array(var a):
            guard let i = Int(key), a.indices.contains(i) else { throw .badRequest("json patch: bad index \(key)") }
            if last { a.remove(at: i) } else { a[i] = try pointerRemove(a[i], pointer.dropFirst()) }
            return .array(a)
        default:
            throw .badRequest("json patch: path not found: \(key)")
        }
    }

    // MARK: Strategic merge patch

    /// The merge key of a list field of the built-in kinds (the Go structs' `patchMergeKey`).
    static func mergeKey(field: String, parent: [String]) -> String? {
        switch field {
        case "containers", "initContainers", "ephemeralContainers", "env", "volumes", "imagePullSecrets", "resourceClaims":
            return "name"
        case "ports":
            return parent.contains(where: { $0.hasSuffix("ontainers") }) ? "containerPort" : "port"
        case "volumeMounts": return "mountPath"
        case "volumeDevices": return "devicePath"
        case "conditions": return "type"
        case "ownerReferences": return "uid"
        case "hostAliases": return "ip"
        case "topologySpreadConstraints": return "topologyKey"
        default: return nil
        }
    }

    /// Lists of scalars merged as sets (`patchStrategy:"merge"` on a primitive list).
    static let mergedPrimitiveLists: Set<String> = ["finalizers"]

    /// Strategic merge patch for built-in kinds, the subset `kubectl apply`/`patch` produce:
    /// maps merge (null deletes), lists with a known merge key merge by it (`$patch: delete`
    /// items remove, `$patch: replace` replaces), `$deleteFromPrimitiveList/<f>`,
    /// `$setElementOrder/<f>` (reorders), `$retainKeys`, `$patch: replace|delete` on maps;
    /// other lists are replaced.
    static func strategicMerge(_ target: JSONValue, _ patch: JSONValue, path: [String] = []) -> JSONValue {
        guard case .object(var patchObject) = patch else { return patch }
        if let directive = patchObject["$patch"]?.stringValue {
            patchObject["$patch"] = nil
            if directive == "replace" { return .object(patchObject) }
            if directive == "delete" { return .null }
        }
        var result = target.objectValue ?? [:]
        if let retain = patchObject["$retainKeys"]?.arrayValue?.compactMap(\.stringValue) {
            patchObject["$retainKeys"] = nil
            for key in result.keys where !retain.contains(key) { result[key] = nil }
        }
        var orders: [String: [JSONValue]] = [:]
        for (key, value) in patchObject {
            if key.hasPrefix("$setElementOrder/") {
                orders[String(key.dropFirst("$setElementOrder/".count))] = value.arrayValue ?? []
                continue
            }
            if key.hasPrefix("$deleteFromPrimitiveList/") {
                let field = String(key.dropFirst("$deleteFromPrimitiveList/".count))
                let remove = value.arrayValue ?? []
                if let list = result[field]?.arrayValue { result[field] = .array(list.filter { !remove.contains($0) }) }
                continue
            }
            if value.isNull {
                result[key] = nil
                continue
            }
            if case .array(let patchList) = value {
                if let mergeKey = mergeKey(field: key, parent: path) {
                    result[key] = .array(mergeList(result[key]?.arrayValue ?? [], patchList, key: mergeKey, path: path + [key]))
                } else if mergedPrimitiveLists.contains(key) {
                    var list = result[key]?.arrayValue ?? []
                    for item in patchList where !list.contains(item) { list.append(item) }
                    result[key] = .array(list)
                } else {
                    result[key] = .array(patchList.filter { $0["$patch"] == nil })
                }
                continue
            }
            if case .object = value {
                let merged = strategicMerge(result[key] ?? .null, value, path: path + [key])
                result[key] = merged.isNull ? nil : merged
                continue
            }
            result[key] = value
        }
        for (field, order) in orders {
            guard let list = result[field]?.arrayValue, let key = mergeKey(field: field, parent: path) else { continue }
            let keys = order.compactMap { $0[key] }
            result[field] = .array(
                list.sorted { a, b in
                    (keys.firstIndex(of: a[key] ?? .null) ?? Int.max) < (keys.firstIndex(of: b[key] ?? .null) ?? Int.max)
                })
        }
        return .object(result)
    }

    static func mergeList(_ target: [JSONValue], _ patch: [JSONValue], key: String, path: [String]) -> [JSONValue] {
        if patch.contains(where: { $0["$patch"]?.stringValue == "replace" }) {
            return patch.filter { $0["$patch"] == nil }
        }
        var result = target
        for item in patch {
            guard let keyValue = item[key] else {
                result.append(item)
                continue
            }
            let index = result.firstIndex { $0[key] == keyValue }
            if item["$patch"]?.stringValue == "delete" {
                if let index { result.remove(at: index) }
                continue
            }
            if let index {
                result[index] = strategicMerge(result[index], item, path: path)
            } else {
                result.append(strategicMerge(.object([:]), item, path: path))
            }
        }
        return result
    }
}
