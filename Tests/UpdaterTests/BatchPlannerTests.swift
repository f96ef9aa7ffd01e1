import FpindexAPI
import JetStream
import Testing

@testable import Updater

@Suite("Batch planning")
struct BatchPlannerTests {
    let subjects = StreamSubjects(prefix: "fp")

    func message(_ sequence: UInt64, _ subject: String, _ payload: [UInt8]) -> DeliveredMessage {
        DeliveredMessage(subject: subject, streamSequence: sequence, payload: payload)
    }

    func insert(_ sequence: UInt64, _ index: String, _ id: UInt32, _ hashes: [UInt32]) -> DeliveredMessage {
        message(sequence, subjects.fingerprint(index, id: id), FingerprintRecord(hashes: hashes).payload)
    }

    @Test func oneUpdatePerIndexWithTheCheckpointOfTheBatch() {
        let plan = BatchPlan(
            messages: [
                insert(10, "a", 1, [1]), insert(11, "b", 2, [2]), message(12, subjects.fingerprint("a", id: 3), [0x80]),
                message(13, subjects.metadata("a", key: "k"), MetadataRecord(value: "v").payload), insert(14, "a", 1, [9]),
            ],
            indexes: [
                "a": ReplicaIndex(exists: true, generation: 1, checkpoint: 5),
                "b": ReplicaIndex(exists: true, generation: 2, checkpoint: 9),
            ],
            subjects: subjects)
        #expect(
            plan.operations == [
                .update(
                    "a", changes: [.insert(id: 1, hashes: PackedHashes([1])), .delete(id: 3), .insert(id: 1, hashes: PackedHashes([9]))],
                    metadata: ["k": "v"],
                    checkpoint: 14),
                .update("b", changes: [.insert(id: 2, hashes: PackedHashes([2]))], metadata: [:], checkpoint: 14),
            ])
        #expect(plan.indexes["a"]?.checkpoint == 14)
        #expect(plan.indexes["b"]?.checkpoint == 14)
    }

    @Test func redeliveredMessagesAtOrBelowTheCheckpointAreSkipped() {
        let plan = BatchPlan(
            messages: [insert(4, "a", 1, [1]), insert(5, "a", 2, [2]), insert(6, "a", 3, [3])],
            indexes: ["a": ReplicaIndex(exists: true, generation: 1, checkpoint: 5)], subjects: subjects)
        #expect(plan.alreadyApplied == 2)
        #expect(plan.operations == [.update("a", changes: [.insert(id: 3, hashes: PackedHashes([3]))], metadata: [:], checkpoint: 6)])
    }

    @Test func lifecycleRecordsSplitTheBatch() {
        let plan = BatchPlan(
            messages: [
                insert(20, "a", 1, [1]), message(21, subjects.lifecycle("a"), LifecycleRecord(.delete).payload), insert(22, "a", 2, [2]),
                message(23, subjects.lifecycle("a"), LifecycleRecord(.create).payload), insert(24, "a", 3, [3]),
            ],
            indexes: ["a": ReplicaIndex(exists: true, generation: 1, checkpoint: 19)], subjects: subjects)
        #expect(
            plan.operations == [
                .update("a", changes: [.insert(id: 1, hashes: PackedHashes([1]))], metadata: [:], checkpoint: 20),
                .deleteIndex("a"),
                .createIndex("a", generation: 23),
                .update("a", changes: [.insert(id: 3, hashes: PackedHashes([3]))], metadata: [:], checkpoint: 24),
            ])
        #expect(plan.orphaned == 1)  // id 2 was written to the deleted index
        #expect(plan.indexes["a"] == ReplicaIndex(exists: true, generation: 23, checkpoint: 24))
    }

    @Test func dataForAnUnknownIndexCreatesItFirst() {
        let plan = BatchPlan(messages: [insert(3, "new", 1, [1])], indexes: [:], subjects: subjects)
        #expect(
            plan.operations == [
                .createIndex("new", generation: nil),
                .update("new", changes: [.insert(id: 1, hashes: PackedHashes([1]))], metadata: [:], checkpoint: 3),
            ])
    }

    @Test func poisonIsSkippedAndNamed() {
        let plan = BatchPlan(
            messages: [
                message(1, "fp.a.zz", [0x80]), message(2, subjects.fingerprint("a", id: 1), [0xc1]),
                message(3, subjects.lifecycle("a"), [0x81, 0xa2, 0x6f, 0x70, 0xa1, 0x78]),
                message(4, subjects.metadata("a", key: "fpindex-cluster.seq"), MetadataRecord(value: "99").payload),
                insert(5, "a", 2, [2]), message(6, subjects.fingerprint("a", id: 3), []),
            ],
            indexes: ["a": ReplicaIndex(exists: true, generation: 1, checkpoint: 0)], subjects: subjects)
        #expect(plan.poison.map(\.sequence) == [1, 2, 3, 4])
        #expect(plan.poison[0].subject == "fp.a.zz")
        // An empty payload is a tombstone, not poison.
        #expect(
            plan.operations == [
                .update("a", changes: [.insert(id: 2, hashes: PackedHashes([2])), .delete(id: 3)], metadata: [:], checkpoint: 6)
            ])
    }

    @Test func emptyBatchPlansNothing() {
        let plan = BatchPlan(messages: [], indexes: ["a": ReplicaIndex(exists: true, generation: 1, checkpoint: 0)], subjects: subjects)
        #expect(plan.operations.isEmpty)
    }
}

extension BatchPlannerTests {
    /// A write that raced with a delete is in the stream after the delete record and before the
    /// next create record (the delete's purge only reaches below itself). A replica that
    /// replays, knowing only the index's latest create, must skip it as an earlier generation's:
    /// applied, it went to an index fpindex did not have yet, the 404 re-synchronised, and the
    /// replica met the same batch again, forever.
    @Test func dataOlderThanItsIndexGenerationIsSkipped() {
        let plan = BatchPlan(
            messages: [insert(21, "a", 1, [1]), message(22, subjects.lifecycle("a"), LifecycleRecord(.create).payload), insert(23, "a", 2, [2])],
            indexes: ["a": ReplicaIndex(exists: true, generation: 22, checkpoint: 0)],
            subjects: subjects)
        #expect(plan.orphaned == 1)
        #expect(
            plan.operations == [
                .createIndex("a", generation: 22),
                .update("a", changes: [.insert(id: 2, hashes: PackedHashes([2]))], metadata: [:], checkpoint: 23),
            ])
        #expect(plan.indexes["a"] == ReplicaIndex(exists: true, generation: 22, checkpoint: 23))
    }
}
