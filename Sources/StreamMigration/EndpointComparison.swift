import FpindexAPI
import FpindexClient
import JetStream

/// One query whose top results differ between the two endpoints.
public struct QueryDifference: Sendable, Equatable {
    /// The fingerprint the query was made from.
    public var sourceId: UInt32
    /// `full`, `partial` (the middle half of the hashes) or `noisy` (every fifth hash replaced).
    public var variant: String
    public var top: SearchResult?
    public var otherTop: SearchResult?
}

/// How two fpindex endpoints answer the same queries: the A/B check of a side-by-side migration.
public struct ComparisonReport: Sendable, Equatable {
    public var queries = 0
    public var sameTop = 0
    public var differentTop = 0
    public var samples: [QueryDifference] = []
    public var seconds = 0.0

    public init() {}
}

/// Runs queries made from the stream's own fingerprints (whole, partial and noisy) against two
/// endpoints and compares their top results (id and score).
public final class EndpointComparison: Sendable {
    let client: NATSClient
    let stream: StreamSettings
    let subjects: StreamSubjects
    let first: FpindexClient
    let second: FpindexClient
    let index: String
    let sources: Int
    let concurrency: Int
    let samplesShown: Int

    /// - Parameter sources: fingerprints to make queries from (three queries each).
    public init(
        client: NATSClient, stream: StreamSettings, first: FpindexClient, second: FpindexClient, index: String, sources: Int,
        concurrency: Int = 8, samplesShown: Int = 20
    ) {
        self.client = client
        self.stream = stream
        self.subjects = StreamSubjects(prefix: stream.subjectPrefix)
        self.first = first
        self.second = second
        self.index = index
        self.sources = sources
        self.concurrency = concurrency
        self.samplesShown = samplesShown
    }

    /// The three queries made from one fingerprint's hashes (deterministic, so reruns compare alike).
    static func queries(from hashes: [UInt32], id: UInt32) -> [(variant: String, query: [UInt32])] {
        let quarter = hashes.count / 4
        var noisy = hashes
        var state = UInt64(id) | 1
        for i in stride(from: 0, to: noisy.count, by: 5) {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            noisy[i] = UInt32(truncatingIfNeeded: state >> 32)
        }
        return [("full", hashes), ("partial", Array(hashes[quarter..<(hashes.count - quarter)])), ("noisy", noisy)]
    }

    public func run(progress: ProgressReporter) async throws -> ComparisonReport {
        let started = ContinuousClock.now
        var report = ComparisonReport()
        // Spread over the index: every n-th fingerprint with enough hashes to cut.
        let chosen = try await client.withStreamScan(stream: stream.name, filter: subjects.fingerprintsOf(index)) { scan in
            // The index's own fingerprint count, not the stream's: other indexes must not thin the sample.
            let step = max(1, Int(try await scan.remaining()) / max(sources, 1))
            var chosen: [(UInt32, [UInt32])] = []
            var seen = 0
            while let messages = try await scan.next() {
                for message in messages {
                    guard case .fingerprint(_, let id)? = subjects.parse(message.subject) else { continue }
                    seen += 1
                    guard seen % step == 0,
                        let hashes = try? message.payload.withUnsafeBytes({ bytes throws(FpindexError) in
                            try FingerprintRecord.decode(payload: bytes)
                        }).hashes,
                        hashes.count >= 8
                    else { continue }
                    chosen.append((id, hashes))
                    if chosen.count >= sources { return chosen }
                }
            }
            return chosen
        }
        let work = chosen.flatMap { id, hashes in Self.queries(from: hashes, id: id).map { (id, $0.variant, $0.query) } }
        try await withThrowingTaskGroup(of: QueryDifference?.self) { group in
            var next = 0
            func add() {
                guard next < work.count else { return }
                let (id, variant, query) = work[next]
                next += 1
                group.addTask {
                    let request = SearchRequest(query: query)
                    async let a = self.first.search(self.index, request)
                    async let b = self.second.search(self.index, request)
                    let (top, otherTop) = (try await a.first, try await b.first)
                    return top == otherTop ? nil : QueryDifference(sourceId: id, variant: variant, top: top, otherTop: otherTop)
                }
            }
            for _ in 0..<concurrency { add() }
            while let difference = try await group.next() {
                report.queries += 1
                if let difference {
                    report.differentTop += 1
                    if report.samples.count < samplesShown { report.samples.append(difference) }
                } else {
                    report.sameTop += 1
                }
                progress.update(done: report.queries, fraction: Double(report.queries) / Double(max(work.count, 1)))
                add()
            }
        }
        report.seconds = (ContinuousClock.now - started).seconds
        progress.finish(done: report.queries)
        return report
    }
}
