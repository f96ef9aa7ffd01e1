import AsyncHTTPClient
import FpindexAPI
import NIOCore
import NIOHTTP1

/// What went wrong calling fpindex.
public enum FpindexCallError: Error, CustomStringConvertible {
    /// Unreachable, timed out, or a 5xx: try again later.
    case unavailable(String)
    /// The index does not exist (404 `IndexNotFound`).
    case indexNotFound
    /// fpindex refused the request as invalid (400): retrying will not help.
    case rejected(status: Int, name: String)

    public var description: String {
        switch self {
        case .unavailable(let reason): "fpindex unavailable: \(reason)"
        case .indexNotFound: "index not found"
        case .rejected(let status, let name): "fpindex refused the request: \(status) \(name)"
        }
    }
}

/// The fpindex HTTP API as this project's tools use it (the updater, fpindex-verify), in
/// MessagePack over pooled connections.
public final class FpindexClient: Sendable {
    public let baseURL: String
    let client: HTTPClient

    public init(baseURL: String) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(2), read: .seconds(120))
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    public func shutdown() async {
        try? await client.shutdown()
    }

    private func call(_ method: HTTPMethod, _ path: String, body: consuming [UInt8]? = nil) async throws -> (status: Int, body: [UInt8]) {
        // Copied into a ByteBuffer and released before sending: bodies are megabytes.
        try await call(method, path, body: (consume body).map { ByteBuffer(bytes: $0) })
    }

    private func call(_ method: HTTPMethod, _ path: String, body: ByteBuffer?) async throws -> (status: Int, body: [UInt8]) {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        request.headers.add(name: "Accept", value: "application/vnd.msgpack")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/vnd.msgpack")
            request.body = .bytes(body)
        }
        do {
            let response = try await client.execute(request, timeout: .seconds(120))
            let bytes = try await response.body.collect(upTo: 64 << 20)
            return (Int(response.status.code), Array(bytes.readableBytesView))
        } catch {
            throw FpindexCallError.unavailable("\(error)")
        }
    }

    private func check(_ reply: (status: Int, body: [UInt8])) throws {
        switch reply.status {
        case 200..<300: return
        case 404:
            let name = (try? ErrorResponse.decode(from: reply.body, format: .msgpack))?.error
            if name == FpindexError.Name.indexNotFound.rawValue { throw FpindexCallError.indexNotFound }
            throw FpindexCallError.rejected(status: 404, name: name ?? "")
        case 400..<500:
            let name = (try? ErrorResponse.decode(from: reply.body, format: .msgpack))?.error ?? ""
            throw FpindexCallError.rejected(status: reply.status, name: name)
        default:
            throw FpindexCallError.unavailable("status \(reply.status)")
        }
    }

    /// The index's version, metadata and stats, or nil when it does not exist.
    public func indexInfo(_ index: String) async throws -> IndexInfo? {
        let reply = try await call(.GET, "/\(index)")
        if reply.status == 404 { return nil }
        try check(reply)
        do {
            return try IndexInfo.decode(from: reply.body, format: .msgpack)
        } catch {
            throw FpindexCallError.unavailable("unreadable index info: \(error)")
        }
    }

    /// The index's generation, or nil when it does not exist.
    public func indexGeneration(_ index: String) async throws -> UInt64? {
        let reply = try await call(.GET, "/\(index)/_status")
        if reply.status == 404 { return nil }
        try check(reply)
        return (try? IndexStatus.decode(from: reply.body, format: .msgpack))?.generation
    }

    /// Creates the index (idempotent) with the given generation; returns the generation it has.
    public func createIndex(_ index: String, generation: UInt64?) async throws -> UInt64 {
        let reply = try await call(.PUT, "/\(index)", body: CreateIndexRequest(generation: generation).encoded(as: .msgpack))
        try check(reply)
        return (try? CreateIndexResponse.decode(from: reply.body, format: .msgpack))?.generation ?? 0
    }

    public func deleteIndex(_ index: String) async throws {
        try check(try await call(.DELETE, "/\(index)"))
    }

    /// One atomic write: changes plus metadata (the checkpoint travels with the data).
    public func update(_ index: String, _ request: UpdateRequest) async throws {
        try await update(index, body: ByteBuffer(bytes: request.encoded(as: .msgpack)))
    }

    /// One atomic write, its MessagePack body already encoded.
    public func update(_ index: String, body: ByteBuffer) async throws {
        try check(try await call(.POST, "/\(index)/_update", body: body))
    }

    /// The version at which the fingerprint was last written, or nil when the index does not hold it.
    /// - Throws: `FpindexCallError.indexNotFound` when the index does not exist.
    public func fingerprintVersion(_ index: String, id: UInt32) async throws -> UInt64? {
        let reply = try await call(.GET, "/\(index)/\(id)")
        if reply.status == 404 {
            let name = (try? ErrorResponse.decode(from: reply.body, format: .msgpack))?.error
            if name == FpindexError.Name.indexNotFound.rawValue { throw FpindexCallError.indexNotFound }
            return nil
        }
        try check(reply)
        do {
            return try VersionResponse.decode(from: reply.body, format: .msgpack).version
        } catch {
            throw FpindexCallError.unavailable("unreadable fingerprint reply: \(error)")
        }
    }

    /// Searches the index.
    public func search(_ index: String, _ request: SearchRequest) async throws -> [SearchResult] {
        let reply = try await call(.POST, "/\(index)/_search", body: request.encoded(as: .msgpack))
        try check(reply)
        do {
            return try SearchResponse.decode(from: reply.body, format: .msgpack).results
        } catch {
            throw FpindexCallError.unavailable("unreadable search reply: \(error)")
        }
    }
}
