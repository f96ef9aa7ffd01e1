/// The JetStream subject scheme of docs/design.md (section 4).
///
/// | Subject | Record |
/// |---|---|
/// | `<prefix>.<index>.<id as 8 lowercase hex>` | fingerprint `{"h":[u32]}`, or a tombstone `{}` / empty |
/// | `<prefix>.<index>` | lifecycle `{"op":"create"}` / `{"op":"delete"}` |
/// | `<prefix>.<index>._meta.<hex of key>` | metadata entry `{"v":"value"}` |
public struct StreamSubjects: Sendable, Equatable {
    public let prefix: String

    public init(prefix: String = "fpindex") {
        self.prefix = prefix
    }

    /// Whether `prefix` is usable: dot-separated tokens of `[A-Za-z0-9_-]`.
    public static func isValidPrefix(_ prefix: String) -> Bool {
        let tokens = prefix.split(separator: ".", omittingEmptySubsequences: false)
        return !tokens.isEmpty && tokens.allSatisfy { FpindexNames.isValidIndexName($0) }
    }

    /// Every subject of the stream: `<prefix>.>`.
    public var all: String { "\(prefix).>" }
    /// Lifecycle records of every index: `<prefix>.*`.
    public var allLifecycle: String { "\(prefix).*" }
    /// Everything of one index below its lifecycle record: `<prefix>.<index>.>`.
    public func indexContents(_ index: String) -> String { "\(prefix).\(index).>" }
    public func lifecycle(_ index: String) -> String { "\(prefix).\(index)" }
    public func fingerprint(_ index: String, id: UInt32) -> String {
        "\(prefix).\(index).\(Self.hex8(id))"
    }
    public func metadata(_ index: String, key: String) -> String {
        "\(prefix).\(index)._meta.\(Self.hex(key.utf8))"
    }

    /// What a subject of this stream addresses.
    public enum Subject: Sendable, Equatable {
        case lifecycle(index: String)
        case fingerprint(index: String, id: UInt32)
        case metadata(index: String, key: String)
    }

    /// Parses a subject of this stream; nil for anything that does not fit the scheme.
    public func parse(_ subject: String) -> Subject? {
        var subject = subject
        // Native strings are contiguous UTF-8: scanned in place, once per message of a replay.
        return subject.withUTF8 { parse(utf8: $0) }
    }

    private func parse(utf8 bytes: UnsafeBufferPointer<UInt8>) -> Subject? {
        let prefixLength = prefix.utf8.count
        guard bytes.count > prefixLength + 1, bytes[prefixLength] == UInt8(ascii: "."),
            prefix.utf8.elementsEqual(UnsafeBufferPointer(rebasing: bytes[..<prefixLength]))
        else { return nil }
        // Up to three tokens after the prefix: index, then an id or `_meta` and a key.
        var tokens = (0..<0, 0..<0, 0..<0)
        var count = 0
        var start = prefixLength + 1
        for position in start...bytes.count where position == bytes.count || bytes[position] == UInt8(ascii: ".") {
            switch count {
            case 0: tokens.0 = start..<position
            case 1: tokens.1 = start..<position
            case 2: tokens.2 = start..<position
            default: return nil
            }
            count += 1
            start = position + 1
        }
        let indexBytes = UnsafeBufferPointer(rebasing: bytes[tokens.0])
        guard FpindexNames.isValidIndexName(bytes: indexBytes) else { return nil }
        let index = String(decoding: indexBytes, as: UTF8.self)
        switch count {
        case 1:
            return .lifecycle(index: index)
        case 2:
            let token = bytes[tokens.1]
            guard token.count == 8, let id = Self.parseHex(token), id != 0 else { return nil }
            return .fingerprint(index: index, id: UInt32(id))
        default:
            guard bytes[tokens.1].elementsEqual("_meta".utf8), let keyBytes = Self.unhex(bytes[tokens.2]),
                let key = String(validating: keyBytes, as: UTF8.self), !key.isEmpty
            else { return nil }
            return .metadata(index: index, key: key)
        }
    }

    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    static func hex8(_ value: UInt32) -> String {
        String(unsafeUninitializedCapacity: 8) { buffer in
            for i in 0..<8 {
                buffer[i] = hexDigits[Int((value >> (28 - 4 * UInt32(i))) & 0xf)]
            }
            return 8
        }
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        var out: [UInt8] = []
        for b in bytes {
            out.append(hexDigits[Int(b >> 4)])
            out.append(hexDigits[Int(b & 0xf)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        default: nil
        }
    }

    static func parseHex(_ token: some Collection<UInt8>) -> UInt64? {
        guard !token.isEmpty, token.count <= 16 else { return nil }
        var value: UInt64 = 0
        for c in token {
            guard let d = hexValue(c) else { return nil }
            value = value << 4 | UInt64(d)
        }
        return value
    }

    static func unhex(_ token: some Collection<UInt8>) -> [UInt8]? {
        guard token.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(token.count / 2)
        var high: UInt8?
        for c in token {
            guard let d = hexValue(c) else { return nil }
            if let h = high {
                out.append(h << 4 | d)
                high = nil
            } else {
                high = d
            }
        }
        return out
    }
}

/// The payload of a fingerprint subject: the hashes, or nil for a tombstone.
public struct FingerprintRecord: Sendable, Equatable, WireCodable {
    /// nil marks a deletion.
    public var hashes: [UInt32]?

    public init(hashes: [UInt32]?) { self.hashes = hashes }

    public static let tombstone = FingerprintRecord(hashes: nil)

    static let fields = WireFields(["h"])

    public init<R: WireReader>(from reader: inout R) throws(FpindexError) {
        var hashes: [UInt32]?
        try reader.readStruct(Self.fields) { (r, _) throws(FpindexError) in hashes = try r.readUInt32Array() }
        self.hashes = hashes
    }

    public func encode<W: WireWriter>(to writer: inout W) {
        guard let hashes else {
            writer.beginMap(count: 0)
            writer.endMap()
            return
        }
        writer.beginMap(count: 1)
        writer.writeKey("h")
        writer.writeUInt32Array(hashes)
        writer.endMap()
    }

    /// Decodes a stream payload (MessagePack); an empty payload is a tombstone.
    public static func decode(payload: UnsafeRawBufferPointer) throws(FpindexError) -> FingerprintRecord {
        payload.isEmpty ? .tombstone : try decode(from: payload, format: .msgpack)
    }

    /// The MessagePack payload to publish.
    public var payload: [UInt8] { encoded(as: .msgpack) }

    /// A payload's hashes as MessagePack, checked but not decoded; nil for a tombstone. Accepts
    /// exactly what `decode(payload:)` accepts.
    ///
    /// Payloads laid out as the proxy writes them (`{"h":[...]}`, each hash a uint of at most
    /// 32 bits) are sliced as they are; anything else is decoded and re-encoded.
    public static func packedHashes(payload: [UInt8]) throws(FpindexError) -> PackedHashes? {
        if payload.isEmpty { return nil }
        if let packed = PackedHashes(canonicalRecord: payload) { return packed }
        return try decode(from: payload, format: .msgpack).hashes.map(PackedHashes.init)
    }
}

/// Hashes as a MessagePack array of uint32 (header and elements), so the
/// updater can pass a stream record's hashes to fpindex without decoding and re-encoding them.
public struct PackedHashes: Sendable, Equatable {
    /// The encoded array.
    public let bytes: ArraySlice<UInt8>
    public let count: Int

    public init(_ hashes: [UInt32]) {
        var writer = MsgPackWriter()
        writer.writeUInt32Array(hashes)
        bytes = writer.bytes[...]
        count = hashes.count
    }

    /// The hashes of a record laid out as the proxy writes it, `{"h":[...]}` with uint elements
    /// of at most 32 bits, or nil when the record is encoded any other way (valid or not).
    init?(canonicalRecord payload: [UInt8]) {
        let parsed = payload.withUnsafeBufferPointer { bytes -> (start: Int, count: Int)? in
            guard bytes.count >= 4, bytes[0] == 0x81, bytes[1] == 0xa1, bytes[2] == UInt8(ascii: "h") else { return nil }
            var p = 3
            let header = bytes[p]
            let count: Int
            switch header {
            case 0x90...0x9f:
                count = Int(header & 0x0f)
                p += 1
            case 0xdc where bytes.count >= p + 3 && Int(bytes[p + 1]) << 8 | Int(bytes[p + 2]) >= 16:
                count = Int(bytes[p + 1]) << 8 | Int(bytes[p + 2])
                p += 3
            default:
                return nil
            }
            // Each element a positive fixint, uint8, uint16 or uint32 (the forms a writer uses for
            // uint32 values; others go the slow way), and nothing after the array.
            let end = bytes.count
            // The proxy writes hashes as uint32s: exactly five bytes each, checked at once.
            if end - p == 5 &* count {
                var markers: UInt8 = 0
                for i in 0..<count { markers |= bytes[p &+ 5 &* i] ^ 0xce }
                if markers == 0 { return (3, count) }
            }
            for _ in 0..<count {
                guard p < end else { return nil }
                let b = bytes[p]
                if b == 0xce {
                    p &+= 5
                } else if b < 0x80 {
                    p &+= 1
                } else if b == 0xcd {
                    p &+= 3
                } else if b == 0xcc {
                    p &+= 2
                } else {
                    return nil
                }
            }
            guard p == bytes.count else { return nil }
            return (3, count)
        }
        guard let parsed else { return nil }
        bytes = payload[parsed.start...]
        count = parsed.count
    }
}

/// The payload of an index's lifecycle subject.
public struct LifecycleRecord: Sendable, Equatable, WireCodable {
    public enum Operation: String, Sendable {
        case create
        case delete
    }

    public var op: Operation

    public init(_ op: Operation) { self.op = op }

    static let fields = WireFields(["op"])

    public init<R: WireReader>(from reader: inout R) throws(FpindexError) {
        var op: Operation?
        try reader.readStruct(Self.fields) { (r, _) throws(FpindexError) in
            let text = try r.readString()
            guard let parsed = Operation(rawValue: text) else { throw .badRequest("unknown lifecycle op") }
            op = parsed
        }
        guard let op else { throw .badRequest("lifecycle record without op") }
        self.op = op
    }

    public func encode<W: WireWriter>(to writer: inout W) {
        writer.beginMap(count: 1)
        writer.writeKey("op", full: true)
        writer.writeString(op.rawValue)
        writer.endMap()
    }

    public static func decode(payload: UnsafeRawBufferPointer) throws(FpindexError) -> LifecycleRecord {
        try decode(from: payload, format: .msgpack)
    }

    public var payload: [UInt8] { encoded(as: .msgpack) }
}

/// The payload of one metadata entry's subject.
public struct MetadataRecord: Sendable, Equatable, WireCodable {
    public var value: String

    public init(value: String) { self.value = value }

    static let fields = WireFields(["v"])

    public init<R: WireReader>(from reader: inout R) throws(FpindexError) {
        var value: String?
        try reader.readStruct(Self.fields) { (r, _) throws(FpindexError) in value = try r.readString() }
        guard let value else { throw .badRequest("metadata record without v") }
        self.value = value
    }

    public func encode<W: WireWriter>(to writer: inout W) {
        writer.beginMap(count: 1)
        writer.writeKey("v")
        writer.writeString(value)
        writer.endMap()
    }

    public static func decode(payload: UnsafeRawBufferPointer) throws(FpindexError) -> MetadataRecord {
        try decode(from: payload, format: .msgpack)
    }

    public var payload: [UInt8] { encoded(as: .msgpack) }
}

/// Metadata keys the cluster keeps for itself; clients cannot write them.
public enum ReservedMetadata {
    public static let prefix = "fpindex-cluster."
    /// The last stream sequence applied to an index (docs/design.md, section 5).
    public static let sequenceKey = "fpindex-cluster.seq"
    /// The identity of the stream the index was fed from (name + creation time).
    public static let streamKey = "fpindex-cluster.stream"
    /// The stream sequence of the create record the index was made from: which generation of
    /// the index (in the stream's numbering) the replica holds. fpindex numbers generations
    /// itself, per index, and refuses an older number than it has seen for a name (after the
    /// stream was recreated, say), so its own number cannot be relied on to be the stream's.
    public static let generationKey = "fpindex-cluster.generation"

    public static func isReserved(_ key: String) -> Bool { key.hasPrefix(prefix) }
}
