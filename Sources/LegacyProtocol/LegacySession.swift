import FpindexAPI

/// One connection's state in AcoustID's legacy line protocol, as the real fpindex serves it
/// on `--legacy-port` (upstream `src/legacy.zig`, a reimplementation of the C++ server's
/// session): search tuning per connection, and one `begin` ... `commit` transaction.
///
/// The session decides; it does no I/O. A line becomes a `Step`: a reply at once, or work
/// for the backend (a search, an index attribute read, a commit) whose outcome becomes the
/// reply. Replies are `OK <payload>` or `ERR <message>`, with the real server's messages.
public struct LegacySession: Sendable {
    /// Search tuning and the idle timeout, per connection (`set NAME VALUE`, `get NAME`).
    public var maxResults: UInt32 = 500
    public var topScorePercent: UInt32 = 10
    /// Milliseconds a search may take; 0: no bound.
    public var timeoutMilliseconds: UInt32 = 0
    /// Milliseconds the server waits for the next line before `ERR timeout` and closing.
    public var idleTimeoutMilliseconds: UInt32 = 60_000

    /// Refuses `begin` (a replica that does not take writes).
    public let readOnly: Bool

    public private(set) var inTransaction = false
    private var inserts: [LegacyTransaction.Insert] = []
    private var attributes: [String: String] = [:]
    private var attributeOrder: [String] = []

    public init(readOnly: Bool = false) {
        self.readOnly = readOnly
    }

    /// What a line asks for.
    public enum Step: Sendable, Equatable {
        case reply(LegacyReply)
        /// Search the index; the results become `OK id:score id:score ...`.
        case search(hashes: [UInt32], tuning: LegacySearchTuning)
        /// The index attribute's committed value becomes `OK <value>` (empty when unset).
        case readAttribute(String)
        /// Write the transaction; `committed()` on success (`OK`), `ERR commit failed` otherwise
        /// (the transaction stays open, as in the real server).
        case commit(LegacyTransaction)
    }

    /// Handles one line, without its line break.
    public mutating func handle(line: ArraySlice<UInt8>) -> Step {
        let tokens = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
        guard let command = tokens.first else { return .reply(.ok("")) }
        let arguments = Array(tokens.dropFirst())
        switch String(decoding: command, as: UTF8.self) {
        case "echo":
            return .reply(.ok(arguments.map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")))
        case "search":
            guard arguments.count == 1 else { return .reply(.error("expected one argument")) }
            switch Self.parseHashes(arguments[0]) {
            case .failure(let error): return .reply(.error(error.message))
            case .success(let hashes):
                return .search(
                    hashes: hashes,
                    tuning: LegacySearchTuning(limit: maxResults, scorePercent: topScorePercent, timeoutMilliseconds: timeoutMilliseconds))
            }
        case "insert":
            guard inTransaction else { return .reply(.error("not in transaction")) }
            guard arguments.count == 2 else { return .reply(.error("expected two arguments")) }
            guard let id: UInt32 = ZigInteger.parse(arguments[0]) else { return .reply(.error("invalid document id")) }
            switch Self.parseHashes(arguments[1]) {
            case .failure(let error): return .reply(.error(error.message))
            case .success(let hashes):
                inserts.append(LegacyTransaction.Insert(id: id, hashes: hashes))
                return .reply(.ok(""))
            }
        case "begin":
            if readOnly { return .reply(.error("read-only replica")) }
            if inTransaction { return .reply(.error("already in transaction")) }
            clearTransaction()
            inTransaction = true
            return .reply(.ok(""))
        case "commit":
            guard inTransaction else { return .reply(.error("not in transaction")) }
            guard !inserts.isEmpty || !attributes.isEmpty else {
                committed()
                return .reply(.ok(""))
            }
            return .commit(
                LegacyTransaction(inserts: inserts, attributes: attributeOrder.map { ($0, attributes[$0]!) }.map(LegacyTransaction.Attribute.init)))
        case "rollback":
            guard inTransaction else { return .reply(.error("not in transaction")) }
            committed()
            return .reply(.ok(""))
        case "optimize", "cleanup":
            // The real server merges in the background: kept for the C++ transaction guard only.
            return .reply(inTransaction ? .ok("") : .error("not in transaction"))
        case "get":
            guard let name = Self.attributeName(arguments) else { return .reply(.error("expected one argument")) }
            if let value = sessionAttribute(name) { return .reply(.ok(String(value))) }
            return .readAttribute(name)
        case "set":
            let name: ArraySlice<UInt8>
            let value: ArraySlice<UInt8>
            if arguments.count == 2 {
                (name, value) = (arguments[0], arguments[1])
            } else if arguments.count == 3, arguments[0].elementsEqual("attribute".utf8) {
                (name, value) = (arguments[1], arguments[2])
            } else {
                return .reply(.error("expected two arguments"))
            }
            return set(name, value)
        default:
            return .reply(.error("unknown command"))
        }
    }

    /// The transaction reached the index: close it.
    public mutating func committed() {
        inTransaction = false
        clearTransaction()
    }

    private mutating func clearTransaction() {
        inserts = []
        attributes = [:]
        attributeOrder = []
    }

    private func sessionAttribute(_ name: String) -> UInt32? {
        switch name {
        case "max_results": maxResults
        case "top_score_percent": topScorePercent
        case "timeout": timeoutMilliseconds
        case "idle_timeout": idleTimeoutMilliseconds
        default: nil
        }
    }

    private mutating func set(_ nameBytes: ArraySlice<UInt8>, _ text: ArraySlice<UInt8>) -> Step {
        let name = String(decoding: nameBytes, as: UTF8.self)
        if sessionAttribute(name) != nil {
            guard let value: UInt32 = ZigInteger.parse(text) else { return .reply(.error("invalid value")) }
            switch name {
            case "max_results": maxResults = value
            case "top_score_percent": topScorePercent = value
            case "timeout": timeoutMilliseconds = value
            default: idleTimeoutMilliseconds = value
            }
            return .reply(.ok(""))
        }
        // An index attribute: buffered in the transaction, committed as index metadata.
        guard inTransaction else { return .reply(.error("not in transaction")) }
        // Metadata keys and values are text: bytes that are not UTF-8 are refused (the real
        // server would store them as they are; no AcoustID client sends them).
        guard let value = String(validating: text, as: UTF8.self), String(validating: nameBytes, as: UTF8.self) != nil
        else { return .reply(.error("invalid value")) }
        if attributes.updateValue(value, forKey: name) == nil { attributeOrder.append(name) }
        return .reply(.ok(""))
    }

    /// `get NAME` or the older `get attribute NAME`.
    private static func attributeName(_ arguments: [ArraySlice<UInt8>]) -> String? {
        if arguments.count == 1 { return String(decoding: arguments[0], as: UTF8.self) }
        if arguments.count == 2, arguments[0].elementsEqual("attribute".utf8) { return String(decoding: arguments[1], as: UTF8.self) }
        return nil
    }

    struct HashesError: Error {
        var message: String
    }

    /// Comma-separated signed decimals, each taken as its low 32 bits (clients send the signed
    /// form of each hash), parsed as the real server parses them.
    static func parseHashes(_ text: ArraySlice<UInt8>) -> Result<[UInt32], HashesError> {
        guard !text.isEmpty else { return .failure(HashesError(message: "empty fingerprint")) }
        var hashes: [UInt32] = []
        for token in text.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
            guard let value: Int64 = ZigInteger.parse(token) else { return .failure(HashesError(message: "invalid fingerprint")) }
            hashes.append(UInt32(truncatingIfNeeded: value))
        }
        return .success(hashes)
    }
}

/// A line's answer.
public enum LegacyReply: Sendable, Equatable {
    case ok(String)
    case error(String)

    /// The bytes on the wire: `OK <payload>\r\n` or `ERR <message>\r\n`.
    public var line: String {
        switch self {
        case .ok(let payload): "OK \(payload)\r\n"
        case .error(let message): "ERR \(message)\r\n"
        }
    }

    /// `OK id:score id:score ...`.
    public static func results(_ results: [(id: UInt32, score: UInt32)]) -> LegacyReply {
        .ok(results.map { "\($0.id):\($0.score)" }.joined(separator: " "))
    }
}

/// A session's search tuning, as the real server passes it to its index: no clamping (unlike
/// the HTTP API), `min_score` 1.
public struct LegacySearchTuning: Sendable, Equatable {
    public var limit: UInt32
    public var scorePercent: UInt32
    /// 0: no bound.
    public var timeoutMilliseconds: UInt32
}

/// What `commit` writes: the inserts in order (the last one of an id wins) and the index
/// attributes set in the transaction (as index metadata).
public struct LegacyTransaction: Sendable, Equatable {
    public struct Insert: Sendable, Equatable {
        public var id: UInt32
        public var hashes: [UInt32]
    }

    public struct Attribute: Sendable, Equatable {
        public var name: String
        public var value: String
        init(_ pair: (String, String)) { (name, value) = pair }
    }

    public var inserts: [Insert]
    public var attributes: [Attribute]

    /// The write as an `_update`; nil when the real fpindex refuses the commit (an insert of
    /// id 0, which the protocol's parser takes and the index does not).
    public func updateRequest() -> UpdateRequest? {
        guard !inserts.contains(where: { $0.id == 0 }) else { return nil }
        var metadata: [String: String]?
        if !attributes.isEmpty { metadata = Dictionary(attributes.map { ($0.name, $0.value) }, uniquingKeysWith: { $1 }) }
        return UpdateRequest(changes: inserts.map { .insert(id: $0.id, hashes: $0.hashes) }, metadata: metadata)
    }
}

/// Integers as Zig's `std.fmt.parseInt(T, text, 10)` reads them, which is what the real
/// server accepts: an optional `+` or `-`, decimal digits, `_` between digits (not first or
/// last); `-0` is a valid unsigned zero; out of range is an error.
enum ZigInteger {
    static func parse<T: FixedWidthInteger>(_ text: ArraySlice<UInt8>) -> T? {
        var body = text
        guard let first = body.first else { return nil }
        let negative = first == UInt8(ascii: "-")
        if negative || first == UInt8(ascii: "+") { body = body.dropFirst() }
        guard let head = body.first, let tail = body.last, head != UInt8(ascii: "_"), tail != UInt8(ascii: "_") else { return nil }
        var value: T = 0
        for character in body {
            if character == UInt8(ascii: "_") { continue }
            guard character >= UInt8(ascii: "0"), character <= UInt8(ascii: "9") else { return nil }
            let digit = T(character - UInt8(ascii: "0"))
            if value != 0 {
                let (product, overflow) = value.multipliedReportingOverflow(by: 10)
                guard !overflow else { return nil }
                value = product
            } else if negative {
                // The first significant digit of a negative number: -digit must fit.
                guard let negated = T(exactly: -Int(digit)) else { return nil }
                value = negated
                continue
            }
            let (next, overflow) = negative ? value.subtractingReportingOverflow(digit) : value.addingReportingOverflow(digit)
            guard !overflow else { return nil }
            value = next
        }
        return value
    }
}
