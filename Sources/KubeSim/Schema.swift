/// Structural-schema handling of custom resources: defaulting, pruning and validation against
/// a CRD version's `openAPIV3Schema` (the subset: type, properties, items,
/// additionalProperties, required, enum, minimum/maximum, minLength/maxLength, minItems/maxItems,
/// pattern, default, nullable, x-kubernetes-preserve-unknown-fields, x-kubernetes-int-or-string).
enum Schema {
    /// Fills in `default`s of missing properties, recursively.
    static func applyDefaults(_ value: JSONValue, _ schema: JSONValue) -> JSONValue {
        switch value {
        case .object(var o):
            if let properties = schema["properties"]?.objectValue {
                for (key, sub) in properties {
                    if o[key] == nil, let d = sub["default"] { o[key] = d }
                    if let child = o[key] { o[key] = applyDefaults(child, sub) }
                }
            } else if let additional = schema["additionalProperties"], additional.objectValue != nil {
                for (key, child) in o { o[key] = applyDefaults(child, additional) }
            }
            return .object(o)
        case .array(let a):
            guard let items = schema["items"] else { return value }
            return .array(a.map { applyDefaults($0, items) })
        default:
            return value
        }
    }

    /// Removes fields the schema does not declare; returns the pruned paths.
    static func prune(_ value: inout JSONValue, _ schema: JSONValue, path: String, pruned: inout [String]) {
        if schema["x-kubernetes-preserve-unknown-fields"]?.boolValue == true, schema["properties"] == nil { return }
        switch value {
        case .object(var o):
            let properties = schema["properties"]?.objectValue
            let additional = schema["additionalProperties"]
            let preserve = schema["x-kubernetes-preserve-unknown-fields"]?.boolValue == true
            for (key, var child) in o {
                let childPath = path.isEmpty ? key : "\(path).\(key)"
                if let sub = properties?[key] {
                    prune(&child, sub, path: childPath, pruned: &pruned)
                    o[key] = child
                } else if let additional, additional.objectValue != nil {
                    prune(&child, additional, path: childPath, pruned: &pruned)
                    o[key] = child
                } else if additional?.boolValue == true || preserve || (properties == nil && schema["type"] == nil) {
                    continue
                } else if properties != nil || schema["type"]?.stringValue == "object" {
                    o[key] = nil
                    pruned.append(childPath)
                }
            }
            value = .object(o)
        case .array(var a):
            guard let items = schema["items"] else { return }
            for i in a.indices { prune(&a[i], items, path: "\(path)[\(i)]", pruned: &pruned) }
            value = .array(a)
        default:
            return
        }
    }

    /// Validation causes (`FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, ...).
    static func validate(_ value: JSONValue, _ schema: JSONValue, path: String, causes: inout [KubeSimError.Cause]) {
        if value.isNull {
            if schema["nullable"]?.boolValue != true, schema["type"] != nil {
                causes.append(
                    .init(
                        reason: "FieldValueTypeInvalid",
                        message: "Invalid value: \"null\": \(path) in body must be of type \(schema["type"]?.stringValue ?? "")",
                        field: path))
            }
            return
        }
        let intOrString = schema["x-kubernetes-int-or-string"]?.boolValue == true
        if let type = schema["type"]?.stringValue, !intOrString {
            let ok: Bool
            switch (type, value) {
            case ("object", .object), ("array", .array), ("string", .string), ("boolean", .bool), ("integer", .int): ok = true
            case ("integer", .double(let d)): ok = d == d.rounded()
            case ("number", .int), ("number", .double): ok = true
            default: ok = false
            }
            if !ok {
                causes.append(
                    .init(
                        reason: "FieldValueTypeInvalid",
                        message: "Invalid value: \"\(describe(value))\": \(path) in body must be of type \(type): \"\(describe(value))\"",
                        field: path))
                return
            }
        }
        if let allowed = schema["enum"]?.arrayValue, !allowed.contains(value) {
            let list = allowed.map { "\"\(describe($0))\"" }.joined(separator: ", ")
            causes.append(
                .init(
                    reason: "FieldValueNotSupported", message: "Unsupported value: \"\(describe(value))\": supported values: \(list)",
                    field: path))
        }
        switch value {
        case .int, .double:
            let number: Double = if case .int(let i) = value { Double(i) } else if case .double(let d) = value { d } else { 0 }
            if let minimum = schema["minimum"].flatMap(asDouble), number < minimum {
                causes.append(
                    .init(
                        reason: "FieldValueInvalid",
                        message:
                            "Invalid value: \(describe(value)): \(path) in body should be greater than or equal to \(describe(schema["minimum"]!))",
                        field: path))
            }
            if let maximum = schema["maximum"].flatMap(asDouble), number > maximum {
                causes.append(
                    .init(
                        reason: "FieldValueInvalid",
                        message:
                            "Invalid value: \(describe(value)): \(path) in body should be less than or equal to \(describe(schema["maximum"]!))",
                        field: path))
            }
        case .string(let s):
            if let minLength = schema["minLength"]?.intValue, s.count < minLength {
                causes.append(
                    .init(
                        reason: "FieldValueInvalid",
                        message: "Invalid value: \"\(s)\": \(path) in body should be at least \(minLength) chars long", field: path))
            }
            if let maxLength = schema["maxLength"]?.intValue, s.count > maxLength {
                causes.append(.init(reason: "FieldValueTooLong", message: "Too long: may not be more than \(maxLength) bytes", field: path))
            }
            if let pattern = schema["pattern"]?.stringValue, let regex = try? Regex(pattern), (try? regex.firstMatch(in: s)) == nil {
                causes.append(
                    .init(
                        reason: "FieldValueInvalid", message: "Invalid value: \"\(s)\": \(path) in body should match '\(pattern)'",
                        field: path))
            }
        case .array(let a):
            if let minItems = schema["minItems"]?.intValue, a.count < minItems {
                causes.append(
                    .init(
                        reason: "FieldValueInvalid",
                        message: "Invalid value: \(a.count): \(path) in body should have at least \(minItems) items", field: path))
            }
            if let maxItems = schema["maxItems"]?.intValue, a.count > maxItems {
                causes.append(
                    .init(reason: "FieldValueTooMany", message: "Too many: \(a.count): must have at most \(maxItems) items", field: path))
            }
            if let items = schema["items"] {
                for (i, item) in a.enumerated() { validate(item, items, path: "\(path)[\(i)]", causes: &causes) }
            }
        case .object(let o):
            for required in schema["required"]?.arrayValue?.compactMap(\.stringValue) ?? [] where o[required] == nil {
                causes.append(
                    .init(reason: "FieldValueRequired", message: "Required value", field: path.isEmpty ? required : "\(path).\(required)"))
            }
            let properties = schema["properties"]?.objectValue
            for (key, child) in o {
                let childPath = path.isEmpty ? key : "\(path).\(key)"
                if path.isEmpty, key == "metadata" || key == "apiVersion" || key == "kind" { continue }
                if let sub = properties?[key] {
                    validate(child, sub, path: childPath, causes: &causes)
                } else if let additional = schema["additionalProperties"], additional.objectValue != nil {
                    validate(child, additional, path: childPath, causes: &causes)
                }
            }
        default:
            break
        }
    }

    static func asDouble(_ v: JSONValue) -> Double? {
        switch v {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    static func describe(_ v: JSONValue) -> String {
        switch v {
        case .string(let s): return s
        default: return v.serialized()
        }
    }
}

// MARK: Validation rules (CEL)

extension Schema {
    /// The JSON type name the API server shows for a value in a rule's error ("object", "string", ...).
    static func typeName(_ value: JSONValue) -> String {
        switch value {
        case .object: return "object"
        case .array: return "array"
        case .string: return "string"
        case .int: return "integer"
        case .double: return "number"
        case .bool: return "boolean"
        case .null: return "null"
        }
    }

    /// Evaluates the `x-kubernetes-validations` rules of every schema node that has a value.
    /// `oldSelf` is the old value where one correlates (through object fields and map values,
    /// not through lists); transition rules (those reading `oldSelf`) are skipped without one,
    /// as the real server does.
    static func validateRules(
        _ value: JSONValue, old: JSONValue?, _ schema: JSONValue, path: String, causes: inout [KubeSimError.Cause]
    ) {
        for rule in schema["x-kubernetes-validations"]?.arrayValue ?? [] {
            guard let text = rule["rule"]?.stringValue else { continue }
            let what = rule["message"]?.stringValue ?? "failed rule: \(text)"
            let expr: CEL.Expr
            do {
                expr = try CEL.compile(text)
            } catch {
                causes.append(
                    .init(
                        reason: "FieldValueInvalid", message: "Invalid value: \"\(text)\": compilation failed: \(error)",
                        field: path))
                continue
            }
            if CEL.readsOldSelf(expr), old == nil { continue }
            var bindings: [String: JSONValue] = ["self": value]
            if let old { bindings["oldSelf"] = old }
            do {
                if try CEL.evaluate(expr, bindings) == .bool(true) { continue }
                causes.append(
                    .init(reason: "FieldValueInvalid", message: "Invalid value: \"\(typeName(value))\": \(what)", field: path))
            } catch {
                causes.append(
                    .init(
                        reason: "FieldValueInvalid",
                        message: "Invalid value: \"\(typeName(value))\": \(error) evaluating rule: \(what)", field: path))
            }
        }
        switch value {
        case .object(let object):
            let properties = schema["properties"]?.objectValue
            let additional = schema["additionalProperties"].flatMap { $0.objectValue != nil ? $0 : nil }
            for (key, child) in object {
                let childPath = path.isEmpty ? key : "\(path).\(key)"
                if let sub = properties?[key] {
                    validateRules(child, old: old?[key], sub, path: childPath, causes: &causes)
                } else if let additional {
                    validateRules(child, old: old?[key], additional, path: childPath, causes: &causes)
                }
            }
        case .array(let items):
            guard let itemSchema = schema["items"] else { return }
            for (i, item) in items.enumerated() {
                validateRules(item, old: nil, itemSchema, path: "\(path)[\(i)]", causes: &causes)
            }
        default:
            return
        }
    }

    /// What the real server (1.28) refuses in a CRD's schemas beyond their shape: rules that do
    /// not compile (here: that fall outside kubesim's CEL subset, or select fields the schema does
    /// not declare), and defaults that do not validate against their own schema node — with the
    /// node's rules evaluated on the default as written (`oldSelf` = `self`), before any nested
    /// default fills it.
    static func crdProblems(_ crd: JSONValue) -> [KubeSimError.Cause] {
        let versions = crd.value(at: ["spec", "versions"])?.arrayValue ?? []
        let schemas = versions.map { $0.value(at: ["schema", "openAPIV3Schema"]) }
        // One schema for every version is shown under the internal `spec.validation`.
        let shared = Set(schemas.compactMap { $0?.serialized() }).count == 1 && !schemas.contains { $0 == nil }
        var causes: [KubeSimError.Cause] = []
        for (i, schema) in schemas.enumerated() {
            guard let schema else { continue }
            let root = shared ? "spec.validation.openAPIV3Schema" : "spec.versions[\(i)].schema.openAPIV3Schema"
            checkNode(schema, path: root, causes: &causes)
            if shared { break }
        }
        return causes
    }

    private static func checkNode(_ node: JSONValue, path: String, causes: inout [KubeSimError.Cause]) {
        for (i, rule) in (node["x-kubernetes-validations"]?.arrayValue ?? []).enumerated() {
            let field = "\(path).x-kubernetes-validations[\(i)].rule"
            guard let text = rule["rule"]?.stringValue else {
                causes.append(.init(reason: "FieldValueRequired", message: "Required value", field: field))
                continue
            }
            do {
                let expr = try CEL.compile(text)
                for selected in CEL.selectedPaths(expr) {
                    if let missing = undeclaredField(selected, in: node) {
                        throw CEL.CompileError(message: "undefined field '\(missing)'", offset: 0)
                    }
                }
            } catch {
                causes.append(
                    .init(
                        reason: "FieldValueInvalid", message: "Invalid value: \"\(text)\": compilation failed: \(error)",
                        field: field))
            }
        }
        if let value = node["default"] {
            let field = "\(path).default"
            var found: [KubeSimError.Cause] = []
            validate(value, node, path: field, causes: &found)
            validateRules(value, old: value, node, path: field, causes: &found)
            causes += found
        }
        for (key, sub) in (node["properties"]?.objectValue ?? [:]).sorted(by: { $0.key < $1.key }) {
            checkNode(sub, path: "\(path).properties[\(key)]", causes: &causes)
        }
        if let items = node["items"], items.objectValue != nil { checkNode(items, path: "\(path).items", causes: &causes) }
        if let additional = node["additionalProperties"], additional.objectValue != nil {
            checkNode(additional, path: "\(path).additionalProperties", causes: &causes)
        }
    }

    /// The first field of `path` that the schema under `node` does not declare (nil when every
    /// step is declared or the schema leaves the fields open).
    private static func undeclaredField(_ path: [String], in node: JSONValue) -> String? {
        var current = node
        for field in path {
            if current["x-kubernetes-preserve-unknown-fields"]?.boolValue == true { return nil }
            if let sub = current["properties"]?[field] {
                current = sub
            } else if let additional = current["additionalProperties"], additional.objectValue != nil {
                current = additional
            } else if current["properties"] != nil || current["type"]?.stringValue != "object" {
                return field
            } else {
                return nil
            }
        }
        return nil
    }
}
