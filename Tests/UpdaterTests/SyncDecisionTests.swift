import Testing

@testable import Updater

/// The updater's start-up decisions, as tables: what fpindex holds against what the stream
/// says, and the consumer against the resume point.
@Suite("Synchronisation decisions")
struct SyncDecisionTests {
    static let identity = "stream-A"

    static func live(_ generation: UInt64) -> ReplicaIndex { ReplicaIndex(exists: true, generation: generation, checkpoint: 0) }
    static let deleted = ReplicaIndex(exists: false, generation: nil, checkpoint: 0)
    static func held(_ checkpoint: UInt64, stream: String = identity, generation: UInt64?) -> HeldIndex {
        HeldIndex(checkpoint: checkpoint, stream: stream, generation: generation)
    }

    struct IndexCase: Sendable, CustomTestStringConvertible {
        var name: String
        var held: HeldIndex
        var rebuildForeignData = true
        /// nil: continued from its checkpoint.
        var rebuildReason: String?
        var refused = false
        var testDescription: String { name }
    }

    /// One index `a` of generation 5 in a stream whose sequences run 1...100.
    @Test(arguments: [
        IndexCase(name: "same stream and generation: continued", held: held(60, generation: 5)),
        IndexCase(name: "never checkpointed (a new index): continued", held: held(0, stream: "", generation: 5)),
        IndexCase(
            name: "another stream's data: rebuilt", held: held(60, stream: "stream-B", generation: 5),
            rebuildReason: "it was fed from another stream (stream-B)"),
        IndexCase(
            name: "another stream's data, rebuilding refused: stops", held: held(60, stream: "stream-B", generation: 5),
            rebuildForeignData: false, rebuildReason: nil, refused: true),
        IndexCase(
            name: "checkpoint ahead of the stream: rebuilt", held: held(150, generation: 5),
            rebuildReason: "its checkpoint 150 is ahead of the stream (last sequence 100)"),
        IndexCase(
            name: "checkpoint ahead, rebuilding refused: stops (the stream lost what the index holds)", held: held(150, generation: 5),
            rebuildForeignData: false, rebuildReason: nil, refused: true),
        IndexCase(
            name: "an older generation, rebuilding refused: rebuilt all the same (deleted and created again)",
            held: held(4, generation: 2), rebuildForeignData: false, rebuildReason: "it is generation 2, the stream's is 5"),
        IndexCase(
            name: "an older generation: rebuilt", held: held(4, generation: 2),
            rebuildReason: "it is generation 2, the stream's is 5"),
        IndexCase(
            name: "unknown generation: rebuilt", held: held(60, generation: nil),
            rebuildReason: "it is generation unknown, the stream's is 5"),
    ])
    func heldIndexAgainstTheStream(_ example: IndexCase) {
        let decision = SyncDecision.indexes(
            known: ["a": Self.live(5)], held: ["a": example.held], identity: Self.identity, firstSeq: 1, lastSeq: 100,
            rebuildForeignData: example.rebuildForeignData)
        if example.refused {
            #expect(decision.refused?.index == "a")
            #expect(decision.rebuild.isEmpty)
            return
        }
        #expect(decision.refused == nil)
        #expect(decision.rebuild["a"] == example.rebuildReason)
        let continued = example.rebuildReason == nil ? example.held.checkpoint : 0
        #expect(decision.indexes["a"]?.checkpoint == continued)
        #expect(decision.resume == continued + 1)
    }

    @Test func theResumePointIsAfterTheOldestCheckpoint() {
        let decision = SyncDecision.indexes(
            known: ["a": Self.live(5), "b": Self.live(7), "gone": Self.deleted, "missing": Self.live(9)],
            held: ["a": Self.held(80, generation: 5), "b": Self.held(40, generation: 7)],
            identity: Self.identity, firstSeq: 1, lastSeq: 100, rebuildForeignData: true)
        // "missing" is not in fpindex: it is replayed from its create record, so from the start.
        #expect(decision.resume == 1)
        #expect(decision.drop == ["gone"])
        #expect(decision.indexes["a"]?.checkpoint == 80)
        #expect(decision.indexes["b"]?.checkpoint == 40)
        #expect(decision.indexes["missing"]?.checkpoint == 0)

        let noneMissing = SyncDecision.indexes(
            known: ["a": Self.live(5), "b": Self.live(7)],
            held: ["a": Self.held(80, generation: 5), "b": Self.held(40, generation: 7)],
            identity: Self.identity, firstSeq: 1, lastSeq: 100, rebuildForeignData: true)
        #expect(noneMissing.resume == 41)
    }

    @Test func theResumePointIsNeverBeforeTheStreamsFirstMessage() {
        let decision = SyncDecision.indexes(
            known: ["a": Self.live(5)], held: [:], identity: Self.identity, firstSeq: 30, lastSeq: 100, rebuildForeignData: true)
        #expect(decision.resume == 30)
        let empty = SyncDecision.indexes(known: [:], held: [:], identity: Self.identity, firstSeq: 0, lastSeq: 0, rebuildForeignData: true)
        #expect(empty.resume == 1)
        let onlyDeleted = SyncDecision.indexes(
            known: ["gone": Self.deleted], held: [:], identity: Self.identity, firstSeq: 1, lastSeq: 100, rebuildForeignData: true)
        #expect(onlyDeleted.resume == 101)
    }

    /// Applying a create record uses the same rule, without the stream's last sequence.
    @Test func aRedeliveredCreateKeepsOnlyThisGenerationOfThisStream() {
        #expect(SyncDecision.replacement(Self.held(60, generation: 5), identity: Self.identity, generation: 5) == nil)
        #expect(SyncDecision.replacement(Self.held(60, stream: "", generation: 5), identity: Self.identity, generation: 5) == nil)
        #expect(SyncDecision.replacement(Self.held(60, generation: 3), identity: Self.identity, generation: 5) != nil)
        #expect(SyncDecision.replacement(Self.held(60, stream: "old", generation: 5), identity: Self.identity, generation: 5) != nil)
        // A create without a generation keeps whatever this stream wrote.
        #expect(SyncDecision.replacement(Self.held(60, generation: 3), identity: Self.identity, generation: nil) == nil)
        #expect(SyncDecision.replacement(Self.held(999, generation: 5), identity: Self.identity, generation: 5) == nil)
    }

    struct ConsumerCase: Sendable, CustomTestStringConvertible {
        var name: String
        var delivered: UInt64?
        var ackFloor: UInt64?
        var mayCreate = false
        var firstMessage: UInt64?
        var step: SyncDecision.ConsumerStep
        var testDescription: String { name }
    }

    /// The resume point is 50 in every case.
    @Test(arguments: [
        ConsumerCase(name: "missing, the controller creates it", step: .waitForController),
        ConsumerCase(name: "missing, standalone", mayCreate: true, step: .create(from: 50)),
        ConsumerCase(name: "behind the resume point", delivered: 30, ackFloor: 30, step: .use),
        ConsumerCase(
            name: "unacknowledged deliveries of a previous run", delivered: 45, ackFloor: 30,
            step: .recreate(from: 50, reason: .unacknowledgedDeliveries)),
        ConsumerCase(
            name: "acknowledged data the index lacks", delivered: 70, ackFloor: 70, firstMessage: 55,
            step: .recreate(from: 50, reason: .aheadOfTheIndex)),
        ConsumerCase(
            name: "ahead, but only over messages of other consumers' subjects (none from 50 on)", delivered: 70, ackFloor: 70,
            firstMessage: nil, step: .use),
        ConsumerCase(name: "ahead, but the next message is past its floor", delivered: 70, ackFloor: 70, firstMessage: 71, step: .use),
    ])
    func consumerAgainstTheResumePoint(_ example: ConsumerCase) {
        let step = SyncDecision.consumer(
            delivered: example.delivered, ackFloor: example.ackFloor, resume: 50, mayCreate: example.mayCreate,
            firstMessageAtOrAfterResume: example.firstMessage)
        #expect(step == example.step)
    }

    @Test func theFirstMessageIsReadOnlyWhenItDecides() {
        #expect(!SyncDecision.needsFirstMessage(delivered: nil, ackFloor: nil, resume: 50))
        #expect(!SyncDecision.needsFirstMessage(delivered: 45, ackFloor: 30, resume: 10))
        #expect(!SyncDecision.needsFirstMessage(delivered: 30, ackFloor: 30, resume: 50))
        #expect(SyncDecision.needsFirstMessage(delivered: 50, ackFloor: 50, resume: 50))
    }
}
