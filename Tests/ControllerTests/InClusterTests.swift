import Foundation
import JetStream
import KubeSim
import Kubernetes
import TestSupport
import Testing

@Suite("Manifests and in-cluster configuration", .serialized, .timeLimit(.minutes(2)))
struct InClusterTests {
    @Test func manifestsApplyAndTheControllerRunsInClusterStyle() async throws {
        try await Self.manifestsApplyAndTheControllerRunsInClusterStyle(.kubesim)
    }
}

extension InClusterTests {
    /// `kubectl apply -k manifests/` applies cleanly; the controller then runs as its
    /// Deployment would run it: the Deployment's env, a service-account token file and CA.
    static func manifestsApplyAndTheControllerRunsInClusterStyle(_ server: APIServerKind) async throws {
        try await withControllerHarness(server) { harness in
            let applied = try await harness.kubectl(["apply", "-k", Locations.packageRoot + "/manifests"])
            #expect(applied.contains("deployment.apps/fpindex-controller"))
            #expect(applied.contains("clusterrole.rbac.authorization.k8s.io/fpindex-controller"))
            let again = try await harness.kubectl(["apply", "-k", Locations.packageRoot + "/manifests"])
            #expect(again.contains("unchanged"))

            let deployment = try await harness.client.get(
                Deployment.self, namespace: "fpindex-system", name: "fpindex-controller")
            let container = try #require(deployment.spec?.template?.spec?.containers.first)
            #expect(container.securityContext?["readOnlyRootFilesystem"]?.bool == true)
            #expect(deployment.spec?.template?.spec?.securityContext?["runAsNonRoot"]?.bool == true)

            // The pod's view: env from the manifest, a service-account folder.
            let accountDirectory = harness.directory + "/serviceaccount"
            try FileManager.default.createDirectory(atPath: accountDirectory, withIntermediateDirectories: true)
            // kubesim accepts any of its tokens (no RBAC); the real server issues the account's own.
            let token =
                server == .envtest
                ? try await harness.kubectl(["create", "token", "fpindex-controller", "-n", "fpindex-system"])
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                : harness.token
            try "\(token)\n".write(toFile: accountDirectory + "/token", atomically: true, encoding: .utf8)
            try harness.caCertificatePEM.write(toFile: accountDirectory + "/ca.crt", atomically: true, encoding: .utf8)
            try "fpindex-system".write(toFile: accountDirectory + "/namespace", atomically: true, encoding: .utf8)
            var environment = [
                "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": String(harness.apiPort),
            ]
            for variable in container.env ?? [] {
                if let value = variable.value { environment[variable.name] = value }
                if variable.valueFrom?.fieldRef?.fieldPath == "metadata.name" { environment[variable.name] = "controller-0" }
                if variable.valueFrom?.fieldRef?.fieldPath == "metadata.namespace" {
                    environment[variable.name] = "fpindex-system"
                }
            }
            environment["METRICS_LISTEN"] = "127.0.0.1:0"
            let controller = try ChildProcess(
                name: "in-cluster-controller", executable: try Locations.executable("fpindex-controller"),
                arguments: (container.args ?? []) + ["--service-account-dir", accountDirectory, "--resync", "5"],
                environment: environment)
            defer { Task { await controller.stop() } }
            _ = try await controller.waitForLine(containing: "listening on ")
            _ = try await harness.kubectl(["apply", "-f", "-"], input: harness.sample(replicas: 1))
            _ = try await eventually("the in-cluster controller reconciles") {
                try? await harness.client.get(StatefulSet.self, namespace: "fp", name: "main-index")
            }
            let lease = try await harness.client.get(Lease.self, namespace: "fpindex-system", name: "fpindex-controller")
            #expect(lease.spec?.holderIdentity == "controller-0")
            // Everything a cluster needs, within the account's rights: the stream, consumers, a status.
            try await eventually("the status") {
                let cluster = try await harness.cluster()
                return harness.condition(cluster, "StreamReady")?.status == "True" ? true : nil
            }
            let problems = controller.stderr.split(separator: "\n").filter {
                $0.contains(" warning ") || $0.contains(" error ") || $0.contains("Forbidden")
            }
            #expect(problems.isEmpty, "\(problems)")
        }
    }
}
