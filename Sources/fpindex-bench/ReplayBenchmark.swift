import ArgumentParser
import AsyncHTTPClient
import Foundation
import FpindexAPI
import JetStream
import Logging
import NIOCore
import NIOHTTP1
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

    @Option(help: "nats-server executable.")
    var natsServer: String = ".tools/bin/nats-server"

    @Option(help: "fpindex-dev executable (release build recommended).")
    var devBinary: String = ".build/release/fpindex-dev"

    @Option(help: "fpindex-updater executable (release build recommended).")
    var updaterBinary: String = ".build/release/fpindex-updater"

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
        let total = try await client.streamInfo(stream.config.name)?.state.messages ?? 0

        // Raw: one durable pull consumer, fetch and ack-all per batch, as the updater does.
        _ = try await client.createConsumer(
            stream: stream.config.name, config: ConsumerConfig(durableName: "raw", filterSubject: subjects.all, batch: batch))
        let consumer = try await client.bindPullConsumer(stream: stream.config.name, name: "raw")
        let rawStart = ContinuousClock.now
        let rawCPUBefore = (Self.cpuSeconds(pid: getpid()) ?? 0, Self.cpuSeconds(pid: workspace.nats.pid) ?? 0)
        var consumed: UInt64 = 0
        while consumed < total {
            let fetched = try await consumer.fetch(batch: batch, timeout: .seconds(5))
            guard !fetched.messages.isEmpty else { throw BenchError("the raw consumer stalled at \(consumed) of \(total)") }
            try await fetched.acknowledgeAll(using: client)
            consumed += UInt64(fetched.messages.count)
        }
        let rawRate = Double(consumed) / (ContinuousClock.now - rawStart).seconds
        let rawCPU = (
            (Self.cpuSeconds(pid: getpid()) ?? 0) - rawCPUBefore.0, (Self.cpuSeconds(pid: workspace.nats.pid) ?? 0) - rawCPUBefore.1
        )
        consumer.close()

        // Replay: a fresh fpindex-dev and updater.
        let dev = try ChildServer.start(
            executable: devBinary, arguments: ["--port", "0", "--log-level", "warning"], readyMarker: "listening on ",
            logFile: work + "/dev.log")
        defer { dev.stop() }
        let replayStart = ContinuousClock.now
        let natsCPUBefore = Self.cpuSeconds(pid: workspace.nats.pid) ?? 0
        let updater = try ChildServer.start(
            executable: updaterBinary,
            arguments: [
                "--consumer", "replica", "--fpindex-url", dev.url!, "--listen", "127.0.0.1:0", "--create-consumer", "--batch",
                String(batch),
                "--log-level", "warning",
            ],
            environment: ["NATS_URL": natsURL], readyMarker: "listening on ", logFile: work + "/updater.log")
        defer { updater.stop() }
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { _ = http.shutdown() }
        let last = try await client.streamInfo(stream.config.name)?.state.lastSeq ?? 0
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
        let replaySeconds = (ContinuousClock.now - replayStart).seconds
        // Where the two cores went: CPU seconds of each process per 1000 messages replayed.
        let perThousand = { (seconds: Double?) in seconds.map { String(format: "%.1f ms", $0 * 1e6 / Double(total)) } ?? "?" }
        let cpu = [
            "nats-server " + perThousand(Self.cpuSeconds(pid: workspace.nats.pid).map { $0 - natsCPUBefore }),
            "updater " + perThousand(Self.cpuSeconds(pid: updater.pid)),
            "fpindex-dev " + perThousand(Self.cpuSeconds(pid: dev.pid)),
        ].joined(separator: ", ")
        let replayRate = Double(total) / replaySeconds
        if let rss = Self.peakResidentMegabytes(pid: updater.pid) { peakRSS = max(peakRSS, rss) }
        await client.close()

        let minutes = 100_000_000 / replayRate / 60
        printTable(
            "fpindex-bench replay",
            [
                ("messages in the stream", "\(total) (\(fingerprints) fingerprints x \(hashes) hashes)"),
                ("raw cnats fetch + ack-all", String(format: "%.0f msg/s (batches of %d)", rawRate, batch)),
                (
                    "fpindex-dev + updater replay",
                    String(format: "%.0f fingerprints/s in %.1f s (ratio %.2f)", replayRate, replaySeconds, replayRate / rawRate)
                ),
                ("CPU per 1000 messages, raw", "nats-server \(perThousand(rawCPU.1)), consumer \(perThousand(rawCPU.0))"),
                ("CPU per 1000 messages replayed", cpu),
                ("updater peak RSS", String(format: "%.0f MB", peakRSS)),
                ("100 M fingerprints at this rate", String(format: "%.0f minutes", minutes)),
            ])
        printJSON([
            ("bench", "\"replay\""), ("fingerprints", "\(fingerprints)"), ("raw_per_s", fmt(rawRate, 1)),
            ("replay_per_s", fmt(replayRate, 1)),
            ("ratio", fmt(replayRate / rawRate, 3)), ("updater_rss_mb", fmt(peakRSS, 0)), ("minutes_for_100m", fmt(minutes, 1)),
        ])
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
