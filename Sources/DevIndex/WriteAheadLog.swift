import FpindexAPI

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// One committed write, as the log stores it.
enum LogRecord: Equatable, Sendable {
    case createIndex(name: String, generation: UInt64)
    case deleteIndex(name: String)
    /// The final state of each touched id (nil: deleted) and the metadata set, at `version`.
    case update(name: String, version: UInt64, changes: [Change], metadata: [String: String])

    func encoded() -> [UInt8] {
        var w = MsgPackWriter()
        switch self {
        case .createIndex(let name, let generation):
            w.beginArray(count: 3)
            w.writeUInt(0)
            w.writeString(name)
            w.writeUInt(generation)
        case .deleteIndex(let name):
            w.beginArray(count: 2)
            w.writeUInt(1)
            w.writeString(name)
        case .update(let name, let version, let changes, let metadata):
            w.beginArray(count: 4)
            w.writeUInt(2)
            w.writeString(name)
            w.writeUInt(version)
            UpdateRequest(changes: changes, metadata: metadata).encode(to: &w)
        }
        return w.bytes
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws(FpindexError) -> LogRecord {
        var r = MsgPackReader(bytes)
        var kind: UInt64 = 0
        var name = ""
        var number: UInt64 = 0
        var body: UpdateRequest?
        var field = 0
        try r.readArray { (r) throws(FpindexError) in
            switch field {
            case 0: kind = try r.readUInt64()
            case 1: name = try r.readString()
            case 2: number = try r.readUInt64()
            default: body = try UpdateRequest(from: &r)
            }
            field += 1
        }
        try r.finish()
        switch (kind, field) {
        case (0, 3): return .createIndex(name: name, generation: number)
        case (1, 2): return .deleteIndex(name: name)
        case (2, 4):
            guard let body else { break }
            return .update(name: name, version: number, changes: body.changes, metadata: body.metadata ?? [:])
        default: break
        }
        throw .badRequest("unknown log record")
    }
}

/// An append-only log of committed writes: `[u32 length][u32 crc32][payload]` records,
/// little-endian, each made durable with `fdatasync` before the write is acknowledged.
///
/// On open, a torn tail (a record cut short or failing its checksum, as a crash in the
/// middle of an append leaves it) is cut off; everything before it was acknowledged and is kept.
/// Not thread-safe by itself: the store uses it only while holding its lock.
final class WriteAheadLog: @unchecked Sendable {
    let path: String
    private var fd: Int32
    private(set) var size: Int

    struct IOError: Error, CustomStringConvertible {
        var description: String
    }

    /// Opens (creating if needed) the log and hands each intact record to `replay`, in order,
    /// reading the file in chunks so a large log never has to fit in memory twice.
    /// - Returns: the open log and how many bytes of torn tail were cut off.
    static func open(path: String, replay: (LogRecord) throws -> Void) throws -> (WriteAheadLog, truncatedBytes: Int) {
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw IOError(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
        var pending: [UInt8] = []  // bytes read but not yet parsed into records
        var chunk = [UInt8](repeating: 0, count: 4 << 20)
        var offset = 0  // file offset just past the last intact record
        var fileSize = 0
        var torn = false
        while !torn {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                close(fd)
                throw IOError(description: "cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            fileSize += n
            pending.append(contentsOf: chunk[0..<n])
            var consumed = 0
            try pending.withUnsafeBytes { all in
                while all.count - consumed >= 8 {
                    let length = Int(all.loadUnaligned(fromByteOffset: consumed, as: UInt32.self).littleEndian)
                    let checksum = all.loadUnaligned(fromByteOffset: consumed + 4, as: UInt32.self).littleEndian
                    guard all.count - consumed - 8 >= length else { break }
                    let payload = UnsafeRawBufferPointer(rebasing: all[(consumed + 8)..<(consumed + 8 + length)])
                    guard CRC32.checksum(payload) == checksum, let record = try? LogRecord.decode(payload) else {
                        torn = true
                        break
                    }
                    try replay(record)
                    consumed += 8 + length
                }
            }
            offset += consumed
            pending.removeFirst(consumed)
        }
        // Whatever follows the last intact record is a torn append, cut off below.
        var rest = stat()
        if fstat(fd, &rest) == 0 { fileSize = Int(rest.st_size) }
        let truncated = fileSize - offset
        if truncated > 0 {
            guard ftruncate(fd, off_t(offset)) == 0, fsync(fd) == 0 else {
                close(fd)
                throw IOError(description: "cannot truncate the torn tail of \(path): \(String(cString: strerror(errno)))")
            }
        }
        guard lseek(fd, off_t(offset), SEEK_SET) >= 0 else {
            close(fd)
            throw IOError(description: "cannot seek in \(path)")
        }
        return (WriteAheadLog(path: path, fd: fd, size: offset), truncated)
    }

    private init(path: String, fd: Int32, size: Int) {
        self.path = path
        self.fd = fd
        self.size = size
    }

    deinit {
        close(fd)
    }

    /// Appends a record and waits until it is on disk.
    func append(_ record: LogRecord) throws {
        let payload = record.encoded()
        var frame: [UInt8] = []
        frame.reserveCapacity(payload.count + 8)
        withUnsafeBytes(of: UInt32(payload.count).littleEndian) { frame.append(contentsOf: $0) }
        withUnsafeBytes(of: payload.withUnsafeBytes { CRC32.checksum($0) }.littleEndian) { frame.append(contentsOf: $0) }
        frame.append(contentsOf: payload)
        try frame.withUnsafeBytes { buffer in
            var written = 0
            while written < buffer.count {
                let n = write(fd, buffer.baseAddress! + written, buffer.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    let reason = String(cString: strerror(errno))
                    // Cut off the partial record so the log stays well-formed.
                    _ = ftruncate(fd, off_t(size))
                    _ = lseek(fd, off_t(size), SEEK_SET)
                    throw IOError(description: "cannot write \(path): \(reason)")
                }
                written += n
            }
        }
        guard fdatasync(fd) == 0 else {
            throw IOError(description: "cannot sync \(path): \(String(cString: strerror(errno)))")
        }
        size += frame.count
    }
}

/// CRC-32 (IEEE 802.3), as zlib computes it.
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 {
            c = c & 1 != 0 ? 0xedb8_8320 ^ (c >> 1) : c >> 1
        }
        return c
    }

    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc: UInt32 = 0xffff_ffff
        table.withUnsafeBufferPointer { table in
            for b in bytes {
                crc = table[Int((crc ^ UInt32(b)) & 0xff)] ^ (crc >> 8)
            }
        }
        return crc ^ 0xffff_ffff
    }
}
