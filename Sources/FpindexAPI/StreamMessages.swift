/// One message a write becomes: a subject of the stream and its payload.
public struct StreamMessage: Sendable, Equatable {
    public var subject: String
    public var payload: [UInt8]

    public init(subject: String, payload: [UInt8]) {
        self.subject = subject
        self.payload = payload
    }
}

/// How an `_update` becomes stream messages (docs/design.md, section 4): the one translation the
/// proxy and the bulk import share, so both write exactly the same subjects and payloads.
extension StreamSubjects {
    /// The longest metadata key a subject can carry (hex-encoded, it becomes one token).
    public static let maxMetadataKeyBytes = 1024

    /// Checks what fpindex's codec cannot: metadata keys the cluster reserves, and keys that
    /// cannot become a subject token. Nothing may be published for a request that fails here.
    public static func validate(_ request: UpdateRequest) throws(FpindexError) {
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
    public func messages(for request: UpdateRequest, index: String) -> [StreamMessage] {
        var all: [StreamMessage] = []
        all.reserveCapacity(request.changes.count)
        for change in request.changes {
            switch change {
            case .insert(let id, let hashes):
                all.append(StreamMessage(subject: fingerprint(index, id: id), payload: FingerprintRecord(hashes: hashes).payload))
            case .delete(let id):
                all.append(StreamMessage(subject: fingerprint(index, id: id), payload: FingerprintRecord.tombstone.payload))
            case .setMetadata(let entries):
                for entry in entries {
                    all.append(StreamMessage(subject: metadata(index, key: entry.key), payload: MetadataRecord(value: entry.value).payload))
                }
            }
        }
        for (key, value) in (request.metadata ?? [:]).sorted(by: { $0.key < $1.key }) {
            all.append(StreamMessage(subject: metadata(index, key: key), payload: MetadataRecord(value: value).payload))
        }
        var seen = Set<String>()
        seen.reserveCapacity(all.count)
        var lastOnly: [StreamMessage] = []
        lastOnly.reserveCapacity(all.count)
        for message in all.reversed() where seen.insert(message.subject).inserted {
            lastOnly.append(message)
        }
        return lastOnly.reversed()
    }
}

extension StreamSubjects {
    /// The fingerprint subjects of one index, `<prefix>.<index>.*` (metadata subjects have one
    /// token more, the lifecycle record one less).
    public func fingerprintsOf(_ index: String) -> String { "\(prefix).\(index).*" }
    /// Every metadata subject of an index.
    public func metadataOf(_ index: String) -> String { "\(prefix).\(index)._meta.*" }
}
