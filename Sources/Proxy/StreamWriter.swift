import FpindexAPI
import JetStream
import Metrics

/// One message the proxy publishes for a write.
struct OutgoingMessage: Sendable, Equatable {
    var subject: String
    var payload: [UInt8]
}

/// Turns fpindex writes into stream messages (docs/design.md, section 4) and publishes them.
struct StreamWriter: Sendable {
    static let maxMetadataKeyBytes = 1024

    let subjects: StreamSubjects

    /// Checks what fpindex's codec cannot: metadata keys the cluster reserves, and keys that
    /// cannot become a subject token. Nothing is published for a request that fails here.
    static func validate(_ request: UpdateRequest) throws(FpindexError) {
        for entry in request.metadataEntries {
            guard !ReservedMetadata.isReserved(entry.key) else {
                throw .badRequest("metadata key \(entry.key.prefix(100)) is reserved for fpindex-cluster")
            }
            guard !entry.key.isEmpty, entry.key.utf8.count <= maxMetadataKeyBytes else {
                throw .badRequest("metadata keys must be 1-\(maxMetadataKeyBytes) bytes")
            }
        }
    }

    /// The messages for an `_update`: one per subject, the last change for it winning, in the
    /// order of those last changes (the stream keeps only the last message per subject anyway).
    func messages(for request: UpdateRequest, index: String) -> [OutgoingMessage] {
        var all: [OutgoingMessage] = []
        all.reserveCapacity(request.changes.count)
        for change in request.changes {
            switch change {
            case .insert(let id, let hashes):
                all.append(
                    OutgoingMessage(subject: subjects.fingerprint(index, id: id), payload: FingerprintRecord(hashes: hashes).payload))
            case .delete(let id):
                all.append(OutgoingMessage(subject: subjects.fingerprint(index, id: id), payload: FingerprintRecord.tombstone.payload))
            case .setMetadata(let entries):
                for entry in entries {
                    all.append(
                        OutgoingMessage(
                            subject: subjects.metadata(index, key: entry.key), payload: MetadataRecord(value: entry.value).payload))
                }
            }
        }
        for (key, value) in (request.metadata ?? [:]).sorted(by: { $0.key < $1.key }) {
            all.append(OutgoingMessage(subject: subjects.metadata(index, key: key), payload: MetadataRecord(value: value).payload))
        }
        var seen = Set<String>()
        seen.reserveCapacity(all.count)
        var lastOnly: [OutgoingMessage] = []
        lastOnly.reserveCapacity(all.count)
        for message in all.reversed() where seen.insert(message.subject).inserted {
            lastOnly.append(message)
        }
        return lastOnly.reversed()
    }
}

/// Publish metrics, made once.
final class PublishMetrics: Sendable {
    let latency: Metrics.Timer
    let bytes: Counter
    let messages: Counter
    let failures: Counter
    let fenceRetries: Counter

    init(factory: any MetricsFactory) {
        latency = Metrics.Timer(label: "fpindex_proxy_publish_batch_duration_seconds", preferredDisplayUnit: .seconds, factory: factory)
        bytes = Counter(label: "fpindex_proxy_published_bytes_total", factory: factory)
        messages = Counter(label: "fpindex_proxy_published_messages_total", factory: factory)
        failures = Counter(label: "fpindex_proxy_publish_failures_total", factory: factory)
        fenceRetries = Counter(label: "fpindex_proxy_publish_fence_retries_total", factory: factory)
    }
}

extension Metrics.Timer {
    func recordInterval(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}
