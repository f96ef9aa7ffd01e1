import TestSupport
import Testing

/// Every controller scenario that needs no running pods, against a real Kubernetes control
/// plane (kube-apiserver, kube-controller-manager and etcd from `KUBE_ASSETS`) and a real
/// nats-server. The same scenarios run against kubesim in their own suites. One at a time: each
/// starts its own control plane (about 600 MB, and a CPU-heavy start on two cores).
@Suite(
    "fpindex-controller on a real API server (envtest)", .serialized,
    .enabled(if: EnvtestServer.available, "envtest not available: \(EnvtestServer.unavailableReason ?? "")"),
    .timeLimit(.minutes(5)))
struct ControllerEnvtest {
    @Test func appliedClusterGetsEveryChildTheStreamAndConsumers() async throws {
        try await ControllerIntegrationTests.appliedClusterGetsEveryChildTheStreamAndConsumers(.envtest)
    }

    @Test func scaleUpThenDown() async throws { try await ScaleAndDriftTests.scaleUpThenDown(.envtest) }

    @Test func driftConverges() async throws { try await ScaleAndDriftTests.driftAndFaultsConverge(.envtest) }

    @Test func convergedClusterCausesNoWrites() async throws {
        try await ScaleAndDriftTests.convergedClusterCausesNoWrites(.envtest)
    }

    @Test(arguments: ["Retain", "Delete"])
    func deletionReleasesJetStreamPerPolicy(policy: String) async throws {
        try await LifecycleTests.deletionReleasesJetStreamPerPolicy(.envtest, policy: policy)
    }

    @Test func namespaceDeletionFinishes() async throws { try await LifecycleTests.namespaceDeletionFinishes(.envtest) }

    @Test func deletionWithNATSUnreachableIsBounded() async throws {
        try await LifecycleTests.deletionWithNATSUnreachableIsBounded(.envtest)
    }

    @Test func leaderElectionFailsOver() async throws { try await LifecycleTests.leaderElectionFailsOver(.envtest) }

    @Test func pausedClusterIsLeftAlone() async throws { try await PauseTests.pausedClusterIsLeftAlone(.envtest) }

    /// The real server takes the generated NetworkPolicies (and its defaults match kubesim's).
    @Test func networkPoliciesFollowTheSpec() async throws {
        try await ControllerIntegrationTests.networkPoliciesFollowTheSpec(.envtest)
    }

    /// Here the controller runs with its own service account's token, so the real server's RBAC
    /// decides every request against `manifests/rbac.yaml`.
    @Test func manifestsApplyAndTheControllerRunsInClusterStyle() async throws {
        try await InClusterTests.manifestsApplyAndTheControllerRunsInClusterStyle(.envtest)
    }
}
