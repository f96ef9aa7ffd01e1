import ArgumentParser
import AsyncHTTPClient
import Foundation
import FpindexAPI
import LegacyProtocol
import NIOCore
import NIOHTTP1

/// `fpindex-bench legacy`: inserts and searches through the proxy's legacy line protocol port,
/// as AcoustID's `indexclient.py` sends them (one line, then its reply), beside the HTTP
/// `_update` rate of the same fingerprints in the same run.
struct LegacyBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "legacy",
        abstract: "Inserts/s and searches/s through the proxy's legacy port, beside the HTTP _update rate, in one run.")

    @Option(help: "Fingerprints inserted (each way).")
    var fingerprints: Int = 20_000

    @Option(help: "Hashes per fingerprint.")
    var hashes: Int = 120

    @Option(help: "Inserts per legacy transaction (and changes per _update request).")
    var transaction: Int = 1000

    @Option(help: "Concurrent connections (and HTTP clients).")
    var connections: Int = 4

    @Option(help: "Searches through the legacy port.")
    var searches: Int = 5000

    @Option(help: "nats-server executable to start.")
    var natsServer: String = ".tools/bin/nats-server"

    @Option(help: "Directory with release builds of fpindex-dev, fpindex-updater and fpindex-proxy.")
    var binaries: String = ".build/release"

    func run() async throws {
        let workspace = try BenchWorkspace(natsServer: natsServer)
        defer { workspace.close() }
        let work = workspace.path
        var servers: [ChildServer] = []
        defer { for server in servers.reversed() { server.stop() } }
        let dev = try ChildServer.start(
            executable: binaries + "/fpindex-dev", arguments: ["--port", "0", "--log-level", "warning"], readyMarker: "listening on ",
            logFile: work + "/dev.log")
        servers.append(dev)
        servers.append(
            try ChildServer.start(
                executable: binaries + "/fpindex-updater",
                arguments: [
                    "--consumer", "replica-1", "--fpindex-url", dev.url!, "--listen", "127.0.0.1:0", "--create-consumer", "--batch-wait", "50",
                    "--log-level", "warning",
                ],
                environment: [ComponentEnvironment.natsURL: workspace.natsURL], readyMarker: "listening on ", logFile: work + "/updater.log"))
        let legacyPort = try freePort()
        let proxy = try ChildServer.start(
            executable: binaries + "/fpindex-proxy",
            arguments: ["--listen", "127.0.0.1:0", "--legacy-listen", "127.0.0.1:\(legacyPort)", "--log-level", "warning"],
            environment: [ComponentEnvironment.natsURL: workspace.natsURL, ComponentEnvironment.fpindexURL: dev.url!],
            readyMarker: "listening on ", logFile: work + "/proxy.log")
        servers.append(proxy)

        // Lines encoded before any clock starts: the figures are the proxy's, not the client's.
        let insertLines = (1...fingerprints).map { id in
            Array("insert \(id) \(Self.hashes(id, count: hashes).map { String(Int32(bitPattern: $0)) }.joined(separator: ","))\r\n".utf8)
        }
        let transactions = stride(from: 0, to: fingerprints, by: transaction).map { Array(insertLines[$0..<min($0 + transaction, fingerprints)]) }
        let clients = try await Self.onThreads((0..<connections).map { _ in { try LegacyClient(port: legacyPort, timeout: .seconds(60)) } })

        // Legacy inserts: begin, one insert after another (each waits for its reply, as
        // indexclient.py does), commit.
        let insertStart = ContinuousClock.now
        _ = try await Self.onThreads(
            clients.enumerated().map { worker, client in
                {
                    for n in stride(from: worker, to: transactions.count, by: clients.count) {
                        try client.expect("begin", "OK ")
                        for line in transactions[n] { try client.expect(line, "OK ") }
                        try client.expect("commit", "OK ")
                    }
                }
            })
        let insertRate = Double(fingerprints) / (ContinuousClock.now - insertStart).seconds

        // The same fingerprints as HTTP _update requests into another index.
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { _ = http.shutdown() }
        let base = proxy.url!
        _ = try await send(http, .PUT, base + "/http", nil)
        let bodies = stride(from: 1, through: fingerprints, by: transaction).map { first in
            UpdateRequest(
                changes: (first..<min(first + transaction, fingerprints + 1)).map {
                    .insert(id: UInt32($0), hashes: Self.hashes($0, count: hashes))
                }
            ).encoded(as: .msgpack)
        }
        let httpStart = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<connections {
                group.addTask {
                    for n in stride(from: worker, to: bodies.count, by: connections) {
                        let status = try await send(http, .POST, base + "/http/_update", bodies[n])
                        guard status == 200 else { throw BenchError("_update failed: \(status)") }
                    }
                }
            }
            try await group.waitForAll()
        }
        let httpRate = Double(fingerprints) / (ContinuousClock.now - httpStart).seconds

        // Searches once the replica has everything: the last fingerprint is found.
        let probe = clients[0]
        let lastQuery = "search " + Self.hashes(fingerprints, count: hashes).map { String(Int32(bitPattern: $0)) }.joined(separator: ",")
        let deadline = ContinuousClock.now + .seconds(300)
        while try probe.send(lastQuery) != "OK \(fingerprints):\(hashes)" {
            guard ContinuousClock.now < deadline else { throw BenchError("the replica did not catch up in 5 minutes") }
            try await Task.sleep(for: .milliseconds(100))
        }
        let queries = (0..<searches).map { n in
            let id = n * 7919 % fingerprints + 1
            return (id, "search " + Self.hashes(id, count: hashes).map { String(Int32(bitPattern: $0)) }.joined(separator: ","))
        }
        let searchStart = ContinuousClock.now
        _ = try await Self.onThreads(
            clients.enumerated().map { worker, client in
                {
                    for n in stride(from: worker, to: queries.count, by: clients.count) {
                        let reply = try client.send(queries[n].1)
                        guard reply.hasPrefix("OK \(queries[n].0):") else { throw BenchError("search \(queries[n].0) answered \(reply)") }
                    }
                }
            })
        let searchRate = Double(searches) / (ContinuousClock.now - searchStart).seconds

        printTable(
            "fpindex-bench legacy",
            [
                ("fingerprints", "\(fingerprints) x \(hashes) hashes, transactions of \(transaction), \(connections) connections"),
                ("legacy inserts (line by line)", String(format: "%.0f fingerprints/s", insertRate)),
                ("HTTP msgpack _update", String(format: "%.0f fingerprints/s (legacy / HTTP %.2f)", httpRate, insertRate / httpRate)),
                ("legacy searches", String(format: "%.0f searches/s (%d, answered by one fpindex-dev replica)", searchRate, searches)),
            ])
        printJSON([
            ("bench", "\"legacy\""), ("insert_per_s", fmt(insertRate, 1)), ("search_per_s", fmt(searchRate, 1)),
            ("http_update_per_s", fmt(httpRate, 1)),
        ])
    }

    /// Hashes unique to a fingerprint, so a search for them finds it alone at the top.
    static func hashes(_ id: Int, count: Int) -> [UInt32] {
        (0..<count).map { UInt32(truncatingIfNeeded: id &* 2_654_435_761 &+ $0 &* 40_503) }
    }

    func send(_ http: HTTPClient, _ method: HTTPMethod, _ url: String, _ body: [UInt8]?) async throws -> Int {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let body {
            request.headers.add(name: "Content-Type", value: "application/vnd.msgpack")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await http.execute(request, timeout: .seconds(120))
        _ = try await response.body.collect(upTo: 1 << 20)
        return Int(response.status.code)
    }

    /// Runs each blocking job on a thread of its own (the connections block on their sockets,
    /// which must not hold the two cooperative threads), and waits for all.
    static func onThreads<T: Sendable>(_ jobs: [@Sendable () throws -> T]) async throws -> [T] {
        try await withThrowingTaskGroup(of: (Int, T).self) { group in
            for (index, job) in jobs.enumerated() {
                group.addTask {
                    try await withCheckedThrowingContinuation { continuation in
                        Thread { continuation.resume(with: Result { (index, try job()) }) }.start()
                    }
                }
            }
            var results: [(Int, T)] = []
            for try await result in group { results.append(result) }
            return results.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }
}

extension LegacyClient {
    func expect(_ line: String, _ reply: String) throws {
        let got = try send(line)
        guard got == reply else { throw BenchError("\(line.prefix(40)) answered \(got)") }
    }

    /// Sends a line (CRLF included) and checks its reply.
    func expect(_ line: [UInt8], _ reply: String) throws {
        try write(line)
        let got = try readReply()
        guard got == reply else { throw BenchError("\(String(decoding: line.prefix(40), as: UTF8.self)) answered \(got)") }
    }
}
