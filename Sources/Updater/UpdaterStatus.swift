import JetStream
import Metrics
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The updater's state for probes, `/status` and metrics; written by the replicator only.
public final class UpdaterStatus: Sendable {
    public enum Phase: String, Sendable {
        case starting
        case synchronizing
        case replicating
        case waitingForConsumer = "waiting-for-consumer"
        case refusingForeignData = "refusing-foreign-data"
        case stopping
    }

    struct State {
        var phase: Phase = .starting
        var streamIdentity: String?
        var streamLastSeq: UInt64 = 0
        var appliedSeq: UInt64 = 0
        var consumer: ConsumerInfo?
        var indexes: [String: ReplicaIndex] = [:]
        var caughtUpOnce = false
        var ready = false
        var lastError: String?
    }

    let state = Mutex(State())
    let maxLag: UInt64
    /// The replicator's NATS connection once it has one: its state is read when scraped.
    let natsClient = Mutex<NATSClient?>(nil)

    // Metrics, made once.
    let lagGauge: Metrics.Gauge
    let maxLagGauge: Metrics.Gauge
    let readyGauge: Metrics.Gauge
    let appliedSequenceGauge: Metrics.Gauge
    let natsConnectedGauge: Metrics.Gauge
    let appliedMessages: Counter
    let appliedBatches: Counter
    let batchDuration: Metrics.Timer
    let skippedPoison: Counter
    let skippedApplied: Counter
    let skippedOrphaned: Counter
    let consumerResets: Counter
    let retries: Counter
    let rebuilds: Counter

    init(maxLag: UInt64, factory: any MetricsFactory) {
        self.maxLag = maxLag
        lagGauge = Metrics.Gauge(label: "fpindex_updater_lag_messages", factory: factory)
        // The readiness threshold beside the lag, so an alert compares each replica with its own.
        maxLagGauge = Metrics.Gauge(label: "fpindex_updater_max_lag_messages", factory: factory)
        maxLagGauge.record(Int64(clamping: maxLag))
        readyGauge = Metrics.Gauge(label: "fpindex_updater_ready", factory: factory)
        appliedSequenceGauge = Metrics.Gauge(label: "fpindex_updater_applied_sequence", factory: factory)
        natsConnectedGauge = Metrics.Gauge(label: "fpindex_updater_nats_connected", factory: factory)
        natsConnectedGauge.record(0)
        appliedMessages = Counter(label: "fpindex_updater_applied_messages_total", factory: factory)
        appliedBatches = Counter(label: "fpindex_updater_applied_batches_total", factory: factory)
        batchDuration = Metrics.Timer(label: "fpindex_updater_batch_duration_seconds", preferredDisplayUnit: .seconds, factory: factory)
        skippedPoison = Counter(label: "fpindex_updater_skipped_messages_total", dimensions: [("reason", "poison")], factory: factory)
        skippedApplied = Counter(
            label: "fpindex_updater_skipped_messages_total", dimensions: [("reason", "already_applied")], factory: factory)
        skippedOrphaned = Counter(
            label: "fpindex_updater_skipped_messages_total", dimensions: [("reason", "deleted_index")], factory: factory)
        consumerResets = Counter(label: "fpindex_updater_consumer_resets_total", factory: factory)
        retries = Counter(label: "fpindex_updater_retries_total", factory: factory)
        rebuilds = Counter(label: "fpindex_updater_index_rebuilds_total", factory: factory)
    }

    public var isReady: Bool { state.withLock { $0.ready } }
    public var phase: Phase { state.withLock { $0.phase } }

    func set(phase: Phase) {
        state.withLock { state in
            state.phase = phase
            if phase != .replicating { state.ready = false }
        }
        readyGauge.record(isReady ? 1 : 0)
    }

    /// Lag as JetStream counts it (pending + unacknowledged), else as the stream and the applied sequence say.
    static func lag(_ state: State) -> UInt64 {
        if let consumer = state.consumer { return consumer.lag }
        return state.streamLastSeq > state.appliedSeq ? state.streamLastSeq - state.appliedSeq : 0
    }

    /// Recomputes readiness: ready once caught up, not ready again only above twice the threshold.
    func update(_ change: (inout State) -> Void) {
        let (lag, ready, applied) = state.withLock { state in
            change(&state)
            let lag = Self.lag(state)
            if state.phase == .replicating {
                if lag <= maxLag { state.caughtUpOnce = true }
                state.ready = state.caughtUpOnce && (state.ready ? lag <= 2 * maxLag : lag <= maxLag)
            } else {
                state.ready = false
            }
            return (lag, state.ready, state.appliedSeq)
        }
        lagGauge.record(Int64(clamping: lag))
        appliedSequenceGauge.record(Int64(clamping: applied))
        readyGauge.record(ready ? 1 : 0)
    }

    /// The connection whose state `fpindex_updater_nats_connected` reports (nil: none).
    func attach(_ client: NATSClient?) {
        natsClient.withLock { $0 = client }
    }

    /// Called when `/_metrics` is scraped: the connection's state now, not at its last event
    /// (0 until the first connection, so an updater that never reached NATS shows it too).
    func recordConnectionState() {
        let connected = natsClient.withLock { $0?.state == .connected }
        natsConnectedGauge.record(connected ? 1 : 0)
    }

    /// `/status` as JSON.
    public func json() -> [UInt8] {
        let report = state.withLock { state in
            StatusReport(
                phase: state.phase.rawValue, ready: state.ready, lag: Self.lag(state), appliedSeq: state.appliedSeq,
                stream: .init(identity: state.streamIdentity, lastSeq: state.streamLastSeq),
                indexes: state.indexes.mapValues { .init(exists: $0.exists, generation: $0.generation, checkpoint: $0.checkpoint) },
                consumer: state.consumer.map {
                    .init(
                        name: $0.name, numPending: $0.numPending, numAckPending: $0.numAckPending, ackFloor: $0.ackFloor.streamSeq,
                        delivered: $0.delivered.streamSeq, numRedelivered: $0.numRedelivered)
                },
                lastError: state.lastError)
        }
        let encoder = JSONEncoder()
        // Keys are spelled out (not converted to snake case): that would rename indexes too.
        encoder.outputFormatting = .sortedKeys
        return Array((try? encoder.encode(report)) ?? Data("{}".utf8))
    }
}

/// The body of `/status`.
struct StatusReport: Encodable {
    struct Stream: Encodable {
        var identity: String?
        var lastSeq: UInt64

        enum CodingKeys: String, CodingKey {
            case identity
            case lastSeq = "last_seq"
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(identity, forKey: .identity)  // null until known
            try container.encode(lastSeq, forKey: .lastSeq)
        }
    }

    struct Index: Encodable {
        var exists: Bool
        var generation: UInt64?
        var checkpoint: UInt64

        enum CodingKeys: CodingKey { case exists, generation, checkpoint }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(exists, forKey: .exists)
            try container.encode(generation, forKey: .generation)  // null when unknown
            try container.encode(checkpoint, forKey: .checkpoint)
        }
    }

    struct Consumer: Encodable {
        var name: String
        var numPending: UInt64
        var numAckPending: UInt64
        var ackFloor: UInt64
        var delivered: UInt64
        var numRedelivered: UInt64

        enum CodingKeys: String, CodingKey {
            case name
            case numPending = "num_pending"
            case numAckPending = "num_ack_pending"
            case ackFloor = "ack_floor"
            case delivered
            case numRedelivered = "num_redelivered"
        }
    }

    var phase: String
    var ready: Bool
    var lag: UInt64
    var appliedSeq: UInt64
    var stream: Stream
    var indexes: [String: Index]
    var consumer: Consumer?
    var lastError: String?

    enum CodingKeys: String, CodingKey {
        case phase, ready, lag, stream, indexes, consumer
        case appliedSeq = "applied_seq"
        case lastError = "last_error"
    }
}
