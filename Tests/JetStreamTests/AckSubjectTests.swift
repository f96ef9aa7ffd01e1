import Testing

@testable import JetStream

/// Reading the stream sequence out of JetStream ack subjects (both layouts the server uses).
@Suite("Ack subjects")
struct AckSubjectTests {
    func sequence(_ subject: String) -> UInt64? {
        subject.withCString { FetchedBatch.streamSequence(ackSubject: $0) }
    }

    @Test func bothLayoutsGiveTheStreamSequence() {
        #expect(sequence("$JS.ACK.fpindex.replica.1.42.41.1700000000000000000.0") == 42)
        #expect(sequence("$JS.ACK._.HASH.fpindex.replica.3.18446744073709551.7.1700000000000000000.12") == 18_446_744_073_709_551)
        #expect(sequence("$JS.ACK.hub.HASH.fpindex.replica.1.9.8.1700000000000000000.0.Xy7") == 9)
    }

    @Test(arguments: [
        "", "$JS.ACK.", "$JS.ACK.a.b", "_INBOX.a.b.c.d.e.f.g.h", "$JS.ACK.s.c.1.x2.3.4.5", "$JS.ACK.s.c.1..3.4.5",
        "$JS.ACK.s.c.1.99999999999999999999.3.4.5", "$JS.ACK.a.b.c.d.e.f.g.h.i.j.k.l.m",
    ])
    func anythingElseIsNil(subject: String) {
        #expect(sequence(subject) == nil)
    }
}
