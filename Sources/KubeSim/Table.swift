import Foundation

/// Server-side `Table` output (`meta.k8s.io/v1`) and the small formatting helpers it needs.
enum TableRendering {
    static func columnDefinitions(_ type: ResourceType) -> JSONValue {
        var definitions: [JSONValue] = [
            [
                "name": "Name", "type": "string", "format": "name", "priority": 0,
                "description":
                    "Name must be unique within a namespace. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
            ]
        ]
        for column in type.columns {
            definitions.append(
                [
                    "name": .string(column.name), "type": .string(column.type == "date" ? "string" : column.type),
                    "format": .string(column.format), "description": .string(column.description),
                    "priority": .int(Int64(column.priority)),
                ])
        }
        // Events list their name among the wide columns; the Name column is not first for them.
        if type.resource == "events" {
            definitions.removeFirst()
            definitions.append(["name": "Name", "type": "string", "format": "name", "priority": 1, "description": "Name"])
        }
        return .array(definitions)
    }

    static func row(_ type: ResourceType, _ object: JSONValue, now: Date, includeObject: String) -> JSONValue {
        let name = object.value(at: ["metadata", "name"]) ?? ""
        var cells: [JSONValue] = [name]
        // events.k8s.io events print from their core/v1 form (message, involvedObject, ...).
        let source = type.storedAs == "/events" ? EventConversion.toCore(object) : object
        for column in type.columns { cells.append(cell(column, source, now: now, custom: type.isCustom)) }
        if type.resource == "events" {
            cells.removeFirst()
            cells.append(name)
        }
        var row: [String: JSONValue] = ["cells": .array(cells)]
        switch includeObject {
        case "None": break
        case "Object": row["object"] = object
        default:
            var metadata = object["metadata"] ?? [:]
            metadata["managedFields"] = nil
            row["object"] = [
                "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            ]
        }
        return .object(row)
    }

    static func table(
        _ type: ResourceType, _ objects: [JSONValue], resourceVersion: String, continueToken: String?, now: Date,
        includeObject: String, headers: Bool = true
    ) -> JSONValue {
        var metadata: [String: JSONValue] = ["resourceVersion": .string(resourceVersion)]
        if let continueToken, !continueToken.isEmpty { metadata["continue"] = .string(continueToken) }
        return [
            "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": .object(metadata),
            "columnDefinitions": headers ? columnDefinitions(type) : .array([]),
            "rows": .array(objects.map { row(type, $0, now: now, includeObject: includeObject) }),
        ]
    }

    static func cell(_ column: PrinterColumn, _ object: JSONValue, now: Date, custom: Bool) -> JSONValue {
        if let special = column.special {
            switch special {
            case .podReady:
                let statuses = object.value(at: ["status", "containerStatuses"])?.arrayValue ?? []
                let total = max(statuses.count, object.value(at: ["spec", "containers"])?.arrayValue?.count ?? 0)
                let ready = statuses.filter { $0["ready"]?.boolValue == true }.count
                return .string("\(ready)/\(total)")
            case .podStatus:
                // As kubectl's printer: Terminating, then a waiting or terminated container's reason, then the phase.
                if object.value(at: ["metadata", "deletionTimestamp"]) != nil { return "Terminating" }
                for status in object.value(at: ["status", "containerStatuses"])?.arrayValue ?? [] {
                    if let reason = status.value(at: ["state", "waiting", "reason"])?.stringValue, reason != "ContainerCreating" {
                        return .string(reason)
                    }
                    if let reason = status.value(at: ["state", "terminated", "reason"])?.stringValue { return .string(reason) }
                }
                return .string(object.value(at: ["status", "phase"])?.stringValue ?? "Unknown")
            case .nodeReady:
                let ready = (object.value(at: ["status", "conditions"])?.arrayValue ?? []).first {
                    $0["type"]?.stringValue == "Ready"
                }
                return ready?["status"]?.stringValue == "True" ? "Ready" : "NotReady"
            case .endpoints:
                var addresses: [String] = []
                for subset in object["subsets"]?.arrayValue ?? [] {
                    let ports = (subset["ports"]?.arrayValue ?? []).compactMap { $0["port"]?.intValue }
                    for address in subset["addresses"]?.arrayValue ?? [] {
                        let ip = address["ip"]?.stringValue ?? ""
                        addresses += ports.isEmpty ? [ip] : ports.map { "\(ip):\($0)" }
                    }
                }
                if addresses.isEmpty { return "<none>" }
                return .string(
                    addresses.prefix(3).joined(separator: ",") + (addresses.count > 3 ? " + \(addresses.count - 3) more..." : ""))
            case .podRestarts:
                let statuses = object.value(at: ["status", "containerStatuses"])?.arrayValue ?? []
                return .string(String(statuses.reduce(0) { $0 + ($1["restartCount"]?.intValue ?? 0) }))
            case .labelSelector(let path):
                return .string(LabelSelector.string(from: object.value(at: path.split(separator: ".").map(String.init))))
            case .accessModes:
                let short = [
                    "ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP",
                ]
                let modes = (object.value(at: ["status", "accessModes"])?.arrayValue ?? []).compactMap(\.stringValue)
                return .string(modes.map { short[$0] ?? $0 }.joined(separator: ","))
            case .servicePorts:
                let ports = object.value(at: ["spec", "ports"])?.arrayValue ?? []
                if ports.isEmpty { return "<none>" }
                return .string(
                    ports.map { "\(Schema.describe($0["port"] ?? ""))/\($0["protocol"]?.stringValue ?? "TCP")" }.joined(
                        separator: ","))
            case .eventObject:
                let involved = object["involvedObject"] ?? [:]
                return .string(
                    "\((involved["kind"]?.stringValue ?? "").lowercased())/\(involved["name"]?.stringValue ?? "")")
            case .eventLastSeen:
                let stamp =
                    object["lastTimestamp"]?.stringValue ?? object["eventTime"]?.stringValue
                    ?? object.value(at: ["metadata", "creationTimestamp"])?.stringValue
                guard let stamp, let date = Timestamps.parse(stamp) else { return "<unknown>" }
                return .string(humanDuration(now.timeIntervalSince(date)))
            case .count(let path):
                let value = object.value(at: path.split(separator: ".").map(String.init))
                return .int(Int64(value?.objectValue?.count ?? value?.arrayValue?.count ?? 0))
            case .ratio(let a, let b):
                let x = object.value(at: a.split(separator: ".").map(String.init))?.intValue ?? 0
                let y = object.value(at: b.split(separator: ".").map(String.init))?.intValue ?? 0
                return .string("\(x)/\(y)")
            }
        }
        let results = JSONPath.evaluate(column.jsonPath, on: object)
        guard let first = results.first else {
            // Built-in printers show counts that are not set yet as 0; CRD columns stay empty.
            if column.type == "integer", !custom { return 0 }
            return column.type == "string" || column.type == "date" ? "" : .null
        }
        switch column.type {
        case "date":
            guard let s = first.stringValue, let date = Timestamps.parse(s) else { return first }
            return .string(humanDuration(now.timeIntervalSince(date)))
        case "string":
            if results.count > 1 { return .string(results.map(Schema.describe).joined(separator: ",")) }
            return .string(Schema.describe(first))
        case "integer":
            return first.intValue.map { .int($0) } ?? first
        default:
            return first
        }
    }

    /// k8s.io/apimachinery/pkg/util/duration.HumanDuration.
    static func humanDuration(_ interval: TimeInterval) -> String {
        let seconds = Int(interval)
        if seconds < -1 { return "<invalid>" }
        if seconds < 0 { return "0s" }
        if seconds < 60 * 2 { return "\(seconds)s" }
        let minutes = seconds / 60
        if minutes < 10 {
            let s = seconds % 60
            return s == 0 ? "\(minutes)m" : "\(minutes)m\(s)s"
        }
        if minutes < 60 * 3 { return "\(minutes)m" }
        let hours = minutes / 60
        if hours < 8 {
            let m = minutes % 60
            return m == 0 ? "\(hours)h" : "\(hours)h\(m)m"
        }
        if hours < 48 { return "\(hours)h" }
        if hours < 24 * 8 {
            let h = hours % 24
            return h == 0 ? "\(hours / 24)d" : "\(hours / 24)d\(h)h"
        }
        if hours < 24 * 365 * 2 { return "\(hours / 24)d" }
        if hours < 24 * 365 * 8 {
            let d = (hours / 24) % 365
            return d == 0 ? "\(hours / 24 / 365)y" : "\(hours / 24 / 365)y\(d)d"
        }
        return "\(hours / 24 / 365)y"
    }
}

/// RFC 3339 timestamps as Kubernetes writes them (`2026-01-02T03:04:05Z`, or with microseconds).
enum Timestamps {
    static func format(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02dZ", c.year ?? 0, c.month ?? 0, c.day ?? 0, c.hour ?? 0, c.minute ?? 0,
            c.second ?? 0)
    }

    static func formatMicro(_ date: Date) -> String {
        let base = format(date)
        let micros = Int((date.timeIntervalSince1970 - floor(date.timeIntervalSince1970)) * 1_000_000)
        return String(base.dropLast()) + String(format: ".%06dZ", micros)
    }

    static func parse(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return date }
        // Go writes microseconds; ISO8601DateFormatter wants milliseconds: trim the fraction.
        if let dot = text.firstIndex(of: "."), let end = text.lastIndex(where: { $0 == "Z" || $0 == "+" || $0 == "-" }),
            end > dot
        {
            formatter.formatOptions = [.withInternetDateTime]
            return formatter.date(from: String(text[..<dot]) + String(text[end...]))
        }
        return nil
    }
}

/// core/v1 Event <-> events.k8s.io/v1 Event: one stored object, two shapes.
enum EventConversion {
    /// events.k8s.io/v1 -> core/v1 (storage).
    static func toCore(_ e: JSONValue) -> JSONValue {
        var core = e
        core["apiVersion"] = "v1"
        core["kind"] = "Event"
        for key in [
            "note", "regarding", "related", "reportingController", "reportingInstance", "deprecatedSource",
            "deprecatedFirstTimestamp", "deprecatedLastTimestamp", "deprecatedCount", "series",
        ] {
            core[key] = nil
        }
        if let note = e["note"] { core["message"] = note }
        if let regarding = e["regarding"] { core["involvedObject"] = regarding }
        if let related = e["related"] { core["related"] = related }
        if let controller = e["reportingController"] { core["reportingComponent"] = controller }
        if let instance = e["reportingInstance"] { core["reportingInstance"] = instance }
        if let source = e["deprecatedSource"], core["source"] == nil { core["source"] = source }
        if let first = e["deprecatedFirstTimestamp"] { core["firstTimestamp"] = first }
        if let last = e["deprecatedLastTimestamp"] { core["lastTimestamp"] = last }
        if let count = e["deprecatedCount"] { core["count"] = count }
        if let series = e["series"] {
            core["series"] = ["count": series["count"] ?? 1, "lastObservedTime": series["lastObservedTime"] ?? .null]
            core["count"] = series["count"]
        }
        return core
    }

    /// core/v1 (storage) -> events.k8s.io/v1.
    static func fromCore(_ core: JSONValue) -> JSONValue {
        var e: [String: JSONValue] = [
            "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": core["metadata"] ?? [:],
        ]
        if let v = core["message"] { e["note"] = v }
        if let v = core["involvedObject"] { e["regarding"] = v }
        if let v = core["related"] { e["related"] = v }
        if let v = core["reportingComponent"] ?? core.value(at: ["source", "component"]) { e["reportingController"] = v }
        if let v = core["reportingInstance"] { e["reportingInstance"] = v }
        for key in ["type", "reason", "action", "eventTime"] { if let v = core[key] { e[key] = v } }
        if let v = core["source"] { e["deprecatedSource"] = v }
        if let v = core["firstTimestamp"] { e["deprecatedFirstTimestamp"] = v }
        if let v = core["lastTimestamp"] { e["deprecatedLastTimestamp"] = v }
        if let v = core["count"] { e["deprecatedCount"] = v }
        if let series = core["series"] { e["series"] = series }
        return .object(e)
    }
}
