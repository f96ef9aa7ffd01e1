/// Where an object lives in the store: its type's storage key and `namespace/name`.
struct ObjectRef: Hashable, Comparable, Sendable {
    var storageKey: String
    var key: String

    static func < (a: ObjectRef, b: ObjectRef) -> Bool { (a.storageKey, a.key) < (b.storageKey, b.key) }
}

/// Who owns whom, kept current on every write: the collector finds an object by uid and an
/// owner's dependents without scanning the store.
struct OwnerIndex: Sendable {
    private(set) var byUID: [String: ObjectRef] = [:]
    /// Owner uid -> the objects whose ownerReferences name it.
    private var dependents: [String: Set<ObjectRef>] = [:]

    /// Records that the object at `ref` went from `old` to `new` (nil: absent).
    mutating func update(_ ref: ObjectRef, old: JSONValue?, new: JSONValue?) {
        if let old {
            if let uid = Self.uid(old), byUID[uid] == ref { byUID[uid] = nil }
            for owner in Self.ownerUIDs(old) {
                dependents[owner]?.remove(ref)
                if dependents[owner]?.isEmpty == true { dependents[owner] = nil }
            }
        }
        if let new {
            if let uid = Self.uid(new) { byUID[uid] = ref }
            for owner in Self.ownerUIDs(new) { dependents[owner, default: []].insert(ref) }
        }
    }

    func dependents(of uid: String) -> Set<ObjectRef> { dependents[uid] ?? [] }
    func hasDependents(_ uid: String) -> Bool { !(dependents[uid] ?? []).isEmpty }

    static func uid(_ object: JSONValue) -> String? { object.value(at: ["metadata", "uid"])?.stringValue }

    static func ownerUIDs(_ object: JSONValue) -> [String] {
        (object.value(at: ["metadata", "ownerReferences"])?.arrayValue ?? []).compactMap { $0["uid"]?.stringValue }
    }
}

/// The garbage collector and the namespace controller, as decisions: what one object needs,
/// given its owners and dependents. The store carries the decision out and queues whatever
/// the change can affect (the object's owners, dependents and namespace), until nothing is left.
enum GarbageCollector {
    enum Decision: Equatable {
        case nothing
        /// A deleting object whose `foregroundDeletion`/`orphan` finalizer waited for dependents
        /// that are gone: drop those finalizers (and remove it when none is left).
        case releaseDependentFinalizers(left: [String])
        /// Deleting, no finalizer left: remove it.
        case remove
        /// Every owner is gone: delete it (`Background`), or `Foreground` when an owner is
        /// being deleted in the foreground.
        case delete(policy: String)
        /// The owners asked to orphan their dependents: drop the owner references.
        case orphan
        /// Some owners are gone: keep the references to the others.
        case keepOwnerReferences([JSONValue])
        /// A terminating namespace's member to delete.
        case deleteMember(ObjectRef)
        /// A terminating namespace with nothing left in it: remove it.
        case removeNamespace
    }

    /// - Parameters:
    ///   - owner: an owner by uid (nil: gone).
    ///   - hasDependents: whether anything names this object as its owner.
    ///   - firstLiveMember: for a terminating namespace, its first member not yet deleting (nil:
    ///     none), and whether it has members at all.
    static func decide(
        _ object: JSONValue, isNamespace: Bool, isTerminatingPod: Bool, hasDependents: Bool,
        owner: (String) -> JSONValue?, members: (live: ObjectRef?, any: Bool)?
    ) -> Decision {
        let deleting = object.value(at: ["metadata", "deletionTimestamp"]) != nil
        let finalizers = ResourceStore.finalizers(object)
        if deleting, !hasDependents, finalizers.contains("foregroundDeletion") || finalizers.contains("orphan") {
            return .releaseDependentFinalizers(left: finalizers.filter { $0 != "foregroundDeletion" && $0 != "orphan" })
        }
        if deleting, finalizers.isEmpty, !isNamespace, !isTerminatingPod { return .remove }
        let references = object.value(at: ["metadata", "ownerReferences"])?.arrayValue ?? []
        if !references.isEmpty {
            var kept: [JSONValue] = []
            var liveOwner = false
            var foregroundOwner = false
            var anyOwnerExists = false
            for reference in references {
                guard let uid = reference["uid"]?.stringValue, let found = owner(uid) else { continue }
                anyOwnerExists = true
                let ownerFinalizers = ResourceStore.finalizers(found)
                let ownerDeleting = found.value(at: ["metadata", "deletionTimestamp"]) != nil
                if ownerDeleting, ownerFinalizers.contains("orphan") { continue }
                kept.append(reference)
                if ownerDeleting, ownerFinalizers.contains("foregroundDeletion") {
                    foregroundOwner = true
                } else {
                    liveOwner = true
                }
            }
            if !liveOwner, !foregroundOwner {
                if !deleting {
                    // Orphaned: an owner that still exists asked to keep its dependents.
                    if kept.count != references.count, anyOwnerExists { return .orphan }
                    return .delete(policy: "Background")
                }
            } else if !liveOwner, foregroundOwner, !deleting {
                return .delete(policy: "Foreground")
            } else if kept.count != references.count, liveOwner {
                return .keepOwnerReferences(kept)
            }
        }
        if isNamespace, deleting, let members {
            if let live = members.live { return .deleteMember(live) }
            if !members.any, finalizers.isEmpty { return .removeNamespace }
        }
        return .nothing
    }
}
