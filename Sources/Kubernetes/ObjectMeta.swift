import Foundation

/// An object the client can address: its type's REST location and its metadata.
///
/// Typed models decode only the fields they declare: an object read, changed and written back
/// whole with `update` would drop fields other writers own. Write owned objects with
/// server-side apply or a merge patch of exactly the fields you mean to change.
public protocol KubernetesObject: WatchableObject, Codable {
    static var resourceType: ResourceType { get }
    var metadata: ObjectMeta { get set }
}

extension KubernetesObject {
    public var objectResourceVersion: String? { metadata.resourceVersion }
}

/// What `ListWatch` needs of an object: its resourceVersion, to resume watching after it.
public protocol WatchableObject: Decodable, Sendable {
    var objectResourceVersion: String? { get }
}

/// `metadata` of every object.
public struct ObjectMeta: Codable, Sendable, Equatable {
    public var name: String?
    public var generateName: String?
    public var namespace: String?
    public var uid: String?
    public var resourceVersion: String?
    public var generation: Int64?
    public var creationTimestamp: String?
    public var deletionTimestamp: String?
    public var deletionGracePeriodSeconds: Int64?
    public var labels: [String: String]?
    public var annotations: [String: String]?
    public var ownerReferences: [OwnerReference]?
    public var finalizers: [String]?
    public var managedFields: [JSONValue]?

    public init(
        name: String? = nil, namespace: String? = nil, labels: [String: String]? = nil,
        annotations: [String: String]? = nil, ownerReferences: [OwnerReference]? = nil, finalizers: [String]? = nil
    ) {
        self.name = name
        self.namespace = namespace
        self.labels = labels
        self.annotations = annotations
        self.ownerReferences = ownerReferences
        self.finalizers = finalizers
    }
}

public struct OwnerReference: Codable, Sendable, Equatable {
    public var apiVersion: String
    public var kind: String
    public var name: String
    public var uid: String
    public var controller: Bool?
    public var blockOwnerDeletion: Bool?

    public init(
        apiVersion: String, kind: String, name: String, uid: String, controller: Bool? = true,
        blockOwnerDeletion: Bool? = true
    ) {
        self.apiVersion = apiVersion
        self.kind = kind
        self.name = name
        self.uid = uid
        self.controller = controller
        self.blockOwnerDeletion = blockOwnerDeletion
    }
}

/// `metav1.Condition`.
public struct Condition: Codable, Sendable, Equatable {
    public var type: String
    /// "True", "False" or "Unknown".
    public var status: String
    public var observedGeneration: Int64?
    public var lastTransitionTime: String
    public var reason: String
    public var message: String

    public init(
        type: String, status: String, observedGeneration: Int64?, lastTransitionTime: String, reason: String,
        message: String
    ) {
        self.type = type
        self.status = status
        self.observedGeneration = observedGeneration
        self.lastTransitionTime = lastTransitionTime
        self.reason = reason
        self.message = message
    }
}

/// `metav1.LabelSelector`.
public struct LabelSelector: Codable, Sendable, Equatable {
    public var matchLabels: [String: String]?
    public var matchExpressions: [Requirement]?

    public struct Requirement: Codable, Sendable, Equatable {
        public var key: String
        /// In, NotIn, Exists, DoesNotExist.
        public var `operator`: String
        public var values: [String]?
    }

    public init(matchLabels: [String: String]? = nil, matchExpressions: [Requirement]? = nil) {
        self.matchLabels = matchLabels
        self.matchExpressions = matchExpressions
    }

    /// The query-string form (`a=b,c=d`) of `matchLabels`, sorted.
    public var queryString: String {
        (matchLabels ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
    }
}

/// `intstr.IntOrString`.
public enum IntOrString: Codable, Sendable, Equatable {
    case int(Int)
    case string(String)

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let value = try? container.decode(Int.self) {
            self = .int(value)
        } else {
            self = .string(try container.decode(String.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .int(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        }
    }
}

/// A page of a list: items plus the list's resourceVersion (to watch from) and `continue`.
public struct ObjectList<Item: Decodable & Sendable>: Decodable, Sendable {
    public var items: [Item]
    public var metadata: ListMeta

    public struct ListMeta: Codable, Sendable {
        public var resourceVersion: String?
        public var `continue`: String?
        public var remainingItemCount: Int64?
        public init(resourceVersion: String? = nil, continue next: String? = nil) {
            self.resourceVersion = resourceVersion
            self.continue = next
        }
    }

    enum CodingKeys: String, CodingKey { case items, metadata }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        // `items: null` is what some servers send for an empty list.
        items = try container.decodeIfPresent([Item].self, forKey: .items) ?? []
        metadata = try container.decodeIfPresent(ListMeta.self, forKey: .metadata) ?? ListMeta()
    }

    public init(items: [Item], metadata: ListMeta) {
        self.items = items
        self.metadata = metadata
    }
}

/// An object as untyped JSON, for kinds without a model (the escape hatch).
public struct DynamicObject: Codable, Sendable, Equatable, WatchableObject {
    public var json: JSONValue

    public init(_ json: JSONValue) { self.json = json }
    public init(from decoder: any Decoder) throws { json = try JSONValue(from: decoder) }
    public func encode(to encoder: any Encoder) throws { try json.encode(to: encoder) }

    public var name: String? { json[path: ["metadata", "name"]]?.string }
    public var namespace: String? { json[path: ["metadata", "namespace"]]?.string }
    public var resourceVersion: String? { json[path: ["metadata", "resourceVersion"]]?.string }
    public var uid: String? { json[path: ["metadata", "uid"]]?.string }
    public var objectResourceVersion: String? { resourceVersion }
}

/// Kubernetes timestamps: RFC 3339 in UTC with seconds (`Time`) or microseconds (`MicroTime`).
public enum KubernetesTime {
    /// `2026-11-29T06:38:28Z`
    public static func format(_ date: Date) -> String {
        Date.ISO8601FormatStyle().format(Date(timeIntervalSince1970: floor(date.timeIntervalSince1970)))
    }

    /// `2026-11-29T06:38:28.123456Z`
    public static func formatMicro(_ date: Date) -> String {
        let seconds = floor(date.timeIntervalSince1970)
        let micros = min(999_999, Int(((date.timeIntervalSince1970 - seconds) * 1_000_000).rounded()))
        let base = format(Date(timeIntervalSince1970: seconds))
        return String(base.dropLast()) + "." + String(format: "%06d", micros) + "Z"
    }

    /// Parses both forms; nil when malformed.
    public static func parse(_ text: String) -> Date? {
        if let date = try? Date.ISO8601FormatStyle().parse(text) { return date }
        return try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text)
    }
}
