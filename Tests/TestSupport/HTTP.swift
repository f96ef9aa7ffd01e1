import AsyncHTTPClient
import Foundation
import NIOCore
@_exported import NIOHTTP1  // tests name methods as .GET, .POST, ...

/// A reply as a test sees it.
public struct HTTPReply: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public var text: String { String(decoding: body, as: UTF8.self) }
    public var contentType: String? { headers.first(name: "content-type") }

    /// The body parsed as JSON (objects as `[String: Any]`).
    public func json() throws -> Any {
        try JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed])
    }

    public func jsonObject() throws -> [String: Any] {
        guard let object = try json() as? [String: Any] else { throw TestFailure("not a JSON object: \(text)") }
        return object
    }
}

/// A small HTTP client for tests over AsyncHTTPClient.
public struct TestHTTPClient: Sendable {
    public let baseURL: String
    public let client: HTTPClient

    public init(baseURL: String, client: HTTPClient = .shared) {
        self.baseURL = baseURL
        self.client = client
    }

    public func request(
        _ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, headers: [(String, String)] = [],
        timeout: TimeAmount = .seconds(30)
    ) async throws -> HTTPReply {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await client.execute(request, timeout: timeout)
        let buffer = try await response.body.collect(upTo: 64 << 20)
        return HTTPReply(status: Int(response.status.code), headers: response.headers, body: Array(buffer.readableBytesView))
    }

    /// Sends a JSON body (a string literal is easiest to read in tests).
    public func json(_ method: HTTPMethod, _ path: String, _ json: String? = nil, headers: [(String, String)] = []) async throws
        -> HTTPReply
    {
        try await request(
            method, path, body: json.map { Array($0.utf8) },
            headers: (json == nil ? [] : [("Content-Type", "application/json")]) + headers)
    }
}
