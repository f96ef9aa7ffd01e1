import AsyncHTTPClient
import Foundation
import KubeSim
import NIOCore
import TestSupport
import Testing

/// The same requests sent to kubesim and to a real API server (v1.28, envtest): status codes,
/// reasons and the fields that matter must agree. Every case also carries what the real server
/// answered when it was written, so kubesim is held to it even where envtest is not available.
/// The corpus grows with every difference found: each was a place where kubesim accepted what
/// the real server refuses (or answered differently in a way a client sees).
enum DifferentialCorpus {
    struct Step: Sendable {
        var method: HTTPMethod
        var path: String
        var contentType = "application/json"
        var body: String?
    }

    /// What is compared besides the status code and the reason.
    enum Detail: Sendable {
        case message
        /// `details.causes` as `field: message` lines.
        case causes
        /// A field of the answered object, e.g. `["metadata", "finalizers"]`.
        case field([String])
        /// A watch stream's events: each event's type, and an ERROR's code and reason.
        case watchEvents
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        /// Requests made first; each must succeed (2xx).
        var setup: [Step] = []
        var probe: Step
        /// The real server's answer (v1.28.0).
        var code: Int
        var reason: String? = nil
        var compare: [Detail] = []
        var testDescription: String { name }
    }

    /// One answer, reduced to what is compared.
    struct Answer: Equatable, CustomStringConvertible {
        var code: Int
        var reason: String?
        var details: [String]
        var description: String { "\(code) \(reason ?? "-") \(details)" }
    }

    static let crdBase = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

    /// A one-version namespaced CRD of group `<name>.example.org` whose `spec` has `schema`.
    static func crd(_ name: String, spec: String) -> String {
        """
        {"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
         "metadata":{"name":"widgets.\(name).example.org"},
         "spec":{"group":"\(name).example.org","scope":"Namespaced",
                 "names":{"plural":"widgets","singular":"widget","kind":"Widget","listKind":"WidgetList"},
                 "versions":[{"name":"v1","served":true,"storage":true,"subresources":{"status":{}},
                              "schema":{"openAPIV3Schema":{"type":"object","properties":{"spec":\(spec)}}}}]}}
        """
    }

    static func widgets(_ name: String, namespace: String = "default") -> String {
        "/apis/\(name).example.org/v1/namespaces/\(namespace)/widgets"
    }

    /// The stream part of the FpindexCluster CRD, with its immutability rules where they were.
    static let objectLevelRules = """
        {"type":"object","properties":{"stream":{"type":"object","default":{},
          "x-kubernetes-validations":[{"rule":"self.name == oldSelf.name","message":"stream.name is immutable"}],
          "properties":{"name":{"type":"string","default":"fpindex"}}}}}
        """
    static let fieldLevelRules = """
        {"type":"object","properties":{"stream":{"type":"object","default":{},
          "properties":{"name":{"type":"string","default":"fpindex",
            "x-kubernetes-validations":[{"rule":"self == oldSelf","message":"stream.name is immutable"}]}}}}}
        """

    static func deployment(_ name: String, lifecycle: String) -> String {
        """
        {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"\(name)"},
         "spec":{"selector":{"matchLabels":{"app":"\(name)"}},
                 "template":{"metadata":{"labels":{"app":"\(name)"}},
                             "spec":{"containers":[{"name":"c","image":"example/c:1","lifecycle":\(lifecycle)}]}}}}
        """
    }

    static func widgetWithFinalizer(_ name: String) -> [Step] {
        [
            Step(method: .POST, path: crdBase, body: crd(name, spec: #"{"type":"object","properties":{"size":{"type":"integer"}}}"#)),
            Step(
                method: .POST, path: widgets(name),
                body:
                    #"{"apiVersion":"\#(name).example.org/v1","kind":"Widget","metadata":{"name":"w","finalizers":["example.org/hold"]},"spec":{"size":2}}"#
            ),
        ]
    }

    static func jsonPatch(_ name: String, _ body: String) -> Step {
        Step(method: .PATCH, path: widgets(name) + "/w?dryRun=All", contentType: "application/json-patch+json", body: body)
    }

    /// A server-side apply of widget `w2` with `spec.size`.
    static func apply(_ name: String, manager: String?, size: Int, force: Bool = false) -> Step {
        var query = manager.map { ["fieldManager=\($0)"] } ?? []
        if force { query.append("force=true") }
        return Step(
            method: .PATCH, path: widgets(name) + "/w2" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")),
            contentType: "application/apply-patch+yaml",
            body: #"{"apiVersion":"\#(name).example.org/v1","kind":"Widget","metadata":{"name":"w2"},"spec":{"size":\#(size)}}"#)
    }

    static let networkPolicies = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies"

    static func networkPolicy(_ name: String, spec: String) -> Step {
        Step(method: .POST, path: networkPolicies, body: #"{"metadata":{"name":"\#(name)"},"spec":\#(spec)}"#)
    }

    static let cases: [Case] = [
        Case(
            name: "CEL rule on an object reads a field its default {} lacks",
            probe: Step(method: .POST, path: crdBase, body: crd("objectrule", spec: objectLevelRules)),
            code: 422, reason: "Invalid", compare: [.causes]),
        Case(
            name: "CEL transition rule on the field itself",
            probe: Step(method: .POST, path: crdBase, body: crd("fieldrule", spec: fieldLevelRules)),
            code: 201),
        Case(
            name: "CEL transition rule refuses a change",
            setup: [
                Step(method: .POST, path: crdBase, body: crd("immutable", spec: fieldLevelRules)),
                Step(
                    method: .POST, path: widgets("immutable"),
                    body: #"{"apiVersion":"immutable.example.org/v1","kind":"Widget","metadata":{"name":"w"},"spec":{}}"#),
            ],
            probe: Step(
                method: .PATCH, path: widgets("immutable") + "/w", contentType: "application/merge-patch+json",
                body: #"{"spec":{"stream":{"name":"other"}}}"#),
            code: 422, reason: "Invalid", compare: [.message, .causes]),
        Case(
            name: "CEL transition rule lets an unchanged value through",
            setup: [
                Step(method: .POST, path: crdBase, body: crd("unchanged", spec: fieldLevelRules)),
                Step(
                    method: .POST, path: widgets("unchanged"),
                    body: #"{"apiVersion":"unchanged.example.org/v1","kind":"Widget","metadata":{"name":"w"},"spec":{}}"#),
            ],
            probe: Step(
                method: .PATCH, path: widgets("unchanged") + "/w", contentType: "application/merge-patch+json",
                body: #"{"metadata":{"labels":{"a":"b"}},"spec":{"stream":{"name":"fpindex"}}}"#),
            code: 200),
        Case(
            name: "CEL rule selecting an undeclared field does not compile",
            probe: Step(
                method: .POST, path: crdBase,
                body: crd(
                    "undeclared",
                    spec:
                        #"{"type":"object","x-kubernetes-validations":[{"rule":"self.nope == 1"}],"properties":{"size":{"type":"integer"}}}"#
                )),
            code: 422, reason: "Invalid"),
        Case(
            name: "CEL rule with a failing non-transition rule on create",
            setup: [
                Step(
                    method: .POST, path: crdBase,
                    body: crd(
                        "minimum",
                        spec:
                            #"{"type":"object","x-kubernetes-validations":[{"rule":"self.size >= 2","message":"size is at least 2"}],"properties":{"size":{"type":"integer"}}}"#
                    ))
            ],
            probe: Step(
                method: .POST, path: widgets("minimum"),
                body: #"{"apiVersion":"minimum.example.org/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"size":1}}"#),
            code: 422, reason: "Invalid", compare: [.message, .causes]),
        Case(
            name: "preStop sleep handler (1.29+) is dropped, leaving no handler",
            probe: Step(
                method: .POST, path: "/apis/apps/v1/namespaces/default/deployments",
                body: deployment("sleepy", lifecycle: #"{"preStop":{"sleep":{"seconds":5}}}"#)),
            code: 422, reason: "Invalid", compare: [.message, .causes]),
        Case(
            name: "preStop exec sleep is accepted",
            probe: Step(
                method: .POST, path: "/apis/apps/v1/namespaces/default/deployments",
                body: deployment("execsleep", lifecycle: #"{"preStop":{"exec":{"command":["sleep","5"]}}}"#)),
            code: 201),
        Case(
            name: "a hook with two handlers",
            probe: Step(
                method: .POST, path: "/apis/apps/v1/namespaces/default/deployments",
                body: deployment(
                    "twohandlers", lifecycle: #"{"postStart":{"exec":{"command":["true"]},"tcpSocket":{"port":80}}}"#)),
            code: 422, reason: "Invalid", compare: [.message, .causes]),
        Case(
            name: "json patch test of a finalizer with an escaped slash",
            setup: widgetWithFinalizer("escaped"),
            probe: jsonPatch("escaped", #"[{"op":"test","path":"/metadata/finalizers/0","value":"example.org\/hold"}]"#),
            code: 422, reason: "Invalid", compare: [.message]),
        Case(
            name: "json patch test and remove of a finalizer as written by kubectl",
            setup: widgetWithFinalizer("plain"),
            probe: jsonPatch(
                "plain",
                #"[{"op":"test","path":"/metadata/finalizers/0","value":"example.org/hold"},{"op":"remove","path":"/metadata/finalizers/0"}]"#
            ),
            code: 200, compare: [.field(["metadata", "finalizers"])]),
        Case(
            name: "json patch test of an integer written as 2.0",
            setup: widgetWithFinalizer("float"),
            probe: jsonPatch("float", #"[{"op":"test","path":"/spec/size","value":2.0}]"#),
            code: 422, reason: "Invalid", compare: [.message]),
        Case(
            name: "json patch test of a missing member against null",
            setup: widgetWithFinalizer("missingnull"),
            probe: jsonPatch("missingnull", #"[{"op":"test","path":"/metadata/nothing","value":null}]"#),
            code: 200),
        Case(
            name: "json patch test of a wrong value",
            setup: widgetWithFinalizer("wrong"),
            probe: jsonPatch("wrong", #"[{"op":"test","path":"/metadata/finalizers/0","value":"x"}]"#),
            code: 422, reason: "Invalid", compare: [.message]),
        Case(
            name: "json patch remove past the end of a list",
            setup: widgetWithFinalizer("pastend"),
            probe: jsonPatch("pastend", #"[{"op":"remove","path":"/metadata/finalizers/5"}]"#),
            code: 422, reason: "Invalid", compare: [.message]),
        Case(
            name: "json patch with an unknown op",
            setup: widgetWithFinalizer("bogus"),
            probe: jsonPatch("bogus", #"[{"op":"bogus","path":"/metadata"}]"#),
            code: 422, reason: "Invalid", compare: [.message]),
        Case(
            name: "json patch body that is an object",
            setup: widgetWithFinalizer("objectbody"),
            probe: jsonPatch("objectbody", #"{"op":"remove","path":"/metadata"}"#),
            code: 400, reason: "BadRequest", compare: [.message]),
        Case(
            name: "merge patch body that is an array",
            setup: widgetWithFinalizer("arraybody"),
            probe: Step(
                method: .PATCH, path: widgets("arraybody") + "/w", contentType: "application/merge-patch+json", body: "[1]"),
            code: 400, reason: "BadRequest", compare: [.message]),
        Case(
            name: "strategic merge patch on a custom resource",
            setup: widgetWithFinalizer("strategic"),
            probe: Step(
                method: .PATCH, path: widgets("strategic") + "/w", contentType: "application/strategic-merge-patch+json",
                body: #"{"spec":{}}"#),
            code: 415, reason: "UnsupportedMediaType", compare: [.message]),
        Case(
            name: "server-side apply creates an object",
            setup: [Step(method: .POST, path: crdBase, body: crd("applied", spec: #"{"type":"object","properties":{"size":{"type":"integer"}}}"#))],
            probe: apply("applied", manager: "alice", size: 3),
            code: 201, compare: [.field(["spec", "size"])]),
        Case(
            name: "server-side apply without a field manager",
            setup: [Step(method: .POST, path: crdBase, body: crd("nomanager", spec: #"{"type":"object","properties":{"size":{"type":"integer"}}}"#))],
            probe: apply("nomanager", manager: nil, size: 3),
            code: 422, reason: "Invalid", compare: [.message]),
        Case(
            name: "server-side apply of a field another manager owns",
            setup: [
                Step(method: .POST, path: crdBase, body: crd("conflict", spec: #"{"type":"object","properties":{"size":{"type":"integer"}}}"#)),
                apply("conflict", manager: "alice", size: 3),
            ],
            probe: apply("conflict", manager: "bob", size: 4),
            code: 409, reason: "Conflict", compare: [.message, .causes]),
        Case(
            name: "server-side apply of a field another manager owns, forced",
            setup: [
                Step(method: .POST, path: crdBase, body: crd("forced", spec: #"{"type":"object","properties":{"size":{"type":"integer"}}}"#)),
                apply("forced", manager: "alice", size: 3),
            ],
            probe: apply("forced", manager: "bob", size: 4, force: true),
            code: 200, compare: [.field(["spec", "size"])]),
        Case(
            name: "watch from resourceVersion 0 starts with the current objects",
            setup: [Step(method: .POST, path: "/api/v1/namespaces/default/configmaps", body: #"{"metadata":{"name":"watched"}}"#)],
            probe: Step(
                method: .GET,
                path: "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0&timeoutSeconds=1&fieldSelector=metadata.name%3Dwatched"),
            code: 200, compare: [.watchEvents]),
        Case(
            name: "NetworkPolicy as the controller makes it, with the server's defaults",
            probe: networkPolicy(
                "index",
                spec: #"{"podSelector":{"matchLabels":{"app":"x"}},"ingress":[{"from":[{"podSelector":{"matchLabels":{"c":"proxy"}}},"#
                    + #"{"namespaceSelector":{},"podSelector":{"matchExpressions":[{"key":"r","operator":"Exists"}]}}],"ports":[{"port":6081}]}]}"#),
            code: 201, compare: [.field(["spec", "policyTypes"]), .field(["spec", "ingress"])]),
        Case(
            name: "NetworkPolicy peers: empty, ipBlock beside a selector, bad CIDRs",
            probe: networkPolicy(
                "peers",
                spec: #"{"podSelector":{},"ingress":[{"from":[{},{"ipBlock":{"cidr":"10.0.0.0/8"},"podSelector":{}},"#
                    + #"{"ipBlock":{"cidr":"10.0.0.0/33"}},{"ipBlock":{"cidr":"10.0.0.0/8","except":["10.1.0.0/16","11.0.0.0/24"]}}]}]}"#),
            code: 422, reason: "Invalid", compare: [.message, .causes]),
        Case(
            name: "NetworkPolicy ports, policy types and selector operators",
            probe: networkPolicy(
                "ports",
                spec: #"{"podSelector":{"matchExpressions":[{"key":"a","operator":"In"},{"key":"b","operator":"Near","values":["x"]}]},"#
                    + #""policyTypes":["Ingress","Sideways"],"ingress":[{"ports":[{"port":0},{"port":"Not_A_Name"},{"protocol":"ICMP","port":80}]}]}"#),
            code: 422, reason: "Invalid", compare: [.message, .causes]),
        Case(
            name: "a patch with stringData changes a Secret's data",
            setup: [Step(method: .POST, path: "/api/v1/namespaces/default/secrets", body: #"{"metadata":{"name":"rotated"},"data":{"token":"b25l"}}"#)],
            probe: Step(
                method: .PATCH, path: "/api/v1/namespaces/default/secrets/rotated", contentType: "application/merge-patch+json",
                body: #"{"stringData":{"token":"two"}}"#),
            code: 200, compare: [.field(["data"]), .field(["stringData"])]),
        Case(
            name: "namespace deletion answers with the namespace Terminating",
            setup: [Step(method: .POST, path: "/api/v1/namespaces", body: #"{"metadata":{"name":"doomed"}}"#)],
            probe: Step(method: .DELETE, path: "/api/v1/namespaces/doomed"),
            code: 200, compare: [.field(["status", "phase"])]),
    ]

    /// Sends every step of `testCase` to `server` and reduces the probe's answer.
    static func run(_ testCase: Case, on server: Endpoint) async throws -> Answer {
        for step in testCase.setup {
            let reply = try await server.send(step)
            guard (200..<300).contains(reply.status) else {
                throw TestFailure("\(server.name): setup \(step.method) \(step.path) failed: \(reply.status) \(reply.text)")
            }
            // A new kind is served a moment after its CRD is accepted (on the real server).
            if step.path == crdBase { try await server.waitForEstablished(reply) }
        }
        let reply = try await server.send(testCase.probe)
        let object = (try? JSONSerialization.jsonObject(with: Data(reply.body))) as? [String: Any] ?? [:]
        var details: [String] = []
        for detail in testCase.compare {
            switch detail {
            case .message: details.append("message: \(object["message"] as? String ?? "-")")
            case .causes:
                let causes = (object["details"] as? [String: Any])?["causes"] as? [[String: Any]] ?? []
                details += causes.map { "cause: \($0["field"] as? String ?? "-"): \($0["message"] as? String ?? "-")" }.sorted()
            case .watchEvents:
                for line in String(decoding: reply.body, as: UTF8.self).split(separator: "\n") {
                    let event = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
                    let type = event["type"] as? String ?? "?"
                    let status = event["object"] as? [String: Any] ?? [:]
                    details.append(
                        type == "ERROR" ? "ERROR \(status["code"] as? Int ?? 0) \(status["reason"] as? String ?? "-")" : type)
                }
            case .field(let path):
                var value: Any? = object
                for key in path { value = (value as? [String: Any])?[key] }
                let text = value.flatMap { try? JSONSerialization.data(withJSONObject: $0, options: [.fragmentsAllowed, .sortedKeys]) }
                details.append("\(path.joined(separator: ".")): \(text.map { String(decoding: $0, as: UTF8.self) } ?? "absent")")
            }
        }
        return Answer(code: reply.status, reason: (reply.status >= 400 ? object["reason"] as? String : nil), details: details)
    }

    /// An API server to send the corpus to.
    struct Endpoint: Sendable {
        var name: String
        var url: String
        var token: String
        var http: HTTPClient

        func send(_ step: Step) async throws -> HTTPReply {
            try await TestHTTPClient(baseURL: url, client: http).request(
                step.method, step.path, body: step.body.map { Array($0.utf8) },
                headers: [("Authorization", "Bearer \(token)"), ("Accept", "application/json"), ("Content-Type", step.contentType)])
        }

        func waitForEstablished(_ reply: HTTPReply) async throws {
            guard let object = try? reply.jsonObject(), let name = (object["metadata"] as? [String: Any])?["name"] as? String
            else { return }
            try await eventually("CRD \(name) is established on \(self.name)") {
                let crd = try await send(Step(method: .GET, path: "\(crdBase)/\(name)")).jsonObject()
                let conditions = (crd["status"] as? [String: Any])?["conditions"] as? [[String: Any]] ?? []
                return conditions.contains { $0["type"] as? String == "Established" && $0["status"] as? String == "True" }
                    ? true : nil
            }
        }
    }

    /// kubesim over TLS with a token (as the real server), and its endpoint.
    static func startKubeSim() async throws -> (KubeSimServer, Endpoint, String) {
        let server = try await KubeSimServer.start(
            configuration: KubeSimConfiguration(tokens: ["differential"], tls: true, workloadControllers: true),
            logger: quietLogger)
        let directory = try TemporaryDirectory.make(prefix: "differential")
        let caPath = directory + "/ca.crt"
        try (server.caCertificatePEM ?? "").write(toFile: caPath, atomically: true, encoding: .utf8)
        let endpoint = Endpoint(
            name: "kubesim", url: server.url, token: "differential", http: try EnvtestServer.makeHTTPClient(caPath: caPath))
        return (server, endpoint, directory)
    }
}

@Suite("kubesim answers as the real API server (recorded answers)", .timeLimit(.minutes(2)))
struct KubeSimRecordedAnswersTests {
    @Test(arguments: DifferentialCorpus.cases)
    func kubeSimAnswersAsRecorded(_ testCase: DifferentialCorpus.Case) async throws {
        let (server, endpoint, directory) = try await DifferentialCorpus.startKubeSim()
        defer { TemporaryDirectory.remove(directory) }
        do {
            let answer = try await DifferentialCorpus.run(testCase, on: endpoint)
            #expect(answer.code == testCase.code, "\(answer)")
            #expect(answer.reason == testCase.reason, "\(answer)")
        } catch {
            try? await endpoint.http.shutdown()
            await server.shutdown()
            throw error
        }
        try? await endpoint.http.shutdown()
        await server.shutdown()
    }
}

@Suite(
    "kubesim and a real API server (envtest) answer the same", .serialized,
    .enabled(if: EnvtestServer.available, "envtest not available: \(EnvtestServer.unavailableReason ?? "")"),
    .timeLimit(.minutes(5)))
struct KubeSimDifferentialEnvtest {
    @Test func theCorpusGetsTheSameAnswers() async throws {
        let envtest = try await EnvtestServer.start()
        let real = DifferentialCorpus.Endpoint(name: "envtest", url: envtest.url, token: envtest.token, http: envtest.http)
        let (kubesim, simulated, directory) = try await DifferentialCorpus.startKubeSim()
        defer { TemporaryDirectory.remove(directory) }
        var differences: [String] = []
        do {
            for testCase in DifferentialCorpus.cases {
                let fromReal = try await DifferentialCorpus.run(testCase, on: real)
                let fromKubeSim = try await DifferentialCorpus.run(testCase, on: simulated)
                if fromReal != fromKubeSim {
                    differences.append("\(testCase.name):\n  real:    \(fromReal)\n  kubesim: \(fromKubeSim)")
                }
                // The recorded answer is still the real server's.
                #expect(fromReal.code == testCase.code, "\(testCase.name): \(fromReal)")
                #expect(fromReal.reason == testCase.reason, "\(testCase.name): \(fromReal)")
            }
        } catch {
            try? await simulated.http.shutdown()
            await kubesim.shutdown()
            await envtest.stop()
            throw error
        }
        #expect(differences.isEmpty, "\(differences.joined(separator: "\n"))")
        try? await simulated.http.shutdown()
        await kubesim.shutdown()
        await envtest.stop()
    }
}
