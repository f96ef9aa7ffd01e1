import Foundation
import Kubernetes
import TestSupport
import Testing

@Suite("kubeconfig and in-cluster configuration")
struct KubeConfigTests {
    /// A kubeconfig as clouds and kind write them: several contexts, embedded base64 certs,
    /// a token file, quoted and plain scalars, an exec user, anchors.
    static let realistic = """
        apiVersion: v1
        kind: Config
        preferences: {}
        current-context: "kind-dev"
        clusters:
        - cluster:
            certificate-authority-data: \(Data("CA-PEM-BYTES".utf8).base64EncodedString())
            server: https://127.0.0.1:6443
          name: kind-dev
        - name: prod
          cluster:
            server: "https://prod.example.com"
            certificate-authority: certs/prod-ca.pem
            tls-server-name: null
        - name: legacy
          cluster: {server: 'http://10.0.0.1:8080', insecure-skip-tls-verify: true}
        contexts:
        - context: {cluster: kind-dev, user: kind-dev}
          name: kind-dev
        - name: prod-ops
          context:
            cluster: prod
            user: robot
            namespace: fpindex
        - name: legacy
          context: {cluster: legacy, user: ""}
        - name: gke
          context: {cluster: prod, user: gke-user}
        users:
        - name: kind-dev
          user:
            client-certificate-data: \(Data("CERT".utf8).base64EncodedString())
            client-key-data: \(Data("KEY".utf8).base64EncodedString())
        - name: robot
          user:
            tokenFile: tokens/robot
        - name: gke-user
          user:
            exec:
              apiVersion: client.authentication.k8s.io/v1beta1
              command: gke-gcloud-auth-plugin
        """

    @Test func currentContextWithEmbeddedCertificates() throws {
        let config = try KubeConfig(yaml: Self.realistic, directory: "/etc/kube")
        #expect(config.contexts.count == 4)
        let resolved = try config.configuration()
        #expect(resolved.server == "https://127.0.0.1:6443")
        #expect(resolved.namespace == "default")
        #expect(resolved.tls.certificateAuthority == .data(Array("CA-PEM-BYTES".utf8)))
        #expect(resolved.tls.clientCertificate == .data(Array("CERT".utf8)))
        #expect(resolved.tls.clientKey == .data(Array("KEY".utf8)))
        #expect(resolved.tls.insecureSkipVerify == false)
        #expect(resolved.credentials == .none)
    }

    @Test func namedContextWithTokenFileAndRelativePaths() throws {
        let config = try KubeConfig(yaml: Self.realistic, directory: "/etc/kube")
        let resolved = try config.configuration(context: "prod-ops")
        #expect(resolved.server == "https://prod.example.com")
        #expect(resolved.namespace == "fpindex")
        #expect(resolved.tls.certificateAuthority == .file("/etc/kube/certs/prod-ca.pem"))
        #expect(resolved.credentials == .tokenFile("/etc/kube/tokens/robot", refresh: .seconds(60)))
    }

    @Test func insecureOnlyWhenAskedAndNoUser() throws {
        let config = try KubeConfig(yaml: Self.realistic, directory: "/etc/kube")
        let resolved = try config.configuration(context: "legacy")
        #expect(resolved.tls.insecureSkipVerify)
        #expect(resolved.server == "http://10.0.0.1:8080")
        #expect(resolved.credentials == .none)
    }

    @Test func clearErrors() throws {
        let config = try KubeConfig(yaml: Self.realistic, directory: "/etc/kube")
        #expect(throws: KubernetesConfigurationError.self) { try config.configuration(context: "missing") }
        do {
            _ = try config.configuration(context: "gke")
            Issue.record("an exec plugin user must be refused")
        } catch let error as KubernetesConfigurationError {
            #expect(error.message.contains("exec"))
        }
        do {
            _ = try KubeConfig(yaml: "clusters: [1, 2\nusers: x", directory: "/")
            Issue.record("bad YAML must be refused")
        } catch let error as KubernetesConfigurationError {
            #expect(error.message.contains("line"))
        }
        #expect(throws: KubernetesConfigurationError.self) {
            try KubeConfig(yaml: "clusters:\n- name: a\n  cluster: {}\n", directory: "/")
        }
        #expect(throws: KubernetesConfigurationError.self) {
            try KubeConfig(
                yaml: "clusters:\n- name: a\n  cluster: {server: https://x, certificate-authority-data: '!!!'}\n",
                directory: "/")
        }
    }

    @Test func mergesFilesLikeKubectl() throws {
        let dir = try TemporaryDirectory.make(prefix: "kubeconfig")
        defer { TemporaryDirectory.remove(dir) }
        let first = """
            current-context: a
            clusters: [{name: one, cluster: {server: "https://one"}}]
            contexts: [{name: a, context: {cluster: one}}]
            """
        let second = """
            current-context: b
            clusters:
            - {name: one, cluster: {server: "https://ignored"}}
            - {name: two, cluster: {server: "https://two"}}
            contexts: [{name: b, context: {cluster: two, namespace: ns}}]
            """
        try first.write(toFile: dir + "/first", atomically: true, encoding: .utf8)
        try second.write(toFile: dir + "/second", atomically: true, encoding: .utf8)
        let files = KubeConfig.defaultFiles(environment: ["KUBECONFIG": "\(dir)/first:\(dir)/missing:\(dir)/second"])
        #expect(files.count == 3)
        let merged = try KubeConfig(files: files)
        #expect(merged.currentContext == "a")
        #expect(try merged.configuration().server == "https://one")
        let b = try merged.configuration(context: "b")
        #expect(b.server == "https://two")
        #expect(b.namespace == "ns")
        #expect(throws: KubernetesConfigurationError.self) { try KubeConfig(files: [dir + "/nothing"]) }
    }

    @Test func anchorsAndMergeKeys() throws {
        let yaml = """
            clusters:
            - name: a
              cluster: &base {server: "https://a", insecure-skip-tls-verify: false}
            - name: b
              cluster:
                <<: *base
                insecure-skip-tls-verify: yes
            contexts: [{name: b, context: {cluster: b}}]
            """
        let config = try KubeConfig(yaml: yaml, directory: "/")
        #expect(config.clusters["b"]?.server == "https://a")
        #expect(config.clusters["b"]?.insecureSkipTLSVerify == true)
        #expect(config.clusters["a"]?.insecureSkipTLSVerify == false)
    }

    @Test func inClusterNeedsTheCA() throws {
        let dir = try TemporaryDirectory.make(prefix: "serviceaccount")
        defer { TemporaryDirectory.remove(dir) }
        let environment = ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"]
        try "token-1\n".write(toFile: dir + "/token", atomically: true, encoding: .utf8)
        do {
            _ = try KubernetesConfiguration.inCluster(environment: environment, directory: dir)
            Issue.record("no CA must be refused, never skipped")
        } catch let error as KubernetesConfigurationError {
            #expect(error.message.contains("CA"))
        }
        try "PEM".write(toFile: dir + "/ca.crt", atomically: true, encoding: .utf8)
        try "fpindex\n".write(toFile: dir + "/namespace", atomically: true, encoding: .utf8)
        let config = try KubernetesConfiguration.inCluster(environment: environment, directory: dir)
        #expect(config.server == "https://10.96.0.1:443")
        #expect(config.namespace == "fpindex")
        #expect(config.tls.certificateAuthority == .file(dir + "/ca.crt"))
        #expect(config.tls.insecureSkipVerify == false)
        #expect(config.credentials == .tokenFile(dir + "/token", refresh: .seconds(60)))
        let v6 = try KubernetesConfiguration.inCluster(
            environment: ["KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"], directory: dir)
        #expect(v6.server == "https://[fd00::1]:443")
        #expect(throws: KubernetesConfigurationError.self) {
            try KubernetesConfiguration.inCluster(environment: [:], directory: dir)
        }
    }
}

@Suite("YAML parser")
struct YAMLParserTests {
    @Test func documentsAndScalars() throws {
        let docs = try YAMLParser.parse("a: 1\nb: 'x'\n---\n- [1, {c: d}]\n- null\n")
        #expect(docs.count == 2)
        #expect(docs[0]["a"] == .scalar("1", plain: true))
        #expect(docs[0]["b"]?.string == "x")
        #expect(docs[1].array?.count == 2)
        #expect(docs[1].array?[1].string == nil)
        #expect(docs[1].array?[0].array?[1]["c"]?.string == "d")
    }

    @Test func rejectsUnknownAliasAndDeepNesting() {
        #expect(throws: YAMLError.self) { try YAMLParser.parse("a: *nope") }
        #expect(throws: YAMLError.self) { try YAMLParser.parse(String(repeating: "[", count: 2000)) }
    }

    /// Random mutations of a valid kubeconfig: the parser either succeeds or throws, never crashes.
    @Test func fuzzedInputNeverCrashes() {
        var random = SeededRandom(seed: 42)
        let base = Array(KubeConfigTests.realistic.utf8)
        let alphabet = Array("{}[]:-,&*!|>'\"#\n \t?%@`<".utf8)
        for _ in 0..<500 {
            var bytes = base
            for _ in 0..<(1 + Int(random.next() % 6)) {
                let at = Int(random.next() % UInt64(bytes.count))
                switch random.next() % 3 {
                case 0: bytes[at] = alphabet[Int(random.next() % UInt64(alphabet.count))]
                case 1: bytes.remove(at: at)
                default: bytes.insert(alphabet[Int(random.next() % UInt64(alphabet.count))], at: at)
                }
            }
            _ = try? KubeConfig(yaml: String(decoding: bytes, as: UTF8.self), directory: "/")
        }
    }
}
