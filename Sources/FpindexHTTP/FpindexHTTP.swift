import FpindexAPI
import Hummingbird
import Logging
import NIOCore

/// What the HTTP edge knows about one request's formats.
public struct Negotiation: Sendable {
    /// The request body's format (nil: no body).
    public var request: WireFormat?
    /// The reply's format.
    public var response: WireFormat

    public init(request: WireFormat?, response: WireFormat) {
        self.request = request
        self.response = response
    }

    /// The reply format to use before (or without) reading a body: Accept, else the
    /// Content-Type if it is one of ours, else JSON.
    public static func beforeBody(_ request: Request) -> Negotiation {
        let contentType = request.headers[.contentType].flatMap(ContentNegotiation.mediaType)
        return Negotiation(
            request: contentType,
            response: ContentNegotiation.responseFormat(accept: request.headers[.accept], requestFormat: contentType))
    }
}

/// Reading request bodies and writing replies the way fpindex does.
public enum FpindexHTTP {
    /// Reads the whole body (up to 16 MiB) and works out both formats.
    /// - Parameter optionalBody: the route takes no body or an optional one (`PUT`/`DELETE
    ///   /:index`, `DELETE /:index/:id`): an empty body is fine whatever its `Content-Type` says,
    ///   as the real fpindex takes it (some HTTP clients label every request).
    /// - Throws: `BodyTooBig` past the limit, `UnsupportedMediaType` for a foreign Content-Type.
    public static func readBody(_ request: Request, optionalBody: Bool = false) async throws -> (ByteBuffer, Negotiation) {
        var body = ByteBuffer()
        // Room for the announced length at once: growing by doubling copies megabyte bodies twice.
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), (1...FpindexNames.maxBodyBytes).contains(length) {
            body.reserveCapacity(length)
        }
        do {
            try await request.body.collect(upTo: FpindexNames.maxBodyBytes, into: &body)
        } catch is NIOTooManyBytesError {
            throw FpindexError(.bodyTooBig, "request body over \(FpindexNames.maxBodyBytes) bytes")
        }
        let format =
            optionalBody && body.readableBytes == 0
            ? nil : try ContentNegotiation.requestFormat(contentType: request.headers[.contentType], bodyIsEmpty: body.readableBytes == 0)
        let negotiation = Negotiation(
            request: format,
            response: ContentNegotiation.responseFormat(accept: request.headers[.accept], requestFormat: format))
        return (body, negotiation)
    }

    /// Decodes a required body.
    public static func decode<T: WireDecodable>(_ type: T.Type, from body: ByteBuffer, format: WireFormat?) throws(FpindexError) -> T {
        guard let format, body.readableBytes > 0 else { throw .badRequest("request body is required") }
        let result: Result<T, FpindexError> = body.withUnsafeReadableBytes { bytes in
            Result { () throws(FpindexError) -> T in try T.decode(from: bytes, format: format) }
        }
        return try result.get()
    }

    /// Decodes an optional body: an empty one yields `empty`.
    public static func decodeOptional<T: WireDecodable>(
        _ type: T.Type, from body: ByteBuffer, format: WireFormat?, empty: T
    ) throws(FpindexError) -> T {
        guard body.readableBytes > 0 else { return empty }
        return try decode(type, from: body, format: format)
    }

    /// A reply carrying `value` in `format`.
    public static func response(_ value: some WireEncodable, format: WireFormat, status: HTTPResponse.Status = .ok, head: Bool = false)
        -> Response
    {
        var bytes: [UInt8] = []
        value.encode(into: &bytes, format: format)
        return response(bytes: bytes, contentType: format.contentType, status: status, head: head)
    }

    /// A reply with a raw body.
    public static func response(bytes: [UInt8], contentType: String, status: HTTPResponse.Status = .ok, head: Bool = false) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = contentType
        if head {
            headers[.contentLength] = String(bytes.count)
            return Response(status: status, headers: headers, body: ResponseBody())
        }
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// A plain-text reply such as `OK\n`.
    public static func text(_ text: String, status: HTTPResponse.Status = .ok, head: Bool = false) -> Response {
        response(bytes: Array(text.utf8), contentType: "text/plain; charset=UTF-8", status: status, head: head)
    }

    /// The reply for an error, in the negotiated format (415 is always JSON).
    public static func errorResponse(_ error: FpindexError, format: WireFormat, head: Bool = false) -> Response {
        let replyFormat: WireFormat = error.name == .unsupportedMediaType ? .json : format
        var response = response(
            ErrorResponse(error), format: replyFormat, status: HTTPResponse.Status(code: error.status), head: head)
        if error.name == .methodNotAllowed, !error.allowedMethods.isEmpty {
            response.headers[.allow] = error.allowedMethods.joined(separator: ", ")
        }
        return response
    }

    /// Maps whatever a handler threw to an fpindex error. Unknown errors become 500 with
    /// the details only in the log.
    public static func fpindexError(from error: any Error, logger: Logger) -> FpindexError {
        switch error {
        case let error as FpindexError:
            if error.status >= 500 {
                logger.warning("request failed", metadata: ["error": "\(error)"])
            }
            return error
        case is NIOTooManyBytesError:
            return FpindexError(.bodyTooBig)
        default:
            logger.error("request failed with an unexpected error", metadata: ["error": "\(String(reflecting: error))"])
            return FpindexError(.internalError, "\(error)")
        }
    }

    /// Resolves the route of a request, or throws `NotFound` / `MethodNotAllowed`
    /// (with the methods the route takes, for the `Allow` header).
    public static func route(_ request: Request) throws(FpindexError) -> FpindexRoute {
        guard let route = FpindexRoute.match(path: request.uri.path) else {
            throw FpindexError(.notFound, "no route for \(request.uri.path.prefix(200))")
        }
        guard route.allowedMethods.contains(request.method) else {
            throw FpindexError.methodNotAllowed(request.method.rawValue, allowed: route.allowedMethods.map(\.rawValue))
        }
        return route
    }
}

/// What one request's handler learns as it goes: the route (for metrics) and the formats.
public struct Exchange: Sendable {
    public var routeLabel = "unmatched"
    public var negotiation: Negotiation
    public let head: Bool

    init(_ request: Request) {
        negotiation = Negotiation.beforeBody(request)
        head = request.method == .head
    }
}

extension FpindexHTTP {
    /// The outermost layer of an fpindex-style server: runs `handle`, turns whatever it throws
    /// into an fpindex error reply in the negotiated format, and records the request's metrics.
    public static func serve(
        _ request: Request, logger: Logger, metrics: HTTPMetrics,
        mapError: (any Error, Logger) -> FpindexError = { fpindexError(from: $0, logger: $1) },
        _ handle: (inout Exchange) async throws -> Response
    ) async -> Response {
        let start = ContinuousClock.now
        var exchange = Exchange(request)
        let response: Response
        do {
            response = try await handle(&exchange)
        } catch {
            response = errorResponse(mapError(error, logger), format: exchange.negotiation.response, head: exchange.head)
        }
        metrics.record(
            route: exchange.routeLabel, method: request.method.rawValue, status: response.status.code, duration: ContinuousClock.now - start
        )
        return response
    }
}
