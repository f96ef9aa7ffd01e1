#if canImport(Glibc)
    import Glibc
#endif

/// Progress of a long run on standard error: on a terminal one line rewritten in place (done,
/// rate, ETA), otherwise a plain line every few seconds, which logs keep readable.
public final class ProgressReporter: @unchecked Sendable {
    private let label: String
    private let unit: String
    private let isTerminal: Bool
    private let interval: Duration
    private let started = ContinuousClock.now
    private var lastPrinted: ContinuousClock.Instant
    private let enabled: Bool

    /// - Parameters:
    ///   - enabled: false prints nothing (tests, `--quiet`).
    ///   - plainInterval: how often a line is printed when standard error is not a terminal.
    public init(label: String, unit: String, enabled: Bool = true, plainInterval: Duration = .seconds(5)) {
        self.label = label
        self.unit = unit
        self.enabled = enabled
        isTerminal = isatty(2) == 1
        interval = isTerminal ? .milliseconds(250) : plainInterval
        lastPrinted = started
    }

    /// Reports `done` units so far; `fraction` (0...1) of the whole, when known, gives the ETA.
    /// Prints only when the interval has passed. Called by one task at a time.
    public func update(done: Int, fraction: Double? = nil) {
        guard enabled else { return }
        let now = ContinuousClock.now
        guard now - lastPrinted >= interval else { return }
        lastPrinted = now
        write(line(done: done, fraction: fraction, now: now), final: false)
    }

    /// Prints the last figures and ends the line.
    public func finish(done: Int) {
        guard enabled else { return }
        write(line(done: done, fraction: 1, now: .now), final: true)
    }

    private func line(done: Int, fraction: Double?, now: ContinuousClock.Instant) -> String {
        let elapsed = (now - started).seconds
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        var text = "\(label): \(done) \(unit), \(Int(rate.rounded()))/s, \(Self.clock(elapsed)) elapsed"
        if let fraction, fraction > 0, fraction < 1 {
            text += ", \(Int((fraction * 100).rounded(.down)))%, ETA \(Self.clock(elapsed / fraction - elapsed))"
        }
        return text
    }

    private func write(_ line: String, final: Bool) {
        let text = isTerminal ? "\r\u{1b}[K" + line + (final ? "\n" : "") : line + "\n"
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { _ = Glibc.write(2, $0.baseAddress, $0.count) }
    }

    static func clock(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "?" }
        let total = Int(seconds.rounded())
        let (h, m, s) = (total / 3600, total / 60 % 60, total % 60)
        return h > 0 ? "\(h)h\(m < 10 ? "0" : "")\(m)m" : "\(m)m\(s < 10 ? "0" : "")\(s)s"
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// One JSON object on one line, keys in a fixed order: the last line a tool prints, for scripts.
public struct JSONLine {
    private var fields: [String] = []

    public init() {}

    public mutating func add(_ key: String, _ value: Int) { fields.append("\"\(key)\":\(value)") }
    public mutating func add(_ key: String, _ value: UInt64) { fields.append("\"\(key)\":\(value)") }
    public mutating func add(_ key: String, _ value: Bool) { fields.append("\"\(key)\":\(value)") }
    public mutating func add(_ key: String, _ value: Double) {
        fields.append("\"\(key)\":\(value.isFinite ? String((value * 1000).rounded() / 1000) : "null")")
    }
    public mutating func add(_ key: String, _ values: [UInt32]) {
        fields.append("\"\(key)\":[\(values.map(String.init).joined(separator: ","))]")
    }
    public mutating func add(_ key: String, _ value: String) {
        var escaped = ""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case _ where scalar.value < 0x20:
                escaped +=
                    "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        fields.append("\"\(key)\":\"\(escaped)\"")
    }

    public var text: String { "{" + fields.joined(separator: ",") + "}" }
}

/// A tool's summary, printed as the last line of its output for scripts.
public protocol JSONReport {
    func addFields(to line: inout JSONLine)
}

extension JSONReport {
    /// The summary as one JSON object.
    public var jsonLine: String {
        var line = JSONLine()
        addFields(to: &line)
        return line.text
    }
}

extension ImportSummary: JSONReport {
    public func addFields(to line: inout JSONLine) {
        line.add("rows", rows)
        line.add("published", published)
        line.add("unchanged", unchanged)
        line.add("kept_existing", keptExisting)
        line.add("superseded", superseded)
        line.add("kept_after_matching_row", keptAfterMatchingRow)
        line.add("nothing_to_delete", nothingToDelete)
        line.add("bad_rows", badRows)
        line.add("resumed_past", resumedPast)
        line.add("completed", completed)
        line.add("seconds", seconds)
        line.add("rows_per_s", rowsPerSecond)
    }
}

extension VerifyReport: JSONReport {
    public func addFields(to line: inout JSONLine) {
        line.add("checked", checked)
        line.add("matching", matching)
        line.add("missing", missing)
        line.add("stale", stale)
        line.add("extra", extra)
        line.add("existence_only", existenceOnly)
        line.add("stream_fingerprints", streamFingerprints)
        if let replicaDocuments { line.add("replica_documents", replicaDocuments) }
        line.add("missing_ids", missingIds)
        line.add("stale_ids", staleIds)
        line.add("extra_ids", extraIds)
        line.add("seconds", seconds)
    }
}

extension ComparisonReport: JSONReport {
    public func addFields(to line: inout JSONLine) {
        line.add("compare_queries", queries)
        line.add("compare_same_top", sameTop)
        line.add("compare_different_top", differentTop)
        line.add("compare_differing_source_ids", samples.map(\.sourceId))
    }
}

extension BackupSummary: JSONReport {
    public func addFields(to line: inout JSONLine) {
        line.add("records", records)
        line.add("payload_bytes", bytes)
        line.add("last_sequence", lastSequence)
        line.add("stream_messages", streamMessages)
        line.add("seconds", seconds)
    }
}
