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

    /// Drops the series of a deleted index, as the real fpindex does (its search histogram
    /// lingers there too: upstream's histogram vector cannot remove a series).
    func removed(_ index: String) {
        let labels = [("index", index)]
        for (name, help) in [
            ("searches", "Searches"), ("search_hits", "Searches that found something"),
            ("search_misses", "Searches that found nothing"), ("updates", "Write requests"),
        ] {
            registry.unregisterCounter(registry.makeCounter(descriptor: Self.descriptor(name, unit: "total", help), labels: labels))
        }
        registry.unregisterGauge(registry.makeGauge(descriptor: Self.descriptor("docs", "Live fingerprints"), labels: labels))
        registry.unregisterGauge(registry.makeGauge(descriptor: Self.descriptor("version", "Index version"), labels: labels))
    }

    /// Every metric family the real fpindex declares, with its type. The real one writes each
    /// family's `# TYPE` line even before it has a series (a fresh server, an index never
    /// searched), and clients look for the names (upstream's own e2e test does).
    static let families: [(name: String, type: String)] = [
        ("fpindex_searches_total", "counter"), ("fpindex_search_hits_total", "counter"),
        ("fpindex_search_misses_total", "counter"), ("fpindex_updates_total", "counter"),
        ("fpindex_checkpoints_total", "counter"), ("fpindex_memory_merges_total", "counter"),
        ("fpindex_file_merges_total", "counter"), ("fpindex_search_duration_seconds", "histogram"),
        ("fpindex_scanned_docs_per_hash", "histogram"), ("fpindex_scanned_blocks_per_hash", "histogram"),
        ("fpindex_docs", "gauge"), ("fpindex_version", "gauge"),
    ]

    /// Declares, after the registry's exposition, each real family that has no series yet.
    /// fpindex-dev has no checkpoints, merges or block scans to count: those families stay
    /// declared and empty rather than report made-up zeros.
    static func declareMissingFamilies(in exposition: inout [UInt8]) {
        let text = String(decoding: exposition, as: UTF8.self)
        for family in families where !text.contains("# TYPE \(family.name) ") {
            exposition.append(contentsOf: Array("# TYPE \(family.name) \(family.type)\n".utf8))
        }
    }

    /// The size and version of `index`, set when metrics are read.
    func describe(_ index: String, docs: Int, version: UInt64) {
        let labels = [("index", index)]
        registry.makeGauge(descriptor: Self.descriptor("docs", "Live fingerprints"), labels: labels).set(Double(docs))
        registry.makeGauge(descriptor: Self.descriptor("version", "Index version"), labels: labels).set(Double(version))
    }
}
