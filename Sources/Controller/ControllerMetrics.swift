import Metrics
import Synchronization

/// The controller's Prometheus metrics (`fpindex_controller_*`), made once with bounded labels.
public final class ControllerMetrics: Sendable {
    let factory: any MetricsFactory
    let reconcileSuccess: Counter
    let reconcileError: Counter
    let reconcileConflict: Counter
    let reconcileDuration: Metrics.Timer
    let queueDepth: Gauge
    let leader: Gauge
    private let watchRestarts = Mutex<[String: Counter]>([:])
    private let clusterGauges = Mutex<[String: Gauge]>([:])

    public init(factory: any MetricsFactory) {
        self.factory = factory
        reconcileSuccess = Counter(
            label: "fpindex_controller_reconciles_total", dimensions: [("result", "success")], factory: factory)
        reconcileError = Counter(
            label: "fpindex_controller_reconciles_total", dimensions: [("result", "error")], factory: factory)
        reconcileConflict = Counter(
            label: "fpindex_controller_reconciles_total", dimensions: [("result", "conflict")], factory: factory)
        reconcileDuration = Metrics.Timer(
            label: "fpindex_controller_reconcile_duration_seconds", preferredDisplayUnit: .seconds, factory: factory)
        queueDepth = Gauge(label: "fpindex_controller_queue_depth", factory: factory)
        leader = Gauge(label: "fpindex_controller_leader", factory: factory)
    }

    /// Resources and reasons are closed sets.
    func watchRestarted(resource: String, reason: String) {
        let key = "\(resource)|\(reason)"
        let counter = watchRestarts.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = Counter(
                label: "fpindex_controller_watch_restarts_total", dimensions: [("resource", resource), ("reason", reason)],
                factory: factory)
            counters[key] = counter
            return counter
        }
        counter.increment()
    }

    /// One series per managed cluster and gauge (a handful of clusters): what the last reconcile
    /// saw. A gauge whose value is unknown has no series, so no alert reads a stale value.
    /// The labels are `cluster_namespace` and `cluster`, not `namespace` and `name`: Prometheus
    /// gives every target of a pod the pod's `namespace`, and would rename the series' own to
    /// `exported_namespace`.
    func record(_ result: ReconcileResult, for key: ObjectKey) {
        let dimensions = [("cluster_namespace", key.namespace), ("cluster", key.name)]
        let values: [(String, Int64?)] = [
            ("fpindex_controller_cluster_max_lag_messages", result.maxLag.map(Int64.init)),
            ("fpindex_controller_cluster_ready", result.ready.map { $0 ? 1 : 0 }),
            ("fpindex_controller_stream_messages", result.stream.map { Int64(clamping: $0.messages) }),
            ("fpindex_controller_stream_bytes", result.stream.map { Int64(clamping: $0.bytes) }),
            ("fpindex_controller_stream_limit_bytes", result.stream?.limitBytes.map { Int64(clamping: $0) }),
        ]
        let (set, removed) = clusterGauges.withLock { gauges in
            var set: [(Gauge, Int64)] = []
            var removed: [Gauge] = []
            for (label, value) in values {
                let gaugeKey = "\(key.description)|\(label)"
                if let value {
                    let gauge = gauges[gaugeKey] ?? Gauge(label: label, dimensions: dimensions, factory: factory)
                    gauges[gaugeKey] = gauge
                    set.append((gauge, value))
                } else if let gauge = gauges.removeValue(forKey: gaugeKey) {
                    removed.append(gauge)
                }
            }
            return (set, removed)
        }
        for (gauge, value) in set { gauge.record(value) }
        for gauge in removed { gauge.destroy() }
    }

    /// A deleted cluster's series go away (rather than reading 0, or Ready 0 forever).
    func remove(_ key: ObjectKey) {
        let prefix = "\(key.description)|"
        let removed = clusterGauges.withLock { gauges in
            let keys = gauges.keys.filter { $0.hasPrefix(prefix) }
            return keys.compactMap { gauges.removeValue(forKey: $0) }
        }
        for gauge in removed { gauge.destroy() }
    }
}
