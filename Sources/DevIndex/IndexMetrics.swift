import Prometheus

/// The metrics the real fpindex serves, under its names and with its `index` label, so that
/// dashboards and alerts written for fpindex read fpindex-dev unchanged (fpindex-dev's own
/// `fpindex_dev_*` metrics stay beside them). Index names are few (one per index a user
/// creates), which keeps the label bounded as upstream's is.
struct IndexMetrics: Sendable {
    let registry: PrometheusCollectorRegistry

    /// Upstream's search histogram buckets (seconds).
    static let searchBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(50), .milliseconds(100), .milliseconds(500),
        .seconds(1), .seconds(5),
    ]

    private static func descriptor(_ name: String, unit: String = "", _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "fpindex", metricName: name, unitName: unit, helpText: help)
    }

    /// One search of `index` that took `duration` and found `results` fingerprints.
    func searched(_ index: String, results: Int, duration: Duration) {
        let labels = [("index", index)]
        registry.makeCounter(descriptor: Self.descriptor("searches", unit: "total", "Searches"), labels: labels).increment()
        if results > 0 {
            registry.makeCounter(descriptor: Self.descriptor("search_hits", unit: "total", "Searches that found something"), labels: labels)
                .increment()
        } else {
            registry.makeCounter(descriptor: Self.descriptor("search_misses", unit: "total", "Searches that found nothing"), labels: labels)
                .increment()
        }
        registry.makeDurationHistogram(
            descriptor: Self.descriptor("search_duration", unit: "seconds", "Search duration"), labels: labels,
            buckets: Self.searchBuckets
        ).record(duration)
    }

    /// One write request (`_update`, single PUT or DELETE) to `index`.
    func updated(_ index: String) {
        registry.makeCounter(descriptor: Self.descriptor("updates", unit: "total", "Write requests"), labels: [("index", index)])
            .increment()
    }

    /// The size and version of `index`, set when metrics are read.
    func describe(_ index: String, docs: Int, version: UInt64) {
        let labels = [("index", index)]
        registry.makeGauge(descriptor: Self.descriptor("docs", "Live fingerprints"), labels: labels).set(Double(docs))
        registry.makeGauge(descriptor: Self.descriptor("version", "Index version"), labels: labels).set(Double(version))
    }
}
