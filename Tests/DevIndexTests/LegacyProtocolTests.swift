import LegacyProtocol
import TestSupport
import Testing

/// AcoustID's legacy line protocol (`--legacy-port`), as the real fpindex serves it. Every
/// expected reply was measured on the real server; with `FPINDEX_REAL_BINARY` set each test
/// runs against it as well as fpindex-dev.
@Suite("The legacy line protocol as the real fpindex serves it", .timeLimit(.minutes(3)))
struct LegacyProtocolTests {
    @Test(arguments: IndexServerKind.all) func answersEveryLineAsTheRealServer(server: IndexServerKind) async throws {
        try await withLegacyPort(server) { port in
            let client = try LegacyClient(port: port)
            for (line, reply) in LegacyConversation.withRealReplies {
                #expect(try client.send(line) == reply, "\(line.debugDescription)")
            }
        }
    }

    /// AcoustID's import: a transaction of thousands of inserts and an attribute, then searches.
    @Test(arguments: IndexServerKind.all) func aTransactionOfThousandsOfInserts(server: IndexServerKind) async throws {
        try await withLegacyPort(server) { port in
            let client = try LegacyClient(port: port)
            func hashes(_ id: Int) -> [Int32] { (0..<120).map { Int32(truncatingIfNeeded: id &* 2_654_435_761 &+ $0 &* 40_503) } }
            #expect(try client.send("begin") == "OK ")
            for id in 1...2000 {
                try client.write(Array("insert \(id) \(hashes(id).map(String.init).joined(separator: ","))\r\n".utf8))
            }
            for id in 1...2000 {
                #expect(try client.readReply() == "OK ", "insert \(id)")
            }
            #expect(try client.send("set attribute last_fingerprint_id 2000") == "OK ")
            #expect(try client.send("commit") == "OK ")
            // Another connection sees it.
            let reader = try LegacyClient(port: port)
            for id in [1, 777, 2000] {
                #expect(try reader.send("search \(hashes(id).map(String.init).joined(separator: ","))") == "OK \(id):120")
            }
            #expect(try reader.send("get attribute last_fingerprint_id") == "OK 2000")
        }
    }

    @Test(arguments: IndexServerKind.all) func aConnectionDroppedBeforeCommitWritesNothing(server: IndexServerKind) async throws {
        try await withLegacyPort(server) { port in
            let writer = try LegacyClient(port: port)
            #expect(try writer.send("begin") == "OK ")
            #expect(try writer.send("insert 42 4242") == "OK ")
            #expect(try writer.send("set attribute dropped yes") == "OK ")
            writer.drop()
            let reader = try LegacyClient(port: port)
            // Whatever the server did with the dropped connection, it is done by now: a
            // commit would have had to come before the connection ended.
            #expect(try reader.send("search 4242") == "OK ")
            #expect(try reader.send("get dropped") == "OK ")
        }
    }

    @Test(arguments: IndexServerKind.all) func aLineOverTheLimitIsRefusedAndTheConnectionClosed(server: IndexServerKind) async throws {
        try await withLegacyPort(server) { port in
            // 256 KiB with its CRLF is still a line.
            let longest = String(repeating: "a", count: 256 * 1024 - "echo \r\n".utf8.count)
            let client = try LegacyClient(port: port)
            #expect(try client.send("echo \(longest)") == "OK \(longest)")
            #expect(try client.send("echo \(longest)a") == "ERR line too long")
            #expect(client.isClosedByServer())
        }
    }

    /// A script's way: lines sent a byte at a time, then the sending side shut: every line is
    /// answered, then the server closes.
    @Test(arguments: IndexServerKind.all) func linesInPiecesAndAHalfClosedConnectionAreAnswered(server: IndexServerKind) async throws {
        try await withLegacyPort(server) { port in
            let client = try LegacyClient(port: port)
            for byte in Array("echo one\r\n".utf8) { try client.write([byte]) }
            #expect(try client.readReply() == "OK one")
            try client.write(Array("echo two\r\necho three\r\n".utf8))
            client.finishSending()
            #expect(try client.readReply() == "OK two")
            #expect(try client.readReply() == "OK three")
            #expect(client.isClosedByServer())
        }
    }

    @Test(arguments: IndexServerKind.all) func anIdleConnectionTimesOut(server: IndexServerKind) async throws {
        try await withLegacyPort(server) { port in
            let client = try LegacyClient(port: port)
            #expect(try client.send("set idle_timeout 300") == "OK ")
            #expect(try client.readReply() == "ERR timeout")
            #expect(client.isClosedByServer())
        }
    }

    /// The real fpindex refuses writes on its legacy port as a replica of its own replication;
    /// fpindex-dev does when asked (`--legacy-read-only`), with the real one's answer.
    @Test func aReadOnlyLegacyPortRefusesBeginAndServesTheRest() async throws {
        try await withLegacyPort(.dev, arguments: ["--legacy-read-only"]) { port in
            let client = try LegacyClient(port: port)
            #expect(try client.send("begin") == "ERR read-only replica")
            #expect(try client.send("insert 1 1") == "ERR not in transaction")
            #expect(try client.send("search 1") == "OK ")
            #expect(try client.send("get max_results") == "OK 500")
        }
    }

    /// Starts `server` with its legacy port on a free port.
    func withLegacyPort(_ server: IndexServerKind, arguments: [String] = [], _ body: (Int) async throws -> Void) async throws {
        let port = try FreePort.find()
        let legacyPort = try FreePort.find()
        let (process, scratch) = try await server.start(
            port: port, directory: nil, arguments: ["--legacy-port", String(legacyPort)] + arguments)
        defer { if let scratch { TemporaryDirectory.remove(scratch) } }
        do {
            // Open before the body's clients connect, which they do at once.
            _ = try await LegacyClient.connect(port: legacyPort)
            try await body(legacyPort)
        } catch {
            await process.stop(timeout: .seconds(2))
            throw error
        }
        await process.stop(timeout: .seconds(2))
    }
}
