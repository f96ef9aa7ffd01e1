import Foundation
import KubeSim
import TestSupport
import Testing

/// kubesim driven by the real kubectl (the independent reference client).
@Suite(.serialized, .timeLimit(.minutes(2)))
struct KubectlTests {
    /// Runs `body` with an in-process kubesim, kubectl pointed at it, and the CRD applied.
    func withKubectl(crd: Bool = true, _ body: (KubeSimServer, Kubectl) async throws -> Void) async throws {
        try await withKubeSim { server, _ in
            let kubectl = try Kubectl(kubeconfig: server.kubeconfig(token: nil, namespace: "default"))
            defer { kubectl.cleanup() }
            if crd {
                let out = try await kubectl.ok("apply", "-f", kubectl.file("crd.yaml", Fixtures.crdYAML))
                #expect(out.contains("customresourcedefinition.apiextensions.k8s.io/fpindexclusters.fpindex.acoustid.org created"))
            }
            try await body(server, kubectl)
        }
    }

    @Test func applyReapplyAndChangeCustomResource() async throws {
        try await withKubectl { _, kubectl in
            let v1 = try kubectl.file("main.yaml", Fixtures.fpcYAML("main", replicas: 2))
            #expect(try await kubectl.ok("apply", "-f", v1).contains("fpindexcluster.fpindex.acoustid.org/main created"))
            #expect(try await kubectl.ok("apply", "-f", v1).contains("fpindexcluster.fpindex.acoustid.org/main unchanged"))
            #expect(try await kubectl.ok("get", "fpc", "main", "-o", "jsonpath={.metadata.generation}") == "1")
            let v2 = try kubectl.file("main2.yaml", Fixtures.fpcYAML("main", replicas: 3, image: "idx:2"))
            #expect(try await kubectl.ok("apply", "-f", v2).contains("fpindexcluster.fpindex.acoustid.org/main configured"))
            let state = try await kubectl.ok(
                "get", "fpc", "main", "-o", "jsonpath={.metadata.generation} {.spec.replicas} {.spec.index.image}")
            #expect(state == "2 3 idx:2")
            // Re-applying the changed file is a no-op again.
            #expect(try await kubectl.ok("apply", "-f", v2).contains("unchanged"))
            // Server-side apply too, with a conflict between managers.
            let ssa = try kubectl.file("ssa.yaml", Fixtures.fpcYAML("ssa", replicas: 1))
            #expect(try await kubectl.ok("apply", "--server-side", "-f", ssa).contains("serverside-applied"))
            let other = try kubectl.file("ssa2.yaml", Fixtures.fpcYAML("ssa", replicas: 5))
            let conflict = try await kubectl.run("apply", "--server-side", "--field-manager=other", "-f", other)
            #expect(conflict.status != 0)
            #expect(conflict.output.contains("conflict with \"kubectl\""))
            #expect(
                try await kubectl.ok("apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", other).contains(
                    "serverside-applied"))
            #expect(try await kubectl.ok("get", "fpc", "ssa", "-o", "jsonpath={.spec.replicas}") == "5")
            // kubectl validates strictly by default: an unknown field is refused by the server.
            let unknown = try kubectl.file("bad.yaml", Fixtures.fpcYAML("bad", replicas: 1) + "  bogus: 1\n")
            let refused = try await kubectl.run("apply", "-f", unknown)
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("unknown field \"spec.bogus\""))
            let warned = try await kubectl.run("apply", "--validate=warn", "-f", unknown)
            #expect(warned.status == 0)
            #expect(warned.stderr.contains("Warning: unknown field \"spec.bogus\""))
        }
    }

    @Test func getPrinterColumnsScaleStatusAndWait() async throws {
        try await withKubectl { _, kubectl in
            try await kubectl.ok("apply", "-f", kubectl.file("main.yaml", Fixtures.fpcYAML("main", replicas: 2, image: "idx:1")))
            let table = try await kubectl.ok("get", "fpc")
            let header = table.split(separator: "\n").first.map { $0.split(separator: " ", omittingEmptySubsequences: true) } ?? []
            #expect(header == ["NAME", "READY", "REPLICAS", "MAX-LAG", "STATUS", "AGE"])
            #expect(table.contains("main"))
            #expect(try await kubectl.ok("get", "fpc", "-o", "wide").contains("idx:1"))

            #expect(try await kubectl.ok("scale", "fpc/main", "--replicas=3").contains("scaled"))
            #expect(try await kubectl.ok("get", "fpc", "main", "-o", "jsonpath={.spec.replicas}") == "3")

            let wait = try kubectl.start("wait", "--for=condition=Ready", "fpc/main", "--timeout=20s")
            let status = """
                {"status":{"replicas":3,"readyReplicas":2,"maxLag":48211,"selector":"app=main","conditions":[{"type":"Ready","status":"True","reason":"AllCaughtUp","message":"ok"}]}}
                """
            try await kubectl.ok("patch", "fpc", "main", "--subresource=status", "--type=merge", "-p", status)
            #expect(await wait.waitForExit(timeout: .seconds(20)) == 0, "kubectl wait: \(wait.stdout) \(wait.stderr)")
            #expect(wait.stdout.contains("condition met"))
            let row = try await kubectl.ok("get", "fpc", "main", "--no-headers").split(separator: " ", omittingEmptySubsequences: true)
            #expect(Array(row.prefix(5)) == ["main", "2", "3", "48211", "AllCaughtUp"])
            // The status patch did not touch the spec, and the main endpoint does not touch status.
            #expect(try await kubectl.ok("get", "fpc", "main", "-o", "jsonpath={.metadata.generation} {.spec.replicas}") == "2 3")
        }
    }

    @Test func getWatchShowsChanges() async throws {
        try await withKubectl { _, kubectl in
            try await kubectl.ok("apply", "-f", kubectl.file("main.yaml", Fixtures.fpcYAML("main", replicas: 2)))
            let watch = try kubectl.start("get", "fpc", "-w")
            defer { watch.stop() }
            try await eventually(timeout: .seconds(20), "the initial row\n\(watch.stdout)\(watch.stderr)") {
                watch.stdout.contains("main") ? true : nil
            }
            try await kubectl.ok("scale", "fpc/main", "--replicas=7")
            try await eventually(timeout: .seconds(20), "the scaled row\n\(watch.stdout)\(watch.stderr)") {
                watch.stdout.split(separator: "\n").contains { $0.hasPrefix("main ") && $0.contains(" 7 ") } ? true : nil
            }
            try await kubectl.ok("apply", "-f", kubectl.file("second.yaml", Fixtures.fpcYAML("second", replicas: 1)))
            try await eventually(timeout: .seconds(20), "the new object\n\(watch.stdout)") {
                watch.stdout.contains("second") ? true : nil
            }
            // One header only.
            #expect(watch.stdout.components(separatedBy: "NAME").count == 2)
        }
    }

    @Test func deleteWithFinalizersAndOwnerReferences() async throws {
        try await withKubectl { _, kubectl in
            try await kubectl.ok("apply", "-f", kubectl.file("main.yaml", Fixtures.fpcYAML("main", replicas: 2)))
            let uid = try await kubectl.ok("get", "fpc", "main", "-o", "jsonpath={.metadata.uid}")
            let child = """
                apiVersion: v1
                kind: ConfigMap
                metadata:
                  name: main-config
                  ownerReferences:
                  - {apiVersion: fpindex.acoustid.org/v1alpha1, kind: FpindexCluster, name: main, uid: \(uid), controller: true, blockOwnerDeletion: true}
                data: {a: "1"}
                """
            try await kubectl.ok("apply", "-f", kubectl.file("child.yaml", child))
            try await kubectl.ok(
                "patch", "fpc", "main", "--type=merge", "-p", #"{"metadata":{"finalizers":["fpindex.acoustid.org/jetstream"]}}"#)
            #expect(try await kubectl.ok("delete", "fpc", "main", "--wait=false").contains("deleted"))
            // Held by the finalizer: still there, marked for deletion; so is its child.
            #expect(try await kubectl.ok("get", "fpc", "main", "-o", "jsonpath={.metadata.deletionTimestamp}").isEmpty == false)
            #expect(try await kubectl.ok("get", "configmap", "main-config", "-o", "name") == "configmap/main-config\n")
            try await kubectl.ok("patch", "fpc", "main", "--type=json", "-p", #"[{"op":"remove","path":"/metadata/finalizers"}]"#)
            let gone = try await kubectl.run("get", "fpc", "main")
            #expect(gone.status != 0 && gone.stderr.contains("NotFound"))
            let childGone = try await kubectl.run("get", "configmap", "main-config")
            #expect(childGone.status != 0 && childGone.stderr.contains("not found"))
            // A plain delete (kubectl waits for it to disappear).
            try await kubectl.ok("apply", "-f", kubectl.file("other.yaml", Fixtures.fpcYAML("other", replicas: 1)))
            #expect(
                try await kubectl.ok("delete", "-f", kubectl.file("other.yaml", Fixtures.fpcYAML("other", replicas: 1))).contains("deleted")
            )
        }
    }

    @Test func getEventsShowsEventsAPIEvents() async throws {
        try await withKubectl(crd: false) { server, kubectl in
            let client = TestHTTPClient(baseURL: server.url)
            let event = """
                {"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"main.17a","namespace":"default"},
                 "eventTime":"2026-01-02T03:04:05.000000Z","reportingController":"fpindex.acoustid.org/operator",
                 "reportingInstance":"operator-0","action":"Scale","reason":"ScaledUp","type":"Normal","note":"replicas 2 -> 3",
                 "regarding":{"apiVersion":"fpindex.acoustid.org/v1alpha1","kind":"FpindexCluster","name":"main","namespace":"default"}}
                """
            let created = try await client.json(.POST, "/apis/events.k8s.io/v1/namespaces/default/events", event)
            #expect(created.status == 201)
            let out = try await kubectl.ok("get", "events")
            #expect(out.contains("ScaledUp"))
            #expect(out.contains("fpindexcluster/main"))
            #expect(out.contains("replicas 2 -> 3"))
            let eventsAPI = try await kubectl.ok("get", "events.v1.events.k8s.io")
            #expect(eventsAPI.contains("fpindexcluster/main"))
            #expect(eventsAPI.contains("replicas 2 -> 3"))
            // The same object through core/v1: fields mapped.
            let core = try await client.request(.GET, "/api/v1/namespaces/default/events/main.17a").jsonObject()
            #expect(core["message"] as? String == "replicas 2 -> 3")
            #expect(field(core, "involvedObject.kind") as? String == "FpindexCluster")
            #expect(core["reportingComponent"] as? String == "fpindex.acoustid.org/operator")
        }
    }

    @Test func explainTheCustomResource() async throws {
        try await withKubectl { _, kubectl in
            // kubectl's discovery cache predates the CRD; a get refreshes it (as for a user).
            try await kubectl.ok("get", "fpc")
            let out = try await kubectl.ok("explain", "fpc")
            #expect(out.contains("KIND:       FpindexCluster"))
            #expect(out.contains("FpindexCluster runs a replicated fingerprint index."))
            #expect(try await kubectl.ok("explain", "fpc.spec.replicas").contains("Number of index replicas."))
            // Deleting the CRD stops serving the kind at once.
            try await kubectl.ok("delete", "crd", "fpindexclusters.fpindex.acoustid.org")
            let missing = try await kubectl.run("get", "fpc")
            #expect(missing.status != 0)
        }
    }

    @Test func builtinDeploymentApplyUsesStrategicMerge() async throws {
        try await withKubectl(crd: false) { _, kubectl in
            func deployment(_ image: String) -> String {
                """
                apiVersion: apps/v1
                kind: Deployment
                metadata: {name: proxy, labels: {app: proxy}}
                spec:
                  replicas: 2
                  selector: {matchLabels: {app: proxy}}
                  template:
                    metadata: {labels: {app: proxy}}
                    spec:
                      containers:
                      - {name: proxy, image: "\(image)", ports: [{containerPort: 8080}]}
                """
            }
            #expect(try await kubectl.ok("apply", "-f", kubectl.file("d1.yaml", deployment("proxy:1"))).contains("created"))
            #expect(try await kubectl.ok("apply", "-f", kubectl.file("d1.yaml", deployment("proxy:1"))).contains("unchanged"))
            #expect(try await kubectl.ok("apply", "-f", kubectl.file("d2.yaml", deployment("proxy:2"))).contains("configured"))
            let containers = try await kubectl.ok(
                "get", "deploy", "proxy", "-o", "jsonpath={.spec.template.spec.containers[*].image} {.metadata.generation}")
            #expect(containers == "proxy:2 2")
            #expect(try await kubectl.ok("scale", "deploy/proxy", "--replicas=4").contains("scaled"))
            #expect(try await kubectl.ok("get", "deploy", "proxy", "-o", "jsonpath={.spec.replicas}") == "4")
            let header = try await kubectl.ok("get", "deploy").split(separator: "\n").first ?? ""
            #expect(header.split(separator: " ", omittingEmptySubsequences: true) == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"])
        }
    }

    /// `kubectl create <kind>` subcommands send protobuf bodies.
    @Test func createSubcommandsWithProtobufBodies() async throws {
        try await withKubectl(crd: false) { _, kubectl in
            #expect(try await kubectl.ok("create", "namespace", "team").contains("namespace/team created"))
            try await kubectl.ok("create", "configmap", "cfg", "-n", "team", "--from-literal=a=1", "--from-literal=b=two")
            let credentials = try kubectl.file("creds", "user-jwt")
            try await kubectl.ok("create", "secret", "generic", "nats-creds", "-n", "team", "--from-file=creds=\(credentials)")
            try await kubectl.ok("create", "serviceaccount", "operator", "-n", "team")
            #expect(try await kubectl.ok("get", "configmap", "cfg", "-n", "team", "-o", "jsonpath={.data.a},{.data.b}") == "1,two")
            let secret = try await kubectl.ok("get", "secret", "nats-creds", "-n", "team", "-o", "jsonpath={.type} {.data.creds}")
            #expect(secret == "Opaque " + Data("user-jwt".utf8).base64EncodedString())
            #expect(try await kubectl.ok("get", "serviceaccount", "-n", "team", "-o", "name") == "serviceaccount/operator\n")
            // Namespace deletion takes the contents along.
            try await kubectl.ok("delete", "namespace", "team")
            let gone = try await kubectl.run("get", "configmap", "cfg", "-n", "team")
            #expect(gone.status != 0)
        }
    }

    /// The executable, with TLS and a token: kubectl verifies the generated CA and authenticates.
    @Test func executableWithTLSAndToken() async throws {
        let directory = try TemporaryDirectory.make(prefix: "kubesim-exe")
        defer { TemporaryDirectory.remove(directory) }
        let kubeconfigPath = directory + "/kubeconfig"
        let child = try ChildProcess(
            name: "kubesim", executable: Locations.executable("kubesim"),
            arguments: ["--listen", "127.0.0.1:0", "--token", "s3cret", "--tls", "--write-kubeconfig", kubeconfigPath])
        defer {
            child.signal(SIGKILL)
            TemporaryDirectory.remove(URL(fileURLWithPath: child.stdoutPath).deletingLastPathComponent().path)
        }
        let line = try await child.waitForLine(containing: "kubesim listening on ")
        #expect(line.contains("https://127.0.0.1:"))
        let kubectl = try Kubectl(kubeconfig: try String(contentsOfFile: kubeconfigPath, encoding: .utf8))
        defer { kubectl.cleanup() }
        #expect(try await kubectl.ok("get", "namespaces").contains("default"))
        let bad = try Kubectl(
            kubeconfig: try String(contentsOfFile: kubeconfigPath, encoding: .utf8).replacingOccurrences(of: "s3cret", with: "wrong"))
        defer { bad.cleanup() }
        let denied = try await bad.run("get", "namespaces")
        #expect(denied.status != 0)
        #expect(denied.stderr.contains("Unauthorized") || denied.stderr.contains("provide credentials"))
        child.signal(SIGTERM)
        #expect(await child.waitForExit(timeout: .seconds(10)) == 0, "\(child.output)")
    }
}
