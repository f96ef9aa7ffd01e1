import Foundation
import Logging

/// The StatefulSet controller and the claim binder.
extension WorkloadControllers {
    // MARK: StatefulSets

    func reconcileStatefulSets() async {
        let sets = await writer.list(Workloads.statefulSetType)
        guard !sets.isEmpty else { return }
        let pods = Workloads.byController(await writer.list(Workloads.podType))
        let claims = await writer.list(Workloads.claimType)
        let history = Workloads.byController(await writer.list(Workloads.controllerRevisionType))
        for set in sets where !set.isDeleting {
            await attempt(set) {
                try await reconcileStatefulSet(
                    set, pods: pods[set.uid] ?? [], claims: claims.filter { $0.namespace == set.namespace },
                    history: history[set.uid] ?? [])
            }
        }
    }

    func reconcileStatefulSet(_ set: JSONValue, pods owned: [JSONValue], claims: [JSONValue], history: [JSONValue]) async throws {
        let name = set.name
        let replicas = set.specReplicas
        let template = set.value(at: ["spec", "template"]) ?? [:]
        let hash = Workloads.templateHash(template)
        let updateRevision = "\(name)-\(hash)"
        // A ControllerRevision per template (kubectl rollout history/undo read them); going back
        // to an older template gives its revision the next number.
        let maxRevision = history.map { Int($0["revision"]?.intValue ?? 0) }.max() ?? 0
        if let existing = history.first(where: { $0.name == updateRevision }) {
            if Int(existing["revision"]?.intValue ?? 0) < maxRevision {
                var bumped = existing
                bumped["revision"] = .int(Int64(maxRevision + 1))
                _ = try await writer.update(Workloads.controllerRevisionType, bumped)
            }
        } else {
            _ = try await writer.create(
                Workloads.controllerRevisionType,
                Workloads.controllerRevision(set: set, name: updateRevision, hash: hash, template: template, revision: maxRevision + 1))
        }
        for revision in history where revisions[revision.name] == nil {
            if var stored = revision.value(at: ["data", "spec", "template"]) {
                stored["$patch"] = nil
                revisions[revision.name] = stored
            }
        }
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
                let claim = claimName(claimTemplate, ordinal)
                _ = try await writer.create(
                    Workloads.claimType,
                    Workloads.claim(from: claimTemplate, name: claim, set: set, owned: whenDeletedDelete, volumeRoot: volumeRoot))
                await writer.record(
                    set, component: "statefulset-controller", reason: "SuccessfulCreate",
                    message: "create Claim \(claim) Pod \(name)-\(ordinal) in StatefulSet \(name) success")
            }
            let revision = (!onDelete && ordinal < partition) ? currentRevision : updateRevision
            let pod = try await writer.create(
                Workloads.podType,
                Workloads.statefulPod(
                    set: set, ordinal: ordinal, template: revisions[revision] ?? template,
                    revision: revisions[revision] == nil ? updateRevision : revision,
                    claims: templates.map { ($0.value(at: ["metadata", "name"])?.stringValue ?? "", claimName($0, ordinal)) }))
            byOrdinal[ordinal] = pod
            await writer.record(
                set, component: "statefulset-controller", reason: "SuccessfulCreate",
                message: "create Pod \(pod.name) in StatefulSet \(name) successful")
            await announce(pod)
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
                if !pod.isDeleting {
                    try await writer.delete(Workloads.podType, pod)
                    await writer.record(
                        set, component: "statefulset-controller", reason: "SuccessfulDelete",
                        message: "delete Pod \(pod.name) in StatefulSet \(name) successful")
                }
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
                await writer.record(
                    set, component: "statefulset-controller", reason: "SuccessfulDelete",
                    message: "delete Pod \(pod.name) in StatefulSet \(name) successful")
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
