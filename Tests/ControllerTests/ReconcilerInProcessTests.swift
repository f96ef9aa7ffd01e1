import Controller
import Foundation
import JetStream
import Kubernetes
import Logging
import ReplicaConsumer
import TestSupport
import Testing

/// The reconciler called directly, one reconcile at a time, against kubesim and a real
/// nats-server: each step's writes are checked right after it, with no controller process and
/// no waiting for a watch. (The binary runs the same scenarios in the other suites.)
@Suite("Reconciler in process", .serialized, .timeLimit(.minutes(2)))
struct ReconcilerInProcessTests {
    static func reconciler(_ harness: ControllerHarness) throws -> Reconciler {
        let logger = Logger(label: "reconciler")
        return Reconciler(
            kubernetes: harness.client, nats: try NATSConnections(kubernetes: harness.client, logger: logger),
            events: EventRecorder(kubernetes: harness.client, instance: "in-process", logger: logger),
            settings: ReconcilerSettings(), logger: logger)
    }

    static func eventNotes(_ harness: ControllerHarness) async throws -> [String] {
        let events = try await harness.client.list(
            ResourceType(group: "events.k8s.io", version: "v1", resource: "events", kind: "Event", namespaced: true),
            namespace: "fp", as: JSONValue.self)
        return events.items.compactMap { event in
            guard let reason = event["reason"]?.string else { return nil }
            return "\(reason): \(event["note"]?.string ?? "")"
        }
    }

    static func resourceVersions(_ harness: ControllerHarness) async throws -> [String: String] {
        var versions: [String: String] = [:]
        let model = ClusterModel(try await harness.cluster())
        for role in ChildRole.allCases {
            let object = try await harness.client.get(role.resourceType, namespace: "fp", name: role.name(model), as: JSONValue.self)
            versions[role.rawValue] = object[path: ["metadata", "resourceVersion"]]?.string
        }
        return versions
    }

    @Test func createConvergeScaleAndDelete() async throws {
        try await withControllerHarness(.kubesim) { harness in
            let reconciler = try Self.reconciler(harness)
            try await harness.kubectl(["apply", "-f", "-"], input: harness.sample(replicas: 2))

            // One reconcile makes everything: finalizer, stream, consumers, children.
            _ = try await reconciler.reconcile(namespace: "fp", name: "main")
            #expect(try await harness.cluster().metadata.finalizers == [ClusterModel.finalizer])
            #expect(try await harness.jetStream.streamInfo("fpindex") != nil)
            #expect(Set(try await harness.jetStream.consumerNames(stream: "fpindex")) == ["main-index-0", "main-index-1"])
            let consumer = try #require(try await harness.jetStream.consumerInfo(stream: "fpindex", name: "main-index-1"))
            let wanted = ReplicaConsumer.config(name: "main-index-1", subjectPrefix: "fpindex", batch: 100)
            #expect(consumer.config.filterSubject == wanted.filterSubject)
            #expect(consumer.config.ackPolicy == wanted.ackPolicy)
            #expect(consumer.config.maxAckPending == wanted.maxAckPending)
            #expect(consumer.config.ackWait == wanted.ackWait)
            let set = try await harness.client.get(StatefulSet.self, namespace: "fp", name: "main-index")
            #expect(set.spec?.replicas == 2)
            let created = try await Self.eventNotes(harness)
            #expect(created.contains { $0.hasPrefix("StreamCreated: stream fpindex") })
            #expect(created.contains("ConsumerCreated: consumer main-index-0"))
            #expect(created.contains("Created: StatefulSet main-index"))

            // Converged: the next reconcile writes no child.
            let before = try await Self.resourceVersions(harness)
            _ = try await reconciler.reconcile(namespace: "fp", name: "main")
            #expect(try await Self.resourceVersions(harness) == before)

            // Scale 2 -> 3: the third consumer, then the StatefulSet, with a Scaled event.
            try await harness.kubectl(["scale", "fpc/main", "-n", "fp", "--replicas=3"])
            _ = try await reconciler.reconcile(namespace: "fp", name: "main")
            #expect(try await harness.jetStream.consumerInfo(stream: "fpindex", name: "main-index-2") != nil)
            #expect(try await harness.client.get(StatefulSet.self, namespace: "fp", name: "main-index").spec?.replicas == 3)
            #expect(try await Self.eventNotes(harness).contains("Scaled: index replicas 2 -> 3"))

            // A consumer whose filter JetStream cannot change is recreated from its ack floor.
            _ = try await harness.jetStream.deleteConsumer(stream: "fpindex", name: "main-index-0")
            var foreign = wanted
            foreign.durableName = "main-index-0"
            foreign.filterSubject = "fpindex.other.>"
            _ = try await harness.jetStream.createConsumer(stream: "fpindex", config: foreign)
            _ = try await reconciler.reconcile(namespace: "fp", name: "main")
            let recreated = try #require(try await harness.jetStream.consumerInfo(stream: "fpindex", name: "main-index-0"))
            #expect(recreated.config.filterSubject == "fpindex.>")
            #expect(try await Self.eventNotes(harness).contains { $0.hasPrefix("ConsumerReset: consumer main-index-0 had filter_subject") })

            // Deleted: the consumers go (the stream stays: Retain), then the finalizer.
            try await harness.kubectl(["delete", "fpc/main", "-n", "fp", "--wait=false"])
            _ = try await reconciler.reconcile(namespace: "fp", name: "main")
            #expect(try await harness.jetStream.consumerNames(stream: "fpindex").isEmpty)
            #expect(try await harness.jetStream.streamInfo("fpindex") != nil)
            await #expect(throws: KubernetesError.self) { try await harness.cluster() }
        }
    }
}
