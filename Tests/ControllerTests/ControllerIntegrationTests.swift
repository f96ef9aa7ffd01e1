import Foundation
import JetStream
import Kubernetes
import TestSupport
import Testing

@Suite("fpindex-controller against kubesim and nats-server", .serialized, .timeLimit(.minutes(3)))
struct ControllerIntegrationTests {
    @Test func appliedClusterGetsEveryChildTheStreamAndConsumers() async throws {
        try await withControllerHarness { harness in
            try await harness.startController()
            _ = try harness.kubectl(["apply", "-f", "-"], input: harness.sample())

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
                return cluster.status?.conditions?.count == 7 ? cluster : nil
            }
            #expect(withStatus.metadata.finalizers == ["fpindex.acoustid.org/jetstream"])
            #expect(withStatus.status?.observedGeneration == withStatus.metadata.generation)
            #expect(withStatus.status?.selector == "app.kubernetes.io/instance=main,app.kubernetes.io/component=index")
            #expect(harness.condition(withStatus, "StreamReady")?.status == "True")
            #expect(harness.condition(withStatus, "Ready")?.status == "False")
            #expect(withStatus.status?.replicaStatus?.map(\.consumer) == ["main-index-0", "main-index-1"])

            // kubectl shows the printer columns.
            let table = try harness.kubectl(["get", "fpc", "-n", "fp"])
            #expect(table.contains("READY"))
            #expect(table.contains("MAX-LAG"))
            #expect(table.contains("main"))
            let events = try harness.kubectl(["get", "events", "-n", "fp"])
            #expect(events.contains("ConsumerCreated") || events.contains("Created"))
        }
    }
}
