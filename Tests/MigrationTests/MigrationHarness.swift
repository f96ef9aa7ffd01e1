import Foundation
import FpindexAPI
import JetStream
import Logging
import TestSupport

/// What a tool run printed, and how it ended.
struct ToolRun {
    var status: Int32
    var stdout: String
    var stderr: String

    /// The JSON object a tool prints as its last line.
    func lastJSON() throws -> [String: Any] {
        guard let line = stdout.split(separator: "\n").last,
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        else { throw TestFailure("no JSON last line in:\n\(stdout)\n\(stderr)") }
        return object
    }

    func int(_ key: String) throws -> Int {
        guard let value = try lastJSON()[key] as? Int else { throw TestFailure("no \(key) in \(stdout)") }
        return value
    }
}

/// Runs one of the migration tools to its end.
func runTool(_ name: String, _ arguments: [String], natsURL: String, niceness: Int = 0, timeout: Duration = .seconds(600)) async throws
    -> ToolRun
{
    try await runTool(name, arguments, environment: ["NATS_URL": natsURL], niceness: niceness, timeout: timeout)
}

/// Runs one of the migration tools to its end with this environment (NATS user, TLS, ...).
func runTool(
    _ name: String, _ arguments: [String], environment: [String: String], niceness: Int = 0, timeout: Duration = .seconds(600)
) async throws -> ToolRun {
    let process = try ChildProcess(
        name: name, executable: try Locations.executable(name), arguments: arguments + ["--quiet"],
        environment: environment.merging(["LOG_LEVEL": "warning"]) { _, quiet in quiet }, niceness: niceness)
    guard let status = await process.waitForExit(timeout: timeout) else {
        await process.stop(timeout: .seconds(2))
        throw TestFailure("\(name) \(arguments) did not end within \(timeout)\n\(process.output)")
    }
    return ToolRun(status: status, stdout: process.stdout, stderr: process.stderr)
}

/// One replica for these tests: an fpindex and its updater, fed from a stream.
struct TestReplica {
    let name: String
    let index: (process: ChildProcess, scratch: String?)
    let updater: ChildProcess
    let url: String
    let stream: String
    let prefix: String
    let niceness: Int

    static func start(
        name: String, server: IndexServerKind, natsURL: String, stream: String = "fpindex", prefix: String = "fpindex", niceness: Int = 0
    ) async throws -> TestReplica {
        let port = try FreePort.find()
        let index = try await server.start(port: port, directory: nil, niceness: niceness)
        let updater = try await startUpdater(name: name, port: port, natsURL: natsURL, stream: stream, prefix: prefix, niceness: niceness)
        return TestReplica(
            name: name, index: index, updater: updater, url: "http://127.0.0.1:\(port)", stream: stream, prefix: prefix, niceness: niceness)
    }

    /// The same replica with a new updater (the old one stopped), as a restarted pod has.
    func restartUpdater(natsURL: String) async throws -> TestReplica {
        let port = Int(url.split(separator: ":").last!)!
        let updater = try await Self.startUpdater(
            name: name, port: port, natsURL: natsURL, stream: stream, prefix: prefix, niceness: niceness)
        return TestReplica(name: name, index: index, updater: updater, url: url, stream: stream, prefix: prefix, niceness: niceness)
    }

    private static func startUpdater(name: String, port: Int, natsURL: String, stream: String, prefix: String, niceness: Int)
        async throws -> ChildProcess
    {
        let updater = try ChildProcess(
            name: "fpindex-updater-\(name)", executable: try Locations.executable("fpindex-updater"),
            arguments: [
                "--consumer", name, "--fpindex-url", "http://127.0.0.1:\(port)", "--listen", "127.0.0.1:0", "--create-consumer",
                "--stream", stream, "--subject-prefix", prefix, "--batch", "4000", "--batch-wait", "100", "--idle-check", "300",
            ],
            environment: ["NATS_URL": natsURL, "LOG_LEVEL": "warning"], niceness: niceness)
        _ = try await updater.waitForLine(containing: "listening on ")
        return updater
    }

    /// Waits until the updater has applied and acknowledged every message of the stream.
    func waitCaughtUp(_ client: NATSClient, stream: String = "fpindex", timeout: Duration = .seconds(600)) async throws {
        try await eventually(timeout: timeout, "\(name) to catch up\n\(updater.output)", interval: .milliseconds(200)) { () -> Bool? in
            guard updater.isRunning else { throw TestFailure("the updater exited\n\(updater.output)") }
            guard let info = try await client.consumerInfo(stream: stream, name: name) else { return nil }
            return info.numPending == 0 && info.numAckPending == 0 && info.delivered.streamSeq > 0 ? true : nil
        }
    }

    func stop() async {
        await updater.stop()
        await index.process.stop(timeout: .seconds(5))
        if let scratch = index.scratch { TemporaryDirectory.remove(scratch) }
    }
}

/// A COPY-format export written as PostgreSQL writes it, with bad rows at chosen lines.
enum ExportFile {
    /// The hashes of fingerprint `id`: deterministic, spread over the whole u32 range (so many
    /// are negative as int4), and rarely shared, so a search for them finds `id` first.
    static func hashes(_ id: UInt32, count: Int = 12) -> [UInt32] {
        var state = UInt64(id) &* 0x9E37_79B9_7F4A_7C15 | 1
        return (0..<count).map { _ in
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return UInt32(truncatingIfNeeded: state >> 16)
        }
    }

    /// Writes rows 1...count (line n holds id n) with `bad` lines replaced by broken rows and
    /// `deleted` ids written as NULL.
    static func write(path: String, count: Int, bad: [Int: String] = [:], deleted: Set<UInt32> = []) async throws {
        // Off the cooperative pool: a million rows take a debug build a minute, which would starve
        // the servers other suites run inside the test process.
        let result: Result<Void, any Error> = await withCheckedContinuation { continuation in
            Thread {
                continuation.resume(returning: Result { try writeBlocking(path: path, count: count, bad: bad, deleted: deleted) })
            }.start()
        }
        try result.get()
    }

    private static func writeBlocking(path: String, count: Int, bad: [Int: String], deleted: Set<UInt32>) throws {
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(1 << 22)
        for line in 1...count {
            if let broken = bad[line] {
                buffer += Array(broken.utf8)
            } else {
                let id = UInt32(line)
                buffer += Array(String(id).utf8)
                buffer.append(UInt8(ascii: "\t"))
                if deleted.contains(id) {
                    buffer += Array("\\N".utf8)
                } else {
                    buffer.append(UInt8(ascii: "{"))
                    for (i, hash) in hashes(id).enumerated() {
                        if i > 0 { buffer.append(UInt8(ascii: ",")) }
                        buffer += Array(String(Int32(bitPattern: hash)).utf8)
                    }
                    buffer.append(UInt8(ascii: "}"))
                }
            }
            buffer.append(UInt8(ascii: "\n"))
            if buffer.count > 1 << 22 {
                try handle.write(contentsOf: buffer)
                buffer.removeAll(keepingCapacity: true)
            }
        }
        try handle.write(contentsOf: buffer)
    }
}

/// Every subject's last payload in a stream, keyed below the prefix (to compare two streams).
func streamContent(_ client: NATSClient, stream: String, prefix: String) async throws -> [String: [UInt8]] {
    try await client.withStreamScan(stream: stream, filter: "\(prefix).>") { scan in
        var content: [String: [UInt8]] = [:]
        while let messages = try await scan.next() {
            for message in messages { content[String(message.subject.dropFirst(prefix.count + 1))] = message.payload }
        }
        return content
    }
}

func connect(_ url: String) async throws -> NATSClient {
    try await NATSClient.connect(NATSConfiguration(servers: [url], name: "migration-tests"), logger: Logger(label: "migration-tests"))
}

/// Runs `body` with a temporary folder holding a COPY export of fingerprints 1...`count`, already
/// imported into index `main`.
func withImportedExport<T>(count: Int, natsURL: String, _ body: (_ directory: String) async throws -> T) async throws -> T {
    let directory = try TemporaryDirectory.make(prefix: "export")
    defer { TemporaryDirectory.remove(directory) }
    try await ExportFile.write(path: directory + "/rows.copy", count: count)
    let run = try await runTool("fpindex-import", ["--index", "main", directory + "/rows.copy"], natsURL: natsURL)
    guard run.status == 0 else { throw TestFailure("the import failed\n\(run.stdout)\(run.stderr)") }
    return try await body(directory)
}

/// Runs `body` with replicas fed from the stream `fpindex`, caught up, and stops them after
/// whatever happens (printing their updaters' logs when `body` throws).
func withCaughtUpReplicas<T>(
    _ replicas: [(name: String, server: IndexServerKind)], natsURL: String, client: NATSClient, _ body: ([TestReplica]) async throws -> T
) async throws -> T {
    var started: [TestReplica] = []
    do {
        for replica in replicas {
            started.append(try await TestReplica.start(name: replica.name, server: replica.server, natsURL: natsURL))
        }
        for replica in started { try await replica.waitCaughtUp(client) }
        let result = try await body(started)
        for replica in started { await replica.stop() }
        return result
    } catch {
        for replica in started {
            print(replica.updater.output)
            await replica.stop()
        }
        throw error
    }
}
