import Foundation
import Synchronization

/// A real nats-server with JetStream on a free loopback port, its store in a temporary directory.
public final class NATSServer: Sendable {
    private let current: Mutex<ChildProcess>
    public let port: Int
    public let storeDirectory: String
    private let setup: Setup

    public var process: ChildProcess { current.withLock { $0 } }

    public var url: String { "nats://127.0.0.1:\(port)" }

    /// How the server is started: with flags only, or with a configuration file (written for
    /// each port tried) and the environment that file reads variables from.
    private struct Setup: Sendable {
        var configuration: (@Sendable (_ port: Int, _ store: String) throws -> String)?
        var environment: [String: String] = [:]
        var niceness = 0
    }

    /// Starts the server and waits until it accepts clients.
    /// - Parameter niceness: run it under `nice` (see `ChildProcess`).
    public static func start(niceness: Int = 0) async throws -> NATSServer {
        try await start(Setup(niceness: niceness))
    }

    /// Starts the server with a configuration file instead of flags, and waits until it accepts
    /// clients. `configuration` returns the file's text for the port and store directory chosen,
    /// so a test can run a configuration from `manifests/` with only those changed; `environment`
    /// is added to the server's own (a configuration reads an undefined `$NAME` from it, e.g. a
    /// password).
    public static func start(
        environment: [String: String] = [:], configuration: @escaping @Sendable (_ port: Int, _ store: String) throws -> String
    ) async throws -> NATSServer {
        try await start(Setup(configuration: configuration, environment: environment))
    }

    private static func start(_ setup: Setup) async throws -> NATSServer {
        let store = try TemporaryDirectory.make(prefix: "nats")
        // A port can still be taken between the check and nats-server's bind: try another.
        for attempt in 1...5 {
            let port = try FreePort.find()
            do {
                let process = try await launch(port: port, store: store, setup: setup)
                return NATSServer(process: process, port: port, storeDirectory: store, setup: setup)
            } catch let failure as TestFailure where failure.description.contains("address already in use") && attempt < 5 {
                continue
            }
        }
        throw TestFailure("nats-server could not find a free port")
    }

    private static func launch(port: Int, store: String, setup: Setup) async throws -> ChildProcess {
        var arguments = ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", store]
        if let configuration = setup.configuration {
            // In the store directory, so it goes with it.
            let file = store + "/nats-server.conf"
            try configuration(port, store).write(toFile: file, atomically: true, encoding: .utf8)
            arguments = ["-c", file]
        }
        let process = try ChildProcess(
            name: "nats-server", executable: try Locations.natsServer(), arguments: arguments, environment: setup.environment,
            niceness: setup.niceness)
        try await eventually(timeout: .seconds(20), "nats-server to accept clients\n\(process.output)") {
            guard process.isRunning else { throw TestFailure("nats-server exited\n\(process.output)") }
            return process.stderr.contains("Server is ready") ? true : nil
        }
        return process
    }

    private init(process: ChildProcess, port: Int, storeDirectory: String, setup: Setup) {
        self.current = Mutex(process)
        self.port = port
        self.storeDirectory = storeDirectory
        self.setup = setup
    }

    /// Stops the server (its store stays), for outage tests.
    public func kill() async {
        await process.stop()
    }

    /// Starts the server again on the same port with the same store.
    public func restart() async throws {
        await process.stop()
        let process = try await Self.launch(port: port, store: storeDirectory, setup: setup)
        current.withLock { $0 = process }
    }

    public func stop() async {
        await process.stop()
        TemporaryDirectory.remove(storeDirectory)
    }
}

/// A throwaway certificate authority and a serving certificate it signed for 127.0.0.1 and
/// localhost (P-256, valid two days), made with openssl: `ca.crt`, and `tls.crt` with `tls.key`
/// (the names of a kubernetes.io/tls Secret's keys), in a new temporary directory.
public enum TestCertificates {
    public static func make() async throws -> String {
        guard let openssl = EnvtestServer.executableInPath("openssl", override: nil) else {
            throw TestFailure("openssl is not installed (hack/setup installs it)")
        }
        let directory = try TemporaryDirectory.make(prefix: "tls")
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n".write(
            toFile: directory + "/server.ext", atomically: true, encoding: .utf8)
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        let steps: [[String]] = [
            ["req", "-x509"] + key + ["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=fpindex-cluster test CA"],
            ["req"] + key + ["-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=127.0.0.1"],
            [
                "x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "tls.crt",
                "-days", "2", "-extfile", "server.ext",
            ],
        ]
        for step in steps {
            let process = try SpawnedProcess.spawn(
                openssl, arguments: step, environment: ProcessInfo.processInfo.environment, workingDirectory: directory,
                output: .discard, error: .discard)
            guard let status = await process.waitForExit(), status.code == 0 else {
                TemporaryDirectory.remove(directory)
                throw TestFailure("openssl \(step.joined(separator: " ")) failed (\(process.exitStatus.map { "\($0)" } ?? "?"))")
            }
        }
        return directory
    }
}

/// Free TCP ports on loopback, for servers that cannot bind port 0 and report it. Ports come
/// from below the kernel's ephemeral range (32768 and up), so servers binding port 0 and
/// outgoing connections never take them meanwhile, and no port is handed out twice.
public enum FreePort {
    private static let handedOut = Mutex<Set<Int>>([])

    public static func find() throws -> Int {
        for _ in 0..<200 {
            let port = Int.random(in: 20_000..<32_000)
            let fresh = handedOut.withLock { $0.insert(port).inserted }
            if fresh, isFree(port) { return port }
        }
        throw TestFailure("cannot find a free port")
    }

    static func isFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port)).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let length = socklen_t(MemoryLayout<sockaddr_in>.size)
        return withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 }
        }
    }
}

/// Runs `body` with a fresh nats-server, stopping it and removing its store afterwards.
public func withNATSServer<T>(niceness: Int = 0, _ body: (NATSServer) async throws -> T) async throws -> T {
    let server = try await NATSServer.start(niceness: niceness)
    do {
        let result = try await body(server)
        await server.stop()
        return result
    } catch {
        print(server.process.output)
        await server.stop()
        throw error
    }
}

/// Three nats-servers routed into one JetStream cluster on loopback.
public final class NATSCluster: Sendable {
    struct Node: Sendable {
        let name: String
        let clientPort: Int
        let store: String
    }

    private let nodes: [Node]
    private let routePorts: [Int]
    private let processes: Mutex<[ChildProcess]>

    /// Client URLs of every node.
    public var urls: [String] { nodes.map { "nats://127.0.0.1:\($0.clientPort)" } }

    public static func start(size: Int = 3) async throws -> NATSCluster {
        var nodes: [Node] = []
        var routePorts: [Int] = []
        for n in 0..<size {
            nodes.append(
                Node(name: "n\(n + 1)", clientPort: try FreePort.find(), store: try TemporaryDirectory.make(prefix: "nats-n\(n + 1)")))
            routePorts.append(try FreePort.find())
        }
        let cluster = NATSCluster(nodes: nodes, routePorts: routePorts)
        for n in 0..<size {
            let process = try cluster.launch(n)
            cluster.processes.withLock { $0.append(process) }
        }
        for process in cluster.processes.withLock({ $0 }) {
            try await eventually(timeout: .seconds(30), "\(process.name) to be ready\n\(process.output)") {
                guard process.isRunning else { throw TestFailure("\(process.name) exited\n\(process.output)") }
                return process.stderr.contains("Server is ready") ? true : nil
            }
        }
        return cluster
    }

    private init(nodes: [Node], routePorts: [Int]) {
        self.nodes = nodes
        self.routePorts = routePorts
        self.processes = Mutex([])
    }

    private func launch(_ n: Int) throws -> ChildProcess {
        let node = nodes[n]
        let routes = routePorts.enumerated().filter { $0.offset != n }.map { "nats://127.0.0.1:\($0.element)" }.joined(separator: ",")
        return try ChildProcess(
            name: "nats-\(node.name)", executable: try Locations.natsServer(),
            arguments: [
                "-a", "127.0.0.1", "-p", String(node.clientPort), "-js", "-sd", node.store, "--server_name", node.name, "--cluster_name",
                "fpc",
                "--cluster", "nats://127.0.0.1:\(routePorts[n])", "--routes", routes,
            ])
    }

    /// Stops node `n` (its store stays).
    public func kill(_ n: Int) async {
        await processes.withLock { $0[n] }.stop()
    }

    /// Starts node `n` again with its store.
    public func restart(_ n: Int) async throws {
        let process = try launch(n)
        processes.withLock { $0[n] = process }
        try await eventually(timeout: .seconds(30), "\(process.name) to be ready again") {
            process.stderr.contains("Server is ready") ? true : nil
        }
    }

    public func stop() async {
        for process in processes.withLock({ $0 }) { await process.stop() }
        for node in nodes { TemporaryDirectory.remove(node.store) }
    }

    public var output: String { processes.withLock { $0 }.map(\.output).joined(separator: "\n") }
}
