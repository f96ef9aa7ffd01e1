import Foundation
import FpindexAPI
import JetStream
import TestSupport
import Testing

/// `fpindex-verify` against replicas fed by real updaters, on fpindex-dev and the real fpindex.
@Suite(.timeLimit(.minutes(10))) struct VerifyTests {
    let subjects = StreamSubjects()

    /// A replica that matches passes; one changed behind its updater's back fails, naming each
    /// id by what is wrong with it.
    @Test(arguments: IndexServerKind.all)
    func differencesAreFoundAndNamed(server: IndexServerKind) async throws {
        try await withNATSServer { nats in
            let count = 1500
            let client = try await connect(nats.url)
            defer { Task { await client.close() } }
            try await withImportedExport(count: count, natsURL: nats.url) { _ in
                // Another index, three times as large: the A/B sample is spread over this index alone.
                _ = try await client.publish(subject: subjects.lifecycle("other"), payload: LifecycleRecord(.create).payload)
                let others = (UInt32(1)...UInt32(3 * count)).map {
                    BatchMessage(
                        subject: subjects.fingerprint("other", id: $0), payload: FingerprintRecord(hashes: ExportFile.hashes($0)).payload)
                }
                #expect(await client.publishBatch(others).allSatisfy { (try? $0.get()) != nil })
                try await withCaughtUpReplicas([("a", server), ("b", server)], natsURL: nats.url, client: client) { replicas in
                    let (replica, other) = (replicas[0], replicas[1])
                    let clean = try await runTool(
                        "fpindex-verify",
                        ["--index", "main", "--fpindex-url", replica.url, "--compare", other.url, "--compare-sources", "200"],
                        natsURL: nats.url)
                    #expect(clean.status == 0, "\(clean.stdout)\(clean.stderr)")
                    #expect(try clean.int("checked") == count)
                    #expect(try clean.int("matching") == count)
                    #expect(try clean.int("compare_queries") == 600)
                    #expect(try clean.int("compare_different_top") == 0)

                    // Behind the updater's back: one fingerprint changed, one removed, and one deleted
                    // in the stream that the (stopped) updater never applies.
                    await replica.updater.stop()
                    let http = TestHTTPClient(baseURL: replica.url)
                    #expect(try await http.json(.PUT, "/main/700", #"{"hashes":[1,2,3]}"#).status == 200)
                    #expect(try await http.json(.DELETE, "/main/800").status == 200)
                    _ = try await client.publish(
                        subject: subjects.fingerprint("main", id: 900), payload: FingerprintRecord.tombstone.payload)
                    let dirty = try await runTool(
                        "fpindex-verify",
                        ["--index", "main", "--fpindex-url", replica.url, "--compare", other.url, "--compare-sources", "1500"],
                        natsURL: nats.url)
                    #expect(dirty.status == 1, "\(dirty.stdout)\(dirty.stderr)")
                    let report = try dirty.lastJSON()
                    #expect(report["stale_ids"] as? [Int] == [700])
                    #expect(report["missing_ids"] as? [Int] == [800])
                    #expect(report["extra_ids"] as? [Int] == [900])
                    #expect(try dirty.int("matching") == count - 3)
                    #expect(dirty.stdout.contains("stale     1: 700"))
                    // The A/B check sees the changed fingerprints as other top results.
                    #expect(try dirty.int("compare_different_top") > 0)
                    #expect(((report["compare_differing_source_ids"] as? [Int]) ?? []).allSatisfy { [700, 800].contains($0) })
                }
            }
        }
    }

    /// The A/B check of a migration between fpindex-dev and the real fpindex fed the same stream:
    /// whole, partial and noisy queries get the same top result (id and score) from both, which
    /// also holds fpindex-dev's ranking to the real one's. Runs when the real fpindex is here.
    @Test(arguments: IndexServerKind.all.filter { if case .real = $0 { true } else { false } })
    func fpindexDevAndTheRealFpindexRankAlike(real: IndexServerKind) async throws {
        try await withNATSServer { nats in
            let client = try await connect(nats.url)
            defer { Task { await client.close() } }
            try await withImportedExport(count: 3000, natsURL: nats.url) { _ in
                try await withCaughtUpReplicas([("dev", .dev), ("real", real)], natsURL: nats.url, client: client) { replicas in
                    let run = try await runTool(
                        "fpindex-verify",
                        ["--index", "main", "--fpindex-url", replicas[1].url, "--compare", replicas[0].url, "--compare-sources", "1000"],
                        natsURL: nats.url)
                    #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
                    #expect(try run.int("matching") == 3000)
                    #expect(try run.int("compare_queries") == 3000)
                    #expect(try run.int("compare_different_top") == 0)
                }
            }
        }
    }

    @Test func badUsageIsAClearError() async throws {
        try await withNATSServer { nats in
            let noIndex = try await runTool(
                "fpindex-verify", ["--index", "nothing", "--fpindex-url", "http://127.0.0.1:9"], natsURL: nats.url)
            #expect(noIndex.status == 2)
            #expect(noIndex.stderr.contains("does not exist"), "\(noIndex.stderr)")
            let badSample = try await runTool("fpindex-verify", ["--index", "x", "--sample", "200%"], natsURL: nats.url)
            #expect(badSample.status != 0)
            #expect(badSample.stderr.contains("--sample"))
        }
    }
}
