import CNats
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A durable pull consumer's configuration, every field explicit (no server defaults).
public struct ConsumerConfig: Codable, Sendable, Equatable {
    public var durableName: String
    public var description: String?
    /// `all`, or `by_start_sequence` with `optStartSeq`.
    public var deliverPolicy: String
    public var optStartSeq: UInt64?
    /// `all`: acknowledging a message acknowledges every earlier one.
    public var ackPolicy: String
    /// Nanoseconds a delivered message may stay unacknowledged before redelivery.
    public var ackWait: Int64
    /// Messages delivered and not yet acknowledged before deliveries pause.
    public var maxAckPending: Int
    public var maxDeliver: Int
    public var filterSubject: String?
    public var replayPolicy: String
    /// Largest batch one fetch may ask for.
    public var maxBatch: Int?
    /// Nanoseconds without a fetch after which the server deletes the consumer (nil: never).
    public var inactiveThreshold: Int64?

    enum CodingKeys: String, CodingKey {
        case description
        case durableName = "durable_name"
        case deliverPolicy = "deliver_policy"
        case optStartSeq = "opt_start_seq"
        case ackPolicy = "ack_policy"
        case ackWait = "ack_wait"
        case maxAckPending = "max_ack_pending"
        case maxDeliver = "max_deliver"
        case filterSubject = "filter_subject"
        case replayPolicy = "replay_policy"
        case maxBatch = "max_batch"
        case inactiveThreshold = "inactive_threshold"
    }

    /// A durable pull consumer delivering from `startSequence` (from the start when nil), with
    /// instant replay. Every other setting is the caller's: this wrapper knows nothing of how
    /// the consumer is used (a replica's shape is `ReplicaConsumer`'s).
    public init(
        durableName: String, description: String? = nil, filterSubject: String?, startSequence: UInt64? = nil,
        ackPolicy: String, ackWait: Duration, maxAckPending: Int, maxDeliver: Int = -1
    ) {
        self.durableName = durableName
        self.description = description
        self.deliverPolicy = startSequence == nil ? "all" : "by_start_sequence"
        self.optStartSeq = startSequence
        self.ackPolicy = ackPolicy
        self.ackWait = ackWait.components.seconds * 1_000_000_000 + ackWait.components.attoseconds / 1_000_000_000
        self.maxAckPending = maxAckPending
        self.maxDeliver = maxDeliver
        self.filterSubject = filterSubject
        self.replayPolicy = "instant"
        self.maxBatch = nil
        self.inactiveThreshold = nil
    }
}

/// What `$JS.API.CONSUMER.INFO` says.
public struct ConsumerInfo: Decodable, Sendable {
    public struct SequenceInfo: Decodable, Sendable {
        public var consumerSeq: UInt64
        public var streamSeq: UInt64

        enum CodingKeys: String, CodingKey {
            case consumerSeq = "consumer_seq"
            case streamSeq = "stream_seq"
        }
    }

    public var name: String
    public var config: ConsumerConfig
    public var delivered: SequenceInfo
    public var ackFloor: SequenceInfo
    public var numAckPending: UInt64
    public var numRedelivered: UInt64
    public var numPending: UInt64
    /// False when the server holds the consumer as ephemeral: its configuration has no
    /// `durable_name` (see `ConsumerConfig.init(from:)`). Such a consumer is deleted once it has
    /// been inactive for a while, e.g. after a server restart; creating it again with its
    /// durable name (an in-place update, its state kept) makes it durable again.
    public var isDurable: Bool

    enum CodingKeys: String, CodingKey {
        case name, config, delivered
        case ackFloor = "ack_floor"
        case numAckPending = "num_ack_pending"
        case numRedelivered = "num_redelivered"
        case numPending = "num_pending"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        config = try c.decode(ConsumerConfig.self, forKey: .config)
        delivered = try c.decode(SequenceInfo.self, forKey: .delivered)
        ackFloor = try c.decode(SequenceInfo.self, forKey: .ackFloor)
        numAckPending = try c.decode(UInt64.self, forKey: .numAckPending)
        numRedelivered = try c.decode(UInt64.self, forKey: .numRedelivered)
        numPending = try c.decode(UInt64.self, forKey: .numPending)
        isDurable = try c.nestedContainer(keyedBy: ConsumerConfig.CodingKeys.self, forKey: .config).contains(.durableName)
    }

    /// Messages not yet applied by this consumer: what is left to deliver plus what is delivered but unacknowledged.
    public var lag: UInt64 { numPending + numAckPending }
}

extension ConsumerConfig {
    private enum NameKey: String, CodingKey { case name }

    /// As the synthesized decoder, except that a configuration without `durable_name` takes the
    /// consumer's `name`. nats-server stores such a configuration when a client sends a durable
    /// consumer's name in a request on the ephemeral-consumer create subject (which the proxy's
    /// NATS user may use for its ordered consumer, NATSPermissionTests shows it): the consumer
    /// keeps its name and state but becomes ephemeral. Refusing to read it would stop the
    /// updater and the controller on it; read, the controller can see and repair it.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let durable = try c.decodeIfPresent(String.self, forKey: .durableName) {
            durableName = durable
        } else {
            durableName = try decoder.container(keyedBy: NameKey.self).decode(String.self, forKey: .name)
        }
        description = try c.decodeIfPresent(String.self, forKey: .description)
        deliverPolicy = try c.decode(String.self, forKey: .deliverPolicy)
        optStartSeq = try c.decodeIfPresent(UInt64.self, forKey: .optStartSeq)
        ackPolicy = try c.decode(String.self, forKey: .ackPolicy)
        ackWait = try c.decode(Int64.self, forKey: .ackWait)
        maxAckPending = try c.decode(Int.self, forKey: .maxAckPending)
        maxDeliver = try c.decode(Int.self, forKey: .maxDeliver)
        filterSubject = try c.decodeIfPresent(String.self, forKey: .filterSubject)
        replayPolicy = try c.decode(String.self, forKey: .replayPolicy)
        maxBatch = try c.decodeIfPresent(Int.self, forKey: .maxBatch)
        inactiveThreshold = try c.decodeIfPresent(Int64.self, forKey: .inactiveThreshold)
    }
}

extension NATSClient {
    /// Creates a durable consumer, or updates it when it exists with another (updatable) config.
    public func createConsumer(stream: String, config: ConsumerConfig) async throws -> ConsumerInfo {
        let subject = "$JS.API.CONSUMER.CREATE.\(stream).\(config.durableName)"
        let body = try JSONEncoder().encode(ConsumerCreateRequest(streamName: stream, config: config))
        let reply = try await request(subject: subject, payload: Array(body))
        return try JetStreamAPI.decode(ConsumerInfo.self, from: reply, what: "consumer create", subject: subject)
    }

    /// A consumer's state, or nil if it does not exist.
    public func consumerInfo(stream: String, name: String) async throws -> ConsumerInfo? {
        let subject = "$JS.API.CONSUMER.INFO.\(stream).\(name)"
        do {
            return try JetStreamAPI.decode(
                ConsumerInfo.self, from: try await request(subject: subject, payload: []), what: "consumer info", subject: subject)
        } catch let error as JetStreamError {
            if case .api(404, _) = error.kind { return nil }
            throw error
        }
    }

    /// The names of every consumer of a stream (the server pages them; all pages are read).
    public func consumerNames(stream: String) async throws -> [String] {
        struct Page: Decodable {
            var total: Int
            var consumers: [String]?
        }
        let subject = "$JS.API.CONSUMER.NAMES.\(stream)"
        var names: [String] = []
        while true {
            let reply = try await request(subject: subject, payload: JetStreamAPI.encode(JetStreamAPI.OffsetRequest(offset: names.count)))
            let page = try JetStreamAPI.decode(Page.self, from: reply, what: "consumer names", subject: subject)
            let consumers = page.consumers ?? []
            names += consumers
            if consumers.isEmpty || names.count >= page.total { return names }
        }
    }

    /// Deletes a consumer; true if it existed.
    @discardableResult
    public func deleteConsumer(stream: String, name: String) async throws -> Bool {
        let subject = "$JS.API.CONSUMER.DELETE.\(stream).\(name)"
        do {
            _ = try JetStreamAPI.decode(
                PurgeResponseOrSuccess.self, from: try await request(subject: subject, payload: []), what: "consumer delete")
            return true
        } catch let error as JetStreamError {
            if case .api(404, _) = error.kind { return false }
            throw error
        }
    }

    /// Binds to an existing durable pull consumer.
    public func bindPullConsumer(stream: String, name: String) async throws -> PullConsumer {
        let subscription = try await threadPool.runIfActive { [self] in
            var options = jsSubOptions()
            jsSubOptions_Init(&options)
            var subscription: OpaquePointer?
            var errorCode = jsErrCode(0)
            let status = stream.withCString { streamPointer in
                name.withCString { namePointer in
                    options.Stream = streamPointer
                    options.Consumer = namePointer
                    return js_PullSubscribe(&subscription, self.jetStream, nil, namePointer, nil, &options, &errorCode)
                }
            }
            guard status == NATS_OK, let subscription else {
                throw JetStreamError(
                    .unavailable, "cannot bind consumer \(name): \(statusText(status)) (\(errorCode.rawValue))")
            }
            return OpaquePointerBox(subscription)
        }.pointer
        return PullConsumer(client: self, subscription: subscription, name: name)
    }
}

struct ConsumerCreateRequest: Encodable {
    var streamName: String
    var config: ConsumerConfig

    enum CodingKeys: String, CodingKey {
        case streamName = "stream_name"
        case config
    }
}

/// One delivered message.
public struct DeliveredMessage: Sendable, Equatable {
    public var subject: String
    public var streamSequence: UInt64
    public var payload: [UInt8]

    public init(subject: String, streamSequence: UInt64, payload: [UInt8]) {
        self.subject = subject
        self.streamSequence = streamSequence
        self.payload = payload
    }
}

/// A durable pull consumer bound by this client.
public final class PullConsumer: @unchecked Sendable {
    let client: NATSClient
    let subscription: OpaquePointer
    public let name: String
    private let closed = OnceFlag()

    init(client: NATSClient, subscription: OpaquePointer, name: String) {
        self.client = client
        self.subscription = subscription
        self.name = name
    }

    /// Fetches up to `batch` messages, waiting at most `timeout` when none are available.
    /// An empty batch means idle, not an error.
    public func fetch(batch: Int, timeout: Duration) async throws -> FetchedBatch {
        let milliseconds = timeout.cnatsMilliseconds
        return try await client.threadPool.runIfActive { [self] in
            var list = natsMsgList()
            var errorCode = jsErrCode(0)
            let status = natsSubscription_Fetch(&list, subscription, Int32(batch), milliseconds, &errorCode)
            switch status {
            case NATS_OK:
                return FetchedBatch(list: list)
            case NATS_TIMEOUT:
                natsMsgList_Destroy(&list)
                return FetchedBatch(list: natsMsgList())
            default:
                natsMsgList_Destroy(&list)
                throw JetStreamError(.unavailable, "fetch failed: \(statusText(status)) (\(errorCode.rawValue))")
            }
        }
    }

    /// Stops using the consumer (the durable stays on the server).
    public func close() {
        guard closed.setOnce() else { return }
        natsSubscription_Destroy(subscription)
    }

    deinit { close() }
}

/// Messages of one fetch, copied out of cnats.
///
/// Only the last cnats message is kept (its synchronous ack acknowledges the batch); the others
/// are freed at once and only their reply subjects kept, enough to hand a message back or
/// mark it in progress. A cnats message holds its subject, reply and payload again: keeping
/// them all doubled a batch's memory.
///
/// Sendable by construction: everything is immutable but the acknowledgement, which sits behind
/// a lock and is taken out at most once (`detachAcknowledgement`), so two tasks can never both
/// send or free it.
public final class FetchedBatch: Sendable {
    public let messages: [DeliveredMessage]
    /// Every message's reply (ack) subject, NUL-terminated, one after the other.
    private let replySubjects: [CChar]
    /// Where each message's reply subject starts in `replySubjects`.
    private let replyStarts: [Int]
    /// The acknowledgement (the last message), until it is detached.
    private let acknowledgement: Mutex<BatchAcknowledgement?>

    init(list: natsMsgList) {
        var list = list
        var messages: [DeliveredMessage] = []
        var replySubjects: [CChar] = []
        var replyStarts: [Int] = []
        messages.reserveCapacity(Int(list.Count))
        replyStarts.reserveCapacity(Int(list.Count))
        replySubjects.reserveCapacity(Int(list.Count) * 80)
        for i in 0..<Int(list.Count) {
            guard let message = list.Msgs[i] else { continue }
            var sequence: UInt64 = 0
            let reply = natsMsg_GetReply(message)
            if let reply, let parsed = Self.streamSequence(ackSubject: reply) {
                sequence = parsed
            } else {
                var metadata: UnsafeMutablePointer<jsMsgMetaData>?
                if natsMsg_GetMetaData(&metadata, message) == NATS_OK, let metadata {
                    sequence = metadata.pointee.Sequence.Stream
                    jsMsgMetaData_Destroy(metadata)
                }
            }
            replyStarts.append(replySubjects.count)
            if let reply { replySubjects.append(contentsOf: UnsafeBufferPointer(start: reply, count: strlen(reply))) }
            replySubjects.append(0)
            let payload = payloadBytes(of: message)
            messages.append(
                DeliveredMessage(subject: String(cString: natsMsg_GetSubject(message)), streamSequence: sequence, payload: payload))
        }
        var acknowledgement: BatchAcknowledgement?
        if list.Count > 0, let last = list.Msgs[Int(list.Count) - 1] {
            acknowledgement = BatchAcknowledgement(message: last)
            list.Msgs[Int(list.Count) - 1] = nil
        }
        natsMsgList_Destroy(&list)
        self.acknowledgement = Mutex(acknowledgement)
        self.messages = messages
        self.replySubjects = replySubjects
        self.replyStarts = replyStarts
    }

    /// The stream sequence in a JetStream ack subject, read in place (cnats's metadata parser
    /// allocates and frees three strings a message): `$JS.ACK.<stream>.<consumer>.<delivered>.
    /// <stream seq>...` (9 tokens), or with a domain and an account hash after `ACK` (11 or 12
    /// tokens). Nil for anything else.
    static func streamSequence(ackSubject: UnsafePointer<CChar>) -> UInt64? {
        let length = strlen(ackSubject)
        return ackSubject.withMemoryRebound(to: UInt8.self, capacity: length) { pointer in
            streamSequence(ackSubject: UnsafeBufferPointer(start: pointer, count: length))
        }
    }

    static func streamSequence(ackSubject bytes: UnsafeBufferPointer<UInt8>) -> UInt64? {
        guard bytes.starts(with: "$JS.ACK.".utf8) else { return nil }
        // One pass: note where the 6th and 8th tokens start and how many tokens there are; the
        // layout (9 tokens, or 11/12 with a domain and an account hash) says which one to read.
        var tokens = 1
        var sixth = 0..<0
        var eighth = 0..<0
        var tokenStart = 0
        for (i, byte) in bytes.enumerated() where byte == UInt8(ascii: ".") {
            if tokens == 6 { sixth = tokenStart..<i }
            if tokens == 8 { eighth = tokenStart..<i }
            tokens &+= 1
            tokenStart = i &+ 1
        }
        let digits: Range<Int>
        switch tokens {
        case 9: digits = sixth
        case 11, 12: digits = eighth
        default: return nil
        }
        guard !digits.isEmpty, digits.count <= 19 else { return nil }
        var value: UInt64 = 0
        for i in digits {
            let byte = bytes[i]
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value &* 10 &+ UInt64(byte &- UInt8(ascii: "0"))
        }
        return value
    }

    /// Acknowledges the whole batch (ack policy `all`: the last message covers the earlier ones)
    /// and waits for the server to confirm, so it is a checkpoint.
    public func acknowledgeAll(using client: NATSClient) async throws {
        guard let acknowledgement = acknowledgement.withLock({ $0 }) else { return }
        try await acknowledgement.send(using: client)
    }

    /// Hands the batch back: the server redelivers it at once instead of after the ack wait.
    public func negativeAcknowledge(using client: NATSClient) async {
        await replyToEach("-NAK", using: client)
    }

    /// Takes the batch's acknowledgement out of it (its last message, which acknowledges them
    /// all), so the rest of the batch can be freed before the acknowledgement is sent. The batch
    /// can then no longer be acknowledged.
    public func detachAcknowledgement() -> BatchAcknowledgement? {
        acknowledgement.withLock { $0.take() }
    }

    /// Tells the server the batch is still being worked on, so it is not redelivered yet.
    public func markInProgress(using client: NATSClient) async {
        await replyToEach("+WPI", using: client)
    }

    /// Publishes `body` (an acknowledgement kind, as cnats's `natsMsg_Nak` and
    /// `natsMsg_InProgress` do) to every message's reply subject.
    private func replyToEach(_ body: StaticString, using client: NATSClient) async {
        guard !replyStarts.isEmpty else { return }
        try? await client.threadPool.runIfActive { [self] in
            replySubjects.withUnsafeBufferPointer { subjects in
                for start in replyStarts where subjects[start] != 0 {
                    _ = natsConnection_Publish(
                        client.connection, subjects.baseAddress! + start, body.utf8Start, Int32(body.utf8CodeUnitCount))
                }
            }
        }
    }
}

/// The acknowledgement of an applied batch (ack policy `all`: its last message), owning that
/// message until it is freed. Immutable: the message is only read (by cnats, on the thread
/// pool) and freed once, when the last reference goes.
public final class BatchAcknowledgement: @unchecked Sendable {
    private let message: OpaquePointer

    init(message: OpaquePointer) {
        self.message = message
    }

    deinit { natsMsg_Destroy(message) }

    /// Acknowledges the batch and waits for the server to confirm, so it is a checkpoint.
    public func send(using client: NATSClient) async throws {
        try await client.threadPool.runIfActive { [self] in
            var errorCode = jsErrCode(0)
            let status = natsMsg_AckSync(message, nil, &errorCode)
            guard status == NATS_OK else {
                throw JetStreamError(.unavailable, "ack failed: \(statusText(status)) (\(errorCode.rawValue))")
            }
        }
    }
}
