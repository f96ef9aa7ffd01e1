import Foundation
import JetStream
import KubeSim
import Kubernetes
import TestSupport
import Testing

@Suite("Scaling, drift and faults", .serialized, .timeLimit(.minutes(3)))
struct ScaleAndDriftTests {
    @Test func scaleUpThenDown() async throws { try await Self.scaleUpThenDown(.kubesim) }
    @Test func driftAndFaultsConverge() async throws { try await Self.driftAndFaultsConverge(.kubesim) }
    @Test func convergedClusterCausesNoWrites() async throws { try await Self.convergedClusterCausesNoWrites(.kubesim) }
}

extension ScaleAndDriftTests {
    static func consumerNames(_ harness: ControllerHarness) async throws -> Set<String> {
        Set(try await harness.jetStream.consumerNames(stream: "fpindex"))
    }

    /// The index pods (the proxy Deployment's pods are left out).
    static func podNames(_ harness: ControllerHarness) async throws -> Set<String> {
        let pods = try await harness.client.list(
            Pod.self, namespace: "fp", options: ListOptions(labelSelector: "app.kubernetes.io/component=index"))
        return Set(pods.items.compactMap(\.metadata.name))
    }

    /// A finalizer of the test's own keeps a deleted pod Terminating (as a kubelet does while
    /// its containers stop), so the test decides when the pod is gone.
    static let holdFinalizer = "test.fpindex.acoustid.org/hold"

    /// kubectl scale 2 -> 3 -> 1 with the server's own StatefulSet controller making and
    /// deleting the pods: the new consumer exists before the StatefulSet asks for the pod;
    /// consumers of removed replicas go only after their pods are gone.
    static func scaleUpThenDown(_ server: APIServerKind) async throws {
        try await withControllerHarness(server, workloadControllers: true) { harness in
            try await harness.startController()
            try await harness.kubectl(["apply", "-f", "-"], input: harness.sample(replicas: 2))
            try await eventually(timeout: .seconds(90), "two consumers") {
                try await consumerNames(harness) == ["main-index-0", "main-index-1"] ? true : nil
            }
            try await eventually(timeout: .seconds(90), "the StatefulSet controller creates two pods") {
                try await podNames(harness) == ["main-index-0", "main-index-1"] ? true : nil
            }

            try await harness.kubectl(["scale", "fpc/main", "-n", "fp", "--replicas=3"])
            let grown = try await eventually("the StatefulSet has 3 replicas") {
                let set = try await harness.client.get(StatefulSet.self, namespace: "fp", name: "main-index")
                return set.spec?.replicas == 3 ? set : nil
            }
            // The consumer was created before the StatefulSet grew (same reconcile, earlier action).
            #expect(try await consumerNames(harness).contains("main-index-2"))
            #expect(grown.metadata.generation ?? 0 >= 2)
            try await eventually(timeout: .seconds(60), "the third pod") { try await podNames(harness).contains("main-index-2") ? true : nil }
            let scaled = try await harness.kubectl(["get", "fpc/main", "-n", "fp", "-o", "jsonpath={.spec.replicas}"])
            #expect(scaled == "3")

            for pod in ["main-index-1", "main-index-2"] {
                try await harness.kubectl([
                    "patch", "pod/\(pod)", "-n", "fp", "--type=merge", "-p",
                    #"{"metadata":{"finalizers":["\#(holdFinalizer)"]}}"#,
                ])
            }
            try await harness.kubectl(["scale", "fpc/main", "-n", "fp", "--replicas=1"])
            try await eventually("the StatefulSet controller deletes the removed replicas' pods") {
                let pods = try await harness.client.list(Pod.self, namespace: "fp").items
                let terminating = pods.filter { $0.metadata.deletionTimestamp != nil }.compactMap(\.metadata.name)
                return Set(terminating) == ["main-index-1", "main-index-2"] ? true : nil
            }
            // The pods still exist (Terminating): their consumers stay. The controller requeues
            // every 2 s while the cluster is not Ready; wait for its status to show the scale.
            try await eventually("the status shows one wanted replica") {
                try await harness.cluster().status?.replicaStatus?.count == 1 ? true : nil
            }
            try await Task.sleep(for: .seconds(3))
            #expect(try await consumerNames(harness) == ["main-index-0", "main-index-1", "main-index-2"])
            for pod in ["main-index-1", "main-index-2"] {
                try await harness.kubectl([
                    "patch", "pod/\(pod)", "-n", "fp", "--type=json", "-p",
                    #"[{"op":"remove","path":"/metadata/finalizers"}]"#,
                ])
            }
            try await eventually("the removed replicas' consumers are deleted") {
                try await consumerNames(harness) == ["main-index-0"] ? true : nil
            }
            let status = try await eventually("the status follows") {
                let cluster = try await harness.cluster()
                return cluster.status?.replicaStatus?.count == 1 ? cluster : nil
            }
            #expect(status.status?.replicaStatus?.first?.consumer == "main-index-0")
            let events = try await harness.kubectl(["get", "events", "-n", "fp"])
            #expect(events.contains("Scaled"))
            #expect(events.contains("ConsumerDeleted"))
            #expect(harness.controllerLogProblems().isEmpty, "\(harness.controllerLogProblems())")
        }
    }

    /// Once a cluster has converged, the controller writes nothing to the API server: fields the
    /// server adds or defaults are not drift, and the periodic status refresh finds nothing new
    /// (pods stay Pending here, so the controller keeps re-reading every 2 s).
    static func convergedClusterCausesNoWrites(_ server: APIServerKind) async throws {
        try await withControllerHarness(server, workloadControllers: true) { harness in
            try await harness.startController()
            try await harness.kubectl(["apply", "-f", "-"], input: harness.sample(replicas: 2))
            try await eventually("a status with every condition") {
                let cluster = try await harness.cluster()
                return cluster.status?.conditions?.count == 7
                    && harness.condition(cluster, "StreamReady")?.status == "True"
                    && cluster.status?.observedGeneration == cluster.metadata.generation ? true : nil
            }
            try await eventually(timeout: .seconds(90), "the server's controllers made the pods") {
                try await podNames(harness) == ["main-index-0", "main-index-1"] ? true : nil
            }
            // Converged: no write for a few reconciles in a row.
            var quietSince = harness.writes(byUserAgent: "fpindex-controller").count
            try await eventually(timeout: .seconds(60), "the controller stops writing") { () -> Bool? in
                let count = harness.writes(byUserAgent: "fpindex-controller").count
                defer { quietSince = count }
                if count != quietSince { return nil }
                try await Task.sleep(for: .seconds(5))
                return harness.writes(byUserAgent: "fpindex-controller").count == count ? true : nil
            }
            let before = harness.writes(byUserAgent: "fpindex-controller")
            try await Task.sleep(for: .seconds(60))
            let during = Array(harness.writes(byUserAgent: "fpindex-controller").dropFirst(before.count))
            #expect(during.isEmpty, "the controller wrote to a converged cluster: \(during)")
            #expect(harness.controllerLogProblems().isEmpty, "\(harness.controllerLogProblems())")
        }
    }

    /// Whatever is deleted or changed by hand comes back; API faults (kubesim only) and NATS
    /// outages converge.
    static func driftAndFaultsConverge(_ server: APIServerKind) async throws {
        try await withControllerHarness(server) { harness in
            try await harness.startController()
            _ = try await harness.kubectl(["apply", "-f", "-"], input: harness.sample(replicas: 1))
            let deployment = try await eventually("the proxy Deployment") {
                try? await harness.client.get(Deployment.self, namespace: "fp", name: "main-proxy")
            }
            _ = try await eventually("the consumer") {
                try await harness.jetStream.consumerInfo(stream: "fpindex", name: "main-index-0")
            }

            // A consumer deleted behind the controller's back (e.g. a NATS restart without storage).
            try await harness.jetStream.deleteConsumer(stream: "fpindex", name: "main-index-0")
            _ = try await eventually("the consumer is recreated") {
                try await harness.jetStream.consumerInfo(stream: "fpindex", name: "main-index-0")
            }
            // Stream configuration changed on the server: put back.
            let update =
                #"{"name":"fpindex","subjects":["fpindex.>"],"retention":"limits","storage":"file","num_replicas":1,"max_msgs_per_subject":5,"max_msgs":-1,"max_bytes":-1,"max_age":0,"discard":"old","duplicate_window":120000000000,"allow_direct":true,"deny_delete":false,"deny_purge":false}"#
            _ = try await harness.jetStream.request(subject: "$JS.API.STREAM.UPDATE.fpindex", payload: Array(update.utf8))
            #expect(try await harness.jetStream.streamInfo("fpindex")?.config.maxMsgsPerSubject == 5)
            try await eventually("the stream is repaired") {
                try await harness.jetStream.streamInfo("fpindex")?.config.maxMsgsPerSubject == 1 ? true : nil
            }
            // A deleted Deployment comes back (a new object).
            _ = try await harness.kubectl(["delete", "deployment/main-proxy", "-n", "fp", "--wait=false"])
            let recreated = try await eventually("the Deployment is recreated") {
                let current = try? await harness.client.get(Deployment.self, namespace: "fp", name: "main-proxy")
                return current?.metadata.uid != deployment.metadata.uid ? current : nil
            }
            #expect(recreated.spec?.replicas == 2)
            // A hand edit of a field the controller owns is reverted; another writer's label stays.
            _ = try await harness.kubectl([
                "patch", "deployment/main-proxy", "-n", "fp", "--type=merge", "-p",
                #"{"metadata":{"labels":{"team":"search"}},"spec":{"replicas":7}}"#,
            ])
            try await eventually("the replicas are reverted") {
                let current = try await harness.client.get(Deployment.self, namespace: "fp", name: "main-proxy")
                return current.spec?.replicas == 2 ? current : nil
            }
            let labels = try await harness.client.get(Deployment.self, namespace: "fp", name: "main-proxy").metadata
                .labels
            #expect(labels?["team"] == "search")

            // API faults: dropped watches, expired resourceVersions, 500s and 429s.
            if server == .kubesim {
                harness.kubesim.faults.closeAllWatches()
                harness.kubesim.faults.expireResourceVersions()
                harness.kubesim.faults.failNext(
                    3, method: "GET", pathContains: "/deployments/", status: 500, retryAfterSeconds: nil)
                harness.kubesim.faults.failNext(2, method: nil, pathContains: "/services/", status: 429, retryAfterSeconds: 1)
            }
            try await harness.client.delete(Service.self, namespace: "fp", name: "main-index-read")
            _ = try await eventually("the read Service is recreated despite the faults") {
                try? await harness.client.get(Service.self, namespace: "fp", name: "main-index-read")
            }

            // NATS down: conditions say so; back up: they recover and the consumer is there.
            await harness.nats.kill()
            let down = try await eventually("StreamReady=False while NATS is down") {
                let cluster = try await harness.cluster()
                return harness.condition(cluster, "StreamReady")?.reason == "NATSUnavailable" ? cluster : nil
            }
            #expect(harness.condition(down, "Ready")?.status == "False")
            try await harness.nats.restart()
            try await eventually("StreamReady=True after NATS is back") {
                let cluster = try await harness.cluster()
                return harness.condition(cluster, "StreamReady")?.status == "True" ? true : nil
            }
            _ = try await eventually("the consumer exists after the restart") {
                try? await harness.jetStream.consumerInfo(stream: "fpindex", name: "main-index-0")
            }
        }
    }
}

@Suite("Pause", .serialized, .timeLimit(.minutes(2)))
struct PauseTests {
    @Test func pausedClusterIsLeftAlone() async throws { try await Self.pausedClusterIsLeftAlone(.kubesim) }
}


extension PauseTests {
    static func pausedClusterIsLeftAlone(_ server: APIServerKind) async throws {
        try await withControllerHarness(server) { harness in
            try await harness.startController()
            _ = try await harness.kubectl(["apply", "-f", "-"], input: harness.sample(replicas: 1))
            _ = try await eventually("the proxy Deployment") {
                try? await harness.client.get(Deployment.self, namespace: "fp", name: "main-proxy")
            }
            _ = try await harness.kubectl(["annotate", "fpc/main", "-n", "fp", "fpindex.acoustid.org/paused=true"])
            try await eventually("the Paused condition") {
                let cluster = try await harness.cluster()
                return harness.condition(cluster, "Paused")?.status == "True"
                    && harness.condition(cluster, "Ready")?.reason == "Paused" ? true : nil
            }
            try await harness.client.delete(Deployment.self, namespace: "fp", name: "main-proxy")
            // Several reconciles pass (resync is 5 s; the status is rewritten meanwhile): nothing is recreated.
            try await Task.sleep(for: .seconds(6))
            #expect((try? await harness.client.get(Deployment.self, namespace: "fp", name: "main-proxy")) == nil)
            _ = try await harness.kubectl(["annotate", "fpc/main", "-n", "fp", "fpindex.acoustid.org/paused-"])
            _ = try await eventually("unpaused: the Deployment is back") {
                try? await harness.client.get(Deployment.self, namespace: "fp", name: "main-proxy")
            }
            // The status is written after the children: wait for it rather than read it at once.
            try await eventually("the Paused condition False") {
                harness.condition(try await harness.cluster(), "Paused")?.status == "False" ? true : nil
            }
        }
    }
}
