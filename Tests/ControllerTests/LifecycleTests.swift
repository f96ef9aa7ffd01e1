import Foundation
import JetStream
import Kubernetes
import TestSupport
import Testing

@Suite("Deletion and leader election", .serialized, .timeLimit(.minutes(3)))
struct LifecycleTests {
    @Test(arguments: ["Retain", "Delete"])
    func deletionReleasesJetStreamPerPolicy(policy: String) async throws {
        try await Self.deletionReleasesJetStreamPerPolicy(.kubesim, policy: policy)
    }

    @Test func namespaceDeletionFinishes() async throws { try await Self.namespaceDeletionFinishes(.kubesim) }

    @Test func deletionWithNATSUnreachableIsBounded() async throws {
        try await Self.deletionWithNATSUnreachableIsBounded(.kubesim)
    }

    @Test func leaderElectionFailsOver() async throws { try await Self.leaderElectionFailsOver(.kubesim) }
}

extension LifecycleTests {
    static func deletionReleasesJetStreamPerPolicy(_ server: APIServerKind, policy: String) async throws {
        try await withControllerHarness(server, workloadControllers: true) { harness in
            try await harness.startController()
            _ = try await harness.kubectl(
                ["apply", "-f", "-"],
                input: harness.sample(replicas: 2, extra: "  stream:\n    deletionPolicy: \(policy)\n"))
            try await eventually("consumers and the finalizer") {
                let cluster = try await harness.cluster()
                let consumers = try await harness.jetStream.consumerNames(stream: "fpindex")
                return consumers.count == 2 && cluster.metadata.finalizers?.isEmpty == false ? true : nil
            }
            _ = try await eventually("the StatefulSet") {
                try? await harness.client.get(StatefulSet.self, namespace: "fp", name: "main-index")
            }
            _ = try await harness.kubectl(["delete", "fpc/main", "-n", "fp", "--timeout=60s"])
            // Gone (kubectl waited), consumers deleted, the stream kept or deleted as asked.
            await #expect(throws: KubernetesError.self) { try await harness.cluster() }
            let stream = try await harness.jetStream.streamInfo("fpindex")
            if policy == "Retain" {
                #expect(stream != nil)
                #expect(try await harness.jetStream.consumerNames(stream: "fpindex").isEmpty)
            } else {
                #expect(stream == nil)
            }
            // Owner references remove the children, and the pods with them. (The real garbage
            // collector learns of a new kind in its next discovery pass, every 30 s.)
            try await eventually(timeout: .seconds(90), "the children are collected") {
                (try? await harness.client.get(StatefulSet.self, namespace: "fp", name: "main-index")) == nil ? true : nil
            }
            try await eventually(timeout: .seconds(60), "the pods are gone") {
                try await harness.client.list(Pod.self, namespace: "fp").items.isEmpty ? true : nil
            }
            #expect(harness.controllerLogProblems().isEmpty, "\(harness.controllerLogProblems())")
        }
    }

    /// Deleting the namespace deletes the cluster inside it: the finalizer releases JetStream,
    /// owner references take the children, and nothing is left Terminating.
    static func namespaceDeletionFinishes(_ server: APIServerKind) async throws {
        try await withControllerHarness(server, workloadControllers: true) { harness in
            try await harness.startController()
            try await harness.kubectl(["apply", "-f", "-"], input: harness.sample(replicas: 2))
            try await eventually("consumers and the finalizer") {
                let cluster = try await harness.cluster()
                let consumers = try await harness.jetStream.consumerNames(stream: "fpindex")
                return consumers.count == 2 && cluster.metadata.finalizers?.isEmpty == false ? true : nil
            }
            _ = try await eventually("the StatefulSet") {
                try? await harness.client.get(StatefulSet.self, namespace: "fp", name: "main-index")
            }
            try await harness.kubectl(["delete", "namespace", "fp", "--wait=false"])
            try await eventually(timeout: .seconds(90), "the namespace is gone") { () -> Bool? in
                do {
                    _ = try await harness.client.get(Namespace.self, name: "fp")
                    return nil
                } catch let error as KubernetesError where error.reason == .notFound {
                    return true
                }
            }
            #expect(try await harness.jetStream.consumerNames(stream: "fpindex").isEmpty)
            #expect(try await harness.jetStream.streamInfo("fpindex") != nil)
            let events = try await harness.kubectl(["get", "events", "-A"])
            #expect(!events.contains("ReconcileFailed"))
            #expect(harness.controllerLogProblems().isEmpty, "\(harness.controllerLogProblems())")
        }
    }

    /// With NATS gone for good, deletion still completes once the bound passes, with a warning.
    static func deletionWithNATSUnreachableIsBounded(_ server: APIServerKind) async throws {
        try await withControllerHarness(server) { harness in
            try await harness.startController(extra: ["--finalizer-timeout", "3"])
            _ = try await harness.kubectl(["apply", "-f", "-"], input: harness.sample(replicas: 1))
            try await eventually("the finalizer") {
                try await harness.cluster().metadata.finalizers?.isEmpty == false ? true : nil
            }
            await harness.nats.kill()
            _ = try await harness.kubectl(["delete", "fpc/main", "-n", "fp", "--wait=false"])
            let deleting = try await harness.cluster()
            #expect(deleting.metadata.deletionTimestamp != nil)
            try await eventually(timeout: .seconds(30), "the cluster is deleted without NATS") { () -> Bool? in
                do {
                    _ = try await harness.cluster()
                    return nil
                } catch let error as KubernetesError where error.reason == .notFound {
                    return true
                }
            }
            let events = try await harness.kubectl(["get", "events", "-n", "fp"])
            #expect(events.contains("FinalizerReleased"))
        }
    }

    /// Two controllers: one leads and acts; kill it and the other takes over within the lease.
    static func leaderElectionFailsOver(_ server: APIServerKind) async throws {
        try await withControllerHarness(server) { harness in
            let first = try await harness.startController("controller-a", leaderElect: true)
            let second = try await harness.startController("controller-b", leaderElect: true)
            let lease = try await eventually("a leader") {
                let lease = try? await harness.client.get(Lease.self, namespace: "fp", name: "fpindex-controller")
                return (lease?.spec?.holderIdentity).flatMap { $0.isEmpty ? nil : lease }
            }
            let leaderName = try #require(lease.spec?.holderIdentity)
            let (leader, standby) = leaderName == "controller-a" ? (first, second) : (second, first)
            _ = try await harness.kubectl(["apply", "-f", "-"], input: harness.sample(replicas: 1))
            _ = try await eventually("the leader reconciles") {
                try? await harness.client.get(Deployment.self, namespace: "fp", name: "main-proxy")
            }
            // Only the leader acted: every event names it.
            let instances = try await harness.client.list(Event.self, namespace: "fp").items.compactMap(\.reportingInstance)
            #expect(!instances.isEmpty)
            #expect(Set(instances) == [leaderName])
            #expect(!standby.stdout.contains("became the leader") && !standby.stderr.contains("became the leader"))

            // kill -9: no release; the standby takes over once the lease expires (15 s).
            leader.signal(SIGKILL)
            let started = ContinuousClock.now
            let takenOver = try await eventually(timeout: .seconds(40), "the standby takes over") {
                let lease = try await harness.client.get(Lease.self, namespace: "fp", name: "fpindex-controller")
                return lease.spec?.holderIdentity != leaderName && lease.spec?.holderIdentity?.isEmpty == false
                    ? lease : nil
            }
            #expect(ContinuousClock.now - started < .seconds(30))
            #expect((takenOver.spec?.leaseTransitions ?? 0) >= 1)
            // The new leader acts.
            try await harness.client.delete(Deployment.self, namespace: "fp", name: "main-proxy")
            _ = try await eventually("the new leader recreates the Deployment") {
                try? await harness.client.get(Deployment.self, namespace: "fp", name: "main-proxy")
            }
            // SIGTERM releases the lease at once.
            await standby.stop()
            let released = try await harness.client.get(Lease.self, namespace: "fp", name: "fpindex-controller")
            #expect(released.spec?.holderIdentity == nil)
        }
    }
}
