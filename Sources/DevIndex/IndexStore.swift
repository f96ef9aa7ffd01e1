import FpindexAPI
import Logging
import NIOPosix
import Synchronization

/// Every index of one fpindex-dev server, with optional durability.
///
/// Readers take an immutable `IndexSnapshot` and never wait. Writers are serialised, run on
/// a thread pool (log appends block on `fdatasync`), commit to the write-ahead log first and
/// publish the new snapshot after: a reply is sent only for a write that is on disk.
public final class IndexStore: Sendable {
    private struct State: ~Copyable {
        var indexes: [String: IndexSnapshot] = [:]
        /// The last generation each name had, live or deleted: as the real fpindex, generations
        /// are per index and a re-created index gets the previous one plus one.
        var lastGenerations: [String: UInt64] = [:]
        /// Indexes with a background merge running.
        var merging: Set<String> = []
    }

    /// Past this many segments a writer merges inline: background merges that fall behind a
    /// fast writer must not let searches slow down without bound. Above the usual count: up to
    /// about 32 segments at the merge cap (see `IndexSnapshot.mergeCap`) plus three a tier.
    static let inlineCompactionThreshold = 64

    private let state = Mutex(State())
    /// Serialises writers; held only on thread-pool threads, never on the cooperative pool.
    private let writeLock = Mutex(())
    private let log: Mutex<WriteAheadLog?>
    private let threadPool: NIOThreadPool
    private let logger: Logger

    /// Opens a store.
    /// - Parameters:
    ///   - directory: where the write-ahead log lives; nil keeps everything in memory only.
    ///   - threadPool: where blocking writes run.
    public init(directory: String?, threadPool: NIOThreadPool = .singleton, logger: Logger) throws {
        self.threadPool = threadPool
        self.logger = logger
        guard let directory else {
            self.log = Mutex(nil)
            return
        }
        try Self.makeDirectory(directory)
        var replayed = State()
        var recordCount = 0
        let (wal, truncated) = try WriteAheadLog.open(path: directory + "/fpindex-dev.wal") { record in
            Self.apply(record, to: &replayed)
            recordCount += 1
        }
        if truncated > 0 {
            logger.warning(
                "cut a torn record off the end of the log (an unfinished write, never acknowledged)",
                metadata: ["log.path": "\(wal.path)", "log.truncated_bytes": "\(truncated)"])
        }
        let restored = replayed.indexes
        let lastGenerations = replayed.lastGenerations
        state.withLock {
            $0.indexes = restored
            $0.lastGenerations = lastGenerations
        }
        self.log = Mutex(wal)
        logger.info(
            "restored indexes from the log",
            metadata: ["log.path": "\(wal.path)", "log.records": "\(recordCount)", "index.count": "\(restored.count)"])
    }

    private static func makeDirectory(_ path: String) throws {
        var isDirectory = false
        var components: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: false) {
            components.append(part)
            let prefix = components.joined(separator: "/")
            if prefix.isEmpty { continue }
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw WriteAheadLog.IOError(description: "cannot create \(prefix): \(String(cString: strerror(errno)))")
            }
        }
        var info = stat()
        isDirectory = stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
        guard isDirectory else { throw WriteAheadLog.IOError(description: "\(path) is not a directory") }
    }

    /// Replays one committed record. Records were validated before they were written.
    private static func apply(_ record: LogRecord, to state: inout State) {
        switch record {
        case .createIndex(let name, let generation):
            state.indexes[name] = .empty(generation: generation)
            state.lastGenerations[name] = max(state.lastGenerations[name] ?? 0, generation)
        case .deleteIndex(let name):
            state.indexes[name] = nil
        case .update(let name, let version, let changes, let metadata):
            guard let snapshot = state.indexes[name] else { return }
            let changes = ChangeBatch(FlatUpdateRequest(UpdateRequest(changes: changes)))
            let entries = metadata.map { MetadataEntry(key: $0.key, value: $0.value) }
            let next = snapshot.applying(changes: changes, metadata: entries)
            state.indexes[name] = IndexSnapshot(
                generation: next.generation, version: version, metadata: next.metadata, segments: next.segments,
                liveCount: next.liveCount)
        }
    }

    // MARK: Reads

    /// The current snapshot of an index, or nil if it does not exist.
    public func snapshot(_ name: String) -> IndexSnapshotView? {
        state.withLock { $0.indexes[name] }.map(IndexSnapshotView.init)
    }

    func indexSnapshot(_ name: String) throws(FpindexError) -> IndexSnapshot {
        guard let snapshot = state.withLock({ $0.indexes[name] }) else {
            throw FpindexError(.indexNotFound, "index \(name) does not exist")
        }
        return snapshot
    }

    /// Each index's `num_docs` (as the real fpindex's `fpindex_docs` reports it) and version, for metrics.
    func indexSizes() -> [(name: String, docs: Int, version: UInt64)] {
        state.withLock { state in state.indexes.map { (name: $0.key, docs: $0.value.segmentDocCount, version: $0.value.version) } }
    }

    /// Totals over all indexes, for metrics.
    public func totals() -> (indexes: Int, fingerprints: Int, segments: Int) {
        state.withLock { state in
            state.indexes.values.reduce((state.indexes.count, 0, 0)) { ($0.0, $0.1 + $1.liveCount, $0.2 + $1.segments.count) }
        }
    }

    // MARK: Writes

    /// Runs one write serially on the thread pool.
    private func write<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await threadPool.runIfActive { [self] in
            try writeLock.withLock { _ in try body() }
        }
    }

    /// Merges `name`'s segments on the thread pool until the merge policy is satisfied. The
    /// merged segment replaces its inputs only if they are still there, unchanged: writers
    /// only append, so a prefix of segments stays put unless the index was deleted, recreated
    /// or merged inline meanwhile, in which case the work is dropped.
    private func mergeInBackground(_ name: String) {
        threadPool.submit { [self] workState in
            defer { state.withLock { _ = $0.merging.remove(name) } }
            guard case .active = workState else { return }
            while let snapshot = state.withLock({ $0.indexes[name] }), let range = snapshot.compactionRange() {
                let inputs = Array(snapshot.segments[range])
                let merged = Segment.merge(inputs, dropDeletions: range.lowerBound == 0)
                let replaced = writeLock.withLock { _ in
                    state.withLock { state -> Bool in
                        guard let current = state.indexes[name], current.generation == snapshot.generation,
                            current.segments.count >= range.upperBound,
                            zip(current.segments[range], inputs).allSatisfy({ $0 === $1 })
                        else { return false }
                        state.indexes[name] = current.replacing(range, with: merged)
                        return true
                    }
                }
                if !replaced { return }
            }
        }
    }

    private func commit(_ record: LogRecord) throws {
        try log.withLock { wal in
            guard let wal else { return }
            do {
                try wal.append(record)
            } catch {
                logger.error("cannot write the log", metadata: ["error": "\(error)"])
                throw FpindexError(.internalError, "log write failed: \(error)")
            }
        }
    }

    /// `PUT /:index`: creates the index if it does not exist (idempotent). Generations are
    /// numbered per index as the real fpindex numbers them: 1 for a new name, the name's last
    /// generation plus one after a delete; a caller's generation must be newer than the name's
    /// last one (`OlderIndexAlreadyExists`), and on a live index equal to its own (older:
    /// `OlderIndexAlreadyExists`, newer: `NewerIndexAlreadyExists`).
    public func createIndex(_ name: String, _ request: CreateIndexRequest) async throws -> CreateIndexResponse {
        guard FpindexNames.isValidIndexName(name) else { throw FpindexError(.invalidIndexName, "bad index name") }
        return try await write { [self] in
            let (existing, last) = state.withLock { ($0.indexes[name], $0.lastGenerations[name] ?? 0) }
            if let existing {
                if request.expectDoesNotExist == true {
                    throw FpindexError(.indexAlreadyExists, "index \(name) exists")
                }
                if let wanted = request.generation, wanted != existing.generation {
                    throw FpindexError(
                        wanted < existing.generation ? .olderIndexAlreadyExists : .newerIndexAlreadyExists,
                        "index \(name) is generation \(existing.generation), not \(wanted)")
                }
                return CreateIndexResponse(version: existing.version, ready: true, generation: existing.generation)
            }
            if let wanted = request.generation, wanted <= last {
                throw FpindexError(.olderIndexAlreadyExists, "index \(name) had generation \(last), not older than \(wanted)")
            }
            let generation = request.generation ?? last + 1
            try commit(.createIndex(name: name, generation: generation))
            state.withLock {
                $0.indexes[name] = .empty(generation: generation)
                $0.lastGenerations[name] = generation
            }
            logger.info("created index", metadata: ["index.name": "\(name)", "index.generation": "\(generation)"])
            return CreateIndexResponse(version: 0, ready: true, generation: generation)
        }
    }

    /// `DELETE /:index`.
    public func deleteIndex(_ name: String, _ request: DeleteIndexRequest) async throws -> DeleteIndexResponse {
        guard FpindexNames.isValidIndexName(name) else {
            if request.expectExists == true { throw FpindexError(.indexNotFound, "bad index name") }
            return DeleteIndexResponse(deleted: false)
        }
        return try await write { [self] in
            guard state.withLock({ $0.indexes[name] }) != nil else {
                if request.expectExists == true { throw FpindexError(.indexNotFound, "index \(name) does not exist") }
                return DeleteIndexResponse(deleted: false)
            }
            try commit(.deleteIndex(name: name))
            state.withLock { $0.indexes[name] = nil }
            logger.info("deleted index", metadata: ["index.name": "\(name)"])
            return DeleteIndexResponse(deleted: true)
        }
    }

    /// The single-fingerprint writes: one atomic write that adds 1 to the version.
    public func update(_ name: String, _ request: UpdateRequest) async throws -> UInt64 {
        try await update(name, FlatUpdateRequest(request))
    }

    /// `POST /:index/_update`: one atomic write that adds 1 to the version.
    /// - Returns: the new version.
    public func update(_ name: String, _ request: FlatUpdateRequest) async throws -> UInt64 {
        // Collapse the changes (last change per id wins) before taking the write lock.
        let changes = ChangeBatch(request)
        // The log record holds the collapsed changes; without a log there is nothing to write.
        let finalList = log.withLock({ $0 != nil }) ? changes.changes : []
        let entries = request.metadataEntries
        let metadataMap = Dictionary(entries.map { ($0.key, $0.value) }) { $1 }

        return try await write { [self] in
            let current = try indexSnapshot(name)
            if let expected = request.expectedVersion, expected != current.version {
                throw FpindexError(.versionMismatch, "expected version \(expected), index is at \(current.version)")
            }
            let version = current.version + 1
            try commit(.update(name: name, version: version, changes: finalList, metadata: metadataMap))
            // Merging is done off the write path (the write returns sooner and the merge uses
            // another core), unless segments have piled up.
            let inline = current.segments.count >= Self.inlineCompactionThreshold
            let next = current.applying(changes: changes, metadata: entries, compact: inline)
            let startMerge = state.withLock { state -> Bool in
                // The index cannot have changed: writers are serialised.
                state.indexes[name] = next
                guard next.compactionRange() != nil, !state.merging.contains(name) else { return false }
                state.merging.insert(name)
                return true
            }
            if startMerge { mergeInBackground(name) }
            return version
        }
    }

    /// `POST /:index/_search`.
    public func search(_ name: String, _ request: SearchRequest) throws(FpindexError) -> SearchResponse {
        let snapshot = try indexSnapshot(name)
        let deadline = request.effectiveTimeoutMilliseconds.map { ContinuousClock.now + .milliseconds(Int($0)) }
        return SearchResponse(results: try snapshot.search(request, deadline: deadline))
    }

    /// A search from the legacy protocol: its session's bounds as they are, `min_score` 1.
    public func search(_ name: String, hashes: [UInt32], limit: UInt32, scorePercent: UInt32, timeoutMilliseconds: UInt32)
        throws(FpindexError) -> [SearchResult]
    {
        let snapshot = try indexSnapshot(name)
        let deadline = timeoutMilliseconds == 0 ? nil : ContinuousClock.now + .milliseconds(Int(timeoutMilliseconds))
        return try snapshot.search(hashes, limit: Int(limit), minScore: 1, scorePercent: scorePercent, deadline: deadline)
    }
}

/// What the HTTP layer may read of an index snapshot.
public struct IndexSnapshotView: Sendable {
    let snapshot: IndexSnapshot

    public var generation: UInt64 { snapshot.generation }
    public var version: UInt64 { snapshot.version }
    public var metadata: [String: String] { snapshot.metadata }
    public var fingerprintCount: Int { snapshot.liveCount }
    public func stats() -> IndexStats { snapshot.stats() }
    public func fingerprintVersion(_ id: UInt32) -> UInt64? { snapshot.fingerprintVersion(id) }
}
