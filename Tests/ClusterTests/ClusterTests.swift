import AsyncHTTPClient
import Foundation
import JetStream
import LegacyProtocol
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import TestSupport
import Testing

/// The README's promise, end to end: kubesim runs every pod (NATS, the controller in-cluster,
/// proxies, fpindex-dev and updaters) as processes; the test writes and searches through the
/// Services and drives everything with kubectl. One cluster at a time (they are heavy).
@Suite(.serialized) struct ClusterTests {
    static let indexPods = "app.kubernetes.io/component=index,app.kubernetes.io/instance=main"

    /// Deterministic hashes of a fingerprint id (a search for them finds that id first).
    static func hashes(_ id: Int) -> [UInt32] {
        (0..<40).map { UInt32(truncatingIfNeeded: (id &* 2_654_435_761) ^ ($0 &* 40_503) &+ $0 &* 7919) }
    }

    static func load(_ proxy: TestHTTPClient, _ ids: ClosedRange<Int>) async throws {
        let created = try await proxy.json(.PUT, "/sample", "{}")
        #expect([200, 409].contains(created.status), "create index: \(created.text)")
        for chunk in stride(from: ids.lowerBound, through: ids.upperBound, by: 500) {
            let changes = (chunk...min(chunk + 499, ids.upperBound)).map { id in
                "{\"insert\":{\"id\":\(id),\"hashes\":[\(hashes(id).map(String.init).joined(separator: ","))]}}"
            }
            let reply = try await proxy.json(.POST, "/sample/_update", "{\"changes\":[\(changes.joined(separator: ","))]}")
            guard reply.status == 200 else { throw TestFailure("write through the proxy failed: \(reply.status) \(reply.text)") }
        }
    }

    /// The best match of a search for `id`'s hashes, through `client` on a new connection.
    static func topMatch(_ client: TestHTTPClient, _ id: Int) async throws -> Int? {
        let query = "{\"query\":[\(hashes(id).map(String.init).joined(separator: ","))]}"
        let reply = try await client.request(
            .POST, "/sample/_search", body: Array(query.utf8),
            headers: [("Content-Type", "application/json"), ("Connection", "close")], timeout: .seconds(5))
        guard reply.status == 200 else { throw TestFailure("search answered \(reply.status): \(reply.text)") }
        return ((try reply.jsonObject()["results"] as? [[String: Any]])?.first?["id"] as? Int)
    }

    /// The fpindex of one pod, straight at its address.
    static func podIndex(_ cluster: KubeSimCluster, _ pod: String) async throws -> TestHTTPClient {
        guard let ip = try await cluster.pod(pod)?[path: "status.podIP"] as? String else {
            throw TestFailure("\(pod) has no address")
        }
        return TestHTTPClient(baseURL: "http://\(ip):6081")
    }

    static func holds(_ index: TestHTTPClient, id: Int) async -> Bool {
        (try? await index.request(.GET, "/sample/\(id)", headers: [("Connection", "close")], timeout: .seconds(3)).status) == 200
    }

    /// The replicas' durable consumers (the proxies' ordered consumers are ephemeral, named at random).
    static func consumers(_ cluster: KubeSimCluster) async throws -> Set<String> {
        let url = try await cluster.serviceURL("nats").replacingOccurrences(of: "http://", with: "nats://")
        let client = try await NATSClient.connect(NATSConfiguration(servers: [url]), logger: Logger(label: "test-nats"))
        do {
            let names = try await client.consumerNames(stream: "fpindex")
            await client.close()
            return Set(names.filter { $0.hasPrefix("main-index-") })
        } catch {
            await client.close()
            throw error
        }
    }

    static func container(_ pod: [String: Any]?, _ name: String) -> [String: Any]? {
        (pod?[path: "status.containerStatuses"] as? [[String: Any]])?.first { $0["name"] as? String == name }
    }

    static func isReady(_ pod: [String: Any]?) -> Bool {
        (pod?[path: "status.conditions"] as? [[String: Any]])?.contains {
            $0["type"] as? String == "Ready" && $0["status"] as? String == "True"
        } ?? false
    }

    @Test(arguments: IndexServerKind.all) func sampleWritesSearchesScalesAndDeletes(server: IndexServerKind) async throws {
        try await KubeSimCluster.with(indexServer: server) { cluster in
            let (proxy, read) = try await cluster.installSample()
            try await Self.load(proxy, 1...3000)
            try await eventually(timeout: .seconds(60), "the last write searchable through the read Service", interval: .milliseconds(500))
            {
                try await Self.topMatch(read, 3000) == 3000 ? true : nil
            }
            #expect(try await Self.topMatch(read, 1234) == 1234)

            // AcoustID's legacy clients: the proxy Service's port named legacy (6080 by default).
            let proxyService = try await cluster.object("-n", "fpindex", "get", "service", "main-proxy")
            let legacyPort =
                (proxyService[path: "spec.ports"] as? [[String: Any]])?.first { $0["name"] as? String == "legacy" }?["port"] as? Int
            #expect(legacyPort == 6080)
            let legacy = try await LegacyClient.connect(
                host: try #require(proxyService[path: "spec.clusterIP"] as? String), port: legacyPort ?? 6080)
            let legacyHashes = Self.hashes(9001).map { String(Int32(bitPattern: $0)) }.joined(separator: ",")
            #expect(try legacy.send("begin") == "OK ")
            #expect(try legacy.send("insert 9001 \(legacyHashes)") == "OK ")
            #expect(try legacy.send("commit") == "OK ")
            try await eventually(timeout: .seconds(60), "the legacy insert found by a legacy search", interval: .milliseconds(300)) {
                try legacy.send("search \(legacyHashes)") == "OK 9001:40" ? true : nil
            }

            // What a user looks at with kubectl.
            let logs = try await cluster.kubectl.ok("-n", "fpindex", "logs", "main-index-0", "-c", "updater")
            #expect(logs.contains("starting"), "updater log: \(logs.prefix(500))")
            let describe = try await cluster.kubectl.ok("-n", "fpindex", "describe", "pod", "main-index-0")
            #expect(describe.contains("Started container updater"), "\(describe)")
            let rollout = try await cluster.kubectl.ok("-n", "fpindex", "rollout", "status", "statefulset/main-index", "--timeout=60s")
            #expect(rollout.contains("complete"), "\(rollout)")
            let controllerLogs = try await cluster.kubectl.ok("-n", "fpindex-system", "logs", "deploy/fpindex-controller")
            #expect(controllerLogs.contains("fpindex-controller"), "\(controllerLogs.prefix(500))")

            // Scale up: the new replica replays the stream and is Ready only once caught up. (Its
            // lag in the status is checked where it is certain to be seen, in
            // ControllerIntegrationTests: the real fpindex replays these 3001 messages faster
            // than the status is refreshed.)
            let watch = try cluster.kubectl.start("-n", "fpindex", "get", "pods", "-w", "-l", Self.indexPods)
            try await cluster.kubectl.ok("-n", "fpindex", "scale", "fpc/main", "--replicas=3")
            // Ready means at most readiness.maxLag (1000) of the 3001 messages unapplied, so by the
            // time the pod is first seen Ready its index holds id 2000 (indexes only grow).
            var checkedReady = false
            var readyTooEarly = false
            try await eventually(timeout: .seconds(240), "3 replicas Ready and caught up", interval: .milliseconds(300)) {
                let fpc = try await cluster.cluster()
                if !checkedReady, Self.isReady(try await cluster.pod("main-index-2")) {
                    checkedReady = true
                    readyTooEarly = await !Self.holds(try await Self.podIndex(cluster, "main-index-2"), id: 2000)
                }
                let ready = fpc[path: "status.readyReplicas"] as? Int
                return ready == 3 && fpc[path: "status.maxLag"] as? Int == 0 ? true : nil
            }
            #expect(checkedReady)
            #expect(!readyTooEarly, "main-index-2 was Ready while more than maxLag behind")
            let third = try await Self.podIndex(cluster, "main-index-2")
            #expect(await Self.holds(third, id: 3000), "the new replica lacks the last write")
            #expect(await Self.holds(third, id: 1), "the new replica lacks the first write")
            #expect(try await Self.consumers(cluster) == ["main-index-0", "main-index-1", "main-index-2"])
            try await eventually(timeout: .seconds(10), "kubectl get pods -w to show main-index-2 running", interval: .milliseconds(500)) {
                watch.stdout.split(separator: "\n").contains { $0.contains("main-index-2") && $0.contains("Running") } ? true : nil
            }
            watch.stop()

            // Scale down: the extra pods stop, their consumers go.
            let second = try await Self.podIndex(cluster, "main-index-1")
            try await cluster.kubectl.ok("-n", "fpindex", "scale", "fpc/main", "--replicas=1")
            try await eventually(timeout: .seconds(120), "one index pod and one consumer left", interval: .milliseconds(500)) {
                let pods = try await cluster.pods(selector: Self.indexPods).count
                let consumers = try await Self.consumers(cluster)
                return pods == 1 && consumers == ["main-index-0"] ? true : nil
            }
            #expect(await !Self.holds(second, id: 1), "main-index-1's fpindex still answers after scale-down")
            #expect(await !Self.holds(third, id: 1), "main-index-2's fpindex still answers after scale-down")
            #expect(try await Self.topMatch(read, 42) == 42)

            // Delete: every process of the cluster stops, the consumers are deleted, the stream is kept (Retain).
            let first = try await Self.podIndex(cluster, "main-index-0")
            try await cluster.kubectl.ok(["-n", "fpindex", "delete", "fpc", "main", "--timeout=120s"], timeout: .seconds(130))
            try await eventually(timeout: .seconds(120), "every pod of the cluster gone", interval: .milliseconds(500)) {
                try await cluster.pods(selector: "app.kubernetes.io/instance=main").isEmpty ? true : nil
            }
            #expect(await !Self.holds(first, id: 1), "main-index-0's fpindex still answers after the delete")
            #expect(try await Self.consumers(cluster).isEmpty)
            let namespaces = try await HostNetwork.namespaces(bridge: cluster.bridge)
            #expect(namespaces.count == 3, "network namespaces left: \(namespaces) (expected NATS and two controllers)")
        }
    }

    @Test func killedProcessesInsidePodsRestartAndCatchUp() async throws {
        try await KubeSimCluster.with { cluster in
            let (proxy, _) = try await cluster.installSample()
            try await Self.load(proxy, 1...500)
            try await cluster.waitReady()

            for (pod, container) in [("main-index-0", "updater"), ("main-index-1", "fpindex")] {
                let before = Self.container(try await cluster.pod(pod), container)
                guard let id = before?["containerID"] as? String, let pid = Int32(id.replacingOccurrences(of: "kubesim://", with: ""))
                else { throw TestFailure("no container id for \(pod)/\(container)") }
                kill(pid, SIGKILL)
                let offset = pod == "main-index-0" ? 500 : 1000
                try await Self.load(proxy, (offset + 1)...(offset + 500))
                try await eventually(
                    timeout: .seconds(120), "\(pod)/\(container) restarted, Ready and caught up", interval: .milliseconds(500)
                ) {
                    () async throws -> Bool? in
                    let now = try await cluster.pod(pod)
                    let restarts = Self.container(now, container)?["restartCount"] as? Int
                    guard restarts == 1, Self.isReady(now) else { return nil }
                    let index = try await Self.podIndex(cluster, pod)
                    return await Self.holds(index, id: offset + 500) ? true : nil
                }
                let lastState = Self.container(try await cluster.pod(pod), container)?[path: "lastState.terminated"] as? [String: Any]
                #expect(lastState?["exitCode"] as? Int == 137, "\(String(describing: lastState))")
                let events = try await cluster.kubectl.ok(
                    "-n", "fpindex", "get", "events", "--field-selector", "involvedObject.name=\(pod)")
                #expect(events.contains("BackOff") || events.contains("Started"), "\(events)")
            }
            try await cluster.waitReady()
        }
    }

    /// A pod's program starts as a container runtime starts it (nothing blocked or ignored):
    /// a shell that traps SIGTERM stops at once when its pod is deleted, far inside its 30 s
    /// grace period, and its trap runs (SIGTERM, not SIGKILL, ended it).
    @Test func aPodThatTrapsSIGTERMStopsAtOnce() async throws {
        try await KubeSimCluster.with { cluster in
            try await Self.runTrapPod(cluster, onSIGTERM: "echo got-SIGTERM")
            let started = ContinuousClock.now
            try await cluster.kubectl.ok("-n", "default", "delete", "pod", "trap", "--wait=true", "--timeout=60s")
            let took = ContinuousClock.now - started
            // SIGKILL would come only after the 30 s grace period.
            #expect(took < .seconds(5), "deleting the pod took \(took)")
        }
    }

    /// The sample's NetworkPolicies at work on kubesim's node: a pod without the reader label
    /// reaches neither an index pod's port nor the read Service, a labelled one reaches both,
    /// and the proxies (which search and write through them) still work. Then the proxies'
    /// bearer tokens from a Secret: 401 without, 200 with, and a rotated Secret takes effect
    /// in the running proxies.
    @Test func theSampleShieldsItsIndexesAndTakesWritesOnlyWithAToken() async throws {
        try await KubeSimCluster.with { cluster in
            let (proxy, read) = try await cluster.installSample()
            let indexIP = try #require(try await cluster.pod("main-index-0")?[path: "status.podIP"] as? String)
            for (name, labels) in [("stranger", "{}"), ("reader", #"{fpindex.acoustid.org/reader: "true"}"#)] {
                let manifest = try cluster.kubectl.file(
                    "\(name).yaml",
                    """
                    apiVersion: v1
                    kind: Pod
                    metadata: {name: \(name), namespace: fpindex, labels: \(labels)}
                    spec:
                      containers:
                      - name: sh
                        image: busybox:1
                        command:
                        - /bin/sh
                        - -c
                        - |
                          while :; do
                            direct=$(/usr/bin/curl -s -m 2 -o /dev/null -w '%{http_code}' http://\(indexIP):6081/_health)
                            service=$(/usr/bin/curl -s -m 2 -o /dev/null -w '%{http_code}' http://main-index-read:6081/_health)
                            echo "direct $direct service $service"
                            sleep 0.3
                          done
                    """)
                try await cluster.kubectl.ok("apply", "-f", manifest)
            }
            func lines(_ pod: String) async throws -> [String] {
                try await cluster.kubectl.run("-n", "fpindex", "logs", pod).stdout.split(separator: "\n").map(String.init)
            }
            try await eventually(timeout: .seconds(60), "the reader through") {
                try await lines("reader").contains("direct 200 service 200") ? true : nil
            }
            // Refused once its rules are in, and from then on (the policy does not change).
            let refusedFrom = try await eventually(timeout: .seconds(60), "the stranger refused") {
                try await lines("stranger").firstIndex(of: "direct 000 service 000")
            }
            try await eventually(timeout: .seconds(60), "three more attempts of the stranger") {
                try await lines("stranger").count >= refusedFrom + 4 ? true : nil
            }
            #expect(try await lines("stranger")[refusedFrom...].allSatisfy { $0 == "direct 000 service 000" })
            // The proxies still search and write through the policies.
            try await Self.load(proxy, 1...10)
            try await eventually(timeout: .seconds(60), "a write searchable through the read Service") {
                try await Self.topMatch(read, 10) == 10 ? true : nil
            }

            // Tokens from a Secret.
            try await cluster.kubectl.ok(
                "-n", "fpindex", "create", "secret", "generic", "main-proxy-tokens", "--from-literal=tokens=first-token")
            try await cluster.kubectl.ok(
                "-n", "fpindex", "patch", "fpc", "main", "--type", "merge", "-p",
                #"{"spec":{"proxy":{"auth":{"tokenSecret":{"name":"main-proxy-tokens"}}}}}"#)
            try await Self.waitForProxyRollout(cluster, carrying: "AUTH_TOKEN_FILE")
            let proxies = try await Self.liveProxies(cluster)
            #expect(proxies.count == 2)
            let bearer = { (token: String) in [("Authorization", "Bearer \(token)")] }
            for pod in proxies {
                let direct = TestHTTPClient(baseURL: "http://\(try #require(pod[path: "status.podIP"] as? String)):8080")
                try await eventually(timeout: .seconds(30), "the proxy ready") {
                    try await direct.request(.GET, "/_ready").status == 200 ? true : nil
                }
                #expect(try await direct.json(.PUT, "/shielded").status == 401)
                #expect(try await direct.json(.PUT, "/shielded", headers: bearer("first-token")).status == 200)
                #expect(try await direct.json(.POST, "/shielded/_search", #"{"query":[1]}"#).status != 401)
            }
            // Rotation: the Secret changes, the same proxy processes take the new token.
            try await cluster.kubectl.ok(
                "-n", "fpindex", "patch", "secret", "main-proxy-tokens", "--type", "merge", "-p",
                #"{"stringData":{"tokens":"second-token"}}"#)
            for pod in proxies {
                let direct = TestHTTPClient(baseURL: "http://\(try #require(pod[path: "status.podIP"] as? String)):8080")
                try await eventually(timeout: .seconds(30), "the rotated token in force") {
                    try await direct.json(.PUT, "/shielded", headers: bearer("second-token")).status == 200 ? true : nil
                }
                #expect(try await direct.json(.PUT, "/shielded", headers: bearer("first-token")).status == 401)
            }
            let after = try await Self.liveProxies(cluster)
            #expect(
                Set(after.compactMap { $0[path: "metadata.uid"] as? String })
                    == Set(proxies.compactMap { $0[path: "metadata.uid"] as? String }))
            #expect(after.allSatisfy { Self.container($0, "proxy")?["restartCount"] as? Int == 0 })

            // HTTPS from a kubernetes.io/tls Secret: the proxies roll, are probed over HTTPS (the
            // kubelet does not verify a probe's certificate) and serve the Secret's certificate.
            let folder = try TemporaryDirectory.make(prefix: "proxy-cert")
            defer { TemporaryDirectory.remove(folder) }
            let openssl = try ChildProcess(
                name: "openssl", executable: "/bin/sh",
                arguments: [
                    "-c",
                    "cd '\(folder)' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
                        + " -subj /CN=main-proxy -addext subjectAltName=DNS:main-proxy -keyout tls.key -out tls.crt",
                ])
            #expect(await openssl.waitForExit(timeout: .seconds(60)) == 0, "\(openssl.output)")
            try await cluster.kubectl.ok(
                "-n", "fpindex", "create", "secret", "tls", "main-proxy-cert", "--cert=\(folder)/tls.crt", "--key=\(folder)/tls.key")
            try await cluster.kubectl.ok(
                "-n", "fpindex", "patch", "fpc", "main", "--type", "merge", "-p",
                #"{"spec":{"proxy":{"tls":{"secretName":"main-proxy-cert"}}}}"#)
            try await Self.waitForProxyRollout(cluster, carrying: "TLS_CERT_FILE")
            let secured = try await Self.liveProxies(cluster)
            let address = try #require(secured.first?[path: "status.podIP"] as? String)
            let curl = try ChildProcess(
                name: "curl", executable: "/bin/sh",
                arguments: [
                    "-c",
                    "curl -s --cacert '\(folder)/tls.crt' --resolve main-proxy:8080:\(address) -o /dev/null -w '%{http_code}'"
                        + " -X PUT -H 'Authorization: Bearer second-token' https://main-proxy:8080/over-tls",
                ])
            #expect(await curl.waitForExit(timeout: .seconds(30)) == 0, "\(curl.output)")
            #expect(curl.stdout == "200", "\(curl.output)")
        }
    }

    /// The sample's proxy pods that are not being deleted.
    /// make run's Prometheus (manifests/monitoring/prometheus.yaml) in the namespace monitoring:
    /// it discovers every pod through the API server and scrapes it by its annotations (the
    /// updaters, proxies and controller) or its port name (fpindex), through the sample's
    /// NetworkPolicies; it has one lag series per replica, a third once the cluster scales to
    /// three, and the alert rules loaded.
    @Test func prometheusHasEveryReplicasLag() async throws {
        try await KubeSimCluster.with { cluster in
            let (proxy, _) = try await cluster.installSample()
            let (url, targets) = try await cluster.installPrometheus()
            do {
                try await Self.checkPrometheus(PrometheusAPI(baseURL: url), cluster: cluster, proxy: proxy)
                await targets.stop()
            } catch {
                await targets.stop()
                throw TestFailure("\(error)\n\(targets.output)")
            }
        }
    }

    static func checkPrometheus(_ prometheus: PrometheusAPI, cluster: KubeSimCluster, proxy: TestHTTPClient) async throws {
        try await Self.load(proxy, 1...500)
        func lagSeries() async throws -> [String] {
            try await prometheus.query("fpindex_updater_lag_messages").map { $0.labels["pod"] ?? "?" }.sorted()
        }
        try await eventually(timeout: .seconds(120), "Prometheus to have one lag series per replica", interval: .seconds(1)) {
            try await lagSeries() == ["main-index-0", "main-index-1"] ? true : nil
        }
        // The controller (by its Deployment's annotations), fpindex itself (by port name) and the proxies.
        for (query, what) in [
            (#"fpindex_controller_cluster_ready{cluster="main"}"#, "the controller"), (#"fpindex_docs{index="sample"}"#, "fpindex"),
            ("fpindex_proxy_nats_connected", "the proxies"),
        ] {
            try await eventually(timeout: .seconds(60), "Prometheus to scrape \(what): \(query)", interval: .seconds(1)) {
                try await prometheus.query(query).isEmpty ? nil : true
            }
        }
        // One series per proxy, once both are scraped (the first scrape of each comes on its own).
        try await eventually(timeout: .seconds(60), "Prometheus to have one fpindex_proxy_nats_connected per proxy", interval: .seconds(1))
        {
            try await prometheus.query("fpindex_proxy_nats_connected").count == 2 ? true : nil
        }
        let rules = try await prometheus.http.request(.GET, "/api/v1/rules").text
        for alert in ["FpindexReplicaLagging", "FpindexClusterNotReady", "FpindexControllerNoLeader"] {
            #expect(rules.contains(alert), "\(alert) not loaded: \(rules.prefix(300))")
        }

        try await cluster.kubectl.ok("-n", "fpindex", "scale", "fpc/main", "--replicas=3")
        try await eventually(timeout: .seconds(180), "a lag series for the third replica", interval: .seconds(1)) {
            try await lagSeries() == ["main-index-0", "main-index-1", "main-index-2"] ? true : nil
        }
    }

    static func liveProxies(_ cluster: KubeSimCluster) async throws -> [[String: Any]] {
        try await cluster.pods(selector: "app.kubernetes.io/component=proxy,app.kubernetes.io/instance=main")
            .filter { $0[path: "metadata.deletionTimestamp"] == nil }
    }

    /// Waits until the controller has put `variable` into the proxy Deployment's template and
    /// the rollout of that template is complete (`rollout status` alone may see the previous
    /// template, complete, before the controller's patch arrives).
    static func waitForProxyRollout(_ cluster: KubeSimCluster, carrying variable: String) async throws {
        try await eventually(timeout: .seconds(60), "the proxy template with \(variable)") {
            let deployment = try await cluster.object("-n", "fpindex", "get", "deployment", "main-proxy")
            let containers = deployment[path: "spec.template.spec.containers"] as? [[String: Any]] ?? []
            let env = containers.first?["env"] as? [[String: Any]] ?? []
            return env.contains { $0["name"] as? String == variable } ? true : nil
        }
        try await cluster.kubectl.ok(
            ["-n", "fpindex", "rollout", "status", "deployment/main-proxy", "--timeout=180s"], timeout: .seconds(200))
    }

    /// A Secret volume follows its Secret while the pod runs, as the kubelet's is: a rotated
    /// proxy token reaches the proxy without a restart.
    @Test func aSecretVolumeFollowsItsSecretWithoutARestart() async throws {
        try await KubeSimCluster.with { cluster in
            try await cluster.kubectl.ok("-n", "default", "create", "secret", "generic", "rotating", "--from-literal=token=first-value")
            let manifest = try cluster.kubectl.file(
                "reader.yaml",
                """
                apiVersion: v1
                kind: Pod
                metadata: {name: reader, namespace: default}
                spec:
                  volumes: [{name: tokens, secret: {secretName: rotating}}]
                  containers:
                  - name: sh
                    image: busybox:1
                    volumeMounts: [{name: tokens, mountPath: /etc/tokens}]
                    command: ["/bin/sh", "-c", 'while :; do echo "seen $(cat /etc/tokens/token)"; sleep 0.2; done']
                """)
            try await cluster.kubectl.ok("apply", "-f", manifest)
            try await eventually(timeout: .seconds(60), "the first value read") {
                try await cluster.kubectl.run("-n", "default", "logs", "reader").stdout.contains("seen first-value") ? true : nil
            }
            let uid = try await cluster.pod("reader", namespace: "default")?[path: "metadata.uid"] as? String
            try await cluster.kubectl.ok(
                "-n", "default", "patch", "secret", "rotating", "--type", "merge", "-p", #"{"stringData":{"token":"second-value"}}"#)
            try await eventually(timeout: .seconds(30), "the second value read") {
                try await cluster.kubectl.run("-n", "default", "logs", "reader").stdout.contains("seen second-value") ? true : nil
            }
            let pod = try await cluster.pod("reader", namespace: "default")
            #expect(pod?[path: "metadata.uid"] as? String == uid)
            #expect(Self.container(pod, "sh")?["restartCount"] as? Int == 0)
        }
    }

    /// Starts pod `trap` (30 s grace period): a shell that runs `onSIGTERM` then exits 0 when
    /// it gets SIGTERM. Returns once it runs.
    static func runTrapPod(_ cluster: KubeSimCluster, onSIGTERM: String) async throws {
        let manifest = try cluster.kubectl.file(
            "trap.yaml",
            """
            apiVersion: v1
            kind: Pod
            metadata: {name: trap, namespace: default}
            spec:
              terminationGracePeriodSeconds: 30
              containers:
              - name: sh
                image: busybox:1
                command: ["/bin/sh", "-c", "trap '\(onSIGTERM); exit 0' TERM; echo started; while :; do sleep 0.05; done"]
            """)
        try await cluster.kubectl.ok("apply", "-f", manifest)
        try await eventually(timeout: .seconds(60), "the pod runs") {
            let logs = try await cluster.kubectl.run("-n", "default", "logs", "trap")
            return logs.stdout.contains("started") ? true : nil
        }
    }

    /// SIGTERM to kubesim (what `make stop` sends) gives every pod SIGTERM and its grace
    /// period, then removes the pod network and the bridge.
    @Test func stoppingKubesimStopsPodsGracefullyAndRemovesItsNetwork() async throws {
        // Pods share the host's file system; kubesim removes a pod's own files when it stops.
        let marker = "/tmp/fpindex-test-trap-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: marker) }
        try await KubeSimCluster.with { cluster in
            try await Self.runTrapPod(cluster, onSIGTERM: "sleep 1; echo got-SIGTERM > \(marker)")
            cluster.kubesim.signal(SIGTERM)
            let status = await cluster.kubesim.waitForExit(timeout: .seconds(60))
            #expect(status == 0, "kubesim exit: \(String(describing: status))\n\(cluster.kubesim.stderr.suffix(2000))")
            // The trap ran to its end (a second after SIGTERM): the pod had its grace period.
            let written = (try? String(contentsOfFile: marker, encoding: .utf8)) ?? ""
            #expect(written == "got-SIGTERM\n", "the trap wrote: '\(written)'")
            #expect(try await HostNetwork.namespaces(bridge: cluster.bridge).isEmpty)
            #expect(try await HostNetwork.linkExists(cluster.bridge) == false, "bridge \(cluster.bridge) left behind")
        }
    }

    @Test func rollingWorkerImageChangeKeepsSearchesAnswered() async throws {
        try await KubeSimCluster.with { cluster in
            let (proxy, read) = try await cluster.installSample()
            try await Self.load(proxy, 1...1000)
            // The status is refreshed every few seconds: ask the replicas themselves.
            for pod in ["main-index-0", "main-index-1"] {
                try await eventually(timeout: .seconds(60), "\(pod) to hold the last write", interval: .milliseconds(200)) {
                    await Self.holds(try await Self.podIndex(cluster, pod), id: 1000) ? true : nil
                }
            }

            let stop = StopFlag()
            let searches = Task {
                var answered = 0
                var failures: [String] = []
                while !stop.isSet {
                    do {
                        let top = try await Self.topMatch(read, 777)
                        if top == 777 { answered += 1 } else { failures.append("wrong match \(String(describing: top))") }
                    } catch {
                        failures.append("\(error)")
                    }
                    try? await Task.sleep(for: .milliseconds(20))
                }
                return (answered, failures)
            }
            let monitor = Task {
                var worstUnavailable = 0
                while !stop.isSet {
                    if let pods = try? await cluster.pods(selector: Self.indexPods) {
                        let ready = pods.filter { Self.isReady($0) && $0[path: "metadata.deletionTimestamp"] == nil }.count
                        worstUnavailable = max(worstUnavailable, 2 - ready)
                    }
                    try? await Task.sleep(for: .milliseconds(100))
                }
                return worstUnavailable
            }
            try await cluster.kubectl.ok(
                "-n", "fpindex", "patch", "fpc", "main", "--type", "merge", "-p", #"{"spec":{"workerImage":"fpindex-cluster:v2"}}"#)
            try await eventually(timeout: .seconds(60), "the StatefulSet to carry the new image", interval: .milliseconds(500)) {
                let set = try await cluster.object("-n", "fpindex", "get", "statefulset", "main-index")
                let images = (set[path: "spec.template.spec.containers"] as? [[String: Any]])?.compactMap { $0["image"] as? String }
                return images?.contains("fpindex-cluster:v2") == true ? true : nil
            }
            try await cluster.kubectl.ok(
                ["-n", "fpindex", "rollout", "status", "statefulset/main-index", "--timeout=300s"], timeout: .seconds(310))
            try await cluster.kubectl.ok(
                ["-n", "fpindex", "rollout", "status", "deployment/main-proxy", "--timeout=300s"], timeout: .seconds(310))
            try await cluster.waitReady()
            stop.set()
            let (answered, failures) = await searches.value
            let worstUnavailable = await monitor.value

            for pod in try await cluster.pods(selector: Self.indexPods) {
                #expect(Self.container(pod, "updater")?["image"] as? String == "fpindex-cluster:v2")
            }
            #expect(failures.isEmpty, "failed searches during the rollout: \(failures.prefix(5))")
            #expect(answered > 20, "too few searches ran: \(answered)")
            #expect(worstUnavailable <= 1, "\(worstUnavailable) index replicas were unavailable at once")
            #expect(await Self.holds(try await Self.podIndex(cluster, "main-index-0"), id: 1000))
            #expect(await Self.holds(try await Self.podIndex(cluster, "main-index-1"), id: 1000))
        }
    }
}

/// The host's view of kubesim's node.
enum HostNetwork {
    /// The network namespaces kubesim made for pods on this bridge.
    static func namespaces(bridge: String) async throws -> [String] {
        let process = try ChildProcess(name: "ip", executable: "/usr/sbin/ip", arguments: ["netns", "list"])
        _ = await process.waitForExit()
        return process.stdout.split(separator: "\n").map { String($0.split(separator: " ").first ?? "") }
            .filter { $0.hasPrefix("ks-\(bridge)-") }
    }

    /// Whether a network link of that name exists on the host.
    static func linkExists(_ name: String) async throws -> Bool {
        let process = try ChildProcess(name: "ip", executable: "/usr/sbin/ip", arguments: ["link", "show", name])
        return await process.waitForExit() == 0
    }
}

/// Tells background loops of a test to end.
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}
