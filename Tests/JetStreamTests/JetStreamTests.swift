import Foundation
import FpindexAPI
import JetStream
import Logging
import Synchronization
import TestSupport
import Testing

func connect(_ server: NATSServer, window: Int = 8192) async throws -> NATSClient {
    try await NATSClient.connect(
        NATSConfiguration(servers: [server.url], publishWindow: window, publishTimeout: .seconds(5)), logger: Logger(label: "test"))
}

@Suite("JetStream against a real nats-server", .timeLimit(.minutes(2)))
struct JetStreamTests {
    @Test func connectsAndReportsTheServerVersion() async throws {
        try await withNATSServer { server in
            let client = try await connect(server)
            #expect(client.serverVersion.hasPrefix("2.15"))
            #expect(client.state == .connected)
            await client.close()
            #expect(client.state == .closed)
        }
    }

    /// A stopping proxy or updater whose NATS is gone (a namespace deleted at once, a node
    /// lost) closes at once; it used to wait out the publish, drain and consumer-delete
    /// timeouts (5 s each) and was killed at the end of its grace period.
    @Test func closingWithoutAServerDoesNotWaitForADrain() async throws {
        try await withNATSServer { server in
            let client = try await connect(server)
            try await client.ensureStream(StreamSettings())
            // An ordered consumer, as the proxy follows the lifecycle records with.
            let ordered = try await client.subscribeOrdered(stream: "fpindex", filter: "fpindex.>") { _, _ in }
            await server.kill()
            try await eventually("the client to notice the server is gone") { client.state == .reconnecting ? true : nil }
            let started = ContinuousClock.now
            ordered.cancel()
            await client.close()
            #expect(client.state == .closed)
            // Generous: the drain and publish waits this replaces are 5 s each.
            #expect(ContinuousClock.now - started < .seconds(3), "close took \(ContinuousClock.now - started)")
        }
    }

    @Test func createsVerifiesAndRepairsTheStream() async throws {
        try await withNATSServer { server in
            let client = try await connect(server)
            let settings = StreamSettings(name: "fp", subjectPrefix: "fp")
            let created = try await client.ensureStream(settings)
            #expect(created.config.maxMsgsPerSubject == 1)
            #expect(created.config.subjects == ["fp.>"])
            #expect(created.config.allowDirect)
            // Idempotent, and the identity stays.
            let again = try await client.ensureStream(settings)
            #expect(again.identity == created.identity)
            // Drift is repaired: change the duplicate window and ensure again.
            var other = settings
            other.duplicateWindow = .seconds(30)
            #expect(try await client.ensureStream(other).config.duplicateWindow == 30_000_000_000)
            // Storage cannot change in place: the field is named.
            other.memoryStorage = true
            await #expect {
                try await client.ensureStream(other)
            } throws: { error in
                (error as? JetStreamError)?.kind == .configurationMismatch(field: "storage")
            }
            await client.close()
        }
    }

    @Test func publishesManyInFlightAndKeepsTheLastPerSubject() async throws {
        try await withNATSServer { server in
            let client = try await connect(server, window: 64)
            try await client.ensureStream(StreamSettings(name: "fp", subjectPrefix: "fp"))
            let subjects = StreamSubjects(prefix: "fp")
            let sequences = try await withThrowingTaskGroup(of: UInt64.self) { group in
                for n in 0..<500 {
                    group.addTask {
                        let record = FingerprintRecord(hashes: [UInt32(n)])
                        return try await client.publish(
                            subject: subjects.fingerprint("i", id: UInt32(n % 100 + 1)), payload: record.payload
                        )
                        .sequence
                    }
                }
                var all: [UInt64] = []
                for try await sequence in group { all.append(sequence) }
                return all
            }
            #expect(Set(sequences) == Set(1...500))
            let info = try #require(try await client.streamInfo("fp"))
            #expect(info.state.messages == 100)
            #expect(info.state.lastSeq == 500)
            #expect(client.publishesInFlight == 0)

            let last = try #require(try await client.lastMessage(stream: "fp", subject: subjects.fingerprint("i", id: 7)))
            let record = try last.payload.withUnsafeBytes { buffer throws(FpindexError) in try FingerprintRecord.decode(payload: buffer) }
            #expect(record.hashes.map { $0[0] % 100 } == 6)  // the last of n = 6, 106, ..., 406
            #expect(try await client.lastMessage(stream: "fp", subject: subjects.fingerprint("i", id: 999)) == nil)
            await client.close()
        }
    }

    @Test func aBatchReportsEachOutcomeAndWhereARefusedSubjectIs() async throws {
        try await withNATSServer { server in
            let client = try await connect(server)
            try await client.ensureStream(StreamSettings(name: "fp", subjectPrefix: "fp"))
            let subjects = StreamSubjects(prefix: "fp")
            let (one, two, three) = (subjects.fingerprint("a", id: 1), subjects.fingerprint("a", id: 2), subjects.fingerprint("a", id: 3))
            let first = try await client.publish(subject: one, payload: [0x80])
            let results = await client.publishBatch([
                BatchMessage(subject: one, payload: [0x80], expectedLastSubjectSequence: first.sequence),  // as it is: stored
                BatchMessage(subject: two, payload: [0x80], expectedLastSubjectSequence: 0),  // empty, as expected: stored
                BatchMessage(subject: three, payload: [0x80], expectedLastSubjectSequence: 7),  // empty, 7 expected: refused
                BatchMessage(subject: one, payload: [0x80], expectedLastSubjectSequence: first.sequence),  // moved: refused
            ])
            #expect(results.count == 4)
            let stored = try results[0].get().sequence
            #expect(try results[1].get().sequence == stored + 1)
            for (index, actual) in [(2, UInt64(0)), (3, stored)] {
                guard case .failure(let error) = results[index] else {
                    Issue.record("message \(index) was stored")
                    continue
                }
                #expect(error.isWrongLastSequence)
                #expect(error.actualLastSequence == actual)
            }
            #expect(try await client.streamInfo("fp")?.state.lastSeq == stored + 1)
            #expect(client.publishesInFlight == 0)
            await client.close()
        }
    }

    @Test func purgeBelowASequenceKeepsLaterWrites() async throws {
        try await withNATSServer { server in
            let client = try await connect(server)
            try await client.ensureStream(StreamSettings(name: "fp", subjectPrefix: "fp"))
            let subjects = StreamSubjects(prefix: "fp")
            _ = try await client.publish(subject: subjects.fingerprint("a", id: 1), payload: [0x80])
            _ = try await client.publish(subject: subjects.fingerprint("a", id: 2), payload: [0x80])
            let delete = try await client.publish(subject: subjects.lifecycle("a"), payload: LifecycleRecord(.delete).payload)
            _ = try await client.publish(subject: subjects.fingerprint("a", id: 3), payload: [0x80])
            let purged = try await client.purge(stream: "fp", filter: subjects.indexContents("a"), upTo: delete.sequence)
            #expect(purged == 2)
            #expect(try await client.lastMessage(stream: "fp", subject: subjects.fingerprint("a", id: 3)) != nil)
            #expect(try await client.lastMessage(stream: "fp", subject: subjects.lifecycle("a")) != nil)
            await client.close()
        }
    }

    @Test func orderedSubscriptionSeesLastPerSubjectThenNewOnes() async throws {
        try await withNATSServer { server in
            let client = try await connect(server)
            try await client.ensureStream(StreamSettings(name: "fp", subjectPrefix: "fp"))
            let subjects = StreamSubjects(prefix: "fp")
            _ = try await client.publish(subject: subjects.lifecycle("a"), payload: LifecycleRecord(.create).payload)
            _ = try await client.publish(subject: subjects.lifecycle("b"), payload: LifecycleRecord(.create).payload)
            _ = try await client.publish(subject: subjects.lifecycle("a"), payload: LifecycleRecord(.delete).payload)
            _ = try await client.publish(subject: subjects.fingerprint("a", id: 1), payload: [0x80])
            let seen = Seen()
            let subscription = try await client.subscribeOrdered(stream: "fp", filter: subjects.allLifecycle) { message, _ in
                seen.add(message)
            }
            try await eventually("the last record of each index") { seen.messages.count == 2 ? true : nil }
            #expect(seen.messages.map(\.sequence) == [2, 3])
            _ = try await client.publish(subject: subjects.lifecycle("c"), payload: LifecycleRecord(.create).payload)
            try await eventually("the new record") { seen.messages.count == 3 ? true : nil }
            #expect(seen.messages.last?.subject == "fp.c")
            subscription.cancel()
            await client.close()
        }
    }

    @Test func refusesToConnectWhenNothingListens() async throws {
        let port = try FreePort.find()
        await #expect(throws: JetStreamError.self) {
            _ = try await NATSClient.connect(
                NATSConfiguration(servers: ["nats://127.0.0.1:\(port)"], timeout: .seconds(1)), logger: Logger(label: "test"))
        }
    }
}

final class Seen: Sendable {
    private let storage = Mutex<[StoredMessage]>([])
    var messages: [StoredMessage] { storage.withLock { $0 } }
    func add(_ message: StoredMessage) { storage.withLock { $0.append(message) } }
}

@Suite("Durable pull consumers", .timeLimit(.minutes(2)))
struct PullConsumerTests {
    /// A client, and stream "fp" holding fingerprints 1...10 of index "i" (sequences 1...10).
    static func streamOfTenFingerprints(_ server: NATSServer) async throws -> (NATSClient, StreamSubjects) {
        let client = try await connect(server)
        try await client.ensureStream(StreamSettings(name: "fp", subjectPrefix: "fp"))
        let subjects = StreamSubjects(prefix: "fp")
        for id in 1...10 {
            _ = try await client.publish(
                subject: subjects.fingerprint("i", id: UInt32(id)), payload: FingerprintRecord(hashes: [UInt32(id)]).payload)
        }
        return (client, subjects)
    }

    @Test func fetchesBatchesAndAcknowledgesThemAtOnce() async throws {
        try await withNATSServer { server in
            let (client, subjects) = try await Self.streamOfTenFingerprints(server)
            let config = ConsumerConfig.batched("replica-0", batch: 4)
            let created = try await client.createConsumer(stream: "fp", config: config)
            #expect(created.config.maxAckPending >= 4)
            #expect(created.config.ackPolicy == "all")
            #expect(created.numPending == 10)

            let consumer = try await client.bindPullConsumer(stream: "fp", name: "replica-0")
            let first = try await consumer.fetch(batch: 4, timeout: .seconds(2))
            #expect(first.messages.map(\.streamSequence) == [1, 2, 3, 4])
            #expect(first.messages[0].subject == subjects.fingerprint("i", id: 1))
            try await first.acknowledgeAll(using: client)
            let afterAck = try #require(try await client.consumerInfo(stream: "fp", name: "replica-0"))
            #expect(afterAck.ackFloor.streamSeq == 4)
            #expect(afterAck.numAckPending == 0)
            #expect(afterAck.lag == 6)

            let rest = try await consumer.fetch(batch: 100, timeout: .seconds(2))
            #expect(rest.messages.count == 6)
            await rest.markInProgress(using: client)
            try await rest.acknowledgeAll(using: client)
            let idle = try await consumer.fetch(batch: 10, timeout: .milliseconds(200))
            #expect(idle.messages.isEmpty)
            #expect(try await client.consumerInfo(stream: "fp", name: "replica-0")?.lag == 0)

            // A consumer re-created from a start sequence replays from there.
            consumer.close()
            #expect(try await client.deleteConsumer(stream: "fp", name: "replica-0"))
            #expect(try await client.consumerInfo(stream: "fp", name: "replica-0") == nil)
            let replay = try await client.createConsumer(
                stream: "fp", config: ConsumerConfig.batched("replica-0", startSequence: 8, batch: 4))
            #expect(replay.numPending == 3)
            await client.close()
        }
    }

    /// A batch handed back is delivered again at once (not after the 60 s ack wait); a detached
    /// acknowledgement still acknowledges the whole batch after the batch is gone. JetStream
    /// guarantees the redelivery, not its order against pulls already queued: the handed-back
    /// messages may come mixed with newer ones, over several fetches.
    @Test func aBatchHandedBackComesAgainAndADetachedAckCoversItsBatch() async throws {
        try await withNATSServer { server in
            let (client, _) = try await Self.streamOfTenFingerprints(server)
            _ = try await client.createConsumer(stream: "fp", config: ConsumerConfig.batched("r", batch: 4))
            let consumer = try await client.bindPullConsumer(stream: "fp", name: "r")
            let first = try await consumer.fetch(batch: 4, timeout: .seconds(2))
            #expect(first.messages.map(\.streamSequence) == [1, 2, 3, 4])
            let original = Dictionary(uniqueKeysWithValues: first.messages.map { ($0.streamSequence, $0.payload) })
            await first.negativeAcknowledge(using: client)

            // Every handed-back message comes again, well within the ack wait, with its payload.
            var redelivered: Set<UInt64> = []
            var last = first
            let deadline = ContinuousClock.now + .seconds(20)
            while !redelivered.isSuperset(of: [1, 2, 3, 4]) {
                #expect(ContinuousClock.now < deadline, "redelivered so far: \(redelivered.sorted())")
                if ContinuousClock.now >= deadline { break }
                let batch = try await consumer.fetch(batch: 4, timeout: .seconds(2))
                for message in batch.messages {
                    if let payload = original[message.streamSequence] {
                        #expect(message.payload == payload)
                        redelivered.insert(message.streamSequence)
                    }
                }
                if let top = batch.messages.last?.streamSequence, top >= (last.messages.last?.streamSequence ?? 0) { last = batch }
            }

            // The acknowledgement of the batch that reached furthest covers everything delivered.
            let highest = try #require(last.messages.last?.streamSequence)
            let acknowledgement = try #require(last.detachAcknowledgement())
            #expect(last.detachAcknowledgement() == nil)
            try await acknowledgement.send(using: client)
            try await eventually("the acknowledgement covers the batch") {
                let info = try await client.consumerInfo(stream: "fp", name: "r")
                return info?.ackFloor.streamSeq == highest && info?.numAckPending == 0 ? true : nil
            }
            consumer.close()
            await client.close()
        }
    }

    /// A batch's acknowledgement is handed out once however many tasks ask at the same time
    /// (it owns a cnats message: handing it out twice would free it twice).
    @Test func concurrentDetachesHandTheAcknowledgementOutOnce() async throws {
        try await withNATSServer { server in
            let (client, _) = try await Self.streamOfTenFingerprints(server)
            _ = try await client.createConsumer(stream: "fp", config: ConsumerConfig.batched("d", batch: 1))
            let consumer = try await client.bindPullConsumer(stream: "fp", name: "d")
            for _ in 0..<10 {
                let batch = try await consumer.fetch(batch: 1, timeout: .seconds(2))
                #expect(batch.messages.count == 1)
                let handedOut = await withTaskGroup(of: BatchAcknowledgement?.self) { group in
                    for _ in 0..<16 { group.addTask { batch.detachAcknowledgement() } }
                    return await group.reduce(into: [BatchAcknowledgement]()) { if let ack = $1 { $0.append(ack) } }
                }
                #expect(handedOut.count == 1)
                try await batch.acknowledgeAll(using: client)  // detached: nothing left to send
                try await handedOut.first?.send(using: client)
            }
            try await eventually("every batch acknowledged once") {
                let info = try await client.consumerInfo(stream: "fp", name: "d")
                return info?.ackFloor.streamSeq == 10 && info?.numAckPending == 0 ? true : nil
            }
            consumer.close()
            await client.close()
        }
    }
}

@Suite("A hung server", .timeLimit(.minutes(2)))
struct HungServerTests {
    /// A server that stops answering (SIGSTOP: the connection stays open) is noticed by the
    /// pings within pingInterval * maxPingsOut, so the client moves on to another server
    /// instead of waiting cnats's default 4 minutes; it reconnects once the server answers again.
    @Test func aStoppedServerIsNoticedByThePings() async throws {
        try await withNATSServer { server in
            let client = try await NATSClient.connect(
                NATSConfiguration(servers: [server.url], pingInterval: .seconds(1), maxPingsOut: 2), logger: Logger(label: "ping"))
            server.process.signal(SIGSTOP)
            defer { server.process.signal(SIGCONT) }
            try await eventually(timeout: .seconds(20), "the stopped server to be noticed") {
                client.state == .connected ? nil : true
            }
            server.process.signal(SIGCONT)
            try await eventually(timeout: .seconds(30), "reconnected") { client.state == .connected ? true : nil }
            await client.close()
        }
    }
}

@Suite("Core publishes", .timeLimit(.minutes(2)))
struct CorePublishTests {
    /// A core publish to a stalled server blocks inside cnats once its buffers are full; it
    /// must block a thread of the NIO thread pool, not one of the few cooperative threads
    /// every task of the process shares. A watchdog thread waits until the publishers are stuck,
    /// starts a probe task, and resumes the server once the probe has run or after 20 s: the
    /// probe must have run while the server was stalled.
    @Test func corePublishesToAStalledServerLeaveTheCooperativePoolFree() async throws {
        try await withNATSServer { server in
            let client = try await NATSClient.connect(NATSConfiguration(servers: [server.url]), logger: Logger(label: "core"))
            let serverProcess = server.process
            let state = StallProbe()
            serverProcess.signal(SIGSTOP)
            let watchdog = Thread {
                // Stuck: no publish finished for half a second.
                var last = -1
                while state.published.load(ordering: .acquiring) != last {
                    last = state.published.load(ordering: .acquiring)
                    usleep(500_000)
                }
                Task { state.probeRan.store(true, ordering: .releasing) }
                let deadline = ContinuousClock.now + .seconds(20)
                while !state.probeRan.load(ordering: .acquiring), ContinuousClock.now < deadline { usleep(10_000) }
                state.probeRanWhileStalled.store(state.probeRan.load(ordering: .acquiring), ordering: .releasing)
                serverProcess.signal(SIGCONT)
            }
            let payload = [UInt8](repeating: 0x61, count: 512 << 10)
            let publishers = (0..<8).map { _ in
                Task {
                    for _ in 0..<32 {
                        try? await client.publishCore(subject: "stall.test", payload: payload)
                        state.published.add(1, ordering: .releasing)
                    }
                }
            }
            watchdog.start()
            for publisher in publishers { await publisher.value }
            let published = state.published.load(ordering: .acquiring)
            let probeRanWhileStalled = state.probeRanWhileStalled.load(ordering: .acquiring)
            #expect(published == 8 * 32)
            #expect(probeRanWhileStalled, "the cooperative pool was blocked by publishes")
            await client.close()
        }
    }
}

private final class StallProbe: Sendable {
    let published = Atomic<Int>(0)
    let probeRan = Atomic<Bool>(false)
    let probeRanWhileStalled = Atomic<Bool>(false)
}

extension ConsumerConfig {
    /// A consumer over the test stream acknowledged in batches, as replicas use them.
    static func batched(_ name: String, startSequence: UInt64? = nil, batch: Int) -> ConsumerConfig {
        ConsumerConfig(
            durableName: name, filterSubject: "fp.>", startSequence: startSequence, ackPolicy: "all", ackWait: .seconds(60),
            maxAckPending: max(batch * 4, 1000))
    }
}
