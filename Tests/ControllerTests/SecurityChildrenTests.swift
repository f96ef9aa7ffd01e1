import Controller
import Foundation
import FpindexAPI
import JetStream
import Kubernetes
import TestSupport
import Testing

/// What the spec's security settings make of the children: NetworkPolicies, the proxies'
/// bearer tokens, NATS credentials per role. Pure.
@Suite("Desired children: security")
struct SecurityChildrenTests {
    static let readers: Kubernetes.JSONValue = ["podSelector": ["matchLabels": ["fpindex-reader": "true"]]]
    static let monitoring: Kubernetes.JSONValue = ["namespaceSelector": ["matchLabels": ["kubernetes.io/metadata.name": "monitoring"]]]
    static let writers: Kubernetes.JSONValue = ["ipBlock": ["cidr": "10.1.0.0/16"]]

    @Test func indexPodsTakeTheirPortFromProxiesAndReadersOnly() throws {
        var cluster = Fixtures.cluster(replicas: 2)
        cluster.spec.networkPolicy = .init(readers: [Self.readers], monitoring: [Self.monitoring])
        let policy = try #require(DesiredChildren(cluster).indexNetworkPolicy)
        #expect(policy.metadata.name == "main-index")
        #expect(policy.metadata.ownerReferences == [ClusterModel(cluster).ownerReference])
        #expect(policy.spec?.podSelector.matchLabels == ["app.kubernetes.io/instance": "main", "app.kubernetes.io/component": "index"])
        #expect(policy.spec?.policyTypes == ["Ingress"])
        let rules = try #require(policy.spec?.ingress)
        #expect(rules.count == 2)
        let proxies: Kubernetes.JSONValue = [
            "podSelector": ["matchLabels": ["app.kubernetes.io/instance": "main", "app.kubernetes.io/component": "proxy"]]
        ]
        #expect(rules[0].from == [proxies, Self.readers])
        #expect(rules[0].ports == [.init(port: .int(6081))])
        #expect(rules[1].from == [Self.monitoring])
        #expect(rules[1].ports == [.init(port: .int(6081)), .init(port: .int(DesiredChildren.updaterPort))])
    }

    @Test func withoutReadersOrMonitoringOnlyProxiesReachTheIndexPort() throws {
        let policy = try #require(DesiredChildren(Fixtures.cluster(replicas: 2)).indexNetworkPolicy)
        let rules = try #require(policy.spec?.ingress)
        #expect(rules.count == 1)
        #expect(rules[0].from?.count == 1)
        #expect(rules[0].ports == [.init(port: .int(6081))])
    }

    @Test func proxiesTakeWritesFromTheWritersOrFromAnywhere() throws {
        var cluster = Fixtures.cluster(replicas: 2)
        let open = try #require(DesiredChildren(cluster).proxyNetworkPolicy)
        let openRules = try #require(open.spec?.ingress)
        // No writers named: one rule with no `from`, which is "from anywhere", on the API and
        // legacy ports only.
        #expect(openRules.count == 1)
        #expect(openRules[0].from == nil)
        #expect(openRules[0].ports == [.init(port: .int(DesiredChildren.proxyPort)), .init(port: .int(6080))])

        cluster.spec.networkPolicy = .init(writers: [Self.writers], monitoring: [Self.monitoring])
        cluster.spec.proxy = .init()
        cluster.spec.proxy?.legacyPort = 0
        let closed = try #require(DesiredChildren(cluster).proxyNetworkPolicy)
        let rules = try #require(closed.spec?.ingress)
        #expect(rules.count == 2)
        #expect(rules[0].from == [Self.writers])
        #expect(rules[0].ports == [.init(port: .int(DesiredChildren.proxyPort))])
        #expect(rules[1].from == [Self.monitoring])
        #expect(rules[1].ports == [.init(port: .int(DesiredChildren.proxyPort))])
    }

    @Test func turnedOffThereIsNoPolicyAndAnExistingOneIsDeleted() throws {
        var cluster = Fixtures.cluster(replicas: 2)
        cluster.metadata.finalizers = [ClusterModel.finalizer]
        let withPolicies = Fixtures.children(of: cluster)
        #expect(withPolicies[.indexNetworkPolicy] != nil && withPolicies[.proxyNetworkPolicy] != nil)
        cluster.spec.networkPolicy = .init(enabled: false)
        let desired = DesiredChildren(cluster)
        #expect(desired.indexNetworkPolicy == nil && desired.proxyNetworkPolicy == nil)
        let observed = Observed(cluster: cluster, children: withPolicies, pods: [], jetStream: .unavailable("not needed"))
        let actions = Planner.plan(model: ClusterModel(cluster), desired: desired, observed: observed, finalizerExpired: false)
        #expect(actions.map(\.description).filter { $0.hasPrefix("deleteChild") } == [
            "deleteChild(indexNetworkPolicy)", "deleteChild(proxyNetworkPolicy)",
        ])
        // Already gone: nothing to do.
        var without = withPolicies
        without[.indexNetworkPolicy] = nil
        without[.proxyNetworkPolicy] = nil
        let again = Planner.plan(
            model: ClusterModel(cluster), desired: desired,
            observed: Observed(cluster: cluster, children: without, pods: [], jetStream: .unavailable("not needed")), finalizerExpired: false)
        #expect(!again.contains { $0.description.hasPrefix("deleteChild") })
    }

    @Test func proxiesReadTheirTokensFromTheWholeSecretVolume() throws {
        var cluster = Fixtures.cluster(replicas: 2)
        cluster.spec.proxy = .init()
        cluster.spec.proxy?.auth = .init(tokenSecret: .init(name: "proxy-tokens", key: "writers"), protectReads: true)
        let proxy = try #require(DesiredChildren(cluster).proxyDeployment.spec?.template?.spec)
        let volume = try #require(proxy.volumes?.first { $0.name == "proxy-auth" })
        #expect(volume.secret?["secretName"] == "proxy-tokens")
        // No `items` and no subPath: the kubelet updates only a whole Secret volume in place.
        #expect(volume.secret?["items"] == nil)
        let mount = try #require(proxy.containers[0].volumeMounts?.first { $0.name == "proxy-auth" })
        #expect(mount.subPath == nil)
        let env = proxy.containers[0].env ?? []
        #expect(env.first { $0.name == ComponentEnvironment.authTokenFile }?.value == "\(mount.mountPath)/writers")
        #expect(env.first { $0.name == ComponentEnvironment.protectReads }?.value == "true")
        // The token itself is never in the pod spec.
        #expect(!env.contains { $0.name == ComponentEnvironment.authToken })

        cluster.spec.proxy?.auth = nil
        let open = try #require(DesiredChildren(cluster).proxyDeployment.spec?.template?.spec)
        #expect(!(open.containers[0].env ?? []).contains { $0.name == ComponentEnvironment.authTokenFile })
    }

    @Test func proxiesServeHTTPSFromATLSSecretAndAreProbedSo() throws {
        var cluster = Fixtures.cluster(replicas: 2)
        cluster.spec.proxy = .init()
        cluster.spec.proxy?.tls = .init(secretName: "proxy-cert")
        let pod = try #require(DesiredChildren(cluster).proxyDeployment.spec?.template?.spec)
        #expect(pod.volumes?.first { $0.name == "proxy-tls" }?.secret?["secretName"] == "proxy-cert")
        let container = pod.containers[0]
        let env = container.env ?? []
        #expect(env.first { $0.name == ComponentEnvironment.tlsCertificateFile }?.value == "/etc/fpindex/proxy-tls/tls.crt")
        #expect(env.first { $0.name == ComponentEnvironment.tlsKeyFile }?.value == "/etc/fpindex/proxy-tls/tls.key")
        #expect(container.readinessProbe?.httpGet?.scheme == "HTTPS")
        #expect(container.livenessProbe?.httpGet?.scheme == "HTTPS")
        cluster.spec.proxy?.tls = nil
        let plain = try #require(DesiredChildren(cluster).proxyDeployment.spec?.template?.spec)
        #expect(plain.containers[0].readinessProbe?.httpGet?.scheme == nil)
        #expect(!(plain.containers[0].env ?? []).contains { $0.name == ComponentEnvironment.tlsCertificateFile })
    }

    /// A role's user Secret (`kubernetes.io/basic-auth`) wins over credentials files: the
    /// container gets NATS_USER and NATS_PASSWORD from it, and no credentials file.
    @Test func aRolesUserSecretGivesItsContainersUserAndPassword() throws {
        var cluster = Fixtures.cluster(replicas: 2)
        cluster.spec.nats?.credentialsSecret = .init(name: "shared", key: "creds")
        cluster.spec.nats?.updaterUserSecret = LocalObjectReference(name: "nats-updater")
        let model = ClusterModel(cluster)
        #expect(model.updaterCredentials == .user(secretName: "nats-updater"))
        #expect(model.proxyCredentials == .file(.init(name: "shared", key: "creds")))
        let index = try #require(DesiredChildren(cluster).statefulSet.spec?.template?.spec)
        let updater = try #require(index.containers.first { $0.name == "updater" })
        let env = updater.env ?? []
        #expect(env.first { $0.name == ComponentEnvironment.natsUser }?.valueFrom == .secret("nats-updater", key: "username"))
        #expect(env.first { $0.name == ComponentEnvironment.natsPassword }?.valueFrom == .secret("nats-updater", key: "password"))
        #expect(!env.contains { $0.name == ComponentEnvironment.natsCredentials })
        #expect(!(index.volumes ?? []).contains { $0.name == "nats-creds" })
    }

    @Test func protectedReadsWithoutTokensIsASpecProblem() {
        var cluster = Fixtures.cluster(replicas: 2)
        cluster.spec.proxy = .init()
        cluster.spec.proxy?.auth = .init(tokenSecret: nil, protectReads: true)
        #expect(ClusterModel(cluster).specProblems.contains("spec.proxy.auth.protectReads needs spec.proxy.auth.tokenSecret"))
    }

    @Test func eachRoleGetsItsOwnNATSCredentialsOrTheSharedOnes() throws {
        var cluster = Fixtures.cluster(replicas: 2)
        cluster.spec.nats?.credentialsSecret = .init(name: "shared", key: "creds")
        cluster.spec.nats?.proxyCredentialsSecret = .init(name: "proxy-nats", key: "proxy.creds")
        let model = ClusterModel(cluster)
        #expect(model.proxyCredentials == .file(.init(name: "proxy-nats", key: "proxy.creds")))
        #expect(model.updaterCredentials == .file(.init(name: "shared", key: "creds")))
        #expect(model.controllerCredentials == .file(.init(name: "shared", key: "creds")))
        let desired = DesiredChildren(cluster)
        let proxy = try #require(desired.proxyDeployment.spec?.template?.spec)
        #expect(proxy.volumes?.first { $0.name == "nats-creds" }?.secret?["secretName"] == "proxy-nats")
        #expect(proxy.containers[0].env?.first { $0.name == ComponentEnvironment.natsCredentials }?.value?.hasSuffix("/proxy.creds") == true)
        let index = try #require(desired.statefulSet.spec?.template?.spec)
        #expect(index.volumes?.first { $0.name == "nats-creds" }?.secret?["secretName"] == "shared")
    }
}

/// NetworkPolicies and token Secrets through a real controller, on kubesim and on a real API
/// server: the server takes the generated policies, and turning them off removes them.
extension ControllerIntegrationTests {
    @Test func networkPoliciesFollowTheSpecOnKubesim() async throws {
        try await Self.networkPoliciesFollowTheSpec(.kubesim)
    }

    /// The controller as its own least-privilege NATS user (manifests/nats's example, over
    /// TLS), from a basic-auth Secret named in the spec: it makes the stream and the consumers,
    /// and the server refuses it nothing.
    @Test func theControllerWorksAsItsOwnNATSUserFromTheSpec() async throws {
        try await withSecuredNATS { nats in
            try await withControllerHarness(.kubesim) { harness in
                try await harness.startController()
                _ = try await harness.kubectl([
                    "-n", "fp", "create", "secret", "generic", "nats-controller", "--type=kubernetes.io/basic-auth",
                    "--from-literal=username=\(NATSRole.controller.rawValue)", "--from-literal=password=\(nats.passwords[.controller]!)",
                ])
                _ = try await harness.kubectl(["-n", "fp", "create", "secret", "generic", "nats-ca", "--from-file=ca.crt=\(nats.caFile)"])
                let manifest = harness.sample().replacingOccurrences(
                    of: "url: \(harness.nats.url)",
                    with: "url: \(nats.url)\n    tlsSecret: {name: nats-ca}\n    controllerUserSecret: {name: nats-controller}")
                _ = try await harness.kubectl(["apply", "-f", "-"], input: manifest)
                try await eventually("the stream ready through the controller's own user") {
                    harness.condition(try await harness.cluster(), "StreamReady")?.status == "True" ? true : nil
                }
                let inspector = try await nats.connect(as: .controller)
                let consumers = try await eventually("both consumers") {
                    let names = try await inspector.consumerNames(stream: "fpindex")
                    return names.count == 2 ? names : nil
                }
                await inspector.close()
                #expect(consumers.sorted() == ["main-index-0", "main-index-1"])
                #expect(nats.violations.isEmpty, "\(nats.violations)")
            }
        }
    }

    static func networkPoliciesFollowTheSpec(_ server: APIServerKind) async throws {
        try await withControllerHarness(server) { harness in
            try await harness.startController()
            let spec = """
                  proxy:
                    auth:
                      tokenSecret: {name: proxy-tokens}
                  networkPolicy:
                    readers:
                      - podSelector: {matchLabels: {fpindex-reader: "true"}}
                    monitoring:
                      - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
                        podSelector: {matchLabels: {app: prometheus}}
                """
            _ = try await harness.kubectl(["apply", "-f", "-"], input: harness.sample(extra: spec))
            let index = try await eventually("the index NetworkPolicy") {
                try? await harness.client.get(NetworkPolicy.self, namespace: "fp", name: "main-index")
            }
            // As the server holds it (with its defaults).
            #expect(index.spec?.policyTypes == ["Ingress"])
            #expect(index.spec?.ingress?.count == 2)
            #expect(index.spec?.ingress?[0].ports == [.init(port: .int(6081), protocol: "TCP")])
            #expect(index.spec?.ingress?[0].from?.count == 2)
            #expect(index.metadata.ownerReferences?.first?.name == "main")
            let proxy = try await eventually("the proxy NetworkPolicy") {
                try? await harness.client.get(NetworkPolicy.self, namespace: "fp", name: "main-proxy")
            }
            #expect(proxy.spec?.ingress?.first?.from == nil)
            let deployment = try await eventually("the proxy Deployment") {
                try? await harness.client.get(Deployment.self, namespace: "fp", name: "main-proxy")
            }
            let env = deployment.spec?.template?.spec?.containers.first?.env ?? []
            #expect(env.first { $0.name == ComponentEnvironment.authTokenFile }?.value == "/etc/fpindex/proxy-auth/tokens")
            #expect(try await harness.kubectl(["get", "networkpolicies", "-n", "fp"]).contains("main-index"))

            // Off: both go. On again: both come back.
            _ = try await harness.kubectl([
                "patch", "fpc", "main", "-n", "fp", "--type", "merge", "-p", #"{"spec":{"networkPolicy":{"enabled":false}}}"#,
            ])
            try await eventually("the NetworkPolicies deleted") {
                let left = try await harness.client.list(NetworkPolicy.self, namespace: "fp").items
                return left.isEmpty ? true : nil
            }
            _ = try await harness.kubectl([
                "patch", "fpc", "main", "-n", "fp", "--type", "merge", "-p", #"{"spec":{"networkPolicy":{"enabled":true}}}"#,
            ])
            try await eventually("the NetworkPolicies back") {
                try await harness.client.list(NetworkPolicy.self, namespace: "fp").items.count == 2 ? true : nil
            }

            // The CRD refuses read protection without tokens.
            await #expect(throws: (any Error).self) {
                try await harness.kubectl(
                    ["apply", "-f", "-"], input: harness.sample(name: "open", extra: "  proxy:\n    auth:\n      protectReads: true\n"))
            }
        }
    }
}
