import Foundation
import Logging

/// How pods created by kubesim's workload controllers become Ready while kubesim runs no
/// processes (`KubeSimConfiguration.podReadiness`, `--pod-readiness`).
public enum PodReadiness: String, Sendable, CaseIterable {
    /// Pods stay as created (`Pending`, not Ready); tests, or a pod runner, write their
    /// `status` through the status subresource.
    case manual
    /// The controller marks each new pod `Running` and `Ready` at once, with a `podIP` from
    /// 10.244.0.0/16 and ready `containerStatuses`.
    case immediate
}

/// What happens to a pod object after a workload controller created it, when kubesim runs no
/// pods (`PodReadiness`). With `--run-pods` the node (`NodeAgent`) watches pods itself and the
/// lifecycle is `.manual`; deletion is then graceful (see `ResourceStore.markTerminating`).
protocol PodLifecycle: Sendable {
    /// Called once for every pod a controller creates.
    /// - Parameters:
    ///   - pod: the pod as stored.
    ///   - writer: writes the pod's status through the store.
    func podCreated(_ pod: JSONValue, writer: WorkloadWriter) async
}

/// `.manual`: pods stay as created.
struct ManualPodLifecycle: PodLifecycle {
    func podCreated(_ pod: JSONValue, writer: WorkloadWriter) async {}
}

/// `.immediate`: pods are Running and Ready as soon as they exist.
struct ImmediatePodLifecycle: PodLifecycle {
    func podCreated(_ pod: JSONValue, writer: WorkloadWriter) async {
        let ip = await writer.nextPodIP()
        var updated = pod
        updated["status"] = Workloads.readyPodStatus(pod, ip: ip)
        // Unconditional (no resourceVersion): a concurrent label change must not leave it Pending.
        updated.setValue(nil, at: ["metadata", "resourceVersion"])
        try? await writer.updateStatus(Workloads.podType, updated)
    }
}

/// The controllers' way to the store: the same paths API clients use, as manager
/// `kube-controller-manager`.
actor WorkloadWriter {
    let store: ResourceStore
    private var ipCounter = 0
    static let manager = "kube-controller-manager"

    init(store: ResourceStore) { self.store = store }

    func nextPodIP() -> String {
        ipCounter += 1
        return "10.244.\(ipCounter / 250 % 256).\(ipCounter % 250 + 1)"
    }

    func create(_ type: ResourceType, _ object: JSONValue) async throws(KubeSimError) -> JSONValue {
        try await store.create(
            type, namespace: object.value(at: ["metadata", "namespace"])?.stringValue ?? "", object: object,
            manager: Self.manager, dryRun: false)
    }

    /// Replaces the object (guarded by its resourceVersion: a stale read is a 409).
    func update(_ type: ResourceType, _ object: JSONValue) async throws(KubeSimError) -> JSONValue {
        try await store.update(
            type, namespace: object.namespace, name: object.name, object: object, subresource: nil, manager: Self.manager,
            dryRun: false)
    }

    func updateStatus(_ type: ResourceType, _ object: JSONValue) async throws(KubeSimError) {
        _ = try await store.update(
            type, namespace: object.namespace, name: object.name, object: object, subresource: "status",
            manager: Self.manager, dryRun: false)
    }

    func delete(_ type: ResourceType, _ object: JSONValue) async throws(KubeSimError) {
        _ = try await store.delete(
            type, namespace: object.namespace, name: object.name, propagationPolicy: "Background",
            preconditionUID: object.uid, preconditionResourceVersion: nil, dryRun: false)
    }

    /// Records a `Normal` core/v1 Event about `object` (best effort: an event never fails a reconcile).
    func record(_ object: JSONValue, component: String, reason: String, message: String, type: String = "Normal") async {
        await record(
            kind: object["kind"]?.stringValue ?? "", apiVersion: object["apiVersion"]?.stringValue ?? "", namespace: object.namespace,
            name: object.name, uid: object.uid, component: component, reason: reason, message: message, type: type)
    }

    func record(
        kind: String, apiVersion: String, namespace: String, name: String, uid: String, component: String, reason: String,
        message: String, type: String = "Normal"
    ) async {
        let now = JSONValue.string(Timestamps.format(Date()))
        let event: JSONValue = [
            "apiVersion": "v1", "kind": "Event",
            "metadata": [
                "name": .string("\(name).\(String(UInt64.random(in: 1...UInt64.max), radix: 16))"), "namespace": .string(namespace),
            ],
            "involvedObject": [
                "kind": .string(kind), "apiVersion": .string(apiVersion), "namespace": .string(namespace), "name": .string(name),
                "uid": .string(uid),
            ],
            "reason": .string(reason), "message": .string(message), "type": .string(type), "source": ["component": .string(component)],
            "reportingComponent": .string(component), "reportingInstance": "", "firstTimestamp": now, "lastTimestamp": now,
            "count": 1,
        ]
        _ = try? await store.create(Workloads.eventType, namespace: namespace, object: event, manager: Self.manager, dryRun: false)
    }

    func list(_ type: ResourceType) async -> [JSONValue] {
        (try? await store.list(type, namespace: nil, labels: nil, fields: nil, limit: nil, continueToken: nil).items) ?? []
    }
}

/// The Deployment, ReplicaSet and StatefulSet controllers and a PersistentVolumeClaim binder,
/// run inside kubesim. Level-based: each pass reads every workload and its pods and claims,
/// acts, and writes status; a pass runs on every change of these kinds (an internal watch on
/// the store) and on a periodic resync. The server runs `run()` and cancels it on shutdown.
actor WorkloadControllers {
    let writer: WorkloadWriter
    let hub: WatchHub
    let lifecycle: any PodLifecycle
    let logger: Logger
    let volumeRoot: String
    let resync: Duration
    /// StatefulSet revision name -> pod template (so pods below a partition are recreated at
    /// their current revision); filled from the sets and their ControllerRevisions.
    var revisions: [String: JSONValue] = [:]
    /// Pods handed to the lifecycle already (by uid; pruned to the pods that exist).
    var announced: Set<String> = []

    init(store: ResourceStore, readiness: PodReadiness, volumeRoot: String, resync: Duration = .seconds(2), logger: Logger) {
        self.writer = WorkloadWriter(store: store)
        self.hub = store.hub
        self.lifecycle = readiness == .immediate ? ImmediatePodLifecycle() : ManualPodLifecycle()
        self.volumeRoot = volumeRoot
        self.resync = resync
        self.logger = logger
    }

    static let watchedKeys = ["apps/deployments", "apps/replicasets", "apps/statefulsets", "/pods", "/persistentvolumeclaims"]

    /// Runs passes until cancelled.
    func run() async {
        await hub.onChanges(of: Self.watchedKeys, resync: resync) { await self.pass() }
    }

    /// One reconciliation of everything. Each object on its own: an error (a 409 from a racing
    /// client, an invalid pod template) leaves that object for the next pass, not the others.
    func pass() async {
        await reconcileDeployments()
        await reconcileReplicaSets()
        await reconcileStatefulSets()
        await bindClaims()
        await announceNewPods()
    }

    /// Hands a new pod to the lifecycle once.
    func announce(_ pod: JSONValue) async {
        guard announced.insert(pod.uid).inserted else { return }
        await lifecycle.podCreated(pod, writer: writer)
    }

    /// Pods created by clients (`kubectl run`, a test) reach the lifecycle too: any pod that
    /// is still `Pending` without conditions.
    func announceNewPods() async {
        let pods = await writer.list(Workloads.podType)
        announced.formIntersection(pods.map(\.uid))
        for pod in pods
        where !pod.isDeleting && pod.value(at: ["status", "phase"])?.stringValue == "Pending"
            && pod.value(at: ["status", "conditions"]) == nil
        {
            await announce(pod)
        }
    }

    /// Runs one object's reconciliation, logging its error.
    func attempt(_ object: JSONValue, _ body: () async throws -> Void) async {
        do {
            try await body()
        } catch {
            logger.debug(
                "workload reconcile failed; retried on the next pass",
                metadata: [
                    "object.kind": "\(object["kind"]?.stringValue ?? "")", "object.namespace": "\(object.namespace)",
                    "object.name": "\(object.name)", "error": "\(error)",
                ])
        }
    }

    // MARK: Deployments

    func reconcileDeployments() async {
        let deployments = await writer.list(Workloads.deploymentType)
        guard !deployments.isEmpty else { return }
        let replicaSets = await writer.list(Workloads.replicaSetType)
        let pods = Workloads.byController(await writer.list(Workloads.podType).filter { !$0.isDeleting })
        for deployment in deployments where !deployment.isDeleting {
            let owned = replicaSets.filter { $0.controllerUID == deployment.uid && !$0.isDeleting }
            await attempt(deployment) { try await reconcileDeployment(deployment, owned: owned, pods: pods) }
        }
    }

    func reconcileDeployment(_ deployment: JSONValue, owned: [JSONValue], pods: [String: [JSONValue]]) async throws {
        let template = deployment.value(at: ["spec", "template"]) ?? [:]
        let hash = Workloads.templateHash(template)
        let replicas = deployment.specReplicas
        let (maxSurge, maxUnavailable) = Workloads.rollingParameters(deployment)
        let recreate = deployment.value(at: ["spec", "strategy", "type"])?.stringValue == "Recreate"
        var newRS = owned.first { $0.labels["pod-template-hash"] == hash }
        var old = owned.filter { $0.labels["pod-template-hash"] != hash }.sorted { $0.createdAt < $1.createdAt }
        let maxRevision = owned.map { Int($0.annotation("deployment.kubernetes.io/revision") ?? "") ?? 0 }.max() ?? 0
        let paused = deployment.value(at: ["spec", "paused"])?.boolValue == true

        if newRS == nil, !paused {
            let oldTotal = old.reduce(0) { $0 + $1.specReplicas }
            let initial =
                recreate
                ? (oldTotal == 0 ? replicas : 0)
                : (oldTotal == 0 ? replicas : max(0, min(replicas, replicas + maxSurge - oldTotal)))
            let created = try await writer.create(
                Workloads.replicaSetType,
                Workloads.replicaSet(for: deployment, hash: hash, replicas: initial, revision: maxRevision + 1))
            await writer.record(
                deployment, component: "deployment-controller", reason: "ScalingReplicaSet",
                message: "Scaled up replica set \(created.name) from 0 to \(initial)")
            newRS = created
        } else if let rs = newRS, (Int(rs.annotation("deployment.kubernetes.io/revision") ?? "") ?? 0) < maxRevision {
            // A rollback to an older template: that ReplicaSet becomes the newest revision.
            var updated = rs
            updated.setValue(.string(String(maxRevision + 1)), at: ["metadata", "annotations", "deployment.kubernetes.io/revision"])
            newRS = try await writer.update(Workloads.replicaSetType, updated)
        }
        guard var newRS else { return }

        func podsOf(_ rs: JSONValue) -> [JSONValue] { pods[rs.uid] ?? [] }
        if !paused {
            if recreate {
                for (index, rs) in old.enumerated() where rs.specReplicas > 0 {
                    old[index] = try await scale(rs, to: 0)
                }
                if old.allSatisfy({ podsOf($0).isEmpty }), newRS.specReplicas != replicas {
                    newRS = try await scale(newRS, to: replicas)
                }
            } else {
                // Scale up the new ReplicaSet within maxSurge.
                let total = old.reduce(0) { $0 + $1.specReplicas } + newRS.specReplicas
                if newRS.specReplicas > replicas {
                    newRS = try await scale(newRS, to: replicas)
                } else if newRS.specReplicas < replicas {
                    let target = min(replicas, newRS.specReplicas + max(0, replicas + maxSurge - total))
                    if target != newRS.specReplicas { newRS = try await scale(newRS, to: target) }
                }
                // Scale down old ReplicaSets without going below replicas - maxUnavailable available pods.
                // A ReplicaSet keeps min(ready, spec) ready pods (it removes not-ready pods first), so
                // replicas not backed by a ready pod go freely and ready ones only within the budget.
                func readyKept(_ rs: JSONValue) -> Int { min(podsOf(rs).filter(\.isPodReady).count, rs.specReplicas) }
                var budget = ([newRS] + old).reduce(0) { $0 + readyKept($1) } - (replicas - maxUnavailable)
                for (index, rs) in old.enumerated() where rs.specReplicas > 0 {
                    let free = rs.specReplicas - readyKept(rs)
                    let reduce = min(rs.specReplicas, free + max(0, budget))
                    budget -= max(0, reduce - free)
                    if reduce > 0 { old[index] = try await scale(rs, to: rs.specReplicas - reduce) }
                }
            }
        }
        // revisionHistoryLimit: old ReplicaSets scaled to 0 and without pods beyond it go, oldest first.
        let limit = Int(deployment.value(at: ["spec", "revisionHistoryLimit"])?.intValue ?? 10)
        let idle = old.filter { $0.specReplicas == 0 && podsOf($0).isEmpty }.sorted {
            (Int($0.annotation("deployment.kubernetes.io/revision") ?? "") ?? 0)
                < (Int($1.annotation("deployment.kubernetes.io/revision") ?? "") ?? 0)
        }
        for rs in idle.prefix(max(0, idle.count - limit)) {
            try await writer.delete(Workloads.replicaSetType, rs)
            old.removeAll { $0.uid == rs.uid }
        }
        try await writeDeploymentStatus(deployment, newRS: newRS, all: [newRS] + old, pods: pods, maxUnavailable: maxUnavailable)
    }

    func scale(_ rs: JSONValue, to replicas: Int) async throws -> JSONValue {
        var updated = rs
        updated.setValue(.int(Int64(replicas)), at: ["spec", "replicas"])
        let stored = try await writer.update(Workloads.replicaSetType, updated)
        if let owner = (rs.value(at: ["metadata", "ownerReferences"])?.arrayValue ?? []).first(where: {
            $0["controller"]?.boolValue == true
        }) {
            let direction = replicas > rs.specReplicas ? "up" : "down"
            await writer.record(
                kind: "Deployment", apiVersion: "apps/v1", namespace: rs.namespace, name: owner["name"]?.stringValue ?? "",
                uid: owner["uid"]?.stringValue ?? "", component: "deployment-controller", reason: "ScalingReplicaSet",
                message: "Scaled \(direction) replica set \(rs.name) from \(rs.specReplicas) to \(replicas)")
        }
        return stored
    }

    func writeDeploymentStatus(
        _ deployment: JSONValue, newRS: JSONValue, all: [JSONValue], pods: [String: [JSONValue]], maxUnavailable: Int
    ) async throws {
        let replicas = deployment.specReplicas
        let allPods = all.flatMap { pods[$0.uid] ?? [] }
        let updatedPods = pods[newRS.uid] ?? []
        let ready = allPods.filter(\.isPodReady).count
        let updated = updatedPods.count
        let old = deployment["status"] ?? [:]
        var status = old.objectValue ?? [:]
        status["observedGeneration"] = deployment.value(at: ["metadata", "generation"]) ?? 1
        status["replicas"] = .int(Int64(allPods.count))
        status["updatedReplicas"] = .int(Int64(updated))
        status["readyReplicas"] = .int(Int64(ready))
        status["availableReplicas"] = .int(Int64(ready))
        status["unavailableReplicas"] = .int(Int64(max(0, replicas - ready)))
        for key in ["replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"]
        where status[key] == .int(0) {
            status[key] = nil  // the real controller omits zero counts
        }
        let rsName = newRS.name
        let complete = updated == replicas && allPods.count == replicas && updatedPods.filter(\.isPodReady).count == replicas
        let availableOK = ready >= replicas - maxUnavailable
        var conditions = old["conditions"]?.arrayValue ?? []
        Workloads.setCondition(
            &conditions, type: "Available", status: availableOK ? "True" : "False",
            reason: availableOK ? "MinimumReplicasAvailable" : "MinimumReplicasUnavailable",
            message: availableOK ? "Deployment has minimum availability." : "Deployment does not have minimum availability.")
        Workloads.setCondition(
            &conditions, type: "Progressing", status: "True", reason: complete ? "NewReplicaSetAvailable" : "ReplicaSetUpdated",
            message: complete ? "ReplicaSet \"\(rsName)\" has successfully progressed." : "ReplicaSet \"\(rsName)\" is progressing.")
        status["conditions"] = .array(conditions)
        var next = deployment
        next["status"] = .object(status)
        let revision = newRS.annotation("deployment.kubernetes.io/revision")
        if next != deployment { try await writer.updateStatus(Workloads.deploymentType, next) }
        if let revision, deployment.annotation("deployment.kubernetes.io/revision") != revision {
            var annotated = try await writer.store.get(Workloads.deploymentType, namespace: deployment.namespace, name: deployment.name)
            annotated.setValue(.string(revision), at: ["metadata", "annotations", "deployment.kubernetes.io/revision"])
            _ = try await writer.update(Workloads.deploymentType, annotated)
        }
    }

    // MARK: ReplicaSets

    func reconcileReplicaSets() async {
        let replicaSets = await writer.list(Workloads.replicaSetType)
        guard !replicaSets.isEmpty else { return }
        let pods = Workloads.byController(await writer.list(Workloads.podType).filter { !$0.isDeleting })
        for rs in replicaSets where !rs.isDeleting {
            await attempt(rs) { try await reconcileReplicaSet(rs, owned: pods[rs.uid] ?? []) }
        }
    }

    func reconcileReplicaSet(_ rs: JSONValue, owned: [JSONValue]) async throws {
        let want = rs.specReplicas
        if owned.count < want {
            for _ in owned.count..<want {
                let pod = try await writer.create(Workloads.podType, Workloads.pod(for: rs))
                await writer.record(rs, component: "replicaset-controller", reason: "SuccessfulCreate", message: "Created pod: \(pod.name)")
                await announce(pod)
            }
        } else if owned.count > want {
            // Not-ready pods go first, then the newest.
            let ranked = owned.sorted { a, b in
                if a.isPodReady != b.isPodReady { return !a.isPodReady }
                if a.createdAt != b.createdAt { return a.createdAt > b.createdAt }
                return a.name > b.name
            }
            for pod in ranked.prefix(owned.count - want) {
                try await writer.delete(Workloads.podType, pod)
                await writer.record(rs, component: "replicaset-controller", reason: "SuccessfulDelete", message: "Deleted pod: \(pod.name)")
            }
        }
        let ready = owned.filter(\.isPodReady).count
        var status = rs["status"]?.objectValue ?? [:]
        status["replicas"] = .int(Int64(owned.count))
        status["fullyLabeledReplicas"] = .int(Int64(owned.count))
        status["readyReplicas"] = .int(Int64(ready))
        status["availableReplicas"] = .int(Int64(ready))
        status["observedGeneration"] = rs.value(at: ["metadata", "generation"]) ?? 1
        for key in ["fullyLabeledReplicas", "readyReplicas", "availableReplicas"] where status[key] == .int(0) { status[key] = nil }
        var next = rs
        next["status"] = .object(status)
        if next != rs { try await writer.updateStatus(Workloads.replicaSetType, next) }
    }
}
