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
    private let clusterLag = Mutex<[String: Gauge]>([:])

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

    /// One series per managed cluster (a handful).
    func setLag(_ lag: Int, for key: ObjectKey) {
        let gauge = clusterLag.withLock { gauges in
            if let gauge = gauges[key.description] { return gauge }
            let gauge = Gauge(
                label: "fpindex_controller_cluster_max_lag",
                dimensions: [("namespace", key.namespace), ("name", key.name)], factory: factory)
            gauges[key.description] = gauge
            return gauge
        }
        gauge.record(lag)
    }

    func removeLag(for key: ObjectKey) {
        // A deleted cluster reads 0 rather than keeping its last lag.
        clusterLag.withLock { $0.removeValue(forKey: key.description) }?.record(0)
    }
}
