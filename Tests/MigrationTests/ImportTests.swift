import Foundation
import FpindexAPI
import JetStream
import TestSupport
import Testing

/// `fpindex-import` against a real nats-server: what it publishes, how it reports bad rows, how
/// it resumes, and how it treats what the stream already holds.
@Suite(.timeLimit(.minutes(10))) struct ImportTests {
    let subjects = StreamSubjects()

    func payload(_ client: NATSClient, _ index: String, _ id: UInt32) async throws -> [UInt8]? {
        try await client.lastMessage(stream: "fpindex", subject: subjects.fingerprint(index, id: id))?.payload
    }

    @Test func badRowsAreReportedByLineAndARunResumes() async throws {
        try await withNATSServer { nats in
            let directory = try TemporaryDirectory.make(prefix: "import")
            defer { TemporaryDirectory.remove(directory) }
            let file = directory + "/fingerprints.copy"
            try await ExportFile.write(path: file, count: 2000, bad: [5: "5\t{1,x}", 17: "garbage"], deleted: [9])
            let client = try await connect(nats.url)
            defer { Task { await client.close() } }

            // Stopping at the first bad row: everything before it is in the stream, nothing after.
            let stopped = try await runTool("fpindex-import", ["--index", "main", file], natsURL: nats.url)
            #expect(stopped.status == 2, "\(stopped.stdout)\(stopped.stderr)")
            #expect(stopped.stderr.contains("line 5: the hash 'x' is not an integer"))
            #expect(stopped.stdout.contains("--resume-from 5"))
            #expect(try await payload(client, "main", 4) == FingerprintRecord(hashes: ExportFile.hashes(4)).payload)
            #expect(try await payload(client, "main", 6) == nil)
            let lifecycle = try #require(try await client.lastMessage(stream: "fpindex", subject: subjects.lifecycle("main")))
            #expect(lifecycle.payload == LifecycleRecord(.create).payload)

            // Resuming after it, skipping bad rows: the rest goes in, the other bad row is named.
            let resumed = try await runTool(
                "fpindex-import", ["--index", "main", "--on-error", "skip", "--resume-from", "6", file], natsURL: nats.url)
            #expect(resumed.status == 1, "bad rows were skipped: \(resumed.stdout)\(resumed.stderr)")
            #expect(resumed.stderr.contains("line 17: expected two tab-separated columns"))
            #expect(try resumed.int("resumed_past") == 5)
            #expect(try resumed.int("bad_rows") == 1)
            #expect(try resumed.int("nothing_to_delete") == 1)  // id 9 is NULL and was never in the stream
            #expect(try resumed.int("published") == 2000 - 5 - 1 - 1)
            // Signed int4 hashes are stored as the proxy stores them: their u32 bit pattern.
            #expect(try await payload(client, "main", 2000) == FingerprintRecord(hashes: ExportFile.hashes(2000)).payload)
            #expect(try await payload(client, "main", 9) == nil)

            // A re-run from the start publishes nothing: every row is already there.
            let again = try await runTool("fpindex-import", ["--index", "main", "--on-error", "skip", file], natsURL: nats.url)
            #expect(again.status == 1)
            #expect(try again.int("published") == 0)
            #expect(try again.int("unchanged") == 2000 - 2 - 1)
            let lastSequence = try #require(try await client.streamInfo("fpindex")).state.lastSeq

            // A newer write the proxy took stays (the default); --existing replace puts the export's value back.
            let newer = FingerprintRecord(hashes: [7, 7, 7]).payload
            _ = try await client.publish(subject: subjects.fingerprint("main", id: 10), payload: newer)
            let kept = try await runTool("fpindex-import", ["--index", "main", "--on-error", "skip", file], natsURL: nats.url)
            #expect(try kept.int("kept_existing") == 1)
            #expect(try kept.int("published") == 0)
            #expect(try await payload(client, "main", 10) == newer)
            #expect(try #require(try await client.streamInfo("fpindex")).state.lastSeq == lastSequence + 1)
            let replaced = try await runTool(
                "fpindex-import", ["--index", "main", "--on-error", "skip", "--existing", "replace", file], natsURL: nats.url)
            #expect(try replaced.int("published") == 1)
            #expect(try await payload(client, "main", 10) == FingerprintRecord(hashes: ExportFile.hashes(10)).payload)

            // A NULL row for a fingerprint the stream holds deletes it only with --existing replace.
            let deletions = directory + "/deletions.copy"
            try "11\t\\N\n".write(toFile: deletions, atomically: true, encoding: .utf8)
            let ignored = try await runTool("fpindex-import", ["--index", "main", deletions], natsURL: nats.url)
            #expect(ignored.status == 0)
            #expect(try ignored.int("kept_existing") == 1)
            let deleted = try await runTool("fpindex-import", ["--index", "main", "--existing", "replace", deletions], natsURL: nats.url)
            #expect(try deleted.int("published") == 1)
            #expect(try await payload(client, "main", 11) == FingerprintRecord.tombstone.payload)
        }
    }

    /// A write the proxy takes while the import runs is never replaced by the exported value:
    /// fenced, the import's message for that subject is refused because the write is in. The
    /// export comes through a pipe, as from `psql`, and its last row only after the write.
    @Test func aLiveWriteDuringTheImportIsNeverReplaced() async throws {
        try await withNATSServer { nats in
            let directory = try TemporaryDirectory.make(prefix: "live")
            defer { TemporaryDirectory.remove(directory) }
            let count = 20_000
            try await ExportFile.write(path: directory + "/rows.copy", count: count)
            let rows = try [UInt8](Data(contentsOf: URL(fileURLWithPath: directory + "/rows.copy")))
            let lastLine = rows.dropLast().lastIndex(of: UInt8(ascii: "\n"))! + 1
            let client = try await connect(nats.url)
            defer { Task { await client.close() } }
            let (importer, writer) = try await importFromPipe(in: directory, ["--index", "main"], natsURL: nats.url)
            await writeOffThePool(writer, Array(rows[..<lastLine]))
            let live = FingerprintRecord(hashes: [42, 43]).payload
            _ = try await client.publish(
                subject: subjects.fingerprint("main", id: UInt32(count)), payload: live,
                options: PublishOptions(expectedLastSubjectSequence: 0))
            await writeOffThePool(writer, Array(rows[lastLine...]))
            close(writer)
            let status = await importer.waitForExit(timeout: .seconds(300))
            #expect(status == 0, "\(importer.output)")
            let run = ToolRun(status: status ?? -1, stdout: importer.stdout, stderr: importer.stderr)
            #expect(try await payload(client, "main", UInt32(count)) == live)
            #expect(try run.int("superseded") == 1)
            #expect(try run.int("published") == count - 1)
        }
    }

    /// A later row of an id gives way to a write the proxy took after the id's earlier row: only
    /// the run's own message for a subject is replaced. Rows come through a pipe, one batch each,
    /// and the write is made once the earlier row is in the stream.
    @Test func aLiveWriteBetweenTwoRowsOfAnIdIsNeverReplaced() async throws {
        try await withNATSServer { nats in
            let directory = try TemporaryDirectory.make(prefix: "live-repeat")
            defer { TemporaryDirectory.remove(directory) }
            let client = try await connect(nats.url)
            defer { Task { await client.close() } }
            let (importer, writer) = try await importFromPipe(in: directory, ["--index", "main", "--batch", "1"], natsURL: nats.url)
            await writeOffThePool(writer, Array("7\t{1}\n8\t{2}\n".utf8))
            let earlier = try await eventually("row 1 in the stream\n\(importer.output)") {
                try await client.lastMessage(stream: "fpindex", subject: subjects.fingerprint("main", id: 7))
            }
            #expect(earlier.payload == FingerprintRecord(hashes: [1]).payload)
            let live = FingerprintRecord(hashes: [42, 43]).payload
            _ = try await client.publish(
                subject: subjects.fingerprint("main", id: 7), payload: live,
                options: PublishOptions(expectedLastSubjectSequence: earlier.sequence))
            // Then id 7 again, and id 8 again: 8 has no other writer, so its later row wins.
            await writeOffThePool(writer, Array("7\t{3}\n8\t{4}\n".utf8))
            close(writer)
            let status = await importer.waitForExit(timeout: .seconds(120))
            #expect(status == 0, "\(importer.output)")
            let run = ToolRun(status: status ?? -1, stdout: importer.stdout, stderr: importer.stderr)
            #expect(try await payload(client, "main", 7) == live)
            #expect(try await payload(client, "main", 8) == FingerprintRecord(hashes: [4]).payload)
            #expect(try run.int("superseded") == 1)
            #expect(try run.int("published") == 3)
        }
    }

    /// A re-run after an interrupted one: the stream holds an earlier row of an id the input
    /// changes later. The stream cannot tell that from a proxy write equal to that row, so the
    /// stream's value stays, the id is named and the run ends with status 1.
    @Test func aRerunNamesIdsWhoseLaterRowItCannotTell() async throws {
        try await withNATSServer { nats in
            let directory = try TemporaryDirectory.make(prefix: "rerun-repeats")
            defer { TemporaryDirectory.remove(directory) }
            let client = try await connect(nats.url)
            defer { Task { await client.close() } }
            let interrupted = directory + "/interrupted.copy"
            try "5\t{1}\n".write(toFile: interrupted, atomically: true, encoding: .utf8)
            #expect(try await runTool("fpindex-import", ["--index", "main", interrupted], natsURL: nats.url).status == 0)
            let whole = directory + "/whole.copy"
            try "5\t{1}\n6\t{9}\n5\t{2}\n".write(toFile: whole, atomically: true, encoding: .utf8)
            let rerun = try await runTool("fpindex-import", ["--index", "main", whole], natsURL: nats.url)
            #expect(rerun.status == 1, "\(rerun.stdout)\(rerun.stderr)")
            #expect(try rerun.int("kept_after_matching_row") == 1)
            #expect(rerun.stdout.contains("(ids 5)"), "\(rerun.stdout)")
            #expect(try await payload(client, "main", 5) == FingerprintRecord(hashes: [1]).payload)
            #expect(try await payload(client, "main", 6) == FingerprintRecord(hashes: [9]).payload)
            let replaced = try await runTool("fpindex-import", ["--index", "main", "--existing", "replace", whole], natsURL: nats.url)
            #expect(replaced.status == 0, "\(replaced.stdout)\(replaced.stderr)")
            #expect(try await payload(client, "main", 5) == FingerprintRecord(hashes: [2]).payload)
        }
    }

    /// An id on several rows ends with its last row, whatever the stream held before the run and
    /// whether the rows fall into one batch or several.
    @Test(arguments: [1, 4096])
    func theLastRowOfAnIdWins(batch: Int) async throws {
        try await withNATSServer { nats in
            let directory = try TemporaryDirectory.make(prefix: "repeats")
            defer { TemporaryDirectory.remove(directory) }
            let client = try await connect(nats.url)
            defer { Task { await client.close() } }
            let first = directory + "/first.copy"
            try "1\t{1,2}\n2\t{5}\n".write(toFile: first, atomically: true, encoding: .utf8)
            #expect(try await runTool("fpindex-import", ["--index", "main", first], natsURL: nats.url).status == 0)
            // Id 1 changes and changes back (the stream's value again); id 3 is new, then deleted;
            // id 2 is deleted, then written again.
            let repeats = directory + "/repeats.copy"
            try "1\t{9}\n3\t{7}\n2\t\\N\n1\t{1,2}\n3\t\\N\n2\t{6}\n".write(toFile: repeats, atomically: true, encoding: .utf8)
            let run = try await runTool(
                "fpindex-import", ["--index", "main", "--existing", "replace", "--batch", String(batch), repeats], natsURL: nats.url)
            #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
            #expect(try await payload(client, "main", 1) == FingerprintRecord(hashes: [1, 2]).payload)
            #expect(try await payload(client, "main", 2) == FingerprintRecord(hashes: [6]).payload)
            #expect(try await payload(client, "main", 3) == FingerprintRecord.tombstone.payload)
        }
    }

    /// The three formats of the same fingerprints put the same payloads in the stream.
    @Test func everyFormatWritesWhatThePgcopyRowsWrite() async throws {
        try await withNATSServer { nats in
            let directory = try TemporaryDirectory.make(prefix: "formats")
            defer { TemporaryDirectory.remove(directory) }
            let count = 300
            try await ExportFile.write(path: directory + "/rows.copy", count: count, deleted: [3])
            var jsonl = ""
            var msgpack: [UInt8] = []
            for id in UInt32(1)...UInt32(count) {
                let hashes = ExportFile.hashes(id)
                jsonl +=
                    id == 3
                    ? #"{"id":3,"hashes":null}"#
                    : #"{"id":\#(id),"hashes":[\#(hashes.map { String(Int32(bitPattern: $0)) }.joined(separator: ","))]}"#
                jsonl += "\n"
            }
            // _update bodies of 100 changes each, plus metadata, as a write log would hold them.
            for start in stride(from: 1, through: count, by: 100) {
                let changes = (start..<(start + 100)).map { id -> Change in
                    id == 3 ? .delete(id: 3) : .insert(id: UInt32(id), hashes: ExportFile.hashes(UInt32(id)))
                }
                msgpack += UpdateRequest(changes: changes, metadata: ["source": "log"]).encoded(as: .msgpack)
            }
            try jsonl.write(toFile: directory + "/rows.jsonl", atomically: true, encoding: .utf8)
            _ = FileManager.default.createFile(atPath: directory + "/rows.msgpack", contents: Data(msgpack))
            let client = try await connect(nats.url)
            defer { Task { await client.close() } }
            // Id 3 exists first, so each format's deletion of it has something to delete.
            try await client.ensureStream(StreamSettings())
            for index in ["pg", "js", "mp"] {
                _ = try await client.publish(subject: subjects.lifecycle(index), payload: LifecycleRecord(.create).payload)
                _ = try await client.publish(subject: subjects.fingerprint(index, id: 3), payload: FingerprintRecord(hashes: [1]).payload)
            }
            for (index, format, file) in [("pg", "pgcopy", "rows.copy"), ("js", "jsonl", "rows.jsonl"), ("mp", "msgpack", "rows.msgpack")] {
                let run = try await runTool(
                    "fpindex-import", ["--index", index, "--format", format, "--existing", "replace", directory + "/" + file],
                    natsURL: nats.url)
                #expect(run.status == 0, "\(format): \(run.stdout)\(run.stderr)")
            }
            let content = try await streamContent(client, stream: "fpindex", prefix: "fpindex")
            for id in UInt32(1)...UInt32(count) {
                let hex = String(id, radix: 16).leftPadded(to: 8)
                let expected = id == 3 ? FingerprintRecord.tombstone.payload : FingerprintRecord(hashes: ExportFile.hashes(id)).payload
                #expect(content["pg.\(hex)"] == expected)
                #expect(content["js.\(hex)"] == expected)
                #expect(content["mp.\(hex)"] == expected)
            }
            #expect(
                content[String(subjects.metadata("mp", key: "source").dropFirst("fpindex.".count))] == MetadataRecord(value: "log").payload)
        }
    }

    /// Metadata of MessagePack bodies is fenced and weighed like fingerprints: a value the proxy
    /// wrote stays under `--existing keep`, and a key set by every body ends with the last body,
    /// in one batch or across many.
    @Test(arguments: [4, 4096])
    func metadataIsKeptOrReplacedLikeFingerprints(batch: Int) async throws {
        try await withNATSServer { nats in
            let directory = try TemporaryDirectory.make(prefix: "metadata")
            defer { TemporaryDirectory.remove(directory) }
            let client = try await connect(nats.url)
            defer { Task { await client.close() } }
            try await client.ensureStream(StreamSettings())
            _ = try await client.publish(subject: subjects.lifecycle("mp"), payload: LifecycleRecord(.create).payload)
            _ = try await client.publish(subject: subjects.metadata("mp", key: "owner"), payload: MetadataRecord(value: "proxy").payload)
            var msgpack: [UInt8] = []
            for n in UInt32(1)...50 {
                msgpack += UpdateRequest(changes: [.insert(id: n, hashes: [n])], metadata: ["owner": "log", "last": String(n)])
                    .encoded(as: .msgpack)
            }
            let file = directory + "/log.msgpack"
            _ = FileManager.default.createFile(atPath: file, contents: Data(msgpack))
            func metadata(_ key: String) async throws -> [UInt8]? {
                try await client.lastMessage(stream: "fpindex", subject: subjects.metadata("mp", key: key))?.payload
            }
            let kept = try await runTool(
                "fpindex-import", ["--index", "mp", "--format", "msgpack", "--batch", String(batch), file], natsURL: nats.url)
            #expect(kept.status == 0, "\(kept.stdout)\(kept.stderr)")
            #expect(try await metadata("owner") == MetadataRecord(value: "proxy").payload)
            #expect(try await metadata("last") == MetadataRecord(value: "50").payload)
            #expect(try kept.int("kept_existing") == 50)
            let replaced = try await runTool(
                "fpindex-import", ["--index", "mp", "--format", "msgpack", "--existing", "replace", "--batch", String(batch), file],
                natsURL: nats.url)
            #expect(replaced.status == 0, "\(replaced.stdout)\(replaced.stderr)")
            #expect(try await metadata("owner") == MetadataRecord(value: "log").payload)
            #expect(try await metadata("last") == MetadataRecord(value: "50").payload)
        }
    }

    /// A broken MessagePack body stops the import there, even under `--on-error skip`: bodies
    /// carry no length, so nothing after it can be found again, and no resume point is offered.
    @Test func aBrokenMessagePackBodyIsReportedByItsOrdinal() async throws {
        try await withNATSServer { nats in
            let directory = try TemporaryDirectory.make(prefix: "msgpack")
            defer { TemporaryDirectory.remove(directory) }
            let good = UpdateRequest(changes: [.insert(id: 1, hashes: [1, 2])]).encoded(as: .msgpack)
            _ = FileManager.default.createFile(atPath: directory + "/broken.msgpack", contents: Data(good + [0xc1] + good))
            let run = try await runTool(
                "fpindex-import", ["--index", "x", "--format", "msgpack", "--on-error", "skip", directory + "/broken.msgpack"],
                natsURL: nats.url)
            #expect(run.status == 2)
            #expect(run.stderr.contains("line 2: not a MessagePack _update body"))
            #expect(try run.int("published") == 1)
            #expect(run.stdout.contains("stopped at body 2"), "\(run.stdout)")
            #expect(!run.stdout.contains("--resume-from"))
            #expect(try run.lastJSON()["completed"] as? Bool == false)
        }
    }
}

extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

/// Starts fpindex-import reading a FIFO in `directory`, as from `psql`, and opens the FIFO's
/// writing end once the import has opened it (before, opening for writing would block).
func importFromPipe(in directory: String, _ arguments: [String], natsURL: String) async throws -> (ChildProcess, Int32) {
    let pipe = directory + "/export.pipe"
    guard mkfifo(pipe, 0o600) == 0 else { throw TestFailure("mkfifo \(pipe): \(String(cString: strerror(errno)))") }
    let importer = try ChildProcess(
        name: "fpindex-import", executable: try Locations.executable("fpindex-import"), arguments: arguments + ["--quiet", pipe],
        environment: ["NATS_URL": natsURL, "LOG_LEVEL": "warning"])
    let writer = try await eventually("fpindex-import to open the pipe\n\(importer.output)") { () -> Int32? in
        let fd = open(pipe, O_WRONLY | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return fd
    }
    return (importer, writer)
}

/// Writes everything to a descriptor from a thread of its own: a pipe blocks while its reader is busy.
func writeOffThePool(_ descriptor: Int32, _ bytes: [UInt8]) async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        Thread {
            bytes.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                    if written <= 0 { break }
                    offset += written
                }
            }
            continuation.resume()
        }.start()
    }
}
