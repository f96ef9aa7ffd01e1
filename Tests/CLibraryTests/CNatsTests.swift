import CNats
import Foundation
import TestSupport
import Testing

/// cnats against a real nats-server: connect, create a JetStream stream, publish, read the state back.
@Suite("cnats (libnats)", .timeLimit(.minutes(2)))
struct CNatsTests {
    @Test func publishesToJetStream() async throws {
        try await withNATSServer { server in
            // cnats blocks its calling thread: keep it off the cooperative pool.
            let result: Result<(sequences: [UInt64], messages: UInt64, lastSeq: UInt64), TestFailure> = await withCheckedContinuation {
                continuation in
                Thread.detachNewThread {
                    continuation.resume(returning: Self.publish(url: server.url))
                }
            }
            let state = try result.get()
            // Subject "t.a" is written twice; max_msgs_per_subject 1 keeps only the last one.
            #expect(state.sequences == [1, 2, 3])
            #expect(state.messages == 2)
            #expect(state.lastSeq == 3)
        }
    }

    static func check(_ status: natsStatus, _ what: String) throws(TestFailure) {
        guard status == NATS_OK else {
            throw TestFailure("\(what): \(String(cString: natsStatus_GetText(status)))")
        }
    }

    static func publish(url: String) -> Result<(sequences: [UInt64], messages: UInt64, lastSeq: UInt64), TestFailure> {
        Result { () throws(TestFailure) in
            var connection: OpaquePointer?
            try check(natsConnection_ConnectTo(&connection, url), "connect")
            defer { natsConnection_Destroy(connection) }
            var js: OpaquePointer?
            try check(natsConnection_JetStream(&js, connection, nil), "jetstream context")
            defer { jsCtx_Destroy(js) }

            var config = jsStreamConfig()
            try check(jsStreamConfig_Init(&config), "config init")
            let name = strdup("CTEST")!
            let subject = strdup("t.>")!
            defer {
                free(name)
                free(subject)
            }
            var subjects: [UnsafePointer<CChar>?] = [UnsafePointer(subject)]
            var errorCode = jsErrCode(0)
            var info: UnsafeMutablePointer<jsStreamInfo>?
            try subjects.withUnsafeMutableBufferPointer { buffer throws(TestFailure) in
                config.Name = UnsafePointer(name)
                config.Subjects = buffer.baseAddress
                config.SubjectsLen = 1
                config.Storage = js_FileStorage
                config.MaxMsgsPerSubject = 1
                try check(js_AddStream(&info, js, &config, nil, &errorCode), "add stream (jerr \(errorCode.rawValue))")
            }
            jsStreamInfo_Destroy(info)

            var sequences: [UInt64] = []
            for (subject, payload) in [("t.a", "one"), ("t.b", "two"), ("t.a", "three")] {
                var ack: UnsafeMutablePointer<jsPubAck>?
                try check(js_Publish(&ack, js, subject, payload, Int32(payload.utf8.count), nil, &errorCode), "publish")
                sequences.append(ack!.pointee.Sequence)
                jsPubAck_Destroy(ack)
            }

            var state: UnsafeMutablePointer<jsStreamInfo>?
            try check(js_GetStreamInfo(&state, js, "CTEST", nil, &errorCode), "stream info")
            defer { jsStreamInfo_Destroy(state) }
            return (sequences, state!.pointee.State.Msgs, state!.pointee.State.LastSeq)
        }
    }
}
