/// The two body formats of the fpindex API.
public enum WireFormat: String, Sendable, CaseIterable {
    case json
    case msgpack

    /// The media type alone, as a request names it (`Accept`, `Content-Type`).
    public var mediaType: String {
        switch self {
        case .json: "application/json"
        case .msgpack: "application/vnd.msgpack"
        }
    }

    /// The exact `Content-Type` of a reply in this format.
    public var contentType: String {
        switch self {
        case .json: "application/json; charset=UTF-8"
        case .msgpack: "application/vnd.msgpack"
        }
    }
}

/// The field names of one API struct, in declaration order.
///
/// JSON matches a key against the full names; MessagePack by the first letter only
/// (so both `"q"` and `"query"` select `query`), unless `fullNames` is set (the index
/// `stats` map, whose fields share first letters).
public struct WireFields: Sendable {
    public let names: [String]
    let utf8Names: [[UInt8]]
    let firstBytes: [UInt8]
    let fullNames: Bool

    public init(_ names: [String], fullNames: Bool = false) {
        self.names = names
        self.utf8Names = names.map { Array($0.utf8) }
        self.firstBytes = utf8Names.map { $0.first ?? 0 }
        self.fullNames = fullNames
        if !fullNames {
            precondition(Set(firstBytes).count == firstBytes.count, "first letters must be distinct: \(names)")
        }
    }

    /// The index of the field whose full name is `key`.
    func matchFull(_ key: UnsafeRawBufferPointer) -> Int? {
        for (i, name) in utf8Names.enumerated() where name.count == key.count {
            if name.withUnsafeBytes({ $0.elementsEqual(key) }) { return i }
        }
        return nil
    }

    /// The index of the field a MessagePack key selects.
    func matchMsgPack(_ key: UnsafeRawBufferPointer) -> Int? {
        if fullNames { return matchFull(key) }
        guard let first = key.first else { return nil }
        return firstBytes.firstIndex(of: first)
    }
}

/// A pull decoder for one of the wire formats. Decoding code is written once, generic over
/// this protocol, and specialised for JSON and MessagePack.
public protocol WireReader {
    /// Reads a struct-shaped map, calling `body` with the index of each field in `fields`.
    /// Unknown keys are rejected.
    mutating func readStruct(
        _ fields: WireFields, _ body: (inout Self, Int) throws(FpindexError) -> Void
    ) throws(FpindexError)
    /// Reads a map with arbitrary string keys, calling `body` with each key.
    mutating func readStringMap(_ body: (inout Self, String) throws(FpindexError) -> Void) throws(FpindexError)
    /// Reads an array, calling `body` once per element; `body` must read exactly one value.
    mutating func readArray(_ body: (inout Self) throws(FpindexError) -> Void) throws(FpindexError)
    /// Reads an array of u32, appending its elements to `values`; returns how many it read.
    mutating func readUInt32Array(appendingTo values: inout [UInt32]) throws(FpindexError) -> Int
    /// Reads an unsigned integer no larger than `max`.
    mutating func readUInt(max: UInt64) throws(FpindexError) -> UInt64
    mutating func readString() throws(FpindexError) -> String
    mutating func readBool() throws(FpindexError) -> Bool
    /// Consumes a null if one is next, and says whether it did.
    mutating func readNilIfPresent() throws(FpindexError) -> Bool
}

extension WireReader {
    /// Reads an array of u32.
    public mutating func readUInt32Array() throws(FpindexError) -> [UInt32] {
        var values: [UInt32] = []
        _ = try readUInt32Array(appendingTo: &values)
        return values
    }

    public mutating func readUInt32() throws(FpindexError) -> UInt32 {
        UInt32(truncatingIfNeeded: try readUInt(max: UInt64(UInt32.max)))
    }

    public mutating func readUInt64() throws(FpindexError) -> UInt64 {
        try readUInt(max: .max)
    }

    /// Reads a fingerprint id: a u32 other than 0.
    public mutating func readFingerprintId() throws(FpindexError) -> UInt32 {
        let id = try readUInt32()
        guard id != 0 else { throw FpindexError(.invalidFingerprintId, "fingerprint id 0") }
        return id
    }
}

/// An encoder for one of the wire formats. Maps and arrays announce their size up front
/// (MessagePack needs it); keys are given by their full name, and MessagePack writes the
/// first letter unless `full` is set.
public protocol WireWriter {
    mutating func beginMap(count: Int)
    mutating func endMap()
    mutating func beginArray(count: Int)
    mutating func endArray()
    mutating func writeKey(_ name: String, full: Bool)
    mutating func writeUInt(_ value: UInt64)
    mutating func writeString(_ value: String)
    mutating func writeBool(_ value: Bool)
    mutating func writeUInt32Array(_ values: [UInt32])
}

extension WireWriter {
    public mutating func writeKey(_ name: String) { writeKey(name, full: false) }

    public mutating func writeStringMap(_ map: [String: String]) {
        beginMap(count: map.count)
        for (key, value) in map.sorted(by: { $0.key < $1.key }) {
            writeKey(key, full: true)
            writeString(value)
        }
        endMap()
    }
}

public protocol WireDecodable {
    init<R: WireReader>(from reader: inout R) throws(FpindexError)
}

public protocol WireEncodable {
    func encode<W: WireWriter>(to writer: inout W)
}

public typealias WireCodable = WireDecodable & WireEncodable

extension WireDecodable {
    /// Decodes a whole body. Trailing bytes after the value are rejected.
    public static func decode(from bytes: UnsafeRawBufferPointer, format: WireFormat) throws(FpindexError) -> Self {
        switch format {
        case .json:
            var reader = JSONReader(bytes)
            let value = try Self(from: &reader)
            try reader.finish()
            return value
        case .msgpack:
            var reader = MsgPackReader(bytes)
            let value = try Self(from: &reader)
            try reader.finish()
            return value
        }
    }

    public static func decode(from bytes: [UInt8], format: WireFormat) throws(FpindexError) -> Self {
        // withUnsafeBytes cannot forward a typed error, so carry the result out.
        let result: Result<Self, FpindexError> = bytes.withUnsafeBytes { buffer in
            Result { () throws(FpindexError) -> Self in try decode(from: buffer, format: format) }
        }
        return try result.get()
    }
}

extension WireEncodable {
    /// Encodes the value as a whole body.
    public func encoded(as format: WireFormat) -> [UInt8] {
        var out: [UInt8] = []
        encode(into: &out, format: format)
        return out
    }

    /// Appends the encoded value to `out`.
    public func encode(into out: inout [UInt8], format: WireFormat) {
        switch format {
        case .json:
            var writer = JSONWriter(into: out)
            out = []
            encode(to: &writer)
            out = writer.bytes
        case .msgpack:
            var writer = MsgPackWriter(into: out)
            out = []
            encode(to: &writer)
            out = writer.bytes
        }
    }
}
