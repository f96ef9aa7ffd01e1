import ArgumentParser
import AsyncHTTPClient
import Foundation
import FpindexAPI
import JetStream
import Logging
import NIOCore
import NIOHTTP1

/// `fpindex-bench proxy`: the proxy's write rate against raw cnats publishing, in one run.
struct ProxyBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxy",
        abstract: "Raw cnats async publish vs. the same fingerprints through fpindex-proxy (msgpack and JSON _update), plus PUT latency.")

    @Option(help: "Fingerprints per phase.")
    var fingerprints: Int = 100_000

    @Option(help: "Hashes per fingerprint.")
    var hashes: Int = 120

    @Option(help: "Changes per _update request.")
    var batch: Int = 1000

    @Option(help: "Concurrent HTTP clients.")
    var clients: Int = 4

    @Option(help: "Rounds of (raw, msgpack, JSON); the figures are the medians, which evens out a noisy machine.")
    var rounds: Int = 3

    @Option(help: "Single PUT /:index/:id requests for the latency figures.")
    var puts: Int = 2000

    @Option(help: "nats-server executable to start.")
    var natsServer: String = ".tools/bin/nats-server"

    @Option(help: "fpindex-proxy executable to start (release build recommended).")
    var proxyBinary: String = ".build/release/fpindex-proxy"

    func run() async throws {
        let workspace = try BenchWorkspace(natsServer: natsServer)
        defer { workspace.close() }
        let work = workspace.path
        let natsURL = workspace.natsURL
        let client = try await connectNATS(natsURL)
        try await client.ensureStream(StreamSettings())
        let subjects = StreamSubjects()

        let payloads = (1...fingerprints).map { id in FingerprintRecord(hashes: Fingerprints.hashes(id: UInt32(id), count: hashes)).payload
        }
        let proxy = try ChildServer.start(
            executable: proxyBinary, arguments: ["--listen", "127.0.0.1:0", "--log-level", "warning"],
            environment: [ComponentEnvironment.natsURL: natsURL, ComponentEnvironment.fpindexURL: "http://127.0.0.1:9"], readyMarker: "listening on ",
            logFile: work + "/proxy.log")
        defer { proxy.stop() }
        let base = proxy.url!
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { _ = http.shutdown() }
        try await waitReady(http, base)
        let msgpackBodies = bodies(format: .msgpack)
        let jsonBodies = bodies(format: .json)
        var rawRates: [Double] = []
        var msgpackRates: [Double] = []
        var jsonRates: [Double] = []
        for round in 1...rounds {
            // (a) raw cnats, (b) the proxy with MessagePack, (c) the proxy with JSON; the stream
            // is purged between rounds so every round starts alike.
            let raw = payloads.enumerated().map {
                (subject: subjects.fingerprint("raw\(round)", id: UInt32($0.offset + 1)), payload: $0.element)
            }
            rawRates.append(Double(fingerprints) / (try await client.publishRawForBenchmark(raw)).seconds)
            msgpackRates.append(
                try await load(http, base, index: "mp\(round)", bodies: msgpackBodies, contentType: "application/vnd.msgpack"))
            jsonRates.append(try await load(http, base, index: "js\(round)", bodies: jsonBodies, contentType: "application/json"))
            try await client.purge(stream: "fpindex", filter: "fpindex.>")
        }
        let rawRate = median(rawRates)
        let msgpackRate = median(msgpackRates)
        let jsonRate = median(jsonRates)

        var putLatencies: [Double] = []
        _ = try await send(http, .PUT, "\(base)/put", body: nil, contentType: nil)
        for n in 0..<puts {
            let body = PutFingerprintRequest(hashes: Fingerprints.hashes(id: UInt32(n + 1), count: hashes)).encoded(as: .msgpack)
            let start = ContinuousClock.now
            let reply = try await send(http, .PUT, "\(base)/put/\(n + 1)", body: body, contentType: "application/vnd.msgpack")
            putLatencies.append((ContinuousClock.now - start).seconds * 1000)
            guard reply.status == 200 else { throw BenchError("PUT failed: \(reply.status) \(reply.text)") }
        }
        putLatencies.sort()
        let rss = IndexBenchmark.residentMegabytes(pid: proxy.pid)
        await client.close()

        let p50 = percentile(putLatencies, 0.5)
        let p99 = percentile(putLatencies, 0.99)
        let rows: [(String, String)] = [
            (
                "fingerprints per phase",
                "\(fingerprints) x \(hashes) hashes (\(payloads.first?.count ?? 0) B messages), median of \(rounds) rounds"
            ),
            (
                "raw cnats async publish",
                String(format: "%.0f msg/s (rounds: %@)", rawRate, rawRates.map { fmt($0, 0) }.joined(separator: ", "))
            ),
            (
                "proxy msgpack _update",
                String(
                    format: "%.0f fingerprints/s (ratio %.2f; %d clients, %d per request)", msgpackRate, msgpackRate / rawRate, clients,
                    batch)
            ),
            ("proxy JSON _update", String(format: "%.0f fingerprints/s (ratio %.2f)", jsonRate, jsonRate / rawRate)),
            ("PUT /:index/:id p50 / p99", String(format: "%.2f / %.2f ms (%d sequential)", p50, p99, puts)),
            ("proxy RSS", rss.map { String(format: "%.0f MB", $0) } ?? "n/a"),
        ]
        printTable("fpindex-bench proxy", rows)
        printJSON([
            ("bench", "\"proxy\""), ("fingerprints", "\(fingerprints)"), ("raw_per_s", fmt(rawRate, 1)),
            ("proxy_msgpack_per_s", fmt(msgpackRate, 1)),
            ("proxy_json_per_s", fmt(jsonRate, 1)), ("ratio_msgpack", fmt(msgpackRate / rawRate, 3)),
            ("ratio_json", fmt(jsonRate / rawRate, 3)),
            ("put_p50_ms", fmt(p50, 3)), ("put_p99_ms", fmt(p99, 3)), ("proxy_rss_mb", rss.map { fmt($0, 0) } ?? "null"),
        ])
    }

    func waitReady(_ http: HTTPClient, _ base: String) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while (try? await send(http, .GET, "\(base)/_ready", body: nil, contentType: nil).status) != 200 {
            guard ContinuousClock.now < deadline else { throw BenchError("the proxy did not become ready") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// The `_update` bodies, encoded before any clock starts: the figures are the proxy's, not the client's.
    func bodies(format: WireFormat) -> [[UInt8]] {
        stride(from: 1, through: fingerprints, by: batch).map { first in
            UpdateRequest(
                changes: (first..<min(first + batch, fingerprints + 1)).map {
                    .insert(id: UInt32($0), hashes: Fingerprints.hashes(id: UInt32($0), count: hashes))
                }
            ).encoded(as: format)
        }
    }

    func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
    }

    /// Sends all bodies as `_update` requests from `clients` concurrent clients; returns fingerprints/s.
    func load(_ http: HTTPClient, _ base: String, index: String, bodies: [[UInt8]], contentType: String) async throws -> Double {
        _ = try await send(http, .PUT, "\(base)/\(index)", body: nil, contentType: nil)
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<clients {
                group.addTask {
                    for n in stride(from: worker, to: bodies.count, by: clients) {
                        let reply = try await send(http, .POST, "\(base)/\(index)/_update", body: bodies[n], contentType: contentType)
                        guard reply.status == 200 else { throw BenchError("_update failed: \(reply.status) \(reply.text)") }
                    }
                }
            }
            try await group.waitForAll()
        }
        return Double(fingerprints) / (ContinuousClock.now - start).seconds
    }

    func send(_ client: HTTPClient, _ method: HTTPMethod, _ url: String, body: [UInt8]?, contentType: String?) async throws -> (
        status: Int, text: String
    ) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await client.execute(request, timeout: .seconds(120))
        let buffer = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), String(buffer: buffer))
    }

    func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
    }
}

func fmt(_ value: Double, _ decimals: Int) -> String { String(format: "%.\(decimals)f", value) }

/// Prints `name  value` rows aligned, under a title.
func printTable(_ title: String, _ rows: [(String, String)]) {
    let width = rows.map(\.0.count).max() ?? 0
    print(title)
    for (name, value) in rows {
        print(name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value)
    }
}

/// Prints one JSON object with the fields in the given order (values already JSON).
func printJSON(_ fields: [(String, String)]) {
    print("{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}")
}

func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard ok else { throw BenchError("cannot find a free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}
