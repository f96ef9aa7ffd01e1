import FpindexAPI
import JetStream

/// The durable consumer a replica's updater reads the stream through. The controller creates it
/// (a standalone updater with `--create-consumer` does too) and repairs it when it drifts; the
/// updater recreates it from its resume point. Its shape is defined here only, so the two can
/// never disagree about it.
public enum ReplicaConsumer {
    /// Batches an updater holds delivered but unacknowledged: one applied whose acknowledgement
    /// is on its way, one being applied, one fetched ahead, plus one of slack. `max_ack_pending`
    /// must leave room for them, or fetches come back short.
    public static let pipelineDepth = 4
    /// How long a delivered batch may stay unacknowledged before JetStream redelivers it (an
    /// updater retrying an unavailable fpindex marks its batch in progress meanwhile).
    public static let ackWait: Duration = .seconds(60)

    /// The consumer of replica `name` over every subject under `subjectPrefix`, fetching
    /// `batch` messages at a time, delivering from `startSequence` (from the start when nil).
    public static func config(name: String, subjectPrefix: String, batch: Int, startSequence: UInt64? = nil) -> ConsumerConfig {
        ConsumerConfig(
            durableName: name, description: "fpindex-cluster replica consumer",
            filterSubject: StreamSubjects(prefix: subjectPrefix).all, startSequence: startSequence,
            // Acknowledging a batch's last message acknowledges the whole batch: one ack per batch.
            ackPolicy: "all", ackWait: ackWait,
            // The server's default (1000) is below one default batch.
            maxAckPending: max(batch * pipelineDepth, 1000),
            // Never give up on a message: a replica that skipped one would silently diverge.
            maxDeliver: -1)
    }

    /// Fields of an existing consumer that differ from `wanted`: `updatable` ones can be
    /// changed in place; `immutable` ones (JetStream refuses to change them) need a new consumer.
    public static func drift(_ existing: ConsumerConfig, wanted: ConsumerConfig) -> (updatable: [String], immutable: [String]) {
        var updatable: [String] = []
        var immutable: [String] = []
        if existing.filterSubject != wanted.filterSubject { immutable.append("filter_subject") }
        if existing.ackPolicy != wanted.ackPolicy { immutable.append("ack_policy") }
        if existing.maxAckPending < wanted.maxAckPending { updatable.append("max_ack_pending") }
        if existing.ackWait != wanted.ackWait { updatable.append("ack_wait") }
        if existing.maxDeliver != wanted.maxDeliver { updatable.append("max_deliver") }
        return (updatable, immutable)
    }

    /// `existing` with its updatable fields set as `wanted` has them: what an in-place update sends.
    public static func repaired(_ existing: ConsumerConfig, wanted: ConsumerConfig) -> ConsumerConfig {
        var config = existing
        config.maxAckPending = wanted.maxAckPending
        config.ackWait = wanted.ackWait
        config.maxDeliver = wanted.maxDeliver
        return config
    }
}
