import Foundation

/// Field ownership and server-side apply: a faithful subset.
///
/// What is supported:
/// - Every write records its field manager in `metadata.managedFields` (`fieldsType: FieldsV1`,
///   `operation: Apply` or `Update`, `apiVersion`, `time`, `subresource` for `/status`). The
///   manager is the `fieldManager` query parameter, else (updates only) the User-Agent's
///   program name; an apply without `fieldManager` is 422, as on the real server.
/// - Field sets are leaf paths: object members are followed down to scalars and lists,
///   which are owned whole (lists are atomic: no `k:`/`v:` list-item ownership, so two
///   managers applying different containers of one list conflict on the whole list).
/// - Apply (`PATCH` with `application/apply-patch+yaml`, a JSON body): a field owned by another
///   manager whose value the applied configuration changes is a conflict: 409 `Conflict` with
///   one `FieldManagerConflict` cause per field, unless `force=true`, which takes the field over.
///   Fields the applier owned before and no longer applies are removed from the object unless
///   another manager also owns them. The applied configuration is merged into the object (maps
///   recursively, lists replaced). Applying to a missing object creates it (201). A conflict
///   names an Apply owner by name and an Update owner with its apiVersion and time, as the
///   real server's message does.
/// - `Update` operations (create, PUT, non-apply PATCH) take ownership of the fields whose
///   values they change, removing them from the other managers.
/// Not supported: YAML apply bodies, list-item (`k:`/`v:`) ownership, `.` self markers on
/// read-back, unions, and the managedFields reset with an empty list.
enum FieldManagement {
    typealias FieldPath = [String]

    /// The real server's words for the owner of a conflicting field (the apiserver's
    /// `printManager`): an Apply owner by name, an Update owner with its version and time.
    static func describeOwner(_ entry: Entry) -> String {
        var owner = "\"\(entry.manager)\""
        if let subresource = entry.subresource, !subresource.isEmpty { owner += " with subresource \"\(subresource)\"" }
        return entry.operation == "Update" ? "\(owner) using \(entry.apiVersion) at \(entry.time)" : owner
    }

    struct Entry: Sendable {
        var manager: String
        var operation: String
        var apiVersion: String
        var subresource: String?
        var time: String
        var fields: Set<FieldPath>
    }

    /// Leaf paths of an object (server-set metadata excluded).
    static func leafPaths(_ object: JSONValue) -> Set<FieldPath> {
        var out: Set<FieldPath> = []
        guard case .object(let top) = object else { return out }
        for (key, value) in top where key != "apiVersion" && key != "kind" {
            if key == "metadata" {
                for field in ["labels", "annotations"] {
                    if let map = value[field]?.objectValue {
                        for (k, v) in map { collect(v, ["metadata", field, k], &out) }
                    }
                }
                for field in ["finalizers", "ownerReferences"] where value[field] != nil {
                    out.insert(["metadata", field])
                }
                continue
            }
            collect(value, [key], &out)
        }
        return out
    }

    private static func collect(_ value: JSONValue, _ path: FieldPath, _ out: inout Set<FieldPath>) {
        if case .object(let o) = value {
            // Maps are granular: an empty map owns nothing (its members may belong to others).
            for (k, v) in o { collect(v, path + [k], &out) }
        } else {
            out.insert(path)
        }
    }

    static func decode(_ object: JSONValue) -> [Entry] {
        (object.value(at: ["metadata", "managedFields"])?.arrayValue ?? []).map { item in
            var fields: Set<FieldPath> = []
            decodeFields(item["fieldsV1"] ?? [:], [], &fields)
            return Entry(
                manager: item["manager"]?.stringValue ?? "", operation: item["operation"]?.stringValue ?? "Update",
                apiVersion: item["apiVersion"]?.stringValue ?? "", subresource: item["subresource"]?.stringValue,
                time: item["time"]?.stringValue ?? "", fields: fields)
        }
    }

    private static func decodeFields(_ node: JSONValue, _ path: FieldPath, _ out: inout Set<FieldPath>) {
        guard let members = node.objectValue else { return }
        let children = members.filter { $0.key.hasPrefix("f:") }
        if children.isEmpty {
            if !path.isEmpty { out.insert(path) }
            return
        }
        for (key, value) in children { decodeFields(value, path + [String(key.dropFirst(2))], &out) }
    }

    static func encode(_ entries: [Entry]) -> JSONValue {
        .array(
            entries.filter { !$0.fields.isEmpty }.map { entry in
                var fields = JSONValue.object([:])
                for path in entry.fields { fields.setValue(.object([:]), at: path.map { "f:" + $0 }) }
                var item: [String: JSONValue] = [
                    "manager": .string(entry.manager), "operation": .string(entry.operation),
                    "apiVersion": .string(entry.apiVersion), "time": .string(entry.time), "fieldsType": "FieldsV1",
                    "fieldsV1": fields,
                ]
                if let subresource = entry.subresource { item["subresource"] = .string(subresource) }
                return .object(item)
            })
    }

    static func overlaps(_ a: FieldPath, _ b: FieldPath) -> Bool {
        let n = min(a.count, b.count)
        return Array(a.prefix(n)) == Array(b.prefix(n))
    }

    /// Records an `Update` by `manager`: it owns every leaf whose value changed.
    static func recordUpdate(
        old: JSONValue?, new: JSONValue, manager: String, apiVersion: String, subresource: String?, now: String
    ) -> JSONValue {
        // Start from the managedFields the new object carries: the stored ones, or what the
        // client wrote (kubectl rewrites them when it upgrades client-side apply to server-side).
        var entries = decode(new)
        let newLeaves = leafPaths(new)
        let changed = newLeaves.filter { path in old?.value(at: path) != new.value(at: path) }
        let removed: Set<FieldPath> = old.map { leafPaths($0).subtracting(newLeaves) } ?? []
        for i in entries.indices {
            entries[i].fields = entries[i].fields.filter { path in
                !changed.contains(where: { overlaps($0, path) }) && !removed.contains(path)
            }
        }
        if !changed.isEmpty {
            if let i = entries.firstIndex(where: {
                $0.manager == manager && $0.operation == "Update" && $0.subresource == subresource
            }) {
                entries[i].fields.formUnion(changed)
                entries[i].time = now
                entries[i].apiVersion = apiVersion
            } else {
                entries.append(
                    Entry(
                        manager: manager, operation: "Update", apiVersion: apiVersion, subresource: subresource, time: now,
                        fields: changed))
            }
        }
        var result = new
        let encoded = encode(entries)
        result.setValue(encoded.arrayValue?.isEmpty == false ? encoded : nil, at: ["metadata", "managedFields"])
        return result
    }

    /// Server-side apply of `config` by `manager` onto `current` (nil: create).
    /// - Returns: the new object, with `metadata.managedFields` updated.
    /// - Throws: 409 Conflict listing the fields other managers own, unless `force`.
    static func apply(
        current: JSONValue?, config: JSONValue, manager: String, force: Bool, apiVersion: String, subresource: String?,
        now: String, type: ResourceType, name: String
    ) throws(KubeSimError) -> JSONValue {
        var entries = current.map(decode) ?? []
        // The status subresource owns only status; the main resource never owns status.
        var applied = leafPaths(config)
        if subresource == "status" {
            applied = applied.filter { $0.first == "status" }
        } else if type.hasStatus {
            applied = applied.filter { $0.first != "status" }
        }
        var conflicts: [(owner: Entry, path: FieldPath)] = []
        for (i, entry) in entries.enumerated() where !(entry.manager == manager && entry.operation == "Apply") {
            for owned in entry.fields {
                for path in applied where overlaps(path, owned) {
                    let shorter = path.count <= owned.count ? path : owned
                    if current?.value(at: shorter) != config.value(at: shorter) {
                        if force {
                            entries[i].fields.remove(owned)
                        } else {
                            conflicts.append((entry, owned))
                        }
                    }
                }
            }
        }
        if !conflicts.isEmpty {
            let causes = conflicts.map {
                KubeSimError.Cause(
                    reason: "FieldManagerConflict", message: "conflict with \(Self.describeOwner($0.owner))",
                    field: "." + $0.path.joined(separator: "."))
            }
            // The real server's wording: one conflict inline, several as a list.
            let message: String
            if causes.count == 1 {
                message = "Apply failed with 1 conflict: \(causes[0].message): \(causes[0].field)"
            } else {
                message =
                    "Apply failed with \(causes.count) conflicts: "
                    + causes.map { "\($0.message): \($0.field)" }.joined(separator: "\n")
            }
            throw KubeSimError(
                code: 409, reason: "Conflict", message: message,
                name: name, group: type.group, kind: type.resource, causes: causes)
        }
        var result = current ?? .object([:])
        let mine = entries.firstIndex { $0.manager == manager && $0.operation == "Apply" && $0.subresource == subresource }
        if let mine {
            let others = entries.enumerated().filter { $0.offset != mine }.flatMap { $0.element.fields }
            for path in entries[mine].fields.subtracting(applied) where !others.contains(where: { overlaps($0, path) }) {
                result.setValue(nil, at: path)
            }
        }
        result = deepMerge(result, config)
        if let mine {
            entries[mine].fields = applied
            entries[mine].time = now
            entries[mine].apiVersion = apiVersion
        } else {
            entries.append(
                Entry(manager: manager, operation: "Apply", apiVersion: apiVersion, subresource: subresource, time: now, fields: applied))
        }
        result.setValue(encode(entries), at: ["metadata", "managedFields"])
        return result
    }

    /// Maps merge recursively; everything else (lists, scalars) replaces.
    static func deepMerge(_ base: JSONValue, _ overlay: JSONValue) -> JSONValue {
        guard case .object(let o) = overlay, case .object(var b) = base else { return overlay }
        for (key, value) in o { b[key] = deepMerge(b[key] ?? .null, value) }
        return .object(b)
    }
}
