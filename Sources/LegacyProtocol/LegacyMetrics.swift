import Metrics
import Synchronization

/// The legacy port's metrics: `fpindex_legacy_commands_total{command,result}`,
/// `fpindex_legacy_command_duration_seconds{command}` (searches and commits, which wait for
/// the index) and `fpindex_legacy_connections`.
final class LegacyMetrics: Sendable {
    static let commands = ["echo", "search", "insert", "begin", "commit", "rollback", "optimize", "cleanup", "get", "set"]

    private let counters: [String: (ok: Counter, error: Counter)]
    private let durations: [String: Metrics.Timer]
    private let connectionsGauge: Metrics.Gauge
    private let open = Mutex(0)

    init(factory: any MetricsFactory) {
        var counters: [String: (ok: Counter, error: Counter)] = [:]
        for command in Self.commands + ["other"] {
            counters[command] = (
                Counter(label: "fpindex_legacy_commands_total", dimensions: [("command", command), ("result", "ok")], factory: factory),
                Counter(label: "fpindex_legacy_commands_total", dimensions: [("command", command), ("result", "error")], factory: factory)
            )
        }
        self.counters = counters
        durations = Dictionary(
            uniqueKeysWithValues: ["search", "commit"].map {
                (
                    $0,
                    Metrics.Timer(
                        label: "fpindex_legacy_command_duration_seconds", dimensions: [("command", $0)], preferredDisplayUnit: .seconds,
                        factory: factory)
                )
            })
        connectionsGauge = Metrics.Gauge(label: "fpindex_legacy_connections", factory: factory)
    }

    /// Counts one answered line (an empty line counts as `echo`).
    func answered(_ line: ArraySlice<UInt8>, _ reply: LegacyReply, since start: ContinuousClock.Instant) {
        let word = line.split(separator: UInt8(ascii: " "), maxSplits: 1, omittingEmptySubsequences: true).first
        let name = word.map { String(decoding: $0, as: UTF8.self) } ?? "echo"
        let command = counters[name] == nil ? "other" : name
        if case .ok = reply { counters[command]!.ok.increment() } else { counters[command]!.error.increment() }
        if let timer = durations[command] {
            let elapsed = ContinuousClock.now - start
            timer.recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        }
    }

    func connected() { connectionsGauge.record(open.withLock { $0 += 1; return $0 }) }
    func disconnected() { connectionsGauge.record(open.withLock { $0 -= 1; return $0 }) }
}
