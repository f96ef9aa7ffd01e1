import ArgumentParser
import Foundation
import KubeSim
import Logging
import ServiceLifecycle
import UnixSignals

#if canImport(Glibc)
    import Glibc
#endif

@main
struct KubeSimCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kubesim",
        abstract: "A Kubernetes API server emulator for tests and local runs.",
        discussion: """
            Prints 'kubesim listening on URL' once it listens. With --write-kubeconfig the file is written \
            before that line, ready for kubectl --kubeconfig.
            """)

    @Option(help: "Address to listen on, HOST:PORT (port 0 picks a free one).")
    var listen: String = "127.0.0.1:0"

    @Option(help: "A bearer token to accept (repeatable); without any, requests are not authenticated.")
    var token: [String] = []

    @Option(help: "Write a kubeconfig for kubectl to this path.")
    var writeKubeconfig: String?

    @Option(help: "The namespace the kubeconfig's context uses.")
    var namespace: String?

    @Flag(help: "Generate a CA and a serving certificate and serve HTTPS.")
    var tls = false

    @Option(help: "Events retained for watch resume.")
    var watchHistory: Int = 1000

    @Flag(
        inversion: .prefixedNo,
        help: "Run the Deployment, ReplicaSet and StatefulSet controllers (pods are objects only; no processes run).")
    var workloadControllers = true

    @Option(help: "Who makes the controllers' pods Ready: manual (clients patch pod status) or immediate.")
    var podReadiness: String = PodReadiness.manual.rawValue

    @Option(help: "Directory for the volumes of bound PersistentVolumeClaims (default: a temporary directory, removed on exit).")
    var volumeRoot: String?

    @Flag(
        help: """
            Run the pods as local processes, each in a network namespace on a bridge, with Services, \
            EndpointSlices, probes, restarts and logs (needs root, iproute2 and --image-map).
            """)
    var runPods = false

    @Option(help: "With --run-pods: the JSON file mapping images to local programs (see README).")
    var imageMap: String?

    @Option(help: "With --run-pods: where container logs and pod volumes live (default: a temporary directory).")
    var stateDir: String?

    @Option(help: "With --run-pods: the bridge's name (one per kubesim on a machine).")
    var bridge: String = "kubesim0"

    @Option(help: "With --run-pods: the first two octets of the pod network, a /16.")
    var podSubnet: String = "10.244"

    @Option(help: "With --run-pods: the first two octets of the service network, a /16.")
    var serviceSubnet: String = "10.96"

    @Option(help: "Log level (trace, debug, info, notice, warning, error, critical); default $LOG_LEVEL or info.")
    var logLevel: String?

    var hostAndPort: (String, Int)? {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
            (0...65535).contains(port)
        else { return nil }
        let host = listen[..<colon].trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return (host.isEmpty ? "127.0.0.1" : host, port)
    }

    var resolvedLogLevel: String? {
        logLevel ?? ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap { $0.isEmpty ? nil : $0 }
    }

    var nodeConfiguration: NodeConfiguration? {
        guard let imageMap else { return nil }
        let state =
            stateDir ?? FileManager.default.temporaryDirectory.appendingPathComponent("kubesim-node-\(getpid())").path
        return NodeConfiguration(
            bridge: bridge, podSubnet: podSubnet, serviceSubnet: serviceSubnet, imageMapPath: imageMap, stateDirectory: state)
    }

    func validate() throws {
        guard hostAndPort != nil else { throw ValidationError("--listen must be HOST:PORT with a port 0-65535") }
        guard watchHistory > 0 else { throw ValidationError("--watch-history must be positive") }
        guard PodReadiness(rawValue: podReadiness) != nil else {
            throw ValidationError("--pod-readiness must be one of: \(PodReadiness.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if runPods {
            guard getuid() == 0 else {
                throw ValidationError("--run-pods needs root: pods get network namespaces, veth pairs and bind mounts")
            }
            guard let imageMap, FileManager.default.isReadableFile(atPath: imageMap) else {
                throw ValidationError("--run-pods needs --image-map FILE (a readable JSON file)")
            }
            if PodReadiness(rawValue: podReadiness) == .immediate {
                throw ValidationError("--pod-readiness immediate and --run-pods exclude each other: the node reports readiness")
            }
            if let problem = nodeConfiguration?.problem { throw ValidationError(problem) }
        }
        if let level = resolvedLogLevel, Logger.Level(rawValue: level) == nil {
            throw ValidationError("--log-level / LOG_LEVEL: unknown level '\(level)'")
        }
    }

    func run() async throws {
        let level = resolvedLogLevel.flatMap(Logger.Level.init(rawValue:)) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "kubesim")
        let (host, port) = hostAndPort!
        let configuration = KubeSimConfiguration(
            host: host, port: port, tokens: Set(token), tls: tls, watchHistory: watchHistory,
            workloadControllers: workloadControllers, podReadiness: PodReadiness(rawValue: podReadiness) ?? .manual,
            volumeRoot: volumeRoot, node: runPods ? nodeConfiguration : nil)
        let emulator = try KubeSimEmulator(configuration: configuration, logger: logger)
        let kubeconfigPath = writeKubeconfig
        let token = token.first
        let namespace = namespace
        let service = KubeSimService(emulator: emulator, logger: logger) { _ in
            if let kubeconfigPath {
                do {
                    try emulator.kubeconfig(token: token, namespace: namespace).write(
                        toFile: kubeconfigPath, atomically: true, encoding: .utf8)
                } catch {
                    logger.error("cannot write the kubeconfig", metadata: ["path": "\(kubeconfigPath)", "error": "\(error)"])
                }
            }
            // A stable line on standard output, for scripts and tests that start us on port 0.
            print("kubesim listening on \(emulator.url)")
            fflush(nil)
        }
        let group = ServiceGroup(
            configuration: .init(services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        logger.info("stopped")
    }
}
