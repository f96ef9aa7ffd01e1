import Foundation
import Testing

@testable import Kubernetes

@Suite("Kubernetes wire formats")
struct WireTests {
    @Test func statusBodiesBecomeTypedErrors() {
        let invalid = #"""
            {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"FpindexCluster.fpindex.acoustid.org \"a\" is invalid: spec.replicas: Invalid value: -1","reason":"Invalid","details":{"name":"a","group":"fpindex.acoustid.org","kind":"FpindexCluster","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: -1","field":"spec.replicas"}]},"code":422}
            """#
        let error = KubernetesError.from(code: 422, body: Array(invalid.utf8), retryAfterHeader: nil)
        #expect(error.reason == .invalid)
        #expect(error.causes.first?.field == "spec.replicas")
        #expect(error.description.contains("spec.replicas"))
        #expect(!error.isTransient)

        let exists = #"{"kind":"Status","status":"Failure","reason":"AlreadyExists","code":409,"message":"x"}"#
        #expect(KubernetesError.from(code: 409, body: Array(exists.utf8), retryAfterHeader: nil).reason == .alreadyExists)
        let conflict = #"{"kind":"Status","status":"Failure","reason":"Conflict","code":409,"message":"x"}"#
        #expect(KubernetesError.from(code: 409, body: Array(conflict.utf8), retryAfterHeader: nil).reason == .conflict)

        let throttled = KubernetesError.from(code: 429, body: [], retryAfterHeader: "3")
        #expect(throttled.reason == .tooManyRequests)
        #expect(throttled.retryAfter == .seconds(3))
        #expect(throttled.isTransient)

        #expect(KubernetesError.from(code: 404, body: Array("404 page not found".utf8), retryAfterHeader: nil).reason == .notFound)
        #expect(KubernetesError.from(code: 401, body: [], retryAfterHeader: nil).reason == .unauthorized)
        #expect(KubernetesError.from(code: 403, body: [], retryAfterHeader: nil).reason == .forbidden)
        #expect(KubernetesError.from(code: 410, body: [], retryAfterHeader: nil).reason == .expired)
        #expect(KubernetesError.from(code: 503, body: [], retryAfterHeader: nil).isTransient)
    }

    @Test func watchLinesSplitAnywhere() throws {
        let events = [
            #"{"type":"ADDED","object":{"kind":"ConfigMap","metadata":{"name":"a","resourceVersion":"5"}}}"#,
            #"{"type":"BOOKMARK","object":{"kind":"ConfigMap","metadata":{"resourceVersion":"9"}}}"#,
            #"{"type":"DELETED","object":{"kind":"ConfigMap","metadata":{"name":"a","resourceVersion":"10"}}}"#,
        ]
        let body = Array((events.joined(separator: "\n") + "\n").utf8)
        // Every way of cutting the body in two gives the same events.
        for cut in stride(from: 0, through: body.count, by: 7) {
            var buffer = LineBuffer()
            let lines = buffer.append(Array(body[..<cut])) + buffer.append(Array(body[cut...]))
            #expect(lines.count == 3)
            let decoded = try lines.map { try WatchLineDecoder.decode($0, as: ConfigMap.self) }
            guard case .added(let added) = decoded[0], case .bookmark(let rv) = decoded[1],
                case .deleted(let deleted) = decoded[2]
            else {
                Issue.record("wrong events \(decoded)")
                return
            }
            #expect(added.metadata.name == "a")
            #expect(rv == "9")
            #expect(deleted.metadata.resourceVersion == "10")
        }
    }

    @Test func inStreamErrorIsExpired() {
        let line =
            #"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (50)","reason":"Expired","code":410}}"#
        do {
            _ = try WatchLineDecoder.decode(Array(line.utf8), as: ConfigMap.self)
            Issue.record("an ERROR event must throw")
        } catch let error as KubernetesError {
            #expect(error.reason == .expired)
            #expect(error.code == 410)
        } catch {
            Issue.record("unexpected \(error)")
        }
        #expect(throws: KubernetesError.self) { try WatchLineDecoder.decode(Array("{nope".utf8), as: ConfigMap.self) }
    }

    @Test func mergePatchRoundTrip() {
        let old: JSONValue = ["spec": ["replicas": 2, "image": "a", "args": ["x"]], "keep": true]
        let new: JSONValue = ["spec": ["replicas": 3, "args": ["x", "y"]], "keep": true, "added": "z"]
        let patch = old.mergePatch(to: new)
        #expect(patch == ["spec": ["replicas": 3, "image": .null, "args": ["x", "y"]], "added": "z"])
        #expect(old.applyingMergePatch(patch!) == new)
        #expect(new.mergePatch(to: new) == nil)
    }

    @Test func paths() {
        #expect(ResourceType.pods.path(namespace: "ns", name: "p-0") == "/api/v1/namespaces/ns/pods/p-0")
        #expect(ResourceType.pods.path(namespace: nil) == "/api/v1/pods")
        #expect(
            ResourceType.fpindexClusters.path(namespace: "ns", name: "main", subresource: "scale")
                == "/apis/fpindex.acoustid.org/v1alpha1/namespaces/ns/fpindexclusters/main/scale")
        #expect(ResourceType.namespaces.path(namespace: "ignored", name: "x") == "/api/v1/namespaces/x")
        #expect(PathEscaping.query([("labelSelector", "a=b,c in (d)")]) == "?labelSelector=a%3Db%2Cc%20in%20%28d%29")
    }

    @Test func timestamps() {
        let date = Date(timeIntervalSince1970: 1_700_000_000.25)
        #expect(KubernetesTime.format(date) == "2023-11-14T22:13:20Z")
        #expect(KubernetesTime.formatMicro(date) == "2023-11-14T22:13:20.250000Z")
        #expect(KubernetesTime.parse("2023-11-14T22:13:20Z") == Date(timeIntervalSince1970: 1_700_000_000))
        #expect(KubernetesTime.parse("2023-11-14T22:13:20.250000Z") == date)
        #expect(KubernetesTime.parse("yesterday") == nil)
    }

    @Test func modelsDecodeRealObjects() throws {
        let json = #"""
            {"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"main-index","namespace":"fp","uid":"u1","resourceVersion":"7","generation":2,"labels":{"app.kubernetes.io/instance":"main"},"ownerReferences":[{"apiVersion":"fpindex.acoustid.org/v1alpha1","kind":"FpindexCluster","name":"main","uid":"u0","controller":true,"blockOwnerDeletion":true}]},
             "spec":{"replicas":2,"serviceName":"main-index","selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"updater","image":"w:1","env":[{"name":"CONSUMER_NAME","valueFrom":{"fieldRef":{"apiVersion":"v1","fieldPath":"metadata.name"}}}],"readinessProbe":{"httpGet":{"path":"/ready","port":"probes"},"periodSeconds":2}}]}},"unknownField":1},
             "status":{"replicas":2,"readyReplicas":1,"observedGeneration":2}}
            """#
        let set = try JSONDecoder().decode(StatefulSet.self, from: Data(json.utf8))
        #expect(set.metadata.ownerReferences?.first?.kind == "FpindexCluster")
        #expect(set.spec?.template?.spec?.containers.first?.env?.first?.valueFrom?.fieldRef?.fieldPath == "metadata.name")
        #expect(set.spec?.template?.spec?.containers.first?.readinessProbe?.httpGet?.port == .string("probes"))
        #expect(set.status?.readyReplicas == 1)
        let cluster = try JSONDecoder().decode(
            FpindexCluster.self,
            from: Data(#"{"apiVersion":"fpindex.acoustid.org/v1alpha1","kind":"FpindexCluster","metadata":{"name":"x"}}"#.utf8))
        #expect(cluster.spec.replicas == nil)
    }
}
