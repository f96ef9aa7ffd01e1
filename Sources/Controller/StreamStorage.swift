import JetStream

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// What `$JS.API.INFO` says of the controller's NATS account: its JetStream use and limits.
/// A limit of -1 (or 0) means none.
public struct JetStreamAccountUsage: Decodable, Sendable, Equatable {
    public struct Limits: Decodable, Sendable, Equatable {
        public var maxMemory: Int64
        public var maxStorage: Int64

        public init(maxMemory: Int64, maxStorage: Int64) {
            self.maxMemory = maxMemory
            self.maxStorage = maxStorage
        }

        enum CodingKeys: String, CodingKey {
            case maxMemory = "max_memory"
            case maxStorage = "max_storage"
        }
    }

    public var memory: UInt64
    public var storage: UInt64
    public var limits: Limits

    public init(memory: UInt64, storage: UInt64, limits: Limits) {
        self.memory = memory
        self.storage = storage
        self.limits = limits
    }

    /// Reads the account over `client` (the controller's NATS user may send `$JS.API.INFO`,
    /// manifests/nats/nats-server-permissions.conf); nil when JetStream answers an error.
    static func read(_ client: NATSClient) async throws -> JetStreamAccountUsage? {
        let reply = try await client.request(subject: "$JS.API.INFO", payload: [], timeout: .seconds(5))
        return try? JSONDecoder().decode(JetStreamAccountUsage.self, from: Data(reply))
    }
}

/// How full a cluster's stream is, for the `fpindex_controller_stream_*` gauges and the
/// "stream near its storage limit" alert.
public struct StreamUsage: Sendable, Equatable {
    public var messages: UInt64
    public var bytes: UInt64
    /// The size the stream can reach before JetStream refuses writes; nil when nothing limits it.
    public var limitBytes: UInt64?

    public init(messages: UInt64, bytes: UInt64, limitBytes: UInt64?) {
        self.messages = messages
        self.bytes = bytes
        self.limitBytes = limitBytes
    }

    /// The tighter of the stream's own `max_bytes` and the room the account's limit leaves it
    /// (its own bytes plus what the account has not used yet): other streams of the account
    /// fill the same allowance. A stream that uses `discard: old` with `max_bytes` drops its
    /// oldest messages at the limit instead of refusing writes, but then replicas replaying the
    /// stream lose fingerprints: reaching it is as much of an incident.
    public init(stream: StreamInfo, account: JetStreamAccountUsage?) {
        let memory = stream.config.storage == "memory"
        var limits: [UInt64] = []
        if stream.config.maxBytes > 0 { limits.append(UInt64(stream.config.maxBytes)) }
        if let account {
            let limit = memory ? account.limits.maxMemory : account.limits.maxStorage
            let used = memory ? account.memory : account.storage
            if limit > 0 {
                let free = UInt64(limit) > used ? UInt64(limit) - used : 0
                limits.append(stream.state.bytes + free)
            }
        }
        self.init(messages: stream.state.messages, bytes: stream.state.bytes, limitBytes: limits.min())
    }
}
