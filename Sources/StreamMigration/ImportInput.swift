import FpindexAPI
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// The bytes an import reads: a file, or standard input (`-`), in large blocking reads made on
/// the NIO thread pool (never on the cooperative pool, which a slow `psql` pipe would stall).
public final class ImportInput: @unchecked Sendable {
    public let name: String
    /// The size of a regular file, for the ETA; nil for a pipe.
    public let totalBytes: Int?
    private let descriptor: Int32
    private let ownsDescriptor: Bool
    /// Only the one reading task touches it.
    private(set) var bytesRead = 0

    public init(path: String) throws {
        if path == "-" {
            name = "standard input"
            descriptor = 0
            ownsDescriptor = false
        } else {
            name = path
            descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { throw ImportError("cannot open \(path): \(String(cString: strerror(errno)))") }
            ownsDescriptor = true
        }
        var info = stat()
        totalBytes = fstat(descriptor, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG ? Int(info.st_size) : nil
    }

    deinit {
        if ownsDescriptor { close(descriptor) }
    }

    /// Reads up to `count` bytes; an empty array at the end of the input.
    func read(upTo count: Int) async throws -> [UInt8] {
        let descriptor = self.descriptor
        let chunk = try await NIOThreadPool.singleton.runIfActive { () throws -> [UInt8] in
            var bytes = [UInt8](repeating: 0, count: count)
            while true {
                let n = bytes.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, count) }
                if n >= 0 {
                    bytes.removeLast(count - n)
                    return bytes
                }
                if errno != EINTR { throw ImportError("cannot read: \(String(cString: strerror(errno)))") }
            }
        }
        bytesRead += chunk.count
        return chunk
    }
}

/// An import stopped by something other than a row: a file, NATS, a stream that does not fit.
public struct ImportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Splits the input into rows, numbered from 1, in the chosen format.
struct RowReader {
    static let chunkSize = 1 << 20

    let input: ImportInput
    let format: ImportFormat
    private var buffer: [UInt8] = []
    private var start = 0
    private var atEnd = false
    /// The number of the last row returned (a line, or a `msgpack` body).
    private(set) var line = 0

    init(input: ImportInput, format: ImportFormat) {
        self.input = input
        self.format = format
    }

    /// The next row with its line number, nil at the end of the input.
    /// - Returns: the change, or the row's error (the reader goes on past it).
    mutating func next() async throws -> (line: Int, result: Result<ImportChange, RowError>)? {
        while true {
            switch format {
            case .pgcopy, .jsonl:
                guard let bytes = try await nextLine() else { return nil }
                line += 1
                let format = self.format
                let parsed = bytes.withUnsafeBufferPointer { bytes -> Result<ImportChange?, FpindexError> in
                    do throws(FpindexError) {
                        return .success(try format == .pgcopy ? ImportRowParser.pgcopy(bytes) : ImportRowParser.jsonl(bytes))
                    } catch {
                        return .failure(error)
                    }
                }
                switch parsed {
                case .success(let change?): return (line, .success(change))
                case .success(nil): continue
                case .failure(let error): return (line, .failure(RowError(line: line, reason: error.detail)))
                }
            case .msgpack:
                return try await nextBody()
            }
        }
    }

    /// Skips rows without parsing them (`--resume-from`): lines, or for `msgpack` whole bodies.
    mutating func skip(rows: Int) async throws {
        while line < rows {
            switch format {
            case .pgcopy, .jsonl:
                guard try await nextLine() != nil else { return }
                line += 1
            case .msgpack:
                guard try await nextBody() != nil else { return }
            }
        }
    }

    private mutating func fill() async throws -> Bool {
        guard !atEnd else { return false }
        if start > 0 {
            buffer.removeFirst(start)
            start = 0
        }
        let chunk = try await input.read(upTo: Self.chunkSize)
        if chunk.isEmpty {
            atEnd = true
            return false
        }
        buffer.append(contentsOf: chunk)
        return true
    }

    private mutating func nextLine() async throws -> ArraySlice<UInt8>? {
        // Bytes after `start` already searched for a newline; `fill` moves what is left to 0.
        var searched = 0
        while true {
            let from = start + searched
            let found = buffer.withUnsafeBytes { bytes -> Int? in
                guard from < bytes.count, let base = bytes.baseAddress,
                    let hit = memchr(base + from, Int32(UInt8(ascii: "\n")), bytes.count - from)
                else { return nil }
                return UnsafeRawPointer(hit) - base
            }
            if let newline = found {
                let line = buffer[start..<newline]
                start = newline + 1
                return line
            }
            searched = buffer.count - start
            guard try await fill() else {
                guard start < buffer.count else { return nil }
                let line = buffer[start...]
                start = buffer.count
                return line
            }
        }
    }

    private mutating func nextBody() async throws -> (line: Int, result: Result<ImportChange, RowError>)? {
        while true {
            if start == buffer.count, !(try await fill()) { return nil }
            let attempt = buffer[start...].withUnsafeBytes { bytes -> Result<(UpdateRequest, Int), FpindexError> in
                do throws(FpindexError) {
                    return .success(try ImportRowParser.msgpackBody(bytes))
                } catch {
                    return .failure(error)
                }
            }
            switch attempt {
            case .success(let (request, length)):
                start += length
                line += 1
                do throws(FpindexError) {
                    try ImportRowParser.validate(request)
                    return (line, .success(.update(request)))
                } catch {
                    return (line, .failure(RowError(line: line, reason: error.detail)))
                }
            case .failure(let error):
                // Maybe only cut short by the read: read more, up to the largest body fpindex takes.
                if buffer.count - start <= FpindexNames.maxBodyBytes, try await fill() { continue }
                line += 1
                // Bodies carry no length, so nothing after a broken one can be found again.
                let reason = "not a MessagePack _update body: \(error.detail); the rest of the input is not read"
                start = buffer.count
                atEnd = true
                return (line, .failure(RowError(line: line, reason: reason, endsInput: true)))
            }
        }
    }
}
