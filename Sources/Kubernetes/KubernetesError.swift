import Foundation

/// The API server's `Status` object (errors and some delete replies).
public struct Status: Codable, Sendable, Equatable {
    public var kind: String? = "Status"
    public var apiVersion: String? = "v1"
    public var status: String?
    public var message: String?
    public var reason: String?
    public var details: Details?
    public var code: Int?

    public struct Details: Codable, Sendable, Equatable {
        public var name: String?
        public var group: String?
        public var kind: String?
        public var uid: String?
        public var causes: [Cause]?
        public var retryAfterSeconds: Int?
    }

    public struct Cause: Codable, Sendable, Equatable {
        public var reason: String?
        public var message: String?
        public var field: String?
    }

    public init(status: String? = nil, message: String? = nil, reason: String? = nil, code: Int? = nil) {
        self.status = status
        self.message = message
        self.reason = reason
        self.code = code
    }
}

/// An error from the API server or from reaching it. `reason` is the closed set the controller
/// branches on; `status` and `message` keep the server's words.
public struct KubernetesError: Error, CustomStringConvertible, Sendable {
    public enum Reason: Sendable, Equatable {
        case notFound
        case alreadyExists
        case conflict
        case invalid
        case badRequest
        case unauthorized
        case forbidden
        /// 410: the resourceVersion is too old (watch: relist).
        case expired
        case tooManyRequests
        case methodNotAllowed
        case unsupportedMediaType
        case timeout
        case serverError
        /// The request never got an HTTP answer (connection refused, TLS failure, reset, ...).
        case transport
        /// The answer could not be decoded.
        case decoding
        case other
    }

    public var reason: Reason
    /// HTTP status (0 for transport errors).
    public var code: Int
    public var message: String
    /// The server's `Status.reason` string, e.g. "AlreadyExists".
    public var statusReason: String?
    public var causes: [Status.Cause]
    /// From `Retry-After` or `details.retryAfterSeconds`.
    public var retryAfter: Duration?

    public init(
        reason: Reason, code: Int, message: String, statusReason: String? = nil, causes: [Status.Cause] = [],
        retryAfter: Duration? = nil
    ) {
        self.reason = reason
        self.code = code
        self.message = message
        self.statusReason = statusReason
        self.causes = causes
        self.retryAfter = retryAfter
    }

    public var description: String {
        var text = code == 0 ? "kubernetes: \(message)" : "kubernetes: \(code) \(statusReason ?? "\(reason)"): \(message)"
        if !causes.isEmpty {
            text += " (" + causes.map { "\($0.field ?? "?"): \($0.message ?? $0.reason ?? "")" }.joined(separator: "; ") + ")"
        }
        return text
    }

    /// Worth retrying with backoff: transport failures, timeouts, throttling and server errors.
    public var isTransient: Bool {
        switch reason {
        case .transport, .timeout, .tooManyRequests, .serverError: return true
        default: return false
        }
    }

    /// Builds the error for a non-2xx answer from its status, body and `Retry-After` header.
    public static func from(code: Int, body: [UInt8], retryAfterHeader: String?) -> KubernetesError {
        let status = try? JSONDecoder().decode(Status.self, from: Data(body))
        let statusReason = status?.reason
        let reason: Reason
        switch (code, statusReason) {
        case (_, "NotFound"), (404, nil): reason = .notFound
        case (_, "AlreadyExists"): reason = .alreadyExists
        case (_, "Conflict"), (409, _): reason = .conflict
        case (_, "Invalid"), (422, _): reason = .invalid
        case (_, "Expired"), (_, "Gone"), (410, _): reason = .expired
        case (_, "TooManyRequests"), (429, _): reason = .tooManyRequests
        case (401, _), (_, "Unauthorized"): reason = .unauthorized
        case (403, _), (_, "Forbidden"): reason = .forbidden
        case (400, _), (_, "BadRequest"): reason = .badRequest
        case (405, _): reason = .methodNotAllowed
        case (415, _): reason = .unsupportedMediaType
        case (504, _), (_, "Timeout"), (408, _): reason = .timeout
        case (500..., _): reason = .serverError
        default: reason = .other
        }
        var retryAfter: Duration?
        if let header = retryAfterHeader?.trimmingCharacters(in: .whitespaces), let seconds = Int(header) {
            retryAfter = .seconds(seconds)
        } else if let seconds = status?.details?.retryAfterSeconds {
            retryAfter = .seconds(seconds)
        }
        let message =
            status?.message
            ?? (body.isEmpty ? HTTPStatusText.text(code) : String(decoding: body.prefix(300), as: UTF8.self))
        return KubernetesError(
            reason: reason, code: code, message: message, statusReason: statusReason,
            causes: status?.details?.causes ?? [], retryAfter: retryAfter)
    }

    /// The in-stream `ERROR` event of a watch.
    static func from(status: Status) -> KubernetesError {
        let body = (try? JSONEncoder.kubernetes().encode(status)).map(Array.init) ?? []
        return from(code: status.code ?? 500, body: body, retryAfterHeader: nil)
    }
}

enum HTTPStatusText {
    static func text(_ code: Int) -> String {
        switch code {
        case 400: return "bad request"
        case 401: return "unauthorized"
        case 403: return "forbidden"
        case 404: return "not found"
        case 409: return "conflict"
        case 410: return "gone"
        case 422: return "unprocessable entity"
        case 429: return "too many requests"
        case 500: return "internal server error"
        case 502: return "bad gateway"
        case 503: return "service unavailable"
        case 504: return "gateway timeout"
        default: return "HTTP \(code)"
        }
    }
}
