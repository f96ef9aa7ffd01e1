import Foundation

/// Any JSON value: the untyped escape hatch for objects the typed models do not cover, and the
/// building block of merge and JSON patches. Object keys keep no order (Kubernetes does not care).
public enum JSONValue: Sendable, Hashable, Codable {
    case null
    case bool(Bool)
    case number(Double)
    case integer(Int64)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// The member `key` of an object; nil otherwise.
    public subscript(key: String) -> JSONValue? {
        get {
            guard case .object(let members) = self else { return nil }
            return members[key]
        }
        set {
            guard case .object(var members) = self else { return }
            members[key] = newValue
            self = .object(members)
        }
    }

    /// Follows a path of object keys.
    public subscript(path path: [String]) -> JSONValue? {
        var node: JSONValue? = self
        for key in path { node = node?[key] }
        return node
    }

    public var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var int: Int? {
        switch self {
        case .integer(let value): return Int(exactly: value)
        case .number(let value): return Int(exactly: value)
        default: return nil
        }
    }

    public var bool: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    public var array: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    public var object: [String: JSONValue]? {
        if case .object(let value) = self { return value }
        return nil
    }

    /// Converts any Encodable value (a typed model) into a JSON value.
    public init(encoding value: some Encodable) throws {
        let data = try JSONEncoder.kubernetes().encode(value)
        self = try JSONDecoder().decode(JSONValue.self, from: data)
    }

    /// Decodes this value as a typed model.
    public func decode<T: Decodable>(as type: T.Type = T.self) throws -> T {
        try JSONDecoder().decode(T.self, from: JSONEncoder.kubernetes().encode(self))
    }

    /// The RFC 7386 merge patch that turns `self` into `target` (nil when they are equal):
    /// changed members, removed members as null, arrays replaced whole.
    public func mergePatch(to target: JSONValue) -> JSONValue? {
        guard case .object(let old) = self, case .object(let new) = target else {
            return self == target ? nil : target
        }
        var patch: [String: JSONValue] = [:]
        for (key, value) in new {
            if let previous = old[key] {
                if let change = previous.mergePatch(to: value) { patch[key] = change }
            } else {
                patch[key] = value
            }
        }
        for key in old.keys where new.index(forKey: key) == nil { patch[key] = .null }
        return patch.isEmpty ? nil : .object(patch)
    }

    /// Applies an RFC 7386 merge patch.
    public func applyingMergePatch(_ patch: JSONValue) -> JSONValue {
        guard case .object(let changes) = patch else { return patch }
        var members = object ?? [:]
        for (key, value) in changes {
            if value == .null {
                members[key] = nil
            } else {
                members[key] = (members[key] ?? .null).applyingMergePatch(value)
            }
        }
        return .object(members)
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    // Not ExpressibleByNilLiteral: `dictionary[key] = nil` must keep meaning removal.
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { $1 }))
    }
}

extension JSONEncoder {
    /// The encoder of every request body. Foundation escapes `/` as `\/` by default, which JSON
    /// allows, but the API server's JSON-patch `test` compares a value's text as written: a
    /// finalizer `example.org/name` sent as `example.org\/name` never matches (422 Invalid).
    static func kubernetes() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return encoder
    }
}
