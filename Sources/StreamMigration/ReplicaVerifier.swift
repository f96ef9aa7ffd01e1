import FpindexAPI
import FpindexClient
import JetStream
import Logging

public struct VerifyOptions: Sendable {
    public var index: String
    /// The share of fingerprints checked (0 < f <= 1), chosen by id so reruns check the same ones.
    public var sample: Double
    /// Checks in flight at once.
    public var concurrency: Int
    /// Ids listed per kind of difference.
    public var samplesShown: Int

    public init(index: String, sample: Double = 1, concurrency: Int = 16, samplesShown: Int = 20) {
        self.index = index
        self.sample = sample
        self.concurrency = concurrency
        self.samplesShown = samplesShown
    }

    /// Whether `id` is in the sample: a multiplicative hash of the id, so the choice is spread
    /// over the whole range and the same on every run.
    public func isSampled(_ id: UInt32) -> Bool {
        guard sample < 1 else { return true }
        let mixed = (UInt64(id) &* 0x9E37_79B9_7F4A_7C15) >> 32
        return Double(mixed & 0xffff_ffff) < sample * 4_294_967_296
    }
}

/// How a replica compares with the stream.
public struct VerifyReport: Sendable, Equatable {
    /// Fingerprint subjects of the index checked (live and deleted).
    public var checked = 0
    /// The replica holds the stream's value (or, for a deleted one, does not hold it).
    public var matching = 0
    /// In the stream, not in the replica.
    public var missing = 0
    /// In both, but a search with the stream's hashes does not find it with a full score.
    public var stale = 0
    /// Deleted in the stream, still in the replica.
    public var extra = 0
    /// Found with a full score only among more than 100 equal fingerprints, so it was checked
    /// by existence alone (counted in `matching`).
    public var existenceOnly = 0
    public var missingIds: [UInt32] = []
    public var staleIds: [UInt32] = []
    public var extraIds: [UInt32] = []
    /// Fingerprints of the index in the stream, checked or not.
    public var streamFingerprints = 0
    /// Documents the replica reports for the index (`stats.num_docs`).
    public var replicaDocuments: UInt64?
    public var seconds = 0.0

    public var differences: Int { missing + stale + extra }

    public init() {}
}

/// Compares one replica with the stream: every (or a sample of the) fingerprint subject of the
/// index is read from the stream (last message per subject) and looked up in the replica.
///
/// A live fingerprint matches when a search with its stored hashes returns its id with the full
/// score (every hash found); the replica holding other hashes for it is `stale`, not holding it
/// at all `missing`. A deleted fingerprint matches when the replica does not hold it, else it
/// is `extra`. Run it against a replica that has caught up; writes made while it runs may show
/// as differences.
public final class ReplicaVerifier: Sendable {
    let client: NATSClient
    let stream: StreamSettings
    let subjects: StreamSubjects
    let fpindex: FpindexClient
    let options: VerifyOptions
    let logger: Logger

    public init(client: NATSClient, stream: StreamSettings, fpindex: FpindexClient, options: VerifyOptions, logger: Logger) {
        self.client = client
        self.stream = stream
        self.subjects = StreamSubjects(prefix: stream.subjectPrefix)
        self.fpindex = fpindex
        self.options = options
        self.logger = logger
    }

    enum Outcome: Sendable {
        case matching(existenceOnly: Bool)
        case missing(UInt32)
        case stale(UInt32)
        case extra(UInt32)
    }

    public func run(progress: ProgressReporter) async throws -> VerifyReport {
        let started = ContinuousClock.now
        var report = VerifyReport()
        _ = try await client.verifyStream(stream)
        let lifecycle = try await client.lastMessage(stream: stream.name, subject: subjects.lifecycle(options.index))
        guard let lifecycle,
            (try? lifecycle.payload.withUnsafeBytes { bytes throws(FpindexError) in try LifecycleRecord.decode(payload: bytes) })?.op
                == .create
        else { throw ImportError("index \(options.index) does not exist in stream \(stream.name)") }
        do {
            guard let info = try await fpindex.indexInfo(options.index) else {
                throw ImportError("index \(options.index) does not exist on \(fpindex.baseURL)")
            }
            report.replicaDocuments = UInt64(info.stats.numDocs)
        }
        let total = try await client.streamInfo(stream.name, subjectsFilter: nil)?.state.messages ?? 0
        try await client.withStreamScan(stream: stream.name, filter: subjects.fingerprintsOf(options.index)) { scan in
            try await withThrowingTaskGroup(of: Outcome.self) { group in
                var inFlight = 0
                func record(_ outcome: Outcome) {
                    report.checked += 1
                    switch outcome {
                    case .matching(let existenceOnly):
                        report.matching += 1
                        if existenceOnly { report.existenceOnly += 1 }
                    case .missing(let id):
                        report.missing += 1
                        if report.missingIds.count < options.samplesShown { report.missingIds.append(id) }
                    case .stale(let id):
                        report.stale += 1
                        if report.staleIds.count < options.samplesShown { report.staleIds.append(id) }
                    case .extra(let id):
                        report.extra += 1
                        if report.extraIds.count < options.samplesShown { report.extraIds.append(id) }
                    }
                }
                while let messages = try await scan.next() {
                    for message in messages {
                        guard case .fingerprint(_, let id)? = subjects.parse(message.subject) else { continue }
                        report.streamFingerprints += 1
                        guard options.isSampled(id) else { continue }
                        let stored = try message.payload.withUnsafeBytes { bytes throws(FpindexError) in
                            try FingerprintRecord.decode(payload: bytes)
                        }
                        if inFlight >= options.concurrency, let outcome = try await group.next() {
                            inFlight -= 1
                            record(outcome)
                        }
                        group.addTask { try await self.check(id: id, hashes: stored.hashes) }
                        inFlight += 1
                    }
                    progress.update(done: report.checked, fraction: total > 0 ? Double(report.streamFingerprints) / Double(total) : nil)
                }
                while let outcome = try await group.next() { record(outcome) }
            }
        }
        report.missingIds.sort()
        report.staleIds.sort()
        report.extraIds.sort()
        report.seconds = (ContinuousClock.now - started).seconds
        progress.finish(done: report.checked)
        return report
    }

    /// Looks one fingerprint up in the replica.
    func check(id: UInt32, hashes: [UInt32]?) async throws -> Outcome {
        guard let hashes else {
            return try await fpindex.fingerprintVersion(options.index, id: id) == nil ? .matching(existenceOnly: false) : .extra(id)
        }
        // A fingerprint without hashes cannot be searched for: its existence is all there is.
        guard !hashes.isEmpty else {
            return try await fpindex.fingerprintVersion(options.index, id: id) == nil ? .missing(id) : .matching(existenceOnly: false)
        }
        let fullScore = UInt32(Set(hashes).count)
        let results = try await fpindex.search(
            options.index,
            SearchRequest(query: hashes, timeout: 0, limit: SearchRequest.maxLimit, minScore: fullScore, scorePct: 0))
        if results.contains(where: { $0.id == id && $0.score >= fullScore }) { return .matching(existenceOnly: false) }
        let crowded = results.count >= Int(SearchRequest.maxLimit) && results.allSatisfy { $0.score >= fullScore }
        guard try await fpindex.fingerprintVersion(options.index, id: id) != nil else { return .missing(id) }
        // More than a page of equal fingerprints ranked before it: it exists, and no search can
        // tell more.
        return crowded ? .matching(existenceOnly: true) : .stale(id)
    }
}
