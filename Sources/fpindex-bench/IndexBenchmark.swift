import ArgumentParser
import AsyncHTTPClient
import Foundation
import FpindexAPI
import NIOCore
import NIOHTTP1
import ProcessSpawning

/// `fpindex-bench index`: bulk load, then search latency, against fpindex-dev.
struct IndexBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index",
        abstract: "Bulk-load fingerprints into fpindex-dev over HTTP, then measure 120-hash searches (half hits, half misses).")

    @Option(help: "Fingerprints to load.")
    var fingerprints: Int = 1_000_000

    @Option(help: "Fingerprints per MessagePack _update request.")
    var batch: Int = 1000

    @Option(help: "Hashes per fingerprint and per query.")
    var hashes: Int = 120

    @Option(help: "Searches to run after loading.")
    var searches: Int = 2000

    @Option(help: "Load requests in flight at once.")
    var concurrency: Int = 2

    @Option(help: "fpindex-dev executable to start (release build recommended).")
    var devBinary: String = ".build/release/fpindex-dev"

    @Option(help: "Benchmark an already running server at this URL instead of starting one (RSS is then not measured).")
    var url: String?

    @Option(help: "Give the started fpindex-dev this --dir (measures the write-ahead log too).")
    var dir: String?

    func validate() throws {
        guard fingerprints > 0, batch > 0, hashes > 0, searches > 1, concurrency > 0 else {
            throw ValidationError("counts must be positive")
        }
    }

    func run() async throws {
        let server: ChildServer? =
            url == nil
            ? try ChildServer.start(
                executable: devBinary, arguments: ["--port", "0", "--log-level", "warning"] + (dir.map { ["--dir", $0] } ?? []),
                readyMarker: "listening on ")
            : nil
        defer { server?.stop() }
        let base = url ?? server!.url!
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            try await benchmark(client: client, base: base, server: server)
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    func benchmark(client: HTTPClient, base: String, server: ChildServer?) async throws {
        let index = "bench"
        _ = try await send(client, .DELETE, "\(base)/\(index)", body: nil)
        _ = try await send(client, .PUT, "\(base)/\(index)", body: nil)

        // Load: batches go out `concurrency` at a time; fingerprint i's hashes are a function of i.
        let loadStart = ContinuousClock.now
        let batches = stride(from: 1, through: fingerprints, by: batch).map { $0..<min($0 + batch, fingerprints + 1) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            func submit() {
                let range = batches[next]
                next += 1
                let hashCount = hashes
                group.addTask {
                    let update = UpdateRequest(
                        changes: range.map { .insert(id: UInt32($0), hashes: Fingerprints.hashes(id: UInt32($0), count: hashCount)) })
                    let reply = try await send(client, .POST, "\(base)/\(index)/_update", body: update.encoded(as: .msgpack))
                    guard reply.status == 200 else { throw BenchError("update failed: \(reply.status) \(reply.text)") }
                }
            }
            for _ in 0..<min(concurrency, batches.count) { submit() }
            while try await group.next() != nil {
                if next < batches.count { submit() }
            }
        }
        let loadSeconds = (ContinuousClock.now - loadStart).seconds
        let rssAfterLoad = server.flatMap { Self.residentMegabytes(pid: $0.pid) }

        // Searches: even ones query a stored fingerprint (must be the top hit), odd ones random hashes.
        var generator = SystemRandomNumberGenerator()
        var hitLatencies: [Double] = []
        var missLatencies: [Double] = []
        var found = 0
        var falseHits = 0
        for n in 0..<searches {
            let isHit = n % 2 == 0
            let id = UInt32.random(in: 1...UInt32(fingerprints), using: &generator)
            let query =
                isHit
                ? Fingerprints.hashes(id: id, count: hashes)
                : (0..<hashes).map { _ in UInt32.random(in: 0...UInt32.max, using: &generator) }
            let body = SearchRequest(query: query).encoded(as: .msgpack)
            let start = ContinuousClock.now
            let reply = try await send(client, .POST, "\(base)/\(index)/_search", body: body)
            let milliseconds = (ContinuousClock.now - start).seconds * 1000
            guard reply.status == 200 else { throw BenchError("search failed: \(reply.status) \(reply.text)") }
            let results = try SearchResponse.decode(from: reply.body, format: .msgpack).results
            if isHit {
                hitLatencies.append(milliseconds)
                if results.first?.id == id { found += 1 }
            } else {
                missLatencies.append(milliseconds)
                if !results.isEmpty { falseHits += 1 }
            }
        }
        let all = (hitLatencies + missLatencies).sorted()
        let rss = server.flatMap { Self.residentMegabytes(pid: $0.pid) }

        let loadPerSecond = Double(fingerprints) / loadSeconds
        let rows: [(String, String)] = [
            ("fingerprints", "\(fingerprints) x \(hashes) hashes"),
            (
                "load",
                String(format: "%.1f s, %.0f fingerprints/s (batches of %d, %d in flight)", loadSeconds, loadPerSecond, batch, concurrency)
            ),
            ("fpindex-dev RSS after load", rssAfterLoad.map { String(format: "%.0f MB", $0) } ?? "n/a"),
            ("fpindex-dev RSS after searches", rss.map { String(format: "%.0f MB", $0) } ?? "n/a"),
            ("searches", "\(searches) (\(hitLatencies.count) hits, \(missLatencies.count) misses)"),
            ("hits found as top result", "\(found) of \(hitLatencies.count)"),
            ("misses with any result", "\(falseHits) of \(missLatencies.count)"),
            (
                "search p50 / p90 / p99 / max",
                String(
                    format: "%.2f / %.2f / %.2f / %.2f ms", percentile(all, 0.5), percentile(all, 0.9), percentile(all, 0.99), all.last ?? 0
                )
            ),
            (
                "hit p50 / p99",
                String(format: "%.2f / %.2f ms", percentile(hitLatencies.sorted(), 0.5), percentile(hitLatencies.sorted(), 0.99))
            ),
            (
                "miss p50 / p99",
                String(format: "%.2f / %.2f ms", percentile(missLatencies.sorted(), 0.5), percentile(missLatencies.sorted(), 0.99))
            ),
        ]
        let width = rows.map(\.0.count).max()!
        print("fpindex-bench index")
        for (name, value) in rows {
            print(name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value)
        }
        let json: [String: Any] = [
            "bench": "index", "fingerprints": fingerprints, "load_per_s": (loadPerSecond * 10).rounded() / 10,
            "rss_mb": rss.map { $0.rounded() } ?? NSNull(), "search_p50_ms": round3(percentile(all, 0.5)),
            "search_p99_ms": round3(percentile(all, 0.99)), "hits_found": found, "hit_searches": hitLatencies.count,
        ]
        let data = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])
        // The contract's field order first, for people reading it.
        let ordered = ["bench", "fingerprints", "load_per_s", "rss_mb", "search_p50_ms", "search_p99_ms", "hits_found", "hit_searches"]
        let object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let fields = ordered.map { key -> String in
            let value = try! JSONSerialization.data(withJSONObject: object[key]!, options: [.fragmentsAllowed])
            return "\"\(key)\":\(String(decoding: value, as: UTF8.self))"
        }
        print("{" + fields.joined(separator: ",") + "}")
        if found < hitLatencies.count {
            throw BenchError("\(hitLatencies.count - found) stored fingerprints were not the top result of their own search")
        }
    }

    func round3(_ value: Double) -> Double { (value * 1000).rounded() / 1000 }

    func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
    }

    func send(_ client: HTTPClient, _ method: HTTPMethod, _ url: String, body: [UInt8]?) async throws -> (
        status: Int, body: [UInt8], text: String
    ) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let body {
            request.headers.add(name: "Content-Type", value: "application/vnd.msgpack")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await client.execute(request, timeout: .seconds(120))
        let buffer = try await response.body.collect(upTo: 64 << 20)
        let bytes = Array(buffer.readableBytesView)
        return (Int(response.status.code), bytes, String(decoding: bytes.prefix(200), as: UTF8.self))
    }

    static func residentMegabytes(pid: Int32) -> Double? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "")
        else { return nil }
        return kilobytes / 1024
    }
}

/// Deterministic fingerprints: the hashes of id i are the same in every run and every process,
/// and independent of other ids' (a SplitMix64 sequence from `id << 32`: two ids' sequences
/// would meet only after 2^32 steps). Seeding with `id * step` instead made id i+1 repeat 119
/// of id i's 120 hashes, so a batch held a few thousand distinct hashes, unlike real data.
enum Fingerprints {
    static func hashes(id: UInt32, count: Int) -> [UInt32] {
        var state = UInt64(id) << 32
        return (0..<count).map { _ in
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return UInt32(truncatingIfNeeded: z ^ (z >> 31))
        }
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// A server started by a benchmark; with a ready marker, its first stdout line naming it says
/// where it listens. Started as a container runtime starts programs (`SpawnedProcess`: clean
/// signal mask and dispositions), so any server stops on SIGTERM if it means to.
final class ChildServer: Sendable {
    let process: SpawnedProcess
    let url: String?
    var pid: Int32 { process.pid }

    /// - Parameters:
    ///   - logFile: where its standard error goes (standard output goes beside it, or to a
    ///     temporary file).
    static func start(
        executable: String, arguments: [String], environment: [String: String] = [:], readyMarker: String?, logFile: String? = nil,
        readyTimeout: Duration = .seconds(120)
    ) throws -> ChildServer {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw BenchError("\(executable) not found: build it (make bench does) or pass its path")
        }
        let stdoutPath =
            logFile.map { $0 + ".stdout" }
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("fpindex-bench-\(UUID().uuidString).stdout").path
        let process = try SpawnedProcess.spawn(
            executable, arguments: arguments, environment: ProcessInfo.processInfo.environment.merging(environment) { $1 },
            output: .file(stdoutPath), error: logFile.map { .file($0) } ?? .inherit)
        guard let readyMarker else { return ChildServer(process: process, url: nil) }
        // The bench is a command-line program waiting for its server: polling the file is fine.
        let deadline = ContinuousClock.now + readyTimeout
        while true {
            let text = (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.contains(readyMarker) }), let url = line.split(separator: " ").last {
                return ChildServer(process: process, url: String(url))
            }
            if !process.isRunning || ContinuousClock.now > deadline {
                ChildServer(process: process, url: nil).stop()
                throw BenchError("\(executable) did not start: '\(text.prefix(500))'")
            }
            usleep(10_000)
        }
    }

    private init(process: SpawnedProcess, url: String?) {
        self.process = process
        self.url = url
    }

    /// SIGTERM, then SIGKILL once `grace` has passed: a server that ignores SIGTERM (or hangs
    /// in its shutdown) cannot keep the benchmark from finishing. Blocks the calling thread
    /// (it runs from `defer` at the end of a run).
    func stop(grace: Duration = .seconds(5)) {
        guard process.isRunning else { return }
        process.signal(SIGTERM)
        let deadline = ContinuousClock.now + grace
        while process.isRunning, ContinuousClock.now < deadline { usleep(10_000) }
        guard process.isRunning else { return }
        process.signal(SIGKILL)
        while process.isRunning { usleep(10_000) }
    }
}
