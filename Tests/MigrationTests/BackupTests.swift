import Foundation
import FpindexAPI
import JetStream
import TestSupport
import Testing

/// `fpindex-backup` on a real nats-server: the restored stream holds what the original held,
/// deleted indexes stay deleted, a damaged file is refused before anything is published, and a
/// restore never writes into a stream that holds messages.
@Suite(.timeLimit(.minutes(10))) struct BackupTests {
    let subjects = StreamSubjects()

    @Test func aRestoredStreamHoldsWhatTheOriginalHeld() async throws {
        try await withNATSServer { nats in
            let directory = try TemporaryDirectory.make(prefix: "backup")
            defer { TemporaryDirectory.remove(directory) }
            let client = try await connect(nats.url)
            defer { Task { await client.close() } }
            try await client.ensureStream(StreamSettings())
            for index in ["kept", "gone"] {
                _ = try await client.publish(subject: subjects.lifecycle(index), payload: LifecycleRecord(.create).payload)
                for id in UInt32(1)...500 {
                    _ = try await client.publish(
                        subject: subjects.fingerprint(index, id: id), payload: FingerprintRecord(hashes: ExportFile.hashes(id)).payload)
                }
            }
            _ = try await client.publish(subject: subjects.fingerprint("kept", id: 7), payload: FingerprintRecord.tombstone.payload)
            _ = try await client.publish(subject: subjects.metadata("kept", key: "k"), payload: MetadataRecord(value: "v").payload)
            // An index deleted as the proxy deletes it: the delete record, then a purge below it.
            let delete = try await client.publish(subject: subjects.lifecycle("gone"), payload: LifecycleRecord(.delete).payload)
            try await client.purge(stream: "fpindex", filter: subjects.indexContents("gone"), upTo: delete.sequence)

            let backup = directory + "/fpindex.fpbak"
            let created = try await runTool("fpindex-backup", ["create", backup], natsURL: nats.url)
            #expect(created.status == 0, "\(created.stdout)\(created.stderr)")
            #expect(!FileManager.default.fileExists(atPath: backup + ".partial"))
            let original = try await streamContent(client, stream: "fpindex", prefix: "fpindex")
            #expect(try created.int("records") == original.count)

            // Into the same name on a fresh stream (after the original is gone), and into a new name and prefix.
            let intoNew = try await runTool(
                "fpindex-backup", ["restore", "--stream", "copy", "--subject-prefix", "copy", backup], natsURL: nats.url)
            #expect(intoNew.status == 0, "\(intoNew.stdout)\(intoNew.stderr)")
            #expect(try await streamContent(client, stream: "copy", prefix: "copy") == original)
            try await client.deleteStream("fpindex")
            let intoSame = try await runTool("fpindex-backup", ["restore", backup], natsURL: nats.url)
            #expect(intoSame.status == 0, "\(intoSame.stdout)\(intoSame.stderr)")
            #expect(try await streamContent(client, stream: "fpindex", prefix: "fpindex") == original)
            #expect(try await client.lastMessage(stream: "fpindex", subject: subjects.fingerprint("gone", id: 1)) == nil)

            // A stream that holds messages is never written to.
            let refused = try await runTool("fpindex-backup", ["restore", backup], natsURL: nats.url)
            #expect(refused.status == 2)
            #expect(refused.stderr.contains("a restore goes into an empty stream"), "\(refused.stderr)")
            // Nor is a purged one: it keeps its identity, so replicas would not rebuild from it.
            try await client.purge(stream: "fpindex", filter: ">")
            let purged = try await runTool("fpindex-backup", ["restore", backup], natsURL: nats.url)
            #expect(purged.status == 2)
            #expect(purged.stderr.contains("was purged, not deleted"), "\(purged.stderr)")
            #expect(try await client.streamInfo("fpindex")?.state.messages == 0)

            // A damaged or cut file is refused before anything is published.
            var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: backup)))
            bytes[bytes.count / 2] ^= 0x5a
            let damaged = directory + "/damaged.fpbak"
            _ = FileManager.default.createFile(atPath: damaged, contents: Data(bytes))
            let cut = directory + "/cut.fpbak"
            _ = FileManager.default.createFile(atPath: cut, contents: Data(bytes.prefix(bytes.count - 20)))
            // A header still valid JSON, naming another stream: the checksum covers it too.
            var header = try [UInt8](Data(contentsOf: URL(fileURLWithPath: backup)))
            let name = Array("\"fpindex\"".utf8)
            let at = try #require((0...(header.count - name.count)).first { Array(header[$0..<($0 + name.count)]) == name })
            header[at + name.count - 2] = UInt8(ascii: "y")
            let relabelled = directory + "/relabelled.fpbak"
            _ = FileManager.default.createFile(atPath: relabelled, contents: Data(header))
            for file in [damaged, cut, relabelled] {
                let run = try await runTool(
                    "fpindex-backup", ["restore", "--stream", "other", "--subject-prefix", "other", file], natsURL: nats.url)
                #expect(run.status == 2)
                #expect(run.stderr.contains("damaged") || run.stderr.contains("incomplete"), "\(run.stderr)")
                #expect(try await client.streamInfo("other") == nil)
            }
        }
    }

    /// The runbook's disaster: the stream is lost and restored from a backup under its own name.
    /// The replica's index was fed from a stream of another identity, so its updater rebuilds it
    /// from the restored stream, and what it held beyond the stream is gone.
    @Test(arguments: IndexServerKind.all)
    func aReplicaRebuildsFromARestoredStream(server: IndexServerKind) async throws {
        try await withNATSServer { nats in
            let directory = try TemporaryDirectory.make(prefix: "rebuild")
            defer { TemporaryDirectory.remove(directory) }
            try await ExportFile.write(path: directory + "/rows.copy", count: 2000)
            #expect(try await runTool("fpindex-import", ["--index", "main", directory + "/rows.copy"], natsURL: nats.url).status == 0)
            let backup = directory + "/stream.fpbak"
            #expect(try await runTool("fpindex-backup", ["create", backup], natsURL: nats.url).status == 0)
            let client = try await connect(nats.url)
            defer { Task { await client.close() } }
            var replica = try await TestReplica.start(name: "r", server: server, natsURL: nats.url)
            do {
                try await replica.waitCaughtUp(client)
                // Something only this replica holds, written behind its updater's back.
                #expect(try await TestHTTPClient(baseURL: replica.url).json(.PUT, "/main/999999", #"{"hashes":[5,6,7]}"#).status == 200)

                await replica.updater.stop()
                try await client.deleteStream("fpindex")
                let restored = try await runTool("fpindex-backup", ["restore", backup], natsURL: nats.url)
                #expect(restored.status == 0, "\(restored.stdout)\(restored.stderr)")
                replica = try await replica.restartUpdater(natsURL: nats.url)
                try await replica.waitCaughtUp(client)
                let verified = try await runTool("fpindex-verify", ["--index", "main", "--fpindex-url", replica.url], natsURL: nats.url)
                #expect(verified.status == 0, "\(verified.stdout)\(verified.stderr)")
                #expect(try verified.int("matching") == 2000)
                #expect(try verified.int("replica_documents") == 2000, "the rebuilt index holds the stream's fingerprints only")
                #expect(replica.updater.output.contains("another stream"), "\(replica.updater.output)")
            } catch {
                print(replica.updater.output)
                await replica.stop()
                throw error
            }
            await replica.stop()
        }
    }
}
