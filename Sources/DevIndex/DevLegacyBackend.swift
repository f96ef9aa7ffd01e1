import FpindexAPI
import LegacyProtocol
import Logging

/// fpindex-dev's legacy port: the protocol on one index (`main`, as the real fpindex), read
/// and written in place.
public struct DevLegacyBackend: LegacyBackend {
    public static let indexName = "main"

    let store: IndexStore
    let logger: Logger

    public init(store: IndexStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    public func prepare() async throws {
        _ = try await store.createIndex(Self.indexName, CreateIndexRequest())
    }

    public func search(_ hashes: [UInt32], tuning: LegacySearchTuning) async -> LegacyReply {
        do {
            let results = try store.search(
                Self.indexName, hashes: hashes, limit: tuning.limit, scorePercent: tuning.scorePercent,
                timeoutMilliseconds: tuning.timeoutMilliseconds)
            return .results(results.map { ($0.id, $0.score) })
        } catch let error where error.name == .searchTimeout {
            return .error("timeout exceeded")
        } catch {
            return .error("search failed")
        }
    }

    public func attribute(_ name: String) async -> String {
        store.snapshot(Self.indexName)?.metadata[name] ?? ""
    }

    public func commit(_ transaction: LegacyTransaction) async -> Bool {
        guard let update = transaction.updateRequest() else { return false }
        do {
            _ = try await store.update(Self.indexName, update)
            return true
        } catch {
            logger.warning("legacy commit failed", metadata: ["error": "\(error)"])
            return false
        }
    }
}
