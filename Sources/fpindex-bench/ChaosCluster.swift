import AsyncHTTPClient
import Foundation
import FpindexAPI
import JetStream
import Logging
import NIOCore
import NIOHTTP1
import ProcessSpawning

/// The data plane of the chaos run, every part a real process on loopback: three nats-servers
/// in one JetStream cluster (the stream at R3), two proxies, and three replicas (fpindex-dev
/// with `--dir`, and its updater). Each process can be killed, stopped and started again on
/// the same port and with the same data.
final class ChaosCluster {
    struct NATSNode {
        let name: String
        let clientPort: Int
        let routePort: Int
        let store: String
        var server: ChildServer?
    }

    struct Replica {
        let name: String
        let devPort: Int
        let directory: String
        var dev: ChildServer?
        var updater: ChildServer?
        var updaterURL: String?
    }

    struct Proxy {
        let name: String
        let port: Int
        var server: ChildServer?
        var url: String { "http://127.0.0.1:\(port)" }
    }

    let work: String
    let binaries: String
    let natsServer: String
    var nodes: [NATSNode] = []
    var replicas: [Replica] = []
    var proxies: [Proxy] = []
    private(set) var inspector: NATSClient?
    let http = HTTPClient(eventLoopGroupProvider: .singleton)

    var natsURLs: [String] { nodes.map { "nats://127.0.0.1:\($0.clientPort)" } }

    init(work: String, binaries: String, natsServer: String) {
        self.work = work
        self.binaries = binaries
        self.natsServer = natsServer
    }

    func start() async throws {
        for n in 1...3 {
            nodes.append(
                NATSNode(name: "n\(n)", clientPort: try freePort(), routePort: try freePort(), store: work + "/nats-n\(n)", server: nil))
        }
        for n in nodes.indices { try startNATS(n) }
        let deadline = ContinuousClock.now + .seconds(30)
        while inspector == nil {
            do {
                var logger = Logger(label: "chaos")
                logger.logLevel = .warning  // the table is the output; reconnections during faults are expected
                inspector = try await NATSClient.connect(NATSConfiguration(servers: natsURLs), logger: logger)
            } catch {
                guard ContinuousClock.now < deadline else { throw error }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
        for n in 1...2 {
            proxies.append(Proxy(name: "proxy\(n)", port: try freePort(), server: nil))
        }
        // The first proxy creates the stream at R3 (once the cluster has a meta leader).
        for n in proxies.indices { try await startProxy(n) }
        for n in 1...3 {
            let directory = work + "/replica\(n)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            replicas.append(Replica(name: "replica\(n)", devPort: try freePort(), directory: directory))
        }
        for n in replicas.indices {
            try startDev(n)
            try startUpdater(n)
        }
    }

    func stop() {
        for replica in replicas {
            replica.updater?.stop()
            replica.dev?.stop()
        }
        for proxy in proxies { proxy.server?.stop() }
        for node in nodes {
            if let server = node.server {
                server.process.signal(SIGCONT)
                server.stop()
            }
        }
        try? http.syncShutdown()
    }

    func closeInspector() async {
        await inspector?.close()
    }

    // MARK: Starting parts

    func startNATS(_ n: Int) throws {
        let node = nodes[n]
        let routes = nodes.filter { $0.name != node.name }.map { "nats://127.0.0.1:\($0.routePort)" }.joined(separator: ",")
        nodes[n].server = try ChildServer.start(
            executable: natsServer,
            arguments: [
                "-a", "127.0.0.1", "-p", String(node.clientPort), "-js", "-sd", node.store, "--server_name", node.name,
                "--cluster_name", "chaos", "--cluster", "nats://127.0.0.1:\(node.routePort)", "--routes", routes,
            ], readyMarker: nil, logFile: work + "/nats-\(node.name).log")
    }

    func startProxy(_ n: Int) async throws {
        let proxy = proxies[n]
        // Each proxy lists the servers in another order, so the two tend to use different nodes.
        let urls = n == 0 ? natsURLs : natsURLs.reversed()
        proxies[n].server = try ChildServer.start(
            executable: binaries + "/fpindex-proxy",
            arguments: ["--listen", "127.0.0.1:\(proxy.port)", "--stream-replicas", "3", "--log-level", "warning"],
            environment: [ComponentEnvironment.natsURL: urls.joined(separator: ","), ComponentEnvironment.fpindexURL: "http://127.0.0.1:9"],
            readyMarker: "listening on ", logFile: work + "/\(proxy.name).log")
        try await waitForOK(proxy.url + ProbePath.ready, timeout: .seconds(120))
    }

    func startDev(_ n: Int) throws {
        let replica = replicas[n]
        replicas[n].dev = try ChildServer.start(
            executable: binaries + "/fpindex-dev",
            arguments: ["--host", "127.0.0.1", "--port", String(replica.devPort), "--dir", replica.directory, "--log-level", "warning"],
            readyMarker: "listening on ", logFile: work + "/\(replica.name)-dev.log")
    }

    func startUpdater(_ n: Int) throws {
        let replica = replicas[n]
        let updater = try ChildServer.start(
            executable: binaries + "/fpindex-updater",
            arguments: [
                "--consumer", replica.name, "--fpindex-url", "http://127.0.0.1:\(replica.devPort)", "--listen", "127.0.0.1:0",
                "--create-consumer", "--batch-wait", "100", "--idle-check", "500", "--log-level", "warning",
            ],
            environment: [ComponentEnvironment.natsURL: natsURLs.joined(separator: ",")], readyMarker: "listening on ",
            logFile: work + "/\(replica.name)-updater.log")
        replicas[n].updater = updater
        replicas[n].updaterURL = updater.url
    }

    /// Every process's log, for a failure report.
    var logPaths: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: work)) ?? []).filter { $0.hasSuffix(".log") }.sorted().map { work + "/" + $0 }
    }

    // MARK: HTTP

    func send(_ method: HTTPMethod, _ url: String, json body: String? = nil, timeout: Duration = .seconds(10)) async throws -> (
        status: Int, body: [UInt8]
    ) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await http.execute(request, timeout: .seconds(Int64(timeout.components.seconds)))
        let buffer = try await response.body.collect(upTo: 8 << 20)
        return (Int(response.status.code), Array(buffer.readableBytesView))
    }

    func waitForOK(_ url: String, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while (try? await send(.GET, url, timeout: .seconds(2)).status) != 200 {
            guard ContinuousClock.now < deadline else { throw BenchError("\(url) did not answer 200 in \(timeout)") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    // MARK: Convergence

    /// Waits until every replica has applied the whole stream (same stream, ready, no lag).
    func waitConverged(timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        var last = ""
        while ContinuousClock.now < deadline {
            if let info = try? await inspector?.streamInfo("fpindex") {
                var caughtUp = true
                for replica in replicas {
                    guard let url = replica.updaterURL, let reply = try? await send(.GET, url + "/status", timeout: .seconds(2)),
                        reply.status == 200, let status = try? JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any]
                    else {
                        caughtUp = false
                        last = "\(replica.name): no status"
                        break
                    }
                    let identity = (status["stream"] as? [String: Any])?["identity"] as? String
                    let applied = (status["applied_seq"] as? Int).map(UInt64.init) ?? 0
                    guard identity == info.identity, status["ready"] as? Bool == true, status["lag"] as? Int == 0,
                        applied >= info.state.lastSeq
                    else {
                        caughtUp = false
                        last = "\(replica.name): phase \(status["phase"] ?? "?"), applied \(applied) of \(info.state.lastSeq)"
                        break
                    }
                }
                if caughtUp { return }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw BenchError("the replicas did not converge within \(timeout): \(last)")
    }
}
