import Logging

/// What a `ListWatch` delivers.
public enum ListWatchEvent<T: Sendable>: Sendable {
    /// The complete current state after a (re)list: replace your cache with it.
    case synced([T], resourceVersion: String)
    case added(T)
    case modified(T)
    case deleted(T)
}

/// Why a `ListWatch` reconnected or relisted (for logs and metrics).
public enum ListWatchRestart: String, Sendable {
    /// The server ended the watch (its timeout) or the connection dropped cleanly.
    case closed
    /// The resourceVersion was too old (410): relisted.
    case expired
    /// A transient error (network, 5xx, 429): retried after a backoff.
    case failed
}

/// List-then-watch, kept alive for ever: lists (paginated) and reports the full state, then
/// watches from the list's resourceVersion with bookmarks; every event and bookmark advances
/// the resourceVersion, so a dropped or timed-out watch resumes where it left off; a 410
/// (HTTP or in-stream) relists; transient failures back off exponentially (capped, jittered).
/// Non-transient errors (401, 403, 404 of the type, ...) after retries are thrown.
///
/// Pull-based: nothing runs between `next()` calls, and cancelling the iterating task stops it.
public struct ListWatch<T: WatchableObject>: AsyncSequence, Sendable {
    public typealias Element = ListWatchEvent<T>

    let client: KubernetesClient
    let type: ResourceType
    let namespace: String?
    let labelSelector: String?
    let fieldSelector: String?
    var pageSize = 500
    var watchTimeout: Duration = .seconds(300)
    var initialBackoff: Duration = .milliseconds(200)
    var maximumBackoff: Duration = .seconds(30)
    /// Non-transient errors are retried this many times before they are thrown.
    var persistentErrorRetries = 5
    let onRestart: (@Sendable (ListWatchRestart) -> Void)?

    public func makeAsyncIterator() -> Iterator { Iterator(watch: self) }

    public struct Iterator: AsyncIteratorProtocol {
        let watch: ListWatch
        var resourceVersion: String?
        var events: WatchStream<T>.Iterator?
        var watchStarted: ContinuousClock.Instant = .now
        var failures = 0

        init(watch: ListWatch) { self.watch = watch }

        public mutating func next() async throws -> ListWatchEvent<T>? {
            while true {
                try Task.checkCancellation()
                guard let resourceVersion else {
                    do {
                        let list = try await watch.client.listAll(
                            watch.type, namespace: watch.namespace,
                            options: ListOptions(
                                labelSelector: watch.labelSelector, fieldSelector: watch.fieldSelector,
                                limit: watch.pageSize),
                            as: T.self)
                        let version = list.metadata.resourceVersion ?? ""
                        self.resourceVersion = version
                        failures = 0
                        return .synced(list.items, resourceVersion: version)
                    } catch {
                        try await backOff(after: error)
                        continue
                    }
                }
                if events == nil {
                    do {
                        events = try watch.client.watch(
                            watch.type, namespace: watch.namespace,
                            options: WatchOptions(
                                resourceVersion: resourceVersion, labelSelector: watch.labelSelector,
                                fieldSelector: watch.fieldSelector, allowBookmarks: true, timeout: watch.watchTimeout),
                            as: T.self
                        ).makeAsyncIterator()
                        watchStarted = .now
                    } catch {
                        try await backOff(after: error)
                        continue
                    }
                }
                do {
                    guard let event = try await events?.next() else {
                        events = nil
                        watch.onRestart?(.closed)
                        // A watch that ends at once (a server refusing quietly) must not spin.
                        if ContinuousClock.now - watchStarted < .seconds(1) {
                            failures += 1
                            try await Task.sleep(for: delay())
                        }
                        continue
                    }
                    failures = 0
                    switch event {
                    case .bookmark(let version):
                        if !version.isEmpty { self.resourceVersion = version }
                    case .added(let object):
                        advance(object)
                        return .added(object)
                    case .modified(let object):
                        advance(object)
                        return .modified(object)
                    case .deleted(let object):
                        advance(object)
                        return .deleted(object)
                    }
                } catch let error as KubernetesError where error.reason == .expired {
                    events = nil
                    self.resourceVersion = nil
                    watch.onRestart?(.expired)
                    watch.client.logger.debug(
                        "watch resourceVersion expired; relisting", metadata: ["resource": "\(watch.type)"])
                } catch {
                    events = nil
                    try await backOff(after: error)
                }
            }
        }

        private mutating func advance(_ object: T) {
            if let version = object.objectResourceVersion, !version.isEmpty { resourceVersion = version }
        }

        private func delay() -> Duration {
            let exponent = Swift.min(failures, 20)
            let base = watch.initialBackoff * (1 << exponent)
            let capped = Swift.min(base, watch.maximumBackoff)
            // Full jitter in [capped/2, capped].
            return capped / 2 + capped / 2 * Double.random(in: 0...1)
        }

        private mutating func backOff(after error: any Error) async throws {
            if error is CancellationError { throw error }
            failures += 1
            if let error = error as? KubernetesError {
                if error.reason == .expired {
                    resourceVersion = nil
                    watch.onRestart?(.expired)
                    return
                }
                // A rotated service-account token: read it again before the next attempt.
                if error.reason == .unauthorized { watch.client.invalidateCredentials() }
                if !error.isTransient && failures > watch.persistentErrorRetries { throw error }
            }
            watch.onRestart?(.failed)
            let wait = (error as? KubernetesError)?.retryAfter.map { Swift.min($0, watch.maximumBackoff) } ?? delay()
            watch.client.logger.warning(
                "list/watch failed; retrying",
                metadata: ["resource": "\(watch.type)", "error": "\(error)", "retry.after": "\(wait)"])
            try await Task.sleep(for: wait)
        }
    }
}

extension KubernetesClient {
    /// A list-then-watch of `type` (see `ListWatch`).
    /// - Parameters:
    ///   - namespace: nil watches a namespaced type in every namespace.
    ///   - onRestart: told each time the watch reconnects or relists.
    public func listWatch<T: WatchableObject>(
        _ type: ResourceType, namespace: String?, labelSelector: String? = nil, fieldSelector: String? = nil,
        as: T.Type = T.self, pageSize: Int = 500, watchTimeout: Duration = .seconds(300),
        initialBackoff: Duration = .milliseconds(200), maximumBackoff: Duration = .seconds(30),
        onRestart: (@Sendable (ListWatchRestart) -> Void)? = nil
    ) -> ListWatch<T> {
        var watch = ListWatch<T>(
            client: self, type: type, namespace: namespace, labelSelector: labelSelector, fieldSelector: fieldSelector,
            onRestart: onRestart)
        watch.pageSize = pageSize
        watch.watchTimeout = watchTimeout
        watch.initialBackoff = initialBackoff
        watch.maximumBackoff = maximumBackoff
        return watch
    }
}
