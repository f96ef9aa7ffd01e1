import FpindexAPI
import Synchronization

/// Which indexes exist, as the stream's lifecycle records say, kept current by an ordered
/// consumer on `<prefix>.*` and by the proxy's own writes: no round trip per request.
public final class IndexCatalog: Sendable {
    public struct Entry: Sendable, Equatable {
        /// Whether the last lifecycle record is a create.
        public var exists: Bool
        /// The sequence of that record; for a create, the index generation.
        public var sequence: UInt64
    }

    private struct State {
        var entries: [String: Entry] = [:]
        var synced = false
    }

    private let state = Mutex(State())

    public init() {}

    /// Whether the initial replay of lifecycle records is complete.
    public var isSynced: Bool { state.withLock { $0.synced } }

    public func markSynced() { state.withLock { $0.synced = true } }

    public func entry(_ index: String) -> Entry? {
        state.withLock { $0.entries[index] }
    }

    /// The generation of an existing index, or nil.
    public func generation(_ index: String) -> UInt64? {
        state.withLock { state in state.entries[index].flatMap { $0.exists ? $0.sequence : nil } }
    }

    /// Applies a lifecycle record; older records than the one known are ignored, so the
    /// consumer and the proxy's own writes can arrive in any order.
    public func apply(index: String, operation: LifecycleRecord.Operation, sequence: UInt64) {
        state.withLock { state in
            if let known = state.entries[index], known.sequence >= sequence { return }
            state.entries[index] = Entry(exists: operation == .create, sequence: sequence)
        }
    }

    public var existingCount: Int { state.withLock { $0.entries.values.count(where: \.exists) } }
}
