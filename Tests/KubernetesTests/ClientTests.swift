import Foundation
import KubeSim
import Kubernetes
import Logging
import Synchronization
import TestSupport
import Testing

/// A kubesim on a free port and a client for it; both stopped at the end.
func withKubeSim<T>(
    _ configuration: KubeSimConfiguration = KubeSimConfiguration(tokens: ["test-token"]),
    credentials: KubernetesConfiguration.Credentials = .token("test-token"),
    _ body: (KubeSimServer, KubernetesClient) async throws -> T
) async throws -> T {
    let server = try await KubeSimServer.start(configuration: configuration, logger: Logger(label: "kubesim"))
    var tls = KubernetesConfiguration.TLS()
    if let pem = server.caCertificatePEM { tls.certificateAuthority = .data(Array(pem.utf8)) }
    let client = try KubernetesClient(
        configuration: KubernetesConfiguration(server: server.url, namespace: "default", tls: tls, credentials: credentials),
        logger: Logger(label: "client"))
    do {
        let result = try await body(server, client)
        client.shutdown()
        await server.shutdown()
        return result
    } catch {
        client.shutdown()
        await server.shutdown()
        throw error
    }
}

func configMap(_ name: String, namespace: String = "default", labels: [String: String]? = nil, data: [String: String])
    -> ConfigMap
{
    var map = ConfigMap()
    map.metadata = ObjectMeta(name: name, namespace: namespace, labels: labels)
    map.data = data
    return map
}

@Suite("Kubernetes client against kubesim", .timeLimit(.minutes(2)))
struct ClientTests {
    @Test func everyVerbOnABuiltInKind() async throws {
        try await withKubeSim { _, client in
            let created = try await client.create(configMap("a", labels: ["app": "x"], data: ["k": "1"]))
            #expect(created.metadata.uid?.isEmpty == false)
            #expect(created.metadata.resourceVersion != nil)
            #expect(created.metadata.creationTimestamp != nil)

            do {
                _ = try await client.create(configMap("a", data: [:]))
                Issue.record("a second create must conflict")
            } catch let error as KubernetesError {
                #expect(error.reason == .alreadyExists)
                #expect(error.code == 409)
            }

            let fetched = try await client.get(ConfigMap.self, namespace: "default", name: "a")
            #expect(fetched.data == ["k": "1"])

            // update: PUT with the current resourceVersion works, a stale one conflicts.
            var changed = fetched
            changed.data = ["k": "2"]
            let updated = try await client.update(changed)
            #expect(updated.data == ["k": "2"])
            #expect(updated.metadata.resourceVersion != fetched.metadata.resourceVersion)
            do {
                _ = try await client.update(changed)
                Issue.record("a stale resourceVersion must conflict")
            } catch let error as KubernetesError {
                #expect(error.reason == .conflict)
            }

            // merge patch, JSON patch, server-side apply
            let merged = try await client.patch(
                ConfigMap.self, namespace: "default", name: "a", patch: .merge(["data": ["m": "3"]]))
            #expect(merged.data == ["k": "2", "m": "3"])
            let jsonPatched = try await client.patch(
                ConfigMap.self, namespace: "default", name: "a",
                patch: .json([
                    JSONPatchOperation(op: "test", path: "/data/k", value: "2"),
                    JSONPatchOperation(op: "remove", path: "/data/m"),
                ]))
            #expect(jsonPatched.data == ["k": "2"])
            do {
                _ = try await client.patch(
                    ConfigMap.self, namespace: "default", name: "a",
                    patch: .json([JSONPatchOperation(op: "test", path: "/data/k", value: "nope")]))
                Issue.record("a failing JSON patch test must be refused")
            } catch let error as KubernetesError {
                #expect(error.code >= 400 && error.code < 500)
            }
            let applied = try await client.apply(configMap("b", data: ["owned": "yes"]), fieldManager: "tests")
            #expect(applied.data == ["owned": "yes"])
            #expect(applied.metadata.managedFields?.isEmpty == false)

            // list with a label selector
            let selected = try await client.list(
                ConfigMap.self, namespace: "default", options: ListOptions(labelSelector: "app=x"))
            #expect(selected.items.map(\.metadata.name) == ["a"])
            #expect(selected.metadata.resourceVersion != nil)

            // delete with preconditions: a wrong uid is refused, then the right one deletes.
            do {
                try await client.delete(
                    ConfigMap.self, namespace: "default", name: "a",
                    options: DeleteOptions(preconditions: .init(uid: "not-the-uid")))
                Issue.record("a wrong uid precondition must be refused")
            } catch let error as KubernetesError {
                #expect(error.reason == .conflict)
            }
            try await client.delete(
                ConfigMap.self, namespace: "default", name: "a",
                options: DeleteOptions(propagationPolicy: .background, preconditions: .init(uid: created.metadata.uid)))
            do {
                _ = try await client.get(ConfigMap.self, namespace: "default", name: "a")
                Issue.record("deleted object still there")
            } catch let error as KubernetesError {
                #expect(error.reason == .notFound)
                #expect(error.code == 404)
            }
        }
    }

    @Test func customResourceWithStatusAndScale() async throws {
        try await withKubeSim { _, client in
            try await installCRD(client)
            var cluster = FpindexCluster()
            cluster.metadata = ObjectMeta(name: "main", namespace: "default")
            cluster.spec.replicas = 2
            cluster.spec.workerImage = "w:1"
            let created = try await eventually("the CRD serves its kind") {
                try? await client.create(cluster)
            }
            #expect(created.metadata.generation == 1)

            // status through /status only; the main endpoint ignores status.
            var status = FpindexCluster.ClusterStatus()
            status.replicas = 2
            status.readyReplicas = 1
            status.selector = "app.kubernetes.io/instance=main"
            let patched = try await client.patch(
                FpindexCluster.self, namespace: "default", name: "main",
                patch: .merge(["status": try Kubernetes.JSONValue(encoding: status)]), subresource: "status")
            #expect(patched.status?.readyReplicas == 1)
            #expect(patched.metadata.generation == 1)
            let ignored = try await client.patch(
                FpindexCluster.self, namespace: "default", name: "main",
                patch: .merge(["status": ["readyReplicas": 9]]))
            #expect(ignored.status?.readyReplicas == 1)

            // scale subresource, through the CRD's paths; generation follows the spec change.
            let scale = try await client.scale(FpindexCluster.resourceType, namespace: "default", name: "main")
            #expect(scale.spec.replicas == 2)
            #expect(scale.status?.replicas == 2)
            #expect(scale.status?.selector == "app.kubernetes.io/instance=main")
            let scaled = try await client.setScale(
                FpindexCluster.resourceType, namespace: "default", name: "main", replicas: 3)
            #expect(scaled.spec.replicas == 3)
            let after = try await client.get(FpindexCluster.self, namespace: "default", name: "main")
            #expect(after.spec.replicas == 3)
            #expect(after.metadata.generation == 2)

            // The untyped escape hatch sees the same object.
            let dynamic = try await client.get(
                FpindexCluster.resourceType, namespace: "default", name: "main", as: DynamicObject.self)
            #expect(dynamic.json[path: ["spec", "workerImage"]]?.string == "w:1")
        }
    }

    @Test func paginationFollowsContinue() async throws {
        try await withKubeSim { _, client in
            for index in 0..<23 {
                _ = try await client.create(configMap(String(format: "cm-%02d", index), data: ["i": "\(index)"]))
            }
            let first = try await client.list(
                ConfigMap.resourceType, namespace: "default", options: ListOptions(limit: 10), as: ConfigMap.self)
            #expect(first.items.count == 10)
            #expect(first.metadata.continue?.isEmpty == false)
            let all = try await client.listAll(
                ConfigMap.resourceType, namespace: "default", options: ListOptions(limit: 10), as: ConfigMap.self)
            #expect(all.items.count == 23)
            #expect(Set(all.items.compactMap(\.metadata.name)).count == 23)
        }
    }

    @Test func throttlingIsRetriedAndServerErrorsSurface() async throws {
        try await withKubeSim { server, client in
            _ = try await client.create(configMap("a", data: [:]))
            server.faults.failNext(2, method: "GET", pathContains: "/configmaps/a", status: 429, retryAfterSeconds: 1)
            let fetched = try await client.get(ConfigMap.self, namespace: "default", name: "a")
            #expect(fetched.metadata.name == "a")

            server.faults.failNext(1, method: "GET", pathContains: "/configmaps/a", status: 500, retryAfterSeconds: nil)
            do {
                _ = try await client.get(ConfigMap.self, namespace: "default", name: "a")
                Issue.record("a 500 must surface")
            } catch let error as KubernetesError {
                #expect(error.reason == .serverError)
                #expect(error.isTransient)
            }
        }
    }

    @Test func perRequestTimeout() async throws {
        try await withKubeSim { server, _ in
            var configuration = KubernetesConfiguration(server: server.url, credentials: .token("test-token"))
            configuration.requestTimeout = .milliseconds(500)
            let client = try KubernetesClient(configuration: configuration, logger: Logger(label: "timeout"))
            defer { client.shutdown() }
            server.faults.setLatency(.seconds(3))
            do {
                _ = try await client.get(ConfigMap.self, namespace: "default", name: "slow")
                Issue.record("a slow answer must time out")
            } catch let error as KubernetesError {
                #expect(error.reason == .timeout)
                #expect(error.isTransient)
            }
            server.faults.setLatency(.zero)
        }
    }

    @Test func unauthorizedWithoutAValidToken() async throws {
        try await withKubeSim(credentials: .token("wrong")) { _, client in
            do {
                _ = try await client.get(ConfigMap.self, namespace: "default", name: "a")
                Issue.record("a wrong token must be refused")
            } catch let error as KubernetesError {
                #expect(error.reason == .unauthorized)
            }
        }
    }

    /// A rotated token file is re-read after a 401, not only on the periodic refresh.
    @Test func tokenFileIsReReadAfterA401() async throws {
        let dir = try TemporaryDirectory.make(prefix: "token")
        defer { TemporaryDirectory.remove(dir) }
        let tokenFile = dir + "/token"
        try "old-token\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        try await withKubeSim(
            KubeSimConfiguration(tokens: ["old-token", "new-token"]),
            credentials: .tokenFile(tokenFile, refresh: .seconds(3600))
        ) { server, client in
            _ = try await client.create(configMap("a", data: [:]))
            // The server stops accepting the old token; the file now holds the new one.
            try "new-token\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
            server.faults.failNext(1, method: nil, pathContains: "/configmaps/a", status: 401, retryAfterSeconds: nil)
            let fetched = try await client.get(ConfigMap.self, namespace: "default", name: "a")
            #expect(fetched.metadata.name == "a")
        }
        // Against a server that accepts only the new token, a stale cached token recovers too.
        try "stale\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        try await withKubeSim(
            KubeSimConfiguration(tokens: ["fresh"]), credentials: .tokenFile(tokenFile, refresh: .seconds(3600))
        ) { _, client in
            await #expect(throws: KubernetesError.self) {
                _ = try await client.get(ConfigMap.self, namespace: "default", name: "x")
            }
            try "fresh\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
            let created = try await client.create(configMap("x", data: [:]))
            #expect(created.metadata.name == "x")
        }
    }

    @Test func tlsWithTheGeneratedCAAndRefusalOfAnother() async throws {
        try await withKubeSim(KubeSimConfiguration(tokens: ["test-token"], tls: true)) { server, client in
            #expect(server.url.hasPrefix("https://"))
            let created = try await client.create(configMap("secure", data: ["k": "v"]))
            #expect(created.metadata.name == "secure")

            // Another kubesim's CA does not vouch for this server.
            let other = try await KubeSimServer.start(
                configuration: KubeSimConfiguration(tls: true), logger: Logger(label: "other"))
            let otherCA = other.caCertificatePEM ?? ""
            await other.shutdown()
            let wrong = try KubernetesClient(
                configuration: KubernetesConfiguration(
                    server: server.url, tls: .init(certificateAuthority: .data(Array(otherCA.utf8))),
                    credentials: .token("test-token")),
                logger: Logger(label: "wrong-ca"))
            defer { wrong.shutdown() }
            do {
                _ = try await wrong.get(ConfigMap.self, namespace: "default", name: "secure")
                Issue.record("a server not signed by the given CA must be refused")
            } catch let error as KubernetesError {
                #expect(error.reason == .transport)
            }
            // No CA at all: the system store does not know kubesim's CA either.
            let systemStore = try KubernetesClient(
                configuration: KubernetesConfiguration(server: server.url, credentials: .token("test-token")),
                logger: Logger(label: "system-ca"))
            defer { systemStore.shutdown() }
            await #expect(throws: KubernetesError.self) {
                _ = try await systemStore.get(ConfigMap.self, namespace: "default", name: "secure")
            }
        }
    }

    @Test func kubeconfigWrittenByKubeSimWorks() async throws {
        try await withKubeSim(KubeSimConfiguration(tokens: ["t1"], tls: true), credentials: .token("t1")) { server, _ in
            let dir = try TemporaryDirectory.make(prefix: "kubeconfig")
            defer { TemporaryDirectory.remove(dir) }
            try server.kubeconfig(token: "t1", namespace: "team").write(
                toFile: dir + "/config", atomically: true, encoding: .utf8)
            let configuration = try KubernetesConfiguration.resolve(
                kubeconfig: dir + "/config", context: nil, environment: [:])
            #expect(configuration.namespace == "team")
            let client = try KubernetesClient(configuration: configuration, logger: Logger(label: "kubeconfig"))
            defer { client.shutdown() }
            var namespace = Namespace()
            namespace.metadata.name = "team"
            _ = try await client.create(namespace)
            let created = try await client.create(
                ConfigMap.resourceType, namespace: nil, body: configMap("in-team", namespace: "team", data: [:]),
                as: ConfigMap.self)
            #expect(created.metadata.namespace == "team")
        }
    }
}

/// Installs a CRD for FpindexCluster with status and scale subresources.
func installCRD(_ client: KubernetesClient) async throws {
    let crd = """
        {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
         "metadata": {"name": "fpindexclusters.fpindex.acoustid.org"},
         "spec": {"group": "fpindex.acoustid.org", "scope": "Namespaced",
           "names": {"plural": "fpindexclusters", "singular": "fpindexcluster", "kind": "FpindexCluster",
                     "listKind": "FpindexClusterList", "shortNames": ["fpc"]},
           "versions": [{"name": "v1alpha1", "served": true, "storage": true,
             "schema": {"openAPIV3Schema": {"type": "object", "properties": {
               "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
               "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}},
             "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
               "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}}}]}}
        """
    let body = try JSONDecoder().decode(DynamicObject.self, from: Data(crd.utf8))
    _ = try await client.create(
        ResourceType.customResourceDefinitions, namespace: nil, body: body, as: DynamicObject.self)
}
