import AsyncHTTPClient
import FpindexAPI
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

    /// Sends `request` (with `body`) to the backend and returns its reply.
    /// - Throws: `ServiceUnavailable` when the backend cannot be reached or does not answer in time.
    func forward(_ request: Request, body: ByteBuffer, logger: Logger) async throws -> Response {
        var outgoing = HTTPClientRequest(url: baseURL + request.uri.description)
        outgoing.method = HTTPMethod(rawValue: request.method.rawValue)
        for name in [HTTPField.Name.contentType, .accept] {
            if let value = request.headers[name] { outgoing.headers.add(name: name.rawName, value: value) }
        }
        if body.readableBytes > 0 { outgoing.body = .bytes(body) }
        let reply: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            let seconds = Int64(timeout.components.seconds)
            reply = try await client.execute(outgoing, timeout: .seconds(max(seconds, 1)))
            bytes = try await reply.body.collect(upTo: 64 << 20)
        } catch {
            logger.warning("read backend unreachable", metadata: ["backend.url": "\(baseURL)", "error": "\(error)"])
            throw FpindexError(.serviceUnavailable, "read backend unreachable: \(error)")
        }
        var headers = HTTPFields()
        if let contentType = reply.headers.first(name: "content-type") { headers[.contentType] = contentType }
        if request.method == .head {
            if let length = reply.headers.first(name: "content-length") { headers[.contentLength] = length }
            return Response(status: .init(code: Int(reply.status.code)), headers: headers, body: ResponseBody())
        }
        return Response(status: .init(code: Int(reply.status.code)), headers: headers, body: ResponseBody(byteBuffer: bytes))
    }
}
