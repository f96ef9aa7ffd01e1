import Foundation
import KubeSim
import TestSupport
import Testing

/// Reads and status writes through the API (what a pod runner or kubelet would do).
struct WorkloadAPI {
    let client: TestHTTPClient
    static let pods = "/api/v1/namespaces/default/pods"
    static let claims = "/api/v1/namespaces/default/persistentvolumeclaims"
    static let replicaSets = "/apis/apps/v1/namespaces/default/replicasets"

    func object(_ path: String) async throws -> [String: Any]? {
        let reply = try await client.json(.GET, path)
        return reply.status == 200 ? try reply.jsonObject() : nil
    }

    func items(_ path: String) async throws -> [[String: Any]] {
        let reply = try await client.json(.GET, path)
        guard reply.status == 200 else { throw TestFailure("GET \(path): \(reply.status) \(reply.text)") }
        return (field(try reply.jsonObject(), "items") as? [[String: Any]] ?? []).sorted {
            (field($0, "metadata.name") as? String ?? "") < (field($1, "metadata.name") as? String ?? "")
        }
    }

    func podNames(_ selector: String) async throws -> [String] {
        try await items(Self.pods + "?labelSelector=" + selector).compactMap { field($0, "metadata.name") as? String }
    }

    /// The items and the list's resourceVersion, as ADDED events (a watcher's starting state).
    func snapshot(_ path: String) async throws -> (events: [[String: Any]], resourceVersion: String) {
        let list = try await client.json(.GET, path).jsonObject()
        let items = field(list, "items") as? [[String: Any]] ?? []
        return (items.map { ["type": "ADDED", "object": $0] }, field(list, "metadata.resourceVersion") as? String ?? "0")
    }

    func resourceVersion(_ path: String) async throws -> String {
        field(try await client.json(.GET, path).jsonObject(), "metadata.resourceVersion") as? String ?? "0"
    }

    /// Marks a pod Running and Ready through the status subresource (the kubelet's part).
    func markReady(_ name: String) async throws {
        let body = #"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}],"podIP":"10.1.0.1"}}"#
        let reply = try await client.patch(Self.pods + "/\(name)/status", body, type: "application/merge-patch+json")
        guard reply.status == 200 else { throw TestFailure("mark \(name) ready: \(reply.status) \(reply.text)") }
    }

    /// The ready pods among `events` replayed in order (name -> ready), as a watcher sees them.
    static func replay(_ events: [[String: Any]]) -> [String: (ready: Bool, hash: String)] {
        var state: [String: (ready: Bool, hash: String)] = [:]
        for event in events {
            let object = event["object"]
            guard let name = field(object, "metadata.name") as? String else { continue }
            if event["type"] as? String == "DELETED" {
                state[name] = nil
                continue
            }
            let conditions = field(object, "status.conditions") as? [[String: Any]] ?? []
            let ready =
                field(object, "status.phase") as? String == "Running"
                && conditions.contains { $0["type"] as? String == "Ready" && $0["status"] as? String == "True" }
            state[name] = (ready, field(object, "metadata.labels.pod-template-hash") as? String ?? "")
        }
        return state
    }
}

/// The Deployment, ReplicaSet and StatefulSet controllers, driven by kubectl.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct WorkloadTests {
    func withCluster(
        readiness: PodReadiness, _ body: (KubeSimServer, Kubectl, WorkloadAPI, String) async throws -> Void
    ) async throws {
        let volumes = try TemporaryDirectory.make(prefix: "volumes")
        defer { TemporaryDirectory.remove(volumes) }
        try await withKubeSim(KubeSimConfiguration(podReadiness: readiness, volumeRoot: volumes)) { server, client in
            let kubectl = try Kubectl(kubeconfig: server.kubeconfig(token: nil, namespace: "default"))
            defer { kubectl.cleanup() }
            try await body(server, kubectl, WorkloadAPI(client: client), volumes)
        }
    }

    static func deployment(image: String, replicas: Int = 3) -> String {
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          replicas: \(replicas)
          selector: {matchLabels: {app: web}}
          strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}
          template:
            metadata: {labels: {app: web}}
            spec:
              containers:
              - {name: web, image: "\(image)"}

        """
    }

    @Test func deploymentRollsOutScalesAndIsCollected() async throws {
        try await withCluster(readiness: .immediate) { _, kubectl, api, _ in
            let watch = try kubectl.start("get", "pods", "-w", "-l", "app=web")
            defer { watch.stop() }
            try await kubectl.ok("apply", "-f", kubectl.file("web.yaml", Self.deployment(image: "web:1")))
            let rollout = try await kubectl.run("rollout", "status", "deployment/web", "--timeout=30s")
            #expect(rollout.status == 0, "\(rollout.output)")
            #expect(rollout.stdout.contains("successfully rolled out"))

            let sets = try await api.items(WorkloadAPI.replicaSets)
            #expect(sets.count == 1)
            let rs = try #require(sets.first)
            let hash = try #require(field(rs, "metadata.labels.pod-template-hash") as? String)
            #expect(field(rs, "metadata.name") as? String == "web-\(hash)")
            #expect(field(rs, "metadata.ownerReferences.0.kind") as? String == "Deployment")
            #expect(field(rs, "metadata.ownerReferences.0.controller") as? Bool == true)
            let pods = try await api.items(WorkloadAPI.pods + "?labelSelector=app%3Dweb")
            #expect(pods.count == 3)
            for pod in pods {
                #expect(field(pod, "metadata.labels.pod-template-hash") as? String == hash)
                #expect(field(pod, "metadata.ownerReferences.0.uid") as? String == field(rs, "metadata.uid") as? String)
                #expect(field(pod, "metadata.ownerReferences.0.controller") as? Bool == true)
                #expect((field(pod, "status.podIP") as? String ?? "").hasPrefix("10."))
                #expect((field(pod, "metadata.name") as? String ?? "").hasPrefix("web-\(hash)-"))
            }
            let row = try await kubectl.ok("get", "deploy", "web", "--no-headers").split(separator: " ", omittingEmptySubsequences: true)
            #expect(Array(row.prefix(4)) == ["web", "3/3", "3", "3"])
            try await eventually(timeout: .seconds(10), "kubectl get rs to show 3 ready") {
                let row = try await kubectl.ok("get", "rs", "--no-headers").split(separator: " ", omittingEmptySubsequences: true)
                return Array(row.prefix(4)) == ["web-\(hash)", "3", "3", "3"] ? true : nil
            }
            let wide = try await kubectl.ok("get", "deploy", "web", "-o", "wide").split(separator: "\n")
            let wideHeader = (wide.first ?? "").split(separator: " ", omittingEmptySubsequences: true).suffix(3).joined(separator: " ")
            let wideRow = (wide.last ?? "").split(separator: " ", omittingEmptySubsequences: true).suffix(3).joined(separator: " ")
            #expect(wideHeader + " / " + wideRow == "CONTAINERS IMAGES SELECTOR / web web:1 app=web")
            try await eventually(timeout: .seconds(10), "kubectl get pods -w to show the pods\n\(watch.stdout)") {
                watch.stdout.split(separator: "\n").filter { $0.hasPrefix("web-\(hash)-") }.count >= 3 ? true : nil
            }

            // A new image: a new ReplicaSet; availability never below replicas - maxUnavailable.
            let (initial, from) = try await api.snapshot(WorkloadAPI.pods + "?labelSelector=app%3Dweb")
            #expect(WorkloadAPI.replay(initial).values.filter(\.ready).count == 3)
            try await kubectl.ok("set", "image", "deployment/web", "web=web:2")
            let events =
                try await initial
                + api.client.watch(
                    WorkloadAPI.pods + "?watch=true&labelSelector=app%3Dweb&timeoutSeconds=20&resourceVersion=\(from)"
                ) { events in
                    let state = WorkloadAPI.replay(initial + events)
                    return state.count == 3 && state.values.allSatisfy { $0.ready && $0.hash != hash }
                }
            var minimum = Int.max
            for end in initial.count...events.count {
                minimum = min(minimum, WorkloadAPI.replay(Array(events.prefix(end))).values.filter(\.ready).count)
            }
            let trace = events.map {
                "\($0["type"] ?? "") \(field($0["object"], "metadata.name") ?? "") \(field($0["object"], "status.phase") ?? "")"
            }
            #expect(minimum >= 2, "availability dropped to \(minimum): \(trace)")
            #expect(WorkloadAPI.replay(events).count == 3, "the rollout did not finish: \(events.count) events")
            let second = try await kubectl.run("rollout", "status", "deployment/web", "--timeout=30s")
            #expect(second.status == 0, "\(second.output)")
            let all = try await api.items(WorkloadAPI.replicaSets)
            #expect(all.count == 2)
            #expect(all.map { field($0, "spec.replicas") as? Int }.sorted { ($0 ?? 0) < ($1 ?? 0) } == [0, 3])
            #expect(
                try await kubectl.ok("get", "deploy", "web", "-o", "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}")
                    == "2")

            try await kubectl.ok("scale", "deploy/web", "--replicas=5")
            try await eventually(timeout: .seconds(20), "5 available replicas") {
                let status = try await kubectl.ok(
                    "get", "deploy", "web", "-o",
                    "jsonpath={.status.availableReplicas} {.status.updatedReplicas} {.status.observedGeneration}")
                return status == "5 5 3" ? true : nil
            }
            let describedDeployment = try await kubectl.ok("describe", "deployment", "web")
            #expect(describedDeployment.contains("ScalingReplicaSet"))
            #expect(describedDeployment.contains("Scaled up replica set web-"))
            let conditions = try await kubectl.ok(
                "get", "deploy", "web", "-o", "jsonpath={range .status.conditions[*]}{.type}={.status}/{.reason} {end}")
            #expect(conditions.contains("Available=True/MinimumReplicasAvailable"))
            #expect(conditions.contains("Progressing=True/NewReplicaSetAvailable"))

            // .immediate makes any new pod Ready, also one a client creates.
            try await kubectl.ok("run", "bare", "--image=bare:1", "--restart=Never")
            try await eventually(timeout: .seconds(10), "the bare pod to be Ready") {
                try await kubectl.ok("get", "pod", "bare", "-o", "jsonpath={.status.phase} {.status.containerStatuses[0].ready}")
                    == "Running true" ? true : nil
            }
            try await kubectl.ok("delete", "pod", "bare")
            // Undo: back to the first ReplicaSet (revision 3), no third one.
            try await kubectl.ok("rollout", "undo", "deployment/web")
            #expect(try await kubectl.run("rollout", "status", "deployment/web", "--timeout=30s").status == 0)
            try await eventually(timeout: .seconds(10), "the first ReplicaSet to be back") {
                let sets = try await api.items(WorkloadAPI.replicaSets)
                let back = sets.first { field($0, "metadata.name") as? String == "web-\(hash)" }
                let revision = (field(back, "metadata.annotations") as? [String: String])?["deployment.kubernetes.io/revision"]
                return sets.count == 2 && field(back, "spec.replicas") as? Int == 5 && revision == "3" ? true : nil
            }
            try await kubectl.ok("delete", "deployment", "web")
            try await eventually(timeout: .seconds(20), "the ReplicaSets and pods to be collected") {
                let left = try await api.items(WorkloadAPI.replicaSets).count + api.items(WorkloadAPI.pods).count
                return left == 0 ? true : nil
            }
        }
    }

    /// With pods that never become Ready, a rollout stops at maxSurge/maxUnavailable.
    @Test func deploymentRolloutWaitsForReadiness() async throws {
        try await withCluster(readiness: .manual) { _, kubectl, api, _ in
            try await kubectl.ok("apply", "-f", kubectl.file("web.yaml", Self.deployment(image: "web:1")))
            let first = try await eventually(timeout: .seconds(10), "3 pods") {
                let names = try await api.podNames("app%3Dweb")
                return names.count == 3 ? names : nil
            }
            for name in first { try await api.markReady(name) }
            try await eventually(timeout: .seconds(10), "3 available") {
                try await kubectl.ok("get", "deploy", "web", "-o", "jsonpath={.status.availableReplicas}") == "3" ? true : nil
            }
            try await kubectl.ok("set", "image", "deployment/web", "web=web:2")
            // maxSurge 1 + maxUnavailable 1: 2 new pods (not ready) and 2 ready old ones, then it waits.
            try await eventually(timeout: .seconds(10), "the rollout to reach its limits") {
                let pods = try await api.items(WorkloadAPI.pods)
                let old = pods.filter { first.contains(field($0, "metadata.name") as? String ?? "") }
                return pods.count == 4 && old.count == 2 ? true : nil
            }
            let status = try await kubectl.ok(
                "get", "deploy", "web", "-o", "jsonpath={.status.availableReplicas} {.status.updatedReplicas} {.status.replicas}")
            let atLimits = status == "2 2 4"
            #expect(atLimits, "available, updated, replicas: \(status)")
            // Readiness of the new pods lets it finish.
            try await eventually(timeout: .seconds(20), "the rollout to finish") {
                let pods = try await api.items(WorkloadAPI.pods)
                for pod in pods where field(pod, "status.phase") as? String != "Running" {
                    try await api.markReady(field(pod, "metadata.name") as? String ?? "")
                }
                let names = Set(pods.compactMap { field($0, "metadata.name") as? String })
                let done =
                    pods.count == 3 && names.isDisjoint(with: first)
                    && pods.allSatisfy { field($0, "status.phase") as? String == "Running" }
                return done ? true : nil
            }
            #expect(try await kubectl.run("rollout", "status", "deployment/web", "--timeout=20s").status == 0)
        }
    }

    @Test func recreateDeploymentAndForegroundDeletion() async throws {
        try await withCluster(readiness: .immediate) { _, kubectl, api, _ in
            let spec = Self.deployment(image: "web:1").replacingOccurrences(
                of: "{type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}",
                with: "{type: Recreate}\n  revisionHistoryLimit: 0")
            try await kubectl.ok("apply", "-f", kubectl.file("web.yaml", spec))
            #expect(try await kubectl.run("rollout", "status", "deployment/web", "--timeout=30s").status == 0)
            let (initial, from) = try await api.snapshot(WorkloadAPI.pods + "?labelSelector=app%3Dweb")
            let oldHash = try #require(WorkloadAPI.replay(initial).values.first?.hash)
            try await kubectl.ok("apply", "-f", kubectl.file("web2.yaml", spec.replacingOccurrences(of: "web:1", with: "web:2")))
            let events =
                try await initial
                + api.client.watch(WorkloadAPI.pods + "?watch=true&labelSelector=app%3Dweb&timeoutSeconds=20&resourceVersion=\(from)") {
                    let state = WorkloadAPI.replay(initial + $0)
                    return state.count == 3 && state.values.allSatisfy { $0.ready && $0.hash != oldHash }
                }
            // Recreate: every old pod is gone before the first new one is created.
            var mixed = false
            for end in initial.count...events.count {
                let hashes = Set(WorkloadAPI.replay(Array(events.prefix(end))).values.map(\.hash))
                if hashes.count > 1 { mixed = true }
            }
            #expect(!mixed)
            #expect(WorkloadAPI.replay(events).count == 3)
            // revisionHistoryLimit 0: the old ReplicaSet goes once it is empty.
            try await eventually(timeout: .seconds(10), "the old ReplicaSet to be deleted") {
                try await api.items(WorkloadAPI.replicaSets).count == 1 ? true : nil
            }
            try await kubectl.ok("delete", "deployment", "web", "--cascade=foreground")
            try await eventually(timeout: .seconds(20), "everything to be collected") {
                let left =
                    try await api.items(WorkloadAPI.replicaSets).count + api.items(WorkloadAPI.pods).count
                    + (api.object("/apis/apps/v1/namespaces/default/deployments/web") == nil ? 0 : 1)
                return left == 0 ? true : nil
            }
        }
    }

    static func statefulSet(
        replicas: Int, image: String, policy: String = "OrderedReady", strategy: String = "type: RollingUpdate",
        whenScaled: String = "Retain", whenDeleted: String = "Retain"
    ) -> String {
        """
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: db}
        spec:
          replicas: \(replicas)
          serviceName: db
          podManagementPolicy: \(policy)
          updateStrategy: {\(strategy)}
          persistentVolumeClaimRetentionPolicy: {whenScaled: \(whenScaled), whenDeleted: \(whenDeleted)}
          selector: {matchLabels: {app: db}}
          template:
            metadata: {labels: {app: db}}
            spec:
              containers:
              - {name: db, image: "\(image)"}
          volumeClaimTemplates:
          - metadata: {name: data}
            spec:
              accessModes: [ReadWriteOnce]
              resources: {requests: {storage: 1Gi}}

        """
    }

    @Test func statefulSetOrderedReadyRollingUpdateAndScaleDown() async throws {
        try await withCluster(readiness: .manual) { _, kubectl, api, volumes in
            try await kubectl.ok(
                "apply", "-f", kubectl.file("db.yaml", Self.statefulSet(replicas: 3, image: "db:1", whenScaled: "Delete")))
            // Ordinal n only after n-1 is Ready.
            for ordinal in 0..<3 {
                try await eventually(timeout: .seconds(10), "db-\(ordinal) to be created") {
                    try await api.podNames("app%3Ddb") == (0...ordinal).map { "db-\($0)" } ? true : nil
                }
                // A full pass has seen the new pod unready: still no next ordinal.
                try await eventually(timeout: .seconds(10), "the status to count db-\(ordinal)") {
                    try await kubectl.ok("get", "sts", "db", "-o", "jsonpath={.status.replicas}") == "\(ordinal + 1)" ? true : nil
                }
                #expect(try await api.podNames("app%3Ddb") == (0...ordinal).map { "db-\($0)" })
                try await api.markReady("db-\(ordinal)")
            }
            let rollout = try await kubectl.run("rollout", "status", "statefulset/db", "--timeout=30s")
            #expect(rollout.status == 0, "\(rollout.output)")

            let pod = try #require(try await api.object(WorkloadAPI.pods + "/db-1"))
            #expect(field(pod, "spec.hostname") as? String == "db-1")
            #expect(field(pod, "spec.subdomain") as? String == "db")
            let labels = field(pod, "metadata.labels") as? [String: String] ?? [:]
            #expect(labels["statefulset.kubernetes.io/pod-name"] == "db-1")
            #expect(labels["apps.kubernetes.io/pod-index"] == "1")
            let revision1 = try #require(labels["controller-revision-hash"])
            #expect(revision1.hasPrefix("db-"))
            #expect(field(pod, "metadata.ownerReferences.0.kind") as? String == "StatefulSet")
            let volumesOfPod = field(pod, "spec.volumes") as? [[String: Any]] ?? []
            #expect(volumesOfPod.contains { field($0, "persistentVolumeClaim.claimName") as? String == "data-db-1" })
            let claims = try await api.items(WorkloadAPI.claims)
            #expect(claims.compactMap { field($0, "metadata.name") as? String } == ["data-db-0", "data-db-1", "data-db-2"])
            for claim in claims {
                #expect(field(claim, "status.phase") as? String == "Bound")
                let name = field(claim, "metadata.name") as? String ?? ""
                #expect(FileManager.default.fileExists(atPath: "\(volumes)/default/\(name)"))
                #expect(
                    (field(claim, "metadata.annotations") as? [String: String])?["kubesim.io/volume-path"] == "\(volumes)/default/\(name)")
            }
            let pvcTable = try await kubectl.ok("get", "pvc", "data-db-0", "--no-headers").split(
                separator: " ", omittingEmptySubsequences: true)
            let volumeName = "pvc-" + (claims.first.flatMap { field($0, "metadata.uid") as? String } ?? "")
            #expect(pvcTable.prefix(4).map(String.init) == ["data-db-0", "Bound", volumeName, "1Gi"], "\(pvcTable)")
            #expect(try await kubectl.ok("get", "sts", "db", "--no-headers").contains("3/3"))
            let described = try await kubectl.ok("describe", "statefulset", "db")
            #expect(described.contains("Pods Status:"))
            #expect(described.contains("3 Running"))
            #expect(described.contains("create Pod db-2 in StatefulSet db successful"), "\(described)")
            #expect(described.contains("create Claim data-db-0 Pod db-0 in StatefulSet db success"))

            // RollingUpdate with partition 1: db-2, then db-1 (each after its predecessor is Ready); db-0 stays.
            let from = try await api.resourceVersion(WorkloadAPI.pods)
            try await kubectl.ok(
                "patch", "sts", "db", "--type=merge", "-p",
                #"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":1}},"template":{"spec":{"containers":[{"name":"db","image":"db:2"}]}}}}"#
            )
            let revision2 = try await eventually(timeout: .seconds(10), "the new revision") {
                let update = try await kubectl.ok("get", "sts", "db", "-o", "jsonpath={.status.updateRevision}")
                return update != revision1 && !update.isEmpty ? update : nil
            }
            func revision(_ name: String) async throws -> String? {
                (field(try await api.object(WorkloadAPI.pods + "/" + name), "metadata.labels") as? [String: String])?[
                    "controller-revision-hash"]
            }
            for ordinal in [2, 1] {
                try await eventually(timeout: .seconds(10), "db-\(ordinal) to be replaced") {
                    try await revision("db-\(ordinal)") == revision2 ? true : nil
                }
                // Waits for readiness: the next one is untouched meanwhile.
                try await eventually(timeout: .seconds(10), "the status to count db-\(ordinal) as updated") {
                    try await kubectl.ok("get", "sts", "db", "-o", "jsonpath={.status.updatedReplicas}") == "\(3 - ordinal)" ? true : nil
                }
                #expect(try await revision("db-\(ordinal - 1)") == revision1)
                try await api.markReady("db-\(ordinal)")
            }
            let partitioned = try await kubectl.run("rollout", "status", "statefulset/db", "--timeout=30s")
            #expect(partitioned.status == 0, "\(partitioned.output)")
            #expect(partitioned.stdout.contains("partitioned roll out complete"))
            #expect(try await revision("db-0") == revision1)
            let deletions = try await api.client.watch(
                WorkloadAPI.pods + "?watch=true&timeoutSeconds=5&resourceVersion=\(from)"
            ) { events in events.filter { $0["type"] as? String == "DELETED" }.count >= 2 }
            #expect(
                deletions.filter { $0["type"] as? String == "DELETED" }.compactMap { field($0["object"], "metadata.name") as? String }
                    == ["db-2", "db-1"])

            // Partition 0: db-0 too; then the revisions converge.
            try await kubectl.ok(
                "patch", "sts", "db", "--type=merge", "-p", #"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#)
            try await eventually(timeout: .seconds(10), "db-0 to be replaced") {
                try await revision("db-0") == revision2 ? true : nil
            }
            try await api.markReady("db-0")
            try await eventually(timeout: .seconds(10), "currentRevision to converge") {
                let status = try await kubectl.ok(
                    "get", "sts", "db", "-o",
                    "jsonpath={.status.currentRevision} {.status.updateRevision} {.status.readyReplicas} {.status.currentReplicas} {.status.updatedReplicas} {.status.observedGeneration}"
                )
                return status == "\(revision2) \(revision2) 3 3 3 3" ? true : nil
            }
            #expect(try await kubectl.run("rollout", "status", "statefulset/db", "--timeout=20s").status == 0)
            // One ControllerRevision per template, owned by the set: kubectl rollout history lists them.
            let history = try await kubectl.ok("rollout", "history", "statefulset/db").split(separator: "\n").map {
                $0.split(separator: " ", omittingEmptySubsequences: true).first.map(String.init) ?? ""
            }
            #expect(history.suffix(2) == ["1", "2"], "\(history)")
            let revisionNames = try await kubectl.ok("get", "controllerrevisions", "-o", "name").split(separator: "\n").map(String.init)
            #expect(revisionNames.sorted() == ["controllerrevision.apps/\(revision1)", "controllerrevision.apps/\(revision2)"].sorted())

            // Scale down: the highest ordinal first, whenScaled Delete removes its claims.
            let beforeScale = try await api.resourceVersion(WorkloadAPI.pods)
            try await kubectl.ok("scale", "sts/db", "--replicas=1")
            try await eventually(timeout: .seconds(10), "scale down to db-0") {
                try await api.podNames("app%3Ddb") == ["db-0"] ? true : nil
            }
            let scaled = try await api.client.watch(
                WorkloadAPI.pods + "?watch=true&timeoutSeconds=5&resourceVersion=\(beforeScale)"
            ) { events in events.filter { $0["type"] as? String == "DELETED" }.count >= 2 }
            #expect(
                scaled.filter { $0["type"] as? String == "DELETED" }.compactMap { field($0["object"], "metadata.name") as? String }
                    == ["db-2", "db-1"])
            try await eventually(timeout: .seconds(10), "the scaled-away claims to be deleted") {
                try await api.items(WorkloadAPI.claims).compactMap { field($0, "metadata.name") as? String } == ["data-db-0"] ? true : nil
            }
            // whenDeleted Retain: the claim outlives the set.
            try await kubectl.ok("delete", "sts", "db")
            try await eventually(timeout: .seconds(10), "the pods to be collected") {
                try await api.items(WorkloadAPI.pods).isEmpty ? true : nil
            }
            #expect(try await api.items(WorkloadAPI.claims).compactMap { field($0, "metadata.name") as? String } == ["data-db-0"])
        }
    }

    @Test func statefulSetParallelOnDeleteAndClaimsDeletedWithTheSet() async throws {
        try await withCluster(readiness: .manual) { _, kubectl, api, _ in
            let spec = Self.statefulSet(
                replicas: 3, image: "db:1", policy: "Parallel", strategy: "type: OnDelete", whenScaled: "Retain", whenDeleted: "Delete")
            try await kubectl.ok("apply", "-f", kubectl.file("db.yaml", spec))
            // Parallel: all at once, none of them ready.
            try await eventually(timeout: .seconds(10), "3 pods at once") {
                try await api.podNames("app%3Ddb") == ["db-0", "db-1", "db-2"] ? true : nil
            }
            let claims = try await eventually(timeout: .seconds(10), "3 bound claims") {
                let claims = try await api.items(WorkloadAPI.claims)
                return claims.count == 3 && claims.allSatisfy({ field($0, "status.phase") as? String == "Bound" }) ? claims : nil
            }
            for claim in claims { #expect(field(claim, "metadata.ownerReferences.0.kind") as? String == "StatefulSet") }
            for name in ["db-0", "db-1", "db-2"] { try await api.markReady(name) }
            let revision1 = try await eventually(timeout: .seconds(10), "3 ready") {
                let status = try await kubectl.ok("get", "sts", "db", "-o", "jsonpath={.status.readyReplicas} {.status.currentRevision}")
                return status.hasPrefix("3 ") ? String(status.dropFirst(2)) : nil
            }
            // OnDelete: a new template replaces nothing until a pod is deleted.
            try await kubectl.ok("apply", "-f", kubectl.file("db2.yaml", spec.replacingOccurrences(of: "db:1", with: "db:2")))
            let revision2 = try await eventually(timeout: .seconds(10), "the new revision") {
                let status = try await kubectl.ok(
                    "get", "sts", "db", "-o", "jsonpath={.status.observedGeneration} {.status.updateRevision}")
                return status.hasPrefix("2 ") ? String(status.dropFirst(2)) : nil
            }
            #expect(revision2 != revision1)
            func revisions() async throws -> [String] {
                try await api.items(WorkloadAPI.pods).map {
                    (field($0, "metadata.labels") as? [String: String])?["controller-revision-hash"] ?? ""
                }
            }
            #expect(try await revisions() == [revision1, revision1, revision1])
            try await kubectl.ok("delete", "pod", "db-1")
            try await eventually(timeout: .seconds(10), "db-1 to come back at the new revision") {
                try await revisions() == [revision1, revision2, revision1] ? true : nil
            }
            #expect(try await kubectl.ok("get", "sts", "db", "-o", "jsonpath={.status.updatedReplicas}") == "1")
            // Parallel scale-down: both at once; whenScaled Retain keeps the claims.
            try await kubectl.ok("scale", "sts/db", "--replicas=1")
            try await eventually(timeout: .seconds(10), "scale down") {
                try await api.podNames("app%3Ddb") == ["db-0"] ? true : nil
            }
            let retained = try await api.items(WorkloadAPI.claims).compactMap { field($0, "metadata.uid") as? String }
            #expect(retained.count == 3)
            // Scaling up again reuses the retained claims (stable storage per ordinal).
            try await kubectl.ok("scale", "sts/db", "--replicas=3")
            try await eventually(timeout: .seconds(10), "scale up") {
                try await api.podNames("app%3Ddb") == ["db-0", "db-1", "db-2"] ? true : nil
            }
            #expect(try await api.items(WorkloadAPI.claims).compactMap { field($0, "metadata.uid") as? String } == retained)
            // whenDeleted Delete: the claims go with the set.
            try await kubectl.ok("delete", "sts", "db")
            try await eventually(timeout: .seconds(10), "pods and claims to be collected") {
                let left = try await api.items(WorkloadAPI.pods).count + api.items(WorkloadAPI.claims).count
                return left == 0 ? true : nil
            }
        }
    }
}
