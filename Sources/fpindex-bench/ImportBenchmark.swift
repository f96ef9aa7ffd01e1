import ArgumentParser
import Foundation
import FpindexAPI
import JetStream
import Logging
import StreamMigration

/// `fpindex-bench import`: fpindex-import's rate from a PostgreSQL COPY file against raw cnats
/// publishing of the same messages, in one run.
struct ImportBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Raw cnats async publish vs. fpindex-import of the same fingerprints from a COPY file (read, parsed, fenced, published).")

    @Option(help: "Fingerprints (rows) per phase.")
    var rows: Int = 200_000

    @Option(help: "Hashes per fingerprint.")
    var hashes: Int = 120

    @Option(help: "Rounds of (raw, import); the figures are the medians.")
    var rounds: Int = 3

    @Option(help: "nats-server executable to start.")
    var natsServer: String = ".tools/bin/nats-server"

    func run() async throws {
        let workspace = try BenchWorkspace(natsServer: natsServer)
        defer { workspace.close() }
        let client = try await connectNATS(workspace.natsURL)
        let settings = StreamSettings()
        try await client.ensureStream(settings)
        let subjects = StreamSubjects()

        // The export and the raw messages are made before any clock starts.
        let file = workspace.path + "/fingerprints.copy"
        var text: [UInt8] = []
        var payloads: [[UInt8]] = []
        for id in 1...rows {
            let fingerprint = Fingerprints.hashes(id: UInt32(id), count: hashes)
            payloads.append(FingerprintRecord(hashes: fingerprint).payload)
            text += Array("\(id)\t{\(fingerprint.map { String(Int32(bitPattern: $0)) }.joined(separator: ","))}\n".utf8)
        }
        _ = FileManager.default.createFile(atPath: file, contents: Data(text))

        var rawRates: [Double] = []
        var rawFencedRates: [Double] = []
        var importRates: [Double] = []
        var fencedRates: [Double] = []
        var unfencedRates: [Double] = []
        let logger = Logger(label: "bench")
        for round in 1...rounds {
            let raw = payloads.enumerated().map {
                (subject: subjects.fingerprint("raw\(round)", id: UInt32($0.offset + 1)), payload: $0.element)
            }
            rawRates.append(Double(rows) / (try await client.publishRawForBenchmark(raw)).seconds)
            // Every phase starts on an empty stream: a later phase must not pay for a fuller one.
            try await client.purge(stream: settings.name, filter: subjects.all)
            rawFencedRates.append(Double(rows) / (try await client.publishRawForBenchmark(raw, fence: 0)).seconds)
            try await client.purge(stream: settings.name, filter: subjects.all)
            // The same messages through publishBatch, unfenced then fenced as the import fences
            // them: where the gap to raw goes (the Swift publish path, the fence), without the file.
            for (fence, phase) in [(nil, "unfenced"), (UInt64(0), "fenced")] as [(UInt64?, String)] {
                let messages = payloads.enumerated().map {
                    BatchMessage(
                        subject: subjects.fingerprint("\(phase)\(round)", id: UInt32($0.offset + 1)), payload: $0.element,
                        expectedLastSubjectSequence: fence)
                }
                let start = ContinuousClock.now
                for chunk in stride(from: 0, to: messages.count, by: 4096) {
                    _ = await client.publishBatch(Array(messages[chunk..<min(chunk + 4096, messages.count)]))
                }
                let rate = Double(rows) / (ContinuousClock.now - start).seconds
                if fence == nil { unfencedRates.append(rate) } else { fencedRates.append(rate) }
                try await client.purge(stream: settings.name, filter: subjects.all)
            }
            let importer = StreamImporter(client: client, stream: settings, options: ImportOptions(index: "import\(round)"), logger: logger)
            let start = ContinuousClock.now
            let summary = try await importer.run(
                input: try ImportInput(path: file), progress: ProgressReporter(label: "import", unit: "rows", enabled: false))
            let elapsed = (ContinuousClock.now - start).seconds
            guard summary.published == rows else { throw BenchError("the import published \(summary.published) of \(rows) rows") }
            importRates.append(Double(rows) / elapsed)
            try await client.purge(stream: settings.name, filter: subjects.all)
        }
        await client.close()
        let rawRate = median(rawRates)
        let rawFencedRate = median(rawFencedRates)
        let importRate = median(importRates)
        let fencedRate = median(fencedRates)
        let unfencedRate = median(unfencedRates)
        printTable(
            "fpindex-bench import",
            [
                (
                    "rows per phase",
                    "\(rows) x \(hashes) hashes (\(payloads.first?.count ?? 0) B messages, \(text.count / 1_048_576) MiB of COPY text), median of \(rounds) rounds"
                ),
                (
                    "raw cnats async publish",
                    String(format: "%.0f msg/s (rounds: %@)", rawRate, rawRates.map { fmt($0, 0) }.joined(separator: ", "))
                ),
                (
                    "raw cnats, fenced",
                    String(
                        format: "%.0f msg/s (ratio %.2f; with the import's Nats-Expected-Last-Subject-Sequence header)", rawFencedRate,
                        rawFencedRate / rawRate)
                ),
                (
                    "publishBatch",
                    String(
                        format: "%.0f msg/s unfenced (ratio %.2f), %.0f fenced (ratio %.2f)", unfencedRate, unfencedRate / rawRate,
                        fencedRate, fencedRate / rawRate)
                ),
                (
                    "fpindex-import (pgcopy)",
                    String(
                        format: "%.0f rows/s (ratio %.2f, %.2f of raw fenced; rounds: %@)", importRate, importRate / rawRate,
                        importRate / rawFencedRate,
                        importRates.map { fmt($0, 0) }.joined(separator: ", "))
                ),
            ])
        printJSON([
            ("bench", "\"import\""), ("rows", "\(rows)"), ("import_per_s", fmt(importRate, 1)), ("raw_per_s", fmt(rawRate, 1)),
            ("raw_fenced_per_s", fmt(rawFencedRate, 1)), ("unfenced_per_s", fmt(unfencedRate, 1)), ("fenced_per_s", fmt(fencedRate, 1)),
            ("ratio", fmt(importRate / rawRate, 3)), ("ratio_to_raw_fenced", fmt(importRate / rawFencedRate, 3)),
        ])
    }

    func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
    }
}
