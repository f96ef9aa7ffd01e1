/// What an index holds in fpindex, as far as synchronisation cares.
public struct HeldIndex: Sendable, Equatable {
    /// The last applied stream sequence (`fpindex-cluster.seq`; 0 when never written).
    public var checkpoint: UInt64
    /// The identity of the stream it was fed from (`fpindex-cluster.stream`; empty when never written).
    public var stream: String
    /// Its generation in the stream's numbering, when known.
    public var generation: UInt64?

    public init(checkpoint: UInt64, stream: String, generation: UInt64?) {
        self.checkpoint = checkpoint
        self.stream = stream
        self.generation = generation
    }
}

/// The synchronisation decisions of an updater, as pure functions of what it read: which
/// indexes fpindex must drop or rebuild, where replication resumes, and what to do with the
/// consumer. `Replicator.synchronize` reads the facts, asks these, and carries out the answers.
public enum SyncDecision {
    /// Why what fpindex holds under an index name cannot be continued as the stream's index.
    public enum Replacement: Sendable, Equatable, CustomStringConvertible {
        /// Fed from another stream (another identity).
        case foreignStream(String)
        /// This stream's, but ahead of it: the stream lost what the index holds.
        case checkpointAhead(checkpoint: UInt64, streamLastSeq: UInt64)
        /// An earlier (or unknown) generation of the index: it was deleted and created again.
        case otherGeneration(held: UInt64?, stream: UInt64)

        /// Data only this index may still have: with `--on-foreign-data refuse` it is kept, and
        /// replication stops, rather than rebuilt from the stream.
        public var mayHoldDataTheStreamLacks: Bool {
            switch self {
            case .foreignStream, .checkpointAhead: true
            case .otherGeneration: false
            }
        }

        public var description: String {
            switch self {
            case .foreignStream(let stream): "it was fed from another stream (\(stream))"
            case .checkpointAhead(let checkpoint, let last): "its checkpoint \(checkpoint) is ahead of the stream (last sequence \(last))"
            case .otherGeneration(let held, let stream): "it is generation \(held.map(String.init) ?? "unknown"), the stream's is \(stream)"
            }
        }
    }

    /// Why what fpindex holds under an index name cannot be continued as the stream's index
    /// (generation `generation`), or nil when it can. This one rule decides both at start-up
    /// and when a create record is applied, so the two can never disagree.
    /// - Parameter streamLastSeq: the stream's last sequence, when a checkpoint ahead of it
    ///   must be caught (at start-up; a create record is applied below it by definition).
    public static func replacement(
        _ held: HeldIndex, identity: String, generation: UInt64?, streamLastSeq: UInt64? = nil
    ) -> Replacement? {
        if !held.stream.isEmpty, held.stream != identity { return .foreignStream(held.stream) }
        if let last = streamLastSeq, held.checkpoint > last { return .checkpointAhead(checkpoint: held.checkpoint, streamLastSeq: last) }
        if let generation, held.generation != generation { return .otherGeneration(held: held.generation, stream: generation) }
        return nil
    }

    /// What start-up synchronisation does to fpindex's indexes.
    public struct Indexes: Sendable, Equatable {
        /// Every index the stream knows, with the checkpoint replication continues from.
        public var indexes: [String: ReplicaIndex]
        /// Indexes the stream deleted: fpindex drops them (idempotent).
        public var drop: [String]
        /// Indexes whose data cannot be continued, with the reason: fpindex drops them and
        /// they are replayed from the stream.
        public var rebuild: [String: String]
        /// An index holding another stream's data while rebuilding is refused: replication stops.
        public var refused: (index: String, reason: String)?
        /// The first sequence to deliver: just after the oldest checkpoint of an existing index.
        public var resume: UInt64

        public static func == (a: Indexes, b: Indexes) -> Bool {
            a.indexes == b.indexes && a.drop == b.drop && a.rebuild == b.rebuild && a.refused?.index == b.refused?.index
                && a.refused?.reason == b.refused?.reason && a.resume == b.resume
        }
    }

    /// - Parameters:
    ///   - known: the indexes of the stream's lifecycle records (checkpoints 0).
    ///   - held: what fpindex holds of each existing one (absent: fpindex does not have it).
    ///   - rebuildForeignData: rebuild an index that may hold data the stream lacks (another
    ///     stream's, or a checkpoint ahead of the stream); else refuse to go on.
    public static func indexes(
        known: [String: ReplicaIndex], held: [String: HeldIndex], identity: String, firstSeq: UInt64, lastSeq: UInt64,
        rebuildForeignData: Bool
    ) -> Indexes {
        var indexes = known
        var drop: [String] = []
        var rebuild: [String: String] = [:]
        for (index, entry) in known.sorted(by: { $0.key < $1.key }) {
            indexes[index]?.checkpoint = 0
            guard entry.exists else {
                drop.append(index)
                continue
            }
            guard let held = held[index] else { continue }
            if let replacement = replacement(held, identity: identity, generation: entry.generation, streamLastSeq: lastSeq) {
                guard rebuildForeignData || !replacement.mayHoldDataTheStreamLacks else {
                    return Indexes(indexes: indexes, drop: drop, rebuild: rebuild, refused: (index, replacement.description), resume: 0)
                }
                rebuild[index] = replacement.description
            } else {
                indexes[index]?.checkpoint = held.checkpoint
            }
        }
        let existing = indexes.values.filter(\.exists)
        let resume = max(existing.map { $0.checkpoint + 1 }.min() ?? lastSeq + 1, max(firstSeq, 1))
        return Indexes(indexes: indexes, drop: drop, rebuild: rebuild, refused: nil, resume: resume)
    }

    /// What the replica's consumer needs before replication starts.
    public enum ConsumerStep: Sendable, Equatable {
        /// It delivers from the resume point or earlier: use it.
        case use
        /// It does not exist and creating it is the controller's job: wait.
        case waitForController
        /// It does not exist: create it delivering from `from`.
        case create(from: UInt64)
        /// It must be recreated delivering from `from`.
        case recreate(from: UInt64, reason: ConsumerResetReason)
    }

    public enum ConsumerResetReason: Sendable, Equatable {
        /// A previous run stopped with deliveries unacknowledged: they would come back only
        /// after the ack wait, behind newer messages whose ack-all would cover them.
        case unacknowledgedDeliveries
        /// It acknowledged past data the index does not hold (a wiped or replaced index).
        case aheadOfTheIndex
    }

    /// Whether `consumer(...)` needs the stream's first message at or after `resume`: only for
    /// a consumer with nothing unacknowledged that acknowledged up to `resume` or beyond.
    public static func needsFirstMessage(delivered: UInt64?, ackFloor: UInt64?, resume: UInt64) -> Bool {
        guard let delivered, let ackFloor else { return false }
        return delivered <= ackFloor && ackFloor >= resume
    }

    /// - Parameters:
    ///   - delivered, ackFloor: the consumer's delivered and acknowledged stream sequences,
    ///     nil when it does not exist.
    ///   - firstMessageAtOrAfterResume: the sequence of the stream's first message at or after
    ///     `resume`, nil when there is none or when `needsFirstMessage` said it is not needed.
    public static func consumer(
        delivered: UInt64?, ackFloor: UInt64?, resume: UInt64, mayCreate: Bool, firstMessageAtOrAfterResume: UInt64?
    ) -> ConsumerStep {
        guard let delivered, let ackFloor else { return mayCreate ? .create(from: resume) : .waitForController }
        if delivered > ackFloor { return .recreate(from: resume, reason: .unacknowledgedDeliveries) }
        if ackFloor >= resume, let skipped = firstMessageAtOrAfterResume, skipped <= ackFloor {
            return .recreate(from: resume, reason: .aheadOfTheIndex)
        }
        return .use
    }
}
