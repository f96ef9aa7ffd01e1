import AsyncHTTPClient
import Foundation
import KubeSim
import NIOCore
import NIOSSL
import TestSupport
import Testing

/// The API semantics over plain HTTP requests.
@Suite(.timeLimit(.minutes(1)))
struct HTTPSemanticsTests {
    let main = Fixtures.collection + "/main"

    @Test func discoveryFollowsCRDs() async throws {
        try await withKubeSim { _, client in
            #expect(try await client.request(.GET, "/version").jsonObject()["minor"] as? String == "32")
            #expect(try await client.request(.GET, "/healthz").status == 200)
            #expect(try await client.request(.GET, "/apis/fpindex.acoustid.org/v1alpha1").status == 404)
            try await client.installCRD()
            let resources = try await client.request(.GET, "/apis/fpindex.acoustid.org/v1alpha1").jsonObject()
            let names = (resources["resources"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
            #expect(names == ["fpindexclusters", "fpindexclusters/status", "fpindexclusters/scale"])
            let groups = try await client.request(.GET, "/apis").jsonObject()
            #expect((groups["groups"] as? [[String: Any]] ?? []).contains { $0["name"] as? String == "fpindex.acoustid.org" })
            let aggregated = try await client.request(
                .GET, "/apis",
                headers: [("Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json")])
            #expect(aggregated.contentType == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
            #expect(aggregated.text.contains("\"resource\":\"fpindexclusters\""))
            let deleted = try await client.request(
                .DELETE, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/fpindexclusters.fpindex.acoustid.org")
            #expect(deleted.status == 200)
            #expect(try await client.request(.GET, "/apis/fpindex.acoustid.org/v1alpha1").status == 404)
        }
    }

    /// A cluster-scoped CRD with two served versions: objects are served in both, with each
    /// version's printer columns.
    @Test func clusterScopedMultiVersionCRD() async throws {
        try await withKubeSim { _, client in
            let crd = """
                {"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"backends.fpindex.acoustid.org"},
                 "spec":{"group":"fpindex.acoustid.org","scope":"Cluster","names":{"plural":"backends","singular":"backend","kind":"Backend"},
                  "versions":[
                   {"name":"v1alpha1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}},
                    "additionalPrinterColumns":[{"name":"URL","type":"string","jsonPath":".spec.url"}]},
                   {"name":"v1beta1","served":true,"storage":false,"schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true,
                     "properties":{"spec":{"type":"object","required":["url"],"x-kubernetes-preserve-unknown-fields":true}}}},
                    "additionalPrinterColumns":[{"name":"ENDPOINT","type":"string","jsonPath":".spec.url"},{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}]}]}}
                """
            #expect(try await client.json(.POST, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd).status == 201)
            let group = try await client.request(.GET, "/apis/fpindex.acoustid.org").jsonObject()
            #expect(field(group, "preferredVersion.version") as? String == "v1beta1")
            let created = try await client.json(
                .POST, "/apis/fpindex.acoustid.org/v1alpha1/backends",
                #"{"apiVersion":"fpindex.acoustid.org/v1alpha1","kind":"Backend","metadata":{"name":"b1"},"spec":{"url":"http://x"}}"#)
            #expect(created.status == 201)
            #expect(field(try created.jsonObject(), "metadata.namespace") == nil)
            let beta = try await client.request(.GET, "/apis/fpindex.acoustid.org/v1beta1/backends/b1").jsonObject()
            #expect(beta["apiVersion"] as? String == "fpindex.acoustid.org/v1beta1")
            let accept = [("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")]
            let alpha = try await client.request(.GET, "/apis/fpindex.acoustid.org/v1alpha1/backends", headers: accept).jsonObject()
            let betaTable = try await client.request(.GET, "/apis/fpindex.acoustid.org/v1beta1/backends", headers: accept).jsonObject()
            #expect((alpha["columnDefinitions"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String } == ["Name", "URL"])
            #expect(
                (betaTable["columnDefinitions"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String } == [
                    "Name", "ENDPOINT", "AGE",
                ])
            #expect(field(betaTable, "rows.0.cells.1") as? String == "http://x")
            // Each version validates with its own schema.
            let noURL = #"{"apiVersion":"fpindex.acoustid.org/v1beta1","kind":"Backend","metadata":{"name":"b2"},"spec":{}}"#
            let refused = try await client.json(.POST, "/apis/fpindex.acoustid.org/v1beta1/backends", noURL)
            #expect(refused.status == 422)
            #expect(field(try refused.jsonObject(), "details.causes.0.field") as? String == "spec.url")
            let alphaNoURL = noURL.replacingOccurrences(of: "v1beta1", with: "v1alpha1")
            #expect(try await client.json(.POST, "/apis/fpindex.acoustid.org/v1alpha1/backends", alphaNoURL).status == 201)
            // A cluster-scoped kind has no namespaced path.
            #expect(try await client.request(.GET, "/apis/fpindex.acoustid.org/v1alpha1/namespaces/default/backends").status == 404)
        }
    }

    @Test func createConflictsAndOptimisticConcurrency() async throws {
        try await withKubeSim { _, client in
            try await client.installCRD()
            let created = try await client.json(.POST, Fixtures.collection, Fixtures.fpc("main", replicas: 1))
            #expect(created.status == 201)
            let object = try created.jsonObject()
            #expect((field(object, "metadata.uid") as? String)?.isEmpty == false)
            #expect(field(object, "metadata.creationTimestamp") is String)
            #expect(field(object, "metadata.resourceVersion") is String)
            // Schema default applied inside an object that is present.
            let again = try await client.json(.POST, Fixtures.collection, Fixtures.fpc("main", replicas: 1))
            #expect(again.status == 409)
            #expect(try again.jsonObject()["reason"] as? String == "AlreadyExists")
            #expect(try again.jsonObject()["kind"] as? String == "Status")

            let rv = field(object, "metadata.resourceVersion") as! String
            let update = Fixtures.fpc("main", replicas: 2, extra: #","resourceVersion":"\#(rv)""#)
            let first = try await client.json(.PUT, main, update)
            #expect(first.status == 200)
            #expect(field(try first.jsonObject(), "metadata.resourceVersion") as? String != rv)
            let stale = try await client.json(.PUT, main, update)
            #expect(stale.status == 409)
            #expect(try stale.jsonObject()["reason"] as? String == "Conflict")
            #expect(try await client.json(.PUT, Fixtures.collection + "/missing", Fixtures.fpc("missing", replicas: 1)).status == 404)
        }
    }

    @Test func concurrentUpdatesWithOneResourceVersionOnlyOneWins() async throws {
        try await withKubeSim { _, client in
            try await client.installCRD()
            let created = try await client.json(.POST, Fixtures.collection, Fixtures.fpc("main", replicas: 1)).jsonObject()
            let rv = field(created, "metadata.resourceVersion") as! String
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for n in 0..<8 {
                    group.addTask {
                        try await client.json(.PUT, main, Fixtures.fpc("main", replicas: n + 2, extra: #","resourceVersion":"\#(rv)""#))
                            .status
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == 200 }.count == 1)
            #expect(statuses.filter { $0 == 409 }.count == 7)
            #expect(field(try await client.request(.GET, main).jsonObject(), "metadata.generation") as? Int == 2)
        }
    }

    @Test func generationStatusAndScaleSubresources() async throws {
        try await withKubeSim { _, client in
            try await client.installCRD()
            _ = try await client.json(.POST, Fixtures.collection, Fixtures.fpc("main", replicas: 1, extra: #","labels":{"a":"1"}"#))
            func get() async throws -> [String: Any] { try await client.request(.GET, main).jsonObject() }
            #expect(field(try await get(), "metadata.generation") as? Int == 1)
            // Metadata-only change: no new generation.
            _ = try await client.patch(main, #"{"metadata":{"labels":{"a":"2"}}}"#, type: "application/merge-patch+json")
            #expect(field(try await get(), "metadata.generation") as? Int == 1)
            // The main endpoint ignores status; spec changes bump the generation.
            let put = try await client.json(
                .PUT, main,
                #"{"apiVersion":"fpindex.acoustid.org/v1alpha1","kind":"FpindexCluster","metadata":{"name":"main"},"spec":{"replicas":2},"status":{"replicas":9}}"#
            )
            #expect(put.status == 200)
            var object = try await get()
            #expect(field(object, "metadata.generation") as? Int == 2)
            #expect(field(object, "status") == nil)
            // /status ignores everything but status, and does not bump the generation.
            let status = try await client.json(
                .PUT, main + "/status",
                #"{"apiVersion":"fpindex.acoustid.org/v1alpha1","kind":"FpindexCluster","metadata":{"name":"main"},"spec":{"replicas":5},"status":{"replicas":2,"readyReplicas":1,"selector":"app=main"}}"#
            )
            #expect(status.status == 200)
            object = try await get()
            #expect(field(object, "spec.replicas") as? Int == 2)
            #expect(field(object, "status.readyReplicas") as? Int == 1)
            #expect(field(object, "metadata.generation") as? Int == 2)
            // Scale maps through the CRD's paths.
            let scale = try await client.request(.GET, main + "/scale").jsonObject()
            #expect(scale["kind"] as? String == "Scale")
            #expect(field(scale, "spec.replicas") as? Int == 2)
            #expect(field(scale, "status.replicas") as? Int == 2)
            #expect(field(scale, "status.selector") as? String == "app=main")
            let scaled = try await client.patch(main + "/scale", #"{"spec":{"replicas":4}}"#, type: "application/merge-patch+json")
            #expect(scaled.status == 200)
            object = try await get()
            #expect(field(object, "spec.replicas") as? Int == 4)
            #expect(field(object, "metadata.generation") as? Int == 3)
        }
    }

    @Test func patchTypes() async throws {
        try await withKubeSim { _, client in
            try await client.installCRD()
            _ = try await client.json(.POST, Fixtures.collection, Fixtures.fpc("main", replicas: 1))
            let merge = try await client.patch(main, #"{"spec":{"index":{"image":"x:1"}}}"#, type: "application/merge-patch+json")
            #expect(field(try merge.jsonObject(), "spec.index.image") as? String == "x:1")
            let json = try await client.patch(
                main, #"[{"op":"replace","path":"/spec/replicas","value":6},{"op":"add","path":"/metadata/labels","value":{"k":"v"}}]"#,
                type: "application/json-patch+json")
            #expect(field(try json.jsonObject(), "spec.replicas") as? Int == 6)
            #expect(field(try json.jsonObject(), "metadata.labels.k") as? String == "v")
            let failedTest = try await client.patch(
                main, #"[{"op":"test","path":"/spec/replicas","value":1}]"#, type: "application/json-patch+json")
            #expect(failedTest.status == 422)
            let smpOnCR = try await client.patch(main, #"{"spec":{"replicas":1}}"#, type: "application/strategic-merge-patch+json")
            #expect(smpOnCR.status == 415)
            // Strategic merge on a built-in kind merges containers by name.
            let deployment = """
                {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{"app":"d"}},
                 "template":{"metadata":{"labels":{"app":"d"}},"spec":{"containers":[{"name":"a","image":"a:1"},{"name":"b","image":"b:1"}]}}}}
                """
            #expect(try await client.json(.POST, "/apis/apps/v1/namespaces/default/deployments", deployment).status == 201)
            let smp = try await client.patch(
                "/apis/apps/v1/namespaces/default/deployments/d",
                #"{"spec":{"template":{"spec":{"containers":[{"name":"b","image":"b:2"}]}}}}"#,
                type: "application/strategic-merge-patch+json")
            let containers = field(try smp.jsonObject(), "spec.template.spec.containers") as? [[String: Any]] ?? []
            #expect(containers.map { $0["image"] as? String } == ["a:1", "b:2"])
            #expect(field(try smp.jsonObject(), "spec.replicas") as? Int == 1)
            // Server-side apply of status through /status leaves the spec alone.
            let statusApply = try await client.patch(
                main + "/status?fieldManager=operator&force=true",
                #"{"apiVersion":"fpindex.acoustid.org/v1alpha1","kind":"FpindexCluster","metadata":{"name":"main"},"spec":{"replicas":99},"status":{"replicas":6,"readyReplicas":6}}"#,
                type: "application/apply-patch+yaml")
            #expect(statusApply.status == 200)
            #expect(field(try statusApply.jsonObject(), "status.readyReplicas") as? Int == 6)
            #expect(field(try statusApply.jsonObject(), "spec.replicas") as? Int == 6)
            let statusManager = (field(try statusApply.jsonObject(), "metadata.managedFields") as? [[String: Any]] ?? []).first {
                $0["manager"] as? String == "operator"
            }
            #expect(statusManager?["subresource"] as? String == "status")
            #expect(field(statusManager, "fieldsV1.f:spec") == nil)
            // Server-side apply: conflicts between managers, force takes over, and removal of fields no longer applied.
            let apply = "application/apply-patch+yaml"
            let cm = #"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"1","b":"2"}}"#
            // An apply that creates the object answers 201 (as the real server: see the differential corpus).
            #expect(try await client.patch("/api/v1/namespaces/default/configmaps/c?fieldManager=one", cm, type: apply).status == 201)
            #expect(try await client.patch("/api/v1/namespaces/default/configmaps/c?fieldManager=one", cm, type: apply).status == 200)
            let takeOver = #"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"9"}}"#
            let conflict = try await client.patch("/api/v1/namespaces/default/configmaps/c?fieldManager=two", takeOver, type: apply)
            #expect(conflict.status == 409)
            #expect((field(try conflict.jsonObject(), "details.causes.0.field") as? String) == ".data.a")
            #expect(
                try await client.patch("/api/v1/namespaces/default/configmaps/c?fieldManager=two&force=true", takeOver, type: apply).status
                    == 200)
            let shrink = #"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{}}"#
            let shrunk = try await client.patch("/api/v1/namespaces/default/configmaps/c?fieldManager=one", shrink, type: apply)
            #expect(field(try shrunk.jsonObject(), "data") as? [String: String] == ["a": "9"])
            let managers = (field(try shrunk.jsonObject(), "metadata.managedFields") as? [[String: Any]] ?? []).compactMap {
                $0["manager"] as? String
            }
            #expect(managers.contains("two"))
        }
    }

    @Test func selectorsAndPagination() async throws {
        try await withKubeSim { server, client in
            for (n, tier) in ["a", "b", "a", "c", "b"].enumerated() {
                let cm =
                    #"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm\#(n)","labels":{"tier":"\#(tier)"\#(n == 0 ? #","special":"yes""# : "")}}}"#
                #expect(try await client.json(.POST, "/api/v1/namespaces/default/configmaps", cm).status == 201)
            }
            func names(_ query: String) async throws -> [String] {
                let list = try await client.request(.GET, "/api/v1/namespaces/default/configmaps?" + query).jsonObject()
                return (list["items"] as? [[String: Any]] ?? []).compactMap { field($0, "metadata.name") as? String }
            }
            #expect(try await names("labelSelector=tier%3Da") == ["cm0", "cm2"])
            #expect(try await names("labelSelector=tier!%3Da") == ["cm1", "cm3", "cm4"])
            #expect(try await names("labelSelector=tier+in+(b,c)") == ["cm1", "cm3", "cm4"])
            #expect(try await names("labelSelector=tier+notin+(b,c)") == ["cm0", "cm2"])
            #expect(try await names("labelSelector=special") == ["cm0"])
            #expect(try await names("labelSelector=!special") == ["cm1", "cm2", "cm3", "cm4"])
            #expect(try await names("fieldSelector=metadata.name%3Dcm3") == ["cm3"])
            #expect(try await names("fieldSelector=metadata.name!%3Dcm3,metadata.namespace%3Ddefault").count == 4)
            let list = try await client.request(.GET, "/api/v1/namespaces/default/configmaps").jsonObject()
            #expect(list["kind"] as? String == "ConfigMapList")
            let metadataOnly = try await client.request(
                .GET, "/api/v1/namespaces/default/configmaps?labelSelector=special",
                headers: [("Accept", "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json")]
            ).jsonObject()
            #expect(metadataOnly["kind"] as? String == "PartialObjectMetadataList")
            #expect(field(metadataOnly, "items.0.metadata.labels.special") as? String == "yes")
            // Pagination.
            var seen: [String] = []
            var token = ""
            var pages = 0
            repeat {
                let page = try await client.request(
                    .GET, "/api/v1/namespaces/default/configmaps?limit=2" + (token.isEmpty ? "" : "&continue=\(token)")
                ).jsonObject()
                seen += (page["items"] as? [[String: Any]] ?? []).compactMap { field($0, "metadata.name") as? String }
                token =
                    (field(page, "metadata.continue") as? String ?? "").addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
                pages += 1
            } while !token.isEmpty && pages < 10
            #expect(pages == 3)
            #expect(seen == ["cm0", "cm1", "cm2", "cm3", "cm4"])
            // A continue token from before the retained history is 410 Expired.
            let first = try await client.request(.GET, "/api/v1/namespaces/default/configmaps?limit=2").jsonObject()
            let stale =
                (field(first, "metadata.continue") as? String ?? "").addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
            _ = try await client.json(.POST, "/api/v1/namespaces/default/configmaps", #"{"metadata":{"name":"later"}}"#)
            server.faults.expireResourceVersions()
            let expired = try await client.request(.GET, "/api/v1/namespaces/default/configmaps?limit=2&continue=\(stale)")
            #expect(expired.status == 410)
        }
    }

    @Test func watchEventsBookmarksAndExpiry() async throws {
        try await withKubeSim(KubeSimConfiguration(watchHistory: 4, bookmarkInterval: .milliseconds(200))) { server, client in
            try await client.installCRD()
            let created = try await client.json(.POST, Fixtures.collection, Fixtures.fpc("main", replicas: 1)).jsonObject()
            let rv = field(created, "metadata.resourceVersion") as! String
            _ = try await client.patch(main, #"{"spec":{"replicas":2}}"#, type: "application/merge-patch+json")
            let deleted = try await client.request(.DELETE, main)
            #expect(try deleted.jsonObject()["kind"] as? String == "FpindexCluster")
            // Resume from the create: the modification and deletion follow, then bookmarks.
            let events = try await client.watch(
                Fixtures.collection + "?watch=true&resourceVersion=\(rv)&allowWatchBookmarks=true&timeoutSeconds=10"
            ) {
                $0.contains { $0["type"] as? String == "BOOKMARK" }
            }
            #expect(events.compactMap { $0["type"] as? String }.prefix(3) == ["MODIFIED", "DELETED", "BOOKMARK"])
            let bookmark = events.first { $0["type"] as? String == "BOOKMARK" }
            #expect(field(bookmark, "object.kind") as? String == "FpindexCluster")
            #expect(Int(field(bookmark, "object.metadata.resourceVersion") as? String ?? "") ?? 0 > Int(rv)!)
            // Without a resourceVersion: current objects as ADDED.
            _ = try await client.json(.POST, Fixtures.collection, Fixtures.fpc("other", replicas: 1))
            let initial = try await client.watch(Fixtures.collection + "?watch=true&timeoutSeconds=1") { !$0.isEmpty }
            #expect(initial.first?["type"] as? String == "ADDED")
            #expect(field(initial.first, "object.metadata.name") as? String == "other")
            // Streaming lists: the initial state, then a bookmark marking its end.
            let streamed = try await client.watch(
                Fixtures.collection
                    + "?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=5"
            ) { $0.contains { $0["type"] as? String == "BOOKMARK" } }
            #expect(streamed.compactMap { $0["type"] as? String }.prefix(2) == ["ADDED", "BOOKMARK"])
            #expect(field(streamed.dropFirst().first, "object.metadata.annotations.k8s.io/initial-events-end") == nil)
            let end = (field(streamed.dropFirst().first, "object.metadata.annotations") as? [String: String])?["k8s.io/initial-events-end"]
            #expect(end == "true")
            // Older than the retained history (4 events): 410 Expired.
            for n in 0..<6 { _ = try await client.json(.POST, "/api/v1/namespaces/default/configmaps", #"{"metadata":{"name":"x\#(n)"}}"#) }
            _ = try await client.patch(Fixtures.collection + "/other", #"{"spec":{"replicas":3}}"#, type: "application/merge-patch+json")
            let expired = try await client.request(.GET, Fixtures.collection + "?watch=true&resourceVersion=\(rv)")
            #expect(expired.status == 200)
            let error = try expired.jsonObject()
            #expect(error["type"] as? String == "ERROR")
            #expect(field(error, "object.code") as? Int == 410)
            #expect(field(error, "object.reason") as? String == "Expired")
            // The fault: expire everything older than now.
            let now = try await client.request(.GET, Fixtures.collection).jsonObject()
            let listRV = field(now, "metadata.resourceVersion") as! String
            _ = try await client.patch(Fixtures.collection + "/other", #"{"spec":{"replicas":4}}"#, type: "application/merge-patch+json")
            let resumed = try await client.watch(Fixtures.collection + "?watch=true&resourceVersion=\(listRV)&timeoutSeconds=5") {
                !$0.isEmpty
            }
            #expect(resumed.first?["type"] as? String == "MODIFIED")
            server.faults.expireResourceVersions()
            let forced = try await client.request(.GET, Fixtures.collection + "?watch=true&resourceVersion=\(listRV)")
            #expect(field(try forced.jsonObject(), "object.code") as? Int == 410)
        }
    }

    @Test func watchWithSelectorAndTable() async throws {
        try await withKubeSim { _, client in
            try await client.installCRD()
            _ = try await client.json(.POST, Fixtures.collection, Fixtures.fpc("main", replicas: 1, extra: #","labels":{"app":"x"}"#))
            let rv = field(try await client.request(.GET, Fixtures.collection).jsonObject(), "metadata.resourceVersion") as! String
            // Leaving the selector reads as DELETED.
            _ = try await client.patch(main, #"{"metadata":{"labels":{"app":"y"}}}"#, type: "application/merge-patch+json")
            let events = try await client.watch(
                Fixtures.collection + "?watch=true&labelSelector=app%3Dx&resourceVersion=\(rv)&timeoutSeconds=5"
            ) { !$0.isEmpty }
            #expect(events.first?["type"] as? String == "DELETED")
            // Table output with printer columns, list and watch.
            _ = try await client.patch(
                main + "/status",
                #"{"status":{"readyReplicas":1,"maxLag":7,"conditions":[{"type":"Other","reason":"No"},{"type":"Ready","reason":"CaughtUp"}]}}"#,
                type: "application/merge-patch+json")
            let tableAccept = [("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")]
            let table = try await client.request(.GET, Fixtures.collection, headers: tableAccept)
            #expect(table.contentType?.hasPrefix("application/json;as=Table") == true)
            let object = try table.jsonObject()
            #expect(object["kind"] as? String == "Table")
            let columns = (object["columnDefinitions"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
            #expect(columns == ["Name", "READY", "REPLICAS", "MAX-LAG", "STATUS", "AGE", "IMAGE"])
            let cells = field(object, "rows.0.cells") as? [Any] ?? []
            #expect(cells.count == 7)
            #expect(cells[0] as? String == "main")
            #expect(cells[1] as? Int == 1)
            #expect(cells[3] as? Int == 7)
            #expect(cells[4] as? String == "CaughtUp")
            #expect((cells[5] as? String)?.hasSuffix("s") == true)
            #expect(field(object, "rows.0.object.kind") as? String == "PartialObjectMetadata")
            let watched = try await client.request(.GET, Fixtures.collection + "?watch=true&timeoutSeconds=1", headers: tableAccept)
            #expect(watched.text.contains("\"kind\":\"Table\""))
            #expect(watched.text.contains("CaughtUp"))
        }
    }

    @Test func garbageCollectionAndNamespaceDeletion() async throws {
        try await withKubeSim { _, client in
            func createOwner(_ name: String) async throws -> String {
                let reply = try await client.json(.POST, "/api/v1/namespaces/default/configmaps", #"{"metadata":{"name":"\#(name)"}}"#)
                return field(try reply.jsonObject(), "metadata.uid") as! String
            }
            func createChild(_ name: String, owner: String, uid: String) async throws {
                let body = """
                    {"metadata":{"name":"\(name)","ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap","name":"\(owner)","uid":"\(uid)","blockOwnerDeletion":true}]}}
                    """
                #expect(try await client.json(.POST, "/api/v1/namespaces/default/secrets", body).status == 201)
            }
            func exists(_ path: String) async throws -> Bool { try await client.request(.GET, path).status == 200 }
            // Background.
            let bg = try await createOwner("bg")
            try await createChild("bg-child", owner: "bg", uid: bg)
            let deleted = try await client.request(.DELETE, "/api/v1/namespaces/default/configmaps/bg")
            #expect(deleted.status == 200)
            #expect(try deleted.jsonObject()["status"] as? String == "Success")
            #expect(field(try deleted.jsonObject(), "details.uid") as? String == bg)
            #expect(try await exists("/api/v1/namespaces/default/secrets/bg-child") == false)
            // A dependent whose owner does not exist is collected.
            try await createChild("dangling", owner: "nobody", uid: "00000000-0000-0000-0000-000000000000")
            #expect(try await exists("/api/v1/namespaces/default/secrets/dangling") == false)
            // Orphan.
            let orphan = try await createOwner("orphan")
            try await createChild("orphan-child", owner: "orphan", uid: orphan)
            _ = try await client.request(.DELETE, "/api/v1/namespaces/default/configmaps/orphan?propagationPolicy=Orphan")
            #expect(try await exists("/api/v1/namespaces/default/configmaps/orphan") == false)
            let kept = try await client.request(.GET, "/api/v1/namespaces/default/secrets/orphan-child").jsonObject()
            #expect(field(kept, "metadata.ownerReferences") == nil)
            // Foreground: the owner waits for a child held by a finalizer.
            let fg = try await createOwner("fg")
            try await createChild("fg-child", owner: "fg", uid: fg)
            _ = try await client.patch(
                "/api/v1/namespaces/default/secrets/fg-child", #"{"metadata":{"finalizers":["test/hold"]}}"#,
                type: "application/merge-patch+json")
            _ = try await client.request(.DELETE, "/api/v1/namespaces/default/configmaps/fg?propagationPolicy=Foreground")
            let waiting = try await client.request(.GET, "/api/v1/namespaces/default/configmaps/fg").jsonObject()
            #expect((field(waiting, "metadata.finalizers") as? [String])?.contains("foregroundDeletion") == true)
            #expect(field(waiting, "metadata.deletionTimestamp") is String)
            let child = try await client.request(.GET, "/api/v1/namespaces/default/secrets/fg-child").jsonObject()
            #expect(field(child, "metadata.deletionTimestamp") is String)
            _ = try await client.patch(
                "/api/v1/namespaces/default/secrets/fg-child", #"[{"op":"remove","path":"/metadata/finalizers"}]"#,
                type: "application/json-patch+json")
            #expect(try await exists("/api/v1/namespaces/default/secrets/fg-child") == false)
            #expect(try await exists("/api/v1/namespaces/default/configmaps/fg") == false)
            // Namespace deletion: contents go, a finalizer holds the namespace in Terminating.
            #expect(try await client.json(.POST, "/api/v1/namespaces", #"{"metadata":{"name":"team"}}"#).status == 201)
            #expect(try await client.json(.POST, "/api/v1/namespaces/team/configmaps", #"{"metadata":{"name":"a"}}"#).status == 201)
            #expect(
                try await client.json(
                    .POST, "/api/v1/namespaces/team/configmaps", #"{"metadata":{"name":"held","finalizers":["test/hold"]}}"#
                )
                .status == 201)
            #expect(try await client.request(.DELETE, "/api/v1/namespaces/team").status == 200)
            #expect(try await exists("/api/v1/namespaces/team/configmaps/a") == false)
            let terminating = try await client.request(.GET, "/api/v1/namespaces/team").jsonObject()
            #expect(field(terminating, "status.phase") as? String == "Terminating")
            let refused = try await client.json(.POST, "/api/v1/namespaces/team/configmaps", #"{"metadata":{"name":"b"}}"#)
            #expect(refused.status == 403)
            _ = try await client.patch(
                "/api/v1/namespaces/team/configmaps/held", #"{"metadata":{"finalizers":null}}"#,
                type: "application/merge-patch+json")
            #expect(try await exists("/api/v1/namespaces/team") == false)
            #expect(try await client.json(.POST, "/api/v1/namespaces/gone/configmaps", #"{"metadata":{"name":"b"}}"#).status == 404)
            #expect(try await client.request(.DELETE, "/api/v1/namespaces/default").status == 403)
        }
    }

    @Test func validationErrorsHaveCauses() async throws {
        try await withKubeSim { _, client in
            try await client.installCRD()
            let negative = try await client.json(.POST, Fixtures.collection, Fixtures.fpc("bad", replicas: -1))
            #expect(negative.status == 422)
            let status = try negative.jsonObject()
            #expect(status["reason"] as? String == "Invalid")
            #expect(field(status, "details.kind") as? String == "FpindexCluster")
            #expect(field(status, "details.causes.0.field") as? String == "spec.replicas")
            #expect(field(status, "details.causes.0.reason") as? String == "FieldValueInvalid")
            let missing = try await client.json(
                .POST, Fixtures.collection,
                #"{"apiVersion":"fpindex.acoustid.org/v1alpha1","kind":"FpindexCluster","metadata":{"name":"bad"},"spec":{}}"#)
            #expect(missing.status == 422)
            #expect(field(try missing.jsonObject(), "details.causes.0.reason") as? String == "FieldValueRequired")
            #expect(field(try missing.jsonObject(), "details.causes.0.field") as? String == "spec.replicas")
            let badName = try await client.json(.POST, "/api/v1/namespaces/default/configmaps", #"{"metadata":{"name":"Not_Valid"}}"#)
            #expect(badName.status == 422)
            #expect(field(try badName.jsonObject(), "details.causes.0.field") as? String == "metadata.name")
            // Unknown fields are pruned; defaults fill in.
            let pruned = try await client.json(
                .POST, Fixtures.collection,
                #"{"apiVersion":"fpindex.acoustid.org/v1alpha1","kind":"FpindexCluster","metadata":{"name":"ok"},"spec":{"replicas":1,"index":{},"bogus":1}}"#
            )
            #expect(pruned.status == 201)
            #expect(pruned.headers.first(name: "Warning") == #"299 - "unknown field \"spec.bogus\"""#)
            let strict = try await client.json(
                .POST, Fixtures.collection + "?fieldValidation=Strict",
                #"{"apiVersion":"fpindex.acoustid.org/v1alpha1","kind":"FpindexCluster","metadata":{"name":"strict"},"spec":{"replicas":1,"bogus":1}}"#
            )
            #expect(strict.status == 400)
            #expect(strict.text.contains(#"unknown field \"spec.bogus\""#))
            #expect(field(try pruned.jsonObject(), "spec.bogus") == nil)
            #expect(field(try pruned.jsonObject(), "spec.index.image") as? String == "ghcr.io/acoustid/acoustid-index:main")
        }
    }

    @Test func startFailsOnABusyPort() async throws {
        try await withKubeSim { server, _ in
            await #expect(throws: (any Error).self) {
                let second = try await KubeSimServer.start(configuration: KubeSimConfiguration(port: server.port), logger: quietLogger)
                await second.shutdown()
            }
        }
    }

    @Test func bearerTokenAuthentication() async throws {
        try await withKubeSim(KubeSimConfiguration(tokens: ["t0ken"])) { server, client in
            let denied = try await client.request(.GET, "/api/v1/namespaces")
            #expect(denied.status == 401)
            #expect(try denied.jsonObject()["reason"] as? String == "Unauthorized")
            #expect(try await client.request(.GET, "/api/v1/namespaces", headers: [("Authorization", "Bearer nope")]).status == 401)
            let allowed = try await client.request(.GET, "/api/v1/namespaces", headers: [("Authorization", "Bearer t0ken")])
            #expect(allowed.status == 200)
            #expect(server.kubeconfig(token: "t0ken", namespace: "ns1").contains("token: \"t0ken\""))
        }
    }

    @Test func faultInjection() async throws {
        try await withKubeSim { server, client in
            server.faults.failNext(2, method: "GET", pathContains: "/configmaps", status: 429, retryAfterSeconds: 3)
            let first = try await client.request(.GET, "/api/v1/namespaces/default/configmaps")
            #expect(first.status == 429)
            #expect(first.headers.first(name: "Retry-After") == "3")
            #expect(try first.jsonObject()["reason"] as? String == "TooManyRequests")
            #expect(try await client.request(.GET, "/api/v1/namespaces").status == 200)
            #expect(try await client.request(.GET, "/api/v1/namespaces/default/configmaps").status == 429)
            #expect(try await client.request(.GET, "/api/v1/namespaces/default/configmaps").status == 200)
            // Through the admin endpoint, by regular expression.
            let admin = try await client.json(.POST, "/kubesim/faults/fail", #"{"count":1,"pathPattern":"secrets/[a-z]+$","status":503}"#)
            #expect(admin.status == 200)
            #expect(try await client.request(.GET, "/api/v1/namespaces/default/secrets").status == 200)
            #expect(try await client.request(.GET, "/api/v1/namespaces/default/secrets/abc").status == 503)
            // Latency.
            server.faults.setLatency(.milliseconds(300))
            let start = ContinuousClock.now
            _ = try await client.request(.GET, "/api/v1/namespaces")
            #expect(ContinuousClock.now - start >= .milliseconds(300))
            _ = try await client.request(.DELETE, "/kubesim/faults")
            // Closing watches ends an open stream.
            let watching = Task { try await client.watch("/api/v1/namespaces?watch=true&timeoutSeconds=30") { _ in false }.count }
            try await eventually(timeout: .seconds(10), "a watch to open") { server.faults.openWatches > 0 ? true : nil }
            _ = try await client.request(.POST, "/kubesim/faults/close-watches")
            let seen = try await watching.value
            #expect(seen == 4)  // the four initial namespaces, then the stream ended early
            #expect(server.faults.openWatches == 0)
        }
    }

    @Test func tlsWithGeneratedCA() async throws {
        try await withKubeSim(KubeSimConfiguration(tokens: ["t"], tls: true)) { server, _ in
            #expect(server.url.hasPrefix("https://127.0.0.1:"))
            let pem = try #require(server.caCertificatePEM)
            #expect(server.kubeconfig(token: "t", namespace: nil).contains("certificate-authority-data: "))
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)))
            let httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
            let client = TestHTTPClient(baseURL: server.url, client: httpClient)
            do {
                let reply = try await client.request(.GET, "/api/v1/namespaces/default", headers: [("Authorization", "Bearer t")])
                #expect(reply.status == 200)
                #expect(try reply.jsonObject()["kind"] as? String == "Namespace")
                // An untrusting client fails the handshake.
                await #expect(throws: (any Error).self) {
                    _ = try await TestHTTPClient(baseURL: server.url).request(.GET, "/healthz", timeout: .seconds(3))
                }
            } catch {
                try await httpClient.shutdown()
                throw error
            }
            try await httpClient.shutdown()
        }
    }
}
