/// Discovery documents and OpenAPI v3, derived from the registry on every request (so a new
/// CRD is visible at once).
enum Discovery {
    static let verbs: JSONValue = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

    static func version() -> JSONValue {
        [
            "major": "1", "minor": "32", "gitVersion": "v1.32.0-kubesim", "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc",
            "platform": "linux/amd64",
        ]
    }

    static func apiVersions(serverAddress: String) -> JSONValue {
        [
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [["clientCIDR": "0.0.0.0/0", "serverAddress": .string(serverAddress)]],
        ]
    }

    static func group(_ name: String, _ versions: [String]) -> JSONValue {
        let list = JSONValue.array(
            versions.map { ["groupVersion": .string("\(name)/\($0)"), "version": .string($0)] })
        return [
            "kind": "APIGroup", "apiVersion": "v1", "name": .string(name), "versions": list,
            "preferredVersion": ["groupVersion": .string("\(name)/\(versions[0])"), "version": .string(versions[0])],
        ]
    }

    static func groupList(_ registry: ResourceRegistry) -> JSONValue {
        var groups: [JSONValue] = []
        for (name, versions) in registry.groups where !name.isEmpty {
            var g = group(name, versions)
            g["kind"] = nil
            g["apiVersion"] = nil
            groups.append(g)
        }
        return ["kind": "APIGroupList", "apiVersion": "v1", "groups": .array(groups)]
    }

    static func resourceList(_ registry: ResourceRegistry, group: String, version: String) -> JSONValue {
        var resources: [JSONValue] = []
        for type in registry.types(group: group, version: version) {
            var entry: [String: JSONValue] = [
                "name": .string(type.resource), "singularName": .string(type.singular), "namespaced": .bool(type.namespaced),
                "kind": .string(type.kind), "verbs": verbs,
                "storageVersionHash": .string(String(type.typeKey.hashValue & 0xFFFF_FFFF, radix: 36)),
            ]
            if !type.shortNames.isEmpty { entry["shortNames"] = .array(type.shortNames.map { .string($0) }) }
            if !type.categories.isEmpty { entry["categories"] = .array(type.categories.map { .string($0) }) }
            resources.append(.object(entry))
            if type.hasStatus {
                resources.append(
                    [
                        "name": .string(type.resource + "/status"), "singularName": "", "namespaced": .bool(type.namespaced),
                        "kind": .string(type.kind), "verbs": ["get", "patch", "update"],
                    ])
            }
            if type.scale != nil {
                resources.append(
                    [
                        "name": .string(type.resource + "/scale"), "singularName": "", "namespaced": .bool(type.namespaced),
                        "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"],
                    ])
            }
        }
        return [
            "kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": .string(group.isEmpty ? version : "\(group)/\(version)"), "resources": .array(resources),
        ]
    }

    // MARK: OpenAPI v3

    static func openAPIRoot(_ registry: ResourceRegistry) -> JSONValue {
        var paths: [String: JSONValue] = [:]
        for (name, versions) in registry.groups {
            for version in versions {
                let key = name.isEmpty ? "api/\(version)" : "apis/\(name)/\(version)"
                let hash = String(openAPIDocument(registry, group: name, version: version).serialized().hashValue & 0xFFFF_FFFF, radix: 16)
                paths[key] = ["serverRelativeURL": .string("/openapi/v3/\(key)?hash=\(hash)")]
            }
        }
        return ["paths": .object(paths)]
    }

    static func schemaName(_ type: ResourceType, _ version: String) -> String {
        let reversed = type.group.isEmpty ? "io.k8s.api.core" : type.group.split(separator: ".").reversed().joined(separator: ".")
        return "\(reversed).\(version).\(type.kind)"
    }

    static func openAPIDocument(_ registry: ResourceRegistry, group: String, version: String) -> JSONValue {
        var paths: [String: JSONValue] = [:]
        var schemas: [String: JSONValue] = [:]
        let prefix = group.isEmpty ? "/api/\(version)" : "/apis/\(group)/\(version)"
        let query: [JSONValue] = ["dryRun", "fieldManager", "fieldValidation", "force", "pretty"].map {
            ["name": .string($0), "in": "query", "schema": ["type": "string"], "uniqueItems": true]
        }
        for type in registry.types(group: group, version: version) {
            let gvk: JSONValue = ["group": .string(group), "version": .string(version), "kind": .string(type.kind)]
            let ref = "#/components/schemas/\(schemaName(type, version))"
            var patchTypes: [String: JSONValue] = [
                "application/json-patch+json": ["schema": ["type": "object"]],
                "application/merge-patch+json": ["schema": ["type": "object"]],
                "application/apply-patch+yaml": ["schema": ["type": "object"]],
            ]
            // Built-in kinds also take strategic merge; kubectl then computes the patch from its own types.
            if !type.isCustom { patchTypes["application/strategic-merge-patch+json"] = nil }
            let response: JSONValue = [
                "200": ["description": "OK", "content": ["application/json": ["schema": ["$ref": .string(ref)]]]]
            ]
            let item: JSONValue = [
                "get": ["x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "get", "responses": response],
                "put": [
                    "x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "put", "parameters": .array(query),
                    "requestBody": ["content": ["application/json": ["schema": ["$ref": .string(ref)]]]], "responses": response,
                ],
                "patch": [
                    "x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "patch", "parameters": .array(query),
                    "requestBody": ["content": .object(patchTypes)], "responses": response,
                ],
                "delete": ["x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "delete", "responses": response],
                "parameters": [
                    ["name": "name", "in": "path", "required": true, "schema": ["type": "string"]]
                ],
            ]
            let collection: JSONValue = [
                "get": ["x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "list", "responses": response],
                "post": [
                    "x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "post", "parameters": .array(query),
                    "requestBody": ["content": ["application/json": ["schema": ["$ref": .string(ref)]]]], "responses": response,
                ],
            ]
            let base = type.namespaced ? "\(prefix)/namespaces/{namespace}/\(type.resource)" : "\(prefix)/\(type.resource)"
            paths[base] = collection
            paths[base + "/{name}"] = item
            if type.hasStatus { paths[base + "/{name}/status"] = item }
            var schema =
                type.schemas[version] ?? [
                    "type": "object",
                    "description": .string("\(type.kind) (kubesim serves built-in kinds without their full schema)."),
                    "properties": [
                        "apiVersion": [
                            "type": "string", "description": "APIVersion defines the versioned schema of this representation of an object.",
                        ],
                        "kind": [
                            "type": "string",
                            "description": "Kind is a string value representing the REST resource this object represents.",
                        ],
                        "metadata": ["type": "object", "description": "Standard object's metadata."],
                        "spec": ["type": "object", "x-kubernetes-preserve-unknown-fields": true],
                        "status": ["type": "object", "x-kubernetes-preserve-unknown-fields": true],
                    ],
                ]
            if type.isCustom {
                var properties = schema["properties"]?.objectValue ?? [:]
                if properties["apiVersion"] == nil {
                    properties["apiVersion"] = [
                        "type": "string", "description": "APIVersion defines the versioned schema of this representation of an object.",
                    ]
                }
                if properties["kind"] == nil {
                    properties["kind"] = [
                        "type": "string", "description": "Kind is a string value representing the REST resource this object represents.",
                    ]
                }
                properties["metadata"] = ["type": "object", "description": "Standard object's metadata."]
                schema["properties"] = .object(properties)
            }
            schema["x-kubernetes-group-version-kind"] = [gvk]
            schemas[schemaName(type, version)] = schema
        }
        return [
            "openapi": "3.0.0", "info": ["title": "Kubernetes", "version": "v1.32.0"], "paths": .object(paths),
            "components": ["schemas": .object(schemas)],
        ]
    }

    // MARK: Aggregated discovery (apidiscovery.k8s.io/v2)

    static func aggregated(_ registry: ResourceRegistry, core: Bool) -> JSONValue {
        var items: [JSONValue] = []
        for (name, versions) in registry.groups where name.isEmpty == core {
            var versionItems: [JSONValue] = []
            for version in versions {
                var resources: [JSONValue] = []
                for type in registry.types(group: name, version: version) {
                    var entry: [String: JSONValue] = [
                        "resource": .string(type.resource),
                        "responseKind": ["group": .string(name), "version": .string(version), "kind": .string(type.kind)],
                        "scope": type.namespaced ? "Namespaced" : "Cluster", "singularResource": .string(type.singular),
                        "verbs": verbs,
                    ]
                    if !type.shortNames.isEmpty { entry["shortNames"] = .array(type.shortNames.map { .string($0) }) }
                    if !type.categories.isEmpty { entry["categories"] = .array(type.categories.map { .string($0) }) }
                    var subresources: [JSONValue] = []
                    if type.hasStatus {
                        subresources.append(
                            [
                                "subresource": "status",
                                "responseKind": ["group": .string(name), "version": .string(version), "kind": .string(type.kind)],
                                "verbs": ["get", "patch", "update"],
                            ])
                    }
                    if type.scale != nil {
                        subresources.append(
                            [
                                "subresource": "scale", "responseKind": ["group": "autoscaling", "version": "v1", "kind": "Scale"],
                                "verbs": ["get", "patch", "update"],
                            ])
                    }
                    if !subresources.isEmpty { entry["subresources"] = .array(subresources) }
                    resources.append(.object(entry))
                }
                versionItems.append(["version": .string(version), "resources": .array(resources), "freshness": "Current"])
            }
            items.append(["metadata": ["name": .string(name), "creationTimestamp": .null], "versions": .array(versionItems)])
        }
        return [
            "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": [:], "items": .array(items),
        ]
    }
}
