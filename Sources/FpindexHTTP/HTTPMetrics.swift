import Metrics
import Synchronization

/// Request counters and latency timers, labelled by route label, method and status only.
public final class HTTPMetrics: Sendable {
    private let prefix: String
    private let factory: any MetricsFactory
    private let counters = Mutex<[String: Counter]>([:])
    private let timers = Mutex<[String: Metrics.Timer]>([:])

    /// - Parameters:
    ///   - prefix: metric name prefix, e.g. `fpindex_dev`.
    ///   - factory: the metrics backend (the executable's Prometheus registry).
    public init(prefix: String, factory: any MetricsFactory) {
        self.prefix = prefix
        self.factory = factory
    }

    public func record(route: String, method: String, status: Int, duration: Duration) {
        let key = "\(route) \(method) \(status)"
        let counter = counters.withLock { cache in
            if let counter = cache[key] { return counter }
            let counter = Counter(
                label: "\(prefix)_http_requests_total",
                dimensions: [("route", route), ("method", method), ("status", String(status))], factory: factory)
            cache[key] = counter
            return counter
        }
        counter.increment()
        let timer = timers.withLock { cache in
            if let timer = cache[route] { return timer }
            let timer = Metrics.Timer(
                label: "\(prefix)_http_request_duration_seconds", dimensions: [("route", route)],
                preferredDisplayUnit: .seconds, factory: factory)
            cache[route] = timer
            return timer
        }
        timer.recordNanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }
}
