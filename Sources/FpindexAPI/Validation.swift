/// Names and ids as the fpindex API accepts them.
public enum FpindexNames {
    public static let maxIndexNameLength = 255
    /// Request bodies larger than this are refused with 413 `BodyTooBig`.
    public static let maxBodyBytes = 16 * 1024 * 1024

    /// Whether `name` is 1-255 bytes of `[A-Za-z0-9_-]` (which also keeps it a valid NATS subject token).
    public static func isValidIndexName(_ name: some StringProtocol) -> Bool {
        isValidIndexName(bytes: name.utf8)
    }

    /// `isValidIndexName` on the name's UTF-8 bytes.
    public static func isValidIndexName(bytes utf8: some Collection<UInt8>) -> Bool {
        guard !utf8.isEmpty, utf8.count <= maxIndexNameLength else { return false }
        return utf8.allSatisfy { b in
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
                true
            default: false
            }
        }
    }

    /// Parses a fingerprint id from a URL path segment (decimal).
    /// - Throws: `BadRequest` when it is not a u32, `InvalidFingerprintId` for 0.
    public static func parseFingerprintId(_ text: some StringProtocol) throws(FpindexError) -> UInt32 {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let id = UInt32(text)
        else { throw .badRequest("fingerprint id is not a u32") }
        guard id != 0 else { throw FpindexError(.invalidFingerprintId, "fingerprint id 0") }
        return id
    }
}

/// Content negotiation of `docs/fpindex-api.md`.
public enum ContentNegotiation {
    /// The format of a request body.
    ///
    /// - Parameters:
    ///   - contentType: the `Content-Type` header, if any.
    ///   - bodyIsEmpty: whether the request has no body bytes.
    /// - Returns: the body's format, or nil when there is no body and no usable header.
    /// - Throws: `UnsupportedMediaType` for any other content type.
    public static func requestFormat(contentType: String?, bodyIsEmpty: Bool) throws(FpindexError) -> WireFormat? {
        guard let contentType, !contentType.allSatisfy(\.isWhitespace) else {
            return bodyIsEmpty ? nil : .msgpack
        }
        guard let format = mediaType(contentType) else {
            throw FpindexError(.unsupportedMediaType, "unsupported content type \(contentType.prefix(100))")
        }
        return format
    }

    /// The format of the reply: what `Accept` names (highest q wins, then the earlier one),
    /// else the request's format, else JSON.
    public static func responseFormat(accept: String?, requestFormat: WireFormat?) -> WireFormat {
        if let accept {
            var best: (format: WireFormat, q: Double)?
            for range in accept.split(separator: ",") {
                let parts = range.split(separator: ";")
                guard let first = parts.first, let format = mediaType(first) else { continue }
                var q = 1.0
                for parameter in parts.dropFirst() {
                    let pair = parameter.split(separator: "=", maxSplits: 1)
                    if pair.count == 2, pair[0].trimmingSpaces().lowercased() == "q" {
                        q = Double(pair[1].trimmingSpaces()) ?? 1.0
                    }
                }
                guard q > 0 else { continue }
                if best == nil || q > best!.q { best = (format, q) }
            }
            if let best { return best.format }
        }
        return requestFormat ?? .json
    }

    /// The format a media type names, ignoring parameters and case.
    public static func mediaType(_ value: some StringProtocol) -> WireFormat? {
        let type = value.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        switch type.trimmingSpaces().lowercased() {
        case "application/json": return .json
        case "application/vnd.msgpack": return .msgpack
        default: return nil
        }
    }
}

extension StringProtocol {
    func trimmingSpaces() -> Substring {
        let s = Substring(self)
        guard let start = s.firstIndex(where: { !$0.isWhitespace }) else { return "" }
        let end = s.lastIndex(where: { !$0.isWhitespace })!
        return s[start...end]
    }
}
