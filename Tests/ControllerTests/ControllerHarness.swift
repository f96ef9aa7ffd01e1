import Foundation
import JetStream
import KubeSim
import Kubernetes
import Logging
import Synchronization
import TestSupport

/// kubesim, a nats-server and fpindex-controller processes, wired as in a cluster; kubectl
/// and a Kubernetes client to look at it. Everything is stopped by `stop()`.
final class ControllerHarness: Sendable {
    let kubesim: KubeSimServer
    let nats: NATSServer
    let directory: String
    let kubeconfig: String
    let client: KubernetesClient
    let jetStream: NATSClient
    let controllers = Mutex<[String: ChildProcess]>([:])
    static let token = "harness-token"

    static func start() async throws -> ControllerHarness {
        let kubesim = try await KubeSimServer.start(
            // kubectl sends bearer tokens only over TLS.
            // The harness plays the kubelet and workload controllers itself (it runs the pods).
            configuration: KubeSimConfiguration(
                tokens: [token], tls: true, bookmarkInterval: .seconds(1), workloadControllers: false),
            logger: Logger(label: "kubesim"))
        let nats = try await NATSServer.start()
        let directory = try TemporaryDirectory.make(prefix: "controller")
        let kubeconfig = directory + "/kubeconfig"
        try kubesim.kubeconfig(token: token, namespace: "fp").write(toFile: kubeconfig, atomically: true, encoding: .utf8)
        let client = try KubernetesClient(
            configuration: try KubernetesConfiguration.resolve(kubeconfig: kubeconfig, context: nil, environment: [:]),
            logger: Logger(label: "test-client"))
        let jetStream = try await NATSClient.connect(
            NATSConfiguration(servers: [nats.url]), logger: Logger(label: "test-nats"))
        let harness = ControllerHarness(
            kubesim: kubesim, nats: nats, directory: directory, kubeconfig: kubeconfig, client: client,
            jetStream: jetStream)
        do {
            var namespace = Namespace()
            namespace.metadata.name = "fp"
            _ = try await client.create(namespace)
            _ = try await harness.kubectl(["apply", "-f", Locations.packageRoot + "/crds/fpindexclusters.yaml"])
        } catch {
            await harness.stop()
            throw error
        }
        return harness
    }

    private init(
        kubesim: KubeSimServer, nats: NATSServer, directory: String, kubeconfig: String, client: KubernetesClient,
        jetStream: NATSClient
    ) {
        self.kubesim = kubesim
        self.nats = nats
        self.directory = directory
        self.kubeconfig = kubeconfig
        self.client = client
        self.jetStream = jetStream
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

    /// Runs kubectl against kubesim and returns its standard output; throws with its error
    /// output. `input` replaces `-f -`. Never blocks a thread of the cooperative pool: kubesim
    /// runs in this process and needs it to answer.
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

    func stop() async {
        for process in controllers.withLock({ Array($0.values) }) { await process.stop() }
        await jetStream.close()
        client.shutdown()
        await kubesim.shutdown()
        await nats.stop()
        TemporaryDirectory.remove(directory)
    }
}

/// Runs `body` with a harness, printing the controllers' logs when it fails.
func withControllerHarness(_ body: (ControllerHarness) async throws -> Void) async throws {
    let harness = try await ControllerHarness.start()
    do {
        try await body(harness)
    } catch {
        print(harness.output)
        await harness.stop()
        throw error
    }
    await harness.stop()
}
