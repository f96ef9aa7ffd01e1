import Foundation
import Kubernetes
import Logging
import Synchronization

/// Writes `events.k8s.io/v1` Events about a cluster. Identical events within `dedupeWindow`
/// are written once (a failing resync must not flood the namespace); recording never fails a
/// reconcile: errors are logged.
public final class EventRecorder: Sendable {
    public enum Kind: String, Sendable {
        case normal = "Normal"
        case warning = "Warning"
    }

    private let kubernetes: KubernetesClient
    private let instance: String
    private let logger: Logger
    private let dedupeWindow: Duration
    private let recent = Mutex<[String: ContinuousClock.Instant]>([:])
    public static let reportingController = "fpindex.acoustid.org/fpindex-controller"

    public init(kubernetes: KubernetesClient, instance: String, logger: Logger, dedupeWindow: Duration = .seconds(300)) {
        self.kubernetes = kubernetes
        self.instance = instance
        self.logger = logger
        self.dedupeWindow = dedupeWindow
    }

    public func record(
        _ kind: Kind, reason: String, action: String, note: String, regarding model: ClusterModel
    ) async {
        let key = "\(model.uid)|\(reason)|\(note)"
        let now = ContinuousClock.now
        let fresh = recent.withLock { recent -> Bool in
            if let last = recent[key], now - last < dedupeWindow { return false }
            recent[key] = now
            if recent.count > 4096 { recent = recent.filter { now - $0.value < dedupeWindow } }
            return true
        }
        guard fresh else { return }
        let date = Date()
        var event = Event()
        event.metadata = ObjectMeta(
            name: "\(model.name).\(String(UInt64(date.timeIntervalSince1970 * 1_000_000), radix: 16))",
            namespace: model.namespace)
        event.eventTime = KubernetesTime.formatMicro(date)
        event.reportingController = Self.reportingController
        event.reportingInstance = instance
        event.action = action
        event.reason = reason
        event.type = kind.rawValue
        event.note = String(note.prefix(1024))
        event.regarding = ObjectReference(
            apiVersion: FpindexCluster.resourceType.apiVersion, kind: FpindexCluster.resourceType.kind,
            name: model.name, namespace: model.namespace, uid: model.uid)
        do {
            _ = try await kubernetes.create(event)
        } catch let error as KubernetesError
            where (error.reason == .forbidden && error.message.contains("being terminated")) || error.reason == .notFound
        {
            // The namespace is being deleted (and the cluster with it) or already gone: no
            // object, events included, can be created there any more. Expected, not worth a warning.
            logger.debug(
                "no event in a terminating namespace",
                metadata: ["cluster": "\(model.namespace)/\(model.name)", "event.reason": "\(reason)"])
        } catch {
            logger.warning(
                "cannot record an event",
                metadata: ["event.reason": "\(reason)", "cluster": "\(model.namespace)/\(model.name)", "error": "\(error)"])
        }
    }
}
