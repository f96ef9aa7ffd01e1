import FpindexAPI

/// One generation of one index as readers see it: immutable, so searches run without locks
/// while a writer prepares the next snapshot.
struct IndexSnapshot: Sendable {
    let generation: UInt64
    let version: UInt64
    let metadata: [String: String]
    /// Oldest first.
    let segments: [Segment]
    let liveCount: Int

    static func empty(generation: UInt64) -> IndexSnapshot {
        IndexSnapshot(generation: generation, version: 0, metadata: [:], segments: [], liveCount: 0)
    }

    /// The segment index and position that decide `id`, searching newest first.
    func locate(_ id: UInt32) -> (segment: Int, position: Int)? {
        for s in segments.indices.reversed() {
            if let position = segments[s].docIndex(id) { return (s, position) }
        }
        return nil
    }

    /// The version that last wrote `id`, or nil when it is absent or deleted.
    func fingerprintVersion(_ id: UInt32) -> UInt64? {
        guard let (s, position) = locate(id), !segments[s].isDeletion(id) else { return nil }
        return segments[s].docVersions[position]
    }

    func isLive(_ id: UInt32) -> Bool { fingerprintVersion(id) != nil }

    /// Whether a segment newer than `segment` decides `id`.
    func isShadowed(_ id: UInt32, after segment: Int) -> Bool {
        var s = segment + 1
        while s < segments.count {
            if segments[s].contains(id) { return true }
            s += 1
        }
        return false
    }

    /// The real fpindex's `num_docs`: the sum of each segment's doc count, which counts
    /// deletions and a fingerprint decided in several segments more than once (upstream calls it
    /// approximate). Only fpindex-dev's own metrics give the exact live count; a client that
    /// needs it must not read `num_docs` as one, against either server.
    var segmentDocCount: Int { segments.reduce(0) { $0 + $1.docs.count } }

    /// The stats `GET /:index` reports, as the real fpindex computes them: min and max over
    /// every segment's ids, deletions included (a deleted or never-inserted id that a delete
    /// named widens them), and `segmentDocCount`. Bounds, not live figures. A fresh index has
    /// one (empty) segment there.
    func stats() -> IndexStats {
        var minId: UInt32 = 0
        var maxId: UInt32 = 0
        for segment in segments {
            if let first = segment.docs.first(where: { $0 != 0 }), minId == 0 || first < minId { minId = first }
            if let last = segment.docs.last, last > maxId { maxId = last }
        }
        return IndexStats(minDocId: minId, maxDocId: maxId, numSegments: UInt64(max(segments.count, 1)), numDocs: UInt32(clamping: segmentDocCount))
    }

    /// Scores fingerprints against a query, following docs/fpindex-api.md's search rules.
    ///
    /// - Parameter deadline: the instant after which the search fails with `SearchTimeout`.
    func search(_ request: SearchRequest, deadline: ContinuousClock.Instant?) throws(FpindexError) -> [SearchResult] {
        try search(
            request.query, limit: request.effectiveLimit, minScore: request.effectiveMinScore, scorePercent: request.effectiveScorePct,
            deadline: deadline)
    }

    /// The search itself, with every bound given (the HTTP API's are clamped, the legacy
    /// protocol's are not).
    func search(_ hashes: [UInt32], limit: Int, minScore requested: UInt32, scorePercent: UInt32, deadline: ContinuousClock.Instant?)
        throws(FpindexError) -> [SearchResult]
    {
        var query = hashes
        query.sort()
        var unique = 0
        for hash in query where unique == 0 || query[unique - 1] != hash {
            query[unique] = hash
            unique += 1
        }
        query.removeSubrange(unique...)
        guard !query.isEmpty else { return [] }
        let minScore = max(requested, 1)

        var results: [SearchResult] = []
        var hits: [UInt32] = []
        for s in segments.indices.reversed() {
            if let deadline, ContinuousClock.now > deadline {
                throw FpindexError(.searchTimeout, "search ran past its deadline")
            }
            let segment = segments[s]
            hits.removeAll(keepingCapacity: true)
            for hash in query {
                segment.collect(hash: hash, into: &hits)
            }
            guard !hits.isEmpty else { continue }
            hits.sort()
            var i = 0
            while i < hits.count {
                let id = hits[i]
                var j = i + 1
                while j < hits.count && hits[j] == id { j += 1 }
                let score = UInt32(j - i)
                // A fingerprint is live in exactly one segment: where no newer segment decides it.
                if score >= minScore && !isShadowed(id, after: s) {
                    results.append(SearchResult(id: id, score: score))
                }
                i = j
            }
        }
        results.sort { $0.score != $1.score ? $0.score > $1.score : $0.id < $1.id }
        if let top = results.first {
            let cutoff = UInt64(top.score) * UInt64(scorePercent) / 100
            if let end = results.firstIndex(where: { UInt64($0.score) < cutoff }) {
                results.removeSubrange(end...)
            }
        }
        if results.count > limit {
            results.removeSubrange(limit...)
        }
        return results
    }

    /// The snapshot after one write: a new segment for the touched ids, merged in as the policy says.
    /// The snapshot after one write. With `compact` false the new segment is only appended and
    /// merging is left to `compactionRange()`/`replacing(_:with:)` (done off the write path).
    func applying(changes: [UInt32: [UInt32]?], metadata: [MetadataEntry], compact: Bool = true) -> IndexSnapshot {
        applying(changes: ChangeBatch(changes), metadata: metadata, compact: compact)
    }

    func applying(changes: ChangeBatch, metadata: [MetadataEntry], compact: Bool = true) -> IndexSnapshot {
        var liveCount = self.liveCount
        for (position, id) in changes.ids.enumerated() {
            let wasLive = isLive(id)
            let isLive = !changes.isDeletion(position)
            if wasLive != isLive { liveCount += isLive ? 1 : -1 }
        }
        var merged = self.metadata
        for entry in metadata { merged[entry.key] = entry.value }
        let version = self.version + 1
        var segments = self.segments
        if !changes.isEmpty {
            segments.append(Segment(changes: changes, version: version))
            if compact { Self.compact(&segments) }
        }
        return IndexSnapshot(generation: generation, version: version, metadata: merged, segments: segments, liveCount: liveCount)
    }

    /// The suffix of segments the merge policy would merge next, if any.
    func compactionRange() -> Range<Int>? {
        Self.nextMerge(segments).map { $0..<segments.count }
    }

    /// This snapshot with `range` of its segments replaced by their merge `merged`.
    func replacing(_ range: Range<Int>, with merged: Segment) -> IndexSnapshot {
        var segments = self.segments
        segments.replaceSubrange(range, with: [merged])
        return IndexSnapshot(
            generation: generation, version: version, metadata: metadata, segments: segments, liveCount: liveCount)
    }

    /// Size-tiered merging. A segment's tier is log4 of its size. Walking back from the newest
    /// segment, the first suffix holding four segments of its largest tier is merged into one
    /// (which lands a tier higher), so a tier rarely holds more than three segments: few
    /// segments to search, and each posting is rewritten about log4(n) times (measured: 3-6
    /// rewrites for a million fingerprints, where merging pairs took 8-10).
    static func compact(_ segments: inout [Segment]) {
        while let start = nextMerge(segments) {
            let merged = Segment.merge(Array(segments[start...]), dropDeletions: start == 0)
            segments.replaceSubrange(start..., with: [merged])
        }
    }

    /// Where the suffix to merge next starts (see `compact`), nil when none is due.
    ///
    /// A merge is not done if its result would outgrow `mergeCap(total:)`: rewriting the
    /// largest segments again and again is most of the cost of a bulk load (each posting is
    /// rewritten once per tier), and a few more segments cost searches little.
    static func nextMerge(_ segments: [Segment]) -> Int? {
        guard segments.count >= 4 else { return nil }
        var highest = -1
        var countAtHighest = 0
        var suffixWeight = 0
        for position in segments.indices.reversed() {
            let tier = tier(of: segments[position])
            suffixWeight += segments[position].weight
            if tier > highest {
                highest = tier
                countAtHighest = 1
            } else if tier == highest {
                countAtHighest += 1
            }
            if countAtHighest >= 4 {
                let total = segments.reduce(0) { $0 + $1.weight }
                return suffixWeight <= mergeCap(total: total) ? position : nil
            }
        }
        return nil
    }

    /// The largest segment a merge may make: an eighth of the index, so the largest segments
    /// number about eight to thirty-two, and never less than `minimumMergeCap`.
    static func mergeCap(total: Int) -> Int { max(minimumMergeCap, total / 8) }

    /// Indexes up to this weight (about 35 000 fingerprints of 120 hashes) merge fully.
    static let minimumMergeCap = 1 << 22

    static func tier(of segment: Segment) -> Int {
        var weight = segment.weight
        var tier = 0
        while weight >= 4 {
            weight /= 4
            tier += 1
        }
        return tier
    }
}
