import Foundation
import JetStream
import TestSupport
import Testing

/// The Grafana dashboard of manifests/monitoring/ against a real Prometheus (Debian's) that
/// scrapes a running cluster: a controller reconciling an FpindexCluster on kubesim, and the
/// data plane it describes as processes (nats-server, two fpindex-dev replicas with their
/// updaters on the controller's consumers, a proxy). Every panel's query must parse and return
/// at least one series, so no panel of the dashboard is empty on a working cluster.
@Suite("Monitoring: the dashboard against a real Prometheus", .serialized, .timeLimit(.minutes(5)))
struct DashboardTests {
    static let dashboardPath = Locations.packageRoot + "/manifests/monitoring/grafana-dashboard.json"

    /// Every query of every panel (rows' nested panels too), with its panel's title.
    static func panelQueries() throws -> [(panel: String, expression: String)] {
        let data = try Data(contentsOf: URL(fileURLWithPath: dashboardPath))
        guard let dashboard = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TestFailure("the dashboard is not a JSON object")
        }
        func queries(in panels: [[String: Any]]) -> [(String, String)] {
            panels.flatMap { panel -> [(String, String)] in
                let title = panel["title"] as? String ?? "?"
                let own = (panel["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String }.map { (title, $0) }
                return own + queries(in: panel["panels"] as? [[String: Any]] ?? [])
            }
        }
        return queries(in: dashboard["panels"] as? [[String: Any]] ?? [])
    }

    /// What Grafana puts in place of the dashboard's variables: every namespace, and a rate window
    /// of a few scrapes (Grafana's `$__rate_interval` is at least four scrape intervals).
    static func substitutingVariables(_ expression: String) -> String {
        expression.replacingOccurrences(of: "$namespace", with: ".*").replacingOccurrences(of: "$__rate_interval", with: "30s")
    }

    @Test func theDashboardHasThePanelsAnOperatorNeeds() throws {
        let queries = try Self.panelQueries()
        #expect(queries.count >= 20)
        let text = queries.map(\.expression).joined(separator: "\n")
        for metric in [
            "fpindex_controller_cluster_ready", "fpindex_controller_cluster_max_lag_messages", "fpindex_controller_stream_messages",
            "fpindex_controller_stream_bytes", "fpindex_proxy_published_messages_total", "fpindex_updater_lag_messages",
            "fpindex_updater_applied_messages_total", "fpindex_updater_batch_duration_seconds_bucket",
            "fpindex_search_duration_seconds_bucket", "fpindex_proxy_http_requests_total",
            "fpindex_proxy_http_request_duration_seconds_bucket", "fpindex_controller_reconciles_total",
        ] {
            #expect(text.contains(metric), "no panel shows \(metric)")
        }
    }

    @Test func everyPanelQueryReturnsSeriesFromARunningCluster() async throws {
        try await withControllerHarness { harness in
            let controller = try await harness.startController()
            let controllerURL = String(try await controller.waitForLine(containing: "listening on ").split(separator: " ").last!)
            _ = try await harness.kubectl(["apply", "-f", "-"], input: harness.sample(replicas: 2, maxLag: 10))
            try await eventually("the controller to create the stream and both consumers") {
                try await harness.jetStream.consumerNames(stream: "fpindex").filter { $0.hasPrefix("main-index-") }.count == 2 ? true : nil
            }
            let plane = try await DataPlane.start(natsURL: harness.nats.url, consumers: ["main-index-0", "main-index-1"])
            do {
                try await Self.check(plane: plane, controllerURL: controllerURL)
                await plane.stop()
            } catch {
                print(plane.output)
                await plane.stop()
                throw error
            }
        }
    }

    static func check(plane: DataPlane, controllerURL: String) async throws {
        // Writes through the proxy, and searches on each replica (fpindex's search histogram is per index).
        let created = try await plane.proxy.json(.PUT, "/sample", "{}")
        #expect(created.status == 200, "\(created.text)")
        for batch in 0..<5 {
            let changes = (1...50).map { "{\"insert\":{\"id\":\(batch * 50 + $0),\"hashes\":[\($0),\($0 + 1),\($0 + 2)]}}" }
            let reply = try await plane.proxy.json(.POST, "/sample/_update", "{\"changes\":[\(changes.joined(separator: ","))]}")
            #expect(reply.status == 200, "\(reply.text)")
        }
        for replica in plane.replicas {
            try await eventually("\(replica.pod) to hold the writes") {
                try await replica.index.request(.GET, "/sample/250").status == 200 ? true : nil
            }
            #expect(try await replica.index.json(.POST, "/sample/_search", #"{"query":[1,2,3]}"#).status == 200)
        }
        #expect(try await plane.proxy.json(.POST, "/sample/_search", #"{"query":[1,2,3]}"#).status == 200)

        // Targets labelled as the Kubernetes scrape configuration labels them (namespace, pod).
        func job(_ name: String, _ url: String, namespace: String = "fp", pod: String) -> String {
            let address = url.replacingOccurrences(of: "http://", with: "")
            return """
                  - job_name: \(name)
                    metrics_path: /_metrics
                    static_configs:
                      - targets: ["\(address)"]
                        labels: {namespace: \(namespace), pod: \(pod)}
                """
        }
        var jobs = [
            job("proxy", plane.proxy.baseURL, pod: "main-proxy-0"),
            job("controller", controllerURL, namespace: "fpindex-system", pod: "fpindex-controller-0"),
        ]
        for replica in plane.replicas {
            jobs.append(job("updater-\(replica.pod)", replica.updater.baseURL, pod: replica.pod))
            jobs.append(job("fpindex-\(replica.pod)", replica.index.baseURL, pod: replica.pod))
        }
        let configuration = """
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            scrape_configs:
            \(jobs.joined(separator: "\n"))
            """
        let prometheus = try await PrometheusServer.start(configuration: configuration)
        do {
            try await eventually(timeout: .seconds(60), "every target scraped") {
                let targets = try await prometheus.api.targets()
                return targets.count == jobs.count && targets.allSatisfy { $0.health == "up" } ? true : nil
            }
            // A rate needs two scrapes in its window: a few more writes while Prometheus watches.
            for batch in 5..<8 {
                let changes = (1...20).map { "{\"insert\":{\"id\":\(batch * 50 + $0),\"hashes\":[\($0)]}}" }
                _ = try await plane.proxy.json(.POST, "/sample/_update", "{\"changes\":[\(changes.joined(separator: ","))]}")
            }
            let queries = try Self.panelQueries()
            for (panel, expression) in queries {
                let query = Self.substitutingVariables(expression)
                let series = try await eventually(timeout: .seconds(60), "panel \"\(panel)\" to return series for \(query)") {
                    do {
                        let samples = try await prometheus.api.query(query)
                        return samples.isEmpty ? nil : samples
                    } catch let refused as PrometheusAPI.QueryError {
                        throw TestFailure("panel \"\(panel)\": Prometheus refused the query: \(refused)")
                    }
                }
                #expect(!series.isEmpty)
            }
            // Per replica: one lag series for each.
            let lag = try await prometheus.api.query("fpindex_updater_lag_messages")
            #expect(Set(lag.compactMap { $0.labels["pod"] }) == Set(plane.replicas.map(\.pod)))
            await prometheus.stop()
        } catch {
            print(prometheus.process.output)
            await prometheus.stop()
            throw error
        }
    }
}

/// fpindex-dev replicas with their updaters on given consumers, and a proxy whose read backend is
/// the first replica: the data plane the controller's children would run, as local processes.
struct DataPlane: Sendable {
    struct Replica: Sendable {
        var pod: String
        var indexProcess: ChildProcess
        var updaterProcess: ChildProcess
        var index: TestHTTPClient
        var updater: TestHTTPClient
    }

    var replicas: [Replica]
    var proxyProcess: ChildProcess?
    var proxy: TestHTTPClient

    static func start(natsURL: String, consumers: [String]) async throws -> DataPlane {
        var plane = DataPlane(replicas: [], proxyProcess: nil, proxy: TestHTTPClient(baseURL: "http://127.0.0.1:9"))
        do {
            for consumer in consumers {
                let port = try FreePort.find()
                let (index, _) = try await IndexServerKind.dev.start(port: port, directory: nil)
                let updater = try ChildProcess(
                    name: "fpindex-updater-\(consumer)", executable: try Locations.executable("fpindex-updater"),
                    arguments: [
                        "--consumer", consumer, "--fpindex-url", "http://127.0.0.1:\(port)", "--listen", "127.0.0.1:0",
                        "--batch-wait", "100", "--max-lag", "10",
                    ],
                    environment: ["NATS_URL": natsURL, "LOG_LEVEL": "info"])
                plane.replicas.append(
                    Replica(
                        pod: consumer, indexProcess: index, updaterProcess: updater,
                        index: TestHTTPClient(baseURL: "http://127.0.0.1:\(port)"),
                        updater: TestHTTPClient(baseURL: "http://127.0.0.1:9")))
                let url = String(try await updater.waitForLine(containing: "listening on ").split(separator: " ").last!)
                plane.replicas[plane.replicas.count - 1].updater = TestHTTPClient(baseURL: url)
            }
            let proxy = try ChildProcess(
                name: "fpindex-proxy", executable: try Locations.executable("fpindex-proxy"),
                arguments: ["--listen", "127.0.0.1:0", "--no-manage-stream"],
                environment: ["NATS_URL": natsURL, "FPINDEX_URL": plane.replicas.first?.index.baseURL ?? "http://127.0.0.1:9"])
            plane.proxyProcess = proxy
            plane.proxy = TestHTTPClient(
                baseURL: String(try await proxy.waitForLine(containing: "listening on ").split(separator: " ").last!))
            let client = plane.proxy
            try await eventually("the proxy to be ready\n\(proxy.output)") {
                try await client.request(.GET, "/_ready").status == 200 ? true : nil
            }
        } catch {
            await plane.stop()
            throw error
        }
        return plane
    }

    func stop() async {
        await proxyProcess?.stop()
        for replica in replicas {
            await replica.updaterProcess.stop()
            await replica.indexProcess.stop()
        }
    }

    var output: String {
        ([proxyProcess?.output ?? ""] + replicas.flatMap { [$0.updaterProcess.output, $0.indexProcess.output] }).joined(separator: "\n")
    }
}
