/// A MessagePack pull decoder over borrowed bytes.
///
/// Strict where the contract is: strings must be `str` (not `bin`), integers may use any
/// width that fits, floats are never integers. Counts are checked against the bytes left,
/// so a hostile header cannot make it reserve memory it will never fill.
public struct MsgPackReader: WireReader {
    let bytes: UnsafeRawBufferPointer
    var position: Int = 0

    public init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    public var isAtEnd: Bool { position >= bytes.count }

    /// How many bytes the values read so far took: where the next value starts.
    public var offset: Int { position }

    /// Rejects trailing bytes after the top-level value.
    public func finish() throws(FpindexError) {
        guard position == bytes.count else {
            throw .badRequest("\(bytes.count - position) trailing bytes after the MessagePack value")
        }
    }

    mutating func byte() throws(FpindexError) -> UInt8 {
        guard position < bytes.count else { throw .badRequest("MessagePack body ends early") }
        let b = bytes[position]
        position += 1
        return b
    }

    mutating func bigEndian(_ width: Int) throws(FpindexError) -> UInt64 {
        guard bytes.count - position >= width else { throw .badRequest("MessagePack body ends early") }
        let value: UInt64
        switch width {
        case 1: value = UInt64(bytes[position])
        case 2: value = UInt64(UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: position, as: UInt16.self)))
        case 4: value = UInt64(UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: position, as: UInt32.self)))
        default: value = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: position, as: UInt64.self))
        }
        position += width
        return value
    }

    func describe(_ b: UInt8) -> String {
        "0x" + String(b, radix: 16)
    }

    mutating func readMapCount() throws(FpindexError) -> Int {
        let b = try byte()
        let count: Int
        switch b {
        case 0x80...0x8f: count = Int(b & 0x0f)
        case 0xde: count = Int(try bigEndian(2))
        case 0xdf: count = Int(try bigEndian(4))
        default: throw .badRequest("expected a MessagePack map, found \(describe(b))")
        }
        guard count <= (bytes.count - position) / 2 else { throw .badRequest("MessagePack map longer than the body") }
        return count
    }

    mutating func readArrayCount() throws(FpindexError) -> Int {
        let b = try byte()
        let count: Int
        switch b {
        case 0x90...0x9f: count = Int(b & 0x0f)
        case 0xdc: count = Int(try bigEndian(2))
        case 0xdd: count = Int(try bigEndian(4))
        default: throw .badRequest("expected a MessagePack array, found \(describe(b))")
        }
        guard count <= bytes.count - position else { throw .badRequest("MessagePack array longer than the body") }
        return count
    }

    /// Reads a `str` and hands its raw bytes to `body` without copying.
    mutating func withStringBytes<T>(_ body: (UnsafeRawBufferPointer) -> T) throws(FpindexError) -> T {
        let b = try byte()
        let length: Int
        switch b {
        case 0xa0...0xbf: length = Int(b & 0x1f)
        case 0xd9: length = Int(try bigEndian(1))
        case 0xda: length = Int(try bigEndian(2))
        case 0xdb: length = Int(try bigEndian(4))
        case 0xc4, 0xc5, 0xc6: throw .badRequest("MessagePack bin where a str is required")
        default: throw .badRequest("expected a MessagePack str, found \(describe(b))")
        }
        guard bytes.count - position >= length else { throw .badRequest("MessagePack str longer than the body") }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[position..<position + length])
        position += length
        return body(slice)
    }

    public mutating func readStruct(
        _ fields: WireFields, _ body: (inout MsgPackReader, Int) throws(FpindexError) -> Void
    ) throws(FpindexError) {
        let count = try readMapCount()
        for _ in 0..<count {
            let matched = try withStringBytes { fields.matchMsgPack($0) }
            guard let field = matched else { throw .badRequest("unknown field") }
            try body(&self, field)
        }
    }

    public mutating func readStringMap(_ body: (inout MsgPackReader, String) throws(FpindexError) -> Void) throws(FpindexError) {
        let count = try readMapCount()
        for _ in 0..<count {
            let key = try readString()
            try body(&self, key)
        }
    }

    public mutating func readArray(_ body: (inout MsgPackReader) throws(FpindexError) -> Void) throws(FpindexError) {
        let count = try readArrayCount()
        for _ in 0..<count {
            try body(&self)
        }
    }

    public mutating func readUInt32Array(appendingTo values: inout [UInt32]) throws(FpindexError) -> Int {
        let count = try readArrayCount()
        guard count > 0 else { return 0 }
        let start = values.count
        if values.capacity < start + count {
            // Geometric growth: appending fingerprint after fingerprint must not copy each time.
            values.reserveCapacity(max(start + count, values.capacity * 2))
        }
        // Room first, then filled in place: appending one by one checks uniqueness and capacity
        // each time. (On an error the caller drops the whole array.)
        values.append(contentsOf: repeatElement(0, count: count))
        var failure: FpindexError?
        values.withUnsafeMutableBufferPointer { output in
            // Fingerprint hashes are nearly all written as uint32 (0xce and four bytes): read
            // them as such at fixed offsets, independent of one another, and check the markers
            // all at once; any other layout goes through the loop below from the start.
            if bytes.count - position >= 5 * count {
                var markers: UInt8 = 0
                for i in 0..<count {
                    let at = position &+ 5 &* i
                    markers |= bytes[at] ^ 0xce
                    output[start &+ i] = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: at &+ 1, as: UInt32.self))
                }
                if markers == 0 {
                    position += 5 * count
                    return
                }
            }
            // The general loop: positive fixints and uint16/uint32 inline, anything else through
            // the general integer reader.
            for i in start..<(start + count) {
                guard position < bytes.count else {
                    failure = .badRequest("MessagePack body ends early")
                    return
                }
                let b = bytes[position]
                if b == 0xce, bytes.count - position >= 5 {
                    output[i] = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: position + 1, as: UInt32.self))
                    position += 5
                } else if b <= 0x7f {
                    output[i] = UInt32(b)
                    position += 1
                } else if b == 0xcd, bytes.count - position >= 3 {
                    output[i] = UInt32(UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: position + 1, as: UInt16.self)))
                    position += 3
                } else {
                    do throws(FpindexError) {
                        output[i] = UInt32(truncatingIfNeeded: try readUInt(max: UInt64(UInt32.max)))
                    } catch {
                        failure = error
                        return
                    }
                }
            }
        }
        if let failure { throw failure }
        return count
    }

    public mutating func readUInt(max: UInt64) throws(FpindexError) -> UInt64 {
        let b = try byte()
        let value: UInt64
        switch b {
        case 0x00...0x7f: value = UInt64(b)
        case 0xcc: value = try bigEndian(1)
        case 0xcd: value = try bigEndian(2)
        case 0xce: value = try bigEndian(4)
        case 0xcf: value = try bigEndian(8)
        case 0xd0, 0xd1, 0xd2, 0xd3:
            let width = 1 << Int(b - 0xd0)
            let raw = try bigEndian(width)
            let shift = UInt64(64 - width * 8)
            let signed = Int64(bitPattern: raw << shift) >> Int64(shift)
            guard signed >= 0 else { throw .badRequest("negative integer") }
            value = UInt64(signed)
        case 0xe0...0xff: throw .badRequest("negative integer")
        default: throw .badRequest("expected a MessagePack integer, found \(describe(b))")
        }
        guard value <= max else { throw .badRequest("integer \(value) out of range (max \(max))") }
        return value
    }

    public mutating func readString() throws(FpindexError) -> String {
        let decoded = try withStringBytes { raw in String(validating: raw.bindMemory(to: UInt8.self), as: UTF8.self) }
        guard let decoded else { throw .badRequest("string is not valid UTF-8") }
        return decoded
    }

    public mutating func readBool() throws(FpindexError) -> Bool {
        switch try byte() {
        case 0xc2: return false
        case 0xc3: return true
        case let b: throw .badRequest("expected a MessagePack bool, found \(describe(b))")
        }
    }

    public mutating func readNilIfPresent() throws(FpindexError) -> Bool {
        guard position < bytes.count else { throw .badRequest("MessagePack body ends early") }
        if bytes[position] == 0xc0 {
            position += 1
            return true
        }
        return false
    }
}

/// A MessagePack encoder that writes the smallest encoding of every value.
public struct MsgPackWriter: WireWriter {
    public private(set) var bytes: [UInt8]

    public init(into bytes: [UInt8] = []) {
        self.bytes = bytes
    }

    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        // Byte by byte: appending a raw buffer goes through a generic path that costs more.
        var shift = T.bitWidth - 8
        while shift >= 0 {
            bytes.append(UInt8(truncatingIfNeeded: value >> shift))
            shift -= 8
        }
    }

    public mutating func beginMap(count: Int) {
        if count < 16 {
            bytes.append(0x80 | UInt8(count))
        } else if count <= 0xffff {
            bytes.append(0xde)
            appendBigEndian(UInt16(count))
        } else {
            bytes.append(0xdf)
            appendBigEndian(UInt32(count))
        }
    }

    public mutating func endMap() {}

    public mutating func beginArray(count: Int) {
        if count < 16 {
            bytes.append(0x90 | UInt8(count))
        } else if count <= 0xffff {
            bytes.append(0xdc)
            appendBigEndian(UInt16(count))
        } else {
            bytes.append(0xdd)
            appendBigEndian(UInt32(count))
        }
    }

    public mutating func endArray() {}

    public mutating func writeKey(_ name: String, full: Bool) {
        if full {
            writeString(name)
        } else {
            bytes.append(0xa1)
            bytes.append(name.utf8.first ?? 0)
        }
    }

    public mutating func writeUInt(_ value: UInt64) {
        switch value {
        case 0...0x7f: bytes.append(UInt8(value))
        case 0x80...0xff:
            bytes.append(0xcc)
            bytes.append(UInt8(value))
        case 0x100...0xffff:
            bytes.append(0xcd)
            appendBigEndian(UInt16(value))
        case 0x10000...0xffff_ffff:
            bytes.append(0xce)
            appendBigEndian(UInt32(value))
        default:
            bytes.append(0xcf)
            appendBigEndian(value)
        }
    }

    public mutating func writeString(_ value: String) {
        let count = value.utf8.count
        if count < 32 {
            bytes.append(0xa0 | UInt8(count))
        } else if count <= 0xff {
            bytes.append(0xd9)
            bytes.append(UInt8(count))
        } else if count <= 0xffff {
            bytes.append(0xda)
            appendBigEndian(UInt16(count))
        } else {
            bytes.append(0xdb)
            appendBigEndian(UInt32(count))
        }
        bytes.append(contentsOf: value.utf8)
    }

    public mutating func writeBool(_ value: Bool) {
        bytes.append(value ? 0xc3 : 0xc2)
    }

    /// Appends bytes that are already a MessagePack value.
    public mutating func writeEncoded(_ value: ArraySlice<UInt8>) {
        bytes.append(contentsOf: value)
    }

    public mutating func writeUInt32Array(_ values: [UInt32]) {
        beginArray(count: values.count)
        // Size first, then fill in place: appending byte by byte costs a uniqueness check each.
        var size = 0
        for value in values {
            size += value <= 0x7f ? 1 : value <= 0xff ? 2 : value <= 0xffff ? 3 : 5
        }
        let start = bytes.count
        // An array source is copied with memcpy even unoptimized; a `repeatElement` is walked
        // element by element, which made debug builds (the tests) spend most of a write here.
        bytes.append(contentsOf: [UInt8](repeating: 0, count: size))
        bytes.withUnsafeMutableBufferPointer { buffer in
            var p = start
            for value in values {
                if value <= 0x7f {
                    buffer[p] = UInt8(value)
                    p += 1
                } else if value <= 0xff {
                    buffer[p] = 0xcc
                    buffer[p + 1] = UInt8(value)
                    p += 2
                } else if value <= 0xffff {
                    buffer[p] = 0xcd
                    buffer[p + 1] = UInt8(value >> 8)
                    buffer[p + 2] = UInt8(truncatingIfNeeded: value)
                    p += 3
                } else {
                    buffer[p] = 0xce
                    buffer[p + 1] = UInt8(value >> 24)
                    buffer[p + 2] = UInt8(truncatingIfNeeded: value >> 16)
                    buffer[p + 3] = UInt8(truncatingIfNeeded: value >> 8)
                    buffer[p + 4] = UInt8(truncatingIfNeeded: value)
                    p += 5
                }
            }
        }
    }
}
