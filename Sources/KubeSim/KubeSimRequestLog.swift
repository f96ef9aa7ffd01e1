import Synchronization

/// The requests kubesim answered, newest last (the role of the real server's audit log in tests:
/// who wrote what, and how often). Bounded: the oldest entries go first.
public final class KubeSimRequestLog: Sendable {
    /// One answered request.
    public struct Entry: Sendable, CustomStringConvertible {
        public var method: String
        /// Path and query as sent.
        public var uri: String
        public var userAgent: String
        public var status: Int
        public var description: String { "\(method) \(uri) -> \(status) (\(userAgent))" }
        /// Whether the request changes state (everything but GET, HEAD and OPTIONS).
        public var isWrite: Bool { !["GET", "HEAD", "OPTIONS"].contains(method) }
    }

    private let entries = Mutex<[Entry]>([])
    let capacity: Int

    init(capacity: Int = 100_000) { self.capacity = capacity }

    func record(_ entry: Entry) {
        entries.withLock {
            if $0.count >= capacity { $0.removeFirst($0.count / 2) }
            $0.append(entry)
        }
    }

    /// Every entry kept, oldest first.
    public var all: [Entry] { entries.withLock { $0 } }
}
