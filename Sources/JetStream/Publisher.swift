import CNats
import NIOPosix
import Synchronization

/// The acknowledgement of a message stored by JetStream.
public struct PublishAck: Sendable, Equatable {
    /// The stream sequence the message got.
    public var sequence: UInt64
    /// True when the server dropped it as a duplicate of an earlier `Nats-Msg-Id`.
    public var duplicate: Bool
}

/// Options of one publish.
public struct PublishOptions: Sendable {
    /// De-duplication id (`Nats-Msg-Id`).
    public var messageId: String?
    /// Refuse the publish unless the last message on this subject (or, with
    /// `expectedLastSubjectSequenceSubject`, on that filter) has this sequence.
    public var expectedLastSubjectSequence: UInt64?
    /// The subject filter the expected sequence applies to (server 2.11+:
    /// `Nats-Expected-Last-Subject-Sequence-Subject`).
    public var expectedLastSubjectSequenceSubject: String?

    public init(messageId: String? = nil, expectedLastSubjectSequence: UInt64? = nil, expectedLastSubjectSequenceSubject: String? = nil) {
        self.messageId = messageId
        self.expectedLastSubjectSequence = expectedLastSubjectSequence
        self.expectedLastSubjectSequenceSubject = expectedLastSubjectSequenceSubject
    }
}

/// Publishes waiting for their acknowledgement, keyed by the identity of their cnats message,
/// and the window that bounds how many there are.
final class PublishTracker: Sendable {
    /// Who waits for an acknowledgement: one publish, or a batch (which gives its window place back on acknowledgement).
    enum Waiter {
        case single(CheckedContinuation<PublishAck, any Error>)
        case batch(PublishBatch, index: Int)
    }

    private struct State {
        var pending: [UInt: Waiter] = [:]
        var inFlight = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    var inFlight: Int { state.withLock { $0.inFlight } }

    /// Takes a place in the window, waiting (without blocking a thread) while it is full.
    func acquire(window: Int) async {
        let acquired = state.withLock { state -> Bool in
            guard state.inFlight < window else { return false }
            state.inFlight += 1
            return true
        }
        if acquired { return }
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool in
                if state.inFlight < window {
                    state.inFlight += 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// Gives a place back; a waiter, if any, takes it over directly.
    func release() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if !state.waiters.isEmpty { return state.waiters.removeFirst() }
            state.inFlight -= 1
            return nil
        }
        waiter?.resume()
    }

    func register(_ message: OpaquePointer, _ waiter: Waiter) {
        state.withLock { $0.pending[UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(message)))] = waiter }
    }

    func complete(_ message: OpaquePointer, with result: Result<PublishAck, JetStreamError>) {
        let key = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(message)))
        let waiter = state.withLock { $0.pending.removeValue(forKey: key) }
        resume(waiter, with: result)
    }

    private func resume(_ waiter: Waiter?, with result: Result<PublishAck, JetStreamError>) {
        switch waiter {
        case .single(let continuation):
            continuation.resume(with: result.mapError { $0 })
        case .batch(let batch, let index):
            release()
            batch.record(result, at: index)
        case nil:
            break
        }
    }

    func failAll(_ error: JetStreamError) {
        let all = state.withLock { state in
            defer { state.pending = [:] }
            return Array(state.pending.values)
        }
        for waiter in all { resume(waiter, with: .failure(error)) }
    }
}

/// cnats' acknowledgement callback (a cnats thread): resume the waiting publish, free the message.
func publishAcknowledged(
    _ js: OpaquePointer?, _ message: OpaquePointer?, _ ack: UnsafeMutablePointer<jsPubAck>?, _ failure: UnsafeMutablePointer<jsPubAckErr>?,
    _ closure: UnsafeMutableRawPointer?
) {
    guard let message, let closure else { return }
    let tracker = Unmanaged<PublishTracker>.fromOpaque(closure).takeUnretainedValue()
    if let ack {
        tracker.complete(message, with: .success(PublishAck(sequence: ack.pointee.Sequence, duplicate: ack.pointee.Duplicate)))
    } else {
        // Only failures name their subject: a String per acknowledgement is measurable at 50k/s.
        let subject = natsMsg_GetSubject(message).map { String(cString: $0) }
        let error: JetStreamError
        if let failure {
            let text = failure.pointee.ErrText.map { String(cString: $0) } ?? String(cString: natsStatus_GetText(failure.pointee.Err))
            let code = Int(failure.pointee.ErrCode.rawValue)
            if failure.pointee.Err == NATS_TIMEOUT {
                error = JetStreamError(.timeout, "no acknowledgement from the stream in time", subject: subject)
            } else if code != 0 {
                var refused = JetStreamError(.publishRejected(errorCode: code), "publish refused: \(text)", subject: subject)
                if code == JetStreamError.wrongLastSequenceCode { refused.actualLastSequence = JetStreamError.lastSequence(in: text) }
                error = refused
            } else {
                error = JetStreamError(.unavailable, "publish failed: \(text)", subject: subject)
            }
        } else {
            error = JetStreamError(.unavailable, "publish failed", subject: subject)
        }
        tracker.complete(message, with: .failure(error))
    }
    var owned: OpaquePointer? = message
    natsMsg_Destroy(owned)
    owned = nil
}

extension NATSClient {
    /// A new cnats message holding a copy of `payload`.
    private func makeMessage(subject: String, payload: [UInt8]) throws -> OpaquePointer {
        var message: OpaquePointer?
        let created = payload.withUnsafeBytes { bytes in
            natsMsg_Create(&message, subject, nil, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(bytes.count))
        }
        guard created == NATS_OK, let message else {
            throw JetStreamError(.configuration, "cannot create a message: \(statusText(created))", subject: subject)
        }
        return message
    }

    /// Hands a registered message to cnats; if cnats does not take it, no acknowledgement will
    /// come, so the waiter is failed here.
    private func send(_ message: OpaquePointer, subject: String, options: inout jsPubOptions) {
        var owned: OpaquePointer? = message
        let status = state == .closed ? NATS_CONNECTION_CLOSED : js_PublishMsgAsync(jetStream, &owned, &options)
        guard status != NATS_OK else { return }
        natsMsg_Destroy(owned)
        let kind: JetStreamError.Kind = status == NATS_TIMEOUT ? .timeout : .unavailable
        publishes.complete(message, with: .failure(JetStreamError(kind, "publish failed: \(statusText(status))", subject: subject)))
    }

    private func publishOptions() -> jsPubOptions {
        var options = jsPubOptions()
        jsPubOptions_Init(&options)
        options.MaxWait = configuration.publishTimeout.cnatsMilliseconds
        return options
    }

    /// Publishes one message to JetStream and waits for the stream's acknowledgement.
    ///
    /// Many publishes may be in flight at once (up to `publishWindow`); each resumes when its
    /// own acknowledgement arrives. Never blocks a thread: a full window is waited for asynchronously.
    /// - Throws: `JetStreamError` (`.timeout`, `.unavailable`, `.publishRejected`).
    public func publish(subject: String, payload: [UInt8], options: PublishOptions = PublishOptions()) async throws -> PublishAck {
        await publishes.acquire(window: configuration.publishWindow)
        defer { publishes.release() }
        guard state != .closed else { throw JetStreamError(.unavailable, "the NATS connection is closed", subject: subject) }
        let message = try makeMessage(subject: subject, payload: payload)
        if let id = options.messageId { natsMsgHeader_Set(message, "Nats-Msg-Id", id) }
        if let filter = options.expectedLastSubjectSequenceSubject {
            natsMsgHeader_Set(message, "Nats-Expected-Last-Subject-Sequence-Subject", filter)
        }
        if let sequence = options.expectedLastSubjectSequence {
            natsMsgHeader_Set(message, "Nats-Expected-Last-Subject-Sequence", String(sequence))
        }
        return try await withCheckedThrowingContinuation { continuation in
            // Registered before the call: the acknowledgement can arrive before it returns.
            publishes.register(message, .single(continuation))
            var options = publishOptions()
            send(message, subject: subject, options: &options)
        }
    }

    /// Publishes many messages and waits once for all their acknowledgements: no task or
    /// continuation per message, so a large `_update` costs little more than cnats itself.
    /// - Returns: each message's outcome, in the order given; messages acknowledged stay
    ///   stored whatever happened to the others.
    public func publishBatch(_ messages: [BatchMessage]) async -> [Result<PublishAck, JetStreamError>] {
        let batch = PublishBatch(total: messages.count)
        var options = publishOptions()
        for (index, outgoing) in messages.enumerated() {
            await publishes.acquire(window: configuration.publishWindow)
            let message: OpaquePointer
            do {
                message = try makeMessage(subject: outgoing.subject, payload: outgoing.payload)
            } catch {
                publishes.release()
                let failure = error as? JetStreamError ?? JetStreamError(.configuration, "\(error)", subject: outgoing.subject)
                batch.record(.failure(failure), at: index)
                continue
            }
            if let sequence = outgoing.expectedLastSubjectSequence {
                natsMsgHeader_Set(message, "Nats-Expected-Last-Subject-Sequence", String(sequence))
            }
            publishes.register(message, .batch(batch, index: index))
            send(message, subject: outgoing.subject, options: &options)
        }
        return await batch.wait()
    }

    /// Publishes currently waiting for their acknowledgement.
    public var publishesInFlight: Int { publishes.inFlight }
}

extension NATSClient {
    /// Publishes with cnats alone (`js_PublishAsync` in a loop, then `js_PublishAsyncComplete`),
    /// on one pool thread: the raw limit benchmarks compare the proxy against.
    /// - Parameter fence: when set, every message carries `Nats-Expected-Last-Subject-Sequence`
    ///   with this value (`js_PublishMsgAsync`): the raw limit of fenced publishing, which includes
    ///   the server's check.
    /// - Returns: how long it took until every message was acknowledged.
    public func publishRawForBenchmark(_ messages: [(subject: String, payload: [UInt8])], fence: UInt64? = nil) async throws -> Duration {
        try await threadPool.runIfActive { [self] in
            let start = ContinuousClock.now
            let fenceText = fence.map { String($0) }
            for message in messages {
                while true {
                    let status = message.payload.withUnsafeBytes { bytes -> natsStatus in
                        guard let fenceText else {
                            return js_PublishAsync(self.jetStream, message.subject, bytes.baseAddress, Int32(bytes.count), nil)
                        }
                        var outgoing: OpaquePointer?
                        let created = natsMsg_Create(
                            &outgoing, message.subject, nil, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(bytes.count))
                        guard created == NATS_OK else { return created }
                        natsMsgHeader_Set(outgoing, "Nats-Expected-Last-Subject-Sequence", fenceText)
                        let status = js_PublishMsgAsync(self.jetStream, &outgoing, nil)
                        natsMsg_Destroy(outgoing)  // nil when cnats took it
                        return status
                    }
                    if status == NATS_OK { break }
                    guard status == NATS_TIMEOUT else {
                        throw JetStreamError(.unavailable, "publish failed: \(statusText(status))")
                    }
                }
            }
            var options = jsPubOptions()
            jsPubOptions_Init(&options)
            options.MaxWait = 60_000
            let status = js_PublishAsyncComplete(self.jetStream, &options)
            guard status == NATS_OK else {
                throw JetStreamError(.timeout, "acknowledgements did not all arrive: \(statusText(status))")
            }
            return ContinuousClock.now - start
        }
    }
}

/// One message of a `publishBatch`.
public struct BatchMessage: Sendable {
    public var subject: String
    public var payload: [UInt8]
    /// Refuse this message unless its subject's last message has this sequence (0: none).
    public var expectedLastSubjectSequence: UInt64?

    public init(subject: String, payload: [UInt8], expectedLastSubjectSequence: UInt64? = nil) {
        self.subject = subject
        self.payload = payload
        self.expectedLastSubjectSequence = expectedLastSubjectSequence
    }
}

/// The acknowledgements of one batch, awaited together.
final class PublishBatch: Sendable {
    private struct State {
        var remaining: Int
        var results: [Result<PublishAck, JetStreamError>?]
        var continuation: CheckedContinuation<[Result<PublishAck, JetStreamError>], Never>?
    }

    private let state: Mutex<State>

    init(total: Int) {
        state = Mutex(State(remaining: total, results: Array(repeating: nil, count: total)))
    }

    func record(_ result: Result<PublishAck, JetStreamError>, at index: Int) {
        let finished = state.withLock {
            state -> (CheckedContinuation<[Result<PublishAck, JetStreamError>], Never>, [Result<PublishAck, JetStreamError>])? in
            state.remaining -= 1
            state.results[index] = result
            guard state.remaining == 0, let continuation = state.continuation else { return nil }
            state.continuation = nil
            return (continuation, Self.complete(state.results))
        }
        if let (continuation, results) = finished { continuation.resume(returning: results) }
    }

    func wait() async -> [Result<PublishAck, JetStreamError>] {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> [Result<PublishAck, JetStreamError>]? in
                guard state.remaining > 0 else { return Self.complete(state.results) }
                state.continuation = continuation
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    private static func complete(_ results: [Result<PublishAck, JetStreamError>?]) -> [Result<PublishAck, JetStreamError>] {
        results.map { $0 ?? .failure(JetStreamError(.unavailable, "publish outcome missing")) }
    }
}
