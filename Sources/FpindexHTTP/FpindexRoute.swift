import FpindexAPI
import HTTPTypes

/// The routes of docs/fpindex-api.md, matched from a request path, with the methods each allows.
public enum FpindexRoute: Sendable, Equatable {
    case health
    case metrics
    case index(String)
    case indexHealth(String)
    case search(String)
    case update(String)
    case status(String)
    case fingerprint(String, idText: Substring)

    /// Matches a request path (without the query string); nil when no route has this shape.
    public static func match(path: some StringProtocol) -> FpindexRoute? {
        let segments = path.split(separator: "/")
        switch segments.count {
        case 1:
            switch segments[0] {
            case "_health": return .health
            case "_metrics": return .metrics
            default: return .index(String(segments[0]))
            }
        case 2:
            let name = String(segments[0])
            switch segments[1] {
            case "_health": return .indexHealth(name)
            case "_search": return .search(name)
            case "_update": return .update(name)
            case "_status": return .status(name)
            default: return .fingerprint(name, idText: Substring(segments[1]))
            }
        default:
            return nil
        }
    }

    /// A bounded label for metrics and logs.
    public var label: String {
        switch self {
        case .health: "health"
        case .metrics: "metrics"
        case .index: "index"
        case .indexHealth: "index_health"
        case .search: "search"
        case .update: "update"
        case .status: "status"
        case .fingerprint: "fingerprint"
        }
    }

    /// The process's own probes and metrics: open to the kubelet and Prometheus even where
    /// reads need a token.
    public var isProbe: Bool {
        switch self {
        case .health, .metrics: true
        default: false
        }
    }

    /// The index the route addresses, if any.
    public var indexName: String? {
        switch self {
        case .health, .metrics: nil
        case .index(let name), .indexHealth(let name), .search(let name), .update(let name), .status(let name),
            .fingerprint(let name, _):
            name
        }
    }

    public var allowedMethods: [HTTPRequest.Method] {
        switch self {
        case .health, .indexHealth: [.get, .head]
        case .metrics, .status: [.get]
        case .index, .fingerprint: [.put, .delete, .get, .head]
        case .search, .update: [.post]
        }
    }
}
