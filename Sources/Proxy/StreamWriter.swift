import FpindexAPI
import JetStream
import Metrics

/// One message the proxy publishes for a write.
typealias OutgoingMessage = StreamMessage

/// Turns fpindex writes into stream messages with the translation the bulk import shares
/// (`StreamSubjects.messages(for:index:)`).
struct StreamWriter: Sendable {
    let subjects: StreamSubjects

    static func validate(_ request: UpdateRequest) throws(FpindexError) {
        try StreamSubjects.validate(request)
    }

    func messages(for request: UpdateRequest, index: String) -> [OutgoingMessage] {
        subjects.messages(for: request, index: index)
    }
}

/// Publish metrics, made once.
final class PublishMetrics: Sendable {
    let latency: Metrics.Timer
    let bytes: Counter
    let messages: Counter
    let failures: Counter
    let fenceRetries: Counter

    init(factory: any MetricsFactory) {
        latency = Metrics.Timer(label: "fpindex_proxy_publish_batch_duration_seconds", preferredDisplayUnit: .seconds, factory: factory)
        bytes = Counter(label: "fpindex_proxy_published_bytes_total", factory: factory)
        messages = Counter(label: "fpindex_proxy_published_messages_total", factory: factory)
        failures = Counter(label: "fpindex_proxy_publish_failures_total", factory: factory)
        fenceRetries = Counter(label: "fpindex_proxy_publish_fence_retries_total", factory: factory)
    }
}

extension Metrics.Timer {
    func recordInterval(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}
