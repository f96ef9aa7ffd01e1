import Synchronization

/// A read of the last message of every subject matching a filter, in stream order, that ends
/// once it has caught up with the stream: the view bulk tools (verify, backup, import's resume)
/// work from.
///
/// It pulls from a consumer of its own (last per subject, no acknowledgements), so a slow reader
/// (a verify waiting on HTTP) only fetches less often; nothing piles up in memory and nothing is
/// dropped. The consumer is deleted at the end, and by the server after a minute without fetches
/// if this process dies first.
///
/// Messages written while the scan runs are read too when they come before it catches up; a
/// subject whose message is replaced meanwhile is read at least once, at its newer value. The
/// scan is complete for the stream as it was when it started.
public final class StreamScan: Sendable {
    private let client: NATSClient
    private let stream: String
    private let name: String
    private let consumer: PullConsumer?
    private let batch: Int
    private let finished = Mutex(false)
    /// Messages handed to the caller: the server counts what it delivered (`delivered.consumer_seq`),
    /// and the scan ends only when both agree.
    private let returned = Mutex<UInt64>(0)

    init(client: NATSClient, stream: String, name: String, consumer: PullConsumer?, batch: Int) {
        self.client = client
        self.stream = stream
        self.name = name
        self.consumer = consumer
        self.batch = batch
        if consumer == nil { finished.withLock { $0 = true } }
    }

    /// The next messages in stream order; nil once the scan has caught up and every message
    /// was returned.
    public func next() async throws -> [StoredMessage]? {
        guard let consumer, !finished.withLock({ $0 }) else { return nil }
        var emptyWhileBehind = 0
        while true {
            let fetched = try await consumer.fetch(batch: batch, timeout: .milliseconds(250))
            if !fetched.messages.isEmpty {
                returned.withLock { $0 += UInt64(fetched.messages.count) }
                return fetched.messages.map { StoredMessage(subject: $0.subject, sequence: $0.streamSequence, payload: $0.payload) }
            }
            // An empty fetch may only mean a slow server: the consumer says whether anything is left.
            guard let info = try await client.consumerInfo(stream: stream, name: name) else {
                await cancel()
                throw JetStreamError(
                    .unavailable, "the scan's consumer \(name) on stream \(stream) disappeared before the scan ended; run it again")
            }
            if info.numPending > 0 { continue }
            // Delivered but not read here: a fetch gave up just before they came. They wait in the
            // subscription and the next fetch returns them; ending now would leave them out.
            let read = returned.withLock { $0 }
            if info.delivered.consumerSeq > read {
                emptyWhileBehind += 1
                guard emptyWhileBehind < 40 else {
                    await cancel()
                    throw JetStreamError(
                        .unavailable,
                        "the scan of stream \(stream) did not receive \(info.delivered.consumerSeq - read) messages the server delivered; run it again"
                    )
                }
                continue
            }
            await cancel()
            return nil
        }
    }

    /// Messages the scan has yet to return, as the server counts them now: right after the start,
    /// the number of subjects the filter matches.
    public func remaining() async throws -> UInt64 {
        guard consumer != nil, !finished.withLock({ $0 }) else { return 0 }
        guard let info = try await client.consumerInfo(stream: stream, name: name) else {
            throw JetStreamError(.unavailable, "the scan's consumer \(name) on stream \(stream) disappeared")
        }
        let read = returned.withLock { $0 }
        return info.numPending + (info.delivered.consumerSeq > read ? info.delivered.consumerSeq - read : 0)
    }

    /// Ends the scan and deletes its consumer. Idempotent.
    public func cancel() async {
        guard let consumer,
            !finished.withLock({ state in
                defer { state = true }; return state
            })
        else { return }
        consumer.close()
        _ = try? await client.deleteConsumer(stream: stream, name: name)
    }
}

extension NATSClient {
    /// Starts a scan of the last message of each subject matching `filter` (see `StreamScan`).
    /// Needs the right to create and delete consumers on the stream.
    /// - Parameter batch: messages per fetch.
    public func scanLastPerSubject(stream: String, filter: String, batch: Int = 1000) async throws -> StreamScan {
        let name = "fpindex-scan-" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        // A consumer over nothing would only time out; a scan of nothing is done at once.
        guard try await firstMessage(stream: stream, filter: filter, atOrAfter: 1) != nil else {
            return StreamScan(client: self, stream: stream, name: name, consumer: nil, batch: batch)
        }
        var config = ConsumerConfig(
            durableName: name, description: "fpindex-cluster scan of \(filter)", filterSubject: filter, ackPolicy: "none",
            ackWait: .seconds(30), maxAckPending: -1)
        config.deliverPolicy = "last_per_subject"
        config.inactiveThreshold = 60_000_000_000
        _ = try await createConsumer(stream: stream, config: config)
        do {
            let consumer = try await bindPullConsumer(stream: stream, name: name)
            return StreamScan(client: self, stream: stream, name: name, consumer: consumer, batch: batch)
        } catch {
            _ = try? await deleteConsumer(stream: stream, name: name)
            throw error
        }
    }
}

extension NATSClient {
    /// Runs `body` with a scan (see `scanLastPerSubject`), whose consumer is deleted afterwards
    /// whether `body` finished, stopped early or threw.
    public func withStreamScan<T>(stream: String, filter: String, _ body: (StreamScan) async throws -> T) async throws -> T {
        let scan = try await scanLastPerSubject(stream: stream, filter: filter)
        do {
            let result = try await body(scan)
            await scan.cancel()
            return result
        } catch {
            await scan.cancel()
            throw error
        }
    }
}
