import FpindexAPI

/// The formats `fpindex-import` reads.
public enum ImportFormat: String, CaseIterable, Sendable {
    /// PostgreSQL `COPY ... TO STDOUT` text of `(id, int[])` rows: `123\t{1,2,3}`, `\N` for NULL.
    case pgcopy
    /// One JSON object per line: `{"id":123,"hashes":[...]}` (`"hashes":null` deletes).
    case jsonl
    /// MessagePack `_update` bodies, one after another.
    case msgpack
}

/// What one input row asks for.
public enum ImportChange: Sendable, Equatable {
    /// The fingerprint `id` has these hashes.
    case fingerprint(id: UInt32, hashes: [UInt32])
    /// The fingerprint `id` is gone (a NULL fingerprint, a deleted row).
    case deletion(id: UInt32)
    /// A whole `_update` body (fingerprints, deletions and metadata).
    case update(UpdateRequest)
}

/// A row the import cannot take, and why.
public struct RowError: Error, Sendable, Equatable, CustomStringConvertible {
    /// 1-based line (for `msgpack`, the body's ordinal).
    public var line: Int
    public var reason: String
    /// Nothing after this row can be read (a broken `msgpack` body: bodies carry no length).
    public var endsInput: Bool

    public init(line: Int, reason: String, endsInput: Bool = false) {
        self.line = line
        self.reason = reason
        self.endsInput = endsInput
    }

    public var description: String { "line \(line): \(reason)" }
}

/// Parsers of single rows: pure functions, fuzzed in the tests.
public enum ImportRowParser {
    /// Parses one line of PostgreSQL COPY text (without its newline).
    /// - Returns: the change, or nil for a line that holds no row (empty, or the `\.` end marker).
    public static func pgcopy(_ line: some Collection<UInt8>) throws(FpindexError) -> ImportChange? {
        let bytes = Array(line)
        let parsed = bytes.withUnsafeBufferPointer { buffer -> Result<ImportChange?, FpindexError> in
            do throws(FpindexError) {
                return .success(try pgcopy(buffer))
            } catch {
                return .failure(error)
            }
        }
        return try parsed.get()
    }

    /// `pgcopy` over borrowed bytes, in one pass: 100 M rows go through it.
    public static func pgcopy(_ line: UnsafeBufferPointer<UInt8>) throws(FpindexError) -> ImportChange? {
        var end = line.count
        if end > 0, line[end - 1] == UInt8(ascii: "\r") { end -= 1 }
        if end == 0 || (end == 2 && line[0] == UInt8(ascii: "\\") && line[1] == UInt8(ascii: ".")) { return nil }
        var tab = 0
        while tab < end, line[tab] != UInt8(ascii: "\t") { tab += 1 }
        guard tab < end else { throw .badRequest("expected two tab-separated columns (id, hashes)") }
        let id = try fingerprintId(UnsafeBufferPointer(rebasing: line[0..<tab]))
        let start = tab + 1
        if end - start == 2, line[start] == UInt8(ascii: "\\"), line[start + 1] == UInt8(ascii: "N") { return .deletion(id: id) }
        guard end - start >= 2, line[start] == UInt8(ascii: "{"), line[end - 1] == UInt8(ascii: "}") else {
            if line[start..<end].contains(UInt8(ascii: "\t")) { throw .badRequest("expected two columns, found more") }
            throw .badRequest("the hashes column is not an array literal {...} or \\N")
        }
        var hashes: [UInt32] = []
        hashes.reserveCapacity((end - start) / 8)
        var position = start + 1
        let close = end - 1
        guard position < close else { return .fingerprint(id: id, hashes: hashes) }
        while true {
            // One element: [-]digits, then , or the closing brace.
            let elementStart = position
            let negative = line[position] == UInt8(ascii: "-")
            if negative { position += 1 }
            var value: UInt64 = 0
            var digits = 0
            while position < close, line[position] >= UInt8(ascii: "0"), line[position] <= UInt8(ascii: "9"), digits <= 10 {
                value = value &* 10 &+ UInt64(line[position] &- UInt8(ascii: "0"))
                digits += 1
                position += 1
            }
            guard digits > 0, digits <= 10, position == close || line[position] == UInt8(ascii: ",") else {
                var elementEnd = elementStart
                while elementEnd < close, line[elementEnd] != UInt8(ascii: ",") { elementEnd += 1 }
                throw .badRequest("the hash \(printable(line[elementStart..<elementEnd])) is not an integer")
            }
            if negative {
                guard value <= 1 << 31 else {
                    throw .badRequest("the hash \(printable(line[elementStart..<position])) is below -2147483648")
                }
                hashes.append(UInt32(truncatingIfNeeded: 0 &- value))
            } else {
                guard value <= UInt64(UInt32.max) else {
                    throw .badRequest("the hash \(printable(line[elementStart..<position])) is above 4294967295")
                }
                hashes.append(UInt32(truncatingIfNeeded: value))
            }
            if position == close { return .fingerprint(id: id, hashes: hashes) }
            position += 1
            guard position < close else { throw .badRequest("the hashes end with a comma") }
        }
    }

    /// Parses one JSON line: `{"id":u32,"hashes":[i32 or u32,...]}`, `"hashes":null` for a deletion.
    /// - Returns: the change, or nil for a blank line.
    public static func jsonl(_ line: some Collection<UInt8>) throws(FpindexError) -> ImportChange? {
        let bytes = Array(line)
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0d }) { return nil }
        let parsed = bytes.withUnsafeBytes { buffer -> Result<ImportChange, FpindexError> in
            do throws(FpindexError) {
                return .success(try jsonRow(buffer))
            } catch {
                return .failure(error)
            }
        }
        return try parsed.get()
    }

    private static func jsonRow(_ buffer: UnsafeRawBufferPointer) throws(FpindexError) -> ImportChange {
        var reader = JSONReader(buffer)
        var id: UInt32?
        var hashes: [UInt32]?
        var sawHashes = false
        try reader.readStruct(jsonFields) { (r, field) throws(FpindexError) in
            switch field {
            case 0:
                id = try r.readFingerprintId()
            default:
                sawHashes = true
                if try r.readNilIfPresent() { return }
                var list: [UInt32] = []
                try r.readArray { (r) throws(FpindexError) in list.append(try r.readHash32()) }
                hashes = list
            }
        }
        try reader.finish()
        guard let id else { throw .badRequest("missing field id") }
        guard sawHashes else { throw .badRequest("missing field hashes") }
        return hashes.map { .fingerprint(id: id, hashes: $0) } ?? .deletion(id: id)
    }

    static let jsonFields = WireFields(["id", "hashes"], fullNames: true)

    /// Decodes the `_update` body at the start of `bytes`.
    /// - Returns: the request and how many bytes it took.
    /// - Throws: when the bytes do not start with a complete, valid body (a truncated one too:
    ///   the caller reads more before it decides).
    public static func msgpackBody(_ bytes: UnsafeRawBufferPointer) throws(FpindexError) -> (UpdateRequest, Int) {
        var reader = MsgPackReader(bytes)
        let request = try UpdateRequest(from: &reader)
        return (request, reader.offset)
    }

    /// Checks a body the way the proxy does before it publishes anything.
    public static func validate(_ request: UpdateRequest) throws(FpindexError) {
        try StreamSubjects.validate(request)
        guard request.expectedVersion == nil else {
            throw .badRequest("expected_version cannot be honoured by a bulk import (the stream has no index version)")
        }
    }

    static func fingerprintId(_ text: UnsafeBufferPointer<UInt8>) throws(FpindexError) -> UInt32 {
        guard !text.isEmpty, text.count <= 10, text.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            throw .badRequest("the id \(printable(text)) is not a number from 1 to 4294967295")
        }
        var value: UInt64 = 0
        for digit in text { value = value * 10 + UInt64(digit - UInt8(ascii: "0")) }
        guard value <= UInt64(UInt32.max) else { throw .badRequest("the id \(printable(text)) is larger than 4294967295") }
        guard value != 0 else { throw FpindexError(.invalidFingerprintId, "the id 0 is not a fingerprint id") }
        return UInt32(value)
    }

    /// Input text for an error message: bounded, and control characters shown as `?`.
    static func printable(_ text: some Collection<UInt8>) -> String {
        let shown = text.prefix(40).map { $0 >= 0x20 && $0 < 0x7f ? $0 : UInt8(ascii: "?") }
        return "'" + String(decoding: shown, as: UTF8.self) + (text.count > 40 ? "...'" : "'")
    }
}
