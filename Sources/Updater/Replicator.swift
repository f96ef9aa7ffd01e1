import FpindexAPI
import FpindexClient
import JetStream
import Logging
import Metrics
import NIOCore
import ReplicaConsumer
import ServiceLifecycle

/// Feeds one fpindex from the stream, exactly once and without gaps (docs/design.md, section 5).
///
/// The index holds its own checkpoint (`fpindex-cluster.seq` and `fpindex-cluster.stream`,
/// written in the same `_update` as the data), so after any crash the checkpoint matches the
/// data. On start, and whenever something does not add up, it re-synchronises: reads the
/// stream and every index's checkpoint, computes the resume point, and recreates the consumer
/// if it would skip data the index does not have.
public struct Replicator: Service, CustomStringConvertible {
    let configuration: UpdaterConfiguration
    let status: UpdaterStatus
    let fpindex: FpindexClient
    let logger: Logger
    let subjects: StreamSubjects

    public var description: String { "Replicator(consumer: \(configuration.consumerName))" }

    init(configuration: UpdaterConfiguration, status: UpdaterStatus, fpindex: FpindexClient, logger: Logger) {
        self.configuration = configuration
        self.status = status
        self.fpindex = fpindex
        self.logger = logger
        self.subjects = StreamSubjects(prefix: configuration.stream.subjectPrefix)
    }

    /// Something that needs a fresh synchronisation (fpindex lost an index, the stream was recreated...).
    struct ResyncNeeded: Error, CustomStringConvertible {
        var description: String
    }

    var streamName: String { configuration.stream.name }

    public func run() async throws {
        let client = try await NATSClient.connectRetrying(
            configuration.nats, logger: logger, sleep: sleepUnlessShuttingDown,
            keepTrying: { !Task.isShuttingDownGracefully && !Task.isCancelled })
        guard let client else { return }
        status.attach(client)
        var delay = Duration.milliseconds(200)
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                try await replicate(client)
                delay = .milliseconds(200)
            } catch let error as ResyncNeeded {
                logger.warning("re-synchronising", metadata: ["reason": "\(error)"])
            } catch {
                status.update { $0.lastError = "\(error)" }
                logger.warning("replication interrupted; retrying", metadata: ["error": "\(error)", "retry.delay": "\(delay)"])
                await sleepUnlessShuttingDown(delay)
                delay = min(delay * 2, .seconds(10))
            }
        }
        status.set(phase: .stopping)
        status.attach(nil)
        await client.close()
        await fpindex.shutdown()
    }

    /// One synchronisation, then batches until shutdown or until something needs a new one.
    func replicate(_ client: NATSClient) async throws {
        status.set(phase: .synchronizing)
        guard let (indexes, identity, consumer) = try await synchronize(client) else { return }
        let bound = try await client.bindPullConsumer(stream: streamName, name: configuration.consumerName)
        defer { bound.close() }
        status.set(phase: .replicating)
        var known = indexes
        var lastIdleCheckpoint = ContinuousClock.now
        var lastStreamCheck = ContinuousClock.now
        var applied = consumer.ackFloor.streamSeq
        status.update { state in
            state.indexes = known
            state.consumer = consumer
            state.appliedSeq = applied
        }
        var current = try await fetchAndPlan(bound, after: known, identity: identity)
        // Applied to fpindex, not yet acknowledged: its ack travels while the next batch is applied.
        var unacknowledged: BatchAcknowledgement?
        var lastLagRefresh = ContinuousClock.now
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            if current.batch.messages.isEmpty {
                if let pending = unacknowledged {
                    try await pending.send(using: client)
                    unacknowledged = nil
                }
                // Idle: advance idle checkpoints, notice a recreated stream or a lost consumer.
                if ContinuousClock.now - lastIdleCheckpoint > configuration.idleCheckpointInterval {
                    known = try await advanceIdleCheckpoints(known, to: applied, identity: identity)
                    lastIdleCheckpoint = ContinuousClock.now
                }
                if ContinuousClock.now - lastStreamCheck > .seconds(5) {
                    lastStreamCheck = ContinuousClock.now
                    try await checkStream(client, identity: identity)
                }
                try await refreshLag(client, applied: applied, indexes: known)
                lastLagRefresh = ContinuousClock.now
                current = try await fetchAndPlan(bound, after: known, identity: identity)
                continue
            }
            let start = ContinuousClock.now
            let (batch, plan, bodies) = (current.batch, current.plan, current.bodies)
            // Three things overlap: the next batch is fetched and planned, and the previous one
            // acknowledged, while this one is applied. Batches are still applied, and acknowledged,
            // strictly in order, and a batch is acknowledged only after fpindex applied it.
            async let following = fetchAndPlan(bound, after: plan.indexes, identity: identity)
            let previous = unacknowledged
            async let previousAcknowledged: Void = Self.acknowledge(previous, using: client)
            do {
                try await apply(plan, bodies: bodies, identity: identity, batch: batch, client: client)
                known = plan.indexes
            } catch {
                // Not applied: hand the messages back at once rather than after the ack wait.
                try? await previousAcknowledged
                await batch.negativeAcknowledge(using: client)
                await (try? await following)?.batch.negativeAcknowledge(using: client)
                throw error
            }
            applied = batch.messages.last!.streamSequence
            // Searchable now: readers waiting for this write (read-your-writes) need not wait for the ack.
            try? await client.publishCore(subject: configuration.appliedSubject, payload: Array(String(applied).utf8))
            status.appliedMessages.increment(by: batch.messages.count)
            status.appliedBatches.increment()
            status.batchDuration.recordNanoseconds((ContinuousClock.now - start).nanoseconds)
            do {
                try await previousAcknowledged
            } catch {
                // This batch is applied but not acknowledged; after the re-synchronisation it is
                // delivered again and skipped as already applied.
                await (try? await following)?.batch.negativeAcknowledge(using: client)
                throw error
            }
            if batch.messages.count < configuration.batch {
                // A short batch: caught up, nothing to overlap the ack with.
                try await batch.acknowledgeAll(using: client)
                unacknowledged = nil
            } else {
                // Only the acknowledgement is kept: the batch's messages are freed with it.
                unacknowledged = batch.detachAcknowledgement()
            }
            // Consumer info costs a round trip: while busy, refresh it a few times a second, not every batch.
            if ContinuousClock.now - lastLagRefresh > Self.busyLagRefresh || unacknowledged == nil {
                try await refreshLag(client, applied: applied, indexes: known)
                lastLagRefresh = ContinuousClock.now
            } else {
                let (appliedNow, knownNow) = (applied, known)
                status.update { state in
                    state.appliedSeq = appliedNow
                    state.indexes = knownNow
                }
            }
            current = try await following
        }
        // Shutting down: the applied batch is acknowledged, one fetched but not applied goes back at once.
        try? await unacknowledged?.send(using: client)
        await current.batch.negativeAcknowledge(using: client)
    }

    /// A fetched batch, what to do with it, and its `_update` bodies.
    struct PlannedBatch: Sendable {
        var batch: FetchedBatch
        var plan: BatchPlan
        /// The encoded body of each update operation (by position in `plan.operations`) that
        /// fits in one `_update`: encoded here, while the previous batch is being applied, so
        /// fpindex gets the next request as soon as it has answered.
        var bodies: [Int: ByteBuffer]
    }

    /// Fetches the next batch, plans it given the index states once everything before it is
    /// applied, and encodes its updates.
    func fetchAndPlan(_ consumer: PullConsumer, after indexes: [String: ReplicaIndex], identity: String) async throws
        -> PlannedBatch
    {
        let batch = try await consumer.fetch(batch: configuration.batch, timeout: configuration.batchWait)
        let plan = BatchPlan(messages: batch.messages, indexes: indexes, subjects: subjects)
        var bodies: [Int: ByteBuffer] = [:]
        for (position, operation) in plan.operations.enumerated() {
            guard case .update(_, let changes, let metadata, let checkpoint) = operation else { continue }
            let body = updateBody(changes: changes[...], metadata: metadata, checkpoint: checkpoint, identity: identity)
            if let body { bodies[position] = body }
        }
        return PlannedBatch(batch: batch, plan: plan, bodies: bodies)
    }

    /// The `_update` body for changes and metadata with the checkpoint (0: none) that goes with
    /// them, or nil when it is over the size limit and must be split.
    func updateBody(changes: ArraySlice<PackedChange>, metadata: [String: String], checkpoint: UInt64, identity: String)
        -> ByteBuffer?
    {
        guard changes.count <= 1 || changes.reduce(0, { $0 + $1.encodedSizeBound }) <= configuration.batchBytes else { return nil }
        var entries = metadata
        if checkpoint > 0 {
            entries[ReservedMetadata.sequenceKey] = String(checkpoint)
            entries[ReservedMetadata.streamKey] = identity
        }
        return ByteBuffer(bytes: UpdateRequest.packedBody(changes: changes, metadata: entries.isEmpty ? nil : entries))
    }

    static func acknowledge(_ acknowledgement: BatchAcknowledgement?, using client: NATSClient) async throws {
        try await acknowledgement?.send(using: client)
    }

    /// How often consumer info (the lag) is refreshed while batches keep coming.
    static let busyLagRefresh = Duration.milliseconds(250)

    func refreshLag(_ client: NATSClient, applied: UInt64, indexes: [String: ReplicaIndex]) async throws {
        let consumer = try await client.consumerInfo(stream: streamName, name: configuration.consumerName)
        guard let consumer else { throw ResyncNeeded(description: "consumer \(configuration.consumerName) disappeared") }
        status.update { state in
            state.consumer = consumer
            state.appliedSeq = applied
            state.streamLastSeq = max(state.streamLastSeq, applied)
            state.indexes = indexes
            state.lastError = nil
        }
    }

    func checkStream(_ client: NATSClient, identity: String) async throws {
        guard let info = try await client.streamInfo(streamName) else {
            throw ResyncNeeded(description: "stream \(streamName) is gone")
        }
        guard info.identity == identity else {
            throw ResyncNeeded(description: "stream \(streamName) was recreated (\(identity) -> \(info.identity))")
        }
        status.update { $0.streamLastSeq = info.state.lastSeq }
    }

    // MARK: Synchronisation

    /// Reads the stream and the index checkpoints, repairs what does not match, and makes sure
    /// the consumer delivers from the resume point. Nil while the consumer does not exist yet
    /// (the controller creates it) or foreign data is refused. The decisions are
    /// `SyncDecision`'s; this reads what they need and carries them out.
    func synchronize(_ client: NATSClient) async throws -> (indexes: [String: ReplicaIndex], identity: String, consumer: ConsumerInfo)? {
        guard let info = try await client.streamInfo(streamName, subjectsFilter: subjects.allLifecycle) else {
            status.update { $0.lastError = "stream \(streamName) does not exist yet" }
            throw JetStreamError(.unavailable, "stream \(streamName) does not exist yet")
        }
        let identity = info.identity
        status.update { state in
            state.streamIdentity = identity
            state.streamLastSeq = info.state.lastSeq
        }
        // 1. The indexes the stream knows, from their lifecycle records, and what fpindex holds of them.
        var known: [String: ReplicaIndex] = [:]
        for subject in (info.state.subjects ?? [:]).keys.sorted() {
            guard case .lifecycle(let index)? = subjects.parse(subject),
                let message = try await client.lastMessage(stream: streamName, subject: subject),
                let record = try? BatchPlan.decode(LifecycleRecord.self, message.payload)
            else { continue }
            known[index] = ReplicaIndex(
                exists: record.op == .create, generation: record.op == .create ? message.sequence : nil, checkpoint: 0)
        }
        var held: [String: HeldIndex] = [:]
        for (index, entry) in known where entry.exists {
            guard let info = try await fpindex.indexInfo(index) else { continue }
            held[index] = HeldIndex(
                checkpoint: UInt64(info.metadata[ReservedMetadata.sequenceKey] ?? "") ?? 0,
                stream: info.metadata[ReservedMetadata.streamKey] ?? "", generation: try await heldGeneration(index, info))
        }
        // 2. Indexes to drop or rebuild, and the resume point.
        let decision = SyncDecision.indexes(
            known: known, held: held, identity: identity, firstSeq: info.state.firstSeq, lastSeq: info.state.lastSeq,
            rebuildForeignData: configuration.rebuildForeignData)
        if let refused = decision.refused {
            logger.critical(
                "index holds foreign data; refusing to go on", metadata: ["index.name": "\(refused.index)", "reason": "\(refused.reason)"])
            status.set(phase: .refusingForeignData)
            await sleepUnlessShuttingDown(.seconds(30))
            return nil
        }
        for index in decision.drop { try await fpindex.deleteIndex(index) }
        for (index, reason) in decision.rebuild.sorted(by: { $0.key < $1.key }) {
            logger.error("rebuilding index from the stream", metadata: ["index.name": "\(index)", "reason": "\(reason)"])
            status.rebuilds.increment()
            try await fpindex.deleteIndex(index)
        }
        let resume = decision.resume

        // 3. The consumer must not be ahead of the resume point.
        var consumer = try await client.consumerInfo(stream: streamName, name: configuration.consumerName)
        let (delivered, ackFloor) = (consumer?.delivered.streamSeq, consumer?.ackFloor.streamSeq)
        let firstMessage =
            SyncDecision.needsFirstMessage(delivered: delivered, ackFloor: ackFloor, resume: resume)
            ? try await client.firstMessage(stream: streamName, filter: subjects.all, atOrAfter: resume)?.sequence : nil
        let step = SyncDecision.consumer(
            delivered: delivered, ackFloor: ackFloor, resume: resume, mayCreate: configuration.createConsumer,
            firstMessageAtOrAfterResume: firstMessage)
        var logMetadata: Logger.Metadata = [
            "consumer.name": "\(configuration.consumerName)", "consumer.ack_floor": "\(ackFloor.map(String.init) ?? "none")",
            "consumer.delivered": "\(delivered.map(String.init) ?? "none")", "stream.seq": "\(resume)",
        ]
        switch step {
        case .use:
            break
        case .waitForController:
            status.set(phase: .waitingForConsumer)
            logger.notice("waiting for consumer \(configuration.consumerName) to be created")
            await sleepUnlessShuttingDown(.seconds(2))
            return nil
        case .create(let from):
            consumer = try await createConsumer(client, from: from)
            logger.notice("created the consumer", metadata: logMetadata)
        case .recreate(let from, let reason):
            switch reason {
            case .unacknowledgedDeliveries:
                logger.notice(
                    "the consumer has unacknowledged deliveries from a previous run; recreating it from the resume point",
                    metadata: logMetadata)
            case .aheadOfTheIndex:
                logMetadata["reason"] = "a wiped or replaced index"
                logger.warning("the consumer is ahead of what the index holds; recreating it", metadata: logMetadata)
            }
            status.consumerResets.increment()
            try await client.deleteConsumer(stream: streamName, name: configuration.consumerName)
            consumer = try await createConsumer(client, from: from)
        }
        guard let consumer else { return nil }
        logger.info(
            "synchronised",
            metadata: [
                "stream.identity": "\(identity)", "stream.last_seq": "\(info.state.lastSeq)", "resume.seq": "\(resume)",
                "index.count": "\(decision.indexes.values.filter(\.exists).count)", "consumer.pending": "\(consumer.numPending)",
            ])
        return (decision.indexes, identity, consumer)
    }

    func createConsumer(_ client: NATSClient, from sequence: UInt64) async throws -> ConsumerInfo {
        try await client.createConsumer(
            stream: streamName,
            config: ReplicaConsumer.config(
                name: configuration.consumerName, subjectPrefix: subjects.prefix, batch: configuration.batch, startSequence: sequence))
    }

    // MARK: Applying

    /// Applies a plan's operations in order; retries while fpindex is unavailable (keeping the
    /// batch's ack deadline alive), skips what fpindex rejects as invalid, never acks unapplied data.
    func apply(_ plan: BatchPlan, bodies: [Int: ByteBuffer], identity: String, batch: FetchedBatch, client: NATSClient) async throws {
        for poison in plan.poison {
            status.skippedPoison.increment()
            logger.error(
                "skipping a poison message",
                metadata: ["stream.seq": "\(poison.sequence)", "stream.subject": "\(poison.subject)", "reason": "\(poison.reason)"])
        }
        if plan.alreadyApplied > 0 { status.skippedApplied.increment(by: plan.alreadyApplied) }
        if plan.orphaned > 0 { status.skippedOrphaned.increment(by: plan.orphaned) }
        for (position, operation) in plan.operations.enumerated() {
            try await withRetries(batch: batch, client: client) {
                try await perform(operation, body: bodies[position], identity: identity)
            }
        }
    }

    /// - Parameter body: the update's encoded body, when it was encoded ahead.
    func perform(_ operation: ReplicaOperation, body: ByteBuffer? = nil, identity: String) async throws {
        switch operation {
        case .createIndex(let index, let generation):
            // What fpindex holds under this name is kept only if it is this very generation of
            // this very stream (a redelivered create); an older generation, or one fed from a
            // stream that was since recreated (whose sequences start again at 1), is replaced.
            if let info = try await fpindex.indexInfo(index) {
                let held = HeldIndex(
                    checkpoint: 0, stream: info.metadata[ReservedMetadata.streamKey] ?? "",
                    generation: try await heldGeneration(index, info))
                guard SyncDecision.replacement(held, identity: identity, generation: generation) != nil else { return }
                status.rebuilds.increment()
                try await fpindex.deleteIndex(index)
            }
            guard let generation else {
                _ = try await fpindex.createIndex(index, generation: nil)
                return
            }
            do {
                _ = try await fpindex.createIndex(index, generation: generation)
            } catch FpindexCallError.rejected(409, let name)
                where name == FpindexError.Name.olderIndexAlreadyExists.rawValue
                    || name == FpindexError.Name.newerIndexAlreadyExists.rawValue
            {
                // The real fpindex numbers generations per name and never goes back: after the
                // stream was recreated its sequences are lower than what fpindex has seen. Let
                // fpindex number this one; the metadata below says which it is in the stream.
                _ = try await fpindex.createIndex(index, generation: nil)
            }
            // The stream's generation (and the checkpoint: the create record is applied) in the
            // index itself, whatever number fpindex gave it.
            try await write(
                index, changes: [], metadata: [ReservedMetadata.generationKey: String(generation)], checkpoint: generation,
                identity: identity)
        case .deleteIndex(let index):
            try await fpindex.deleteIndex(index)
        case .update(let index, let changes, let metadata, let checkpoint):
            try await write(index, changes: changes[...], metadata: metadata, checkpoint: checkpoint, identity: identity, body: body)
        }
    }

    /// The generation, in the stream's numbering (its create record's sequence), of the index
    /// fpindex holds: from the index's metadata, else (an index written before that key
    /// existed) fpindex's own generation.
    func heldGeneration(_ index: String, _ info: IndexInfo) async throws -> UInt64? {
        if let recorded = info.metadata[ReservedMetadata.generationKey].flatMap(UInt64.init) { return recorded }
        return try await fpindex.indexGeneration(index)
    }

    /// One `_update`, split when over the size limit or when fpindex rejects it, so one bad change
    /// is found and skipped; the checkpoint and metadata go with the last part.
    /// - Parameter body: these changes' body, already encoded by `updateBody`.
    func write(
        _ index: String, changes: ArraySlice<PackedChange>, metadata: [String: String], checkpoint: UInt64, identity: String,
        body: ByteBuffer? = nil
    ) async throws {
        func writeInHalves() async throws {
            let middle = changes.startIndex + changes.count / 2
            try await write(index, changes: changes[..<middle], metadata: [:], checkpoint: 0, identity: identity)
            try await write(index, changes: changes[middle...], metadata: metadata, checkpoint: checkpoint, identity: identity)
        }
        guard let body = body ?? updateBody(changes: changes, metadata: metadata, checkpoint: checkpoint, identity: identity) else {
            try await writeInHalves()
            return
        }
        do {
            try await fpindex.update(index, body: body)
        } catch FpindexCallError.indexNotFound {
            throw ResyncNeeded(description: "fpindex lost index \(index)")
        } catch FpindexCallError.rejected(let statusCode, let name) {
            if changes.count > 1 {
                try await writeInHalves()
            } else if changes.count == 1 {
                status.skippedPoison.increment()
                logger.error(
                    "fpindex rejected a change; skipping it",
                    metadata: [
                        "index.name": "\(index)", "change.id": "\(changes[changes.startIndex].fingerprintId)",
                        "error": "\(statusCode) \(name)",
                    ])
                if !metadata.isEmpty || checkpoint > 0 {
                    try await write(index, changes: [], metadata: metadata, checkpoint: checkpoint, identity: identity)
                }
            } else if !metadata.isEmpty {
                status.skippedPoison.increment()
                logger.error(
                    "fpindex rejected metadata; skipping it", metadata: ["index.name": "\(index)", "error": "\(statusCode) \(name)"])
                try await write(index, changes: [], metadata: [:], checkpoint: checkpoint, identity: identity)
            } else {
                throw FpindexCallError.unavailable("fpindex refuses the checkpoint of \(index): \(statusCode) \(name)")
            }
        }
    }

    /// Retries `body` while fpindex is unavailable, with capped exponential backoff, marking
    /// the batch in progress so JetStream does not redeliver it meanwhile.
    func withRetries(batch: FetchedBatch, client: NATSClient, _ body: () async throws -> Void) async throws {
        var delay = Duration.milliseconds(100)
        while true {
            do {
                try await body()
                return
            } catch let error as FpindexCallError {
                guard case .unavailable = error else { throw error }
                guard !Task.isCancelled, !Task.isShuttingDownGracefully else {
                    // Not applied, so not acknowledged: JetStream delivers the batch again later.
                    throw error
                }
                status.retries.increment()
                status.update { $0.lastError = "\(error)" }
                logger.warning("fpindex unavailable; retrying", metadata: ["error": "\(error)", "retry.delay": "\(delay)"])
                await batch.markInProgress(using: client)
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }

    /// Writes the applied sequence into indexes that got no data for a while, so the resume
    /// point does not fall far behind, and checks that fpindex still has every index (a
    /// restarted, empty fpindex is noticed here even when no data arrives).
    func advanceIdleCheckpoints(_ indexes: [String: ReplicaIndex], to applied: UInt64, identity: String) async throws -> [String:
        ReplicaIndex]
    {
        var result = indexes
        for (index, known) in indexes where known.exists {
            do {
                if known.checkpoint < applied {
                    try await fpindex.update(
                        index,
                        UpdateRequest(
                            changes: [], metadata: [ReservedMetadata.sequenceKey: String(applied), ReservedMetadata.streamKey: identity]))
                    result[index]?.checkpoint = applied
                } else if try await fpindex.indexGeneration(index) == nil {
                    throw ResyncNeeded(description: "fpindex lost index \(index)")
                }
            } catch FpindexCallError.indexNotFound {
                throw ResyncNeeded(description: "fpindex lost index \(index)")
            } catch let error as FpindexCallError {
                logger.debug("cannot advance an idle checkpoint yet", metadata: ["index.name": "\(index)", "error": "\(error)"])
            }
        }
        return result
    }
}

/// Sleeps, but wakes at once when graceful shutdown begins.
func sleepUnlessShuttingDown(_ duration: Duration) async {
    try? await cancelWhenGracefulShutdown { try await Task.sleep(for: duration) }
}

extension Duration {
    var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
}
