import Foundation

/// A label selector (`labelSelector=` syntax): `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
/// `k notin (a,b)`, `k`, `!k`, comma-separated (all must hold).
struct LabelSelector: Sendable {
    enum Requirement: Sendable {
        case equals(String, String), notEquals(String, String), isIn(String, Set<String>), notIn(String, Set<String>)
        case exists(String), notExists(String)
    }
    var requirements: [Requirement] = []

    init(parsing text: String) throws(KubeSimError) {
        var parts: [String] = []
        var depth = 0
        var current = ""
        for c in text {
            if c == "(" { depth += 1 }
            if c == ")" { depth -= 1 }
            if c == ",", depth == 0 {
                parts.append(current)
                current = ""
            } else {
                current.append(c)
            }
        }
        parts.append(current)
        for raw in parts {
            let part = raw.trimmingCharacters(in: .whitespaces)
            if part.isEmpty { continue }
            let words = part.split(separator: " ", maxSplits: 1).map(String.init)
            if words.count == 2, words[1].hasPrefix("in ") || words[1].hasPrefix("in(") || words[1].hasPrefix("notin") {
                let isNot = words[1].hasPrefix("notin")
                let rest = words[1].drop(while: { $0 != "(" })
                guard rest.hasPrefix("("), rest.hasSuffix(")") else { throw .badRequest("unable to parse requirement: \(part)") }
                let values = Set(rest.dropFirst().dropLast().split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
                requirements.append(isNot ? .notIn(words[0], values) : .isIn(words[0], values))
            } else if let range = part.range(of: "!=") {
                requirements.append(
                    .notEquals(
                        String(part[..<range.lowerBound]).trimmingCharacters(in: .whitespaces),
                        String(part[range.upperBound...]).trimmingCharacters(in: .whitespaces)))
            } else if let range = part.range(of: "==") ?? part.range(of: "=") {
                requirements.append(
                    .equals(
                        String(part[..<range.lowerBound]).trimmingCharacters(in: .whitespaces),
                        String(part[range.upperBound...]).trimmingCharacters(in: .whitespaces)))
            } else if part.hasPrefix("!") {
                requirements.append(.notExists(String(part.dropFirst()).trimmingCharacters(in: .whitespaces)))
            } else if part.allSatisfy({ $0.isLetter || $0.isNumber || "-_./".contains($0) }) {
                requirements.append(.exists(part))
            } else {
                throw .badRequest("unable to parse requirement: \(part)")
            }
        }
    }

    func matches(_ labels: [String: String]) -> Bool {
        requirements.allSatisfy { requirement in
            switch requirement {
            case .equals(let k, let v): return labels[k] == v
            case .notEquals(let k, let v): return labels[k] != v
            case .isIn(let k, let vs): return labels[k].map(vs.contains) ?? false
            case .notIn(let k, let vs): return !(labels[k].map(vs.contains) ?? false)
            case .exists(let k): return labels[k] != nil
            case .notExists(let k): return labels[k] == nil
            }
        }
    }

    func matches(object: JSONValue) -> Bool {
        if requirements.isEmpty { return true }
        let labels = (object.value(at: ["metadata", "labels"])?.objectValue ?? [:]).compactMapValues(\.stringValue)
        return matches(labels)
    }

    /// The text form of a `metav1.LabelSelector` (matchLabels + matchExpressions).
    static func string(from selector: JSONValue?) -> String {
        guard let selector else { return "" }
        var parts: [String] = []
        for (k, v) in (selector["matchLabels"]?.objectValue ?? [:]).sorted(by: { $0.key < $1.key }) {
            parts.append("\(k)=\(v.stringValue ?? "")")
        }
        for expression in selector["matchExpressions"]?.arrayValue ?? [] {
            let key = expression["key"]?.stringValue ?? ""
            let values = (expression["values"]?.arrayValue ?? []).compactMap(\.stringValue).sorted().joined(separator: ",")
            switch expression["operator"]?.stringValue ?? "" {
            case "In": parts.append("\(key) in (\(values))")
            case "NotIn": parts.append("\(key) notin (\(values))")
            case "Exists": parts.append(key)
            case "DoesNotExist": parts.append("!\(key)")
            default: break
            }
        }
        return parts.joined(separator: ",")
    }
}

/// A field selector: `path=value`, `path==value`, `path!=value`, comma-separated; a path is a
/// dotted field path of the object (`metadata.name`, `metadata.namespace`, `status.phase`,
/// `involvedObject.name`, `spec.nodeName`, ...).
struct FieldSelector: Sendable {
    var requirements: [(path: [String], value: String, equal: Bool)] = []

    init(parsing text: String) throws(KubeSimError) {
        for raw in text.split(separator: ",") {
            let part = String(raw).trimmingCharacters(in: .whitespaces)
            if part.isEmpty { continue }
            let equal: Bool
            let range: Range<String.Index>
            if let r = part.range(of: "!=") {
                equal = false
                range = r
            } else if let r = part.range(of: "==") ?? part.range(of: "=") {
                equal = true
                range = r
            } else {
                throw .badRequest("invalid selector: '\(part)'; can't understand '\(part)'")
            }
            let path = String(part[..<range.lowerBound]).split(separator: ".").map(String.init)
            requirements.append((path, String(part[range.upperBound...]), equal))
        }
    }

    func matches(_ object: JSONValue) -> Bool {
        requirements.allSatisfy { requirement in
            let actual: String
            switch object.value(at: requirement.path) {
            case .string(let s): actual = s
            case nil, .null: actual = ""
            case let other?: actual = Schema.describe(other)
            }
            return (actual == requirement.value) == requirement.equal
        }
    }
}

/// The JSONPath subset CRD printer columns and kubectl use: `.a.b`, `['a.b']`, `[n]`, `[*]`,
/// `..`-free filters `[?(@.x=="y")]` / `[?(@.x!="y")]` / `[?(@.x)]`, optionally wrapped in `{}`.
enum JSONPath {
    enum Step: Sendable {
        case field(String), index(Int), wildcard, filter(path: [String], op: String, value: JSONValue?)
    }

    static func parse(_ text: String) throws(KubeSimError) -> [Step] {
        var s = text.trimmingCharacters(in: .whitespaces)
        if s.hasPrefix("{"), s.hasSuffix("}") { s = String(s.dropFirst().dropLast()) }
        if s.hasPrefix("$") { s.removeFirst() }
        var steps: [Step] = []
        var i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            if c == "." {
                i = s.index(after: i)
                var name = ""
                while i < s.endIndex, s[i] != ".", s[i] != "[" {
                    name.append(s[i])
                    i = s.index(after: i)
                }
                if name == "*" { steps.append(.wildcard) } else if !name.isEmpty { steps.append(.field(name)) }
            } else if c == "[" {
                guard let close = findClose(s, from: i) else { throw .badRequest("unterminated [ in jsonpath \(text)") }
                let inner = String(s[s.index(after: i)..<close])
                i = s.index(after: close)
                if inner == "*" {
                    steps.append(.wildcard)
                } else if let n = Int(inner) {
                    steps.append(.index(n))
                } else if inner.hasPrefix("'") || inner.hasPrefix("\"") {
                    steps.append(.field(String(inner.dropFirst().dropLast())))
                } else if inner.hasPrefix("?(") && inner.hasSuffix(")") {
                    steps.append(try parseFilter(String(inner.dropFirst(2).dropLast())))
                } else {
                    throw .badRequest("unsupported jsonpath segment [\(inner)]")
                }
            } else {
                var name = ""
                while i < s.endIndex, s[i] != ".", s[i] != "[" {
                    name.append(s[i])
                    i = s.index(after: i)
                }
                steps.append(.field(name))
            }
        }
        return steps
    }

    static func findClose(_ s: String, from: String.Index) -> String.Index? {
        var depth = 0
        var quote: Character?
        var i = from
        while i < s.endIndex {
            let c = s[i]
            if let q = quote {
                if c == q { quote = nil }
            } else if c == "'" || c == "\"" {
                quote = c
            } else if c == "[" {
                depth += 1
            } else if c == "]" {
                depth -= 1
                if depth == 0 { return i }
            }
            i = s.index(after: i)
        }
        return nil
    }

    static func parseFilter(_ expression: String) throws(KubeSimError) -> Step {
        let e = expression.trimmingCharacters(in: .whitespaces)
        for op in ["==", "!="] {
            if let r = e.range(of: op) {
                let left = e[..<r.lowerBound].trimmingCharacters(in: .whitespaces)
                let right = e[r.upperBound...].trimmingCharacters(in: .whitespaces)
                guard left.hasPrefix("@.") else { throw .badRequest("unsupported jsonpath filter \(expression)") }
                let path = left.dropFirst(2).split(separator: ".").map(String.init)
                let value: JSONValue
                if (right.hasPrefix("\"") && right.hasSuffix("\"")) || (right.hasPrefix("'") && right.hasSuffix("'")) {
                    value = .string(String(right.dropFirst().dropLast()))
                } else if let parsed = try? JSONValue.parse(right) {
                    value = parsed
                } else {
                    value = .string(right)
                }
                return .filter(path: path, op: op, value: value)
            }
        }
        guard e.hasPrefix("@.") else { throw .badRequest("unsupported jsonpath filter \(expression)") }
        return .filter(path: e.dropFirst(2).split(separator: ".").map(String.init), op: "exists", value: nil)
    }

    static func evaluate(_ steps: [Step], on root: JSONValue) -> [JSONValue] {
        var current = [root]
        for step in steps {
            var next: [JSONValue] = []
            for value in current {
                switch step {
                case .field(let name):
                    if let child = value[name] { next.append(child) }
                case .index(let n):
                    if let a = value.arrayValue {
                        let i = n < 0 ? a.count + n : n
                        if a.indices.contains(i) { next.append(a[i]) }
                    }
                case .wildcard:
                    if let a = value.arrayValue { next.append(contentsOf: a) }
                    if let o = value.objectValue { next.append(contentsOf: o.keys.sorted().map { o[$0]! }) }
                case .filter(let path, let op, let expected):
                    for item in value.arrayValue ?? [] {
                        let actual = item.value(at: path)
                        switch op {
                        case "==": if let actual, equalLoosely(actual, expected) { next.append(item) }
                        case "!=": if actual == nil || !equalLoosely(actual!, expected) { next.append(item) }
                        default: if actual != nil { next.append(item) }
                        }
                    }
                }
            }
            current = next
        }
        return current
    }

    static func equalLoosely(_ a: JSONValue, _ b: JSONValue?) -> Bool {
        guard let b else { return false }
        if a == b { return true }
        return Schema.describe(a) == Schema.describe(b)
    }

    static func evaluate(_ path: String, on root: JSONValue) -> [JSONValue] {
        guard let steps = try? parse(path) else { return [] }
        return evaluate(steps, on: root)
    }
}
