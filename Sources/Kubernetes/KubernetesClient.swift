import Foundation
import Logging
import Synchronization

/// Options of a list request.
public struct ListOptions: Sendable {
    public var labelSelector: String?
    public var fieldSelector: String?
    /// Page size; the answer's `metadata.continue` fetches the next page.
    public var limit: Int?
    public var `continue`: String?
    public var resourceVersion: String?
    public var resourceVersionMatch: String?

    public init(
        labelSelector: String? = nil, fieldSelector: String? = nil, limit: Int? = nil, continue next: String? = nil,
        resourceVersion: String? = nil, resourceVersionMatch: String? = nil
    ) {
        self.labelSelector = labelSelector
        self.fieldSelector = fieldSelector
        self.limit = limit
        self.continue = next
        self.resourceVersion = resourceVersion
        self.resourceVersionMatch = resourceVersionMatch
    }

    var query: [(String, String)] {
        var items: [(String, String)] = []
        if let labelSelector, !labelSelector.isEmpty { items.append(("labelSelector", labelSelector)) }
        if let fieldSelector, !fieldSelector.isEmpty { items.append(("fieldSelector", fieldSelector)) }
        if let limit { items.append(("limit", String(limit))) }
        if let next = self.continue, !next.isEmpty { items.append(("continue", next)) }
        if let resourceVersion { items.append(("resourceVersion", resourceVersion)) }
        if let resourceVersionMatch { items.append(("resourceVersionMatch", resourceVersionMatch)) }
        return items
    }
}

/// `DeleteOptions`.
public struct DeleteOptions: Codable, Sendable {
    public enum Propagation: String, Codable, Sendable {
        case background = "Background"
        case foreground = "Foreground"
        case orphan = "Orphan"
    }

    public struct Preconditions: Codable, Sendable {
        public var uid: String?
        public var resourceVersion: String?
        public init(uid: String? = nil, resourceVersion: String? = nil) {
            self.uid = uid
            self.resourceVersion = resourceVersion
        }
    }

    public var apiVersion = "v1"
    public var kind = "DeleteOptions"
    public var propagationPolicy: Propagation?
    public var preconditions: Preconditions?
    public var gracePeriodSeconds: Int?

    public init(
        propagationPolicy: Propagation? = nil, preconditions: Preconditions? = nil, gracePeriodSeconds: Int? = nil
    ) {
        self.propagationPolicy = propagationPolicy
        self.preconditions = preconditions
        self.gracePeriodSeconds = gracePeriodSeconds
    }
}

/// A patch body and its media type.
public enum Patch: Sendable {
    /// RFC 7386 JSON merge patch (`application/merge-patch+json`).
    case merge(JSONValue)
    /// RFC 6902 JSON patch (`application/json-patch+json`).
    case json([JSONPatchOperation])
    /// Strategic merge patch, built-in kinds only (`application/strategic-merge-patch+json`).
    case strategicMerge(JSONValue)
    /// Server-side apply (`application/apply-patch+yaml`; JSON is valid YAML): the full intent
    /// of one field manager; `force` takes fields over from other managers.
    case apply(JSONValue, fieldManager: String, force: Bool)

    var contentType: String {
        switch self {
        case .merge: return "application/merge-patch+json"
        case .json: return "application/json-patch+json"
        case .strategicMerge: return "application/strategic-merge-patch+json"
        case .apply: return "application/apply-patch+yaml"
        }
    }

    func body() throws -> [UInt8] {
        switch self {
        case .merge(let value), .strategicMerge(let value), .apply(let value, _, _):
            return Array(try JSONEncoder.kubernetes().encode(value))
        case .json(let operations):
            return Array(try JSONEncoder.kubernetes().encode(operations))
        }
    }
}

/// One RFC 6902 operation.
public struct JSONPatchOperation: Codable, Sendable, Equatable {
    /// add, remove, replace, move, copy, test.
    public var op: String
    public var path: String
    public var value: JSONValue?
    public var from: String?

    public init(op: String, path: String, value: JSONValue? = nil, from: String? = nil) {
        self.op = op
        self.path = path
        self.value = value
        self.from = from
    }
}

/// A successful raw answer.
public struct KubernetesResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: [UInt8]
}

/// The Kubernetes REST client: every verb for any group/version/resource, typed (Codable
/// models) or untyped (`DynamicObject`, `JSONValue`), plus watches. Requests run on libcurl's
/// multi interface on a thread the client owns; call `shutdown()` when done.
///
/// Throttling (429) and 503 answers with `Retry-After` are retried up to `maxRetries` times
/// after the delay the server asks for (capped at 10 s), as client-go does; a 401 with a token
/// file re-reads the token and retries once. Everything else is the caller's decision.
public final class KubernetesClient: Sendable {
    public let configuration: KubernetesConfiguration
    let transport: CurlTransport
    private let credentials: CredentialSource
    let logger: Logger
    public let maxRetries: Int

    /// - Throws: `KubernetesConfigurationError` for settings libcurl cannot honour.
    public init(configuration: KubernetesConfiguration, logger: Logger, maxRetries: Int = 3) throws {
        if configuration.tls.serverName != nil {
            throw KubernetesConfigurationError("tls-server-name is not supported by this client")
        }
        self.configuration = configuration
        self.logger = logger
        self.maxRetries = maxRetries
        var tls = CurlTransport.TLSOptions(insecure: configuration.tls.insecureSkipVerify)
        switch configuration.tls.certificateAuthority {
        case .file(let path): tls.caFile = path
        case .data(let bytes): tls.caData = bytes
        case nil: break
        }
        switch configuration.tls.clientCertificate {
        case .file(let path): tls.certFile = path
        case .data(let bytes): tls.certData = bytes
        case nil: break
        }
        switch configuration.tls.clientKey {
        case .file(let path): tls.keyFile = path
        case .data(let bytes): tls.keyData = bytes
        case nil: break
        }
        credentials = CredentialSource(configuration.credentials)
        transport = try CurlTransport(tls: tls, logger: logger)
    }

    /// Stops the transfer thread; requests in flight fail.
    public func shutdown() { transport.shutdown() }

    /// Forgets a token read from a file, so the next request reads it again (after a 401 that
    /// did not go through `send`, e.g. a watch).
    func invalidateCredentials() { credentials.invalidate() }

    // MARK: Raw requests

    /// Sends a request to `path` (e.g. `/apis/apps/v1/namespaces/x/deployments`) and returns a
    /// 2xx answer; anything else throws `KubernetesError`.
    public func send(
        method: String, path: String, query: [(String, String)] = [], body: [UInt8]? = nil,
        contentType: String? = nil, accept: String = "application/json", timeout: Duration? = nil
    ) async throws -> KubernetesResponse {
        var attempt = 0
        var reloadedToken = false
        while true {
            let request = try buildRequest(
                method: method, path: path, query: query, body: body, contentType: contentType, accept: accept,
                timeout: timeout ?? configuration.requestTimeout)
            let response = try await transport.perform(request)
            if (200..<300).contains(response.status) {
                return KubernetesResponse(status: response.status, headers: response.headers, body: response.body)
            }
            let error = KubernetesError.from(
                code: response.status, body: response.body, retryAfterHeader: response.headers["retry-after"])
            if response.status == 401, credentials.canReload, !reloadedToken {
                reloadedToken = true
                credentials.invalidate()
                logger.debug("401 from the API server; re-reading the token")
                continue
            }
            if attempt < maxRetries, let delay = error.retryAfter, response.status == 429 || response.status == 503 {
                attempt += 1
                let capped = min(delay, .seconds(10))
                logger.debug(
                    "API server asked to retry", metadata: ["http.status": "\(response.status)", "retry.after": "\(capped)"])
                try await Task.sleep(for: capped)
                continue
            }
            throw error
        }
    }

    func buildRequest(
        method: String, path: String, query: [(String, String)], body: [UInt8]?, contentType: String?, accept: String,
        timeout: Duration
    ) throws -> TransportRequest {
        var headers: [(String, String)] = [("Accept", accept), ("User-Agent", configuration.userAgent)]
        if let contentType { headers.append(("Content-Type", contentType)) }
        if let authorization = try credentials.authorization() { headers.append(("Authorization", authorization)) }
        return TransportRequest(
            method: method, url: configuration.server + path + PathEscaping.query(query), headers: headers, body: body,
            timeout: timeout)
    }

    private func decode<T: Decodable>(_ type: T.Type, _ response: KubernetesResponse) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(response.body))
        } catch {
            throw KubernetesError(
                reason: .decoding, code: response.status, message: "cannot decode \(T.self): \(error)")
        }
    }

    private func namespace(for type: ResourceType, _ namespace: String?) -> String? {
        type.namespaced ? (namespace ?? configuration.namespace) : nil
    }

    // MARK: Verbs (any resource type, any Decodable)

    /// GET one object (or a subresource of it).
    public func get<T: Decodable>(
        _ type: ResourceType, namespace: String?, name: String, subresource: String? = nil, as: T.Type = T.self
    ) async throws -> T {
        let path = type.path(namespace: self.namespace(for: type, namespace), name: name, subresource: subresource)
        return try decode(T.self, try await send(method: "GET", path: path))
    }

    /// One page of a list. `namespace` nil lists a namespaced type across all namespaces.
    public func list<T: Decodable & Sendable>(
        _ type: ResourceType, namespace: String?, options: ListOptions = ListOptions(), as: T.Type = T.self
    ) async throws -> ObjectList<T> {
        let path = type.path(namespace: type.namespaced ? namespace : nil)
        return try decode(ObjectList<T>.self, try await send(method: "GET", path: path, query: options.query))
    }

    /// Every page of a list, followed through `continue`; the result carries the last page's
    /// resourceVersion (a consistent snapshot, to watch from).
    public func listAll<T: Decodable & Sendable>(
        _ type: ResourceType, namespace: String?, options: ListOptions = ListOptions(), as: T.Type = T.self
    ) async throws -> ObjectList<T> {
        var options = options
        var items: [T] = []
        while true {
            let page = try await list(type, namespace: namespace, options: options, as: T.self)
            items += page.items
            guard let next = page.metadata.continue, !next.isEmpty else {
                return ObjectList(items: items, metadata: page.metadata)
            }
            options.continue = next
        }
    }

    /// POST a new object.
    public func create<T: Decodable>(
        _ type: ResourceType, namespace: String?, body: some Encodable, fieldManager: String? = nil,
        dryRun: Bool = false, as: T.Type = T.self
    ) async throws -> T {
        var query: [(String, String)] = []
        if let fieldManager { query.append(("fieldManager", fieldManager)) }
        if dryRun { query.append(("dryRun", "All")) }
        let response = try await send(
            method: "POST", path: type.path(namespace: self.namespace(for: type, namespace)), query: query,
            body: Array(try JSONEncoder.kubernetes().encode(body)), contentType: "application/json")
        return try decode(T.self, response)
    }

    /// PUT an object (optimistic concurrency: `metadata.resourceVersion` must be current, or 409).
    public func update<T: Decodable>(
        _ type: ResourceType, namespace: String?, name: String, body: some Encodable, subresource: String? = nil,
        fieldManager: String? = nil, dryRun: Bool = false, as: T.Type = T.self
    ) async throws -> T {
        var query: [(String, String)] = []
        if let fieldManager { query.append(("fieldManager", fieldManager)) }
        if dryRun { query.append(("dryRun", "All")) }
        let response = try await send(
            method: "PUT",
            path: type.path(namespace: self.namespace(for: type, namespace), name: name, subresource: subresource),
            query: query, body: Array(try JSONEncoder.kubernetes().encode(body)), contentType: "application/json")
        return try decode(T.self, response)
    }

    /// PATCH an object or a subresource (`status`, `scale`).
    public func patch<T: Decodable>(
        _ type: ResourceType, namespace: String?, name: String, patch: Patch, subresource: String? = nil,
        fieldManager: String? = nil, dryRun: Bool = false, as: T.Type = T.self
    ) async throws -> T {
        var query: [(String, String)] = []
        switch patch {
        case .apply(_, let manager, let force):
            query.append(("fieldManager", manager))
            if force { query.append(("force", "true")) }
        default:
            if let fieldManager { query.append(("fieldManager", fieldManager)) }
        }
        if dryRun { query.append(("dryRun", "All")) }
        let response = try await send(
            method: "PATCH",
            path: type.path(namespace: self.namespace(for: type, namespace), name: name, subresource: subresource),
            query: query, body: try patch.body(), contentType: patch.contentType)
        return try decode(T.self, response)
    }

    /// DELETE an object. Returns the object as the server last saw it when it answers with one
    /// (finalizers pending, foreground deletion), nil when it answers with a `Status`.
    @discardableResult
    public func delete(
        _ type: ResourceType, namespace: String?, name: String, options: DeleteOptions = DeleteOptions(),
        dryRun: Bool = false
    ) async throws -> DynamicObject? {
        let response = try await send(
            method: "DELETE", path: type.path(namespace: self.namespace(for: type, namespace), name: name),
            query: dryRun ? [("dryRun", "All")] : [], body: Array(try JSONEncoder.kubernetes().encode(options)),
            contentType: "application/json")
        let object = try? JSONDecoder().decode(DynamicObject.self, from: Data(response.body))
        return object?.json["kind"]?.string == "Status" ? nil : object
    }

    /// The `scale` subresource.
    public func scale(_ type: ResourceType, namespace: String?, name: String) async throws -> Scale {
        try await get(type, namespace: namespace, name: name, subresource: "scale", as: Scale.self)
    }

    /// Sets `spec.replicas` through the `scale` subresource (a merge patch: no resourceVersion race).
    public func setScale(_ type: ResourceType, namespace: String?, name: String, replicas: Int) async throws -> Scale {
        try await patch(
            type, namespace: namespace, name: name, patch: .merge(["spec": ["replicas": .integer(Int64(replicas))]]),
            subresource: "scale", as: Scale.self)
    }

    // MARK: Typed conveniences

    public func get<T: KubernetesObject>(_ kind: T.Type, namespace: String? = nil, name: String) async throws -> T {
        try await get(T.resourceType, namespace: namespace, name: name, as: T.self)
    }

    public func list<T: KubernetesObject>(
        _ kind: T.Type, namespace: String?, options: ListOptions = ListOptions()
    ) async throws -> ObjectList<T> {
        try await listAll(T.resourceType, namespace: namespace, options: options, as: T.self)
    }

    public func create<T: KubernetesObject>(_ object: T, fieldManager: String? = nil) async throws -> T {
        try await create(
            T.resourceType, namespace: object.metadata.namespace, body: object, fieldManager: fieldManager, as: T.self)
    }

    /// PUT the object, or its `status` with `subresource: "status"`.
    public func update<T: KubernetesObject>(
        _ object: T, subresource: String? = nil, fieldManager: String? = nil
    ) async throws -> T {
        guard let name = object.metadata.name else {
            throw KubernetesError(reason: .invalid, code: 0, message: "update needs metadata.name")
        }
        return try await update(
            T.resourceType, namespace: object.metadata.namespace, name: name, body: object, subresource: subresource,
            fieldManager: fieldManager, as: T.self)
    }

    /// Server-side apply of `object` as the whole intent of `fieldManager`.
    public func apply<T: KubernetesObject>(
        _ object: T, fieldManager: String, force: Bool = true, subresource: String? = nil
    ) async throws -> T {
        guard let name = object.metadata.name else {
            throw KubernetesError(reason: .invalid, code: 0, message: "apply needs metadata.name")
        }
        return try await patch(
            T.resourceType, namespace: object.metadata.namespace, name: name,
            patch: .apply(try JSONValue(encoding: object), fieldManager: fieldManager, force: force),
            subresource: subresource, as: T.self)
    }

    public func patch<T: KubernetesObject>(
        _ kind: T.Type, namespace: String? = nil, name: String, patch: Patch, subresource: String? = nil,
        fieldManager: String? = nil
    ) async throws -> T {
        try await self.patch(
            T.resourceType, namespace: namespace, name: name, patch: patch, subresource: subresource,
            fieldManager: fieldManager, as: T.self)
    }

    @discardableResult
    public func delete<T: KubernetesObject>(
        _ kind: T.Type, namespace: String? = nil, name: String, options: DeleteOptions = DeleteOptions()
    ) async throws -> DynamicObject? {
        try await delete(T.resourceType, namespace: namespace, name: name, options: options)
    }
}

/// The Authorization header, from a fixed token or a token file re-read every `refresh` and
/// after a 401 (projected service-account tokens rotate). The token is never logged.
final class CredentialSource: Sendable {
    private let credentials: KubernetesConfiguration.Credentials
    private struct Cached {
        var header: String?
        var readAt: ContinuousClock.Instant?
    }
    private let cache = Mutex(Cached())

    init(_ credentials: KubernetesConfiguration.Credentials) { self.credentials = credentials }

    var canReload: Bool {
        if case .tokenFile = credentials { return true }
        return false
    }

    func invalidate() { cache.withLock { $0.readAt = nil } }

    func authorization() throws -> String? {
        switch credentials {
        case .none: return nil
        case .token(let token): return "Bearer \(token)"
        case .basic(let username, let password):
            return "Basic " + Data("\(username):\(password)".utf8).base64EncodedString()
        case .tokenFile(let path, let refresh):
            let now = ContinuousClock.now
            if let header = cache.withLock({ cached -> String? in
                guard let readAt = cached.readAt, now - readAt < refresh else { return nil }
                return cached.header
            }) {
                return header
            }
            // A few bytes, once a minute: read inline.
            let token: String
            do {
                token = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            } catch {
                throw KubernetesError(reason: .unauthorized, code: 0, message: "cannot read the token file \(path)")
            }
            let header = "Bearer \(token)"
            cache.withLock { $0 = Cached(header: header, readAt: now) }
            return header
        }
    }
}
