import AsyncHTTPClient
import FpindexAPI
import FpindexHTTP
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1

/// Forwards reads and searches to the read backend (the fpindex read Service) over pooled
/// keep-alive connections, and hands its replies back unchanged.
final class ReadForwarder: Sendable {
    let baseURL: String
    let client: HTTPClient
    let timeout: Duration

    init(baseURL: String, timeout: Duration) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(2), read: .seconds(Int64(timeout.components.seconds) + 1))
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
        configuration.decompression = .disabled
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        self.timeout = timeout
    }

    func shutdown() async {
        try? await client.shutdown()
    }

    /// The backend path of a read route: built from the route, never copied from the request
    /// (no query string, no other segment: fpindex reads none on these routes).
    static func path(_ route: FpindexRoute) -> String? {
        switch route {
        case .index(let name): "/\(name)"
        case .indexHealth(let name): "/\(name)/_health"
        case .status(let name): "/\(name)/_status"
        case .search(let name): "/\(name)/_search"
        case .health, .metrics, .update, .fingerprint: nil
        }
    }

    /// Sends a read to the backend as a request built here from the parsed route, with
    /// `Content-Type` and `Accept` reduced to the negotiated formats, and returns its reply.
    /// - Throws: `ServiceUnavailable` when the backend cannot be reached or does not answer in time.
    func forward(_ route: FpindexRoute, method: HTTPRequest.Method, body: ByteBuffer?, negotiation: Negotiation, logger: Logger)
        async throws -> Response
    {
        guard let path = Self.path(route) else { throw FpindexError(.notFound, "\(route.label) is not forwarded") }
        let (reply, bytes) = try await send(
            path: path, method: HTTPMethod(rawValue: method.rawValue), body: body, format: negotiation.request,
            accept: negotiation.response, logger: logger)
        var headers = HTTPFields()
        if let contentType = reply.headers.first(name: "content-type") { headers[.contentType] = contentType }
        if method == .head {
            if let length = reply.headers.first(name: "content-length") { headers[.contentLength] = length }
            return Response(status: .init(code: Int(reply.status.code)), headers: headers, body: ResponseBody())
        }
        return Response(status: .init(code: Int(reply.status.code)), headers: headers, body: ResponseBody(byteBuffer: bytes))
    }

    /// One request to the backend, its reply head and whole body.
    /// - Throws: `ServiceUnavailable` when the backend cannot be reached or does not answer in time.
    func send(path: String, method: HTTPMethod, body: ByteBuffer?, format: WireFormat?, accept: WireFormat, logger: Logger)
        async throws -> (HTTPClientResponse, ByteBuffer)
    {
        var outgoing = HTTPClientRequest(url: baseURL + path)
        outgoing.method = method
        outgoing.headers.add(name: "Accept", value: accept.mediaType)
        if let body, body.readableBytes > 0, let format {
            outgoing.headers.add(name: "Content-Type", value: format.mediaType)
            outgoing.body = .bytes(body)
        }
        do {
            let seconds = Int64(timeout.components.seconds)
            let reply = try await client.execute(outgoing, timeout: .seconds(max(seconds, 1)))
            return (reply, try await reply.body.collect(upTo: 64 << 20))
        } catch {
            logger.warning("read backend unreachable", metadata: ["backend.url": "\(baseURL)", "error": "\(error)"])
            throw FpindexError(.serviceUnavailable, "read backend unreachable: \(error)")
        }
    }
}
