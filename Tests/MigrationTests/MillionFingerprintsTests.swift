import Foundation
import FpindexAPI
import JetStream
import StreamMigration
import TestSupport
import Testing

/// Issue #17's whole migration at its size: a COPY export of a million fingerprints with bad
/// rows goes into the stream, a replica fed from it passes verification, a replica changed behind
/// its updater's back fails it, and a backup restored into a new stream feeds a replica that
/// passes verification against the original stream.
@Suite(.timeLimit(.minutes(20))) struct MillionFingerprintsTests {
    static let count = 1_000_000
    /// Every process of this test runs under `nice`: it keeps both cores busy for minutes, and the
    /// rest of the suite (servers inside the test process, with time limits) goes first.
    static let niceness = 10
    static let badLines: [Int: String] = [
        1_234: "1234\t{1,2,three}", 500_000: "500000\t{4294967296}", 999_999: "not a row",
    ]

    @Test func aMillionFingerprintsImportVerifyAndSurviveABackup() async throws {
        try await withNATSServer(niceness: Self.niceness) { nats in
            let directory = try TemporaryDirectory.make(prefix: "million")
            defer { TemporaryDirectory.remove(directory) }
            let file = directory + "/fingerprints.copy"
            try await ExportFile.write(path: file, count: Self.count, bad: Self.badLines)
            let client = try await connect(nats.url)
            defer { Task { await client.close() } }

            let imported = try await runTool(
                "fpindex-import", ["--index", "main", "--on-error", "skip", file], natsURL: nats.url, niceness: Self.niceness)
            #expect(imported.status == 1, "bad rows were skipped: \(imported.stdout)\(imported.stderr)")
            for line in Self.badLines.keys.sorted() { #expect(imported.stderr.contains("line \(line):"), "line \(line) is reported") }
            #expect(try imported.int("bad_rows") == 3)
            #expect(try imported.int("published") == Self.count - 3)
            print(imported.stdout)

            // A sample keeps a million-fingerprint verification short; ids are chosen by a hash,
            // so the fingerprint changed below is picked from the sample the tool checks.
            let sample = "1%"
            let replica = try await TestReplica.start(name: "first", server: .dev, natsURL: nats.url, niceness: Self.niceness)
            var replicas = [replica]
            do {
                try await replica.waitCaughtUp(client)
                let passed = try await runTool(
                    "fpindex-verify", ["--index", "main", "--fpindex-url", replica.url, "--sample", sample], natsURL: nats.url,
                    niceness: Self.niceness)
                #expect(passed.status == 0, "\(passed.stdout)\(passed.stderr)")
                #expect(try passed.int("stream_fingerprints") == Self.count - 3)
                let checked = try passed.int("checked")
                #expect(checked > 8_000 && checked < 12_000, "about 1% of the fingerprints")
                #expect(try passed.int("matching") == checked)

                let changed = try #require(
                    (UInt32(2)...UInt32(100_000)).first { id in
                        VerifyOptions(index: "main", sample: 0.01).isSampled(id) && Self.badLines[Int(id)] == nil
                    })
                await replica.updater.stop()
                let put = try await TestHTTPClient(baseURL: replica.url).json(.PUT, "/main/\(changed)", #"{"hashes":[11,22,33]}"#)
                #expect(put.status == 200)
                let failed = try await runTool(
                    "fpindex-verify", ["--index", "main", "--fpindex-url", replica.url, "--sample", sample], natsURL: nats.url,
                    niceness: Self.niceness)
                #expect(failed.status == 1)
                #expect(try failed.lastJSON()["stale_ids"] as? [Int] == [Int(changed)])
                #expect(try failed.int("stale") == 1)

                // Back up, restore into a new stream with its own subjects, feed a new replica from it.
                let backup = directory + "/stream.fpbak"
                let created = try await runTool("fpindex-backup", ["create", backup], natsURL: nats.url, niceness: Self.niceness)
                #expect(created.status == 0, "\(created.stdout)\(created.stderr)")
                #expect(try created.int("records") == Self.count - 3 + 1)  // the fingerprints and the create record
                let restored = try await runTool(
                    "fpindex-backup", ["restore", "--stream", "restored", "--subject-prefix", "restored", backup], natsURL: nats.url,
                    niceness: Self.niceness)
                #expect(restored.status == 0, "\(restored.stdout)\(restored.stderr)")
                #expect(try restored.int("stream_messages") == Self.count - 3 + 1)
                // Subject by subject equality is BackupTests' (a million would double this test's time).
                let original = try #require(try await client.streamInfo("fpindex")).state
                let copy = try #require(try await client.streamInfo("restored")).state
                #expect(copy.messages == original.messages)
                var random = SeededRandom(seed: 5)
                for _ in 0..<200 {
                    let id = UInt32.random(in: 1...UInt32(Self.count), using: &random)
                    let a = try await client.lastMessage(
                        stream: "fpindex", subject: "fpindex.main.\(String(id, radix: 16).leftPadded(to: 8))")
                    let b = try await client.lastMessage(
                        stream: "restored", subject: "restored.main.\(String(id, radix: 16).leftPadded(to: 8))")
                    #expect(a?.payload == b?.payload, "fingerprint \(id)")
                }

                let rebuilt = try await TestReplica.start(
                    name: "rebuilt", server: .dev, natsURL: nats.url, stream: "restored", prefix: "restored")
                replicas.append(rebuilt)
                try await rebuilt.waitCaughtUp(client, stream: "restored")
                let verified = try await runTool(
                    "fpindex-verify", ["--index", "main", "--fpindex-url", rebuilt.url, "--sample", sample], natsURL: nats.url,
                    niceness: Self.niceness)
                #expect(verified.status == 0, "the rebuilt replica matches the original stream: \(verified.stdout)\(verified.stderr)")
                #expect(try verified.int("matching") == checked)
            } catch {
                for replica in replicas { print(replica.updater.output) }
                for replica in replicas { await replica.stop() }
                throw error
            }
            for replica in replicas { await replica.stop() }
        }
    }
}
