/// A failed API request: becomes a `Status` body with its code at the HTTP edge.
public struct KubeSimError: Error, Sendable, CustomStringConvertible {
    /// One `details.causes` entry (`FieldValueInvalid`, `FieldValueRequired`, ...).
    public struct Cause: Sendable {
        public var reason: String
        public var message: String
        public var field: String
        public init(reason: String, message: String, field: String) {
            self.reason = reason
            self.message = message
            self.field = field
        }
    }

    public var code: Int
    public var reason: String
    public var message: String
    public var name: String?
    public var group: String?
    public var kind: String?
    public var causes: [Cause]
    public var retryAfterSeconds: Int?
    /// Send `details: {}` even with nothing in it (as the real server does for a JSON patch
    /// that does not apply).
    var emptyDetails = false

    public init(
        code: Int, reason: String, message: String, name: String? = nil, group: String? = nil, kind: String? = nil,
        causes: [Cause] = [], retryAfterSeconds: Int? = nil
    ) {
        self.code = code
        self.reason = reason
        self.message = message
        self.name = name
        self.group = group
        self.kind = kind
        self.causes = causes
        self.retryAfterSeconds = retryAfterSeconds
    }

    public var description: String { "\(code) \(reason): \(message)" }

    /// The `Status` object (kind Status, apiVersion v1).
    var status: JSONValue {
        var details: [String: JSONValue] = [:]
        if let name { details["name"] = .string(name) }
        if let group { details["group"] = .string(group) }
        if let kind { details["kind"] = .string(kind) }
        if !causes.isEmpty {
            details["causes"] = .array(
                causes.map { ["reason": .string($0.reason), "message": .string($0.message), "field": .string($0.field)] })
        }
        if let retryAfterSeconds { details["retryAfterSeconds"] = .int(Int64(retryAfterSeconds)) }
        var status: [String: JSONValue] = [
            "kind": "Status", "apiVersion": "v1", "metadata": [:], "status": "Failure", "message": .string(message),
            "reason": .string(reason), "code": .int(Int64(code)),
        ]
        if !details.isEmpty || emptyDetails { status["details"] = .object(details) }
        return .object(status)
    }

    static func notFound(_ type: ResourceType, _ name: String) -> KubeSimError {
        KubeSimError(
            code: 404, reason: "NotFound", message: "\(type.qualifiedResource) \"\(name)\" not found", name: name,
            group: type.group, kind: type.resource)
    }

    static func alreadyExists(_ type: ResourceType, _ name: String) -> KubeSimError {
        KubeSimError(
            code: 409, reason: "AlreadyExists", message: "\(type.qualifiedResource) \"\(name)\" already exists", name: name,
            group: type.group, kind: type.resource)
    }

    static func conflict(_ type: ResourceType, _ name: String, _ why: String) -> KubeSimError {
        KubeSimError(
            code: 409, reason: "Conflict",
            message: "Operation cannot be fulfilled on \(type.qualifiedResource) \"\(name)\": \(why)", name: name,
            group: type.group, kind: type.resource)
    }

    /// As the real server words it: `Kind.group "name" is invalid: cause` (several causes in brackets).
    static func invalid(_ type: ResourceType, _ name: String, _ causes: [Cause]) -> KubeSimError {
        let list = causes.map { "\($0.field): \($0.message)" }
        let qualifiedKind = type.group.isEmpty ? type.kind : "\(type.kind).\(type.group)"
        let text = list.count == 1 ? list[0] : "[\(list.joined(separator: ", "))]"
        return KubeSimError(
            code: 422, reason: "Invalid", message: "\(qualifiedKind) \"\(name)\" is invalid: \(text)", name: name,
            group: type.group, kind: type.kind, causes: causes)
    }

    static func badRequest(_ message: String) -> KubeSimError {
        KubeSimError(code: 400, reason: "BadRequest", message: message)
    }

    static func gone(_ message: String) -> KubeSimError {
        KubeSimError(code: 410, reason: "Expired", message: message)
    }

    static func methodNotAllowed(_ message: String) -> KubeSimError {
        KubeSimError(code: 405, reason: "MethodNotAllowed", message: message)
    }

    static func pathNotFound(_ path: String) -> KubeSimError {
        KubeSimError(code: 404, reason: "NotFound", message: "the server could not find the requested resource")
    }
}

/// kubesim cannot start as configured (an unreadable image map, a missing host tool): an
/// operator's mistake reported at start-up, never an API answer.
public struct KubeSimSetupError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public var description: String { message }

    init(_ message: String) { self.message = message }
}
