import Foundation
import FpindexAPI
import JetStream
import LegacyProtocol
import Logging
import TestSupport
import Testing

/// The proxy's legacy line protocol port, with replicas fed by updaters: fpindex-dev, and the
/// real fpindex when `FPINDEX_REAL_BINARY` is set.
@Suite("The proxy serves the legacy line protocol", .timeLimit(.minutes(4)))
struct ProxyLegacyTests {
    /// Restarts the cluster's proxy with its legacy port open, reading from the first replica,
    /// answering a commit once every replica applied it; returns the port.
    func openLegacyPort(_ cluster: ReplicaCluster, _ arguments: [String] = []) async throws -> Int {
        let port = try FreePort.find()
        try await cluster.restartProxy(
            readURL: cluster.replicas[0].devURL,
            arguments: [
                "--legacy-listen", "127.0.0.1:\(port)", "--consistency", "replica", "--min-replicas", String(cluster.replicas.count),
            ] + arguments)
        // The port opens once the proxy is ready and the index exists.
        _ = try await LegacyClient.connect(port: port).send("echo")
        return port
    }

    @Test(arguments: IndexServerKind.all) func answersAsTheRealServerDoes(server: IndexServerKind) async throws {
        try await withCluster(replicas: 2, indexServer: server) { cluster in
            let client = try LegacyClient(port: try await openLegacyPort(cluster))
            for (line, reply) in LegacyConversation.withRealReplies {
                #expect(try client.send(line) == reply, "\(line.debugDescription)")
            }
        }
    }

    /// AcoustID's import through the proxy: a thousand inserts and an attribute in one
    /// transaction reach every replica.
    @Test(arguments: IndexServerKind.all) func aThousandInsertTransactionReachesEveryReplica(server: IndexServerKind) async throws {
        try await withCluster(replicas: 2, indexServer: server) { cluster in
            let port = try await openLegacyPort(cluster)
            let client = try LegacyClient(port: port)
            func hashes(_ id: UInt32) -> [UInt32] { (0..<60).map { id &* 2_654_435_761 &+ $0 &* 40_503 } }
            #expect(try client.send("begin") == "OK ")
            for id in UInt32(1)...1000 {
                try client.write(Array("insert \(id) \(hashes(id).map { String(Int32(bitPattern: $0)) }.joined(separator: ","))\r\n".utf8))
            }
            for id in 1...1000 { #expect(try client.readReply() == "OK ", "insert \(id)") }
            #expect(try client.send("set attribute max_document_id 1000") == "OK ")
            #expect(try client.send("commit") == "OK ")
            for id: UInt32 in [1, 500, 1000] {
                let query = hashes(id).map { String(Int32(bitPattern: $0)) }.joined(separator: ",")
                #expect(try client.send("search \(query)") == "OK \(id):60")
                for replica in cluster.replicas {
                    let reply = try await replica.devHTTP.request(
                        .POST, "/main/_search", body: SearchRequest(query: hashes(id)).encoded(as: .json),
                        headers: [("Content-Type", "application/json")])
                    #expect(try SearchResponse.decode(from: reply.body, format: .json).results.first?.id == id, "\(replica.name)")
                }
            }
            #expect(try LegacyClient(port: port).send("get attribute max_document_id") == "OK 1000")
            // The stream holds what HTTP writes would have published: one message per id.
            #expect(try await cluster.inspector.lastMessage(stream: "fpindex", subject: cluster.subjects.fingerprint("main", id: 1000)) != nil)
        }
    }

    /// AcoustID's own client (`acoustid/indexclient.py`, unchanged) against the proxy: what it
    /// gets equals what it gets from the real fpindex's legacy port for the same calls.
    @Test(arguments: IndexServerKind.all) func acoustidsIndexClientGetsWhatTheRealServerGives(server: IndexServerKind) async throws {
        let expected = #"{"after": "1000", "before": "", "insert_outside_transaction": "ERR not in transaction", "ping": true, "#
            + #""searches": {"1": [[1, 60]], "1000": [[1000, 60]], "500": [[500, 60]]}}"#
        try await withCluster(replicas: 2, indexServer: server) { cluster in
            let port = try await openLegacyPort(cluster)
            let fromProxy: String
            do { fromProxy = try await runIndexClient(port: port) } catch { throw TestFailure("\(error)\n\(cluster.output)") }
            #expect(fromProxy == expected)
            // Each replica holds them (the script's hashes: id * 2654435761 + n * 40503, n < 60).
            for replica in cluster.replicas {
                for id: UInt32 in [1, 500, 1000] {
                    let query = SearchRequest(query: (0..<60).map { id &* 2_654_435_761 &+ $0 &* 40_503 })
                    let reply = try await replica.devHTTP.request(
                        .POST, "/main/_search", body: query.encoded(as: .json), headers: [("Content-Type", "application/json")])
                    #expect(try SearchResponse.decode(from: reply.body, format: .json).results.first?.id == id, "\(replica.name) \(id)")
                }
            }
        }
        if let real = IndexServerKind.realBinary {
            let legacyPort = try FreePort.find()
            let (process, scratch) = try await IndexServerKind.real(binary: real).start(
                port: try FreePort.find(), directory: nil, arguments: ["--legacy-port", String(legacyPort)])
            defer { if let scratch { TemporaryDirectory.remove(scratch) } }
            _ = try await LegacyClient.connect(port: legacyPort).send("echo")
            let fromReal = try await runIndexClient(port: legacyPort)
            await process.stop(timeout: .seconds(2))
            #expect(fromReal == expected)
        }
    }

    /// Runs the AcoustID client's import-and-look-up script; its one line of JSON.
    func runIndexClient(port: Int) async throws -> String {
        let script = try ChildProcess(
            name: "indexclient.py", executable: try Locations.python3(),
            arguments: [Locations.fixture("acoustid/import_and_look_up.py"), String(port)])
        guard await script.waitForExit(timeout: .seconds(120)) == 0 else { throw TestFailure("indexclient.py failed\n\(script.output)") }
        return script.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func nothingIsPublishedWithoutACommitThatSucceeds() async throws {
        try await withCluster(replicas: 1) { cluster in
            let port = try await openLegacyPort(cluster)
            let dropped = try LegacyClient(port: port)
            #expect(try dropped.send("begin") == "OK ")
            #expect(try dropped.send("insert 42 4242") == "OK ")
            dropped.drop()
            let rolledBack = try LegacyClient(port: port)
            #expect(try rolledBack.send("begin") == "OK ")
            #expect(try rolledBack.send("insert 43 4343") == "OK ")
            #expect(try rolledBack.send("rollback") == "OK ")
            // Keys fpindex-cluster keeps for itself are refused at commit, and nothing of
            // the transaction is published.
            let reserved = try LegacyClient(port: port)
            #expect(try reserved.send("begin") == "OK ")
            #expect(try reserved.send("insert 44 4444") == "OK ")
            #expect(try reserved.send("set attribute fpindex-cluster.seq 1") == "OK ")
            #expect(try reserved.send("commit") == "ERR commit failed")
            #expect(try reserved.send("get fpindex-cluster.seq") == "OK ")
            #expect(try reserved.send("rollback") == "OK ")
            // A commit afterwards on its own connection: whatever the dropped one could have
            // done was done before the server read this.
            let writer = try LegacyClient(port: port)
            #expect(try writer.send("begin") == "OK ")
            #expect(try writer.send("insert 45 4545") == "OK ")
            #expect(try writer.send("commit") == "OK ")
            for id: UInt32 in [42, 43, 44] {
                #expect(try await cluster.inspector.lastMessage(stream: "fpindex", subject: cluster.subjects.fingerprint("main", id: id)) == nil)
            }
            #expect(try await cluster.inspector.lastMessage(stream: "fpindex", subject: cluster.subjects.fingerprint("main", id: 45)) != nil)
            let metrics = try await cluster.http.request(.GET, "/_metrics").text
            #expect(metrics.contains(#"fpindex_legacy_commands_total{command="commit",result="ok"} 1"#), "\(metrics)")
            #expect(metrics.contains(#"fpindex_legacy_commands_total{command="commit",result="error"} 1"#))
            #expect(metrics.contains(#"fpindex_legacy_commands_total{command="insert",result="ok"} 4"#))
            #expect(metrics.contains("fpindex_legacy_command_duration_seconds_bucket"))
            #expect(metrics.contains("fpindex_legacy_connections"))
        }
    }

    @Test func aReadOnlyLegacyPortRefusesWritesServesSearchesAndLimitsConnections() async throws {
        try await withCluster(replicas: 1) { cluster in
            #expect(try await cluster.http.json(.PUT, "/main").status == 200)
            #expect(try await cluster.http.json(.PUT, "/main/7", #"{"hashes":[70,71]}"#).status == 200)
            try await cluster.waitConverged()
            let port = try await openLegacyPort(cluster, ["--legacy-read-only", "--legacy-max-connections", "1"])
            // The one place is free once the server has seen the probe connection go.
            let client = try await eventually("the connection's place") {
                let candidate = try LegacyClient(port: port)
                return try candidate.send("echo") == "OK " ? candidate : nil
            }
            #expect(try client.send("begin") == "ERR read-only replica")
            #expect(try client.send("search 70,71") == "OK 7:2")
            // One connection more than the limit is told so at once, and closed.
            let refused = try LegacyClient(port: port)
            #expect(try refused.readReply() == "ERR too many connections")
            #expect(refused.isClosedByServer())
        }
    }

    /// A replica slower than HTTP's `--replica-timeout` does not turn a legacy commit that went
    /// through into `ERR commit failed`: the protocol has no "durable, not applied yet" answer,
    /// so a commit waits `--legacy-commit-timeout` for its replicas.
    @Test func aCommitWaitsForASlowReplicaLongerThanAnHTTPWrite() async throws {
        try await withCluster(replicas: 1) { cluster in
            let port = try await openLegacyPort(cluster, ["--replica-timeout", "200", "--legacy-commit-timeout", "60000"])
            let updater = cluster.replicas[0].updater
            updater.signal(SIGSTOP)
            var resumed = false
            defer { if !resumed { updater.signal(SIGCONT) } }
            let writer = try LegacyClient(port: port)
            #expect(try writer.send("begin") == "OK ")
            #expect(try writer.send("insert 78 7878,7879") == "OK ")
            try writer.write(Array("commit\r\n".utf8))
            try await eventually("the commit's message in the stream") {
                try await cluster.inspector.lastMessage(stream: "fpindex", subject: cluster.subjects.fingerprint("main", id: 78)) != nil
                    ? true : nil
            }
            // Well past the 200 ms an HTTP write would have waited (a shorter pause would only
            // make this test pass without showing anything, never fail it).
            try await Task.sleep(for: .seconds(1))
            updater.signal(SIGCONT)
            resumed = true
            #expect(try await writer.replyOffThePool() == "OK ", "\(cluster.output)")
            #expect(try writer.send("search 7878,7879") == "OK 78:2")
        }
    }

    /// SIGTERM while a commit waits for its replicas: the commit still gets its answer, an
    /// idle connection is closed, the proxy exits cleanly.
    @Test(.timeLimit(.minutes(2))) func aCommitInProgressIsAnsweredBeforeTheProxyStops() async throws {
        try await withNATSServer { nats in
            let port = try FreePort.find()
            // Replica consistency and no replica: the commit waits its 20 s (within the 25 s
            // shutdown budget), then fails. SIGTERM comes inside that wait.
            let (proxy, _) = try await ReplicaCluster.startProxy(
                natsURL: nats.url,
                arguments: [
                    "--legacy-listen", "127.0.0.1:\(port)", "--consistency", "replica", "--legacy-commit-timeout", "20000",
                ])
            let idle = try LegacyClient(port: port)
            #expect(try idle.send("echo") == "OK ")
            let writer = try LegacyClient(port: port)
            #expect(try writer.send("begin") == "OK ")
            #expect(try writer.send("insert 77 7777") == "OK ")
            let committing = ContinuousClock.now
            try writer.write(Array("commit\r\n".utf8))
            let inspector = try await NATSClient.connect(NATSConfiguration(servers: [nats.url]), logger: Logger(label: "inspector"))
            try await eventually("the commit's message in the stream") {
                try await inspector.lastMessage(stream: "fpindex", subject: StreamSubjects().fingerprint("main", id: 77)) != nil ? true : nil
            }
            await inspector.close()
            proxy.signal(SIGTERM)
            // Durable, not applied by any replica in time: the real server's answer to a commit
            // that did not go through, the transaction still open.
            #expect(try await writer.replyOffThePool() == "ERR commit failed")
            // Answered at the end of its whole wait, which began after the commit was sent: the
            // signal did not cut it short (measured from the send, not the signal, which a
            // loaded machine may deliver seconds later).
            #expect(ContinuousClock.now - committing >= .seconds(20))
            #expect(writer.isClosedByServer())
            #expect(idle.isClosedByServer())
            #expect(await proxy.waitForExit(timeout: .seconds(30)) == 0)
        }
    }

    /// A proxy whose NATS is unreachable keeps its legacy port closed (it cannot take a
    /// commit), and still stops at once on SIGTERM.
    @Test func withoutNATSTheLegacyPortWaitsAndSIGTERMStopsAtOnce() async throws {
        let legacyPort = try FreePort.find()
        let proxy = try ChildProcess(
            name: "fpindex-proxy", executable: try Locations.executable("fpindex-proxy"),
            arguments: ["--listen", "127.0.0.1:0", "--legacy-listen", "127.0.0.1:\(legacyPort)"],
            environment: ["NATS_URL": "nats://127.0.0.1:\(try FreePort.find())", "FPINDEX_URL": "http://127.0.0.1:9"])
        _ = try await proxy.waitForLogLine(containing: "the legacy port opens once the proxy is ready")
        #expect(throws: (any Error).self) { try LegacyClient(port: legacyPort, timeout: .milliseconds(300)) }
        let stopping = ContinuousClock.now
        proxy.signal(SIGTERM)
        #expect(await proxy.waitForExit(timeout: .seconds(20)) == 0, "\(proxy.output)")
        // Well within the 25 s shutdown budget: nothing waited for NATS.
        #expect(ContinuousClock.now - stopping < .seconds(10), "\(proxy.output)")
    }
}

extension LegacyClient {
    /// `readReply()` on a thread of its own: a commit's reply may take many seconds, and a
    /// blocked thread of the cooperative pool (two on this machine) stalls every other test.
    func replyOffThePool() async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try self.readReply() }) }
        }
    }
}
