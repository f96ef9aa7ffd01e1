import Controller
import Foundation
import JetStream
import Testing

/// The stream's storage limit the "stream near its storage limit" alert compares with.
@Suite struct StreamUsageTests {
    static func stream(bytes: UInt64, maxBytes: Int64 = -1, storage: String = "file") throws -> StreamInfo {
        let json = """
            {"config": {"name": "fpindex", "subjects": ["fpindex.>"], "retention": "limits", "storage": "\(storage)",
                        "num_replicas": 1, "max_msgs_per_subject": 1, "max_msgs": -1, "max_bytes": \(maxBytes),
                        "max_age": 0, "discard": "old", "duplicate_window": 120000000000},
             "created": "2026-01-01T00:00:00Z",
             "state": {"messages": 7, "bytes": \(bytes), "first_seq": 1, "last_seq": 9}}
            """
        return try JSONDecoder().decode(StreamInfo.self, from: Data(json.utf8))
    }

    static func account(storage: UInt64, maxStorage: Int64, memory: UInt64 = 0, maxMemory: Int64 = -1) -> JetStreamAccountUsage {
        JetStreamAccountUsage(memory: memory, storage: storage, limits: .init(maxMemory: maxMemory, maxStorage: maxStorage))
    }

    @Test func nothingLimitsAStreamWithoutMaxBytesInAnUnlimitedAccount() throws {
        let usage = StreamUsage(stream: try Self.stream(bytes: 500), account: Self.account(storage: 900, maxStorage: -1))
        #expect(usage == StreamUsage(messages: 7, bytes: 500, limitBytes: nil))
        #expect(StreamUsage(stream: try Self.stream(bytes: 500), account: nil).limitBytes == nil)
    }

    @Test func theStreamsOwnMaxBytesLimitsIt() throws {
        #expect(StreamUsage(stream: try Self.stream(bytes: 500, maxBytes: 2000), account: nil).limitBytes == 2000)
    }

    @Test func theAccountLeavesTheStreamItsBytesPlusWhatIsFree() throws {
        // 900 of the account's 1000 used, 500 of them by this stream: it can reach 600.
        let usage = StreamUsage(stream: try Self.stream(bytes: 500), account: Self.account(storage: 900, maxStorage: 1000))
        #expect(usage.limitBytes == 600)
        // The tighter of the two wins.
        let both = StreamUsage(stream: try Self.stream(bytes: 500, maxBytes: 550), account: Self.account(storage: 900, maxStorage: 1000))
        #expect(both.limitBytes == 550)
        // An account already over its limit leaves nothing.
        let over = StreamUsage(stream: try Self.stream(bytes: 500), account: Self.account(storage: 1200, maxStorage: 1000))
        #expect(over.limitBytes == 500)
    }

    @Test func aMemoryStreamIsLimitedByTheAccountsMemory() throws {
        let account = Self.account(storage: 0, maxStorage: 10, memory: 100, maxMemory: 400)
        #expect(StreamUsage(stream: try Self.stream(bytes: 100, storage: "memory"), account: account).limitBytes == 400)
    }
}
