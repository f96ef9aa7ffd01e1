import Foundation
import KubeSim
import Kubernetes
import TestSupport
import Testing

/// `manifests/rbac.yaml` grants no more than the controller uses: a controller runs through
/// everything it does (children, status, events, NATS secrets, leader election, scaling,
/// NetworkPolicies turned off, deletion) on kubesim, and the verbs and resources of every
/// request it made (kubesim's request log) are compared with the rules.
@Suite("The controller's RBAC is no wider than its requests", .timeLimit(.minutes(3)))
struct RBACTests {
    /// Granted but never requested, each with why it stays (said in rbac.yaml too).
    static let justified: [String: String] = [
        "fpindex.acoustid.org/fpindexclusters/finalizers:update":
            "not a request: the OwnerReferencesPermissionEnforcement admission plugin checks it for blockOwnerDeletion",
        "coordination.k8s.io/leases:update": "lease renewals, every retry period; a short run may end before the first",
    ]

    /// `group/resource[/subresource]:verb` of a request, as RBAC names it.
    static func permission(method: String, uri: String) -> String? {
        let path = uri.split(separator: "?", maxSplits: 1)[0]
        let query = uri.contains("?") ? String(uri.split(separator: "?", maxSplits: 1)[1]) : ""
        var segments = path.split(separator: "/").map(String.init)
        let group: String
        if segments.first == "api" {
            group = ""
            segments.removeFirst(2)
        } else if segments.first == "apis", segments.count >= 3 {
            group = segments[1]
            segments.removeFirst(3)
        } else {
            return nil  // discovery, /version, ...
        }
        if segments.first == "namespaces", segments.count >= 3 { segments.removeFirst(2) }
        guard let resource = segments.first else { return nil }
        let named = segments.count >= 2
        let subresource = segments.count >= 3 ? "/" + segments[2] : ""
        let verb: String
        switch method {
        case "GET": verb = query.contains("watch=true") || query.contains("watch=1") ? "watch" : named ? "get" : "list"
        case "POST": verb = "create"
        case "PUT": verb = "update"
        case "PATCH": verb = "patch"
        case "DELETE": verb = named ? "delete" : "deletecollection"
        default: return nil
        }
        return "\(group)/\(resource)\(subresource):\(verb)"
    }

    /// Every `group/resource:verb` the manifests grant the controller (its ClusterRole and its
    /// leader-election Role; not the roles for users).
    static func granted() throws -> Set<String> {
        let text = try String(contentsOfFile: Locations.packageRoot + "/manifests/rbac.yaml", encoding: .utf8)
        var result: Set<String> = []
        for document in try YAMLParser.parse(text)
        where ["ClusterRole", "Role"].contains(document["kind"]?.string ?? "")
            && (document["metadata"]?["name"]?.string ?? "").hasPrefix("fpindex-controller")
        {
            for rule in document["rules"]?.array ?? [] {
                for group in rule["apiGroups"]?.array ?? [] {
                    for resource in rule["resources"]?.array ?? [] {
                        for verb in rule["verbs"]?.array ?? [] {
                            result.insert("\(group.string ?? "")/\(resource.string ?? ""):\(verb.string ?? "")")
                        }
                    }
                }
            }
        }
        return result
    }

    @Test func everyGrantIsUsedOrJustifiedAndEveryRequestGranted() async throws {
        try await withControllerHarness(.kubesim) { harness in
            try await harness.startController(leaderElect: true)
            // A cluster whose NATS credentials come from a Secret (read by name), beside the main one.
            _ = try await harness.kubectl([
                "-n", "fp", "create", "secret", "generic", "nats-creds", "--from-literal=creds=not-a-credentials-file",
            ])
            let withCredentials = harness.sample(name: "withcreds").replacingOccurrences(
                of: "url: \(harness.nats.url)", with: "url: \(harness.nats.url)\n    credentialsSecret: {name: nats-creds}")
            _ = try await harness.kubectl(["apply", "-f", "-"], input: withCredentials)
            _ = try await harness.kubectl(["apply", "-f", "-"], input: harness.sample(replicas: 2))
            try await eventually("the stream ready and every child") {
                let cluster = try await harness.cluster()
                let policies = try await harness.client.list(NetworkPolicy.self, namespace: "fp").items
                return harness.condition(cluster, "StreamReady")?.status == "True" && policies.count >= 2 ? true : nil
            }
            // Children drift from the spec (each kind patched back): a new index port (Services,
            // StatefulSet, NetworkPolicies), proxy replicas (Deployment), a hand-edited PDB.
            _ = try await harness.kubectl([
                "patch", "fpc", "main", "-n", "fp", "--type", "merge", "-p", #"{"spec":{"index":{"port":6090},"proxy":{"replicas":3}}}"#,
            ])
            try await eventually("the children patched to the new spec") {
                let service = try await harness.client.get(Service.self, namespace: "fp", name: "main-index-read")
                let policy = try await harness.client.get(NetworkPolicy.self, namespace: "fp", name: "main-index")
                let proxies = try await harness.client.get(Deployment.self, namespace: "fp", name: "main-proxy")
                return service.spec?.ports?.first?.port == 6090 && policy.spec?.ingress?.first?.ports?.first?.port == .int(6090)
                    && proxies.spec?.replicas == 3 ? true : nil
            }
            _ = try await harness.kubectl([
                "patch", "pdb", "main-index", "-n", "fp", "--type", "merge", "-p", #"{"spec":{"maxUnavailable":2}}"#,
            ])
            try await eventually("the PDB patched back") {
                try await harness.client.get(PodDisruptionBudget.self, namespace: "fp", name: "main-index").spec?.maxUnavailable == .int(1)
                    ? true : nil
            }
            _ = try await harness.kubectl(["-n", "fp", "scale", "fpc", "main", "--replicas", "1"])
            _ = try await harness.kubectl([
                "patch", "fpc", "main", "-n", "fp", "--type", "merge", "-p", #"{"spec":{"networkPolicy":{"enabled":false}}}"#,
            ])
            try await eventually("main scaled and its NetworkPolicies gone") {
                let set = try await harness.client.get(StatefulSet.self, namespace: "fp", name: "main-index")
                let policies = try await harness.client.list(NetworkPolicy.self, namespace: "fp").items
                return set.spec?.replicas == 1 && !policies.contains { $0.metadata.name?.hasPrefix("main-") ?? false } ? true : nil
            }
            _ = try await harness.kubectl(["-n", "fp", "delete", "fpc", "main", "--wait=true", "--timeout=60s"])

            let used = Set(
                harness.kubesim.requestLog.all.filter { $0.userAgent.hasPrefix("fpindex-controller") }
                    .compactMap { Self.permission(method: $0.method, uri: $0.uri) })
            let granted = try Self.granted()
            let missing = used.subtracting(granted)
            #expect(missing.isEmpty, "requested but not granted: \(missing.sorted())")
            let unused = granted.subtracting(used).subtracting(Self.justified.keys)
            #expect(unused.isEmpty, "granted but never requested: \(unused.sorted())")
            // The justified extras are still granted (else the list is stale).
            #expect(Set(Self.justified.keys).isSubset(of: granted))
            #expect(used.contains("/secrets:get"))
            #expect(used.contains("networking.k8s.io/networkpolicies:delete"))
        }
    }

    @Test func requestsAreNamedAsRBACNamesThem() {
        #expect(Self.permission(method: "GET", uri: "/api/v1/namespaces/fp/pods?labelSelector=a%3Db") == "/pods:list")
        #expect(Self.permission(method: "GET", uri: "/api/v1/pods?watch=true&resourceVersion=5") == "/pods:watch")
        #expect(Self.permission(method: "GET", uri: "/api/v1/namespaces/fp/secrets/x") == "/secrets:get")
        #expect(
            Self.permission(method: "PATCH", uri: "/apis/fpindex.acoustid.org/v1alpha1/namespaces/fp/fpindexclusters/main/status")
                == "fpindex.acoustid.org/fpindexclusters/status:patch")
        #expect(Self.permission(method: "POST", uri: "/apis/events.k8s.io/v1/namespaces/fp/events") == "events.k8s.io/events:create")
        #expect(Self.permission(method: "GET", uri: "/apis") == nil)
    }
}
