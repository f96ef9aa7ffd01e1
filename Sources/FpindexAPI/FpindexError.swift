/// An error in fpindex's vocabulary: a closed set of names, each with its HTTP status.
///
/// Every layer throws these; only the HTTP edge turns them into a reply body
/// (`{"error":"Name"}` or `{"e":"Name"}`). `detail` is for logs and never sent to clients.
public struct FpindexError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The error names of `docs/fpindex-api.md`, plus the ones this project adds in the same shape.
    public enum Name: String, Sendable, CaseIterable {
        case badRequest = "BadRequest"
        case invalidFingerprintId = "InvalidFingerprintId"
        case invalidIndexName = "InvalidIndexName"
        case indexNotFound = "IndexNotFound"
        case fingerprintNotFound = "FingerprintNotFound"
        case versionMismatch = "VersionMismatch"
        case indexAlreadyExists = "IndexAlreadyExists"
        /// `PUT /:index` with a generation not newer than the name's last one (the real fpindex).
        case olderIndexAlreadyExists = "OlderIndexAlreadyExists"
        /// `PUT /:index` with a generation newer than the live index's (the real fpindex).
        case newerIndexAlreadyExists = "NewerIndexAlreadyExists"
        case unsupportedMediaType = "UnsupportedMediaType"
        case searchTimeout = "SearchTimeout"
        case indexNotReady = "IndexNotReady"
        case notFound = "NotFound"
        case methodNotAllowed = "MethodNotAllowed"
        case bodyTooBig = "BodyTooBig"
        case serviceUnavailable = "ServiceUnavailable"
        case notImplemented = "NotImplemented"
        case gatewayTimeout = "GatewayTimeout"
        /// The request target (path and query) is longer than the proxy forwards (ours: fpindex
        /// itself aborts or drops the connection on request lines over about 8 KB).
        case uriTooLong = "URITooLong"
        /// A header field is too large, or there are too many of them (ours, as `uriTooLong`).
        case requestHeaderFieldsTooLarge = "RequestHeaderFieldsTooLarge"
        case unauthorized = "Unauthorized"
        case internalError = "InternalError"

        /// The HTTP status code fpindex answers with for this error.
        public var status: Int {
            switch self {
            case .badRequest, .invalidFingerprintId, .invalidIndexName: 400
            case .unauthorized: 401
            case .indexNotFound, .fingerprintNotFound, .notFound: 404
            case .methodNotAllowed: 405
            case .versionMismatch, .indexAlreadyExists, .olderIndexAlreadyExists, .newerIndexAlreadyExists: 409
            case .bodyTooBig: 413
            case .unsupportedMediaType: 415
            case .internalError: 500
            case .notImplemented: 501
            case .searchTimeout, .indexNotReady, .serviceUnavailable: 503
            case .gatewayTimeout: 504
            case .uriTooLong: 414
            case .requestHeaderFieldsTooLarge: 431
            }
        }
    }

    public var name: Name
    /// Why, for logs. Never part of a reply.
    public var detail: String
    /// The methods the route takes, for a `MethodNotAllowed` reply's `Allow` header.
    public var allowedMethods: [String]

    public init(_ name: Name, _ detail: String = "") {
        self.name = name
        self.detail = detail
        self.allowedMethods = []
    }

    /// `MethodNotAllowed` for a route that takes `allowed`.
    public static func methodNotAllowed(_ method: String, allowed: [String]) -> FpindexError {
        var error = FpindexError(.methodNotAllowed, "\(method) not allowed; allowed: \(allowed.joined(separator: ", "))")
        error.allowedMethods = allowed
        return error
    }

    public var status: Int { name.status }

    public var description: String {
        detail.isEmpty ? name.rawValue : "\(name.rawValue): \(detail)"
    }

    public static func badRequest(_ detail: String) -> FpindexError { FpindexError(.badRequest, detail) }

    /// Errors compare by name: the detail is commentary.
    public static func == (lhs: FpindexError, rhs: FpindexError) -> Bool { lhs.name == rhs.name }
}

/// The reply body of an error: `{"error":"Name"}` in JSON, `{"e":"Name"}` in MessagePack.
public struct ErrorResponse: Sendable, Equatable, WireCodable {
    public var error: String

    public init(error: String) { self.error = error }
    public init(_ error: FpindexError) { self.error = error.name.rawValue }

    static let fields = WireFields(["error"])

    public init<R: WireReader>(from reader: inout R) throws(FpindexError) {
        var error: String?
        try reader.readStruct(Self.fields) { (r, field) throws(FpindexError) in
            error = try r.readString()
        }
        guard let error else { throw .badRequest("missing field error") }
        self.error = error
    }

    public func encode<W: WireWriter>(to writer: inout W) {
        writer.beginMap(count: 1)
        writer.writeKey("error")
        writer.writeString(error)
        writer.endMap()
    }
}
