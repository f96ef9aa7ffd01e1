import Foundation
import FpindexAPI
import JetStream
import Logging
import TestSupport
import Testing

/// manifests/nats/nats-server-permissions.conf on a real nats-server, over TLS: each component
/// works as its own NATS user, and the server refuses each user what its role does not need.
/// Refusals are proven by what the server guarantees (it logs every permission violation and
/// drops the message, so nothing changes), not by how long a reply takes.
@Suite("NATS roles get only what they need", .timeLimit(.minutes(3)))
struct NATSPermissionTests {
    /// A replica's consumer as the controller creates it (`ReplicaConsumer.config`, which this
    /// test target does not link; the updater uses it as it finds it).
    static func replicaConsumer(_ name: String) -> ConsumerConfig {
        ConsumerConfig(
            durableName: name, description: "fpindex-cluster replica consumer", filterSubject: "fpindex.>", ackPolicy: "all",
            ackWait: .seconds(60), maxAckPending: 16000, maxDeliver: -1)
    }

    /// The controller makes the stream and a replica's consumer as the reconciler does; the real
    /// fpindex-proxy (with --no-manage-stream, as the controller runs it) takes every kind of
    /// write; the real fpindex-updater, as its own user, recovers a consumer left with
    /// unacknowledged deliveries (it deletes and recreates it) and applies the writes to
    /// fpindex-dev; read-your-writes works (the proxy hears the updater's announcements). From
    /// start to shutdown, the server refuses nothing: no component needs more than its role.
    @Test func everyComponentWorksAsItsOwnUserOverTLS() async throws {
        try await withSecuredNATS { nats in
            let controller = try await nats.connect(as: .controller)
            let stream = try await controller.ensureStream(StreamSettings())
            #expect(stream.config.subjects == ["fpindex.>"])
            _ = try await controller.createConsumer(stream: "fpindex", config: Self.replicaConsumer("main-index-0"))
            #expect(try await controller.consumerNames(stream: "fpindex") == ["main-index-0"])

            let devPort = try FreePort.find()
            let (dev, _) = try await IndexServerKind.dev.start(port: devPort, directory: nil)
            let proxy = try ChildProcess(
                name: "fpindex-proxy", executable: try Locations.executable("fpindex-proxy"),
                arguments: ["--listen", "127.0.0.1:0", "--no-manage-stream"],
                environment: nats.environment(as: .proxy).merging(["FPINDEX_URL": "http://127.0.0.1:\(devPort)"]) { $1 })
            var updater: ChildProcess?
            do {
                let http = TestHTTPClient(
                    baseURL: String(try await proxy.waitForLine(containing: "listening on ").split(separator: " ").last!))
                try await eventually("the proxy to be ready\n\(proxy.output)") {
                    try await http.request(.GET, "/_ready").status == 200 ? true : nil
                }
                // Every kind of write, and a read answered from the stream.
                try await Self.expectOK(http.json(.PUT, "/idx"), "PUT /idx")
                try await Self.expectOK(
                    http.json(
                        .POST, "/idx/_update",
                        #"{"changes":[{"insert":{"id":1,"hashes":[101,102,103]}},{"insert":{"id":2,"hashes":[201,202,203]}}],"metadata":{"k":"v"}}"#
                    ), "POST /idx/_update")
                try await Self.expectOK(http.json(.PUT, "/idx/3", #"{"hashes":[301,302,303]}"#), "PUT /idx/3")
                try await Self.expectOK(http.json(.GET, "/idx/3"), "GET /idx/3")
                try await Self.expectOK(http.json(.POST, "/idx/_update", #"{"changes":[]}"#), "an empty update")
                try await Self.expectOK(http.json(.PUT, "/gone"), "PUT /gone")
                try await Self.expectOK(http.json(.DELETE, "/gone"), "DELETE /gone (a purge)")

                // A previous updater run that stopped mid-batch left deliveries unacknowledged:
                // the updater must recreate its consumer from the index's resume point.
                let previous = try await nats.connect(as: .updater)
                let bound = try await previous.bindPullConsumer(stream: "fpindex", name: "main-index-0")
                #expect(try await bound.fetch(batch: 2, timeout: .seconds(5)).messages.count == 2)
                bound.close()
                await previous.close()
                #expect(try await controller.consumerInfo(stream: "fpindex", name: "main-index-0")?.numAckPending == 2)

                let started = try ChildProcess(
                    name: "fpindex-updater", executable: try Locations.executable("fpindex-updater"),
                    arguments: [
                        "--consumer", "main-index-0", "--fpindex-url", "http://127.0.0.1:\(devPort)", "--listen", "127.0.0.1:0",
                        "--batch-wait", "100", "--idle-check", "300",
                    ],
                    environment: nats.environment(as: .updater))
                updater = started
                _ = try await started.waitForLogLine(containing: "unacknowledged deliveries")
                let index = TestHTTPClient(baseURL: "http://127.0.0.1:\(devPort)")
                for (id, hash) in [(1, 101), (2, 201), (3, 301)] {
                    try await eventually("fingerprint \(id) on the replica\n\(started.output)") {
                        try await Self.found(id, searching: hash, in: index) ? true : nil
                    }
                }
                // Read-your-writes: answered once the updater announced it applied the write.
                try await Self.expectOK(
                    http.json(
                        .POST, "/idx/_update", #"{"changes":[{"insert":{"id":4,"hashes":[401,402,403]}}]}"#,
                        headers: [("Fpindex-Consistency", "replica")]), "a write with replica consistency")
                #expect(try await Self.found(4, searching: 401, in: index))
                // The status the controller reports: the replica caught up.
                try await eventually("the controller to see the replica caught up") {
                    try await controller.consumerInfo(stream: "fpindex", name: "main-index-0")?.lag == 0 ? true : nil
                }
                #expect(nats.violations.isEmpty, "refused: \(nats.violations)")

                // NATS restarts (its log starts again): everyone reconnects, and the proxy's
                // ordered consumer, which did not survive, is created again. An index created
                // meanwhile by another proxy reaches this proxy's catalog through it.
                try await nats.server.restart()
                let other = try await nats.connect(as: .proxy)
                _ = try await other.publish(
                    subject: StreamSubjects(prefix: "fpindex").lifecycle("side"), payload: LifecycleRecord(.create).payload)
                await other.close()
                try await eventually("the proxy's catalog to learn of index side after the restart\n\(proxy.output)") {
                    try await http.json(.PUT, "/side/5", #"{"hashes":[501,502,503]}"#).status == 200 ? true : nil
                }
                try await eventually("fingerprint 5 on the replica after the restart\n\(started.output)") {
                    try await Self.found(5, searching: 501, in: index, index: "side") ? true : nil
                }

                // Shutting down needs nothing more (the proxy leaves its ordered consumer to the server).
                started.signal(SIGTERM)
                #expect(await started.waitForExit(timeout: .seconds(30)) != nil, "the updater stops on SIGTERM")
                proxy.signal(SIGTERM)
                #expect(await proxy.waitForExit(timeout: .seconds(30)) != nil, "the proxy stops on SIGTERM")
                await controller.close()
                #expect(nats.violations.isEmpty, "refused: \(nats.violations)")
            } catch {
                print(proxy.output)
                if let updater { print(updater.output) }
                await updater?.stop()
                await proxy.stop()
                await dev.stop()
                throw error
            }
            await updater?.stop()
            await proxy.stop()
            await dev.stop()
        }
    }

    /// What each role must not do, tried as that role with the product's own calls, and
    /// refused by the server: the proxy cannot delete or reconfigure the stream nor touch a
    /// replica's consumer or forge its progress; an updater cannot write to the stream (data or
    /// lifecycle), delete, purge or reconfigure it, nor listen to the writes as they are
    /// published; the controller cannot write to the stream, read its data (no direct gets, no
    /// fetching from a replica's consumer), purge it, nor forge a replica's progress.
    @Test func eachRoleIsRefusedWhatItDoesNotNeed() async throws {
        try await withSecuredNATS { nats in
            let controller = try await nats.connect(as: .controller)
            try await controller.ensureStream(StreamSettings())
            _ = try await controller.createConsumer(stream: "fpindex", config: Self.replicaConsumer("main-index-0"))
            // What the proxy may do: write, and read back.
            let writer = try await nats.connect(as: .proxy)
            let subjects = StreamSubjects(prefix: "fpindex")
            let fingerprint = subjects.fingerprint("idx", id: 1)
            _ = try await writer.publish(subject: subjects.lifecycle("idx"), payload: LifecycleRecord(.create).payload)
            let written = try await writer.publish(subject: fingerprint, payload: FingerprintRecord(hashes: [1, 2, 3]).payload)
            #expect(try await writer.lastMessage(stream: "fpindex", subject: fingerprint)?.sequence == written.sequence)
            await writer.close()
            // What an updater may do beyond what the other test's updater did: find the first
            // message from a resume point, the last lifecycle record of an index, its consumer.
            let reader = try await nats.connect(as: .updater)
            #expect(try await reader.firstMessage(stream: "fpindex", filter: "fpindex.>", atOrAfter: 2)?.sequence == written.sequence)
            #expect(try await reader.lastMessage(stream: "fpindex", subject: subjects.lifecycle("idx")) != nil)
            #expect(try await reader.consumerInfo(stream: "fpindex", name: "main-index-0")?.numPending == 2)
            await reader.close()

            // Short timeouts: a refused request has no reply to wait for.
            let proxy = try await nats.connect(as: .proxy, timeout: .seconds(1))
            try await nats.expectRefused(.proxy, subject: "$JS.API.CONSUMER.DELETE.fpindex.main-index-0", "a proxy deletes a consumer") {
                try await proxy.deleteConsumer(stream: "fpindex", name: "main-index-0")
            }
            try await nats.expectRefused(
                .proxy, subject: "$JS.API.CONSUMER.CREATE.fpindex.proxy-owned", "a proxy creates a durable consumer"
            ) {
                _ = try await proxy.createConsumer(stream: "fpindex", config: Self.replicaConsumer("proxy-owned"))
            }
            // Binding reads the consumer's info, refused; cnats binds all the same when that gets
            // no answer, but the pull request is dropped: nothing is delivered to the proxy.
            let stolen = try await proxy.bindPullConsumer(stream: "fpindex", name: "main-index-0")
            try await nats.expectViolation(.proxy, subject: "$JS.API.CONSUMER.INFO.fpindex.main-index-0")
            #expect(try await stolen.fetch(batch: 10, timeout: .seconds(1)).messages.isEmpty)
            try await nats.expectViolation(.proxy, subject: "$JS.API.CONSUMER.MSG.NEXT.fpindex.main-index-0")
            stolen.close()
            try await nats.expectRefused(.proxy, subject: "$JS.API.STREAM.DELETE.fpindex", "a proxy deletes the stream") {
                try await proxy.deleteStream("fpindex")
            }
            try await nats.expectRefused(.proxy, subject: "$JS.API.STREAM.UPDATE.fpindex", "a proxy reconfigures the stream") {
                try await proxy.ensureStream(StreamSettings(duplicateWindow: .seconds(30)))
            }
            // Core publishes get no answer either way: the server's refusal is the proof.
            try await proxy.publishCore(subject: "fpindex-applied.main-index-0", payload: Array("999".utf8))
            try await nats.expectViolation(.proxy, subject: "fpindex-applied.main-index-0")

            let updater = try await nats.connect(as: .updater, timeout: .seconds(1))
            try await nats.expectRefused(.updater, subject: subjects.fingerprint("idx", id: 2), "an updater writes a fingerprint") {
                _ = try await updater.publish(subject: subjects.fingerprint("idx", id: 2), payload: FingerprintRecord(hashes: [4]).payload)
            }
            try await nats.expectRefused(.updater, subject: subjects.lifecycle("idx"), "an updater deletes an index") {
                _ = try await updater.publish(subject: subjects.lifecycle("idx"), payload: LifecycleRecord(.delete).payload)
            }
            try await nats.expectRefused(.updater, subject: "$JS.API.STREAM.PURGE.fpindex", "an updater purges the stream") {
                try await updater.purge(stream: "fpindex", filter: "fpindex.>")
            }
            try await nats.expectRefused(.updater, subject: "$JS.API.STREAM.DELETE.fpindex", "an updater deletes the stream") {
                try await updater.deleteStream("fpindex")
            }
            try await nats.expectRefused(.updater, subject: "$JS.API.STREAM.UPDATE.fpindex", "an updater reconfigures the stream") {
                try await updater.ensureStream(StreamSettings(duplicateWindow: .seconds(30)))
            }
            let listening = try await updater.subscribe(subject: "fpindex.>") { _, _ in }
            try await nats.expectViolation(.updater, "Subscription", subject: "fpindex.>")
            listening.cancel()

            let manager = try await nats.connect(as: .controller, timeout: .seconds(1))
            try await nats.expectRefused(.controller, subject: subjects.fingerprint("idx", id: 3), "the controller writes a fingerprint") {
                _ = try await manager.publish(subject: subjects.fingerprint("idx", id: 3), payload: FingerprintRecord(hashes: [5]).payload)
            }
            try await nats.expectRefused(
                .controller, subject: "$JS.API.DIRECT.GET.fpindex.\(fingerprint)", "the controller reads a fingerprint"
            ) {
                _ = try await manager.lastMessage(stream: "fpindex", subject: fingerprint)
            }
            try await nats.expectRefused(.controller, subject: "$JS.API.STREAM.PURGE.fpindex", "the controller purges the stream") {
                try await manager.purge(stream: "fpindex", filter: "fpindex.>")
            }
            // It may read a consumer's state (binding reads it), not fetch its messages: the
            // pull request is dropped, so the fetch ends empty and nothing is delivered.
            let bound = try await manager.bindPullConsumer(stream: "fpindex", name: "main-index-0")
            #expect(try await bound.fetch(batch: 10, timeout: .seconds(1)).messages.isEmpty)
            try await nats.expectViolation(.controller, subject: "$JS.API.CONSUMER.MSG.NEXT.fpindex.main-index-0")
            bound.close()
            try await manager.publishCore(subject: "fpindex-applied.main-index-0", payload: Array("999".utf8))
            try await nats.expectViolation(.controller, subject: "fpindex-applied.main-index-0")

            // Nothing refused changed anything: the stream as the controller made it, holding
            // the two messages the proxy wrote, the replica's consumer untouched.
            let info = try #require(try await controller.streamInfo("fpindex"))
            #expect(info.state.messages == 2)
            #expect(info.state.lastSeq == written.sequence)
            #expect(info.config.duplicateWindow == 120_000_000_000)
            let consumer = try #require(try await controller.consumerInfo(stream: "fpindex", name: "main-index-0"))
            #expect(consumer.delivered.streamSeq == 0)
            #expect(try await controller.consumerNames(stream: "fpindex") == ["main-index-0"])

            // The gap the example's header describes: the proxy's ordered consumer needs the
            // ephemeral-consumer create subject, and nats-server takes a durable consumer's name
            // in that request and replaces its configuration (the consumer turns ephemeral, its
            // settings are the proxy's). When this stops happening (a catalog that needs no
            // consumer, or a server that refuses it), drop that permission's caveat.
            let request =
                #"{"stream_name":"fpindex","config":{"name":"main-index-0","deliver_policy":"all","ack_policy":"all","#
                + #""ack_wait":1000000000,"max_ack_pending":16000,"max_deliver":-1,"filter_subject":"fpindex.>","replay_policy":"instant"}}"#
            // The usual timeout: the server answers once it changed the consumer, so the read
            // below sees the change. (Refused some day, the request fails and nothing changes.)
            let tamperer = try await nats.connect(as: .proxy)
            _ = try? await tamperer.request(subject: "$JS.API.CONSUMER.CREATE.fpindex", payload: Array(request.utf8))
            await tamperer.close()
            let tampered = try #require(try await controller.consumerInfo(stream: "fpindex", name: "main-index-0"))
            withKnownIssue("a proxy can replace a replica consumer's configuration through the ephemeral-consumer create subject") {
                #expect(tampered.isDurable)
                #expect(tampered.config.ackWait == 60_000_000_000)
            }
            // The controller can still read it, and creating it again as it wants it repairs it
            // in place (same consumer, its state kept), durable again.
            let repaired = try await controller.createConsumer(stream: "fpindex", config: Self.replicaConsumer("main-index-0"))
            #expect(repaired.isDurable)
            #expect(repaired.config.ackWait == 60_000_000_000)

            // What else the controller may do: update the stream to the spec, and the finalizer's
            // work (the consumers, then the stream with deletionPolicy: Delete).
            #expect(
                try await controller.ensureStream(StreamSettings(duplicateWindow: .seconds(60))).config.duplicateWindow == 60_000_000_000)
            #expect(try await controller.deleteConsumer(stream: "fpindex", name: "main-index-0"))
            try await controller.deleteStream("fpindex")
            #expect(try await controller.streamInfo("fpindex") == nil)

            await proxy.close()
            await updater.close()
            await manager.close()
            await controller.close()
        }
    }

    static func expectOK(_ reply: HTTPReply, _ what: String) throws {
        guard reply.status == 200 else { throw TestFailure("\(what): \(reply.status) \(reply.text)") }
    }

    /// Whether a search for `hash` in `index` on `server` (an fpindex) finds fingerprint `id`.
    static func found(_ id: Int, searching hash: Int, in server: TestHTTPClient, index: String = "idx") async throws -> Bool {
        let reply = try await server.json(.POST, "/\(index)/_search", #"{"query":[\#(hash)]}"#)
        guard reply.status == 200, let results = try reply.jsonObject()["results"] as? [[String: Any]] else { return false }
        return results.contains { ($0["id"] as? Int) == id }
    }
}

extension SecuredNATS {
    /// `attempt` fails, and the server says it refused `subject` to `role`.
    func expectRefused(
        _ role: NATSRole, subject: String, _ what: Comment, sourceLocation: SourceLocation = #_sourceLocation,
        _ attempt: () async throws -> Void
    ) async throws {
        await #expect(throws: JetStreamError.self, what, sourceLocation: sourceLocation) { try await attempt() }
        try await expectViolation(role, subject: subject)
    }
}
