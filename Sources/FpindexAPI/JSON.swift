/// A strict JSON pull decoder over borrowed bytes (RFC 8259).
///
/// It never builds a tree: decoders ask for the value they expect, so unknown fields,
/// negative numbers, fractions and overflow are rejected exactly where they occur.
/// Nesting is bounded by the schemas that drive it, so hostile input cannot recurse deeply.
public struct JSONReader: WireReader {
    let bytes: UnsafeRawBufferPointer
    var position: Int = 0

    public init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    /// Rejects anything but white space after the top-level value.
    public mutating func finish() throws(FpindexError) {
        skipWhitespace()
        guard position == bytes.count else { throw .badRequest("trailing characters after the JSON value") }
    }

    mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0a, 0x0d: position += 1
            default: return
            }
        }
    }

    /// The next significant byte, not consumed.
    mutating func peek() throws(FpindexError) -> UInt8 {
        skipWhitespace()
        guard position < bytes.count else { throw .badRequest("JSON body ends early") }
        return bytes[position]
    }

    mutating func expect(_ byte: UInt8, _ what: String) throws(FpindexError) {
        guard try peek() == byte else { throw .badRequest("expected \(what) in JSON at byte \(position)") }
        position += 1
    }

    mutating func literal(_ word: StaticString) throws(FpindexError) {
        let count = word.utf8CodeUnitCount
        guard bytes.count - position >= count else { throw .badRequest("invalid JSON literal") }
        for i in 0..<count where bytes[position + i] != word.utf8Start[i] {
            throw .badRequest("invalid JSON literal at byte \(position)")
        }
        position += count
    }

    /// Walks the members of an object: `body` is called after each key's colon and must read the value.
    mutating func readObject(_ body: (inout JSONReader) throws(FpindexError) -> Void) throws(FpindexError) {
        try expect(UInt8(ascii: "{"), "an object")
        if try peek() == UInt8(ascii: "}") {
            position += 1
            return
        }
        while true {
            try body(&self)
            switch try peek() {
            case UInt8(ascii: ","):
                position += 1
            case UInt8(ascii: "}"):
                position += 1
                return
            default:
                throw .badRequest("expected , or } in JSON object at byte \(position)")
            }
        }
    }

    public mutating func readStruct(
        _ fields: WireFields, _ body: (inout JSONReader, Int) throws(FpindexError) -> Void
    ) throws(FpindexError) {
        try readObject { (r: inout JSONReader) throws(FpindexError) in
            let key = try r.readString()
            guard
                let field = key.utf8.withContiguousStorageIfAvailable({ fields.matchFull(UnsafeRawBufferPointer($0)) })
                    ?? fields.names.firstIndex(of: key)
            else { throw .badRequest("unknown field \"\(key.prefix(64))\"") }
            try r.expect(UInt8(ascii: ":"), "a colon")
            try body(&r, field)
        }
    }

    public mutating func readStringMap(_ body: (inout JSONReader, String) throws(FpindexError) -> Void) throws(FpindexError) {
        try readObject { (r: inout JSONReader) throws(FpindexError) in
            let key = try r.readString()
            try r.expect(UInt8(ascii: ":"), "a colon")
            try body(&r, key)
        }
    }

    public mutating func readArray(_ body: (inout JSONReader) throws(FpindexError) -> Void) throws(FpindexError) {
        try expect(UInt8(ascii: "["), "an array")
        if try peek() == UInt8(ascii: "]") {
            position += 1
            return
        }
        while true {
            try body(&self)
            switch try peek() {
            case UInt8(ascii: ","):
                position += 1
            case UInt8(ascii: "]"):
                position += 1
                return
            default:
                throw .badRequest("expected , or ] in JSON array at byte \(position)")
            }
        }
    }

    public mutating func readUInt32Array(appendingTo values: inout [UInt32]) throws(FpindexError) -> Int {
        let start = values.count
        try readArray { (r: inout JSONReader) throws(FpindexError) in
            values.append(try r.readUInt32())
        }
        return values.count - start
    }

    public mutating func readUInt(max: UInt64) throws(FpindexError) -> UInt64 {
        var c = try peek()
        var negative = false
        if c == UInt8(ascii: "-") {
            negative = true
            position += 1
            guard position < bytes.count else { throw .badRequest("JSON body ends early") }
            c = bytes[position]
        }
        guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else {
            throw .badRequest("expected an unsigned integer in JSON at byte \(position)")
        }
        let start = position
        var value: UInt64 = 0
        var overflow = false
        while position < bytes.count, bytes[position] >= UInt8(ascii: "0"), bytes[position] <= UInt8(ascii: "9") {
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(bytes[position] - UInt8(ascii: "0")))
            overflow = overflow || o1 || o2
            value = sum
            position += 1
        }
        if position - start > 1 && bytes[start] == UInt8(ascii: "0") {
            throw .badRequest("JSON numbers cannot have leading zeros")
        }
        if position < bytes.count {
            switch bytes[position] {
            case UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"):
                throw .badRequest("expected an integer, found a fraction or exponent")
            default: break
            }
        }
        if negative && value != 0 { throw .badRequest("negative integer") }
        guard !overflow, value <= max else { throw .badRequest("integer out of range (max \(max))") }
        return value
    }

    public mutating func readString() throws(FpindexError) -> String {
        try expect(UInt8(ascii: "\""), "a string")
        let start = position
        // Fast path: no escapes, so the bytes between the quotes are the string.
        while position < bytes.count {
            let b = bytes[position]
            if b == UInt8(ascii: "\"") {
                let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<position])
                position += 1
                guard let s = String(validating: raw.bindMemory(to: UInt8.self), as: UTF8.self) else {
                    throw .badRequest("string is not valid UTF-8")
                }
                return s
            }
            if b == UInt8(ascii: "\\") { break }
            if b < 0x20 { throw .badRequest("control character in JSON string") }
            position += 1
        }
        var out = Array(UnsafeRawBufferPointer(rebasing: bytes[start..<position]))
        while true {
            guard position < bytes.count else { throw .badRequest("unterminated JSON string") }
            let b = bytes[position]
            position += 1
            switch b {
            case UInt8(ascii: "\""):
                guard let s = String(validating: out, as: UTF8.self) else {
                    throw .badRequest("string is not valid UTF-8")
                }
                return s
            case UInt8(ascii: "\\"):
                guard position < bytes.count else { throw .badRequest("unterminated JSON string") }
                let e = bytes[position]
                position += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5c)
                case UInt8(ascii: "/"): out.append(0x2f)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0c)
                case UInt8(ascii: "n"): out.append(0x0a)
                case UInt8(ascii: "r"): out.append(0x0d)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try readHex4()
                    if (0xd800...0xdbff).contains(scalar) {
                        guard bytes.count - position >= 2, bytes[position] == UInt8(ascii: "\\"),
                            bytes[position + 1] == UInt8(ascii: "u")
                        else { throw .badRequest("unpaired surrogate in JSON string") }
                        position += 2
                        let low = try readHex4()
                        guard (0xdc00...0xdfff).contains(low) else { throw .badRequest("unpaired surrogate in JSON string") }
                        scalar = 0x10000 + ((scalar - 0xd800) << 10) + (low - 0xdc00)
                    } else if (0xdc00...0xdfff).contains(scalar) {
                        throw .badRequest("unpaired surrogate in JSON string")
                    }
                    guard let unicode = Unicode.Scalar(scalar) else { throw .badRequest("invalid \\u escape") }
                    out.append(contentsOf: String(Character(unicode)).utf8)
                default:
                    throw .badRequest("invalid escape in JSON string")
                }
            default:
                if b < 0x20 { throw .badRequest("control character in JSON string") }
                out.append(b)
            }
        }
    }

    mutating func readHex4() throws(FpindexError) -> UInt32 {
        guard bytes.count - position >= 4 else { throw .badRequest("short \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[position]
            let digit: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = c - UInt8(ascii: "A") + 10
            default: throw .badRequest("invalid \\u escape")
            }
            value = value << 4 | UInt32(digit)
            position += 1
        }
        return value
    }

    public mutating func readBool() throws(FpindexError) -> Bool {
        switch try peek() {
        case UInt8(ascii: "t"):
            try literal("true")
            return true
        case UInt8(ascii: "f"):
            try literal("false")
            return false
        default:
            throw .badRequest("expected a boolean in JSON at byte \(position)")
        }
    }

    public mutating func readNilIfPresent() throws(FpindexError) -> Bool {
        guard try peek() == UInt8(ascii: "n") else { return false }
        try literal("null")
        return true
    }
}

/// A compact JSON encoder.
public struct JSONWriter: WireWriter {
    public private(set) var bytes: [UInt8]
    /// One entry per open container: whether the next member needs a comma first.
    var needsComma: [Bool] = []
    var afterKey = false

    public init(into bytes: [UInt8] = []) {
        self.bytes = bytes
    }

    mutating func beforeValue() {
        if afterKey {
            afterKey = false
            return
        }
        if let last = needsComma.last {
            if last { bytes.append(UInt8(ascii: ",")) }
            needsComma[needsComma.count - 1] = true
        }
    }

    public mutating func beginMap(count: Int) {
        beforeValue()
        bytes.append(UInt8(ascii: "{"))
        needsComma.append(false)
    }

    public mutating func endMap() {
        needsComma.removeLast()
        bytes.append(UInt8(ascii: "}"))
    }

    public mutating func beginArray(count: Int) {
        beforeValue()
        bytes.append(UInt8(ascii: "["))
        needsComma.append(false)
    }

    public mutating func endArray() {
        needsComma.removeLast()
        bytes.append(UInt8(ascii: "]"))
    }

    public mutating func writeKey(_ name: String, full: Bool) {
        writeString(name)
        bytes.append(UInt8(ascii: ":"))
        afterKey = true
    }

    public mutating func writeUInt(_ value: UInt64) {
        beforeValue()
        appendDecimal(value)
    }

    mutating func appendDecimal(_ value: UInt64) {
        if value < 10 {
            bytes.append(UInt8(ascii: "0") + UInt8(value))
            return
        }
        var v = value
        let start = bytes.count
        while v > 0 {
            bytes.append(UInt8(ascii: "0") + UInt8(v % 10))
            v /= 10
        }
        bytes[start...].reverse()
    }

    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    public mutating func writeString(_ value: String) {
        beforeValue()
        bytes.append(UInt8(ascii: "\""))
        for b in value.utf8 {
            switch b {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [0x5c, 0x22])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [0x5c, 0x5c])
            case 0x0a: bytes.append(contentsOf: [0x5c, UInt8(ascii: "n")])
            case 0x0d: bytes.append(contentsOf: [0x5c, UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [0x5c, UInt8(ascii: "t")])
            case 0x00..<0x20:
                bytes.append(contentsOf: Array("\\u00".utf8))
                bytes.append(Self.hexDigits[Int(b >> 4)])
                bytes.append(Self.hexDigits[Int(b & 0xf)])
            default: bytes.append(b)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    public mutating func writeBool(_ value: Bool) {
        beforeValue()
        if value {
            bytes.append(contentsOf: [0x74, 0x72, 0x75, 0x65])  // true
        } else {
            bytes.append(contentsOf: [0x66, 0x61, 0x6c, 0x73, 0x65])  // false
        }
    }

    public mutating func writeUInt32Array(_ values: [UInt32]) {
        beginArray(count: values.count)
        bytes.reserveCapacity(bytes.count + values.count * 11)
        var first = true
        for value in values {
            if !first { bytes.append(UInt8(ascii: ",")) }
            first = false
            appendDecimal(UInt64(value))
        }
        needsComma[needsComma.count - 1] = !values.isEmpty
        endArray()
    }
}

extension JSONReader {
    /// A 32-bit hash as bulk exports write it: a u32, or a negative 32-bit integer (PostgreSQL
    /// stores hashes as `int4`), which is taken as its two's-complement bit pattern.
    public mutating func readHash32() throws(FpindexError) -> UInt32 {
        guard try peek() == UInt8(ascii: "-") else { return try readUInt32() }
        position += 1
        guard position < bytes.count, bytes[position] >= UInt8(ascii: "0"), bytes[position] <= UInt8(ascii: "9") else {
            throw .badRequest("expected an integer in JSON at byte \(position)")
        }
        let magnitude = try readUInt(max: 1 << 31)
        return UInt32(truncatingIfNeeded: 0 &- magnitude)
    }
}
