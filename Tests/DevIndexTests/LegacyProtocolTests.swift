import TestSupport
import Testing

/// AcoustID's legacy line protocol (`--legacy-port`), as the real fpindex serves it. Every
/// expected reply was measured on the real server; with `FPINDEX_REAL_BINARY` set each test
/// runs against it as well as fpindex-dev.
@Suite("The legacy line protocol as the real fpindex serves it", .timeLimit(.minutes(3)))
struct LegacyProtocolTests {
    /// A conversation line by line, with the real server's replies.
    static let conversation: [(line: String, reply: String)] = [
        ("", "OK "),
        ("echo a\tb", "OK a\tb"),  // only spaces separate
        ("echo  x   y ", "OK x y"),
        ("nonsense", "ERR unknown command"),
        ("ECHO x", "ERR unknown command"),
        // Session attributes: u32, read as Zig's parseInt reads them.
        ("get max_results", "OK 500"),
        ("get top_score_percent", "OK 10"),
        ("get timeout", "OK 0"),
        ("get idle_timeout", "OK 60000"),
        ("set max_results -0", "OK "),
        ("get max_results", "OK 0"),
        ("set max_results +5", "OK "),
        ("get max_results", "OK 5"),
        ("set max_results 1__0", "OK "),
        ("get max_results", "OK 10"),
        ("set max_results 4294967296", "ERR invalid value"),
        ("set max_results -1", "ERR invalid value"),
        ("set max_results 0x10", "ERR invalid value"),
        ("set max_results _1", "ERR invalid value"),
        ("set max_results", "ERR expected two arguments"),
        ("set attribute max_results 500", "OK "),
        ("get attribute max_results", "OK 500"),
        ("get a b c", "ERR expected one argument"),
        ("get", "ERR expected one argument"),
        ("get unset", "OK "),
        // Outside a transaction.
        ("insert 1 1,2", "ERR not in transaction"),
        ("insert", "ERR not in transaction"),
        ("set attribute k v", "ERR not in transaction"),
        ("commit", "ERR not in transaction"),
        ("rollback", "ERR not in transaction"),
        ("optimize", "ERR not in transaction"),
        ("cleanup", "ERR not in transaction"),
        // A rolled back transaction leaves nothing.
        ("begin", "OK "),
        ("begin", "ERR already in transaction"),
        ("insert 9 900", "OK "),
        ("set attribute gone yes", "OK "),
        ("rollback", "OK "),
        ("search 900", "OK "),
        ("get gone", "OK "),
        // Bad inserts are refused one by one; the transaction goes on.
        ("begin", "OK "),
        ("insert 1", "ERR expected two arguments"),
        ("insert 1 ", "ERR expected two arguments"),
        ("insert 1 1 1", "ERR expected two arguments"),
        ("insert abc 1", "ERR invalid document id"),
        ("insert 4294967296 1", "ERR invalid document id"),
        ("insert -1 1", "ERR invalid document id"),
        ("insert 1 1,", "ERR invalid fingerprint"),
        ("insert 1 ,1", "ERR invalid fingerprint"),
        ("insert 1 x", "ERR invalid fingerprint"),
        ("insert 1 9223372036854775808", "ERR invalid fingerprint"),
        ("set a b c d", "ERR expected two arguments"),
        ("optimize", "OK "),
        ("cleanup", "OK "),
        // Hashes are signed decimals taken as their low 32 bits.
        ("insert 5 4294967297,-1", "OK "),
        ("insert +6 1_2,3", "OK "),
        ("insert 7 3", "OK "),
        ("insert 8 -9223372036854775808", "OK "),
        ("set attribute attribute x", "OK "),
        ("set k v", "OK "),
        ("set k w", "OK "),
        ("commit", "OK "),
        ("commit", "ERR not in transaction"),
        ("search 1", "OK 5:1"),
        ("search 12,3", "OK 6:2 7:1"),
        ("search 4294967295,1", "OK 5:2"),
        ("search 0", "OK 8:1"),
        ("search 1,2 3", "ERR expected one argument"),
        ("search", "ERR expected one argument"),
        ("search ,", "ERR invalid fingerprint"),
        ("get k", "OK w"),
        ("get attribute", "OK x"),
        // Search tuning.
        ("set top_score_percent 100", "OK "),  // the cut: 2 * 100 / 100
        ("search 12,3", "OK 6:2"),
        ("set max_results 0", "OK "),
        ("search 12,3", "OK "),
        // An insert of id 0 passes the parser, and the index refuses the commit: the
        // transaction stays open and can be rolled back.
        ("begin", "OK "),
        ("insert 0 1,2", "OK "),
        ("commit", "ERR commit failed"),
        ("rollback", "OK "),
    ]

    @Test(arguments: IndexServerKind.all) func answersEveryLineAsTheRealServer(server: IndexServerKind) async throws {
        try await withLegacyPort(server) { port in
            let client = try LegacyClient(port: port)
            for (line, reply) in Self.conversation {
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

    @Test(arguments: IndexServerKind.all) func anIdleConnectionTimesOut(server: IndexServerKind) async throws {
        try await withLegacyPort(server) { port in
            let client = try LegacyClient(port: port)
            #expect(try client.send("set idle_timeout 300") == "OK ")
            #expect(try client.readReply() == "ERR timeout")
            #expect(client.isClosedByServer())
        }
    }

    /// Starts `server` with its legacy port on a free port.
    func withLegacyPort(_ server: IndexServerKind, _ body: (Int) async throws -> Void) async throws {
        let port = try FreePort.find()
        let legacyPort = try FreePort.find()
        let (process, scratch) = try await server.start(port: port, directory: nil, arguments: ["--legacy-port", String(legacyPort)])
        defer { if let scratch { TemporaryDirectory.remove(scratch) } }
        do {
            try await body(legacyPort)
        } catch {
            await process.stop(timeout: .seconds(2))
            throw error
        }
        await process.stop(timeout: .seconds(2))
    }
}
