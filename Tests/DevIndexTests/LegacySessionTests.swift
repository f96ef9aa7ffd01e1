import FpindexAPI
import TestSupport
import Testing

@testable import LegacyProtocol

@Suite struct LegacySessionTests {
    /// Integers as Zig's parseInt reads them (the real server's parser), checked on it.
    @Test func integersAsZigParsesThem() {
        let unsigned: [(String, UInt32?)] = [
            ("0", 0), ("-0", 0), ("-00", 0), ("+7", 7), ("1_0", 10), ("1__0", 10), ("007", 7), ("4294967295", 4_294_967_295),
            ("4294967296", nil), ("-1", nil), ("-01", nil), ("_1", nil), ("1_", nil), ("+", nil), ("-", nil), ("", nil),
            ("0x10", nil), ("1e3", nil), (" 1", nil), ("+-1", nil),
        ]
        for (text, value) in unsigned {
            #expect(ZigInteger.parse(Array(text.utf8)[...]) as UInt32? == value, "\(text)")
        }
        let signed: [(String, Int64?)] = [
            ("-9223372036854775808", .min), ("9223372036854775807", .max), ("9223372036854775808", nil),
            ("-9223372036854775809", nil), ("-01", -1), ("-1_2", -12),
        ]
        for (text, value) in signed {
            #expect(ZigInteger.parse(Array(text.utf8)[...]) as Int64? == value, "\(text)")
        }
    }

    @Test func aCommitWaitsForTheBackendAndAFailedOneStaysOpen() {
        var session = LegacySession()
        #expect(session.handle(line: Array("begin".utf8)[...]) == .reply(.ok("")))
        #expect(session.handle(line: Array("insert 3 1,-1".utf8)[...]) == .reply(.ok("")))
        #expect(session.handle(line: Array("set attribute a 1".utf8)[...]) == .reply(.ok("")))
        #expect(session.handle(line: Array("set attribute a 2".utf8)[...]) == .reply(.ok("")))
        let expected = LegacyTransaction(inserts: [.init(id: 3, hashes: [1, 0xFFFF_FFFF])], attributes: [.init(("a", "2"))])
        #expect(session.handle(line: Array("commit".utf8)[...]) == .commit(expected))
        #expect(session.inTransaction)  // until the backend says it is written
        #expect(session.handle(line: Array("commit".utf8)[...]) == .commit(expected))
        session.committed()
        #expect(!session.inTransaction)
        #expect(expected.updateRequest()?.metadata == ["a": "2"])
        #expect(LegacyTransaction(inserts: [.init(id: 0, hashes: [1])], attributes: []).updateRequest() == nil)
    }

    @Test func aReadOnlySessionRefusesBegin() {
        var session = LegacySession(readOnly: true)
        #expect(session.handle(line: Array("begin".utf8)[...]) == .reply(.error("read-only replica")))
        #expect(session.handle(line: Array("search 1".utf8)[...]) != .reply(.error("read-only replica")))
    }

    /// Random lines (bytes of every kind, and near-misses of real commands) never crash the
    /// session, and every reply is one line.
    @Test func randomLinesNeverCrashIt() {
        let seed = UInt64.random(in: 1...UInt64.max)
        var random = SeededRandom(seed: seed)
        let words = ["begin", "insert", "commit", "rollback", "search", "set", "get", "attribute", "echo", "1", "-0", "1,2", ",", "_", "+"]
        var session = LegacySession()
        for _ in 0..<20_000 {
            var line: [UInt8] = []
            for _ in 0..<Int.random(in: 0...6, using: &random) {
                if Bool.random(using: &random) {
                    line += Array(words.randomElement(using: &random)!.utf8)
                } else {
                    line += (0..<Int.random(in: 0...8, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
                }
                line.append(UInt8(ascii: " "))
            }
            line.removeAll { $0 == UInt8(ascii: "\n") }
            switch session.handle(line: line[...]) {
            case .reply(let reply):
                #expect(reply.line.utf8.filter { $0 == UInt8(ascii: "\n") }.count == 1, "seed \(seed)")
            case .commit:
                session.committed()
            case .search, .readAttribute:
                break
            }
        }
    }
}
