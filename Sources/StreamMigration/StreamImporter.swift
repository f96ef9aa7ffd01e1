import FpindexAPI
import JetStream
import Logging

/// What an import does with rows it cannot take.
public enum RowErrorPolicy: String, CaseIterable, Sendable {
    /// Report the row and go on; the run ends unsuccessful.
    case skip
    /// Report the row and stop before publishing anything after it.
    case stop
}

/// How an import treats a fingerprint the stream already holds with other hashes.
public enum ExistingPolicy: String, CaseIterable, Sendable {
    /// The stream's value stays: with writes going to the proxy before the export was taken, the
    /// stream is never older than the export (see README, "Migrating").
    case keep
    /// The input's value replaces it (a corrected export).
    case replace
}

public struct ImportOptions: Sendable {
    public var index: String
    public var format: ImportFormat
    public var onError: RowErrorPolicy
    public var existing: ExistingPolicy
    /// Rows (lines, or `msgpack` bodies) before this one are skipped unread.
    public var resumeFrom: Int
    /// Messages published and acknowledged together.
    public var batchSize: Int
    /// Bad rows printed one by one; later ones are only counted.
    public var maxReportedErrors: Int

    public init(
        index: String, format: ImportFormat = .pgcopy, onError: RowErrorPolicy = .stop, existing: ExistingPolicy = .keep,
        resumeFrom: Int = 1, batchSize: Int = 4096, maxReportedErrors: Int = 1000
    ) {
        self.index = index
        self.format = format
        self.onError = onError
        self.existing = existing
        self.resumeFrom = resumeFrom
        self.batchSize = batchSize
        self.maxReportedErrors = maxReportedErrors
    }
}

/// What an import did, row by row.
public struct ImportSummary: Sendable, Equatable {
    /// Rows read (lines with a row, or bodies), bad ones included, skipped ones not.
    public var rows = 0
    /// Rows before `--resume-from`, not read.
    public var resumedPast = 0
    /// Messages published and acknowledged by the stream.
    public var published = 0
    /// Fingerprints the stream already held with the same payload (an earlier run).
    public var unchanged = 0
    /// Fingerprints the stream holds with other hashes, kept (`--existing keep`).
    public var keptExisting = 0
    /// Rows whose subject was written by someone else while the import ran: the newer write stays.
    public var superseded = 0
    /// Rows kept out although the input's earlier row for the id equals the stream's value and
    /// this one differs (`--existing keep`): after an interrupted run, the stream may hold an
    /// earlier row of the input rather than its last. Reported, and the run ends with status 1.
    public var keptAfterMatchingRow = 0
    public var keptAfterMatchingRowIds: [UInt32] = []
    /// Deletions of fingerprints the stream never had: nothing to publish.
    public var nothingToDelete = 0
    /// Bad rows, reported with their line.
    public var badRows = 0
    /// The first bad rows.
    public var errors: [RowError] = []
    /// Whether the run read its whole input (not stopped by a bad row).
    public var completed = false
    /// The row the run stopped at.
    public var stoppedBy: RowError?
    public var seconds = 0.0

    public var rowsPerSecond: Double { seconds > 0 ? Double(rows) / seconds : 0 }

    public init() {}
}

/// Fills the stream with an index's fingerprints from a file: the same subjects and payloads the
/// proxy writes (`StreamSubjects.messages`), each message fenced like the proxy's, so that a write
/// the proxy takes while the import runs is never replaced by the older exported value.
public final class StreamImporter: Sendable {
    let client: NATSClient
    let stream: StreamSettings
    let subjects: StreamSubjects
    let options: ImportOptions
    let logger: Logger

    public init(client: NATSClient, stream: StreamSettings, options: ImportOptions, logger: Logger) {
        self.client = client
        self.stream = stream
        self.subjects = StreamSubjects(prefix: stream.subjectPrefix)
        self.options = options
        self.logger = logger
    }

    /// One message to publish, and what it stands for.
    struct Planned {
        var message: StreamMessage
        /// The sequence the subject's last message must have (0: none); nil publishes unfenced.
        var fence: UInt64?
        /// The fingerprint it writes (metadata: nil).
        var id: UInt32?
        /// The input row it comes from.
        var line: Int
    }

    /// Runs the import.
    /// - Parameter onBadRow: called for each bad row reported individually.
    public func run(
        input: ImportInput, progress: ProgressReporter, onBadRow: @Sendable (RowError) -> Void = { _ in }
    ) async throws -> ImportSummary {
        let started = ContinuousClock.now
        var summary = ImportSummary()
        guard FpindexNames.isValidIndexName(options.index) else {
            throw ImportError("'\(options.index)' is not an index name (1-255 characters of A-Z a-z 0-9 _ -)")
        }
        try await prepareStream()
        try await ensureIndex()
        var existing = try await existingFingerprints()
        // Only MessagePack bodies carry metadata.
        let existingMetadata = options.format == .msgpack ? try await existingMetadataRecords() : [:]
        /// The stream sequences this run's messages got: a subject whose last message is one of
        /// them was last written by this run, not by the proxy.
        var ownSequences = SequenceRanges()
        var runIds = RunIds()

        var reader = RowReader(input: input, format: options.format)
        if options.resumeFrom > 1 {
            try await reader.skip(rows: options.resumeFrom - 1)
            summary.resumedPast = reader.line
        }
        var batch: [Planned] = []
        var slotOfId: [UInt32: Int] = [:]
        var slotOfMetadata: [String: Int] = [:]
        /// Replaces an earlier message for the same subject in this batch: the later row wins.
        func plan(_ planned: Planned) {
            if let id = planned.id {
                if let slot = slotOfId[id] {
                    batch[slot] = planned
                } else {
                    slotOfId[id] = batch.count
                    batch.append(planned)
                }
            } else if let slot = slotOfMetadata[planned.message.subject] {
                batch[slot] = planned
            } else {
                slotOfMetadata[planned.message.subject] = batch.count
                batch.append(planned)
            }
        }
        // One batch is published while the next is read and planned. The next is sent only
        // once the one before is settled, so the stream takes the rows in input order.
        var sending: (batch: [Planned], task: Task<[Result<PublishAck, JetStreamError>], Never>)?
        func settleSending() async throws {
            guard let (sent, task) = sending else { return }
            sending = nil
            try await settle(sent, results: await task.value, summary: &summary, ownSequences: &ownSequences, existing: &existing)
        }
        func flush() async throws {
            try await settleSending()
            guard !batch.isEmpty else { return }
            let messages = Self.batchMessages(batch)
            let client = self.client
            sending = (batch, Task { await client.publishBatch(messages) })
            batch.removeAll(keepingCapacity: true)
            slotOfId.removeAll(keepingCapacity: true)
            slotOfMetadata.removeAll(keepingCapacity: true)
        }
        func drain() async throws {
            try await flush()
            try await settleSending()
        }

        while let (line, result) = try await reader.next() {
            summary.rows += 1
            switch result {
            case .failure(let error):
                summary.badRows += 1
                if summary.errors.count < options.maxReportedErrors {
                    summary.errors.append(error)
                    onBadRow(error)
                }
                if options.onError == .stop || error.endsInput {
                    // Rows before it are published, nothing after it: `--resume-from` continues.
                    try await drain()
                    summary.stoppedBy = error
                    summary.seconds = (ContinuousClock.now - started).seconds
                    progress.finish(done: summary.rows)
                    return summary
                }
            case .success(let change):
                for planned in plannedMessages(
                    change, line: line, existing: existing, existingMetadata: existingMetadata, run: &runIds, summary: &summary)
                {
                    plan(planned)
                }
            }
            if batch.count >= options.batchSize {
                try await flush()
                progress.update(done: summary.rows, fraction: input.totalBytes.map { Double(input.bytesRead) / Double(max($0, 1)) })
            }
        }
        try await drain()
        summary.completed = true
        summary.seconds = (ContinuousClock.now - started).seconds
        progress.finish(done: summary.rows)
        return summary
    }

    /// Creates the stream as the controller would when it does not exist yet; otherwise checks it.
    func prepareStream() async throws {
        if try await client.streamInfo(stream.name) == nil {
            try await client.ensureStream(stream)
        } else {
            _ = try await client.verifyStream(stream)
        }
    }

    /// Publishes the index's create record unless its last lifecycle record already is one, fenced
    /// like the proxy's `PUT /:index`.
    func ensureIndex() async throws {
        let subject = subjects.lifecycle(options.index)
        for _ in 0..<8 {
            let last = try await client.lastMessage(stream: stream.name, subject: subject)
            if let last,
                let record = try? last.payload.withUnsafeBytes({ bytes throws(FpindexError) in try LifecycleRecord.decode(payload: bytes) }
                ),
                record.op == .create
            {
                return
            }
            do {
                let ack = try await client.publish(
                    subject: subject, payload: LifecycleRecord(.create).payload,
                    options: PublishOptions(expectedLastSubjectSequence: last?.sequence ?? 0))
                logger.notice("created the index in the stream", metadata: ["index": "\(options.index)", "stream.seq": "\(ack.sequence)"])
                return
            } catch let error as JetStreamError where error.isWrongLastSequence {
                continue  // someone else wrote the lifecycle record meanwhile: look again
            }
        }
        throw ImportError("the lifecycle record of index \(options.index) keeps changing; try again")
    }

    /// The fingerprints the stream already holds for the index: sequence and payload digest per
    /// id, so a re-run skips what is there and fences what it replaces.
    func existingFingerprints() async throws -> [UInt32: ExistingFingerprint] {
        var existing: [UInt32: ExistingFingerprint] = [:]
        let progress = ProgressReporter(label: "reading fingerprints already in the stream", unit: "fingerprints")
        try await client.withStreamScan(stream: stream.name, filter: subjects.fingerprintsOf(options.index)) { scan in
            while let messages = try await scan.next() {
                for message in messages {
                    guard case .fingerprint(_, let id)? = subjects.parse(message.subject) else { continue }
                    existing[id] = ExistingFingerprint(sequence: message.sequence, digest: PayloadDigest(message.payload))
                }
                progress.update(done: existing.count)
            }
        }
        if !existing.isEmpty {
            progress.finish(done: existing.count)
            logger.notice("the stream already holds fingerprints of this index", metadata: ["count": "\(existing.count)"])
        }
        return existing
    }

    /// The index's metadata values in the stream: sequence and payload digest per subject.
    func existingMetadataRecords() async throws -> [String: ExistingFingerprint] {
        var existing: [String: ExistingFingerprint] = [:]
        try await client.withStreamScan(stream: stream.name, filter: subjects.metadataOf(options.index)) { scan in
            while let messages = try await scan.next() {
                for message in messages {
                    existing[message.subject] = ExistingFingerprint(sequence: message.sequence, digest: PayloadDigest(message.payload))
                }
            }
        }
        return existing
    }

    /// The messages a row becomes, after what the stream already holds is taken into account.
    func plannedMessages(
        _ change: ImportChange, line: Int, existing: [UInt32: ExistingFingerprint],
        existingMetadata: [String: ExistingFingerprint] = [:], run: inout RunIds, summary: inout ImportSummary
    ) -> [Planned] {
        var planned: [Planned] = []
        let messages: [StreamMessage]
        switch change {
        case .fingerprint(let id, let hashes):
            plan(
                id: id, payload: FingerprintRecord(hashes: hashes).payload, line: line, existing: existing, run: &run,
                summary: &summary,
                into: &planned)
            return planned
        case .deletion(let id):
            plan(
                id: id, payload: FingerprintRecord.tombstone.payload, line: line, existing: existing, run: &run, summary: &summary,
                into: &planned)
            return planned
        case .update(let request):
            messages = subjects.messages(for: request, index: options.index)
        }
        for message in messages {
            if case .fingerprint(_, let id)? = subjects.parse(message.subject) {
                plan(id: id, payload: message.payload, line: line, existing: existing, run: &run, summary: &summary, into: &planned)
            } else {
                planMetadata(message, line: line, existing: existingMetadata, run: &run, summary: &summary, into: &planned)
            }
        }
        return planned
    }

    /// Plans one metadata message as a fingerprint's: fenced, so that a value the proxy wrote
    /// meanwhile stays, and kept or replaced (`--existing`) where the stream has another value.
    private func planMetadata(
        _ message: StreamMessage, line: Int, existing: [String: ExistingFingerprint], run: inout RunIds,
        summary: inout ImportSummary, into planned: inout [Planned]
    ) {
        let subject = message.subject
        if run.plannedMetadata.contains(subject) {
            planned.append(Planned(message: message, fence: existing[subject]?.sequence ?? 0, id: nil, line: line))
            return
        }
        guard let current = existing[subject] else {
            run.plannedMetadata.insert(subject)
            planned.append(Planned(message: message, fence: 0, id: nil, line: line))
            return
        }
        if current.digest == PayloadDigest(message.payload) {
            summary.unchanged += 1
        } else if options.existing == .keep {
            summary.keptExisting += 1
        } else {
            run.plannedMetadata.insert(subject)
            planned.append(Planned(message: message, fence: current.sequence, id: nil, line: line))
        }
    }

    /// Plans one fingerprint's message, fenced where the stream had the subject.
    private func plan(
        id: UInt32, payload: [UInt8], line: Int, existing: [UInt32: ExistingFingerprint], run: inout RunIds,
        summary: inout ImportSummary,
        into planned: inout [Planned]
    ) {
        let message = StreamMessage(subject: subjects.fingerprint(options.index, id: id), payload: payload)
        if run.planned.contains(id) {
            planned.append(Planned(message: message, fence: existing[id]?.sequence ?? 0, id: id, line: line))
            return
        }
        defer { if planned.last?.id == id { run.planned.insert(id) } }
        guard let current = existing[id] else {
            if payload.isEmpty || payload == FingerprintRecord.tombstone.payload {
                summary.nothingToDelete += 1
            } else {
                planned.append(Planned(message: message, fence: 0, id: id, line: line))
            }
            return
        }
        if current.digest == PayloadDigest(payload) {
            summary.unchanged += 1
            run.matched.insert(id)
        } else if options.existing == .keep {
            summary.keptExisting += 1
            if run.matched.contains(id) {
                // The stream holds an earlier row of this input, and a later row differs: an earlier
                // run that stopped between them, or a proxy write that happens to equal that row.
                // The stream cannot tell which, so the stream's value stays and the id is reported.
                summary.keptAfterMatchingRow += 1
                if summary.keptAfterMatchingRowIds.count < options.maxReportedErrors { summary.keptAfterMatchingRowIds.append(id) }
            }
        } else {
            planned.append(Planned(message: message, fence: current.sequence, id: id, line: line))
        }
    }

    /// Takes a published batch's outcomes, sending again what must be. A message refused because its
    /// subject moved is sent again, fenced where the subject is now, only when the subject's last
    /// message is this run's own (the same id on an earlier row: the later row wins); otherwise
    /// someone wrote it after that row, and that newer write stays.
    func settle(
        _ batch: [Planned], results first: [Result<PublishAck, JetStreamError>], summary: inout ImportSummary,
        ownSequences: inout SequenceRanges,
        existing: inout [UInt32: ExistingFingerprint]
    ) async throws {
        var pending = batch
        var results = first
        for attempt in 0..<8 {
            if attempt > 0 { results = await client.publishBatch(Self.batchMessages(pending)) }
            var again: [Planned] = []
            for (planned, result) in zip(pending, results) {
                switch result {
                case .success(let ack):
                    summary.published += 1
                    ownSequences.insert(ack.sequence)
                    if let id = planned.id { existing[id] = nil }
                case .failure(let error) where error.isWrongLastSequence:
                    var actual = error.actualLastSequence
                    if actual == nil {
                        actual = try await client.lastMessage(stream: stream.name, subject: planned.message.subject)?.sequence ?? 0
                    }
                    // Only this run's own earlier row gives way; a write the proxy took after it stays.
                    if let actual, actual != 0, ownSequences.contains(actual) {
                        var retry = planned
                        retry.fence = actual
                        again.append(retry)
                    } else {
                        summary.superseded += 1
                    }
                case .failure(let error):
                    let line = batch.map(\.line).min() ?? 0
                    throw ImportError(
                        "publishing failed (\(error)); every row before line \(line) is in the stream: run again with --resume-from \(line), or from the start (rows already there are skipped)"
                    )
                }
            }
            if again.isEmpty { return }
            pending = again
        }
        throw ImportError("the same fingerprints keep changing under this import (other writers); run it again")
    }

    static func batchMessages(_ planned: [Planned]) -> [BatchMessage] {
        planned.map { BatchMessage(subject: $0.message.subject, payload: $0.message.payload, expectedLastSubjectSequence: $0.fence) }
    }
}

/// What the stream held for a fingerprint when the import started.
struct ExistingFingerprint: Sendable {
    var sequence: UInt64
    var digest: PayloadDigest
}

/// What this run did with ids, row by row.
struct RunIds {
    /// Ids an earlier row of this run planned a message for: a later row for one is always sent
    /// (it wins, as within one `_update`), whatever the stream held before the run.
    var planned = IdSet()
    /// Ids whose earlier row of this run equalled what the stream holds.
    var matched = IdSet()
    /// Metadata subjects an earlier row of this run planned a message for.
    var plannedMetadata: Set<String> = []
}

/// A set of stream sequences kept as sorted, disjoint ranges: an import's own sequences are
/// consecutive but for the writes others make meanwhile, so 100 M of them take a few ranges.
public struct SequenceRanges: Sendable {
    private var ranges: [ClosedRange<UInt64>] = []

    public init() {}

    public mutating func insert(_ sequence: UInt64) {
        // The first range that ends at or after sequence - 1 (acknowledgements mostly come in order: the last one).
        var low = 0
        var high = ranges.count
        while low < high {
            let middle = (low + high) / 2
            if ranges[middle].upperBound &+ 1 < sequence { low = middle + 1 } else { high = middle }
        }
        guard low < ranges.count else {
            ranges.append(sequence...sequence)
            return
        }
        let range = ranges[low]
        if range.contains(sequence) { return }
        if range.upperBound &+ 1 == sequence {
            ranges[low] = range.lowerBound...sequence
            if low + 1 < ranges.count, ranges[low + 1].lowerBound == sequence &+ 1 {
                ranges[low] = range.lowerBound...ranges[low + 1].upperBound
                ranges.remove(at: low + 1)
            }
        } else if sequence &+ 1 == range.lowerBound {
            ranges[low] = sequence...range.upperBound
        } else {
            ranges.insert(sequence...sequence, at: low)
        }
    }

    public func contains(_ sequence: UInt64) -> Bool {
        var low = 0
        var high = ranges.count
        while low < high {
            let middle = (low + high) / 2
            if ranges[middle].upperBound < sequence { low = middle + 1 } else { high = middle }
        }
        return low < ranges.count && ranges[low].contains(sequence)
    }

    /// How many disjoint ranges hold the set.
    public var rangeCount: Int { ranges.count }
}

/// FNV-1a (64 bits) of a payload: equal payloads compare equal without keeping 100 M of them.
struct PayloadDigest: Hashable, Sendable {
    let value: UInt64

    init(_ bytes: [UInt8]) {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        value = hash
    }
}

/// A set of fingerprint ids in pages of 64 Ki bits allocated on first use: ids of an export are
/// dense, so 100 M of them take about 12 MB.
struct IdSet: Sendable {
    private static let wordsPerPage = 1024
    /// The page of each block of 65536 ids, -1 for none yet.
    private var pageOfBlock = [Int32](repeating: -1, count: 65536)
    private var words: [UInt64] = []

    mutating func insert(_ id: UInt32) {
        let block = Int(id >> 16)
        var page = Int(pageOfBlock[block])
        if page < 0 {
            page = words.count / Self.wordsPerPage
            pageOfBlock[block] = Int32(page)
            words.append(contentsOf: repeatElement(0, count: Self.wordsPerPage))
        }
        words[page * Self.wordsPerPage + Int((id >> 6) & 1023)] |= 1 << UInt64(id & 63)
    }

    func contains(_ id: UInt32) -> Bool {
        let page = Int(pageOfBlock[Int(id >> 16)])
        guard page >= 0 else { return false }
        return words[page * Self.wordsPerPage + Int((id >> 6) & 1023)] & (1 << UInt64(id & 63)) != 0
    }
}
