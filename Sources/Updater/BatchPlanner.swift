import FpindexAPI
import JetStream

/// What the updater knows of one index.
public struct ReplicaIndex: Sendable, Equatable {
    /// Whether the stream's last lifecycle record for it is a create.
    public var exists: Bool
    /// The sequence of that create record (the generation), when known.
    public var generation: UInt64?
    /// Every message of this index up to here is applied (fpindex's `fpindex-cluster.seq`).
    public var checkpoint: UInt64

    public init(exists: Bool, generation: UInt64?, checkpoint: UInt64) {
        self.exists = exists
        self.generation = generation
        self.checkpoint = checkpoint
    }
}

/// One step of applying a batch to fpindex.
enum ReplicaOperation: Equatable, Sendable {
    /// Make sure the index exists with this generation (an older generation is replaced).
    case createIndex(String, generation: UInt64?)
    case deleteIndex(String)
    /// One `_update`: the index's changes and metadata, and its new checkpoint, atomically.
    case update(String, changes: [PackedChange], metadata: [String: String], checkpoint: UInt64)
}

/// A message skipped as poison: it cannot be applied, ever.
struct PoisonMessage: Equatable, Sendable {
    var sequence: UInt64
    var subject: String
    var reason: String
}

/// Turns a fetched batch into fpindex operations (docs/design.md, section 5). Pure: the replicator
/// does the I/O.
struct BatchPlan: Equatable, Sendable {
    var operations: [ReplicaOperation] = []
    var poison: [PoisonMessage] = []
    /// Messages at or below their index's checkpoint (redelivered after a crash).
    var alreadyApplied = 0
    /// Data for an index whose last lifecycle record is a delete, or older than the index's
    /// create record (writes that raced with a delete).
    var orphaned = 0
    /// The index states after the batch.
    var indexes: [String: ReplicaIndex]

    /// - Parameters:
    ///   - messages: a fetched batch, in stream order.
    ///   - indexes: what is known of each index before it.
    init(messages: [DeliveredMessage], indexes: [String: ReplicaIndex], subjects: StreamSubjects) {
        self.indexes = indexes
        guard let last = messages.last?.streamSequence else { return }
        var pending: [String: (changes: [PackedChange], metadata: [String: String])] = [:]
        var pendingOrder: [String] = []

        func touch(_ index: String) {
            if pending[index] == nil {
                pending[index] = ([], [:])
                pendingOrder.append(index)
            }
        }
        func flush(_ index: String, checkpoint: UInt64) {
            guard let work = pending.removeValue(forKey: index) else { return }
            pendingOrder.removeAll { $0 == index }
            operations.append(.update(index, changes: work.changes, metadata: work.metadata, checkpoint: checkpoint))
        }

        // Replays are long runs of fingerprints of one index: within a run the index's lookups
        // are done once, and its changes are collected here and handed over when the run ends.
        var run: (index: String, checkpoint: UInt64, changes: [PackedChange])?
        func endRun() {
            guard let ended = run else { return }
            run = nil
            pending[ended.index]!.changes.append(contentsOf: ended.changes)
        }
        func packedHashes(_ message: DeliveredMessage) -> PackedHashes?? {
            // The hashes go to fpindex as the stream holds them: checked, not decoded.
            do {
                return .some(try FingerprintRecord.packedHashes(payload: message.payload))
            } catch {
                poison.append(PoisonMessage(sequence: message.streamSequence, subject: message.subject, reason: "undecodable fingerprint"))
                return nil
            }
        }

        for message in messages {
            guard let subject = subjects.parse(message.subject) else {
                poison.append(
                    PoisonMessage(sequence: message.streamSequence, subject: message.subject, reason: "subject outside the scheme"))
                continue
            }
            // (`run` is read in place: a copy of it would share its changes and make each append copy them.)
            if case .fingerprint(let index, let id) = subject, run?.index == index {
                if message.streamSequence <= run!.checkpoint {
                    alreadyApplied += 1
                } else if let hashes = packedHashes(message) {
                    run!.changes.append(hashes.map { .insert(id: id, hashes: $0) } ?? .delete(id: id))
                }
                continue
            }
            endRun()
            let index: String
            switch subject {
            case .lifecycle(let name), .fingerprint(let name, _), .metadata(let name, _): index = name
            }
            if let known = self.indexes[index], message.streamSequence <= known.checkpoint {
                alreadyApplied += 1
                continue
            }
            switch subject {
            case .lifecycle:
                guard let record = try? Self.decode(LifecycleRecord.self, message.payload) else {
                    poison.append(
                        PoisonMessage(sequence: message.streamSequence, subject: message.subject, reason: "undecodable lifecycle record"))
                    continue
                }
                // What came before it for this index is applied first, with a checkpoint just below it.
                flush(index, checkpoint: message.streamSequence - 1)
                switch record.op {
                case .create:
                    operations.append(.createIndex(index, generation: message.streamSequence))
                    self.indexes[index] = ReplicaIndex(exists: true, generation: message.streamSequence, checkpoint: message.streamSequence)
                    touch(index)  // its checkpoint moves to the end of the batch
                case .delete:
                    operations.append(.deleteIndex(index))
                    self.indexes[index] = ReplicaIndex(exists: false, generation: nil, checkpoint: message.streamSequence)
                }
            case .fingerprint(_, let id):
                guard let hashes = packedHashes(message), prepare(index, sequence: message.streamSequence) else { continue }
                touch(index)
                run = (index, self.indexes[index]!.checkpoint, [hashes.map { .insert(id: id, hashes: $0) } ?? .delete(id: id)])
            case .metadata(_, let key):
                guard let record = try? Self.decode(MetadataRecord.self, message.payload) else {
                    poison.append(PoisonMessage(sequence: message.streamSequence, subject: message.subject, reason: "undecodable metadata"))
                    continue
                }
                guard !ReservedMetadata.isReserved(key) else {
                    poison.append(
                        PoisonMessage(sequence: message.streamSequence, subject: message.subject, reason: "reserved metadata key"))
                    continue
                }
                guard prepare(index, sequence: message.streamSequence) else { continue }
                touch(index)
                pending[index]!.metadata[key] = record.value
            }
        }
        endRun()
        for index in pendingOrder {
            flush(index, checkpoint: last)
            self.indexes[index]?.checkpoint = last
        }
    }

    /// Data for an index at stream sequence `sequence`: skipped when the index was deleted or
    /// the data is older than the index's generation (it belonged to an earlier one); an index
    /// never seen is created first.
    private mutating func prepare(_ index: String, sequence: UInt64) -> Bool {
        switch indexes[index] {
        case .some(let known) where !known.exists || sequence < known.generation ?? 0:
            orphaned += 1
            return false
        case .some:
            return true
        case .none:
            operations.append(.createIndex(index, generation: nil))
            indexes[index] = ReplicaIndex(exists: true, generation: nil, checkpoint: 0)
            return true
        }
    }

    static func decode<T: WireDecodable>(_ type: T.Type, _ payload: [UInt8]) throws(FpindexError) -> T {
        if payload.isEmpty, T.self == FingerprintRecord.self { return FingerprintRecord.tombstone as! T }
        return try T.decode(from: payload, format: .msgpack)
    }
}
