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

/// What happens to a pod object after a workload controller created it: the hook a pod runner
/// plugs into (it starts the containers and reports readiness through the status subresource).
///
/// - Note: pod deletion is immediate (no grace period, no `deletionTimestamp`), since no kubelet
///   finishes it; a runner that needs a graceful stop will hook deletion here as well.
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
    /// their current revision). The store is in memory, so this is as durable as the objects.
    var revisions: [String: JSONValue] = [:]

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
        let (signals, signal) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let hub = self.hub
        let resync = self.resync
        await withTaskGroup(of: Void.self) { group in
            for key in Self.watchedKeys {
                group.addTask {
                    while !Task.isCancelled {
                        guard
                            let subscription = try? hub.subscribe(
                                storageKey: key, namespace: nil, from: nil, initial: [], isInternal: true)
                        else { return }
                        for await _ in subscription.events { signal.yield() }
                        hub.unsubscribe(subscription.id)
                    }
                }
            }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: resync)
                    signal.yield()
                }
            }
            signal.yield()
            for await _ in signals {
                if Task.isCancelled { break }
                await pass()
            }
            group.cancelAll()
        }
    }

    /// One reconciliation of everything. Each object on its own: an error (a 409 from a racing
    /// client, an invalid pod template) leaves that object for the next pass, not the others.
    func pass() async {
        await reconcileDeployments()
        await reconcileReplicaSets()
        await reconcileStatefulSets()
        await bindClaims()
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
            newRS = try await writer.create(
                Workloads.replicaSetType,
                Workloads.replicaSet(for: deployment, hash: hash, replicas: initial, revision: maxRevision + 1))
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
        return try await writer.update(Workloads.replicaSetType, updated)
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
                await lifecycle.podCreated(pod, writer: writer)
            }
        } else if owned.count > want {
            // Not-ready pods go first, then the newest.
            let ranked = owned.sorted { a, b in
                if a.isPodReady != b.isPodReady { return !a.isPodReady }
                if a.createdAt != b.createdAt { return a.createdAt > b.createdAt }
                return a.name > b.name
            }
            for pod in ranked.prefix(owned.count - want) { try await writer.delete(Workloads.podType, pod) }
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

    // MARK: StatefulSets

    func reconcileStatefulSets() async {
        let sets = await writer.list(Workloads.statefulSetType)
        guard !sets.isEmpty else { return }
        let pods = Workloads.byController(await writer.list(Workloads.podType))
        let claims = await writer.list(Workloads.claimType)
        for set in sets where !set.isDeleting {
            await attempt(set) {
                try await reconcileStatefulSet(set, pods: pods[set.uid] ?? [], claims: claims.filter { $0.namespace == set.namespace })
            }
        }
    }

    func reconcileStatefulSet(_ set: JSONValue, pods owned: [JSONValue], claims: [JSONValue]) async throws {
        let name = set.name
        let replicas = set.specReplicas
        let template = set.value(at: ["spec", "template"]) ?? [:]
        let updateRevision = "\(name)-\(Workloads.templateHash(template))"
        revisions[updateRevision] = template
        let currentRevision = set.value(at: ["status", "currentRevision"])?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? updateRevision
        let parallel = set.value(at: ["spec", "podManagementPolicy"])?.stringValue == "Parallel"
        let onDelete = set.value(at: ["spec", "updateStrategy", "type"])?.stringValue == "OnDelete"
        let partition = onDelete ? 0 : Int(set.value(at: ["spec", "updateStrategy", "rollingUpdate", "partition"])?.intValue ?? 0)
        let whenScaledDelete = set.value(at: ["spec", "persistentVolumeClaimRetentionPolicy", "whenScaled"])?.stringValue == "Delete"
        let whenDeletedDelete =
            set.value(at: ["spec", "persistentVolumeClaimRetentionPolicy", "whenDeleted"])?.stringValue == "Delete"
        let templates = set.value(at: ["spec", "volumeClaimTemplates"])?.arrayValue ?? []

        var byOrdinal: [Int: JSONValue] = [:]
        for pod in owned {
            if let ordinal = Workloads.ordinal(of: pod.name, set: name) { byOrdinal[ordinal] = pod }
        }
        func claimName(_ template: JSONValue, _ ordinal: Int) -> String {
            "\(template.value(at: ["metadata", "name"])?.stringValue ?? "")-\(name)-\(ordinal)"
        }
        let claimsByName = Dictionary(claims.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })

        // whenDeleted decides whether the set owns the claims of its ordinals.
        for ordinal in 0..<replicas {
            for claimTemplate in templates {
                guard let existing = claimsByName[claimName(claimTemplate, ordinal)], !existing.isDeleting else { continue }
                let owners = existing.value(at: ["metadata", "ownerReferences"])?.arrayValue ?? []
                let ownedBySet = owners.contains { $0["uid"]?.stringValue == set.uid }
                if ownedBySet != whenDeletedDelete {
                    var updated = existing
                    let kept = owners.filter { $0["uid"]?.stringValue != set.uid }
                    let next = whenDeletedDelete ? kept + [Workloads.ownerReference(set, controller: false)] : kept
                    updated.setValue(next.isEmpty ? nil : .array(next), at: ["metadata", "ownerReferences"])
                    _ = try await writer.update(Workloads.claimType, updated)
                }
            }
        }

        // Create missing pods (OrderedReady: in order, each after the previous is Ready).
        var blocked = false
        for ordinal in 0..<replicas {
            if let pod = byOrdinal[ordinal] {
                if !parallel, !pod.isPodReady || pod.isDeleting {
                    blocked = true
                    break
                }
                continue
            }
            // Its claims first (a retained claim of an earlier pod is reused: stable storage).
            for claimTemplate in templates where claimsByName[claimName(claimTemplate, ordinal)] == nil {
                _ = try await writer.create(
                    Workloads.claimType,
                    Workloads.claim(
                        from: claimTemplate, name: claimName(claimTemplate, ordinal), set: set, owned: whenDeletedDelete,
                        volumeRoot: volumeRoot))
            }
            let revision = (!onDelete && ordinal < partition) ? currentRevision : updateRevision
            let pod = try await writer.create(
                Workloads.podType,
                Workloads.statefulPod(
                    set: set, ordinal: ordinal, template: revisions[revision] ?? template,
                    revision: revisions[revision] == nil ? updateRevision : revision,
                    claims: templates.map { ($0.value(at: ["metadata", "name"])?.stringValue ?? "", claimName($0, ordinal)) }))
            byOrdinal[ordinal] = pod
            await lifecycle.podCreated(pod, writer: writer)
            if !parallel {
                blocked = true
                break
            }
        }

        // Scale down from the highest ordinal (OrderedReady: one at a time, once the rest are Ready).
        let condemned = byOrdinal.keys.filter { $0 >= replicas }.sorted(by: >)
        if !condemned.isEmpty, !blocked {
            for ordinal in parallel ? condemned : [condemned[0]] {
                guard let pod = byOrdinal[ordinal] else { continue }
                if !pod.isDeleting { try await writer.delete(Workloads.podType, pod) }
                byOrdinal[ordinal] = nil
            }
        }
        // whenScaled: Delete removes the claims of ordinals whose pods are gone.
        if whenScaledDelete {
            for claim in claims where !claim.isDeleting {
                for claimTemplate in templates {
                    let prefix = "\(claimTemplate.value(at: ["metadata", "name"])?.stringValue ?? "")-\(name)-"
                    guard claim.name.hasPrefix(prefix), let ordinal = Int(claim.name.dropFirst(prefix.count)),
                        ordinal >= replicas, byOrdinal[ordinal] == nil
                    else { continue }
                    try await writer.delete(Workloads.claimType, claim)
                }
            }
        }

        // RollingUpdate: replace the highest outdated ordinal at or above the partition, one at a
        // time, once every pod is Ready.
        let live = (0..<replicas).compactMap { byOrdinal[$0] }
        if !onDelete, !blocked, condemned.isEmpty, live.count == replicas, live.allSatisfy({ $0.isPodReady && !$0.isDeleting }) {
            if let ordinal = (partition..<max(partition, replicas)).reversed().first(where: {
                byOrdinal[$0]?.labels["controller-revision-hash"] != updateRevision
            }), let pod = byOrdinal[ordinal] {
                try await writer.delete(Workloads.podType, pod)
                byOrdinal[ordinal] = nil
            }
        }

        // Status, from the pods as read at the start of the pass (writes trigger the next pass).
        let counted = owned.filter { !$0.isDeleting }
        let ready = counted.filter(\.isPodReady).count
        let updated = counted.filter { $0.labels["controller-revision-hash"] == updateRevision }.count
        var current = currentRevision
        var currentCount = counted.filter { $0.labels["controller-revision-hash"] == currentRevision }.count
        if updated == counted.count, ready == counted.count, counted.count == replicas {
            current = updateRevision
            currentCount = updated
        }
        var status = set["status"]?.objectValue ?? [:]
        status["observedGeneration"] = set.value(at: ["metadata", "generation"]) ?? 1
        status["replicas"] = .int(Int64(counted.count))
        status["readyReplicas"] = .int(Int64(ready))
        status["availableReplicas"] = .int(Int64(ready))
        status["currentReplicas"] = .int(Int64(currentCount))
        status["updatedReplicas"] = .int(Int64(updated))
        status["currentRevision"] = .string(current)
        status["updateRevision"] = .string(updateRevision)
        status["collisionCount"] = 0
        var next = set
        next["status"] = .object(status)
        if next != set { try await writer.updateStatus(Workloads.statefulSetType, next) }
    }

    // MARK: Claims

    /// Binds every Pending claim to a directory under the volume root (a stand-in for a
    /// dynamic provisioner): `spec.volumeName`, annotation `kubesim.io/volume-path`, status Bound.
    func bindClaims() async {
        for claim in await writer.list(Workloads.claimType)
        where !claim.isDeleting && claim.value(at: ["status", "phase"])?.stringValue != "Bound" {
            await attempt(claim) { try await bind(claim) }
        }
    }

    func bind(_ claim: JSONValue) async throws {
        var current = claim
        // Always under the root, whatever a client wrote into the annotation.
        let path = Workloads.volumePath(root: volumeRoot, namespace: claim.namespace, name: claim.name)
        if claim.value(at: ["spec", "volumeName"]) == nil || claim.annotation(Workloads.volumePathAnnotation) != path {
            var updated = claim
            if updated.value(at: ["spec", "volumeName"]) == nil {
                updated.setValue(.string("pvc-" + claim.uid), at: ["spec", "volumeName"])
            }
            updated.setValue(.string(path), at: ["metadata", "annotations", Workloads.volumePathAnnotation])
            updated.setValue("yes", at: ["metadata", "annotations", "pv.kubernetes.io/bind-completed"])
            current = try await writer.update(Workloads.claimType, updated)
        }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            logger.warning("cannot create a volume directory", metadata: ["volume.path": "\(path)", "error": "\(error)"])
            return
        }
        var bound = current
        let storage = current.value(at: ["spec", "resources", "requests", "storage"]) ?? "1Gi"
        bound["status"] = [
            "phase": "Bound", "accessModes": current.value(at: ["spec", "accessModes"]) ?? ["ReadWriteOnce"],
            "capacity": ["storage": storage],
        ]
        try await writer.updateStatus(Workloads.claimType, bound)
    }
}

/// Pure helpers of the workload controllers: object builders, hashes, readiness.
enum Workloads {
    static func builtin(_ key: String) -> ResourceType { ResourceRegistry.builtins.first { $0.typeKey == key }! }
    static let podType = builtin("/pods")
    static let claimType = builtin("/persistentvolumeclaims")
    static let deploymentType = builtin("apps/deployments")
    static let replicaSetType = builtin("apps/replicasets")
    static let statefulSetType = builtin("apps/statefulsets")
    static let volumePathAnnotation = "kubesim.io/volume-path"

    static func volumePath(root: String, namespace: String, name: String) -> String {
        (root.hasSuffix("/") ? root : root + "/") + namespace + "/" + name
    }

    /// A pod-template hash as the real controllers make it: FNV-1a (32 bit) of the template,
    /// its decimal digits mapped onto the alphabet of generated names.
    static func templateHash(_ template: JSONValue) -> String {
        var hash: UInt32 = 2_166_136_261
        for byte in (canonical(template) ?? [:]).serializedBytes() {
            hash ^= UInt32(byte)
            hash = hash &* 16_777_619
        }
        let alphabet = Array("bcdfghjklmnpqrstvwxz2456789")
        return String(String(hash).unicodeScalars.map { alphabet[Int($0.value) % alphabet.count] })
    }

    /// The template without nulls and empty objects or lists, which Go clients add and drop
    /// freely (`creationTimestamp: null`, `resources: {}`): equal templates hash equal.
    static func canonical(_ value: JSONValue) -> JSONValue? {
        switch value {
        case .null: return nil
        case .object(let members):
            let kept = members.compactMapValues(canonical)
            return kept.isEmpty ? nil : .object(kept)
        case .array(let elements):
            return elements.isEmpty ? nil : .array(elements.map { canonical($0) ?? .null })
        default: return value
        }
    }

    /// maxSurge (rounded up) and maxUnavailable (rounded down) of a RollingUpdate Deployment;
    /// both 25% by default, and never both 0.
    static func rollingParameters(_ deployment: JSONValue) -> (surge: Int, unavailable: Int) {
        let replicas = deployment.specReplicas
        if deployment.value(at: ["spec", "strategy", "type"])?.stringValue == "Recreate" { return (0, replicas) }
        let rolling = deployment.value(at: ["spec", "strategy", "rollingUpdate"]) ?? [:]
        let surge = scaled(rolling["maxSurge"] ?? "25%", of: replicas, roundUp: true)
        var unavailable = scaled(rolling["maxUnavailable"] ?? "25%", of: replicas, roundUp: false)
        if surge == 0, unavailable == 0 { unavailable = 1 }
        return (surge, min(unavailable, replicas))
    }

    /// An IntOrString: an absolute number or a percentage of `total`.
    static func scaled(_ value: JSONValue, of total: Int, roundUp: Bool) -> Int {
        if let number = value.intValue { return Int(number) }
        guard let text = value.stringValue, text.hasSuffix("%"), let percent = Double(text.dropLast()) else { return 0 }
        let exact = percent * Double(total) / 100
        return Int(roundUp ? exact.rounded(.up) : exact.rounded(.down))
    }

    static func byController(_ objects: [JSONValue]) -> [String: [JSONValue]] {
        var result: [String: [JSONValue]] = [:]
        for object in objects {
            if let uid = object.controllerUID { result[uid, default: []].append(object) }
        }
        return result
    }

    static func ordinal(of podName: String, set: String) -> Int? {
        guard podName.hasPrefix(set + "-") else { return nil }
        let rest = podName.dropFirst(set.count + 1)
        guard !rest.isEmpty, rest.allSatisfy(\.isNumber) else { return nil }
        return Int(rest)
    }

    static func ownerReference(_ owner: JSONValue, controller: Bool) -> JSONValue {
        [
            "apiVersion": owner["apiVersion"] ?? "apps/v1", "kind": owner["kind"] ?? "", "name": .string(owner.name),
            "uid": .string(owner.uid), "controller": .bool(controller), "blockOwnerDeletion": true,
        ]
    }

    static func setCondition(_ conditions: inout [JSONValue], type: String, status: String, reason: String, message: String) {
        let now = JSONValue.string(Timestamps.format(Date()))
        let index = conditions.firstIndex { $0["type"]?.stringValue == type }
        let old = index.map { conditions[$0] }
        if let old, old["status"]?.stringValue == status, old["reason"]?.stringValue == reason,
            old["message"]?.stringValue == message
        {
            return
        }
        let transition = old?["status"]?.stringValue == status ? (old?["lastTransitionTime"] ?? now) : now
        let condition: JSONValue = [
            "type": .string(type), "status": .string(status), "reason": .string(reason), "message": .string(message),
            "lastUpdateTime": now, "lastTransitionTime": transition,
        ]
        if let index { conditions[index] = condition } else { conditions.append(condition) }
    }

    static func replicaSet(for deployment: JSONValue, hash: String, replicas: Int, revision: Int) -> JSONValue {
        var template = deployment.value(at: ["spec", "template"]) ?? [:]
        template.setValue(.string(hash), at: ["metadata", "labels", "pod-template-hash"])
        var selector = deployment.value(at: ["spec", "selector"]) ?? [:]
        selector.setValue(.string(hash), at: ["matchLabels", "pod-template-hash"])
        var labels = template.value(at: ["metadata", "labels"])?.objectValue ?? [:]
        labels["pod-template-hash"] = .string(hash)
        return [
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": [
                "name": .string("\(deployment.name)-\(hash)"), "namespace": .string(deployment.namespace), "labels": .object(labels),
                "annotations": [
                    "deployment.kubernetes.io/revision": .string(String(revision)),
                    "deployment.kubernetes.io/desired-replicas": .string(String(deployment.specReplicas)),
                ],
                "ownerReferences": [ownerReference(deployment, controller: true)],
            ],
            "spec": [
                "replicas": .int(Int64(replicas)), "selector": selector, "template": template,
                "minReadySeconds": deployment.value(at: ["spec", "minReadySeconds"]) ?? 0,
            ],
        ]
    }

    /// A pod of a ReplicaSet (named by `generateName`, like the real controller's).
    static func pod(for rs: JSONValue) -> JSONValue {
        let template = rs.value(at: ["spec", "template"]) ?? [:]
        var metadata = template["metadata"]?.objectValue ?? [:]
        metadata["name"] = nil
        metadata["generateName"] = .string(rs.name + "-")
        metadata["namespace"] = .string(rs.namespace)
        metadata["ownerReferences"] = [ownerReference(rs, controller: true)]
        return ["apiVersion": "v1", "kind": "Pod", "metadata": .object(metadata), "spec": podSpec(template)]
    }

    static func podSpec(_ template: JSONValue) -> JSONValue {
        var spec = template["spec"] ?? [:]
        if spec["restartPolicy"] == nil { spec["restartPolicy"] = "Always" }
        if spec["terminationGracePeriodSeconds"] == nil { spec["terminationGracePeriodSeconds"] = 30 }
        if spec["dnsPolicy"] == nil { spec["dnsPolicy"] = "ClusterFirst" }
        if spec["schedulerName"] == nil { spec["schedulerName"] = "default-scheduler" }
        return spec
    }

    /// Pod `<set>-<ordinal>` with its stable identity and its claims mounted as volumes.
    static func statefulPod(set: JSONValue, ordinal: Int, template: JSONValue, revision: String, claims: [(String, String)])
        -> JSONValue
    {
        let name = "\(set.name)-\(ordinal)"
        var metadata = template["metadata"]?.objectValue ?? [:]
        var labels = metadata["labels"]?.objectValue ?? [:]
        labels["controller-revision-hash"] = .string(revision)
        labels["statefulset.kubernetes.io/pod-name"] = .string(name)
        labels["apps.kubernetes.io/pod-index"] = .string(String(ordinal))
        metadata["labels"] = .object(labels)
        metadata["name"] = .string(name)
        metadata["generateName"] = nil
        metadata["namespace"] = .string(set.namespace)
        metadata["ownerReferences"] = [ownerReference(set, controller: true)]
        var spec = podSpec(template)
        spec["hostname"] = .string(name)
        if let service = set.value(at: ["spec", "serviceName"])?.stringValue, !service.isEmpty {
            spec["subdomain"] = .string(service)
        }
        var volumes = (spec["volumes"]?.arrayValue ?? []).filter { volume in
            !claims.contains { $0.0 == volume["name"]?.stringValue }
        }
        for (volume, claim) in claims {
            volumes.append(["name": .string(volume), "persistentVolumeClaim": ["claimName": .string(claim)]])
        }
        if !volumes.isEmpty { spec["volumes"] = .array(volumes) }
        return ["apiVersion": "v1", "kind": "Pod", "metadata": .object(metadata), "spec": spec]
    }

    static func claim(from template: JSONValue, name: String, set: JSONValue, owned: Bool, volumeRoot: String) -> JSONValue {
        var labels = template.value(at: ["metadata", "labels"])?.objectValue ?? [:]
        for (key, value) in set.value(at: ["spec", "selector", "matchLabels"])?.objectValue ?? [:] { labels[key] = value }
        var metadata: [String: JSONValue] = [
            "name": .string(name), "namespace": .string(set.namespace), "labels": .object(labels),
            "annotations": [volumePathAnnotation: .string(volumePath(root: volumeRoot, namespace: set.namespace, name: name))],
        ]
        if owned { metadata["ownerReferences"] = [ownerReference(set, controller: false)] }
        var spec = template["spec"] ?? [:]
        if spec["accessModes"] == nil { spec["accessModes"] = ["ReadWriteOnce"] }
        if spec["volumeMode"] == nil { spec["volumeMode"] = "Filesystem" }
        return ["apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": .object(metadata), "spec": spec]
    }

    /// The status a kubelet reports for a started pod whose containers are all ready.
    static func readyPodStatus(_ pod: JSONValue, ip: String) -> JSONValue {
        let now = JSONValue.string(Timestamps.format(Date()))
        let containers = pod.value(at: ["spec", "containers"])?.arrayValue ?? []
        let conditions: [JSONValue] = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"].map {
            ["type": .string($0), "status": "True", "lastProbeTime": .null, "lastTransitionTime": now]
        }
        return [
            "phase": "Running", "conditions": .array(conditions), "hostIP": "127.0.0.1", "hostIPs": [["ip": "127.0.0.1"]],
            "podIP": .string(ip), "podIPs": [["ip": .string(ip)]], "startTime": now, "qosClass": "BestEffort",
            "containerStatuses": .array(
                containers.map { container in
                    [
                        "name": container["name"] ?? "", "image": container["image"] ?? "", "imageID": "", "ready": true,
                        "started": true, "restartCount": 0, "state": ["running": ["startedAt": now]],
                    ]
                }),
        ]
    }
}

extension JSONValue {
    var name: String { value(at: ["metadata", "name"])?.stringValue ?? "" }
    var namespace: String { value(at: ["metadata", "namespace"])?.stringValue ?? "" }
    var uid: String { value(at: ["metadata", "uid"])?.stringValue ?? "" }
    var labels: [String: String] { (value(at: ["metadata", "labels"])?.objectValue ?? [:]).compactMapValues(\.stringValue) }
    var createdAt: String { value(at: ["metadata", "creationTimestamp"])?.stringValue ?? "" }
    var isDeleting: Bool { value(at: ["metadata", "deletionTimestamp"]) != nil }
    var specReplicas: Int { Int(value(at: ["spec", "replicas"])?.intValue ?? 1) }
    func annotation(_ key: String) -> String? { value(at: ["metadata", "annotations", key])?.stringValue }

    /// The uid of the owner reference with `controller: true`.
    var controllerUID: String? {
        (value(at: ["metadata", "ownerReferences"])?.arrayValue ?? []).first { $0["controller"]?.boolValue == true }?["uid"]?
            .stringValue
    }

    /// Running, with condition Ready True, and not being deleted.
    var isPodReady: Bool {
        guard !isDeleting, value(at: ["status", "phase"])?.stringValue == "Running" else { return false }
        return (value(at: ["status", "conditions"])?.arrayValue ?? []).contains {
            $0["type"]?.stringValue == "Ready" && $0["status"]?.stringValue == "True"
        }
    }
}
