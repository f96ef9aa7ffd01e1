import Foundation
import FpindexAPI
import JetStream
import Logging
import Synchronization
import TestSupport

/// One replica: an fpindex (fpindex-dev or the real one, on a fixed port, so it can be
/// restarted in place) and its updater.
final class Replica: @unchecked Sendable {
    let name: String
    let server: IndexServerKind
    let devPort: Int
    let natsURL: String
    let directory: String?
    /// Options added to the updater's command line.
    let updaterArguments: [String]
    private let lock = NSLock()
    private var _dev: ChildProcess
    /// The real fpindex's throwaway data folder when the replica has no directory of its own.
    private var _scratch: String?
    private var _updater: ChildProcess
    private var _updaterURL: String

    var dev: ChildProcess { lock.withLock { _dev } }
    var updater: ChildProcess { lock.withLock { _updater } }
    var updaterURL: String { lock.withLock { _updaterURL } }
    var devURL: String { "http://127.0.0.1:\(devPort)" }
    var devHTTP: TestHTTPClient { TestHTTPClient(baseURL: devURL) }
    var updaterHTTP: TestHTTPClient { TestHTTPClient(baseURL: updaterURL) }

    init(name: String, natsURL: String, persistent: Bool, server: IndexServerKind = .dev, updaterArguments: [String] = []) async throws {
        self.name = name
        self.server = server
        self.natsURL = natsURL
        self.updaterArguments = updaterArguments
        self.devPort = try FreePort.find()
        self.directory = persistent ? try TemporaryDirectory.make(prefix: "replica-\(name)") : nil
        (_dev, _scratch) = try await server.start(port: devPort, directory: directory)
        (_updater, _updaterURL) = try await Self.startUpdater(
            name: name, natsURL: natsURL, devPort: devPort, arguments: updaterArguments)
    }

    static func startUpdater(name: String, natsURL: String, devPort: Int, arguments: [String]) async throws -> (ChildProcess, String) {
        let updater = try ChildProcess(
            name: "fpindex-updater-\(name)", executable: try Locations.executable("fpindex-updater"),
            arguments: [
                "--consumer", name, "--fpindex-url", "http://127.0.0.1:\(devPort)", "--listen", "127.0.0.1:0", "--create-consumer",
                "--batch-wait", "100", "--idle-check", "300", "--max-lag", "10", "--batch", "500",
            ] + arguments,
            environment: ["NATS_URL": natsURL, "LOG_LEVEL": "info"])
        let url = String(try await updater.waitForLine(containing: "listening on ").split(separator: " ").last!)
        return (updater, url)
    }

    /// kill -9 the updater and start a new one.
    func crashUpdater() async throws {
        updater.signal(SIGKILL)
        await updater.waitForExit()
        let (process, url) = try await Self.startUpdater(name: name, natsURL: natsURL, devPort: devPort, arguments: updaterArguments)
        lock.withLock {
            _updater = process
            _updaterURL = url
        }
    }

    /// Restarts fpindex: kill -9, then start again (empty unless it has a directory).
    func crashDev() async throws {
        dev.signal(SIGKILL)
        await dev.waitForExit()
        if let scratch = lock.withLock({ _scratch }) { TemporaryDirectory.remove(scratch) }
        let (process, scratch) = try await server.start(port: devPort, directory: directory)
        lock.withLock {
            _dev = process
            _scratch = scratch
        }
    }

    func status() async throws -> [String: Any] {
        try await updaterHTTP.request(.GET, "/status").jsonObject()
    }

    func stop() async {
        await updater.stop()
        // The real fpindex can hang on SIGTERM (see the real-fpindex README): a short grace.
        await dev.stop(timeout: .seconds(5))
        if let directory { TemporaryDirectory.remove(directory) }
        if let scratch = lock.withLock({ _scratch }) { TemporaryDirectory.remove(scratch) }
    }

    var output: String { "\(updater.output)\n\(dev.output)" }
}

/// The expected content of the cluster: what the proxy acknowledged.
struct Model {
    var indexes: [String: [UInt32: [UInt32]]] = [:]
    var metadata: [String: [String: String]] = [:]
    var version: UInt32 = 0

    /// Hashes unique to (id, version), so a search for them finds exactly that fingerprint.
    mutating func hashes(for id: UInt32) -> [UInt32] {
        version += 1
        return (0..<5).map { id << 12 | ((version * 5 + $0) & 0xfff) }
    }
}

/// nats-server, fpindex-proxy, and replicas, all real processes.
final class ReplicaCluster: Sendable {
    /// The single server, when the cluster runs on one (restart tests use it).
    let natsServer: NATSServer?
    let natsURL: String
    /// The fpindex every replica runs.
    let indexServer: IndexServerKind
    let proxy: Mutex<ChildProcess>
    let proxyURL: Mutex<String>
    private let replicaList: Mutex<[Replica]>
    var replicas: [Replica] { replicaList.withLock { $0 } }
    let inspector: NATSClient
    let subjects = StreamSubjects(prefix: "fpindex")
    /// Requests refused (and retried) during outages.
    let refused = Mutex(0)

    var http: TestHTTPClient { TestHTTPClient(baseURL: proxyURL.withLock { $0 }) }

    static func start(
        nats: NATSServer, replicas count: Int = 2, persistent: Bool = false, indexServer: IndexServerKind = .dev
    ) async throws -> ReplicaCluster {
        try await start(natsURL: nats.url, server: nats, replicas: count, persistent: persistent, indexServer: indexServer)
    }

    static func start(
        natsURL: String, server: NATSServer? = nil, replicas count: Int = 2, persistent: Bool = false,
        indexServer: IndexServerKind = .dev, proxyArguments: [String] = []
    ) async throws -> ReplicaCluster {
        let (proxy, url) = try await startProxy(natsURL: natsURL, arguments: proxyArguments)
        var replicas: [Replica] = []
        for n in 0..<count {
            replicas.append(
                try await Replica(name: "replica-\(n + 1)", natsURL: natsURL, persistent: persistent, server: indexServer))
        }
        let inspector = try await NATSClient.connect(
            NATSConfiguration(servers: natsURL.split(separator: ",").map(String.init)), logger: Logger(label: "inspector"))
        return ReplicaCluster(
            natsServer: server, natsURL: natsURL, indexServer: indexServer, proxy: proxy, proxyURL: url, replicas: replicas,
            inspector: inspector)
    }

    static func startProxy(natsURL: String, readURL: String = "http://127.0.0.1:9", arguments: [String] = []) async throws -> (
        ChildProcess, String
    ) {
        let proxy = try ChildProcess(
            name: "fpindex-proxy", executable: try Locations.executable("fpindex-proxy"),
            arguments: ["--listen", "127.0.0.1:0"] + arguments,
            environment: ["NATS_URL": natsURL, "FPINDEX_URL": readURL])
        let url = String(try await proxy.waitForLine(containing: "listening on ").split(separator: " ").last!)
        let http = TestHTTPClient(baseURL: url)
        try await eventually("the proxy to be ready\n\(proxy.output)") {
            try await http.request(.GET, "/_ready").status == 200 ? true : nil
        }
        return (proxy, url)
    }

    private init(
        natsServer: NATSServer?, natsURL: String, indexServer: IndexServerKind, proxy: ChildProcess, proxyURL: String,
        replicas: [Replica], inspector: NATSClient
    ) {
        self.natsServer = natsServer
        self.natsURL = natsURL
        self.indexServer = indexServer
        self.proxy = Mutex(proxy)
        self.proxyURL = Mutex(proxyURL)
        self.replicaList = Mutex(replicas)
        self.inspector = inspector
    }

    /// Starts one more replica (fpindex-dev + updater).
    func addReplica(name: String, updaterArguments: [String] = []) async throws -> Replica {
        let replica = try await Replica(
            name: name, natsURL: natsURL, persistent: false, server: indexServer, updaterArguments: updaterArguments)
        replicaList.withLock { $0.append(replica) }
        return replica
    }

    func restartProxy(readURL: String = "http://127.0.0.1:9", arguments: [String] = []) async throws {
        await proxy.withLock { $0 }.stop()
        let (process, url) = try await Self.startProxy(natsURL: natsURL, readURL: readURL, arguments: arguments)
        proxy.withLock { $0 = process }
        proxyURL.withLock { $0 = url }
    }

    func stop() async {
        await inspector.close()
        await proxy.withLock { $0 }.stop()
        for replica in replicas { await replica.stop() }
    }

    var output: String { ([proxy.withLock { $0 }.output] + replicas.map(\.output)).joined(separator: "\n") }

    // MARK: Writing through the proxy

    func expectOK(_ reply: HTTPReply, _ what: String) throws {
        guard reply.status == 200 else { throw TestFailure("\(what): \(reply.status) \(reply.text)") }
    }

    func createIndex(_ index: String, _ model: inout Model) async throws {
        try expectOK(try await http.json(.PUT, "/\(index)"), "create \(index)")
        if model.indexes[index] == nil {
            model.indexes[index] = [:]
            model.metadata[index] = [:]
        }
    }

    func deleteIndex(_ index: String, _ model: inout Model) async throws {
        try expectOK(try await http.json(.DELETE, "/\(index)"), "delete \(index)")
        model.indexes[index] = nil
        model.metadata[index] = nil
    }

    /// A random mix of writes to existing indexes, acknowledged one request at a time.
    /// - Parameter retryUntilAcknowledged: retry a refused request until it is acknowledged
    ///   (through an outage), so the model stays exact.
    func randomWrites(_ model: inout Model, requests: Int, random: inout some RandomNumberGenerator, retryUntilAcknowledged: Bool = false)
        async throws
    {
        for _ in 0..<requests {
            guard let index = model.indexes.keys.sorted().randomElement(using: &random) else { return }
            var changes: [Change] = []
            var after = model.indexes[index]!
            for _ in 0..<Int.random(in: 1...20, using: &random) {
                let id = UInt32.random(in: 1...60, using: &random)
                if Int.random(in: 0..<4, using: &random) == 0 {
                    changes.append(.delete(id: id))
                    after[id] = nil
                } else {
                    let hashes = model.hashes(for: id)
                    changes.append(.insert(id: id, hashes: hashes))
                    after[id] = hashes
                }
            }
            var metadata: [String: String]?
            if Int.random(in: 0..<5, using: &random) == 0 {
                metadata = ["key\(Int.random(in: 0..<3, using: &random))": "v\(model.version)"]
            }
            let body = UpdateRequest(changes: changes, metadata: metadata).encoded(as: .msgpack)
            var reply = try? await http.request(
                .POST, "/\(index)/_update", body: body, headers: [("Content-Type", "application/vnd.msgpack")])
            let deadline = ContinuousClock.now + .seconds(60)
            while retryUntilAcknowledged, reply?.status != 200, ContinuousClock.now < deadline {
                refused.withLock { $0 += 1 }
                try await Task.sleep(for: .milliseconds(100))
                reply = try? await http.request(
                    .POST, "/\(index)/_update", body: body, headers: [("Content-Type", "application/vnd.msgpack")])
            }
            guard let reply else { throw TestFailure("update: no reply") }
            try expectOK(reply, "update")
            model.indexes[index] = after
            for (key, value) in metadata ?? [:] { model.metadata[index]![key] = value }
        }
    }

    // MARK: Checking

    /// Waits until every replica has applied everything in the stream and is ready.
    func waitConverged(timeout: Duration = .seconds(90)) async throws {
        try await eventually(timeout: timeout, "replicas to converge\n\(output)") { () async throws -> Bool? in
            guard let info = try await inspector.streamInfo("fpindex") else { return nil }
            let last = info.state.lastSeq
            for replica in replicas {
                let status = try await replica.status()
                // The same stream (a recreated one starts its sequences again), fully applied.
                guard (status["stream"] as? [String: Any])?["identity"] as? String == info.identity,
                    status["phase"] as? String == "replicating", status["ready"] as? Bool == true, status["lag"] as? Int == 0,
                    (status["applied_seq"] as? Int).map({ UInt64($0) >= last }) == true
                else { return nil }
            }
            return true
        }
    }

    /// Every replica holds exactly the model: every fingerprint with its current hashes, no
    /// deleted or stale one, the same metadata, no index the model does not have.
    func verify(_ model: Model, deletedIndexes: [String] = []) async throws {
        for replica in replicas {
            let http = replica.devHTTP
            for index in deletedIndexes where model.indexes[index] == nil {
                let reply = try await http.request(.GET, "/\(index)")
                guard reply.status == 404 else { throw TestFailure("\(replica.name): deleted index \(index) still there") }
            }
            for (index, fingerprints) in model.indexes {
                let info = try await http.request(.GET, "/\(index)").jsonObject()
                // num_docs counts deletions and superseded copies (the real fpindex's is
                // approximate): only a lower bound. Every id is checked one by one below.
                let stats = info["stats"] as? [String: Int]
                guard let docs = stats?["num_docs"], docs >= fingerprints.count else {
                    throw TestFailure(
                        "\(replica.name): \(index) has \(stats?["num_docs"] ?? -1) docs, fewer than \(fingerprints.count) fingerprints")
                }
                let metadata = (info["metadata"] as? [String: String] ?? [:]).filter { !ReservedMetadata.isReserved($0.key) }
                guard metadata == model.metadata[index] ?? [:] else {
                    throw TestFailure("\(replica.name): \(index) metadata \(metadata), expected \(model.metadata[index] ?? [:])")
                }
                for id in UInt32(1)...60 {
                    if let hashes = fingerprints[id] {
                        let search = SearchRequest(query: hashes, minScore: 1, scorePct: 0).encoded(as: .json)
                        let reply = try await http.request(
                            .POST, "/\(index)/_search", body: search, headers: [("Content-Type", "application/json")])
                        let results = try SearchResponse.decode(from: reply.body, format: .json).results
                        guard results == [SearchResult(id: id, score: UInt32(hashes.count))] else {
                            throw TestFailure("\(replica.name): \(index)/\(id) search gave \(results)")
                        }
                    } else {
                        let reply = try await http.request(.GET, "/\(index)/\(id)")
                        guard reply.status == 404 else { throw TestFailure("\(replica.name): \(index)/\(id) should be absent") }
                    }
                }
            }
        }
    }
}

func withCluster<T>(
    replicas: Int = 2, persistent: Bool = false, indexServer: IndexServerKind = .dev, _ body: (ReplicaCluster) async throws -> T
) async throws -> T {
    try await withNATSServer { nats in
        let cluster = try await ReplicaCluster.start(nats: nats, replicas: replicas, persistent: persistent, indexServer: indexServer)
        do {
            let result = try await body(cluster)
            await cluster.stop()
            return result
        } catch {
            print(cluster.output)
            await cluster.stop()
            throw error
        }
    }
}
