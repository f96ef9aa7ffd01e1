import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import Synchronization

/// The request context: a 16 MiB body limit.
public struct KubeSimRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public init(source: Source) { self.coreContext = .init(source: source) }
    public var maxUploadSize: Int { 16 << 20 }
}

/// A parsed API path: `/api/v1/...` or `/apis/<group>/<version>/...`.
struct ResourcePath {
    var type: ResourceType
    var version: String
    var namespace: String?
    var name: String?
    var subresource: String?
}

/// A resource request, parsed once: what it addresses and the options its verb reads.
struct ResourceRequest {
    let target: ResourcePath
    /// The type at the requested version, and the type it is stored as (Events of both groups share one store).
    let type: ResourceType
    let storageType: ResourceType
    var version: String { target.version }
    var namespace: String { target.namespace ?? "" }
    /// `finalize` writes the object itself (a namespace's spec.finalizers).
    var subresource: String? { target.subresource == "finalize" ? nil : target.subresource }
    let query: Query
    /// `fieldManager`, else the client's user agent up to its first '/'.
    let manager: String
    let dryRun: Bool
    /// `fieldValidation=Strict`: unknown fields are a 400.
    let strict: Bool
    /// The server default (`Warn`): unknown fields are dropped with a Warning header each.
    let warn: Bool
    let wantsTable: Bool
    let wantsMetadata: Bool
    let labels: LabelSelector?
    let fields: FieldSelector?

    init(_ request: Request, target: ResourcePath, registry: ResourceRegistry) throws(KubeSimError) {
        self.target = target
        let query = Query(request.uri)
        self.query = query
        type = target.type.at(version: target.version)
        storageType = type.storedAs.flatMap { registry.type(forKey: $0) } ?? type
        let accept = request.headers[.accept] ?? ""
        wantsTable = accept.contains("as=Table")
        wantsMetadata = accept.contains("as=PartialObjectMetadata")
        manager =
            query["fieldManager"]
            ?? (request.headers[.userAgent].map { String($0.split(separator: "/").first ?? "unknown") } ?? "unknown")
        dryRun = query["dryRun"] == "All"
        strict = query["fieldValidation"] == "Strict"
        warn = query["fieldValidation"].map { $0 == "Warn" } ?? true
        labels = try query["labelSelector"].map { s throws(KubeSimError) in try LabelSelector(parsing: s) }
        fields = try query["fieldSelector"].map { s throws(KubeSimError) in try FieldSelector(parsing: s) }
    }
}

/// A PATCH body, checked as the real server checks it before touching the object.
struct PatchRequest {
    static let types = [
        "application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ]
    let contentType: String
    let patch: JSONValue
    let bytes: [UInt8]
    var isApply: Bool { contentType == "application/apply-patch+yaml" }

    init(contentType header: String, bytes: [UInt8], _ r: ResourceRequest) throws(KubeSimError) {
        let contentType = header.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        self.contentType = contentType
        self.bytes = bytes
        let type = r.type
        let patch: JSONValue
        do {
            patch = try JSONValue.parse(bytes)
        } catch {
            if contentType == "application/apply-patch+yaml" {
                throw KubeSimError(code: 415, reason: "UnsupportedMediaType", message: "kubesim accepts server-side apply bodies in JSON only")
            }
            throw KubeSimError.badRequest("error decoding patch: \(error)")
        }
        self.patch = patch
        if contentType == "application/strategic-merge-patch+json", type.isCustom {
            throw KubeSimError(
                code: 415, reason: "UnsupportedMediaType",
                message:
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
            )
        }
        guard Self.types.contains(contentType) else {
            throw KubeSimError(code: 415, reason: "UnsupportedMediaType", message: "unsupported patch type \(contentType)")
        }
        // A body of the wrong shape fails decoding on the real server (Go's words).
        if contentType == "application/json-patch+json", patch.arrayValue == nil, !patch.isNull {
            throw KubeSimError.badRequest(
                "error decoding patch: json: cannot unmarshal \(Self.goType(patch)) into Go value of type []handlers.jsonPatchOp")
        }
        if contentType == "application/merge-patch+json" || contentType == "application/strategic-merge-patch+json",
            patch.objectValue == nil, !patch.isNull
        {
            throw KubeSimError.badRequest(
                "error decoding patch: json: cannot unmarshal \(Self.goType(patch)) into Go value of type map[string]interface {}")
        }
        // The real server names no manager for an apply itself (updates take the client's).
        if contentType == "application/apply-patch+yaml", (r.query["fieldManager"] ?? "").isEmpty {
            throw KubeSimError(
                code: 422, reason: "Invalid",
                message: #"PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch"#,
                name: "", group: "meta.k8s.io", kind: "PatchOptions",
                causes: [.init(reason: "FieldValueRequired", message: "Required value: is required for apply patch", field: "fieldManager")])
        }
        if contentType == "application/apply-patch+yaml", let kind = patch["kind"]?.stringValue, kind != type.kind {
            throw KubeSimError.badRequest("the kind of the applied object (\(kind)) does not match \(type.kind)")
        }
    }

    static func goType(_ value: JSONValue) -> String {
        switch value {
        case .object: "object"
        case .array: "array"
        case .string: "string"
        case .bool: "bool"
        case .null: "null"
        default: "number"
        }
    }
}

/// Answers every request: auth, faults, discovery, OpenAPI, the admin endpoint and resources.
struct KubeSimResponder: HTTPResponder {
    typealias Context = KubeSimRequestContext

    let store: ResourceStore
    let faults: KubeSimFaults
    let tokens: Set<String>
    let bookmarkInterval: Duration
    let serverAddress: @Sendable () -> String
    /// Container logs, when kubesim runs pods.
    let podLogs: PodLogs?
    let requestLog: KubeSimRequestLog

    func respond(to request: Request, context: Context) async throws -> Response {
        let response: Response
        do {
            response = try await handle(request, context: context)
            context.logger.debug(
                "request",
                metadata: ["http.method": "\(request.method)", "http.path": "\(request.uri)", "http.status": "\(response.status.code)"])
        } catch let error as KubeSimError {
            context.logger.debug(
                "request failed",
                metadata: [
                    "http.method": "\(request.method)", "http.path": "\(request.uri)", "http.status": "\(error.code)",
                    "error": "\(error.message)",
                ])
            response = Self.errorResponse(error)
        } catch {
            context.logger.debug("request failed", metadata: ["error": "\(error)"])
            response = Self.errorResponse(KubeSimError(code: 500, reason: "InternalError", message: "\(error)"))
        }
        requestLog.record(
            .init(
                method: request.method.rawValue, uri: "\(request.uri)", userAgent: request.headers[.userAgent] ?? "",
                status: response.status.code))
        return response
    }

    static func errorResponse(_ error: KubeSimError) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let retry = error.retryAfterSeconds { headers[HTTPField.Name("Retry-After")!] = String(retry) }
        return Response(
            status: HTTPResponse.Status(code: error.code), headers: headers,
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: error.status.serializedBytes())))
    }

    static func json(_ value: JSONValue, status: Int = 200, contentType: String = "application/json") -> Response {
        Response(
            status: HTTPResponse.Status(code: status), headers: [.contentType: contentType],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: value.serializedBytes())))
    }

    func handle(_ request: Request, context: Context) async throws -> Response {
        let path = request.uri.path
        if path == "/healthz" || path == "/readyz" || path == "/livez" {
            return Response(status: .ok, headers: [.contentType: "text/plain"], body: ResponseBody(byteBuffer: ByteBuffer(string: "ok")))
        }
        if !tokens.isEmpty {
            let header = request.headers[.authorization] ?? ""
            guard header.hasPrefix("Bearer "), tokens.contains(String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces))
            else {
                throw KubeSimError(code: 401, reason: "Unauthorized", message: "Unauthorized")
            }
        }
        if path.hasPrefix("/kubesim/") || path == "/kubesim" { return try await admin(request, path: path) }
        let latency = faults.latency
        if latency > .zero { try await Task.sleep(for: latency) }
        let target = request.uri.query.map { path + "?" + $0 } ?? path
        if let failure = faults.failure(method: request.method.rawValue, target: target) { throw failure }

        if let contentType = request.headers[.contentType], contentType.contains("cbor") {
            throw KubeSimError(
                code: 415, reason: "UnsupportedMediaType",
                message: "the body of the request was in an unknown format - accepted media types include: application/json")
        }
        let segments = path.split(separator: "/").map { String($0).removingPercentEncoding ?? String($0) }
        if segments.count == 7, segments[0] == "api", segments[1] == "v1", segments[2] == "namespaces", segments[4] == "pods",
            segments[6] == "log", request.method == .get
        {
            return try await podLog(namespace: segments[3], pod: segments[5], query: Query(request.uri))
        }
        let accept = request.headers[.accept] ?? ""
        let registry = await store.registry
        switch segments.count {
        case 0:
            return Self.json([
                "paths": .array((["/api", "/api/v1", "/apis", "/healthz", "/readyz", "/version", "/openapi/v3"]).map { .string($0) })
            ])
        default: break
        }
        switch segments[0] {
        case "version" where segments.count == 1:
            return Self.json(Discovery.version())
        case "openapi":
            if segments.count >= 2, segments[1] == "v3" {
                if segments.count == 2 { return Self.json(Discovery.openAPIRoot(registry)) }
                let rest = Array(segments[2...])
                if rest.count == 2, rest[0] == "api" { return Self.json(Discovery.openAPIDocument(registry, group: "", version: rest[1])) }
                if rest.count == 3, rest[0] == "apis", !registry.types(group: rest[1], version: rest[2]).isEmpty {
                    return Self.json(Discovery.openAPIDocument(registry, group: rest[1], version: rest[2]))
                }
            }
            throw KubeSimError.pathNotFound(path)
        case "api":
            if segments.count == 1 {
                if accept.contains("as=APIGroupDiscoveryList") {
                    return Self.json(Discovery.aggregated(registry, core: true), contentType: Self.aggregatedContentType(accept))
                }
                return Self.json(Discovery.apiVersions(serverAddress: serverAddress()))
            }
            if segments.count == 2 {
                guard segments[1] == "v1" else { throw KubeSimError.pathNotFound(path) }
                return Self.json(Discovery.resourceList(registry, group: "", version: "v1"))
            }
            return try await resource(request, registry: registry, group: "", version: segments[1], rest: Array(segments[2...]))
        case "apis":
            if segments.count == 1 {
                if accept.contains("as=APIGroupDiscoveryList") {
                    return Self.json(Discovery.aggregated(registry, core: false), contentType: Self.aggregatedContentType(accept))
                }
                return Self.json(Discovery.groupList(registry))
            }
            let group = segments[1]
            guard let versions = registry.groups.first(where: { $0.name == group })?.versions else {
                throw KubeSimError.pathNotFound(path)
            }
            if segments.count == 2 { return Self.json(Discovery.group(group, versions)) }
            guard versions.contains(segments[2]) else { throw KubeSimError.pathNotFound(path) }
            if segments.count == 3 { return Self.json(Discovery.resourceList(registry, group: group, version: segments[2])) }
            return try await resource(request, registry: registry, group: group, version: segments[2], rest: Array(segments[3...]))
        default:
            throw KubeSimError.pathNotFound(path)
        }
    }

    static func aggregatedContentType(_ accept: String) -> String {
        accept.contains("v=v2;") || accept.contains("v=v2,") || accept.hasSuffix("v=v2")
            || accept.contains("g=apidiscovery.k8s.io;v=v2;")
            ? "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            : "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
    }

    // MARK: Admin

    func admin(_ request: Request, path: String) async throws -> Response {
        let body = try await request.body.collect(upTo: 1 << 20)
        let json = body.readableBytes == 0 ? JSONValue.object([:]) : try JSONValue.parse(Array(body.readableBytesView))
        switch (request.method, path) {
        case (.post, "/kubesim/faults/close-watches"): faults.closeAllWatches()
        case (.post, "/kubesim/faults/expire"): faults.expireResourceVersions()
        case (.post, "/kubesim/faults/fail"):
            let count = Int(json["count"]?.intValue ?? 1)
            let status = Int(json["status"]?.intValue ?? 500)
            let retry = json["retryAfterSeconds"]?.intValue.map { Int($0) }
            if let pattern = json["pathPattern"]?.stringValue {
                faults.failNext(count, method: json["method"]?.stringValue, pathMatching: pattern, status: status, retryAfterSeconds: retry)
            } else {
                faults.failNext(
                    count, method: json["method"]?.stringValue, pathContains: json["pathContains"]?.stringValue ?? "",
                    status: status, retryAfterSeconds: retry)
            }
        case (.post, "/kubesim/faults/latency"):
            faults.setLatency(.milliseconds(json["milliseconds"]?.intValue ?? 0))
        case (.delete, "/kubesim/faults"): faults.reset()
        default: throw KubeSimError.pathNotFound(path)
        }
        return Self.json(["kind": "Status", "apiVersion": "v1", "metadata": [:], "status": "Success", "code": 200])
    }

    // MARK: Resources

    func parsePath(_ registry: ResourceRegistry, group: String, version: String, rest: [String]) throws -> ResourcePath {
        var rest = rest
        var namespace: String?
        if rest.count >= 3, rest[0] == "namespaces", let candidate = registry.lookup(group: group, version: version, resource: rest[2]),
            candidate.namespaced
        {
            namespace = rest[1]
            rest.removeFirst(2)
        }
        guard let first = rest.first, let type = registry.lookup(group: group, version: version, resource: first) else {
            throw KubeSimError.pathNotFound(rest.joined(separator: "/"))
        }
        if type.namespaced, namespace == nil, rest.count > 1 { throw KubeSimError.pathNotFound(rest.joined(separator: "/")) }
        if !type.namespaced, namespace != nil { throw KubeSimError.pathNotFound(rest.joined(separator: "/")) }
        let name = rest.count > 1 ? rest[1] : nil
        let subresource = rest.count > 2 ? rest[2] : nil
        if rest.count > 3 { throw KubeSimError.pathNotFound(rest.joined(separator: "/")) }
        if let subresource {
            let ok =
                (subresource == "status" && type.hasStatus) || (subresource == "scale" && type.scale != nil)
                || (subresource == "finalize" && type.typeKey == "/namespaces")
            if !ok { throw KubeSimError.pathNotFound(rest.joined(separator: "/")) }
        }
        return ResourcePath(type: type, version: version, namespace: namespace, name: name, subresource: subresource)
    }

    /// Storage form -> the requested version's form.
    static func output(_ type: ResourceType, version: String, _ object: JSONValue) -> JSONValue {
        if type.storedAs == "/events" { return EventConversion.fromCore(object) }
        var o = object
        o["apiVersion"] = .string(type.apiVersion(version))
        o["kind"] = .string(type.kind)
        return o
    }

    /// Request form -> storage form.
    static func input(_ type: ResourceType, _ object: JSONValue) -> JSONValue {
        if type.storedAs == "/events" { return EventConversion.toCore(object) }
        return object
    }

    func resource(_ request: Request, registry: ResourceRegistry, group: String, version: String, rest: [String]) async throws
        -> Response
    {
        let r = try ResourceRequest(
            request, target: try parsePath(registry, group: group, version: version, rest: rest), registry: registry)
        guard let name = r.target.name else {
            switch request.method {
            case .get:
                if r.query["watch"] == "true" || r.query["watch"] == "1" {
                    return try await watch(
                        type: r.type, storageType: r.storageType, version: r.version, namespace: r.target.namespace, labels: r.labels,
                        fields: r.fields, query: r.query, table: r.wantsTable)
                }
                return try await list(r)
            case .post: return try await create(request, r)
            case .delete: return try await deleteCollection(request, r)
            default: throw KubeSimError.methodNotAllowed("the server does not allow this method on the requested resource")
            }
        }
        if r.target.subresource == "scale" {
            return try await scale(
                request, type: r.type, version: r.version, namespace: r.namespace, name: name, manager: r.manager, dryRun: r.dryRun)
        }
        switch request.method {
        case .get: return try await get(r, name: name)
        case .put: return try await replace(request, r, name: name)
        case .patch: return try await patch(request, r, name: name)
        case .delete: return try await delete(request, r, name: name)
        default: throw KubeSimError.methodNotAllowed("the server does not allow this method on the requested resource")
        }
    }

    func list(_ r: ResourceRequest) async throws -> Response {
        let (type, version, query) = (r.type, r.version, r.query)
        let page = try await store.list(
            r.storageType, namespace: r.target.namespace, labels: r.labels, fields: r.fields, limit: query["limit"].flatMap { Int($0) },
            continueToken: query["continue"])
        let items = page.items.map { Self.output(type, version: version, $0) }
        if r.wantsTable {
            return Self.json(
                TableRendering.table(
                    type, items, resourceVersion: String(page.resourceVersion), continueToken: page.continueToken, now: Date(),
                    includeObject: query["includeObject"] ?? "Metadata"),
                contentType: "application/json;as=Table;v=v1;g=meta.k8s.io")
        }
        var metadata: [String: JSONValue] = ["resourceVersion": .string(String(page.resourceVersion))]
        if let token = page.continueToken {
            metadata["continue"] = .string(token)
            metadata["remainingItemCount"] = .int(Int64(page.remaining))
        }
        if r.wantsMetadata {
            return Self.json(
                [
                    "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": .object(metadata),
                    "items": .array(items.map(Self.partialMetadata)),
                ], contentType: "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io")
        }
        return Self.json([
            "kind": .string(type.listKind), "apiVersion": .string(type.apiVersion(version)), "metadata": .object(metadata),
            "items": .array(items),
        ])
    }

    func create(_ request: Request, _ r: ResourceRequest) async throws -> Response {
        let (type, version) = (r.type, r.version)
        let body = try await Self.readJSON(request)
        var object = Self.input(type, body)
        if type.storedAs == nil {
            object["apiVersion"] = .string(r.storageType.apiVersion(r.storageType.preferredVersion))
        }
        let created = try await store.create(
            r.storageType, namespace: r.namespace, object: object, manager: r.manager, dryRun: r.dryRun, strict: r.strict,
            version: version)
        return Self.withWarnings(
            Self.json(Self.output(type, version: version, created), status: 201),
            r.warn ? Self.unknownFields(type, version: version, body) : [])
    }

    func deleteCollection(_ request: Request, _ r: ResourceRequest) async throws -> Response {
        let (type, version) = (r.type, r.version)
        let options = try await Self.readOptionalJSON(request)
        let deleted = try await store.deleteCollection(
            r.storageType, namespace: r.target.namespace, labels: r.labels, fields: r.fields,
            propagationPolicy: r.query["propagationPolicy"] ?? options["propagationPolicy"]?.stringValue)
        return Self.json([
            "kind": .string(type.listKind), "apiVersion": .string(type.apiVersion(version)), "metadata": [:],
            "items": .array(deleted.map { Self.output(type, version: version, $0) }),
        ])
    }

    func get(_ r: ResourceRequest, name: String) async throws -> Response {
        let object = Self.output(r.type, version: r.version, try await store.get(r.storageType, namespace: r.namespace, name: name))
        if r.wantsTable {
            return Self.json(
                TableRendering.table(
                    r.type, [object], resourceVersion: object.value(at: ["metadata", "resourceVersion"])?.stringValue ?? "",
                    continueToken: nil, now: Date(), includeObject: r.query["includeObject"] ?? "Metadata"),
                contentType: "application/json;as=Table;v=v1;g=meta.k8s.io")
        }
        if r.wantsMetadata {
            return Self.json(Self.partialMetadata(object), contentType: "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io")
        }
        return Self.json(object)
    }

    func replace(_ request: Request, _ r: ResourceRequest, name: String) async throws -> Response {
        let requestBody = try await Self.readJSON(request)
        let body = Self.input(r.type, requestBody)
        let updated = try await store.update(
            r.storageType, namespace: r.namespace, name: name, object: body, subresource: r.subresource, manager: r.manager,
            dryRun: r.dryRun, strict: r.strict, version: r.version)
        return Self.withWarnings(
            Self.json(Self.output(r.type, version: r.version, updated)),
            r.warn ? Self.unknownFields(r.type, version: r.version, requestBody) : [])
    }

    func patch(_ request: Request, _ r: ResourceRequest, name: String) async throws -> Response {
        let (type, version, query, subresource) = (r.type, r.version, r.query, r.subresource)
        let body = try await request.body.collect(upTo: 16 << 20)
        let parsed = try PatchRequest(contentType: request.headers[.contentType] ?? "", bytes: Array(body.readableBytesView), r)
        let (contentType, patch, bytes) = (parsed.contentType, parsed.patch, parsed.bytes)
        let force = query["force"] == "true"
        let apiVersion = type.apiVersion(version)
        let now = Timestamps.format(Date())
        let created = Mutex(false)
        let result = try await store.patch(
            r.storageType, namespace: r.namespace, name: name, subresource: subresource, manager: r.manager, dryRun: r.dryRun,
            createIfMissing: parsed.isApply && subresource == nil, strict: r.strict, version: version
        ) { (current: JSONValue?) throws(KubeSimError) -> PatchOutcome in
            let view = current.map { Self.output(type, version: version, $0) }
            created.withLock { $0 = current == nil }
            var patched: JSONValue
            var done = false
            switch contentType {
            case "application/json-patch+json": patched = try Patch.jsonPatch(view ?? [:], patch, raw: bytes)
            case "application/merge-patch+json": patched = Patch.merge(view ?? [:], patch)
            case "application/strategic-merge-patch+json": patched = Patch.strategicMerge(view ?? [:], patch)
            default:
                patched = try FieldManagement.apply(
                    current: view, config: patch, manager: query["fieldManager"]!, force: force,
                    apiVersion: apiVersion, subresource: subresource, now: now, type: type, name: name)
                done = true
            }
            return PatchOutcome(object: Self.input(type, patched), managedFieldsDone: done)
        }
        // An apply that creates the object answers 201, as a create does.
        return Self.withWarnings(
            Self.json(Self.output(type, version: version, result), status: created.withLock { $0 } ? 201 : 200),
            r.warn && contentType != "application/json-patch+json" ? Self.unknownFields(type, version: version, patch) : [])
    }

    func delete(_ request: Request, _ r: ResourceRequest, name: String) async throws -> Response {
        let (type, version, query) = (r.type, r.version, r.query)
        let options = try await Self.readOptionalJSON(request)
        let deleted = try await store.delete(
            r.storageType, namespace: r.namespace, name: name,
            propagationPolicy: query["propagationPolicy"] ?? options["propagationPolicy"]?.stringValue,
            preconditionUID: options.value(at: ["preconditions", "uid"])?.stringValue,
            preconditionResourceVersion: options.value(at: ["preconditions", "resourceVersion"])?.stringValue, dryRun: r.dryRun,
            gracePeriodSeconds: (query["gracePeriodSeconds"].flatMap { Int($0) })
                ?? options["gracePeriodSeconds"]?.intValue.map { Int($0) })
        // Like the real registries: custom resources (and anything still pending behind
        // finalizers) come back as the object; a built-in object deleted at once as a Status.
        let pending = (try? await store.get(r.storageType, namespace: r.namespace, name: name)) != nil
        // A namespace always goes through Terminating (its controller empties it first), so
        // the real server answers with the marked namespace even when kubesim removed an
        // empty one at once.
        if !type.isCustom, !pending, !r.dryRun, type.typeKey != "/namespaces" {
            return Self.json([
                "kind": "Status", "apiVersion": "v1", "metadata": [:], "status": "Success",
                "details": [
                    "name": .string(name), "group": .string(type.group), "kind": .string(type.resource),
                    "uid": deleted.value(at: ["metadata", "uid"]) ?? "",
                ],
            ])
        }
        return Self.json(Self.output(type, version: version, deleted))
    }

    /// Fields of a custom-resource body (object or merge/apply patch) that its schema does not declare.
    static func unknownFields(_ type: ResourceType, version: String, _ body: JSONValue) -> [String] {
        guard type.isCustom, let schema = type.schemas[version] ?? type.schemas[type.preferredVersion] else { return [] }
        var copy = body
        var pruned: [String] = []
        Schema.prune(&copy, schema, path: "", pruned: &pruned)
        return pruned.filter { $0 != "apiVersion" && $0 != "kind" && $0 != "metadata" }
    }

    /// Adds one `Warning: 299 - "unknown field ..."` header per field.
    static func withWarnings(_ response: Response, _ fields: [String]) -> Response {
        var response = response
        for field in fields {
            response.headers.append(HTTPField(name: HTTPField.Name("Warning")!, value: "299 - \"unknown field \\\"\(field)\\\"\""))
        }
        return response
    }

    /// The `meta.k8s.io/v1` PartialObjectMetadata form of an object.
    static func partialMetadata(_ object: JSONValue) -> JSONValue {
        ["kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"] ?? [:]]
    }

    // MARK: Scale

    static func path(_ jsonPath: String) -> [String] {
        jsonPath.split(separator: ".").map(String.init)
    }

    static func scaleObject(_ type: ResourceType, _ object: JSONValue, _ paths: ScalePaths) -> JSONValue {
        let metadata = object["metadata"] ?? [:]
        var scaleMetadata: [String: JSONValue] = [:]
        for key in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] { scaleMetadata[key] = metadata[key] }
        var status: [String: JSONValue] = ["replicas": object.value(at: path(paths.statusReplicasPath)) ?? 0]
        if paths.selectorFromSpec {
            status["selector"] = .string(LabelSelector.string(from: object.value(at: ["spec", "selector"])))
        } else if let selectorPath = paths.labelSelectorPath, let selector = object.value(at: path(selectorPath)) {
            status["selector"] = selector
        }
        return [
            "kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": .object(scaleMetadata),
            "spec": ["replicas": object.value(at: path(paths.specReplicasPath)) ?? 0], "status": .object(status),
        ]
    }

    func scale(_ request: Request, type: ResourceType, version: String, namespace: String, name: String, manager: String, dryRun: Bool)
        async throws -> Response
    {
        let paths = type.scale!
        switch request.method {
        case .get:
            let object = try await store.get(type, namespace: namespace, name: name)
            return Self.json(Self.scaleObject(type, object, paths))
        case .put, .patch:
            let body = try await request.body.collect(upTo: 1 << 20)
            let input = try JSONValue.parse(Array(body.readableBytesView))
            let contentType = (request.headers[.contentType] ?? "application/json").split(separator: ";").first.map(String.init) ?? ""
            let isPut = request.method == .put
            let result = try await store.patch(
                type, namespace: namespace, name: name, subresource: nil, manager: manager, dryRun: dryRun, createIfMissing: false
            ) { (current: JSONValue?) throws(KubeSimError) -> PatchOutcome in
                guard let current else { throw .notFound(type, name) }
                let scale = Self.scaleObject(type, current, paths)
                let newScale: JSONValue
                if isPut {
                    newScale = input
                } else if contentType == "application/json-patch+json" {
                    newScale = try Patch.jsonPatch(scale, input)
                } else {
                    newScale = Patch.merge(scale, input)
                }
                guard let replicas = newScale.value(at: ["spec", "replicas"])?.intValue, replicas >= 0 else {
                    throw .invalid(
                        type, name,
                        [
                            .init(
                                reason: "FieldValueInvalid", message: "Invalid value: must be greater than or equal to 0",
                                field: "spec.replicas")
                        ])
                }
                var updated = current
                if let rv = newScale.value(at: ["metadata", "resourceVersion"])?.stringValue, !rv.isEmpty {
                    updated.setValue(.string(rv), at: ["metadata", "resourceVersion"])
                }
                updated.setValue(.int(replicas), at: Self.path(paths.specReplicasPath))
                return PatchOutcome(object: updated)
            }
            return Self.json(Self.scaleObject(type, result, paths))
        default:
            throw KubeSimError.methodNotAllowed("the server does not allow this method on the requested resource")
        }
    }

    // MARK: Watch

    func watch(
        type: ResourceType, storageType: ResourceType, version: String, namespace: String?, labels: LabelSelector?,
        fields: FieldSelector?, query: Query, table: Bool
    ) async throws -> Response {
        let from: Int64?
        if let rv = query["resourceVersion"], !rv.isEmpty {
            guard let value = Int64(rv) else { throw KubeSimError.badRequest("invalid resourceVersion \(rv)") }
            from = value
        } else {
            from = nil
        }
        let opened = await Self.openWatch(
            store, storageType, namespace: namespace, from: from, sendInitialEvents: query["sendInitialEvents"] == "true")
        let id: Int
        let events: AsyncStream<WatchEvent>
        switch opened {
        case .success(let watch): (id, events) = (watch.id, watch.events)
        case .failure(let error) where error.code == 410:
            // As the real watch cache does: the stream opens, then one ERROR event carries the 410.
            var line = JSONValue.object(["type": "ERROR", "object": error.status]).serializedBytes()
            line.append(0x0A)
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: line)))
        case .failure(let error): throw error
        }
        let hub = store.hub
        let bookmarks = query["allowWatchBookmarks"] == "true"
        let initialEnd = query["sendInitialEvents"] == "true"
        let timeout: Duration = .seconds(Int(query["timeoutSeconds"] ?? "") ?? 1800)
        let interval = bookmarkInterval
        let includeObject = query["includeObject"] ?? "Metadata"
        if initialEnd { hub.bookmark(id) }
        let contentType = table ? "application/json;as=Table;v=v1;g=meta.k8s.io" : "application/json"
        return Response(
            status: .ok, headers: [.contentType: contentType],
            body: ResponseBody { writer in
                defer { hub.unsubscribe(id) }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        let deadline = ContinuousClock.now + timeout
                        while true {
                            let left = deadline - ContinuousClock.now
                            if left <= .zero { break }
                            try await Task.sleep(for: bookmarks ? min(interval, left) : left)
                            if ContinuousClock.now >= deadline { break }
                            hub.bookmark(id)
                        }
                        hub.unsubscribe(id)
                    }
                    var first = true
                    var pendingInitialEnd = initialEnd
                    for await event in events {
                        var eventType = event.type
                        var object: JSONValue
                        if event.type == "ERROR" {
                            object = event.object  // a Status, as is
                        } else if event.type == "BOOKMARK" {
                            if !bookmarks && !pendingInitialEnd { continue }
                            var metadata: [String: JSONValue] = ["resourceVersion": .string(String(event.resourceVersion))]
                            if pendingInitialEnd {
                                metadata["annotations"] = ["k8s.io/initial-events-end": "true"]
                                pendingInitialEnd = false
                            }
                            object = [
                                "kind": .string(type.kind), "apiVersion": .string(type.apiVersion(version)), "metadata": .object(metadata),
                            ]
                        } else {
                            let matches = { (o: JSONValue) in (labels?.matches(object: o) ?? true) && (fields?.matches(o) ?? true) }
                            let now = matches(event.object)
                            if event.type == "MODIFIED", let old = event.old {
                                let before = matches(old)
                                if !now && !before { continue }
                                if now && !before { eventType = "ADDED" }
                                if !now && before { eventType = "DELETED" }
                            } else if !now {
                                continue
                            }
                            object = Self.output(type, version: version, event.object)
                            if table {
                                object = TableRendering.table(
                                    type, [object], resourceVersion: String(event.resourceVersion), continueToken: nil, now: Date(),
                                    includeObject: includeObject, headers: first)
                                first = false
                            }
                        }
                        var line = JSONValue.object(["type": .string(eventType), "object": object]).serializedBytes()
                        line.append(0x0A)
                        try await writer.write(ByteBuffer(bytes: line))
                    }
                    group.cancelAll()
                }
                try await writer.finish(nil)
            })
    }

    static func openWatch(
        _ store: ResourceStore, _ type: ResourceType, namespace: String?, from: Int64?, sendInitialEvents: Bool
    ) async -> Result<(id: Int, events: AsyncStream<WatchEvent>), KubeSimError> {
        do {
            return .success(try await store.watch(type, namespace: namespace, from: from, sendInitialEvents: sendInitialEvents))
        } catch {
            return .failure(error)
        }
    }

    // MARK: Bodies

    static func readJSON(_ request: Request) async throws -> JSONValue {
        let body = try await request.body.collect(upTo: 16 << 20)
        guard body.readableBytes > 0 else { throw KubeSimError.badRequest("the request body is empty") }
        if request.headers[.contentType]?.contains("application/vnd.kubernetes.protobuf") == true {
            return try KubernetesProtobuf.decode(Array(body.readableBytesView))
        }
        do {
            return try JSONValue.parse(Array(body.readableBytesView))
        } catch {
            throw KubeSimError.badRequest("the body of the request is not valid JSON: \(error)")
        }
    }

    static func readOptionalJSON(_ request: Request) async throws -> JSONValue {
        let body = try await request.body.collect(upTo: 1 << 20)
        guard body.readableBytes > 0 else { return [:] }
        return (try? JSONValue.parse(Array(body.readableBytesView))) ?? [:]
    }
}

/// Decoded query parameters (last value wins).
struct Query: Sendable {
    var values: [String: String] = [:]

    init(_ uri: URI) {
        // Go clients encode spaces as '+' (url.Values.Encode).
        for pair in (uri.query ?? "").split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String {
                let plain = s.replacingOccurrences(of: "+", with: " ")
                return plain.removingPercentEncoding ?? plain
            }
            values[decode(parts[0])] = parts.count > 1 ? decode(parts[1]) : ""
        }
    }

    subscript(_ key: String) -> String? { values[key] }
}
