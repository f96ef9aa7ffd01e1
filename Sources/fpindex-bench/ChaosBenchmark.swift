import ArgumentParser
import Foundation
import FpindexAPI
import JetStream
import NIOHTTP1
import ProcessSpawning

/// Reliability under faults, measured: random writes through two proxies while one fault per
/// round hits NATS, a proxy, an updater or an fpindex; after each round every replica must
/// hold exactly what was acknowledged.
struct ChaosBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chaos",
        abstract: "Random faults under load; every replica is compared with every acknowledged write after each round.",
        discussion: """
            Three nats-servers (the stream at R3), two proxies and three replicas (fpindex-dev --dir and its \
            updater) on loopback. One fault per round: kill -9 or SIGSTOP of a NATS node, a stream leader \
            step-down, kill -9 of a proxy, an updater or an fpindex-dev, or an fpindex-dev restarted with its \
            directory wiped. A write refused during a fault is sent again until acknowledged. A divergence stops \
            the run and prints the ids, the fault history and every log. The last line is one JSON object.
            """)

    @Option(help: "Rounds, one fault each.")
    var rounds = 100

    @Option(help: "Seed of the fault and write sequence (default: random, printed); the same seed replays the same sequence.")
    var seed: UInt64?

    @Option(help: "Write requests per round (half before the fault, half while it lasts).")
    var writes = 40

    @Option(help: "Seconds a fault lasts at least (writes go on meanwhile).")
    var faultSeconds = 2.0

    @Option(
        help: ArgumentHelp(
            "Fault kinds to draw from, comma-separated (default: all).",
            discussion: "nats_kill, nats_stop, nats_leader_stepdown, proxy_kill, updater_kill, fpindex_kill, fpindex_wipe"))
    var faults: String = Fault.kinds.joined(separator: ",")

    @Option(help: "Directory with builds of fpindex-dev, fpindex-updater and fpindex-proxy.")
    var binaries: String = ".build/release"

    @Option(help: "nats-server binary.")
    var natsServer: String = ".tools/bin/nats-server"

    @Option(help: "Seconds a round may take to converge after its fault is healed.")
    var convergeTimeout = 120

    @Option(help: "Where the processes' data and logs go (default: a new folder under .local/).")
    var workDir: String?

    func validate() throws {
        guard rounds > 0, writes > 0 else { throw ValidationError("--rounds and --writes must be positive") }
        let unknown = faultKinds.filter { !Fault.kinds.contains($0) }
        guard unknown.isEmpty, !faultKinds.isEmpty else {
            throw ValidationError("--faults: unknown \(unknown); the kinds are \(Fault.kinds.joined(separator: ", "))")
        }
    }

    var faultKinds: [String] { faults.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }

    func run() async throws {
        let seed = self.seed ?? UInt64.random(in: 1...(1 << 53))
        var random = SplitMix64(seed: seed)
        let work = workDir ?? FileManager.default.currentDirectoryPath + "/.local/chaos-\(seed)"
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        print("chaos: seed \(seed), \(rounds) rounds, work directory \(work)")
        fflush(nil)
        let cluster = ChaosCluster(work: work, binaries: binaries, natsServer: natsServer)
        defer { cluster.stop() }
        try await cluster.start()
        var writer = ChaosWriter(cluster: cluster)
        var history: [String] = []
        var faultCounts: [String: Int] = [:]
        var convergeSeconds: [Double] = []
        try await writer.prepare(random: &random)
        for round in 1...rounds {
            let fault = Fault.random(
                &random, kinds: faultKinds, nodes: cluster.nodes.count, proxies: cluster.proxies.count, replicas: cluster.replicas.count)
            faultCounts[fault.kind, default: 0] += 1
            history.append("round \(round): \(fault)")
            try await writer.write(requests: writes / 2, random: &random)
            try await fault.inject(cluster)
            let injectedAt = ContinuousClock.now
            try await writer.write(requests: writes - writes / 2, random: &random)
            while ContinuousClock.now - injectedAt < .seconds(faultSeconds) {
                try await writer.write(requests: 1, random: &random)
            }
            let healedAt = ContinuousClock.now
            try await fault.heal(cluster)
            do {
                try await cluster.waitConverged(timeout: .seconds(convergeTimeout))
            } catch {
                report(failure: "round \(round): \(error)", history: history, cluster: cluster)
                throw error
            }
            convergeSeconds.append((ContinuousClock.now - healedAt).seconds)
            let check = try await ChaosVerifier(cluster: cluster).verify(writer.model)
            if !check.divergent.isEmpty || !check.lost.isEmpty {
                report(
                    failure: "round \(round): \(check.divergent.count) divergent, \(check.lost.count) lost\n"
                        + (check.divergent + check.lost).prefix(20).joined(separator: "\n"), history: history, cluster: cluster)
                printSummary(
                    seed: seed, rounds: round, faults: faultCounts, writer: writer, divergent: check.divergent.count, lost: check.lost.count,
                    converge: convergeSeconds)
                throw ExitCode(1)
            }
            print("round \(round)/\(rounds): \(fault), converged in \(fmt(convergeSeconds.last!, 2)) s, \(writer.acknowledged) writes acknowledged")
            fflush(nil)
        }
        await cluster.closeInspector()
        printSummary(seed: seed, rounds: rounds, faults: faultCounts, writer: writer, divergent: 0, lost: 0, converge: convergeSeconds)
    }

    func report(failure: String, history: [String], cluster: ChaosCluster) {
        print("chaos: FAILED: \(failure)")
        print("fault history:\n" + history.joined(separator: "\n"))
        print("logs:\n" + cluster.logPaths.joined(separator: "\n"))
    }

    func printSummary(seed: UInt64, rounds: Int, faults: [String: Int], writer: ChaosWriter, divergent: Int, lost: Int, converge: [Double]) {
        let sorted = converge.sorted()
        let p50 = percentile(sorted, 0.5)
        let p99 = percentile(sorted, 0.99)
        var rows: [(String, String)] = [("rounds", String(rounds)), ("seed", String(seed))]
        for (kind, count) in faults.sorted(by: { $0.key < $1.key }) { rows.append(("fault \(kind)", String(count))) }
        rows += [
            ("acknowledged writes", String(writer.acknowledged)), ("refused writes (sent again)", String(writer.refused)),
            ("divergent ids", String(divergent)), ("lost acknowledged writes", String(lost)),
            ("converge p50 (s)", fmt(p50, 2)), ("converge p99 (s)", fmt(p99, 2)),
        ]
        printTable("fpindex-bench chaos", rows)
        let faultJSON = "{" + faults.sorted(by: { $0.key < $1.key }).map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}"
        printJSON([
            ("bench", "\"chaos\""), ("rounds", String(rounds)), ("faults", faultJSON), ("acknowledged_writes", String(writer.acknowledged)),
            ("refused_writes", String(writer.refused)), ("divergent_ids", String(divergent)), ("lost_writes", String(lost)),
            ("converge_p50_s", fmt(p50, 3)), ("converge_p99_s", fmt(p99, 3)), ("seed", String(seed)),
        ])
    }

    func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))]
    }
}

/// A small deterministic generator (SplitMix64): the same seed gives the same run.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// One fault, injected under load and healed before the round converges.
enum Fault: CustomStringConvertible {
    case killNATS(Int)
    case stopNATS(Int)
    case stepDownLeader
    case killProxy(Int)
    case killUpdater(Int)
    case killIndex(Int)
    case wipeIndex(Int)

    var kind: String {
        switch self {
        case .killNATS: "nats_kill"
        case .stopNATS: "nats_stop"
        case .stepDownLeader: "nats_leader_stepdown"
        case .killProxy: "proxy_kill"
        case .killUpdater: "updater_kill"
        case .killIndex: "fpindex_kill"
        case .wipeIndex: "fpindex_wipe"
        }
    }

    var description: String {
        switch self {
        case .killNATS(let n): "kill -9 nats n\(n + 1)"
        case .stopNATS(let n): "SIGSTOP nats n\(n + 1)"
        case .stepDownLeader: "stream leader step-down"
        case .killProxy(let n): "kill -9 proxy\(n + 1)"
        case .killUpdater(let n): "kill -9 replica\(n + 1)'s updater"
        case .killIndex(let n): "kill -9 replica\(n + 1)'s fpindex-dev"
        case .wipeIndex(let n): "replica\(n + 1)'s fpindex-dev restarted with its directory wiped"
        }
    }

    static let kinds = ["nats_kill", "nats_stop", "nats_leader_stepdown", "proxy_kill", "updater_kill", "fpindex_kill", "fpindex_wipe"]

    static func random(_ random: inout SplitMix64, kinds: [String], nodes: Int, proxies: Int, replicas: Int) -> Fault {
        switch kinds.randomElement(using: &random)! {
        case "nats_kill": .killNATS(Int.random(in: 0..<nodes, using: &random))
        case "nats_stop": .stopNATS(Int.random(in: 0..<nodes, using: &random))
        case "nats_leader_stepdown": .stepDownLeader
        case "proxy_kill": .killProxy(Int.random(in: 0..<proxies, using: &random))
        case "updater_kill": .killUpdater(Int.random(in: 0..<replicas, using: &random))
        case "fpindex_kill": .killIndex(Int.random(in: 0..<replicas, using: &random))
        default: .wipeIndex(Int.random(in: 0..<replicas, using: &random))
        }
    }

    func inject(_ cluster: ChaosCluster) async throws {
        switch self {
        case .killNATS(let n): Self.kill(cluster.nodes[n].server)
        case .stopNATS(let n): cluster.nodes[n].server?.process.signal(SIGSTOP)
        case .stepDownLeader:
            // Refused when the cluster is between leaders: the fault is then a no-op, which is fine.
            _ = try? await cluster.inspector?.request(subject: "$JS.API.STREAM.LEADER.STEPDOWN.fpindex", payload: [], timeout: .seconds(5))
        case .killProxy(let n): Self.kill(cluster.proxies[n].server)
        case .killUpdater(let n): Self.kill(cluster.replicas[n].updater)
        case .killIndex(let n), .wipeIndex(let n): Self.kill(cluster.replicas[n].dev)
        }
    }

    func heal(_ cluster: ChaosCluster) async throws {
        switch self {
        case .killNATS(let n): try cluster.startNATS(n)
        case .stopNATS(let n): cluster.nodes[n].server?.process.signal(SIGCONT)
        case .stepDownLeader: break
        case .killProxy(let n): try await cluster.startProxy(n)
        case .killUpdater(let n): try cluster.startUpdater(n)
        case .killIndex(let n): try cluster.startDev(n)
        case .wipeIndex(let n):
            let directory = cluster.replicas[n].directory
            try? FileManager.default.removeItem(atPath: directory)
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try cluster.startDev(n)
        }
    }

    static func kill(_ server: ChildServer?) {
        guard let server else { return }
        server.process.signal(SIGKILL)
        while server.process.isRunning { usleep(5_000) }
    }
}

/// What was acknowledged: each index's fingerprints and metadata.
struct ChaosModel {
    var indexes: [String: [UInt32: [UInt32]]] = [:]
    var metadata: [String: [String: String]] = [:]
    /// Every index name ever written, so a deleted one is checked to be gone.
    var names: Set<String> = []
    var version: UInt32 = 0
    /// Which proxy acknowledged the last write of each id (`index/id`) and metadata key
    /// (`index/meta/key`), after how many refusals: the first thing to read when one diverges.
    var provenance: [String: String] = [:]

    /// Hashes unique to (id, version): a search for them finds exactly that fingerprint.
    mutating func hashes(for id: UInt32) -> [UInt32] {
        version += 1
        return (0..<4).map { id << 14 | ((version &* 4 &+ $0) & 0x3fff) }
    }
}

/// Sends random writes through the proxies one at a time, again until acknowledged (every
/// write here is idempotent, so a write whose answer was lost can be sent again), and keeps
/// the model of what was acknowledged.
struct ChaosWriter {
    let cluster: ChaosCluster
    var model = ChaosModel()
    var acknowledged = 0
    var refused = 0
    private var nextProxy = 0
    static let indexNames = ["a", "b", "c"]
    static let ids: ClosedRange<UInt32> = 1...60

    init(cluster: ChaosCluster) { self.cluster = cluster }

    mutating func prepare(random: inout SplitMix64) async throws {
        for name in Self.indexNames { try await createIndex(name) }
    }

    mutating func write(requests: Int, random: inout SplitMix64) async throws {
        for _ in 0..<requests {
            let live = Self.indexNames.filter { model.indexes[$0] != nil }
            let roll = Int.random(in: 0..<100, using: &random)
            if roll < 3 || live.isEmpty {
                // An index deleted and created again (or created when none is left).
                let name = Self.indexNames.randomElement(using: &random)!
                if model.indexes[name] != nil { try await deleteIndex(name) }
                try await createIndex(name)
                continue
            }
            let index = live.randomElement(using: &random)!
            switch roll {
            case 3..<60:
                // An _update of a few inserts, deletes and a metadata entry.
                var changes: [String] = []
                var inserted: [UInt32: [UInt32]] = [:]
                var deleted: Set<UInt32> = []
                for _ in 0..<Int.random(in: 1...6, using: &random) {
                    let id = UInt32.random(in: Self.ids, using: &random)
                    if Bool.random(using: &random) || model.indexes[index]?[id] == nil {
                        let hashes = model.hashes(for: id)
                        inserted[id] = hashes
                        deleted.remove(id)
                        changes.append(#"{"insert":{"id":\#(id),"hashes":\#(hashes)}}"#)
                    } else {
                        inserted[id] = nil
                        deleted.insert(id)
                        changes.append(#"{"delete":{"id":\#(id)}}"#)
                    }
                }
                var metadata: (String, String)?
                if Int.random(in: 0..<4, using: &random) == 0 {
                    metadata = ("k\(Int.random(in: 0..<3, using: &random))", "v\(model.version)")
                }
                let metadataJSON = metadata.map { #","metadata":{"\#($0.0)":"\#($0.1)"}"# } ?? ""
                let via = try await acknowledge(.POST, "/\(index)/_update", #"{"changes":[\#(changes.joined(separator: ","))]\#(metadataJSON)}"#)
                // Within one request the last change of an id wins, as the proxy publishes it.
                for (id, hashes) in inserted { model.indexes[index]?[id] = hashes }
                for id in deleted { model.indexes[index]?[id] = nil }
                for id in Set(inserted.keys).union(deleted) { model.provenance["\(index)/\(id)"] = via }
                if let metadata {
                    model.metadata[index]?[metadata.0] = metadata.1
                    model.provenance["\(index)/meta/\(metadata.0)"] = via
                }
            case 60..<85:
                let id = UInt32.random(in: Self.ids, using: &random)
                let hashes = model.hashes(for: id)
                model.provenance["\(index)/\(id)"] = try await acknowledge(.PUT, "/\(index)/\(id)", #"{"hashes":\#(hashes)}"#)
                model.indexes[index]?[id] = hashes
            default:
                let id = UInt32.random(in: Self.ids, using: &random)
                model.provenance["\(index)/\(id)"] = try await acknowledge(.DELETE, "/\(index)/\(id)", nil)
                model.indexes[index]?[id] = nil
            }
        }
    }

    mutating func createIndex(_ name: String) async throws {
        try await acknowledge(.PUT, "/\(name)", nil)
        model.indexes[name] = [:]
        model.metadata[name] = [:]
        model.names.insert(name)
    }

    mutating func deleteIndex(_ name: String) async throws {
        try await acknowledge(.DELETE, "/\(name)", nil)
        model.indexes[name] = nil
        model.metadata[name] = nil
    }

    /// Sends until a proxy answers 200, as a client behind a load balancer would: through the
    /// proxy that answered last, moving to the other one on anything else (a refusal).
    @discardableResult
    mutating func acknowledge(_ method: HTTPMethod, _ path: String, _ body: String?) async throws -> String {
        let deadline = ContinuousClock.now + .seconds(300)
        var attempts: [String] = []
        while true {
            let proxy = cluster.proxies[nextProxy % cluster.proxies.count]
            let reply = try? await cluster.send(method, proxy.url + path, json: body)
            if let reply, reply.status == 200 {
                acknowledged += 1
                return "acknowledged by \(proxy.name) at \(Date())" + (attempts.isEmpty ? "" : " after \(attempts.joined(separator: ", "))")
            }
            attempts.append("\(proxy.name): \(reply.map { String($0.status) } ?? "no answer")")
            nextProxy += 1
            refused += 1
            guard ContinuousClock.now < deadline else { throw BenchError("\(method) \(path) was refused for 5 minutes") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}

/// Compares each replica's fpindex with the model, id by id and metadata key by key.
struct ChaosVerifier {
    let cluster: ChaosCluster

    struct Result {
        /// A replica holds something not acknowledged, or an old version of it.
        var divergent: [String] = []
        /// A replica lacks an acknowledged fingerprint.
        var lost: [String] = []
    }

    func verify(_ model: ChaosModel) async throws -> Result {
        var result = Result()
        for replica in cluster.replicas {
            let base = "http://127.0.0.1:\(replica.devPort)"
            for name in model.names.sorted() {
                let info = try await cluster.send(.GET, base + "/\(name)")
                guard let fingerprints = model.indexes[name] else {
                    if info.status != 404 { result.divergent.append("\(replica.name): deleted index \(name) is still there") }
                    continue
                }
                guard info.status == 200, let object = try? JSONSerialization.jsonObject(with: Data(info.body)) as? [String: Any] else {
                    result.lost.append("\(replica.name): index \(name) is missing (\(info.status))")
                    continue
                }
                let metadata = (object["metadata"] as? [String: String] ?? [:]).filter { !ReservedMetadata.isReserved($0.key) }
                if metadata != model.metadata[name] ?? [:] {
                    let keys = Set(metadata.keys).union((model.metadata[name] ?? [:]).keys).filter { metadata[$0] != model.metadata[name]?[$0] }
                    let provenance = keys.sorted().map { "\($0): \(model.provenance["\(name)/meta/\($0)"] ?? "?")" }.joined(separator: "; ")
                    result.divergent.append(
                        "\(replica.name): \(name) metadata \(metadata), acknowledged \(model.metadata[name] ?? [:]) (\(provenance))")
                }
                for id in ChaosWriter.ids {
                    let present = try await cluster.send(.GET, base + "/\(name)/\(id)").status == 200
                    guard let hashes = fingerprints[id] else {
                        if present {
                            result.divergent.append(
                                "\(replica.name): \(name)/\(id) is there, deleted or never written (\(model.provenance["\(name)/\(id)"] ?? "?"))")
                        }
                        continue
                    }
                    guard present else {
                        result.lost.append("\(replica.name): \(name)/\(id) is missing (\(model.provenance["\(name)/\(id)"] ?? "?"))")
                        continue
                    }
                    let query = String(decoding: SearchRequest(query: hashes, minScore: 1, scorePct: 0).encoded(as: .json), as: UTF8.self)
                    let search = try await cluster.send(.POST, base + "/\(name)/_search", json: query)
                    let results = (try? SearchResponse.decode(from: search.body, format: .json).results) ?? []
                    if results != [SearchResult(id: id, score: UInt32(hashes.count))] {
                        result.divergent.append(
                            "\(replica.name): \(name)/\(id) has other hashes than acknowledged (search: \(results); \(model.provenance["\(name)/\(id)"] ?? "?"))")
                    }
                }
            }
        }
        return result
    }
}
