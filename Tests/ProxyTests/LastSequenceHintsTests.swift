import Testing

@testable import Proxy

@Suite struct LastSequenceHintsTests {
    @Test func keepsTheRecentSubjectsWithinTwoGenerations() {
        let hints = LastSequenceHints(capacity: 3)
        for n in 1...3 { hints.record("s\(n)", UInt64(n)) }
        hints.record("s1", 10)  // known: updated in place, no new generation
        #expect(hints.lastSequence(of: "s1") == 10)
        hints.record("s4", 4)  // the current generation is full: it becomes the previous one
        #expect(hints.lastSequence(of: "s2") == 2)
        #expect(hints.lastSequence(of: "s4") == 4)
        for n in 5...7 { hints.record("s\(n)", UInt64(n)) }  // and again: s1-s3 are dropped
        #expect(hints.lastSequence(of: "s1") == nil)
        #expect(hints.lastSequence(of: "s4") == 4)
        #expect(hints.lastSequence(of: "s7") == 7)
        #expect(hints.count <= 6)
    }

    @Test func aNewerRecordWinsOverThePreviousGeneration() {
        let hints = LastSequenceHints(capacity: 1)
        hints.record("a", 1)
        hints.record("b", 2)  // "a" moves to the previous generation
        hints.record("a", 0)  // purged since: the current generation says so
        #expect(hints.lastSequence(of: "a") == 0)
    }
}
