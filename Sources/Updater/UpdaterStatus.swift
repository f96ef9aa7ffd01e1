import Foundation
import JetStream
import Metrics
import Synchronization

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

    // Metrics, made once.
    let lagGauge: Metrics.Gauge
    let readyGauge: Metrics.Gauge
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
        readyGauge = Metrics.Gauge(label: "fpindex_updater_ready", factory: factory)
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
        let (lag, ready) = state.withLock { state in
            change(&state)
            let lag = Self.lag(state)
            if state.phase == .replicating {
                if lag <= maxLag { state.caughtUpOnce = true }
                state.ready = state.caughtUpOnce && (state.ready ? lag <= 2 * maxLag : lag <= maxLag)
            } else {
                state.ready = false
            }
            return (lag, state.ready)
        }
        lagGauge.record(Int64(clamping: lag))
        readyGauge.record(ready ? 1 : 0)
    }

    /// `/status` as JSON.
    public func json() -> [UInt8] {
        let object: [String: Any] = state.withLock { state in
            var object: [String: Any] = [
                "phase": state.phase.rawValue, "ready": state.ready, "lag": Self.lag(state), "applied_seq": state.appliedSeq,
                "stream": ["identity": state.streamIdentity ?? NSNull(), "last_seq": state.streamLastSeq] as [String: Any],
                "indexes": state.indexes.mapValues { index -> [String: Any] in
                    ["exists": index.exists, "generation": index.generation ?? NSNull(), "checkpoint": index.checkpoint] as [String: Any]
                },
            ]
            if let consumer = state.consumer {
                object["consumer"] =
                    [
                        "name": consumer.name, "num_pending": consumer.numPending, "num_ack_pending": consumer.numAckPending,
                        "ack_floor": consumer.ackFloor.streamSeq, "delivered": consumer.delivered.streamSeq,
                        "num_redelivered": consumer.numRedelivered,
                    ] as [String: Any]
            }
            if let error = state.lastError { object["last_error"] = error }
            return object
        }
        return Array((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8))
    }
}
