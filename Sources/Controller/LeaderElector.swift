import Foundation
import Kubernetes
import Logging
import Synchronization

/// Leader election on a `coordination.k8s.io/v1` Lease, as client-go does it: a candidate
/// takes the lease when it is free or has not been renewed for `leaseDuration` (measured on
/// this process's own clock from when it last saw the record change, so clock skew between
/// nodes does not matter); the leader renews every `retryPeriod` and gives up leadership when
/// it cannot renew within `renewDeadline`.
public final class LeaderElector: Sendable {
    public struct Settings: Sendable {
        public var namespace: String
        public var name: String
        public var identity: String
        public var leaseDuration: Duration = .seconds(15)
        public var renewDeadline: Duration = .seconds(10)
        public var retryPeriod: Duration = .seconds(2)

        public init(namespace: String, name: String, identity: String) {
            self.namespace = namespace
            self.name = name
            self.identity = identity
        }
    }

    public struct LostLeadership: Error, CustomStringConvertible {
        public var description: String
    }

    let kubernetes: KubernetesClient
    public let settings: Settings
    let logger: Logger
    private struct Observation {
        var record: Lease.Spec?
        var resourceVersion: String?
        var seenAt: ContinuousClock.Instant = .now
    }
    private let observation = Mutex(Observation())
    private let leading = Mutex(false)

    public init(kubernetes: KubernetesClient, settings: Settings, logger: Logger) {
        self.kubernetes = kubernetes
        self.settings = settings
        self.logger = logger
    }

    public var isLeader: Bool { leading.withLock { $0 } }

    /// Returns once this process holds the lease (throws only when cancelled).
    public func acquire() async throws {
        logger.info("waiting for leadership", metadata: ["lease": "\(settings.namespace)/\(settings.name)"])
        while true {
            if try await tryAcquireOrRenew() {
                leading.withLock { $0 = true }
                logger.notice("became the leader", metadata: ["lease": "\(settings.namespace)/\(settings.name)"])
                return
            }
            try await Task.sleep(for: jittered(settings.retryPeriod))
        }
    }

    /// Renews the lease until cancelled; throws `LostLeadership` when it cannot renew within
    /// `renewDeadline` or another holder took it.
    public func holdLeadership() async throws {
        var lastRenewed = ContinuousClock.now
        while true {
            try await Task.sleep(for: settings.retryPeriod)
            do {
                if try await tryAcquireOrRenew() {
                    lastRenewed = .now
                    continue
                }
                leading.withLock { $0 = false }
                throw LostLeadership(description: "another candidate holds the lease")
            } catch let error as LostLeadership {
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                logger.warning("cannot renew the lease", metadata: ["error": "\(error)"])
            }
            if ContinuousClock.now - lastRenewed > settings.renewDeadline {
                leading.withLock { $0 = false }
                throw LostLeadership(description: "could not renew the lease within \(settings.renewDeadline)")
            }
        }
    }

    /// Gives the lease up (on shutdown) so another candidate takes over at once.
    public func release() async {
        guard leading.withLock({ $0 }) else { return }
        leading.withLock { $0 = false }
        do {
            var lease = try await kubernetes.get(Lease.self, namespace: settings.namespace, name: settings.name)
            guard lease.spec?.holderIdentity == settings.identity else { return }
            lease.spec?.holderIdentity = nil
            lease.spec?.leaseDurationSeconds = 1
            lease.spec?.renewTime = KubernetesTime.formatMicro(Date())
            _ = try await kubernetes.update(lease)
            logger.notice("released the lease")
        } catch {
            logger.warning("cannot release the lease", metadata: ["error": "\(error)"])
        }
    }

    /// One attempt: true when this process holds the lease afterwards.
    func tryAcquireOrRenew() async throws -> Bool {
        let nowText = KubernetesTime.formatMicro(Date())
        let existing: Lease
        do {
            existing = try await kubernetes.get(Lease.self, namespace: settings.namespace, name: settings.name)
        } catch let error as KubernetesError where error.reason == .notFound {
            var lease = Lease()
            lease.metadata = ObjectMeta(name: settings.name, namespace: settings.namespace)
            var spec = Lease.Spec()
            spec.holderIdentity = settings.identity
            spec.leaseDurationSeconds = Int(settings.leaseDuration.components.seconds)
            spec.acquireTime = nowText
            spec.renewTime = nowText
            spec.leaseTransitions = 0
            lease.spec = spec
            do {
                let created = try await kubernetes.create(lease)
                remember(created)
                return true
            } catch let error as KubernetesError where error.reason == .alreadyExists || error.reason == .conflict {
                return false
            }
        }
        let record = existing.spec ?? Lease.Spec()
        let now = ContinuousClock.now
        let seenAt = observation.withLock { seen -> ContinuousClock.Instant in
            if seen.resourceVersion != existing.metadata.resourceVersion || seen.record != record {
                seen = Observation(record: record, resourceVersion: existing.metadata.resourceVersion, seenAt: now)
            }
            return seen.seenAt
        }
        let holder = record.holderIdentity ?? ""
        let duration = Duration.seconds(record.leaseDurationSeconds ?? Int(settings.leaseDuration.components.seconds))
        let iHold = holder == settings.identity
        if !holder.isEmpty && !iHold && now - seenAt < duration {
            return false  // Someone else holds a live lease.
        }
        var lease = existing
        var spec = record
        if !iHold {
            spec.acquireTime = nowText
            spec.leaseTransitions = (record.leaseTransitions ?? 0) + 1
        }
        spec.holderIdentity = settings.identity
        spec.leaseDurationSeconds = Int(settings.leaseDuration.components.seconds)
        spec.renewTime = nowText
        lease.spec = spec
        do {
            let updated = try await kubernetes.update(lease)
            remember(updated)
            return true
        } catch let error as KubernetesError where error.reason == .conflict {
            return false  // Another candidate wrote first.
        }
    }

    private func remember(_ lease: Lease) {
        observation.withLock {
            $0 = Observation(record: lease.spec, resourceVersion: lease.metadata.resourceVersion, seenAt: .now)
        }
    }

    private func jittered(_ duration: Duration) -> Duration {
        duration + duration * Double.random(in: 0...0.2)
    }
}
