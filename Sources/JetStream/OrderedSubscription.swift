import CNats
import NIOPosix
import Synchronization

/// A subscription made by this client (an ordered consumer or a core one). Messages go to its
/// handler on a cnats thread until it is cancelled.
public final class Subscription: @unchecked Sendable {
    private let subscription: OpaquePointer
    /// Keeps the handler alive while cnats may call it.
    private let box: AnyObject
    private let closed = OnceFlag()

    init(subscription: OpaquePointer, box: AnyObject) {
        self.subscription = subscription
        self.box = box
    }

    /// Stops delivery. Idempotent, and never waits for the server.
    ///
    /// An ordered consumer is left to the server, not deleted: cnats's unsubscribe would delete
    /// it with a JetStream request, which needs the right to delete consumers (NATS cannot
    /// narrow that to one ephemeral consumer, so it would reach the replicas' durable ones:
    /// manifests/nats/nats-server-permissions.conf does not give it to the proxy) and which
    /// blocks for the request timeout (5 s) when refused or when the server is away. Destroying
    /// the subscription removes its interest (cnats 3.4+ then leaves the consumer alone), and the
    /// server drops the ephemeral consumer once it has had no subscriber for its inactive
    /// threshold (5 s by default).
    public func cancel() {
        guard closed.setOnce() else { return }
        natsSubscription_Destroy(subscription)
    }

    deinit { cancel() }
}

/// A JetStream ordered consumer's handler: every stored message matching a filter, in stream
/// order, starting with the last one of each subject. cnats recreates the consumer after
/// reconnects and gaps, so the view it feeds stays complete.
public enum OrderedSubscription {
    /// Called on a cnats thread for each message, with how many more are pending right now.
    public typealias Handler = @Sendable (StoredMessage, _ pending: UInt64) -> Void

    final class Box: Sendable {
        let handler: Handler
        init(handler: @escaping Handler) { self.handler = handler }
    }
}

/// A core NATS subscription's handler (nothing stored, nothing acknowledged): progress notices and the like.
public enum CoreSubscription {
    /// Called on a cnats thread with each message's subject and payload.
    public typealias Handler = @Sendable (_ subject: String, _ payload: [UInt8]) -> Void

    final class Box: Sendable {
        let handler: Handler
        init(handler: @escaping Handler) { self.handler = handler }
    }
}

private func orderedMessageArrived(
    _ connection: OpaquePointer?, _ subscription: OpaquePointer?, _ message: OpaquePointer?, _ closure: UnsafeMutableRawPointer?
) {
    guard let message, let closure else { return }
    defer { natsMsg_Destroy(message) }
    let box = Unmanaged<OrderedSubscription.Box>.fromOpaque(closure).takeUnretainedValue()
    var metadata: UnsafeMutablePointer<jsMsgMetaData>?
    guard natsMsg_GetMetaData(&metadata, message) == NATS_OK, let metadata else { return }
    defer { jsMsgMetaData_Destroy(metadata) }
    let subject = String(cString: natsMsg_GetSubject(message))
    let payload = payloadBytes(of: message)
    box.handler(StoredMessage(subject: subject, sequence: metadata.pointee.Sequence.Stream, payload: payload), metadata.pointee.NumPending)
}

extension NATSClient {
    /// Starts an ordered consumer on `filter` that first delivers the last message of each
    /// matching subject, then every new one.
    public func subscribeOrdered(stream: String, filter: String, handler: @escaping OrderedSubscription.Handler) async throws
        -> Subscription
    {
        let box = OrderedSubscription.Box(handler: handler)
        let subscription: OpaquePointer = try await threadPool.runIfActive { [self] in
            let closure = Unmanaged.passUnretained(box).toOpaque()
            var options = jsSubOptions()
            jsSubOptions_Init(&options)
            options.Ordered = true
            options.Config.DeliverPolicy = js_DeliverLastPerSubject
            var subscription: OpaquePointer?
            var errorCode = jsErrCode(0)
            let status = stream.withCString { streamPointer -> natsStatus in
                options.Stream = streamPointer
                return js_Subscribe(&subscription, self.jetStream, filter, orderedMessageArrived, closure, nil, &options, &errorCode)
            }
            guard status == NATS_OK, let subscription else {
                throw JetStreamError(
                    .unavailable, "cannot subscribe: \(statusText(status)) (\(errorCode.rawValue))",
                    subject: filter)
            }
            return OpaquePointerBox(subscription)
        }.pointer
        return Subscription(subscription: subscription, box: box)
    }
}

struct OpaquePointerBox: @unchecked Sendable {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
}

private func coreMessageArrived(
    _ connection: OpaquePointer?, _ subscription: OpaquePointer?, _ message: OpaquePointer?, _ closure: UnsafeMutableRawPointer?
) {
    guard let message, let closure else { return }
    defer { natsMsg_Destroy(message) }
    let box = Unmanaged<CoreSubscription.Box>.fromOpaque(closure).takeUnretainedValue()
    box.handler(String(cString: natsMsg_GetSubject(message)), payloadBytes(of: message))
}

extension NATSClient {
    /// Subscribes to core NATS messages on `subject` (wildcards allowed).
    public func subscribe(subject: String, handler: @escaping CoreSubscription.Handler) async throws -> Subscription {
        let box = CoreSubscription.Box(handler: handler)
        let subscription: OpaquePointer = try await threadPool.runIfActive { [self] in
            var subscription: OpaquePointer?
            let status = natsConnection_Subscribe(
                &subscription, self.connection, subject, coreMessageArrived, Unmanaged.passUnretained(box).toOpaque())
            guard status == NATS_OK, let subscription else {
                throw JetStreamError(.unavailable, "cannot subscribe: \(statusText(status))", subject: subject)
            }
            return OpaquePointerBox(subscription)
        }.pointer
        return Subscription(subscription: subscription, box: box)
    }
}
