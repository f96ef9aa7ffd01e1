import Foundation
import FpindexAPI
import JetStream
import Logging
import TestSupport
import Testing

@Suite("Replication through real processes", .serialized, .timeLimit(.minutes(5)))
struct ReplicationTests {
    @Test(arguments: IndexServerKind.all) func replicasConvergeExactly(server: IndexServerKind) async throws {
        try await withCluster(indexServer: server) { cluster in
            var model = Model()
            var random = SeededRandom(seed: 11)
            try await cluster.createIndex("a", &model)
            try await cluster.createIndex("b", &model)
            try await cluster.randomWrites(&model, requests: 40, random: &random)
            // Index lifecycle: delete and re-create while writing.
            try await cluster.deleteIndex("b", &model)
            try await cluster.randomWrites(&model, requests: 10, random: &random)
            try await cluster.createIndex("b", &model)
            try await cluster.createIndex("c", &model)
            try await cluster.randomWrites(&model, requests: 40, random: &random)
            try await cluster.deleteIndex("c", &model)
            try await cluster.waitConverged()
            try await cluster.verify(model, deletedIndexes: ["c"])
        }
    }

    @Test(arguments: IndexServerKind.all) func killingUpdatersDuringLoadNeverLosesOrDuplicates(server: IndexServerKind) async throws {
        try await withCluster(indexServer: server) { cluster in
            var model = Model()
            var random = SeededRandom(seed: 22)
            try await cluster.createIndex("k", &model)
            try await cluster.createIndex("m", &model)
            for round in 0..<5 {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    let replica = cluster.replicas[round % 2]
                    let delay = Duration.milliseconds(Int.random(in: 0...300, using: &random))
                    group.addTask {
                        try await Task.sleep(for: delay)
                        try await replica.crashUpdater()
                    }
                    try await cluster.randomWrites(&model, requests: 25, random: &random)
                    try await group.waitForAll()
                }
            }
            try await cluster.waitConverged()
            try await cluster.verify(model)
        }
    }

    /// An updater that fetched a batch and died before acknowledging it leaves deliveries the
    /// server would hand back only after the ack wait, behind newer messages whose ack-all would
    /// cover them. The next updater must still apply them.
    @Test(arguments: IndexServerKind.all) func deliveriesLeftUnacknowledgedByADeadUpdaterAreApplied(server: IndexServerKind) async throws {
        try await withCluster(replicas: 1, indexServer: server) { cluster in
            var model = Model()
            var random = SeededRandom(seed: 99)
            try await cluster.createIndex("u", &model)
            try await cluster.randomWrites(&model, requests: 20, random: &random)
            try await cluster.waitConverged()
            let replica = cluster.replicas[0]
            await replica.updater.stop()
            try await cluster.randomWrites(&model, requests: 20, random: &random)
            // A dead updater: it fetched a batch and never acknowledged it.
            let dead = try await cluster.inspector.bindPullConsumer(stream: "fpindex", name: replica.name)
            let fetched = try await dead.fetch(batch: 15, timeout: .seconds(2))
            #expect(fetched.messages.count == 15)
            dead.close()
            try await replica.crashUpdater()  // starts a new one
            // Newer writes, whose ack-all would cover the stranded deliveries.
            try await cluster.randomWrites(&model, requests: 10, random: &random)
            try await cluster.waitConverged()
            try await cluster.verify(model)
        }
    }

    @Test(arguments: IndexServerKind.all) func anEmptiedIndexIsRebuiltFromTheStream(server: IndexServerKind) async throws {
        try await withCluster(indexServer: server) { cluster in
            var model = Model()
            var random = SeededRandom(seed: 33)
            try await cluster.createIndex("w", &model)
            try await cluster.randomWrites(&model, requests: 30, random: &random)
            try await cluster.waitConverged()
            // fpindex-dev without --dir comes back empty: the updater notices and replays.
            try await cluster.replicas[0].crashDev()
            try await cluster.randomWrites(&model, requests: 5, random: &random)
            try await cluster.waitConverged()
            try await cluster.verify(model)
            let metrics = try await cluster.replicas[0].updaterHTTP.request(.GET, "/_metrics").text
            let resets = metrics.split(separator: "\n").first { $0.hasPrefix("fpindex_updater_consumer_resets_total ") }
            #expect((resets?.split(separator: " ").last).flatMap { Int($0) } ?? 0 >= 1, "\(resets ?? "no resets metric")")
        }
    }

    /// A write that raced with a delete stays in the stream after the delete record (the purge
    /// reaches only below it). A replica replaying from scratch knows only the index's latest
    /// create record; it must skip that write as an earlier generation's and catch up (it used
    /// to apply it to an index fpindex did not have yet, and loop on the 404 forever).
    @Test(arguments: IndexServerKind.all) func aWriteThatRacedWithADeleteDoesNotStopAReplay(server: IndexServerKind) async throws {
        try await withCluster(replicas: 1, indexServer: server) { cluster in
            var model = Model()
            try await cluster.createIndex("e", &model)
            try cluster.expectOK(try await cluster.http.json(.PUT, "/e/1", #"{"hashes":[11,12]}"#), "write 1")
            try await cluster.deleteIndex("e", &model)
            // The racing write, published by a proxy that still believed the index existed.
            _ = try await cluster.inspector.publish(
                subject: cluster.subjects.fingerprint("e", id: 2), payload: FingerprintRecord(hashes: [21, 22]).payload)
            try await cluster.createIndex("e", &model)
            let hashes = model.hashes(for: 3)
            try cluster.expectOK(try await cluster.http.json(.PUT, "/e/3", #"{"hashes":\#(hashes)}"#), "write 3")
            model.indexes["e"]?[3] = hashes
            try await cluster.waitConverged()
            // A replica that joins now replays the stream from its first message.
            _ = try await cluster.addReplica(name: "late")
            try await cluster.waitConverged()
            try await cluster.verify(model)
        }
    }

    /// Every request the updater makes to fpindex is built from a validated name and id, so
    /// even the longest legal ones stay far below the request-line length fpindex's parser
    /// takes (about 8 KB): an index of 255 characters with the largest id replicates.
    @Test(arguments: IndexServerKind.all) func theLongestLegalNameAndIdReplicate(server: IndexServerKind) async throws {
        try await withCluster(replicas: 1, indexServer: server) { cluster in
            var model = Model()
            let name = String(repeating: "L", count: FpindexNames.maxIndexNameLength)
            #expect("/\(name)/_update".utf8.count < 1024)
            try await cluster.createIndex(name, &model)
            let hashes = model.hashes(for: 60)
            try cluster.expectOK(try await cluster.http.json(.PUT, "/\(name)/\(UInt32.max)", #"{"hashes":[9,8,7]}"#), "the largest id")
            try cluster.expectOK(try await cluster.http.json(.PUT, "/\(name)/60", #"{"hashes":\#(hashes)}"#), "write 60")
            model.indexes[name]?[60] = hashes
            try await cluster.waitConverged()
            try await cluster.verify(model)
            let largest = try await cluster.replicas[0].devHTTP.request(.GET, "/\(name)/\(UInt32.max)")
            #expect(largest.status == 200, "\(largest.text)")
        }
    }

    @Test(arguments: IndexServerKind.all) func aPersistentIndexResumesWhereItsCheckpointIs(server: IndexServerKind) async throws {
        try await withCluster(persistent: true, indexServer: server) { cluster in
            var model = Model()
            var random = SeededRandom(seed: 44)
            try await cluster.createIndex("p", &model)
            try await cluster.randomWrites(&model, requests: 30, random: &random)
            try await cluster.replicas[1].crashDev()
            try await cluster.randomWrites(&model, requests: 30, random: &random)
            try await cluster.waitConverged()
            try await cluster.verify(model)
        }
    }

    @Test(arguments: IndexServerKind.all) func survivesANATSRestart(server: IndexServerKind) async throws {
        try await withCluster(indexServer: server) { cluster in
            var model = Model()
            var random = SeededRandom(seed: 55)
            try await cluster.createIndex("n", &model)
            try await cluster.randomWrites(&model, requests: 20, random: &random)
            try await cluster.natsServer!.restart()
            try await eventually("the proxy to be ready again") {
                try await cluster.http.request(.GET, "/_ready").status == 200 ? true : nil
            }
            try await cluster.randomWrites(&model, requests: 20, random: &random)
            try await cluster.waitConverged()
            try await cluster.verify(model)
        }
    }

    @Test(arguments: IndexServerKind.all) func aRecreatedStreamRebuildsEveryReplica(server: IndexServerKind) async throws {
        try await withCluster(indexServer: server) { cluster in
            var old = Model()
            var random = SeededRandom(seed: 66)
            try await cluster.createIndex("s", &old)
            try await cluster.randomWrites(&old, requests: 20, random: &random)
            try await cluster.waitConverged()
            // The stream is deleted and created anew (its identity changes): nothing of the old may stay.
            try await cluster.inspector.deleteStream("fpindex")
            try await cluster.restartProxy()
            var model = Model()
            model.version = old.version
            try await cluster.createIndex("s", &model)
            try await cluster.randomWrites(&model, requests: 10, random: &random)
            try await cluster.waitConverged()
            try await cluster.verify(model)

            // fpindex numbers generations per name and never goes back (as the real one): the
            // new stream's create record has sequence 1 again, which fpindex refused, so it
            // numbered the index itself; the index's metadata says which generation it is.
            for replica in cluster.replicas {
                let status = try await replica.devHTTP.request(.GET, "/s/_status").jsonObject()
                #expect(status["generation"] as? Int == 2)
                let info = try await replica.devHTTP.request(.GET, "/s").jsonObject()
                #expect((info["metadata"] as? [String: String])?[ReservedMetadata.generationKey] == "1")
            }
            // That is this stream's generation 1: a restarted updater keeps the index (no rebuild loop).
            func rebuilds(_ replica: Replica) async throws -> Int {
                let metrics = try await replica.updaterHTTP.request(.GET, "/_metrics").text
                let line = metrics.split(separator: "\n").first { $0.hasPrefix("fpindex_updater_index_rebuilds_total ") }
                return (line?.split(separator: " ").last).flatMap { Int($0) } ?? 0
            }
            try await cluster.replicas[0].crashUpdater()
            try await cluster.randomWrites(&model, requests: 5, random: &random)
            try await cluster.waitConverged()
            try await cluster.verify(model)
            #expect(try await rebuilds(cluster.replicas[0]) == 0)
            let status = try await cluster.replicas[0].devHTTP.request(.GET, "/s/_status").jsonObject()
            #expect(status["generation"] as? Int == 2)
        }
    }

    /// An update over `--batch-bytes` is split into several `_update`s, the checkpoint going with
    /// the last: the replica still ends up exactly like one that sends whole batches.
    @Test(arguments: IndexServerKind.all) func updatesOverTheSizeLimitAreSplit(server: IndexServerKind) async throws {
        try await withCluster(replicas: 0, indexServer: server) { cluster in
            var model = Model()
            var random = SeededRandom(seed: 88)
            try await cluster.createIndex("b", &model)
            try await cluster.randomWrites(&model, requests: 30, random: &random)
            // Both replay the same backlog (60 fingerprints and the rest: one batch).
            let whole = try await cluster.addReplica(name: "whole")
            let split = try await cluster.addReplica(name: "split", updaterArguments: ["--batch-bytes", "300"])
            try await cluster.waitConverged()
            try await cluster.verify(model)
            // Each _update adds 1 to an index's version: the split replica needed more of them.
            let splitVersion = try await split.devHTTP.json(.GET, "/b").jsonObject()["version"] as? Int ?? 0
            let wholeVersion = try await whole.devHTTP.json(.GET, "/b").jsonObject()["version"] as? Int ?? 0
            #expect(splitVersion > wholeVersion + 2, "versions: split \(splitVersion), whole \(wholeVersion)")
        }
    }

    @Test(arguments: IndexServerKind.all) func poisonMessagesAreSkippedAndCounted(server: IndexServerKind) async throws {
        try await withCluster(replicas: 1, indexServer: server) { cluster in
            var model = Model()
            try await cluster.createIndex("x", &model)
            _ = try await cluster.inspector.publish(subject: cluster.subjects.fingerprint("x", id: 7), payload: [0xc1, 0x00])
            _ = try await cluster.inspector.publish(subject: "fpindex.x.not-an-id", payload: [0x80])
            var random = SeededRandom(seed: 77)
            try await cluster.randomWrites(&model, requests: 5, random: &random)
            try await cluster.waitConverged()
            try await cluster.verify(model)
            let metrics = try await cluster.replicas[0].updaterHTTP.request(.GET, "/_metrics").text
            #expect(metrics.contains(#"fpindex_updater_skipped_messages_total{reason="poison"} 2"#))
        }
    }
}

@Suite("Updater readiness", .timeLimit(.minutes(5)))
struct ReadinessTests {
    @Test func notReadyWhileReplayingReadyAfter() async throws {
        try await withNATSServer { nats in
            let cluster = try await ReplicaCluster.start(nats: nats, replicas: 0)
            do {
                // A stream with more to replay than the lag threshold (10).
                _ = try await cluster.http.json(.PUT, "/r")
                for first in stride(from: 1, through: 20_000, by: 1000) {
                    let body = UpdateRequest(changes: (first..<first + 1000).map { .insert(id: UInt32($0), hashes: [UInt32($0)]) })
                    _ = try await cluster.http.request(
                        .POST, "/r/_update", body: body.encoded(as: .msgpack), headers: [("Content-Type", "application/vnd.msgpack")])
                }
                let replica = try await Replica(name: "late", natsURL: nats.url, persistent: false)
                var sawNotReadyWhileLagging = false
                try await eventually(timeout: .seconds(120), "the replica to catch up") {
                    // Lag and readiness from one snapshot; /ready itself is checked at the end.
                    let status = try await replica.status()
                    let ready = status["ready"] as? Bool == true
                    let lag = status["lag"] as? Int ?? Int.max
                    if status["phase"] as? String != "replicating" || lag > 20 {
                        // Lagging (or not replicating yet): never ready.
                        if ready { throw TestFailure("ready with lag \(lag) in phase \(status["phase"] ?? "?")") }
                        sawNotReadyWhileLagging = true
                    }
                    return ready && lag == 0 ? true : nil
                }
                #expect(sawNotReadyWhileLagging)
                #expect(try await replica.updaterHTTP.request(.GET, "/_ready").status == 200)
                #expect(try await replica.updaterHTTP.request(.GET, "/ready").status == 200, "the name before 0.3 still answers")
                let info = try #require(try await cluster.inspector.consumerInfo(stream: "fpindex", name: "late"))
                #expect(info.lag == 0)
                let metrics = try await replica.updaterHTTP.request(.GET, "/_metrics").text
                #expect(metrics.contains("fpindex_updater_lag_messages 0"))
                #expect(metrics.contains("fpindex_updater_ready 1"))
                await replica.stop()
                await cluster.stop()
            } catch {
                await cluster.stop()
                throw error
            }
        }
    }
}

@Suite("Read-your-writes through the proxy", .timeLimit(.minutes(3)))
struct ReadYourWritesTests {
    func search(_ cluster: ReplicaCluster, _ hashes: [UInt32]) async throws -> [SearchResult] {
        let reply = try await cluster.http.request(
            .POST, "/y/_search", body: SearchRequest(query: hashes, minScore: 1).encoded(as: .json),
            headers: [("Content-Type", "application/json")])
        return try SearchResponse.decode(from: reply.body, format: .json).results
    }

    @Test(arguments: IndexServerKind.all) func aSearchRightAfterAWriteSeesIt(server: IndexServerKind) async throws {
        try await withCluster(replicas: 1, indexServer: server) { cluster in
            try await cluster.restartProxy(readURL: cluster.replicas[0].devURL, arguments: ["--consistency", "replica"])
            var model = Model()
            try await cluster.createIndex("y", &model)
            for id in UInt32(1)...30 {
                let hashes = model.hashes(for: id)
                let put = try await cluster.http.json(.PUT, "/y/\(id)", #"{"hashes":\#(hashes)}"#)
                #expect(put.status == 200)
                #expect(try await search(cluster, hashes).first?.id == id, "write \(id) not visible")
            }
        }
    }

    @Test(arguments: IndexServerKind.all) func aRequestCanAskForItAndTimesOutWith504(server: IndexServerKind) async throws {
        try await withCluster(replicas: 1, indexServer: server) { cluster in
            try await cluster.restartProxy(readURL: cluster.replicas[0].devURL, arguments: ["--replica-timeout", "500"])
            var model = Model()
            try await cluster.createIndex("y", &model)
            let hashes = model.hashes(for: 5)
            let asked = try await cluster.http.json(.PUT, "/y/5", #"{"hashes":\#(hashes)}"#, headers: [("Fpindex-Consistency", "replica")])
            #expect(asked.status == 200)
            #expect(try await search(cluster, hashes).first?.id == 5)
            #expect(
                try await cluster.http.json(.PUT, "/y/6", #"{"hashes":[1]}"#, headers: [("Fpindex-Consistency", "bogus")]).status == 400)

            // With the replica's updater gone, a replica-consistent write is still durable but answers 504.
            await cluster.replicas[0].updater.stop()
            let late = try await cluster.http.json(.PUT, "/y/7", #"{"hashes":[7]}"#, headers: [("Fpindex-Consistency", "replica")])
            #expect(late.status == 504)
            #expect((try? late.jsonObject())?["error"] as? String == "GatewayTimeout")
            #expect(try await cluster.inspector.lastMessage(stream: "fpindex", subject: cluster.subjects.fingerprint("y", id: 7)) != nil)
        }
    }
}

@Suite("Replication on a three-node NATS cluster", .timeLimit(.minutes(5)))
struct DistributedNATSTests {
    @Test func losingANodeUnderLoadLosesNothing() async throws {
        let nats = try await NATSCluster.start()
        do {
            let urls = nats.urls.joined(separator: ",")
            // JetStream needs its meta leader before a replicated stream can be made.
            try await eventually(timeout: .seconds(60), "a replicated stream\n\(nats.output)") { () async throws -> Bool? in
                guard let setup = try? await NATSClient.connect(NATSConfiguration(servers: nats.urls), logger: Logger(label: "setup"))
                else {
                    return nil
                }
                let created = (try? await setup.ensureStream(StreamSettings(replicas: 3))) != nil
                await setup.close()
                return created ? true : nil
            }
            let cluster = try await ReplicaCluster.start(natsURL: urls, proxyArguments: ["--stream-replicas", "3"])
            do {
                var model = Model()
                var random = SeededRandom(seed: 88)
                try await cluster.createIndex("d", &model)
                try await cluster.randomWrites(&model, requests: 20, random: &random)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        await nats.kill(1)
                        try await Task.sleep(for: .seconds(2))
                        try await nats.restart(1)
                    }
                    try await cluster.randomWrites(&model, requests: 60, random: &random, retryUntilAcknowledged: true)
                    try await group.waitForAll()
                }
                try await cluster.randomWrites(&model, requests: 10, random: &random, retryUntilAcknowledged: true)
                try await cluster.waitConverged(timeout: .seconds(120))
                try await cluster.verify(model)
                #expect(try await cluster.inspector.streamInfo("fpindex")?.config.numReplicas == 3)
                await cluster.stop()
            } catch {
                print(cluster.output)
                await cluster.stop()
                throw error
            }
            await nats.stop()
        } catch {
            print(nats.output)
            await nats.stop()
            throw error
        }
    }
}
