import FpindexAPI
import JetStream
import Logging

#if canImport(Glibc)
    import Glibc
#endif

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// What a backup file says of itself (its JSON header).
public struct BackupHeader: Codable, Sendable, Equatable {
    /// 2: the checksum covers the header too (format 1 files are still read).
    public static let currentFormat = 2
    static let readableFormats = 1...2

    public var format: Int
    public var stream: String
    public var subjectPrefix: String
    /// The stream's identity (`name@created`) when it was read.
    public var streamIdentity: String
    /// The stream's last sequence when the backup started.
    public var lastSequence: UInt64
    /// When the backup was taken (RFC 3339).
    public var created: String

    enum CodingKeys: String, CodingKey {
        case format, stream, created
        case subjectPrefix = "subject_prefix"
        case streamIdentity = "stream_identity"
        case lastSequence = "last_sequence"
    }
}

/// The backup file format: `FPXBAK1\n`, a u32 length and the JSON header, then records
/// (`0x01`, u64 original sequence, u16 subject length, the subject below the prefix, u32
/// payload length, the payload), then a trailer (`0xFF`, u64 record count, u64 FNV-1a of the
/// magic, header and every record byte; format 1 left the magic and header out). Big-endian.
/// Records are in stream order; the trailer proves the file complete.
enum BackupFormat {
    static let magic = Array("FPXBAK1\n".utf8)
    static let recordTag: UInt8 = 0x01
    static let trailerTag: UInt8 = 0xFF
    static let maxHeaderBytes = 1 << 20
    /// Far above any message NATS takes (its max_payload is at most 64 MiB): a larger length is damage.
    static let maxPayloadBytes = 64 << 20
}

/// One message of a backup.
public struct BackupRecord: Sendable, Equatable {
    /// The message's sequence in the stream it was read from.
    public var sequence: UInt64
    /// The subject without `<prefix>.`.
    public var relativeSubject: String
    public var payload: [UInt8]
}

/// A streaming FNV-1a (64 bits), the backup's checksum.
struct FNV1a {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func add(_ bytes: some Sequence<UInt8>) {
        for byte in bytes {
            value ^= UInt64(byte)
            value = value &* 0x0000_0100_0000_01b3
        }
    }
}

/// Writes a backup file: into `<path>.partial`, renamed over `path` only when complete.
final class BackupWriter {
    private let path: String
    private let file: UnsafeMutablePointer<FILE>
    /// Set once `file` is closed: `abandon` after a failed `finish` must not close it again.
    private var closed = false
    private var checksum = FNV1a()
    private(set) var records: UInt64 = 0
    private var scratch: [UInt8] = []

    init(path: String, header: BackupHeader) throws {
        self.path = path
        guard let file = fopen(path + ".partial", "wb") else {
            throw ImportError("cannot write \(path).partial: \(String(cString: strerror(errno)))")
        }
        self.file = file
        let json = Array(try JSONEncoder().encode(header))
        var start = BackupFormat.magic
        start.appendBigEndian(UInt32(json.count))
        start += json
        checksum.add(start)
        try write(start)
    }

    func append(_ record: BackupRecord) throws {
        scratch.removeAll(keepingCapacity: true)
        scratch.append(BackupFormat.recordTag)
        scratch.appendBigEndian(record.sequence)
        let subject = Array(record.relativeSubject.utf8)
        scratch.appendBigEndian(UInt16(subject.count))
        scratch += subject
        scratch.appendBigEndian(UInt32(record.payload.count))
        scratch += record.payload
        checksum.add(scratch)
        records += 1
        try write(scratch)
    }

    /// Writes the trailer, flushes to disk and moves the file into place.
    func finish() throws {
        var trailer = [BackupFormat.trailerTag]
        trailer.appendBigEndian(records)
        trailer.appendBigEndian(checksum.value)
        try write(trailer)
        guard fflush(file) == 0, fsync(fileno(file)) == 0 else { throw ImportError("cannot flush \(path).partial") }
        closed = true
        guard fclose(file) == 0 else { throw ImportError("cannot close \(path).partial: \(String(cString: strerror(errno)))") }
        guard rename(path + ".partial", path) == 0 else {
            throw ImportError("cannot rename \(path).partial to \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Drops an unfinished file.
    func abandon() {
        if !closed { fclose(file) }
        closed = true
        unlink(path + ".partial")
    }

    private func write(_ bytes: [UInt8]) throws {
        guard bytes.withUnsafeBytes({ fwrite($0.baseAddress, 1, $0.count, file) }) == bytes.count else {
            throw ImportError("cannot write \(path).partial: \(String(cString: strerror(errno)))")
        }
    }
}

/// Reads a backup file, record by record, checking its shape as it goes.
final class BackupReader {
    let header: BackupHeader
    private let path: String
    private let file: UnsafeMutablePointer<FILE>
    private var checksum = FNV1a()
    private(set) var records: UInt64 = 0
    private(set) var finished = false

    init(path: String) throws {
        self.path = path
        guard let file = fopen(path, "rb") else { throw ImportError("cannot open \(path): \(String(cString: strerror(errno)))") }
        self.file = file
        do {
            guard try Self.read(file, count: BackupFormat.magic.count) == BackupFormat.magic else {
                throw ImportError("\(path) is not an fpindex-backup file")
            }
            let lengthBytes = try Self.read(file, count: 4)
            let length = Int(UInt32(bigEndianBytes: lengthBytes))
            guard length <= BackupFormat.maxHeaderBytes else { throw ImportError("\(path): header too large") }
            let json = try Self.read(file, count: length)
            let header = try JSONDecoder().decode(BackupHeader.self, from: Data(json))
            guard BackupHeader.readableFormats.contains(header.format) else {
                throw ImportError(
                    "\(path) has backup format \(header.format); this version reads formats \(BackupHeader.readableFormats.lowerBound)-\(BackupHeader.readableFormats.upperBound)"
                )
            }
            if header.format >= 2 { checksum.add(BackupFormat.magic + lengthBytes + json) }
            self.header = header
        } catch let error as ImportError {
            fclose(file)
            throw error
        } catch {
            fclose(file)
            throw ImportError("\(path): unreadable header (\(error))")
        }
    }

    deinit { fclose(file) }

    /// The next record; nil after the trailer, which must match what was read.
    func next() throws -> BackupRecord? {
        guard !finished else { return nil }
        let tag = try Self.read(file, count: 1)[0]
        switch tag {
        case BackupFormat.recordTag:
            var bytes = [tag]
            let sequenceBytes = try Self.read(file, count: 8)
            let subjectLengthBytes = try Self.read(file, count: 2)
            let subject = try Self.read(file, count: Int(UInt16(bigEndianBytes: subjectLengthBytes)))
            let payloadLengthBytes = try Self.read(file, count: 4)
            let payloadLength = Int(UInt32(bigEndianBytes: payloadLengthBytes))
            guard payloadLength <= BackupFormat.maxPayloadBytes else {
                throw ImportError("\(path): record \(records + 1) claims a payload of \(payloadLength) bytes (the file is damaged)")
            }
            let payload = try Self.read(file, count: payloadLength)
            bytes += sequenceBytes + subjectLengthBytes + subject + payloadLengthBytes + payload
            checksum.add(bytes)
            records += 1
            guard let relativeSubject = String(validating: subject, as: UTF8.self) else {
                throw ImportError("\(path): record \(records) has a subject that is not UTF-8")
            }
            return BackupRecord(sequence: UInt64(bigEndianBytes: sequenceBytes), relativeSubject: relativeSubject, payload: payload)
        case BackupFormat.trailerTag:
            let count = UInt64(bigEndianBytes: try Self.read(file, count: 8))
            let sum = UInt64(bigEndianBytes: try Self.read(file, count: 8))
            guard count == records else { throw ImportError("\(path): the trailer counts \(count) records, the file holds \(records)") }
            guard sum == checksum.value else { throw ImportError("\(path): checksum mismatch (the file is damaged)") }
            guard fgetc(file) == EOF else { throw ImportError("\(path): bytes after the trailer") }
            finished = true
            return nil
        default:
            throw ImportError("\(path): unexpected byte \(tag) after record \(records) (the file is damaged)")
        }
    }

    private static func read(_ file: UnsafeMutablePointer<FILE>, count: Int) throws -> [UInt8] {
        guard count > 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: count)
        let got = bytes.withUnsafeMutableBytes { fread($0.baseAddress, 1, count, file) }
        guard got == count else { throw ImportError("the backup file ends early (it is incomplete or damaged)") }
        return bytes
    }

}

extension Array where Element == UInt8 {
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }
}

extension FixedWidthInteger {
    init(bigEndianBytes bytes: [UInt8]) {
        var value: Self = 0
        for byte in bytes { value = value << 8 | Self(byte) }
        self = value
    }
}

/// What a backup or a restore did.
public struct BackupSummary: Sendable, Equatable {
    public var records: UInt64 = 0
    public var bytes: UInt64 = 0
    public var lastSequence: UInt64 = 0
    public var seconds = 0.0
    /// Restore: messages in the new stream once done (records of one subject collapse to its last).
    public var streamMessages: UInt64 = 0
}

/// Copies a stream's content to a file and back (`fpindex-backup`).
public enum StreamBackup {
    /// Writes every subject's last message to `path`, in stream order.
    public static func create(client: NATSClient, stream: StreamSettings, path: String, progress: ProgressReporter) async throws
        -> BackupSummary
    {
        let started = ContinuousClock.now
        let info = try await client.verifyStream(stream)
        let header = BackupHeader(
            format: BackupHeader.currentFormat, stream: stream.name, subjectPrefix: stream.subjectPrefix, streamIdentity: info.identity,
            lastSequence: info.state.lastSeq, created: Date().formatted(.iso8601))
        let writer = try BackupWriter(path: path, header: header)
        var summary = BackupSummary(lastSequence: info.state.lastSeq)
        let cut = stream.subjectPrefix.utf8.count + 1
        do {
            try await client.withStreamScan(stream: stream.name, filter: StreamSubjects(prefix: stream.subjectPrefix).all) { scan in
                while let messages = try await scan.next() {
                    for message in messages {
                        let relative = String(message.subject.utf8.dropFirst(cut))!
                        try writer.append(BackupRecord(sequence: message.sequence, relativeSubject: relative, payload: message.payload))
                        summary.bytes += UInt64(message.payload.count)
                    }
                    progress.update(
                        done: Int(writer.records),
                        fraction: info.state.messages > 0 ? Double(writer.records) / Double(info.state.messages) : nil)
                }
            }
            try writer.finish()
        } catch {
            writer.abandon()
            throw error
        }
        summary.records = writer.records
        summary.seconds = (ContinuousClock.now - started).seconds
        progress.finish(done: Int(summary.records))
        return summary
    }

    /// Reads the whole file once to prove it complete, without touching NATS.
    public static func check(path: String) throws -> (BackupHeader, UInt64) {
        let reader = try BackupReader(path: path)
        while try reader.next() != nil {}
        return (reader.header, reader.records)
    }

    /// Publishes a backup into an empty (or absent) stream, in the original order. A lifecycle
    /// delete record purges its index's earlier messages, as the proxy's `DELETE /:index` does.
    /// - Parameter stream: the target; its subject prefix replaces the backup's.
    public static func restore(
        client: NATSClient, stream: StreamSettings, path: String, progress: ProgressReporter, logger: Logger, batchSize: Int = 4096
    ) async throws -> BackupSummary {
        let started = ContinuousClock.now
        let (header, total) = try check(path: path)
        if let existing = try await client.streamInfo(stream.name) {
            if existing.state.messages > 0 {
                throw ImportError(
                    "stream \(stream.name) holds \(existing.state.messages) messages; a restore goes into an empty stream (or a new name)")
            }
            // A purged stream keeps its identity and sequences: replicas would take the restore as
            // new writes on top of what they hold instead of rebuilding. It must be deleted first.
            if existing.state.lastSeq > 0 {
                throw ImportError(
                    "stream \(stream.name) was purged, not deleted (its last sequence is \(existing.state.lastSeq)): replicas would not rebuild from a restore into it; delete the stream (or restore under a new name)"
                )
            }
        }
        try await client.ensureStream(stream)
        logger.notice(
            "restoring",
            metadata: [
                "backup.stream": "\(header.stream)", "backup.created": "\(header.created)", "records": "\(total)",
                "stream.name": "\(stream.name)", "stream.prefix": "\(stream.subjectPrefix)",
            ])
        let subjects = StreamSubjects(prefix: stream.subjectPrefix)
        let reader = try BackupReader(path: path)
        var summary = BackupSummary(lastSequence: header.lastSequence)
        var batch: [BatchMessage] = []
        func flush() async throws -> UInt64 {
            defer { batch.removeAll(keepingCapacity: true) }
            var last: UInt64 = 0
            for (message, result) in zip(batch, await client.publishBatch(batch)) {
                switch result {
                case .success(let ack): last = max(last, ack.sequence)
                case .failure(let error):
                    throw ImportError("publishing \(message.subject) failed (\(error)); delete stream \(stream.name) and restore again")
                }
            }
            summary.records += UInt64(batch.count)
            progress.update(done: Int(summary.records), fraction: Double(summary.records) / Double(max(total, 1)))
            return last
        }
        while let record = try reader.next() {
            let subject = stream.subjectPrefix + "." + record.relativeSubject
            batch.append(BatchMessage(subject: subject, payload: record.payload))
            summary.bytes += UInt64(record.payload.count)
            if case .lifecycle(let index)? = subjects.parse(subject),
                (try? record.payload.withUnsafeBytes { bytes throws(FpindexError) in try LifecycleRecord.decode(payload: bytes) })?.op
                    == .delete
            {
                let sequence = try await flush()
                try await client.purge(stream: stream.name, filter: subjects.indexContents(index), upTo: sequence)
            } else if batch.count >= batchSize {
                _ = try await flush()
            }
        }
        _ = try await flush()
        summary.streamMessages = try await client.streamInfo(stream.name)?.state.messages ?? 0
        summary.seconds = (ContinuousClock.now - started).seconds
        progress.finish(done: Int(summary.records))
        return summary
    }
}
