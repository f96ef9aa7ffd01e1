import Foundation
import Logging

/// A page of a list.
struct ListPage: Sendable {
    var items: [JSONValue]
    var resourceVersion: Int64
    var continueToken: String?
    var remaining: Int
}

/// What a patch request does to the current object (nil: the object does not exist yet).
struct PatchOutcome: Sendable {
    var object: JSONValue
    /// Server-side apply already wrote `metadata.managedFields`.
    var managedFieldsDone: Bool = false
}

/// Every object of the server, keyed by type, namespace and name, with one global
/// resourceVersion counter. All writes go through here, so every API semantic (generation,
/// conflicts, status rules, finalizers, garbage collection, namespace deletion) lives in one place.
actor ResourceStore {
    let hub: WatchHub
    let logger: Logger
    /// Pods bound to a node end as on a real cluster: DELETE marks them (deletionTimestamp,
    /// grace period) and the node removes them once their containers stopped. Set when kubesim
    /// runs pods; otherwise a pod DELETE removes it at once (no kubelet would finish it).
    private(set) var gracefulPodDeletion = false
    /// The node that finishes deletions (pods bound elsewhere have nobody to stop them).
    private var nodeName = ""

    func enableGracefulPodDeletion(nodeName: String) {
        gracefulPodDeletion = true
        self.nodeName = nodeName
    }
    private(set) var registry = ResourceRegistry()
    /// storageKey -> "namespace/name" -> object (storage form).
    private var objects: [String: [String: JSONValue]] = [:]
    private var resourceVersion: Int64 = 0
    /// Owners and dependents by uid, kept current by `store`.
    private var owners = OwnerIndex()
    /// Objects the last writes may have given the garbage collector work: each write queues the
    /// object, its owners, its dependents and its namespace; `collectGarbage` drains the queue.
    private var collectionQueue: Set<ObjectRef> = []

    /// The first two octets of the /16 Service addresses come from (the node's `serviceSubnet`).
    let serviceSubnet: String

    init(watchHistory: Int, logger: Logger, serviceSubnet: String = "10.96") {
        self.serviceSubnet = serviceSubnet
        self.hub = WatchHub(capacity: watchHistory)
        self.logger = logger
        let now = Timestamps.format(Date())
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            resourceVersion += 1
            let namespace: JSONValue = [
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": [
                    "name": .string(name), "uid": .string(UUID().uuidString.lowercased()),
                    "creationTimestamp": .string(now), "resourceVersion": .string(String(resourceVersion)),
                    "labels": ["kubernetes.io/metadata.name": .string(name)],
                ],
                "spec": ["finalizers": ["kubernetes"]], "status": ["phase": "Active"],
            ]
            objects["/namespaces", default: [:]]["/" + name] = namespace
            owners.update(ObjectRef(storageKey: "/namespaces", key: "/" + name), old: nil, new: namespace)
        }
        hub.start(at: resourceVersion)
    }

    var currentResourceVersion: Int64 { resourceVersion }

    /// What a kind's strategy may read of the store.
    private var view: StoreView {
        let objects = self.objects
        return StoreView(objects: { Array((objects[$0] ?? [:]).values) }, serviceSubnet: serviceSubnet)
    }

    static func objectKey(_ namespace: String, _ name: String) -> String { namespace + "/" + name }

    // MARK: Reads

    func get(_ type: ResourceType, namespace: String, name: String) throws(KubeSimError) -> JSONValue {
        guard let object = objects[type.storageKey]?[Self.objectKey(namespace, name)] else {
            throw .notFound(type, name)
        }
        return object
    }

    func list(
        _ type: ResourceType, namespace: String?, labels: LabelSelector?, fields: FieldSelector?, limit: Int?,
        continueToken: String?
    ) throws(KubeSimError) -> ListPage {
        var start: String?
        var listRV = resourceVersion
        if let continueToken, !continueToken.isEmpty {
            guard let data = Data(base64Encoded: continueToken), let token = try? JSONValue.parse(Array(data)),
                let key = token["start"]?.stringValue, let rv = token["rv"]?.intValue
            else { throw .badRequest("invalid continue token") }
            start = key
            listRV = rv
            if rv < hub.floorResourceVersion {
                throw KubeSimError(
                    code: 410, reason: "Expired",
                    message:
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."
                )
            }
        }
        let all = (objects[type.storageKey] ?? [:]).sorted { $0.key < $1.key }
        var matching: [(String, JSONValue)] = []
        for (key, object) in all {
            if let start, key <= start { continue }
            if let namespace, object.value(at: ["metadata", "namespace"])?.stringValue != namespace { continue }
            if let labels, !labels.matches(object: object) { continue }
            if let fields, !fields.matches(object) { continue }
            matching.append((key, object))
        }
        if let limit, limit > 0, matching.count > limit {
            let last = matching[limit - 1].0
            let token = JSONValue.object(["rv": .int(listRV), "start": .string(last)]).serialized()
            return ListPage(
                items: matching.prefix(limit).map(\.1), resourceVersion: listRV,
                continueToken: Data(token.utf8).base64EncodedString(), remaining: matching.count - limit)
        }
        return ListPage(items: matching.map(\.1), resourceVersion: listRV, continueToken: nil, remaining: 0)
    }

    /// Opens a watch on a type (optionally one namespace). Without a resourceVersion (or "0")
    /// the current objects come first as ADDED events.
    func watch(_ type: ResourceType, namespace: String?, from: Int64?, sendInitialEvents: Bool = false) throws(KubeSimError)
        -> (id: Int, events: AsyncStream<WatchEvent>)
    {
        var initial: [WatchEvent] = []
        let from = sendInitialEvents ? nil : from
        if from == nil || from == 0 {
            for (_, object) in (objects[type.storageKey] ?? [:]).sorted(by: { $0.key < $1.key }) {
                let ns = object.value(at: ["metadata", "namespace"])?.stringValue ?? ""
                if let namespace, ns != namespace { continue }
                initial.append(
                    WatchEvent(
                        resourceVersion: Self.rv(of: object), storageKey: type.storageKey, namespace: ns, type: "ADDED",
                        object: object))
            }
        }
        return try hub.subscribe(
            storageKey: type.storageKey, namespace: namespace, from: from == 0 ? nil : from, initial: initial)
    }

    static func rv(of object: JSONValue) -> Int64 {
        Int64(object.value(at: ["metadata", "resourceVersion"])?.stringValue ?? "") ?? 0
    }

    // MARK: Writes

    private func nextResourceVersion() -> Int64 {
        resourceVersion += 1
        return resourceVersion
    }

    private func store(_ type: ResourceType, _ object: JSONValue, event: String, old: JSONValue?) -> JSONValue {
        var object = object
        let rv = nextResourceVersion()
        object.setValue(.string(String(rv)), at: ["metadata", "resourceVersion"])
        let namespace = object.value(at: ["metadata", "namespace"])?.stringValue ?? ""
        let name = object.value(at: ["metadata", "name"])?.stringValue ?? ""
        let key = Self.objectKey(namespace, name)
        let ref = ObjectRef(storageKey: type.storageKey, key: key)
        let previous = objects[type.storageKey]?[key]
        if event == "DELETED" {
            objects[type.storageKey]?[key] = nil
        } else {
            objects[type.storageKey, default: [:]][key] = object
        }
        owners.update(ref, old: previous, new: event == "DELETED" ? nil : object)
        queueForCollection(ref, previous: previous, current: object)
        hub.publish(
            WatchEvent(
                resourceVersion: rv, storageKey: type.storageKey, namespace: namespace, type: event, object: object, old: old))
        return object
    }

    func create(
        _ type: ResourceType, namespace: String, object incoming: JSONValue, manager: String, dryRun: Bool,
        managedFieldsDone: Bool = false, strict: Bool = false, version: String? = nil
    ) throws(KubeSimError) -> JSONValue {
        guard case .object = incoming else { throw .badRequest("the body of the request must be a JSON object") }
        var object = incoming
        var name = object.value(at: ["metadata", "name"])?.stringValue ?? ""
        if name.isEmpty, let prefix = object.value(at: ["metadata", "generateName"])?.stringValue, !prefix.isEmpty {
            let alphabet = Array("bcdfghjklmnpqrstvwxz2456789")
            name = prefix + String((0..<5).map { _ in alphabet.randomElement()! })
            object.setValue(.string(name), at: ["metadata", "name"])
        }
        if name.isEmpty {
            throw .invalid(
                type, "",
                [.init(reason: "FieldValueRequired", message: "Required value: name or generateName is required", field: "metadata.name")])
        }
        if let problem = Self.nameProblem(name) {
            throw .invalid(
                type, name, [.init(reason: "FieldValueInvalid", message: "Invalid value: \"\(name)\": \(problem)", field: "metadata.name")])
        }
        if type.namespaced {
            if let bodyNamespace = object.value(at: ["metadata", "namespace"])?.stringValue, !bodyNamespace.isEmpty,
                bodyNamespace != namespace
            {
                throw .badRequest("the namespace of the provided object does not match the namespace sent on the request")
            }
            let namespaceType = registry.type(forKey: "/namespaces")!
            guard let ns = objects["/namespaces"]?[Self.objectKey("", namespace)] else {
                throw .notFound(namespaceType, namespace)
            }
            if ns.value(at: ["metadata", "deletionTimestamp"]) != nil {
                throw KubeSimError(
                    code: 403, reason: "Forbidden",
                    message:
                        "\(type.qualifiedResource) \"\(name)\" is forbidden: unable to create new content in namespace \(namespace) because it is being terminated",
                    name: name, group: type.group, kind: type.resource)
            }
            object.setValue(.string(namespace), at: ["metadata", "namespace"])
        } else {
            object.setValue(nil, at: ["metadata", "namespace"])
        }
        if objects[type.storageKey]?[Self.objectKey(type.namespaced ? namespace : "", name)] != nil {
            throw .alreadyExists(type, name)
        }
        // Status is not the client's on create (built-in kinds get their initial status below).
        if type.hasStatus { object["status"] = nil }
        let now = Date()
        object["apiVersion"] = .string(type.apiVersion(type.preferredVersion))
        object["kind"] = .string(type.kind)
        for key in ["deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion", "selfLink"] {
            object.setValue(nil, at: ["metadata", key])
        }
        object.setValue(.string(UUID().uuidString.lowercased()), at: ["metadata", "uid"])
        object.setValue(.string(Timestamps.format(now)), at: ["metadata", "creationTimestamp"])
        object.setValue(1, at: ["metadata", "generation"])
        let strategy = KindStrategies.strategy(for: type)
        strategy.prepareForCreate(&object, view)
        object = Self.omittingEmptyMetadata(object)
        object = try PodSpecRules.apply(type, object, name: name, strict: strict)
        object = try customResourceChecks(type, object, old: nil, name: name, strict: strict, version: version)
        try strategy.validate(object, old: nil, type: type, name: name)
        let servedType = strategy.servedType(object)
        if let servedType {
            if let existing = registry.type(forKey: servedType.typeKey), !existing.isCustom {
                throw .invalid(type, name, [.init(reason: "FieldValueInvalid", message: "a built-in resource", field: "spec.group")])
            }
            object["status"] = strategy.servingStatus(object, now: now)
        }
        if !managedFieldsDone {
            object = FieldManagement.recordUpdate(
                old: nil, new: object, manager: manager, apiVersion: type.apiVersion(type.preferredVersion),
                subresource: nil, now: Timestamps.format(now))
        }
        if dryRun {
            object.setValue(.string(String(resourceVersion)), at: ["metadata", "resourceVersion"])
            return object
        }
        let stored = store(type, object, event: "ADDED", old: nil)
        if let servedType { registry.register(servedType) }
        // A dependent of owners that do not exist (any more) is collected at once.
        collectGarbage()
        return stored
    }

    /// Replaces an object (PUT), or its status (`subresource: "status"`).
    func update(
        _ type: ResourceType, namespace: String, name: String, object incoming: JSONValue, subresource: String?,
        manager: String, dryRun: Bool, strict: Bool = false, version: String? = nil
    ) throws(KubeSimError) -> JSONValue {
        let old = try get(type, namespace: namespace, name: name)
        return try commitUpdate(
            type, old: old, incoming: incoming, subresource: subresource, manager: manager, dryRun: dryRun,
            managedFieldsDone: false, strict: strict, version: version)
    }

    /// Read-modify-write with a patch function, atomically. `mutate` gets the current object (nil
    /// if missing) and returns the whole new object; a missing object is created only if
    /// `createIfMissing` (server-side apply).
    func patch(
        _ type: ResourceType, namespace: String, name: String, subresource: String?, manager: String, dryRun: Bool,
        createIfMissing: Bool, strict: Bool = false, version: String? = nil, mutate: (JSONValue?) throws(KubeSimError) -> PatchOutcome
    ) throws(KubeSimError) -> JSONValue {
        let current = objects[type.storageKey]?[Self.objectKey(type.namespaced ? namespace : "", name)]
        guard let current else {
            guard createIfMissing else { throw .notFound(type, name) }
            var outcome = try mutate(nil)
            outcome.object.setValue(.string(name), at: ["metadata", "name"])
            return try create(
                type, namespace: namespace, object: outcome.object, manager: manager, dryRun: dryRun,
                managedFieldsDone: outcome.managedFieldsDone, strict: strict, version: version)
        }
        let outcome = try mutate(current)
        return try commitUpdate(
            type, old: current, incoming: outcome.object, subresource: subresource, manager: manager, dryRun: dryRun,
            managedFieldsDone: outcome.managedFieldsDone, strict: strict, version: version)
    }

    private func commitUpdate(
        _ type: ResourceType, old: JSONValue, incoming: JSONValue, subresource: String?, manager: String, dryRun: Bool,
        managedFieldsDone: Bool, strict: Bool = false, version: String? = nil
    ) throws(KubeSimError) -> JSONValue {
        guard case .object = incoming else { throw .badRequest("the body of the request must be a JSON object") }
        let name = old.value(at: ["metadata", "name"])?.stringValue ?? ""
        var new = incoming
        if let bodyName = new.value(at: ["metadata", "name"])?.stringValue, !bodyName.isEmpty, bodyName != name {
            throw .badRequest("the name of the object (\(bodyName)) does not match the name on the URL (\(name))")
        }
        if let bodyUID = new.value(at: ["metadata", "uid"])?.stringValue, !bodyUID.isEmpty,
            bodyUID != old.value(at: ["metadata", "uid"])?.stringValue
        {
            // Another object of the same name (a pod recreated by its StatefulSet): as the real server.
            throw .conflict(
                type, name,
                "Precondition failed: UID in precondition: \(bodyUID), UID in object meta: \(old.value(at: ["metadata", "uid"])?.stringValue ?? "")"
            )
        }
        if let wanted = new.value(at: ["metadata", "resourceVersion"])?.stringValue, !wanted.isEmpty,
            wanted != old.value(at: ["metadata", "resourceVersion"])?.stringValue
        {
            throw .conflict(type, name, "the object has been modified; please apply your changes to the latest version and try again")
        }
        if subresource == "status" {
            var merged = old
            merged["status"] = new["status"]
            if managedFieldsDone { merged.setValue(new.value(at: ["metadata", "managedFields"]), at: ["metadata", "managedFields"]) }
            new = merged
        } else if type.hasStatus {
            new["status"] = old["status"]
        }
        for key in [
            "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "namespace", "name",
            "resourceVersion",
        ] {
            new.setValue(old.value(at: ["metadata", key]), at: ["metadata", key])
        }
        if new.value(at: ["metadata", "managedFields"]) == nil {
            new.setValue(old.value(at: ["metadata", "managedFields"]), at: ["metadata", "managedFields"])
        }
        new["apiVersion"] = old["apiVersion"]
        new["kind"] = old["kind"]
        let strategy = KindStrategies.strategy(for: type)
        strategy.prepareForUpdate(&new, old: old, subresource: subresource)
        if old.value(at: ["metadata", "deletionTimestamp"]) != nil {
            let before = Set((old.value(at: ["metadata", "finalizers"])?.arrayValue ?? []).compactMap(\.stringValue))
            let after = (new.value(at: ["metadata", "finalizers"])?.arrayValue ?? []).compactMap(\.stringValue)
            if after.contains(where: { !before.contains($0) }) {
                throw .invalid(
                    type, name,
                    [
                        .init(
                            reason: "FieldValueForbidden",
                            message: "Forbidden: no new finalizers can be added if the object is being deleted",
                            field: "metadata.finalizers")
                    ])
            }
        }
        try strategy.validate(new, old: old, type: type, name: name)
        new = Self.omittingEmptyMetadata(new)
        if subresource == nil { new = try PodSpecRules.apply(type, new, name: name, strict: strict) }
        new = try customResourceChecks(type, new, old: old, name: name, strict: strict, version: version)
        if Self.specPart(old) != Self.specPart(new) {
            let generation = old.value(at: ["metadata", "generation"])?.intValue ?? 1
            new.setValue(.int(generation + 1), at: ["metadata", "generation"])
        }
        if Self.withoutVolatile(new) == Self.withoutVolatile(old) { return old }
        if !managedFieldsDone {
            new = FieldManagement.recordUpdate(
                old: old, new: new, manager: manager, apiVersion: old["apiVersion"]?.stringValue ?? "",
                subresource: subresource, now: Timestamps.format(Date()))
        }
        if dryRun { return new }
        if let served = strategy.servedType(new) {
            new["status"] = strategy.servingStatus(new, now: Date())
            registry.register(served)
        }
        let stored = store(type, new, event: "MODIFIED", old: old)
        if Self.finalizers(stored).isEmpty, stored.value(at: ["metadata", "deletionTimestamp"]) != nil,
            !Self.isTerminatingPod(type, stored)
        {
            let removed = remove(type, stored)
            collectGarbage()
            return removed
        }
        collectGarbage()
        return stored
    }

    /// DELETE: finalizers and propagation policy decide between marking and removing.
    func delete(
        _ type: ResourceType, namespace: String, name: String, propagationPolicy: String?, preconditionUID: String?,
        preconditionResourceVersion: String?, dryRun: Bool, gracePeriodSeconds: Int? = nil
    ) throws(KubeSimError) -> JSONValue {
        let object = try get(type, namespace: namespace, name: name)
        try KindStrategies.strategy(for: type).checkDelete(type: type, name: name)
        if let uid = preconditionUID, uid != object.value(at: ["metadata", "uid"])?.stringValue {
            throw .conflict(
                type, name,
                "Precondition failed: UID in precondition: \(uid), UID in object meta: \(object.value(at: ["metadata", "uid"])?.stringValue ?? "")"
            )
        }
        if let rv = preconditionResourceVersion, rv != object.value(at: ["metadata", "resourceVersion"])?.stringValue {
            throw .conflict(
                type, name,
                "Precondition failed: ResourceVersion in precondition: \(rv), ResourceVersion in object meta: \(object.value(at: ["metadata", "resourceVersion"])?.stringValue ?? "")"
            )
        }
        if dryRun { return object }
        let result = deleteObject(type, object, policy: propagationPolicy ?? "Background", gracePeriod: gracePeriodSeconds)
        collectGarbage()
        return result
    }

    /// Marks (finalizers) or removes one object.
    @discardableResult
    private func deleteObject(_ type: ResourceType, _ object: JSONValue, policy: String, gracePeriod: Int? = nil) -> JSONValue {
        var updated = object
        var finalizers = Self.finalizers(object)
        let deletion = KindStrategies.strategy(for: type).deletion
        if deletion == .gracefulPod, gracefulPodDeletion {
            if let marked = markTerminating(object, gracePeriod: gracePeriod) { return marked }
            if Self.isTerminatingPod(type, object) {
                // Grace 0 on a marked pod: no longer waiting for the node (finalizers may still hold it).
                updated.setValue(0, at: ["metadata", "deletionGracePeriodSeconds"])
                if finalizers.isEmpty { return remove(type, updated) }
                return store(type, updated, event: "MODIFIED", old: object)
            }
        }
        if deletion == .namespace {
            if object.value(at: ["metadata", "deletionTimestamp"]) == nil {
                updated.setValue(.string(Timestamps.format(Date())), at: ["metadata", "deletionTimestamp"])
                updated.setValue(0, at: ["metadata", "deletionGracePeriodSeconds"])
                updated.setValue("Terminating", at: ["status", "phase"])
                return store(type, updated, event: "MODIFIED", old: object)
            }
            return object
        }
        if policy == "Foreground", !finalizers.contains("foregroundDeletion"), hasDependents(object) {
            finalizers.append("foregroundDeletion")
        }
        if policy == "Orphan", !finalizers.contains("orphan"), hasDependents(object) { finalizers.append("orphan") }
        if finalizers.isEmpty { return remove(type, object) }
        let alreadyDeleting = object.value(at: ["metadata", "deletionTimestamp"]) != nil
        if alreadyDeleting, finalizers == Self.finalizers(object) { return object }
        updated.setValue(.array(finalizers.map { .string($0) }), at: ["metadata", "finalizers"])
        if !alreadyDeleting {
            updated.setValue(.string(Timestamps.format(Date())), at: ["metadata", "deletionTimestamp"])
            updated.setValue(0, at: ["metadata", "deletionGracePeriodSeconds"])
            let generation = object.value(at: ["metadata", "generation"])?.intValue ?? 1
            updated.setValue(.int(generation + 1), at: ["metadata", "generation"])
        }
        return store(type, updated, event: "MODIFIED", old: object)
    }

    /// A pod on a node with a grace period left is marked (deletionTimestamp = now + grace,
    /// deletionGracePeriodSeconds) for the node to stop; a shorter grace period on a second
    /// DELETE shortens it. nil: remove now (grace 0, not on a node, or finished).
    private func markTerminating(_ pod: JSONValue, gracePeriod: Int?) -> JSONValue? {
        let phase = pod.value(at: ["status", "phase"])?.stringValue
        guard pod.value(at: ["spec", "nodeName"])?.stringValue == nodeName, !nodeName.isEmpty, phase != "Succeeded",
            phase != "Failed"
        else { return nil }
        let grace = max(0, gracePeriod ?? Int(pod.value(at: ["spec", "terminationGracePeriodSeconds"])?.intValue ?? 30))
        if grace == 0 { return nil }
        if let current = pod.value(at: ["metadata", "deletionGracePeriodSeconds"])?.intValue, current <= grace {
            return pod
        }
        var updated = pod
        updated.setValue(
            .string(Timestamps.format(Date().addingTimeInterval(Double(grace)))), at: ["metadata", "deletionTimestamp"])
        updated.setValue(.int(Int64(grace)), at: ["metadata", "deletionGracePeriodSeconds"])
        return store(Workloads.podType, updated, event: "MODIFIED", old: pod)
    }

    private func remove(_ type: ResourceType, _ object: JSONValue) -> JSONValue {
        let removed = store(type, object, event: "DELETED", old: nil)
        // An object that served a type takes the type's objects with it.
        if let served = KindStrategies.strategy(for: type).servedType(object) {
            for (_, item) in (objects[served.storageKey] ?? [:]).sorted(by: { $0.key < $1.key }) {
                _ = store(served, item, event: "DELETED", old: nil)
            }
            objects[served.storageKey] = nil
            registry.unregister(group: served.group, resource: served.resource)
        }
        return removed
    }

    /// DELETE on a collection: every matching object, as if deleted one by one.
    func deleteCollection(
        _ type: ResourceType, namespace: String?, labels: LabelSelector?, fields: FieldSelector?, propagationPolicy: String?
    ) throws(KubeSimError) -> [JSONValue] {
        let page = try list(type, namespace: namespace, labels: labels, fields: fields, limit: nil, continueToken: nil)
        var deleted: [JSONValue] = []
        for object in page.items {
            deleted.append(deleteObject(type, object, policy: propagationPolicy ?? "Background"))
        }
        collectGarbage()
        return deleted
    }

    // MARK: Garbage collection

    private func hasDependents(_ owner: JSONValue) -> Bool {
        OwnerIndex.uid(owner).map(owners.hasDependents) ?? false
    }

    /// What a write to `ref` can give the collector work on: the object itself, the objects
    /// it names as owners (one waiting for its dependents to go), its dependents (their owner
    /// changed), and its namespace (one terminating waits for its members).
    private func queueForCollection(_ ref: ObjectRef, previous: JSONValue?, current: JSONValue) {
        collectionQueue.insert(ref)
        for object in [previous, current].compactMap({ $0 }) {
            for uid in OwnerIndex.ownerUIDs(object) {
                if let owner = owners.byUID[uid] { collectionQueue.insert(owner) }
            }
        }
        if let uid = OwnerIndex.uid(current) { collectionQueue.formUnion(owners.dependents(of: uid)) }
        if let namespace = current.value(at: ["metadata", "namespace"])?.stringValue, !namespace.isEmpty {
            collectionQueue.insert(ObjectRef(storageKey: "/namespaces", key: Self.objectKey("", namespace)))
        }
    }

    /// Settles owner references, finalizer-free deletions and terminating namespaces (the
    /// garbage collector and the namespace controller, run synchronously): each queued object
    /// gets `GarbageCollector`'s decision, and what carrying it out changes is queued in turn.
    private func collectGarbage() {
        var steps = 0
        while let ref = collectionQueue.min() {
            collectionQueue.remove(ref)
            steps += 1
            if steps > 100_000 {
                logger.warning("garbage collection did not settle")
                collectionQueue.removeAll()
                return
            }
            guard let type = registry.type(forKey: ref.storageKey), let object = objects[ref.storageKey]?[ref.key] else { continue }
            collect(type, object, ref: ref)
        }
    }

    private func collect(_ type: ResourceType, _ object: JSONValue, ref: ObjectRef) {
        let isNamespace = type.typeKey == "/namespaces"
        var members: (live: ObjectRef?, any: Bool)?
        if isNamespace, object.value(at: ["metadata", "deletionTimestamp"]) != nil {
            members = namespaceMembers(object.value(at: ["metadata", "name"])?.stringValue ?? "")
        }
        let decision = GarbageCollector.decide(
            object, isNamespace: isNamespace, isTerminatingPod: Self.isTerminatingPod(type, object),
            hasDependents: hasDependents(object),
            owner: { uid in self.owners.byUID[uid].flatMap { self.objects[$0.storageKey]?[$0.key] } }, members: members)
        switch decision {
        case .nothing:
            return
        case .releaseDependentFinalizers(let left):
            var updated = object
            updated.setValue(left.isEmpty ? nil : .array(left.map { .string($0) }), at: ["metadata", "finalizers"])
            let stored = store(type, updated, event: "MODIFIED", old: object)
            if left.isEmpty { _ = remove(type, stored) }
        case .remove:
            _ = remove(type, object)
        case .delete(let policy):
            deleteObject(type, object, policy: policy)
        case .orphan:
            var updated = object
            updated.setValue(nil, at: ["metadata", "ownerReferences"])
            _ = store(type, updated, event: "MODIFIED", old: object)
        case .keepOwnerReferences(let kept):
            var updated = object
            updated.setValue(.array(kept), at: ["metadata", "ownerReferences"])
            _ = store(type, updated, event: "MODIFIED", old: object)
        case .deleteMember(let member):
            if let memberType = registry.type(forKey: member.storageKey), let memberObject = objects[member.storageKey]?[member.key] {
                deleteObject(memberType, memberObject, policy: "Background")
            }
            collectionQueue.insert(ref)  // on to the next member
        case .removeNamespace:
            var updated = object
            updated.setValue(nil, at: ["spec", "finalizers"])
            _ = remove(type, updated)
        }
    }

    /// A namespace's first member (in storage order) not being deleted yet, and whether it
    /// has members at all.
    private func namespaceMembers(_ namespace: String) -> (live: ObjectRef?, any: Bool) {
        var any = false
        for (storageKey, members) in objects.sorted(by: { $0.key < $1.key }) {
            guard let memberType = registry.type(forKey: storageKey), memberType.namespaced else { continue }
            for (key, member) in members.sorted(by: { $0.key < $1.key })
            where member.value(at: ["metadata", "namespace"])?.stringValue == namespace {
                any = true
                if member.value(at: ["metadata", "deletionTimestamp"]) == nil {
                    return (ObjectRef(storageKey: storageKey, key: key), true)
                }
            }
        }
        return (nil, any)
    }

    // MARK: Helpers

    /// A pod the node is still stopping (its grace period not ended): no update removes it.
    static func isTerminatingPod(_ type: ResourceType, _ object: JSONValue) -> Bool {
        type.typeKey == "/pods" && (object.value(at: ["metadata", "deletionGracePeriodSeconds"])?.intValue ?? 0) > 0
    }

    /// ObjectMeta's lists and maps are `omitempty` on the real server: a JSON patch that removes
    /// the last finalizer leaves no `finalizers: []` behind.
    static func omittingEmptyMetadata(_ object: JSONValue) -> JSONValue {
        guard let metadata = object["metadata"]?.objectValue else { return object }
        var result = object
        var kept = metadata
        for key in ["labels", "annotations", "finalizers", "ownerReferences", "managedFields"] {
            if let value = kept[key], value.arrayValue?.isEmpty == true || value.objectValue?.isEmpty == true {
                kept[key] = nil
            }
        }
        if kept.count != metadata.count { result["metadata"] = .object(kept) }
        return result
    }

    static func finalizers(_ object: JSONValue) -> [String] {
        (object.value(at: ["metadata", "finalizers"])?.arrayValue ?? []).compactMap(\.stringValue)
    }

    /// What `metadata.generation` tracks: everything except metadata and status.
    static func specPart(_ object: JSONValue) -> JSONValue {
        var o = object
        o["metadata"] = nil
        o["status"] = nil
        o["apiVersion"] = nil
        o["kind"] = nil
        return o
    }

    static func withoutVolatile(_ object: JSONValue) -> JSONValue {
        var o = object
        o.setValue(nil, at: ["metadata", "resourceVersion"])
        o.setValue(nil, at: ["metadata", "managedFields"])
        return o
    }

    /// A DNS subdomain (RFC 1123): what most kinds require of names.
    static func nameProblem(_ name: String) -> String? {
        if name.count > 253 { return "must be no more than 253 characters" }
        let allowed = name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "." }
        let edges = name.first.map { $0.isLetter || $0.isNumber } == true && name.last.map { $0.isLetter || $0.isNumber } == true
        if !allowed || !edges {
            return
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        }
        return nil
    }

    /// Defaults, pruning and validation (shape, then the CEL rules; transition rules against
    /// `old` on updates) of a custom resource against its schema.
    /// With `strict` (`fieldValidation=Strict`), unknown fields are a 400 instead of being dropped.
    /// The schema is the one of the version the request used (else the storage version's).
    private func customResourceChecks(
        _ type: ResourceType, _ object: JSONValue, old: JSONValue?, name: String, strict: Bool, version: String?
    ) throws(KubeSimError) -> JSONValue {
        guard type.isCustom, let schema = version.flatMap({ type.schemas[$0] }) ?? type.schemas[type.preferredVersion] else {
            return object
        }
        var o = Schema.applyDefaults(object, schema)
        var pruned: [String] = []
        let kept = (o["apiVersion"], o["kind"], o["metadata"])
        Schema.prune(&o, schema, path: "", pruned: &pruned)
        (o["apiVersion"], o["kind"], o["metadata"]) = kept
        // metadata is the API server's, whatever the schema says of it (CRDs declare `metadata: {type: object}`).
        pruned.removeAll { $0 == "apiVersion" || $0 == "kind" || $0 == "metadata" || $0.hasPrefix("metadata.") }
        if strict, !pruned.isEmpty {
            let list = pruned.map { "unknown field \"\($0)\"" }.joined(separator: ", ")
            throw KubeSimError(
                code: 400, reason: "BadRequest",
                message:
                    "\(type.kind) in version \"\(type.preferredVersion)\" cannot be handled as a \(type.kind): strict decoding error: \(list)"
            )
        }
        var causes: [KubeSimError.Cause] = []
        Schema.validate(o, schema, path: "", causes: &causes)
        // Rules run only on a value that has the schema's shape (as the real server: CEL sees typed values).
        if causes.isEmpty { Schema.validateRules(o, old: old, schema, path: "", causes: &causes) }
        if !causes.isEmpty { throw .invalid(type, name, causes) }
        return o
    }
}
