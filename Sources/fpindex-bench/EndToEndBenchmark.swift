import ArgumentParser
import AsyncHTTPClient
import Foundation
import FpindexAPI
import JetStream
import NIOCore
import NIOHTTP1
import Synchronization

/// `fpindex-bench e2e`: steady writes through the proxy, and how long until every replica has them.
struct EndToEndBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "e2e",
        abstract: "Steady write load through fpindex-proxy with two replicas: write -> searchable on all replicas latency.")

    @Option(help: "Fingerprints written per second.")
    var rate: Int = 5000

    @Option(help: "Fingerprints per _update request.")
    var perRequest: Int = 50

    @Option(help: "Seconds of load.")
    var seconds: Int = 10

    @Option(help: "Replicas (fpindex-dev + updater pairs).")
    var replicas: Int = 2

    @Option(help: "nats-server executable.")
    var natsServer: String = ".tools/bin/nats-server"

    @Option(help: "Directory with release builds of fpindex-dev, fpindex-updater and fpindex-proxy.")
    var binaries: String = ".build/release"

    func run() async throws {
        let workspace = try BenchWorkspace(natsServer: natsServer)
        defer { workspace.close() }
        let work = workspace.path
        let natsURL = workspace.natsURL
        var servers: [ChildServer] = []
        defer { for server in servers.reversed() { server.stop() } }
        let client = try await connectNATS(natsURL)
        let proxy = try ChildServer.start(
            executable: binaries + "/fpindex-proxy", arguments: ["--listen", "127.0.0.1:0", "--log-level", "warning"],
            environment: [ComponentEnvironment.natsURL: natsURL, ComponentEnvironment.fpindexURL: "http://127.0.0.1:9"], readyMarker: "listening on ",
            logFile: work + "/proxy.log")
        servers.append(proxy)
        for n in 1...replicas {
            let dev = try ChildServer.start(
                executable: binaries + "/fpindex-dev", arguments: ["--port", "0", "--log-level", "warning"], readyMarker: "listening on ",
                logFile: work + "/dev\(n).log")
            servers.append(dev)
            servers.append(
                try ChildServer.start(
                    executable: binaries + "/fpindex-updater",
                    arguments: [
                        "--consumer", "replica-\(n)", "--fpindex-url", dev.url!, "--listen", "127.0.0.1:0", "--create-consumer",
                        "--batch-wait", "50",
                        "--log-level", "warning",
                    ],
                    environment: [ComponentEnvironment.natsURL: natsURL], readyMarker: "listening on ", logFile: work + "/updater\(n).log"))
        }
        let visibility = Visibility(replicas: replicas)
        let subscription = try await client.subscribe(subject: StreamSubjects(prefix: "fpindex").allApplied) { subject, payload in
            guard let applied = UInt64(String(decoding: payload, as: UTF8.self)) else { return }
            visibility.observe(replica: subject, applied: applied)
        }
        defer { subscription.cancel() }

        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { _ = http.shutdown() }
        let base = proxy.url!
        try await waitFor(http, base + ProbePath.ready)
        _ = try await send(http, .PUT, base + "/e2e", body: nil)

        // Fixed schedule: one request every `interval`, each in its own task so a slow reply does not delay the next.
        let requests = max(1, rate * seconds / perRequest)
        let interval = Duration.seconds(Double(perRequest) / Double(rate))
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for n in 0..<requests {
                try await Task.sleep(until: start + interval * n, clock: .continuous)
                group.addTask {
                    let first = UInt32(n * perRequest + 1)
                    let body = UpdateRequest(
                        changes: (first..<first + UInt32(perRequest)).map {
                            .insert(id: $0, hashes: Fingerprints.hashes(id: $0, count: 120))
                        })
                    let sent = ContinuousClock.now
                    let reply = try await send(http, .POST, base + "/e2e/_update", body: body.encoded(as: .msgpack))
                    guard reply.status == 200, let version = try? VersionResponse.decode(from: reply.body, format: .msgpack).version else {
                        throw BenchError("write failed: \(reply.status)")
                    }
                    visibility.expect(sequence: version, sentAt: sent)
                }
            }
            try await group.waitForAll()
        }
        let elapsed = (ContinuousClock.now - start).seconds
        let deadline = ContinuousClock.now + .seconds(60)
        while visibility.pendingCount > 0 {
            guard ContinuousClock.now < deadline else {
                throw BenchError("\(visibility.pendingCount) writes never became visible on every replica")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        await client.close()
        let latencies = visibility.latencies.sorted()
        let writesPerSecond = Double(requests * perRequest) / elapsed
        let p50 = latencies.isEmpty ? 0 : latencies[latencies.count / 2]
        let p99 = latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * 0.99))]
        printTable(
            "fpindex-bench e2e",
            [
                (
                    "load",
                    String(
                        format: "%.0f fingerprints/s for %.1f s (%d per request, %d requests)", writesPerSecond, elapsed, perRequest,
                        requests)
                ),
                ("replicas", "\(replicas) (fpindex-dev + fpindex-updater each)"),
                (
                    "write -> applied on every replica p50 / p99 / max",
                    String(format: "%.1f / %.1f / %.1f ms", p50, p99, latencies.last ?? 0)
                ),
            ])
        printJSON([
            ("bench", "\"e2e\""), ("writes_per_s", fmt(writesPerSecond, 1)), ("visible_p50_ms", fmt(p50, 2)),
            ("visible_p99_ms", fmt(p99, 2)),
        ])
    }

    func waitFor(_ http: HTTPClient, _ url: String) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while (try? await send(http, .GET, url, body: nil).status) != 200 {
            guard ContinuousClock.now < deadline else { throw BenchError("\(url) did not answer 200") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    func send(_ client: HTTPClient, _ method: HTTPMethod, _ url: String, body: [UInt8]?) async throws -> (status: Int, body: [UInt8]) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Accept", value: "application/vnd.msgpack")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/vnd.msgpack")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await client.execute(request, timeout: .seconds(60))
        let buffer = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), Array(buffer.readableBytesView))
    }
}

/// When each write became applied on every replica, from the updaters' announcements.
final class Visibility: Sendable {
    private struct State {
        var applied: [String: UInt64] = [:]
        var pending: [(sequence: UInt64, sentAt: ContinuousClock.Instant)] = []
        var latencies: [Double] = []
    }

    private let state = Mutex(State())
    let replicas: Int

    init(replicas: Int) { self.replicas = replicas }

    var pendingCount: Int { state.withLock { $0.pending.count } }
    var latencies: [Double] { state.withLock { $0.latencies } }

    func expect(sequence: UInt64, sentAt: ContinuousClock.Instant) {
        state.withLock { state in
            if Self.visible(sequence, state, replicas) {
                state.latencies.append((ContinuousClock.now - sentAt).seconds * 1000)
            } else {
                state.pending.append((sequence, sentAt))
            }
        }
    }

    func observe(replica: String, applied: UInt64) {
        let now = ContinuousClock.now
        state.withLock { state in
            state.applied[replica] = max(state.applied[replica] ?? 0, applied)
            let replicas = self.replicas
            let stillPending = state.pending.filter { !Self.visible($0.sequence, state, replicas) }
            for write in state.pending where Self.visible(write.sequence, state, replicas) {
                state.latencies.append((now - write.sentAt).seconds * 1000)
            }
            state.pending = stillPending
        }
    }

    private static func visible(_ sequence: UInt64, _ state: State, _ replicas: Int) -> Bool {
        state.applied.count >= replicas && state.applied.values.allSatisfy { $0 >= sequence }
    }
}
