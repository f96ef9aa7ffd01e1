import Foundation
import JetStream
import Kubernetes
import TestSupport
import Testing

@Suite("fpindex-controller against kubesim and nats-server", .serialized, .timeLimit(.minutes(3)))
struct ControllerIntegrationTests {
    @Test func appliedClusterGetsEveryChildTheStreamAndConsumers() async throws {
        try await Self.appliedClusterGetsEveryChildTheStreamAndConsumers(.kubesim)
    }
}

extension ControllerIntegrationTests {
    static func appliedClusterGetsEveryChildTheStreamAndConsumers(_ server: APIServerKind) async throws {
        try await withControllerHarness(server) { harness in
            let controller = try await harness.startController()
            let metricsURL = String(
                try await controller.waitForLine(containing: "listening on ").split(separator: " ").last!)
            _ = try await harness.kubectl(["apply", "-f", "-"], input: harness.sample())

            // Every child exists with owner references and labels.
            let set = try await eventually("the StatefulSet") {
                try? await harness.client.get(StatefulSet.self, namespace: "fp", name: "main-index")
            }
            let cluster = try await harness.cluster()
            #expect(set.metadata.ownerReferences?.first?.uid == cluster.metadata.uid)
            #expect(set.metadata.ownerReferences?.first?.controller == true)
            #expect(set.spec?.replicas == 2)
            #expect(set.spec?.template?.spec?.containers.map(\.name) == ["fpindex", "updater"])
            for (type, name) in [
                (ResourceType.services, "main-index"), (.services, "main-index-read"), (.services, "main-proxy"),
                (.deployments, "main-proxy"), (.podDisruptionBudgets, "main-index"),
            ] {
                let child = try await eventually("\(type) \(name)") {
                    try? await harness.client.get(type, namespace: "fp", name: name, as: DynamicObject.self)
                }
                #expect(child.json[path: ["metadata", "labels", "app.kubernetes.io/instance"]]?.string == "main")
                #expect(child.json[path: ["metadata", "ownerReferences"]]?.array?.first?["name"]?.string == "main")
            }

            // The stream and one consumer per replica, with the updater's configuration.
            let stream = try await eventually("the stream") { try await harness.jetStream.streamInfo("fpindex") }
            #expect(stream.config.subjects == ["fpindex.>"])
            #expect(stream.config.maxMsgsPerSubject == 1)
            for ordinal in 0..<2 {
                let consumer = try await eventually("consumer \(ordinal)") {
                    try await harness.jetStream.consumerInfo(stream: "fpindex", name: "main-index-\(ordinal)")
                }
                #expect(consumer.config.filterSubject == "fpindex.>")
                #expect(consumer.config.ackPolicy == "all")
                #expect(consumer.config.maxAckPending >= 200)
            }

            // Status: every condition, the finalizer, the selector.
            let withStatus = try await eventually("a status with every condition") {
                let cluster = try await harness.cluster()
                return cluster.status?.conditions?.count == 7
                    && harness.condition(cluster, "StreamReady")?.status == "True" ? cluster : nil
            }
            #expect(withStatus.metadata.finalizers == ["fpindex.acoustid.org/jetstream"])
            #expect(withStatus.status?.observedGeneration == withStatus.metadata.generation)
            #expect(withStatus.status?.selector == "app.kubernetes.io/instance=main,app.kubernetes.io/component=index")
            #expect(harness.condition(withStatus, "StreamReady")?.status == "True")
            #expect(harness.condition(withStatus, "Ready")?.status == "False")
            #expect(withStatus.status?.replicaStatus?.map(\.consumer) == ["main-index-0", "main-index-1"])

            // kubectl shows the printer columns.
            let table = try await harness.kubectl(["get", "fpc", "-n", "fp"])
            #expect(table.contains("READY"))
            #expect(table.contains("MAX-LAG"))
            #expect(table.contains("main"))
            let wide = try await harness.kubectl(["get", "fpc", "-n", "fp", "-o", "wide"])
            #expect(wide.contains("STREAM-SEQ"))
            #expect(wide.contains("PROXIES"))
            // The stream's identity cannot change (CEL transition rules of the CRD).
            let renamed = await #expect(throws: TestFailure.self) {
                try await harness.kubectl([
                    "patch", "fpc/main", "-n", "fp", "--type=merge", "-p", #"{"spec":{"stream":{"name":"other"}}}"#,
                ])
            }
            #expect(renamed?.description.contains("stream.name is immutable") == true, "\(String(describing: renamed))")
            let explained = try await harness.kubectl(["explain", "fpc.spec.readiness"])
            #expect(explained.contains("maxLag"))
            #expect(explained.contains("num_pending"))
            let events = try await harness.kubectl(["get", "events", "-n", "fp"])
            #expect(events.contains("ConsumerCreated"))
            #expect(events.contains("StreamCreated"))

            // Probes and metrics.
            let http = TestHTTPClient(baseURL: metricsURL)
            #expect(try await http.request(.GET, "/_health").status == 200)
            #expect(try await http.request(.GET, "/_ready").status == 200)
            #expect(try await http.request(.GET, "/ready").status == 200, "the name before 0.3 still answers")
            let metrics = try await http.request(.GET, "/_metrics").text
            #expect(metrics.contains(#"fpindex_controller_reconciles_total{result="success"}"#))
            #expect(metrics.contains(#"fpindex_controller_cluster_max_lag_messages{cluster_namespace="fp",cluster="main"}"#))
            // The series the alert rules and the dashboard read (manifests/monitoring/).
            #expect(metrics.contains(#"fpindex_controller_cluster_ready{cluster_namespace="fp",cluster="main"}"#))
            #expect(metrics.contains(#"fpindex_controller_stream_messages{cluster_namespace="fp",cluster="main"}"#))
            #expect(metrics.contains(#"fpindex_controller_stream_bytes{cluster_namespace="fp",cluster="main"}"#))
            // The test server limits neither the stream nor the account: no limit, no series.
            #expect(!metrics.contains("fpindex_controller_stream_limit_bytes{"))
            // The only controller, without leader election, acts as the leader.
            #expect(metrics.contains("fpindex_controller_leader 1"))
            #expect(metrics.contains("fpindex_controller_reconcile_duration_seconds"))
        }
    }
}

@Suite("Lag-gated readiness end to end", .serialized, .timeLimit(.minutes(3)))
struct LagGatedReadinessTests {
    /// Replicas are Ready only once they have caught up: while their consumers lag by more
    /// than maxLag the cluster is not Ready and MAX-LAG shows it; then it goes to 0 and Ready.
    @Test func clusterBecomesReadyWhenReplicasCatchUp() async throws {
        try await withControllerHarness { harness in
            let kubelet = Kubelet(harness: harness)
            try await harness.startController()
            _ = try await harness.kubectl(["apply", "-f", "-"], input: harness.sample(replicas: 2, maxLag: 10))
            _ = try await eventually("the consumers") {
                try await harness.jetStream.consumerInfo(stream: "fpindex", name: "main-index-1")
            }
            _ = try await eventually("the proxy Deployment") {
                try? await harness.client.get(Deployment.self, namespace: "fp", name: "main-proxy")
            }
            let proxyURL = try await kubelet.startProxy()
            do {
                try await writeFingerprints(proxyURL: proxyURL, index: "music", count: 2000)

                // No replica runs yet: lag is the whole stream, the cluster is not Ready.
                let lagging = try await eventually("the status shows the lag") {
                    let cluster = try await harness.cluster()
                    return (cluster.status?.maxLag ?? 0) >= 2000 ? cluster : nil
                }
                #expect(harness.condition(lagging, "ReplicasCaughtUp")?.status == "False")
                #expect(harness.condition(lagging, "Ready")?.status == "False")
                #expect(harness.condition(lagging, "Ready")?.reason == "Lagging")
                #expect(harness.condition(lagging, "ProxyAvailable")?.status == "True")
                let wide = try await harness.kubectl(["get", "fpc", "main", "-n", "fp", "--no-headers"])
                #expect(wide.contains("Lagging"))

                // The "kubelet" starts the pods: they replay and catch up.
                let readiness = Task { await kubelet.syncReadiness() }
                defer { readiness.cancel() }
                try await kubelet.startIndexPod(0)
                try await kubelet.startIndexPod(1)
                let ready = try await eventually(timeout: .seconds(90), "Ready") {
                    let cluster = try await harness.cluster()
                    return harness.condition(cluster, "Ready")?.status == "True" ? cluster : nil
                }
                #expect(ready.status?.maxLag ?? 99 <= 10)
                #expect(ready.status?.readyReplicas == 2)
                #expect(harness.condition(ready, "ReplicasCaughtUp")?.status == "True")
                #expect(ready.status?.replicaStatus?.allSatisfy(\.caughtUp) == true)
                let columns = try await harness.kubectl(["get", "fpc", "main", "-n", "fp", "--no-headers"])
                    .split(separator: " ", omittingEmptySubsequences: true).map(String.init)
                // NAME READY REPLICAS MAX-LAG STATUS AGE
                #expect(columns.count >= 5)
                #expect(columns[1] == "2")
                #expect(columns[3] == "0")
                #expect(columns[4] == "Ready")
                let waited = try await harness.kubectl(["wait", "--for=condition=Ready", "fpc/main", "-n", "fp", "--timeout=30s"])
                #expect(waited.contains("condition met"))
            } catch {
                print(kubelet.output)
                await kubelet.stop()
                throw error
            }
            await kubelet.stop()
        }
    }
}
