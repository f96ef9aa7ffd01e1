import AsyncHTTPClient
import Foundation
import KubeSim
import Logging
import NIOCore
import TestSupport

/// A logger that drops everything (tests never bootstrap logging).
let quietLogger = Logger(label: "kubesim-test", factory: { _ in SwiftLogNoOpLogHandler() })

/// Runs `body` with an in-process kubesim, shutting it down afterwards.
@discardableResult
func withKubeSim<T>(
    _ configuration: KubeSimConfiguration = KubeSimConfiguration(), _ body: (KubeSimServer, TestHTTPClient) async throws -> T
) async throws -> T {
    let server = try await KubeSimServer.start(configuration: configuration, logger: quietLogger)
    do {
        let result = try await body(server, TestHTTPClient(baseURL: server.url))
        await server.shutdown()
        return result
    } catch {
        await server.shutdown()
        throw error
    }
}

enum Fixtures {
    static let group = "fpindex.acoustid.org"
    static let collection = "/apis/fpindex.acoustid.org/v1alpha1/namespaces/default/fpindexclusters"

    /// The FpindexCluster CRD: namespaced, status + scale subresources, printer columns.
    static let crdYAML = """
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata:
          name: fpindexclusters.fpindex.acoustid.org
        spec:
          group: fpindex.acoustid.org
          scope: Namespaced
          names:
            plural: fpindexclusters
            singular: fpindexcluster
            kind: FpindexCluster
            listKind: FpindexClusterList
            shortNames: [fpc]
          versions:
          - name: v1alpha1
            served: true
            storage: true
            subresources:
              status: {}
              scale:
                specReplicasPath: .spec.replicas
                statusReplicasPath: .status.replicas
                labelSelectorPath: .status.selector
            additionalPrinterColumns:
            - {name: READY, type: integer, jsonPath: .status.readyReplicas}
            - {name: REPLICAS, type: integer, jsonPath: .spec.replicas}
            - {name: MAX-LAG, type: integer, jsonPath: .status.maxLag}
            - {name: STATUS, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].reason'}
            - {name: AGE, type: date, jsonPath: .metadata.creationTimestamp}
            - {name: IMAGE, type: string, jsonPath: .spec.index.image, priority: 1}
            schema:
              openAPIV3Schema:
                type: object
                description: FpindexCluster runs a replicated fingerprint index.
                properties:
                  spec:
                    type: object
                    description: The desired state.
                    required: [replicas]
                    properties:
                      replicas: {type: integer, minimum: 0, description: Number of index replicas.}
                      index:
                        type: object
                        properties:
                          image: {type: string, default: "ghcr.io/acoustid/acoustid-index:main"}
                      readiness:
                        type: object
                        properties:
                          maxLag: {type: integer, default: 1000}
                  status:
                    type: object
                    properties:
                      observedGeneration: {type: integer}
                      replicas: {type: integer}
                      readyReplicas: {type: integer}
                      selector: {type: string}
                      maxLag: {type: integer}
                      conditions:
                        type: array
                        items:
                          type: object
                          properties:
                            type: {type: string}
                            status: {type: string}
                            reason: {type: string}
                            message: {type: string}
                            lastTransitionTime: {type: string}
                            observedGeneration: {type: integer}

        """

    /// The same CRD as JSON, for HTTP tests.
    static let crdJSON = """
        {"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
         "metadata":{"name":"fpindexclusters.fpindex.acoustid.org"},
         "spec":{"group":"fpindex.acoustid.org","scope":"Namespaced",
          "names":{"plural":"fpindexclusters","singular":"fpindexcluster","kind":"FpindexCluster","shortNames":["fpc"]},
          "versions":[{"name":"v1alpha1","served":true,"storage":true,
           "subresources":{"status":{},"scale":{"specReplicasPath":".spec.replicas","statusReplicasPath":".status.replicas","labelSelectorPath":".status.selector"}},
           "additionalPrinterColumns":[
            {"name":"READY","type":"integer","jsonPath":".status.readyReplicas"},
            {"name":"REPLICAS","type":"integer","jsonPath":".spec.replicas"},
            {"name":"MAX-LAG","type":"integer","jsonPath":".status.maxLag"},
            {"name":"STATUS","type":"string","jsonPath":".status.conditions[?(@.type==\\"Ready\\")].reason"},
            {"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"},
            {"name":"IMAGE","type":"string","jsonPath":".spec.index.image","priority":1}],
           "schema":{"openAPIV3Schema":{"type":"object","properties":{
            "spec":{"type":"object","required":["replicas"],"properties":{
              "replicas":{"type":"integer","minimum":0},
              "index":{"type":"object","properties":{"image":{"type":"string","default":"ghcr.io/acoustid/acoustid-index:main"}}}}},
            "status":{"type":"object","properties":{"replicas":{"type":"integer"},"readyReplicas":{"type":"integer"},
              "selector":{"type":"string"},"maxLag":{"type":"integer"},"observedGeneration":{"type":"integer"},
              "conditions":{"type":"array","items":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}}}}}}]}}
        """

    static func fpc(_ name: String, replicas: Int, extra: String = "") -> String {
        """
        {"apiVersion":"fpindex.acoustid.org/v1alpha1","kind":"FpindexCluster","metadata":{"name":"\(name)"\(extra)},"spec":{"replicas":\(replicas)}}
        """
    }

    static func fpcYAML(_ name: String, replicas: Int, image: String? = nil) -> String {
        var text = """
            apiVersion: fpindex.acoustid.org/v1alpha1
            kind: FpindexCluster
            metadata:
              name: \(name)
            spec:
              replicas: \(replicas)

            """
        if let image { text += "  index:\n    image: \(image)\n" }
        return text
    }
}

extension TestHTTPClient {
    /// Creates the FpindexCluster CRD and waits until its kind is served.
    func installCRD() async throws {
        let reply = try await json(.POST, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", Fixtures.crdJSON)
        guard reply.status == 201 else { throw TestFailure("CRD create: \(reply.status) \(reply.text)") }
    }

    /// A PATCH with the given patch content type.
    func patch(_ path: String, _ body: String, type: String) async throws -> HTTPReply {
        try await request(.PATCH, path, body: Array(body.utf8), headers: [("Content-Type", type)])
    }

    /// Reads a watch until `done` says the events seen so far are enough, or the server's
    /// `timeoutSeconds` ends the stream.
    func watch(_ path: String, until done: ([[String: Any]]) -> Bool) async throws -> [[String: Any]] {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .GET
        let response = try await client.execute(request, timeout: .seconds(30))
        var events: [[String: Any]] = []
        var pending: [UInt8] = []
        for try await chunk in response.body {
            pending.append(contentsOf: chunk.readableBytesView)
            while let newline = pending.firstIndex(of: 0x0A) {
                let line = Array(pending[..<newline])
                pending.removeFirst(newline + 1)
                if let event = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] { events.append(event) }
            }
            if done(events) { return events }
        }
        return events
    }
}

/// The field at a dotted path of a decoded JSON object.
func field(_ object: Any?, _ path: String) -> Any? {
    var current = object
    for key in path.split(separator: ".") {
        if let index = Int(key), let array = current as? [Any] {
            current = array.indices.contains(index) ? array[index] : nil
        } else {
            current = (current as? [String: Any])?[String(key)]
        }
    }
    return current
}
