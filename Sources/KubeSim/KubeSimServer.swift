import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// Settings of a kubesim server.
public struct KubeSimConfiguration: Sendable {
    /// Address to listen on (`--listen HOST:PORT`, default `127.0.0.1`).
    public var host: String
    /// Port to listen on; 0 picks a free one (the bound port is reported).
    public var port: Int
    /// Accepted bearer tokens (`--token`, repeatable); empty: no authentication.
    public var tokens: Set<String>
    /// Generate a CA and a serving certificate and serve HTTPS (`--tls`).
    public var tls: Bool
    /// Events retained for watch resume; older resourceVersions get 410 Expired.
    public var watchHistory: Int
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK (real servers: about a minute).
    public var bookmarkInterval: Duration
    /// Run the Deployment, ReplicaSet and StatefulSet controllers and the claim binder
    /// (`--no-workload-controllers` turns them off; default on). Pods are objects only: kubesim
    /// runs no processes.
    public var workloadControllers: Bool
    /// Who makes the controllers' pods Ready (`--pod-readiness manual|immediate`, default `manual`):
    /// `.manual` leaves them Pending for a test or pod runner to patch `status`; `.immediate`
    /// marks them Running and Ready at once.
    public var podReadiness: PodReadiness
    /// The directory under which bound PersistentVolumeClaims get `NAMESPACE/CLAIM` directories
    /// (`--volume-root`); nil: a temporary directory, removed when the server stops.
    public var volumeRoot: String?
    /// Run the pods as local processes (`--run-pods`): see `NodeConfiguration`. Needs root.
    public var node: NodeConfiguration?

    public init(
        host: String = "127.0.0.1", port: Int = 0, tokens: Set<String> = [], tls: Bool = false, watchHistory: Int = 1000,
        bookmarkInterval: Duration = .seconds(5), workloadControllers: Bool = true, podReadiness: PodReadiness = .manual,
        volumeRoot: String? = nil, node: NodeConfiguration? = nil
    ) {
        self.host = host
        self.port = port
        self.tokens = tokens
        self.tls = tls
        self.watchHistory = watchHistory
        self.bookmarkInterval = bookmarkInterval
        self.workloadControllers = workloadControllers
        self.podReadiness = podReadiness
        self.volumeRoot = volumeRoot
        self.node = node
    }
}

/// The emulator's state without a listener: the object store, fault controls and TLS material.
/// `buildKubeSimApplication` serves it; `KubeSimServer` and `KubeSimService` wrap both.
public final class KubeSimEmulator: Sendable {
    public let configuration: KubeSimConfiguration
    public let faults: KubeSimFaults
    /// Every request answered (method, path, user agent, status), for tests that count writes.
    public let requestLog = KubeSimRequestLog()
    /// The generated CA and serving certificate, when `configuration.tls`.
    public let certificates: KubeSimCertificates?
    let store: ResourceStore
    let boundPort = BoundPort()
    /// The workload controllers (`configuration.workloadControllers`), run by `KubeSimService`.
    let controllers: WorkloadControllers?
    /// Where bound claims get their directories (`configuration.volumeRoot` or a temporary one).
    public let volumeRoot: String
    /// The node running pods (`configuration.node`).
    let node: NodeAgent?
    let podLogs: PodLogs?

    /// Creates the state (with the default namespaces) and, with `tls`, the CA and serving certificate.
    /// - Parameters:
    ///   - configuration: the server's settings.
    ///   - logger: the store's logger.
    /// - Throws: when the certificates cannot be generated.
    public init(configuration: KubeSimConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.store = ResourceStore(
            watchHistory: configuration.watchHistory, logger: logger, serviceSubnet: configuration.node?.serviceSubnet ?? "10.96")
        self.faults = KubeSimFaults(hub: store.hub)
        self.certificates =
            configuration.tls
            ? try KubeSimCertificates.generate(
                hosts: ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"],
                addresses: ["127.0.0.1", "::1"] + (configuration.node.map { [$0.kubernetesServiceIP, $0.gateway] } ?? []))
            : nil
        self.volumeRoot =
            configuration.volumeRoot
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("kubesim-volumes-\(UUID().uuidString)").path
        self.controllers =
            configuration.workloadControllers
            ? WorkloadControllers(store: store, readiness: configuration.podReadiness, volumeRoot: volumeRoot, logger: logger) : nil
        if let nodeConfiguration = configuration.node {
            if let problem = nodeConfiguration.problem { throw KubeSimSetupError(problem) }
            let logs = PodLogs()
            let tools = try NodeTools.locate()
            let context = NodeContext(
                configuration: nodeConfiguration, writer: WorkloadWriter(store: store),
                network: PodNetwork(configuration: nodeConfiguration, ip: tools.ip, logger: logger), tools: tools,
                imageMap: try ImageMap.load(path: nodeConfiguration.imageMapPath), logs: logs,
                prober: Prober(client: HTTPClient.shared, tools: tools),
                caCertificatePEM: certificates?.caCertificatePEM,
                serviceAccountToken: configuration.tokens.sorted().first ?? "kubesim-service-account", logger: logger)
            let boundPort = self.boundPort
            let host = configuration.host
            let fallbackPort = configuration.port
            self.node = NodeAgent(context: context, store: store) { (host, boundPort.withLock { $0 } ?? fallbackPort) }
            self.podLogs = logs
        } else {
            self.node = nil
            self.podLogs = nil
        }
    }

    /// Runs the workload controllers (if enabled) until cancelled or graceful shutdown; then
    /// removes a temporary volume root.
    func runControllers() async {
        await withTaskGroup(of: Void.self) { group in
            if let controllers {
                group.addTask { await cancelWhenGracefulShutdown { await controllers.run() } }
            }
            if let node { group.addTask { await node.run() } }
        }
        if configuration.volumeRoot == nil { try? FileManager.default.removeItem(atPath: volumeRoot) }
    }

    /// The port once listening (else the configured one).
    public var port: Int { boundPort.withLock { $0 } ?? configuration.port }

    /// `http(s)://host:port`.
    public var url: String {
        let host = configuration.host.contains(":") ? "[\(configuration.host)]" : configuration.host
        return "\(certificates == nil ? "http" : "https")://\(host == "0.0.0.0" ? "127.0.0.1" : host):\(port)"
    }

    /// A kubeconfig (YAML) with one cluster, user and context named `kubesim`.
    /// - Parameters:
    ///   - token: the bearer token the user presents (nil: none; kubectl sends tokens over HTTPS only).
    ///   - namespace: the context's namespace (nil: kubectl's default, `default`).
    /// - Returns: the kubeconfig text, with `certificate-authority-data` when serving TLS.
    public func kubeconfig(token: String?, namespace: String?) -> String {
        var cluster = "    server: \(url)\n"
        if let pem = certificates?.caCertificatePEM {
            cluster += "    certificate-authority-data: \(Data(pem.utf8).base64EncodedString())\n"
        }
        let user = token.map { ":\n    token: \"\($0)\"\n" } ?? ": {}\n"
        let context = "    cluster: kubesim\n    user: kubesim\n" + (namespace.map { "    namespace: \($0)\n" } ?? "")
        return """
            apiVersion: v1
            kind: Config
            clusters:
            - name: kubesim
              cluster:
            \(cluster)users:
            - name: kubesim
              user\(user)contexts:
            - name: kubesim
              context:
            \(context)current-context: kubesim
            preferences: {}

            """
    }

    /// Ends every open watch and refuses new ones (used at graceful shutdown, so that no
    /// stream, including those of pods that are still stopping, holds the server open).
    public func closeWatches() { store.hub.closeAll(refuseNew: true) }
}

/// Builds the HTTP(S) application serving `emulator`.
///
/// - Parameters:
///   - emulator: the state to serve.
///   - logger: the server's logger.
///   - onServerRunning: called with the bound port once the server listens.
public func buildKubeSimApplication(
    emulator: KubeSimEmulator, logger: Logger, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) throws -> some ApplicationProtocol {
    let configuration = emulator.configuration
    let responder = KubeSimResponder(
        store: emulator.store, faults: emulator.faults, tokens: configuration.tokens,
        bookmarkInterval: configuration.bookmarkInterval,
        serverAddress: { [emulator] in "\(emulator.configuration.host):\(emulator.port)" }, podLogs: emulator.podLogs,
        requestLog: emulator.requestLog)
    let server: HTTPServerBuilder
    if let tls = emulator.certificates {
        server = try .tls(.http1(), tlsConfiguration: tls.serverConfiguration())
    } else {
        server = .http1()
    }
    return Application(
        responder: responder, server: server,
        configuration: ApplicationConfiguration(
            address: .hostname(configuration.host, port: configuration.port), serverName: "kubesim"),
        onServerRunning: { channel in
            let port = channel.localAddress?.port ?? configuration.port
            emulator.boundPort.withLock { $0 = port }
            await onServerRunning(port)
        },
        logger: logger)
}

/// kubesim as a `Service` (for a `ServiceGroup`): serves until graceful shutdown, then closes
/// the open watches so that the HTTP server can drain.
public struct KubeSimService: Service {
    public let emulator: KubeSimEmulator
    let logger: Logger
    let onServerRunning: @Sendable (Int) async -> Void

    public init(emulator: KubeSimEmulator, logger: Logger, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) {
        self.emulator = emulator
        self.logger = logger
        self.onServerRunning = onServerRunning
    }

    public func run() async throws {
        try await emulator.node?.prepare()
        let app = try buildKubeSimApplication(emulator: emulator, logger: logger, onServerRunning: onServerRunning)
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { [emulator] in await emulator.runControllers() }
                try await app.run()
                group.cancelAll()
            }
        } onGracefulShutdown: { [emulator] in
            emulator.closeWatches()
        }
    }
}

/// A kubesim running in this process, for tests.
///
/// ```swift
/// let server = try await KubeSimServer.start(configuration: .init(tokens: ["t"]), logger: logger)
/// defer { Task { await server.shutdown() } }   // or call shutdown() at the end
/// try server.kubeconfig(token: "t", namespace: "default").write(toFile: path, atomically: true, encoding: .utf8)
/// server.faults.failNext(1, method: "GET", pathContains: "/pods", status: 429, retryAfterSeconds: 1)
/// ```
public final class KubeSimServer: Sendable {
    public let emulator: KubeSimEmulator
    let group: ServiceGroup
    let task: Task<Void, any Error>

    private init(emulator: KubeSimEmulator, group: ServiceGroup, task: Task<Void, any Error>) {
        self.emulator = emulator
        self.group = group
        self.task = task
    }

    /// Starts a server and returns once it listens.
    /// - Parameters:
    ///   - configuration: where to listen, tokens, TLS, watch history.
    ///   - logger: the server's logger.
    /// - Returns: the running server; call `shutdown()` when done.
    /// - Throws: when the certificates cannot be generated or the address cannot be bound.
    public static func start(configuration: KubeSimConfiguration, logger: Logger) async throws -> KubeSimServer {
        let emulator = try KubeSimEmulator(configuration: configuration, logger: logger)
        let (started, startedContinuation) = AsyncStream<Int>.makeStream()
        let service = KubeSimService(emulator: emulator, logger: logger) { port in
            startedContinuation.yield(port)
            startedContinuation.finish()
        }
        let group = ServiceGroup(configuration: .init(services: [service], logger: logger))
        let task = Task {
            defer { startedContinuation.finish() }
            try await group.run()
        }
        var iterator = started.makeAsyncIterator()
        guard await iterator.next() != nil else {
            try await task.value
            throw KubeSimError(code: 500, reason: "InternalError", message: "kubesim stopped before listening")
        }
        return KubeSimServer(emulator: emulator, group: group, task: task)
    }

    public var port: Int { emulator.port }
    public var url: String { emulator.url }
    public var caCertificatePEM: String? { emulator.certificates?.caCertificatePEM }
    public var faults: KubeSimFaults { emulator.faults }
    public var requestLog: KubeSimRequestLog { emulator.requestLog }

    /// A kubeconfig (YAML) for kubectl and clients; see `KubeSimEmulator.kubeconfig(token:namespace:)`.
    public func kubeconfig(token: String?, namespace: String?) -> String {
        emulator.kubeconfig(token: token, namespace: namespace)
    }

    /// Stops the server: ends watches, then shuts down gracefully.
    public func shutdown() async {
        emulator.closeWatches()
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}

/// The port the server bound, shared with the node (which forwards the `kubernetes` Service to it).
final class BoundPort: Sendable {
    private let port = Mutex<Int?>(nil)
    func withLock<T>(_ body: (inout Int?) -> T) -> T { port.withLock { body(&$0) } }
}
