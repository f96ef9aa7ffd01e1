import Foundation
import Testing

@testable import KubeSim

/// How kubesim's node reads NetworkPolicies: who may reach whom, and the nftables rules an
/// isolated pod gets. Pure; the rules at work are in ClusterTests.
@Suite struct NetworkPolicyEnforcementTests {
    static func pod(_ name: String, namespace: String = "fp", labels: [String: String], ip: String, ports: String = "[]") throws -> JSONValue {
        let labelText = labels.map { "\"\($0.key)\": \"\($0.value)\"" }.joined(separator: ",")
        return try JSONValue.parse(
            #"{"metadata": {"name": "\#(name)", "namespace": "\#(namespace)", "labels": {\#(labelText)}}, "#
                + #""spec": {"containers": [{"name": "c", "ports": \#(ports)}]}, "status": {"podIP": "\#(ip)"}}"#)
    }

    static let namespaces = [
        try! JSONValue.parse(#"{"metadata": {"name": "fp", "labels": {"kubernetes.io/metadata.name": "fp"}}}"#),
        try! JSONValue.parse(#"{"metadata": {"name": "monitoring", "labels": {"kubernetes.io/metadata.name": "monitoring"}}}"#),
    ]

    /// The index policy the controller makes: the proxy and readers on 6081, monitoring on 8081.
    static let indexPolicy = try! JSONValue.parse(
        #"""
        {"metadata": {"name": "main-index", "namespace": "fp"},
         "spec": {"podSelector": {"matchLabels": {"component": "index"}}, "policyTypes": ["Ingress"],
                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"component": "proxy"}}},
                                        {"podSelector": {"matchLabels": {"reader": "true"}}}],
                               "ports": [{"protocol": "TCP", "port": 6081}]},
                              {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                               "ports": [{"protocol": "TCP", "port": "probes"}]}]}}
        """#)

    static func cluster() throws -> [JSONValue] {
        [
            try pod("index-0", labels: ["component": "index"], ip: "10.244.0.2", ports: #"[{"name": "probes", "containerPort": 8081}]"#),
            try pod("proxy", labels: ["component": "proxy"], ip: "10.244.0.3"),
            try pod("reader", labels: ["reader": "true"], ip: "10.244.0.4"),
            try pod("stranger", labels: ["app": "other"], ip: "10.244.0.5"),
            try pod("reader-elsewhere", namespace: "other", labels: ["reader": "true"], ip: "10.244.0.6"),
            try pod("prometheus", namespace: "monitoring", labels: ["app": "prometheus"], ip: "10.244.0.7"),
        ]
    }

    @Test func onlyThePeersOfTheRulesReachAnIsolatedPod() throws {
        let pods = try Self.cluster()
        let addresses = Set(pods.compactMap { $0.value(at: ["status", "podIP"])?.stringValue })
        let snapshot = NetworkPolicySnapshot(pods: pods, namespaces: Self.namespaces, policies: [Self.indexPolicy])
        func allows(_ source: String?, _ port: Int, to destination: String = "10.244.0.2") -> Bool {
            snapshot.allows(source: source, destination: destination, port: port, podAddresses: addresses)
        }
        #expect(allows("10.244.0.3", 6081))  // the proxy
        #expect(allows("10.244.0.4", 6081))  // a reader
        #expect(!allows("10.244.0.5", 6081))  // no reader label
        #expect(!allows("10.244.0.6", 6081))  // the label, but another namespace: a podSelector alone is the policy's own
        #expect(!allows("10.244.0.3", 8081))  // the proxy, not on the probes port
        #expect(allows("10.244.0.7", 8081))  // monitoring, on the named port
        #expect(!allows("10.244.0.7", 6081))
        #expect(allows("10.244.0.1", 6081))  // the node (gateway): always
        #expect(allows(nil, 6081))
        // A pod no policy selects takes everything.
        #expect(allows("10.244.0.5", 80, to: "10.244.0.3"))
    }

    @Test func anEmptyFromAdmitsEverySourceAndIPBlocksCutTheirExceptions() throws {
        let pods = try Self.cluster()
        let addresses = Set(pods.compactMap { $0.value(at: ["status", "podIP"])?.stringValue })
        let policy = try JSONValue.parse(
            #"""
            {"metadata": {"name": "p", "namespace": "fp"},
             "spec": {"podSelector": {"matchLabels": {"component": "proxy"}},
                      "ingress": [{"ports": [{"port": 8080}]},
                                  {"from": [{"ipBlock": {"cidr": "10.244.0.0/24", "except": ["10.244.0.4/32"]}}], "ports": [{"port": 9000}]}]}}
            """#)
        let snapshot = NetworkPolicySnapshot(pods: pods, namespaces: Self.namespaces, policies: [policy])
        #expect(snapshot.allows(source: "10.244.0.5", destination: "10.244.0.3", port: 8080, podAddresses: addresses))
        #expect(!snapshot.allows(source: "10.244.0.5", destination: "10.244.0.3", port: 8081, podAddresses: addresses))
        #expect(snapshot.allows(source: "10.244.0.5", destination: "10.244.0.3", port: 9000, podAddresses: addresses))
        #expect(!snapshot.allows(source: "10.244.0.4", destination: "10.244.0.3", port: 9000, podAddresses: addresses))
        let script = snapshot.nftScript(for: "10.244.0.3", podSubnet: "10.244", gateway: "10.244.0.1")
        #expect(script.contains("    tcp dport { 8080 } accept\n"))
        #expect(script.contains("    ip saddr 10.244.0.0/24 ip saddr != { 10.244.0.4/32 } tcp dport { 9000 } accept\n"))
    }

    @Test func theRulesetIsolatesOnlySelectedPodsAndKeepsTheNodeIn() throws {
        let snapshot = NetworkPolicySnapshot(pods: try Self.cluster(), namespaces: Self.namespaces, policies: [Self.indexPolicy])
        let script = snapshot.nftScript(for: "10.244.0.2", podSubnet: "10.244", gateway: "10.244.0.1")
        #expect(script.hasPrefix("add table inet kubesim_network_policy\ndelete table inet kubesim_network_policy\n"))
        #expect(script.contains("    ip saddr != 10.244.0.0/16 accept\n    ip saddr 10.244.0.1 accept\n"))
        #expect(script.contains("    ip saddr { 10.244.0.3, 10.244.0.4 } tcp dport { 6081 } accept\n"))
        #expect(script.contains("    ip saddr { 10.244.0.7 } tcp dport { 8081 } accept\n"))
        #expect(script.hasSuffix("    drop\n  }\n}\n"))
        // Not selected: the table is only removed.
        let open = snapshot.nftScript(for: "10.244.0.3", podSubnet: "10.244", gateway: "10.244.0.1")
        #expect(open == "add table inet kubesim_network_policy\ndelete table inet kubesim_network_policy\n")
    }
}
