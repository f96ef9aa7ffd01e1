import FpindexAPI
import JetStream
import Metrics
import Synchronization

/// Every data message the proxy publishes is fenced: it carries the sequence its subject's last
/// message had when the proxy sent it (`Nats-Expected-Last-Subject-Sequence`, 0 for none), and
/// the stream refuses it if that is no longer so.
///
/// Why: a publish whose acknowledgement does not come in time is answered 503, but the
/// message may still be stored later, long after (held by the NATS client through a reconnect,
/// or in the socket of a node that was paused). The client sends the write again, through
/// another proxy, gets 200, writes newer values; then the held message arrives. With one
/// message kept per subject, an unfenced late message would replace the newer acknowledged one
/// on every replica. Fenced, it is refused: its subject has moved on.
///
/// The proxy does not read before it writes. It remembers the last sequence it saw per
/// subject (`LastSequenceHints`), and takes 0 for a subject it does not know (new ids, the
/// common case). A wrong guess is refused with the subject's actual last sequence in the
/// error, and that message alone is sent again with it: one more round trip, only then.
enum FencedPublish {
    /// How often one message is sent again after its subject moved between guess and store
    /// (other writers on the same subject): then the write is refused as unavailable.
    static let maxAttempts = 8

    /// A message is sent again only within this time of the request's start. A refusal that
    /// comes later may be that of a message that was held, while the client gave up and wrote
    /// newer values elsewhere: sending it again, fenced with where the subject is now, would
    /// replace them. The write is answered 503 instead (its outcome: not applied).
    static let retryWindow = Duration.seconds(1)

    /// Publishes the messages fenced and waits for every acknowledgement.
    /// - Returns: the highest stream sequence among them.
    /// - Throws: the first failure other than a moved subject; messages acknowledged stay stored.
    static func publish(
        _ messages: [OutgoingMessage], stream: String, hints: LastSequenceHints, metrics: PublishMetrics, client: NATSClient
    ) async throws -> UInt64 {
        guard !messages.isEmpty else { return 0 }
        let start = ContinuousClock.now
        var pending = Array(messages.indices)
        var highest: UInt64 = 0
        do {
            for attempt in 1...maxAttempts {
                let batch = pending.map { index in
                    BatchMessage(
                        subject: messages[index].subject, payload: messages[index].payload,
                        expectedLastSubjectSequence: hints.lastSequence(of: messages[index].subject) ?? 0)
                }
                let results = await client.publishBatch(batch)
                var moved: [Int] = []
                var unknown: [Int] = []
                var failure: JetStreamError?
                for (index, result) in zip(pending, results) {
                    let subject = messages[index].subject
                    switch result {
                    case .success(let ack):
                        highest = max(highest, ack.sequence)
                        hints.record(subject, ack.sequence)
                    case .failure(let error) where error.isWrongLastSequence:
                        moved.append(index)
                        if let actual = error.actualLastSequence { hints.record(subject, actual) } else { unknown.append(index) }
                    case .failure(let error):
                        failure = failure ?? error
                    }
                }
                if let failure { throw failure }
                if moved.isEmpty {
                    metrics.latency.recordInterval(since: start)
                    metrics.messages.increment(by: messages.count)
                    metrics.bytes.increment(by: messages.reduce(0) { $0 + $1.payload.count })
                    return highest
                }
                guard ContinuousClock.now - start < retryWindow, !Task.isCancelled else {
                    throw JetStreamError(
                        .unavailable, "the subject changed under this write, and it is too late to send it again; send it again",
                        subject: messages[moved[0]].subject)
                }
                metrics.fenceRetries.increment(by: moved.count)
                if !unknown.isEmpty {
                    // The subject has another message in process (a clustered stream says so
                    // without a sequence): let it land before asking where the subject is.
                    try await Task.sleep(for: .milliseconds(Int.random(in: 2...20)))
                }
                for index in unknown {
                    let subject = messages[index].subject
                    hints.record(subject, try await client.lastMessage(stream: stream, subject: subject)?.sequence ?? 0)
                }
                guard attempt < maxAttempts else {
                    throw JetStreamError(
                        .unavailable, "the subject changed under this write \(maxAttempts) times (concurrent writers); send it again",
                        subject: messages[moved[0]].subject)
                }
                pending = moved
            }
            preconditionFailure("the attempt loop returns or throws")
        } catch {
            metrics.failures.increment()
            throw error
        }
    }
}

/// The last sequence this proxy saw per subject, from its acknowledgements and refusals: a
/// guess for the next fence, never trusted (the stream checks it). Bounded: two generations
/// of at most `capacity` subjects each; when the current one is full it becomes the previous
/// one and the oldest is dropped, so recently written subjects stay.
final class LastSequenceHints: Sendable {
    private struct Generations {
        var current: [String: UInt64] = [:]
        var previous: [String: UInt64] = [:]
    }

    private let generations = Mutex(Generations())
    let capacity: Int

    init(capacity: Int = 65_536) {
        self.capacity = capacity
    }

    func lastSequence(of subject: String) -> UInt64? {
        generations.withLock { $0.current[subject] ?? $0.previous[subject] }
    }

    func record(_ subject: String, _ sequence: UInt64) {
        generations.withLock { generations in
            if generations.current.count >= capacity, generations.current[subject] == nil {
                generations.previous = generations.current
                generations.current = [:]
                generations.current.reserveCapacity(capacity)
            }
            generations.current[subject] = sequence
        }
    }

    var count: Int { generations.withLock { $0.current.count + $0.previous.count } }
}
