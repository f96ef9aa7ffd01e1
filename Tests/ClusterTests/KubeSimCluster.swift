import Foundation
import NIOCore
import Synchronization
import TestSupport

/// A whole cluster on this machine: the `kubesim` executable with its node (`--run-pods`, so
/// root), the CRD, NATS and the controller from the repository's manifests, as a user
/// installs them. kubectl looks at it; Services are reached at their cluster IPs from here.
/// Each cluster has its own bridge and subnets, so clusters of parallel tests do not meet.
final class KubeSimCluster: Sendable {
    let kubesim: ChildProcess
    let kubectl: Kubectl
    let directory: String
    let bridge: String
    static let token = "cluster-test-token"
    private static let counter = Atomic<Int>(0)

    /// - Parameter indexServer: the program the fpindex image runs (fpindex-dev, or the real one).
    static func start(indexServer: IndexServerKind = .dev) async throws -> KubeSimCluster {
        guard getuid() == 0 else {
            throw TestFailure("these tests run pods in network namespaces: they need root (CI runs as root)")
        }
        // Bridge and subnets differ between clusters of this process and, by the process id,
        // from those of another test run on the machine (pods 10.180-233, Services 10.120-173: clear
        // of the defaults make run uses).
        let n = counter.wrappingAdd(1, ordering: .relaxed).oldValue % 3 + Int(getpid() % 18) * 3
        let directory = try TemporaryDirectory.make(prefix: "cluster")
        let bin = Locations.binDirectory
        let nats = try Locations.natsServer()
        // The images as their Dockerfiles describe them (hack/kubesim-images.json does the same);
        // the published fpindex image's program is fpindex-dev, or the real fpindex.
        let fpindexProgram = try indexServer.executable()
        let imageMap = """
            {"images": [
              {"repository": "fpindex-cluster", "path": "\(bin)"},
              {"repository": "ghcr.io/acoustid/acoustid-index", "user": 6081,
               "cmd": ["fpindex", "--dir", "/var/lib/fpindex", "--host", "0.0.0.0", "--port", "8080"],
               "programs": {"fpindex": "\(fpindexProgram)"}},
              {"repository": "nats", "entrypoint": ["\(nats)"]},
              {"repository": "busybox", "path": "/bin", "entrypoint": ["sh"]},
              {"repository": "prom/prometheus", "path": "\(try Self.prometheusDirectory())", "entrypoint": ["prometheus"]}
            ]}
            """
        try imageMap.write(toFile: directory + "/images.json", atomically: true, encoding: .utf8)
        let bridge = "ktest\(n)"  // at most 10 characters
        let kubesim = try ChildProcess(
            name: "kubesim", executable: try Locations.executable("kubesim"),
            arguments: [
                "--listen", "127.0.0.1:0", "--tls", "--token", token, "--namespace", "fpindex", "--run-pods",
                "--image-map", directory + "/images.json", "--state-dir", directory + "/state", "--volume-root",
                directory + "/volumes", "--bridge", bridge, "--pod-subnet", "10.\(180 + n)", "--service-subnet",
                "10.\(120 + n)", "--write-kubeconfig", directory + "/kubeconfig",
            ])
        do {
            _ = try await kubesim.waitForLine(containing: "kubesim listening on")
            let kubectl = try Kubectl(kubeconfig: try String(contentsOfFile: directory + "/kubeconfig", encoding: .utf8))
            return KubeSimCluster(kubesim: kubesim, kubectl: kubectl, directory: directory, bridge: bridge)
        } catch {
            await kubesim.stop()
            throw TestFailure("kubesim did not start: \(error)\n\(kubesim.output)")
        }
    }

    private init(kubesim: ChildProcess, kubectl: Kubectl, directory: String, bridge: String) {
        self.kubesim = kubesim
        self.kubectl = kubectl
        self.directory = directory
        self.bridge = bridge
    }

    /// The operator as the README installs it: CRD, NATS, RBAC and the controller Deployment.
    func installOperator() async throws {
        let root = Locations.packageRoot
        try await kubectl.ok("apply", "-f", root + "/crds/fpindexclusters.yaml")
        try await kubectl.ok("apply", "-f", root + "/manifests/nats/single-node.yaml")
        try await kubectl.ok("apply", "-k", root + "/manifests/")
        try await kubectl.ok(["-n", "fpindex", "rollout", "status", "statefulset/nats", "--timeout=180s"], timeout: .seconds(200))
        try await kubectl.ok(
            ["-n", "fpindex-system", "rollout", "status", "deployment/fpindex-controller", "--timeout=180s"], timeout: .seconds(200))
    }

    /// Where Debian's prometheus is (hack/kubesim-images.json maps prom/prometheus to it too).
    static func prometheusDirectory() throws -> String {
        (try Locations.prometheusTool("prometheus") as NSString).deletingLastPathComponent
    }

    /// Prometheus as make run installs it (hack/monitoring-local: manifests/monitoring/ with its
    /// targets kept by hack/prometheus-targets, which runs until the returned process is stopped),
    /// rolled out; its Service's URL.
    func installPrometheus() async throws -> (url: String, targets: ChildProcess) {
        let root = Locations.packageRoot
        try await kubectl.ok("apply", "-k", root + "/hack/monitoring-local")
        let targets = try ChildProcess(
            name: "prometheus-targets", executable: root + "/hack/prometheus-targets", arguments: ["--every", "2"],
            environment: [
                "KUBECONFIG": directory + "/kubeconfig",
                "PATH": (try Locations.kubectl() as NSString).deletingLastPathComponent + ":"
                    + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"),
            ])
        do {
            try await kubectl.ok(
                ["-n", "monitoring", "rollout", "status", "deployment/prometheus", "--timeout=180s"], timeout: .seconds(200))
        } catch {
            var logs = ""
            for previous in [false, true] {
                let arguments = ["-n", "monitoring", "logs", "deploy/prometheus", "--tail=30"] + (previous ? ["--previous"] : [])
                logs += (try? await kubectl.run(arguments).output) ?? ""
            }
            let events = (try? await kubectl.run("-n", "monitoring", "get", "events").output) ?? ""
            await targets.stop()
            throw TestFailure("\(error)\n--- prometheus ---\n\(logs)\n--- events ---\n\(events)\n\(targets.output)")
        }
        return (try await serviceURL("prometheus", namespace: "monitoring"), targets)
    }

    /// Applies the sample FpindexCluster and waits until it is Ready and its Services answer
    /// (endpoints follow pod readiness a moment later, as on any cluster).
    func applySample() async throws {
        try await kubectl.ok("apply", "-f", Locations.packageRoot + "/manifests/samples/fpindexcluster.yaml")
        try await waitReady()
        for (service, path) in [("main-proxy", "/_ready"), ("main-index-read", "/_health")] {
            let client = TestHTTPClient(baseURL: try await serviceURL(service))
            try await eventually(timeout: .seconds(60), "Service \(service) to answer", interval: .milliseconds(200)) {
                try await client.request(.GET, path, headers: [("Connection", "close")], timeout: .seconds(3)).status == 200 ? true : nil
            }
        }
    }

    /// The operator and the sample, Ready; the clients of the proxy and read Services.
    func installSample() async throws -> (proxy: TestHTTPClient, read: TestHTTPClient) {
        try await installOperator()
        try await applySample()
        return (
            TestHTTPClient(baseURL: try await serviceURL("main-proxy")), TestHTTPClient(baseURL: try await serviceURL("main-index-read"))
        )
    }

    func waitReady(timeout: Int = 240) async throws {
        try await eventually(timeout: .seconds(timeout), "fpc/main Ready and caught up", interval: .milliseconds(500)) {
            let cluster = try await self.cluster()
            let status = cluster["status"] as? [String: Any]
            let replicas = cluster[path: "spec.replicas"] as? Int
            let ready = status?["readyReplicas"] as? Int
            return ready == replicas && (status?["maxLag"] as? Int) == 0 ? true : nil
        }
    }

    /// `kubectl get -o json` of one object.
    func object(_ arguments: String...) async throws -> [String: Any] {
        let text = try await kubectl.ok(arguments + ["-o", "json"])
        guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw TestFailure("not a JSON object: \(text)")
        }
        return object
    }

    func cluster() async throws -> [String: Any] { try await object("-n", "fpindex", "get", "fpc", "main") }

    func pods(selector: String) async throws -> [[String: Any]] {
        try await object("-n", "fpindex", "get", "pods", "-l", selector)["items"] as? [[String: Any]] ?? []
    }

    func pod(_ name: String, namespace: String = "fpindex") async throws -> [String: Any]? {
        let result = try await kubectl.run("-n", namespace, "get", "pod", name, "-o", "json")
        guard result.status == 0 else { return nil }
        return try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
    }

    /// `http://CLUSTER-IP:PORT` of a Service.
    func serviceURL(_ name: String, namespace: String = "fpindex") async throws -> String {
        let service = try await object("-n", namespace, "get", "service", name)
        guard let ip = service[path: "spec.clusterIP"] as? String,
            let port = (service[path: "spec.ports"] as? [[String: Any]])?.first?["port"] as? Int
        else { throw TestFailure("service \(name) has no cluster IP") }
        return "http://\(ip):\(port)"
    }

    /// Stops kubesim (it stops every pod and removes its network) and removes the files.
    func stop() async {
        kubesim.signal(SIGTERM)
        if await kubesim.waitForExit(timeout: .seconds(90)) == nil {
            await kubesim.stop()
        }
        kubectl.cleanup()
        TemporaryDirectory.remove(directory)
    }

    /// Runs `body` with a started cluster, always stopping it.
    static func with(indexServer: IndexServerKind = .dev, _ body: (KubeSimCluster) async throws -> Void) async throws {
        let cluster = try await start(indexServer: indexServer)
        do {
            try await body(cluster)
        } catch {
            let pods = (try? await cluster.kubectl.run("get", "pods", "-A", "-o", "wide").output) ?? ""
            let controller =
                (try? await cluster.kubectl.run("-n", "fpindex-system", "logs", "deploy/fpindex-controller", "--tail=20").output) ?? ""
            var proxies = ""
            for previous in [false, true] {
                let arguments = ["-n", "fpindex", "logs", "-l", "app.kubernetes.io/component=proxy", "--tail=15", "--prefix"]
                proxies += (try? await cluster.kubectl.run(arguments + (previous ? ["--previous"] : [])).output) ?? ""
            }
            // The replicas' containers (fpindex, updater), with each restarted one's previous run, and
            // their states: why a container restarted is in its last lines.
            var replicas = ""
            for previous in [false, true] {
                let arguments = [
                    "-n", "fpindex", "logs", "-l", "app.kubernetes.io/component=index", "--all-containers", "--tail=15", "--prefix",
                ]
                replicas += (try? await cluster.kubectl.run(arguments + (previous ? ["--previous"] : [])).output) ?? ""
            }
            let states =
                (try? await cluster.kubectl.run(
                    "-n", "fpindex", "get", "pods", "-l", "app.kubernetes.io/component=index", "-o",
                    "jsonpath={.items[*].status.containerStatuses}"
                ).output) ?? ""
            let events =
                (try? await cluster.kubectl.run("-n", "fpindex", "get", "events", "--sort-by=.lastTimestamp").output) ?? ""
            let log = cluster.kubesim.stderr.split(separator: "\n").suffix(60).joined(separator: "\n")
            await cluster.stop()
            throw TestFailure(
                "\(error)\n--- pods ---\n\(pods)\n--- controller (last lines) ---\n\(controller)\n--- proxies (last lines, then the "
                    + "previous containers') ---\n\(proxies)\n--- replicas (last lines, then the previous containers') ---\n\(replicas)"
                    + "\n--- replicas' container states ---\n\(states)\n--- events ---\n\(events.split(separator: "\n").suffix(40).joined(separator: "\n"))"
                    + "\n--- kubesim (last lines) ---\n\(log)")
        }
        await cluster.stop()
    }
}

extension Dictionary where Key == String, Value == Any {
    /// A dotted path into decoded JSON (`"status.conditions"`).
    subscript(path path: String) -> Any? {
        var current: Any? = self
        for key in path.split(separator: ".") { current = (current as? [String: Any])?[String(key)] }
        return current
    }
}
