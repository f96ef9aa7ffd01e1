import Foundation
import JetStream
import KubeSim
import Kubernetes
import Logging
import Synchronization
import TestSupport

/// The API server a controller scenario runs against.
enum APIServerKind: String, Sendable, CustomStringConvertible {
    /// kubesim in this process: fault injection, and optionally no workload controllers so that
    /// the test can play the kubelet.
    case kubesim
    /// A real kube-apiserver + kube-controller-manager + etcd (`KUBE_ASSETS`): no kubelet, pods
    /// stay Pending.
    case envtest

    var description: String { rawValue }
}

/// An API server (kubesim or envtest), a nats-server and fpindex-controller processes, wired as
/// in a cluster; kubectl and a Kubernetes client to look at it. Everything is stopped by `stop()`.
final class ControllerHarness: Sendable {
    let kind: APIServerKind
    /// The in-process kubesim (nil on envtest).
    let kubesimServer: KubeSimServer?
    /// The real control plane (nil on kubesim).
    let envtest: EnvtestServer?
    let nats: NATSServer
    let directory: String
    let kubeconfig: String
    let client: KubernetesClient
    let jetStream: NATSClient
    let controllers = Mutex<[String: ChildProcess]>([:])
    static let kubesimToken = "harness-token"

    /// kubesim, for the scenarios that inject API faults (only run there).
    var kubesim: KubeSimServer {
        guard let kubesimServer else { fatalError("this scenario needs kubesim's fault injection") }
        return kubesimServer
    }

    /// The bearer token the harness, kubectl and the controllers use (an admin's).
    var token: String { envtest?.token ?? Self.kubesimToken }
    var apiPort: Int { envtest?.port ?? kubesimServer!.port }
    var caCertificatePEM: String { envtest?.caCertificatePEM ?? kubesimServer?.caCertificatePEM ?? "" }

    /// - Parameters:
    ///   - kind: the API server.
    ///   - workloadControllers: kubesim runs its StatefulSet/Deployment controllers (pods are
    ///     created and stay Pending, as on envtest); without them the test plays those
    ///     controllers and the kubelet itself (`Kubelet`). The real server always has them.
    static func start(_ kind: APIServerKind = .kubesim, workloadControllers: Bool = false) async throws
        -> ControllerHarness
    {
        let directory = try TemporaryDirectory.make(prefix: "controller")
        let kubeconfig = directory + "/kubeconfig"
        var kubesim: KubeSimServer?
        var envtest: EnvtestServer?
        switch kind {
        case .kubesim:
            let server = try await KubeSimServer.start(
                // kubectl sends bearer tokens only over TLS.
                configuration: KubeSimConfiguration(
                    tokens: [kubesimToken], tls: true, bookmarkInterval: .seconds(1),
                    workloadControllers: workloadControllers),
                logger: Logger(label: "kubesim"))
            try server.kubeconfig(token: kubesimToken, namespace: "fp").write(
                toFile: kubeconfig, atomically: true, encoding: .utf8)
            kubesim = server
        case .envtest:
            let server = try await EnvtestServer.start()
            try server.kubeconfig(namespace: "fp").write(toFile: kubeconfig, atomically: true, encoding: .utf8)
            envtest = server
        }
        let nats: NATSServer
        do {
            nats = try await NATSServer.start()
        } catch {
            await kubesim?.shutdown()
            await envtest?.stop()
            throw error
        }
        let client = try KubernetesClient(
            configuration: try KubernetesConfiguration.resolve(kubeconfig: kubeconfig, context: nil, environment: [:]),
            logger: Logger(label: "test-client"))
        let jetStream = try await NATSClient.connect(
            NATSConfiguration(servers: [nats.url]), logger: Logger(label: "test-nats"))
        let harness = ControllerHarness(
            kind: kind, kubesim: kubesim, envtest: envtest, nats: nats, directory: directory, kubeconfig: kubeconfig,
            client: client, jetStream: jetStream)
        do {
            var namespace = Namespace()
            namespace.metadata.name = "fp"
            _ = try await client.create(namespace)
            _ = try await harness.kubectl(["apply", "-f", Locations.packageRoot + "/crds/fpindexclusters.yaml"])
            // The real server serves a new kind a moment after accepting its CRD.
            try await harness.kubectl(["wait", "--for=condition=Established", "crd/fpindexclusters.fpindex.acoustid.org"])
        } catch {
            await harness.stop()
            throw error
        }
        return harness
    }

    private init(
        kind: APIServerKind, kubesim: KubeSimServer?, envtest: EnvtestServer?, nats: NATSServer, directory: String,
        kubeconfig: String, client: KubernetesClient, jetStream: NATSClient
    ) {
        self.kind = kind
        self.kubesimServer = kubesim
        self.envtest = envtest
        self.nats = nats
        self.directory = directory
        self.kubeconfig = kubeconfig
        self.client = client
        self.jetStream = jetStream
    }

    /// The write requests (create, update, patch, delete) the API server answered for clients
    /// whose User-Agent starts with `userAgent`, as the server recorded them (envtest's audit
    /// log, kubesim's request log).
    func writes(byUserAgent userAgent: String) -> [String] {
        if let envtest {
            return envtest.auditedWrites().filter { $0.userAgent.hasPrefix(userAgent) && $0.stage == "ResponseComplete" }
                .map(\.description)
        }
        return kubesim.requestLog.all.filter { $0.isWrite && $0.userAgent.hasPrefix(userAgent) }.map(\.description)
    }

    /// Starts an fpindex-controller with this kubeconfig.
    @discardableResult
    func startController(_ name: String = "controller", leaderElect: Bool = false, extra: [String] = []) async throws
        -> ChildProcess
    {
        var arguments = ["--kubeconfig", kubeconfig, "--metrics-listen", "127.0.0.1:0", "--resync", "5"]
        if leaderElect { arguments += ["--leader-elect", "--identity", name, "--lease-namespace", "fp"] }
        let process = try ChildProcess(
            name: name, executable: try Locations.executable("fpindex-controller"), arguments: arguments + extra,
            environment: ["LOG_LEVEL": "debug"])
        _ = try await process.waitForLine(containing: "listening on ")
        controllers.withLock { $0[name] = process }
        return process
    }

    /// Runs kubectl against the API server and returns its standard output; throws with its error
    /// output. `input` replaces `-f -`. Never blocks a thread of the cooperative pool: kubesim
    /// runs in this process and needs it to answer.
    @discardableResult
    func kubectl(_ arguments: [String], input: String? = nil) async throws -> String {
        var arguments = arguments
        if let input {
            let file = directory + "/input-\(UUID().uuidString).yaml"
            try input.write(toFile: file, atomically: true, encoding: .utf8)
            if let dash = arguments.firstIndex(of: "-") { arguments[dash] = file }
        }
        let process = try ChildProcess(
            name: "kubectl", executable: try Locations.kubectl(),
            arguments: ["--kubeconfig", kubeconfig, "--cache-dir", directory + "/kube-cache"] + arguments,
            environment: ["HOME": directory])
        guard let status = await process.waitForExit(timeout: .seconds(60)) else {
            await process.stop()
            throw TestFailure("kubectl \(arguments.joined(separator: " ")) timed out")
        }
        let (stdout, stderr) = (process.stdout, process.stderr)
        TemporaryDirectory.remove((process.stdoutPath as NSString).deletingLastPathComponent)
        guard status == 0 else {
            throw TestFailure("kubectl \(arguments.joined(separator: " ")) failed: \(stderr)")
        }
        return stdout
    }

    /// A sample cluster as a user would write it.
    func sample(name: String = "main", replicas: Int = 2, maxLag: Int = 10, extra: String = "") -> String {
        """
        apiVersion: fpindex.acoustid.org/v1alpha1
        kind: FpindexCluster
        metadata:
          name: \(name)
          namespace: fp
        spec:
          replicas: \(replicas)
          workerImage: fpindex-cluster:test
          nats:
            url: \(nats.url)
          index:
            image: fpindex-dev:test
          readiness:
            maxLag: \(maxLag)
          updater:
            batchSize: 100
        \(extra)
        """
    }

    func cluster(_ name: String = "main") async throws -> FpindexCluster {
        try await client.get(FpindexCluster.self, namespace: "fp", name: name)
    }

    func condition(_ cluster: FpindexCluster, _ type: String) -> Condition? {
        cluster.status?.conditions?.first { $0.type == type }
    }

    var output: String {
        controllers.withLock { $0.values.map(\.output).joined(separator: "\n") }
    }

    /// Lines the controllers logged at warning level or above (swift-log's stream format:
    /// `<time> <level> <label> : ...`).
    func controllerLogProblems() -> [String] {
        controllers.withLock { $0.values.flatMap { $0.stderr.split(separator: "\n") } }.filter { line in
            let fields = line.split(separator: " ", maxSplits: 2)
            return fields.count >= 2 && ["warning", "error", "critical"].contains(fields[1])
        }.map(String.init)
    }

    func stop() async {
        for process in controllers.withLock({ Array($0.values) }) { await process.stop() }
        await jetStream.close()
        client.shutdown()
        await kubesimServer?.shutdown()
        await envtest?.stop()
        await nats.stop()
        TemporaryDirectory.remove(directory)
    }
}

/// Runs `body` with a harness on `kind`, printing the controllers' logs when it fails.
func withControllerHarness(
    _ kind: APIServerKind = .kubesim, workloadControllers: Bool = false, _ body: (ControllerHarness) async throws -> Void
) async throws {
    let harness = try await ControllerHarness.start(kind, workloadControllers: workloadControllers)
    do {
        try await body(harness)
    } catch {
        print(harness.output)
        // What the API server holds, as a user would look at it.
        for arguments in [["get", "all,pvc,events", "-A", "-o", "wide"], ["get", "fpc", "-A", "-o", "yaml"]] {
            print((try? await harness.kubectl(arguments)) ?? "kubectl \(arguments.joined(separator: " ")) failed")
        }
        await harness.stop()
        throw error
    }
    await harness.stop()
}
