import ArgumentParser
import AsyncHTTPClient
import Foundation
import FpindexAPI
import JetStream
import Logging
import NIOCore
import NIOHTTP1
import ProcessSpawning
import ReplicaConsumer
import Synchronization

/// `fpindex-bench replay`: how fast a new replica replays the whole stream, against raw cnats.
struct ReplayBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Fill the stream, measure raw cnats consume+ack, then a fresh fpindex-dev + updater replaying it all.")

    @Option(help: "Fingerprints in the stream.")
    var fingerprints: Int = 1_000_000

    @Option(help: "Hashes per fingerprint.")
    var hashes: Int = 120

    @Option(help: "Messages per fetch (raw consumer and updater; the updater's default).")
    var batch: Int = 4000

    @Option(
        help:
            "Rounds of raw then replay over the same stream; the round with the median ratio is reported (the machine's noise moves both).")
    var rounds: Int = 1

    @Option(help: "nats-server executable.")
    var natsServer: String = ".tools/bin/nats-server"

    @Option(help: "fpindex-dev executable (release build recommended).")
    var devBinary: String = ".build/release/fpindex-dev"

    @Option(help: "fpindex-updater executable (release build recommended).")
    var updaterBinary: String = ".build/release/fpindex-updater"

    func validate() throws {
        guard fingerprints > 0, hashes > 0, batch > 0 else {
            throw ValidationError("--fingerprints, --hashes and --batch must be positive")
        }
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
    }

    func run() async throws {
        let workspace = try BenchWorkspace(natsServer: natsServer)
        defer { workspace.close() }
        let work = workspace.path
        let natsURL = workspace.natsURL
        let client = try await connectNATS(natsURL)
        let stream = try await client.ensureStream(StreamSettings())
        let subjects = StreamSubjects()

        // Fill: the create record, then the fingerprints.
        _ = try await client.publish(subject: subjects.lifecycle("bench"), payload: LifecycleRecord(.create).payload)
        let chunk = 50_000
        var published = 0
        while published < fingerprints {
            let range = (published + 1)...min(published + chunk, fingerprints)
            _ = try await client.publishRawForBenchmark(
                range.map {
                    (
                        subjects.fingerprint("bench", id: UInt32($0)),
                        FingerprintRecord(hashes: Fingerprints.hashes(id: UInt32($0), count: hashes)).payload
                    )
                })
            published = range.upperBound
        }
        let filled = try await client.streamInfo(stream.config.name)?.state
        let total = filled?.messages ?? 0
        let last = filled?.lastSeq ?? 0

        var results: [Round] = []
        for round in 1...rounds {
            let raw = try await measureRaw(client, stream: stream.config.name, consumer: "raw-\(round)", total: total, nats: workspace.nats)
            let replay = try await measureReplay(
                client, natsURL: natsURL, consumer: "replica-\(round)", last: last, total: total, work: work, nats: workspace.nats)
            results.append(Round(raw: raw, replay: replay))
            _ = try await client.deleteConsumer(stream: stream.config.name, name: "raw-\(round)")
            _ = try await client.deleteConsumer(stream: stream.config.name, name: "replica-\(round)")
        }
        await client.close()

        let perThousand = { (seconds: Double?) in seconds.map { String(format: "%.1f ms", $0 * 1e6 / Double(total)) } ?? "?" }
        let reported = results.sorted { $0.ratio < $1.ratio }[results.count / 2]
        let peakRSS = results.map(\.replay.peakRSS).max() ?? 0
        let minutes = 100_000_000 / reported.replay.rate / 60
        var rows: [(String, String)] = [("messages in the stream", "\(total) (\(fingerprints) fingerprints x \(hashes) hashes)")]
        if results.count > 1 {
            for (number, result) in results.enumerated() {
                rows.append(
                    (
                        "round \(number + 1): raw / replay",
                        String(format: "%.0f / %.0f msg/s (ratio %.2f)", result.raw.rate, result.replay.rate, result.ratio)
                    ))
            }
        }
        let which = results.count > 1 ? " (median round)" : ""
        rows += [
            ("raw cnats fetch + ack-all" + which, String(format: "%.0f msg/s (batches of %d)", reported.raw.rate, batch)),
            (
                "fpindex-dev + updater replay" + which,
                String(
                    format: "%.0f fingerprints/s in %.1f s (ratio %.2f)", reported.replay.rate, reported.replay.seconds, reported.ratio)
            ),
            (
                "CPU per 1000 messages, raw",
                "nats-server \(perThousand(reported.raw.natsCPU)), consumer \(perThousand(reported.raw.consumerCPU))"
            ),
            (
                "CPU per 1000 messages replayed",
                "nats-server \(perThousand(reported.replay.natsCPU)), updater \(perThousand(reported.replay.updaterCPU)), "
                    + "fpindex-dev \(perThousand(reported.replay.devCPU))"
            ),
            ("updater peak RSS" + (results.count > 1 ? " (all rounds)" : ""), String(format: "%.0f MB", peakRSS)),
            ("100 M fingerprints at this rate", String(format: "%.0f minutes", minutes)),
        ]
        printTable("fpindex-bench replay", rows)
        printJSON([
            ("bench", "\"replay\""), ("fingerprints", "\(fingerprints)"), ("raw_per_s", fmt(reported.raw.rate, 1)),
            ("replay_per_s", fmt(reported.replay.rate, 1)),
            ("ratio", fmt(reported.ratio, 3)), ("updater_rss_mb", fmt(peakRSS, 0)), ("minutes_for_100m", fmt(minutes, 1)),
        ])
    }

    struct RawResult {
        var rate: Double
        var consumerCPU: Double?
        var natsCPU: Double?
    }

    struct ReplayResult {
        var rate: Double
        var seconds: Double
        var peakRSS: Double
        var natsCPU: Double?
        var updaterCPU: Double?
        var devCPU: Double?
    }

    struct Round {
        var raw: RawResult
        var replay: ReplayResult
        var ratio: Double { replay.rate / raw.rate }
    }

    /// Raw: one durable pull consumer, fetch and ack-all per batch, as the updater does.
    func measureRaw(_ client: NATSClient, stream: String, consumer name: String, total: UInt64, nats: ChildServer) async throws
        -> RawResult
    {
        _ = try await client.createConsumer(
            stream: stream, config: ReplicaConsumer.config(name: name, subjectPrefix: StreamSubjects().prefix, batch: batch))
        let consumer = try await client.bindPullConsumer(stream: stream, name: name)
        defer { consumer.close() }
        let start = ContinuousClock.now
        let cpuBefore = (Self.cpuSeconds(pid: getpid()), Self.cpuSeconds(pid: nats.pid))
        var consumed: UInt64 = 0
        while consumed < total {
            let fetched = try await consumer.fetch(batch: batch, timeout: .seconds(5))
            guard !fetched.messages.isEmpty else { throw BenchError("the raw consumer stalled at \(consumed) of \(total)") }
            try await fetched.acknowledgeAll(using: client)
            consumed += UInt64(fetched.messages.count)
        }
        let rate = Double(consumed) / (ContinuousClock.now - start).seconds
        return RawResult(
            rate: rate, consumerCPU: Self.cpuSeconds(pid: getpid()).flatMap { now in cpuBefore.0.map { now - $0 } },
            natsCPU: Self.cpuSeconds(pid: nats.pid).flatMap { now in cpuBefore.1.map { now - $0 } })
    }

    /// Replay: a fresh fpindex-dev and updater, timed until the updater has applied `last`.
    func measureReplay(
        _ client: NATSClient, natsURL: String, consumer name: String, last: UInt64, total: UInt64, work: String, nats: ChildServer
    ) async throws -> ReplayResult {
        let dev = try ChildServer.start(
            executable: devBinary, arguments: ["--port", "0", "--log-level", "warning"], readyMarker: "listening on ",
            logFile: work + "/dev-\(name).log")
        defer { dev.stop() }
        let start = ContinuousClock.now
        let natsCPUBefore = Self.cpuSeconds(pid: nats.pid)
        let updater = try ChildServer.start(
            executable: updaterBinary,
            arguments: [
                "--consumer", name, "--fpindex-url", dev.url!, "--listen", "127.0.0.1:0", "--create-consumer", "--batch", String(batch),
                "--log-level", "warning",
            ],
            environment: [ComponentEnvironment.natsURL: natsURL], readyMarker: "listening on ", logFile: work + "/updater-\(name).log")
        defer { updater.stop() }
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { _ = http.shutdown() }
        var peakRSS = 0.0
        while true {
            if let rss = Self.peakResidentMegabytes(pid: updater.pid) { peakRSS = max(peakRSS, rss) }
            var request = HTTPClientRequest(url: updater.url! + "/status")
            request.method = .GET
            if let response = try? await http.execute(request, timeout: .seconds(5)),
                let body = try? await response.body.collect(upTo: 1 << 20),
                let status = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any],
                let applied = status["applied_seq"] as? Int, UInt64(applied) >= last
            {
                break
            }
            guard updater.process.isRunning else { throw BenchError("the updater exited; see its log") }
            try await Task.sleep(for: .milliseconds(50))
        }
        let seconds = (ContinuousClock.now - start).seconds
        if let rss = Self.peakResidentMegabytes(pid: updater.pid) { peakRSS = max(peakRSS, rss) }
        // Where the two cores went: CPU seconds of each process.
        return ReplayResult(
            rate: Double(total) / seconds, seconds: seconds, peakRSS: peakRSS,
            natsCPU: Self.cpuSeconds(pid: nats.pid).flatMap { now in natsCPUBefore.map { now - $0 } },
            updaterCPU: Self.cpuSeconds(pid: updater.pid), devCPU: Self.cpuSeconds(pid: dev.pid))
    }

    /// User plus system CPU time of a process so far.
    static func cpuSeconds(pid: Int32) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let afterName = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after the command name: state is field 3, utime and stime are fields 14 and 15.
        let fields = stat[stat.index(after: afterName)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func peakResidentMegabytes(pid: Int32) -> Double? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "")
        else { return nil }
        return kilobytes / 1024
    }
}

/// Connects to a nats-server that may still be starting.
func connectNATS(_ url: String) async throws -> NATSClient {
    let deadline = ContinuousClock.now + .seconds(20)
    while true {
        do {
            return try await NATSClient.connect(NATSConfiguration(servers: [url]), logger: Logger(label: "bench"))
        } catch {
            if ContinuousClock.now > deadline { throw error }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}

/// A benchmark's scratch folder and its nats-server, removed and stopped by `close()`.
final class BenchWorkspace {
    let path: String
    let nats: ChildServer
    let natsURL: String

    init(natsServer: String) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("fpindex-bench-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let port = try freePort()
        nats = try ChildServer.start(
            executable: natsServer, arguments: ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", path + "/nats"], readyMarker: nil,
            logFile: path + "/nats.log")
        natsURL = "nats://127.0.0.1:\(port)"
    }

    func close() {
        nats.stop()
        try? FileManager.default.removeItem(atPath: path)
    }
}
