import Foundation
import Synchronization

/// Fault injection for tests: the same controls as the admin endpoint `/kubesim/faults`.
///
/// Admin endpoint (authenticated like the API; never subject to faults itself):
/// - `POST /kubesim/faults/close-watches`: ends every open watch.
/// - `POST /kubesim/faults/expire`: watches from any earlier resourceVersion get 410 Expired.
/// - `POST /kubesim/faults/fail` with `{"count":2,"method":"GET","pathContains":"/fpindexclusters",
///   "pathPattern":"regex","status":429,"retryAfterSeconds":1}` (method, pathContains,
///   pathPattern and retryAfterSeconds optional).
/// - `POST /kubesim/faults/latency` with `{"milliseconds":200}`.
/// - `DELETE /kubesim/faults`: clears failure rules and latency.
public final class KubeSimFaults: Sendable {
    struct Rule: Sendable {
        var remaining: Int
        var method: String?
        var pathContains: String?
        var pathPattern: String?
        var status: Int
        var retryAfterSeconds: Int?
    }

    struct State: Sendable {
        var rules: [Rule] = []
        var latency: Duration = .zero
    }

    let hub: WatchHub
    let state = Mutex(State())

    init(hub: WatchHub) { self.hub = hub }

    /// Ends every open watch: clients see their stream close and must resume.
    public func closeAllWatches() { hub.closeAll() }

    /// Forgets the watch history: a watch from a resourceVersion older than the current one gets
    /// 410 Expired (combine with `closeAllWatches()` to make running watchers resume into it).
    public func expireResourceVersions() { hub.expire() }

    /// Fails the next `count` requests whose method matches (nil: any) and whose path (with the
    /// query string) contains `pathContains`, with `status` and a `Status` body; 429 and 503 carry
    /// `Retry-After` when `retryAfterSeconds` is given.
    public func failNext(_ count: Int, method: String?, pathContains: String, status: Int, retryAfterSeconds: Int?) {
        state.withLock {
            $0.rules.append(
                Rule(
                    remaining: count, method: method?.uppercased(), pathContains: pathContains, status: status,
                    retryAfterSeconds: retryAfterSeconds))
        }
    }

    /// Like `failNext(_:method:pathContains:status:retryAfterSeconds:)` with a regular expression
    /// matched against the path and query string.
    public func failNext(_ count: Int, method: String?, pathMatching pattern: String, status: Int, retryAfterSeconds: Int?) {
        state.withLock {
            $0.rules.append(
                Rule(
                    remaining: count, method: method?.uppercased(), pathPattern: pattern, status: status,
                    retryAfterSeconds: retryAfterSeconds))
        }
    }

    /// Delays every API request by `latency` (zero: none).
    public func setLatency(_ latency: Duration) { state.withLock { $0.latency = latency } }

    /// Removes all failure rules and the latency.
    public func reset() { state.withLock { $0 = State() } }

    /// The number of open watches (for tests that wait for a client to reconnect).
    public var openWatches: Int { hub.watchCount }

    var latency: Duration { state.withLock { $0.latency } }

    /// The failure to inject for this request, consuming one use of the first matching rule.
    func failure(method: String, target: String) -> KubeSimError? {
        state.withLock { state -> KubeSimError? in
            for i in state.rules.indices {
                let rule = state.rules[i]
                if let m = rule.method, m != method { continue }
                if let s = rule.pathContains, !target.contains(s) { continue }
                if let p = rule.pathPattern {
                    guard let regex = try? Regex(p), (try? regex.firstMatch(in: target)) != nil else { continue }
                }
                state.rules[i].remaining -= 1
                if state.rules[i].remaining <= 0 { state.rules.remove(at: i) }
                return KubeSimError(
                    code: rule.status, reason: KubeSimFaults.reason(for: rule.status),
                    message: "injected failure (\(rule.status))", retryAfterSeconds: rule.retryAfterSeconds)
            }
            return nil
        }
    }

    static func reason(for code: Int) -> String {
        switch code {
        case 400: return "BadRequest"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "NotFound"
        case 405: return "MethodNotAllowed"
        case 409: return "Conflict"
        case 410: return "Expired"
        case 422: return "Invalid"
        case 429: return "TooManyRequests"
        case 503: return "ServiceUnavailable"
        case 504: return "Timeout"
        default: return code >= 500 ? "InternalError" : "BadRequest"
        }
    }
}
