import Synchronization

/// One change of a stored object, as watches see it.
struct WatchEvent: Sendable {
    var resourceVersion: Int64
    var storageKey: String
    var namespace: String
    var type: String  // ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
    var object: JSONValue
    /// The object before a MODIFIED change (for selector transitions).
    var old: JSONValue?
}

/// The retained event history and the open watches. Thread-safe and synchronous so that fault
/// injection (`closeAllWatches`, `expireResourceVersions`) works from any context; the store
/// actor is its only publisher, so history and live delivery stay in resourceVersion order.
final class WatchHub: Sendable {
    struct Subscriber {
        var storageKey: String
        var namespace: String?
        var continuation: AsyncStream<WatchEvent>.Continuation
        /// kubesim's own controllers: not counted, closed or expired with the clients' watches.
        var isInternal = false
    }

    struct State {
        var history: [WatchEvent] = []
        /// Events with a resourceVersion above `floor` are all in `history`.
        var floor: Int64 = 0
        var lastResourceVersion: Int64 = 0
        var subscribers: [Int: Subscriber] = [:]
        /// Shutting down: clients' new watches are refused (503), so none holds the server open.
        var closed = false
        var nextID = 0
    }

    let state: Mutex<State>
    let capacity: Int
    static let maxBuffered = 10_000

    init(capacity: Int) {
        self.capacity = max(1, capacity)
        self.state = Mutex(State())
    }

    var lastResourceVersion: Int64 { state.withLock { $0.lastResourceVersion } }

    /// Sets the starting resourceVersion (objects created before any watch existed).
    func start(at resourceVersion: Int64) {
        state.withLock {
            $0.lastResourceVersion = resourceVersion
            $0.floor = resourceVersion
        }
    }
    var watchCount: Int { state.withLock { $0.subscribers.values.filter { !$0.isInternal }.count } }
    /// resourceVersions below this are no longer in the history (410 Expired).
    var floorResourceVersion: Int64 { state.withLock { $0.floor } }

    func publish(_ event: WatchEvent) {
        state.withLock { state in
            state.history.append(event)
            if state.history.count > capacity {
                let drop = state.history.count - capacity
                state.floor = state.history[drop - 1].resourceVersion
                state.history.removeFirst(drop)
            }
            state.lastResourceVersion = max(state.lastResourceVersion, event.resourceVersion)
            var gone: [Int] = []
            for (id, subscriber) in state.subscribers
            where subscriber.storageKey == event.storageKey
                && (subscriber.namespace == nil || subscriber.namespace == event.namespace)
            {
                switch subscriber.continuation.yield(event) {
                case .terminated: gone.append(id)
                case .dropped:
                    subscriber.continuation.finish()
                    gone.append(id)
                default: break
                }
            }
            for id in gone { state.subscribers[id] = nil }
        }
    }

    /// Opens a watch. With `from`, replays the retained events after it (410 if they are no
    /// longer all retained); `initial` events are delivered first (the "ADDED" state for watches
    /// without a resourceVersion).
    func subscribe(storageKey: String, namespace: String?, from: Int64?, initial: [WatchEvent], isInternal: Bool = false)
        throws(KubeSimError)
        -> (id: Int, events: AsyncStream<WatchEvent>)
    {
        // A watcher that falls this far behind is closed (it resumes from the last event it
        // read), as the real server drops slow watchers, instead of buffering without bound.
        let (stream, continuation) = AsyncStream<WatchEvent>.makeStream(bufferingPolicy: .bufferingOldest(WatchHub.maxBuffered))
        let id = try state.withLock { state throws(KubeSimError) -> Int in
            if state.closed, !isInternal {
                throw KubeSimError(code: 503, reason: "ServiceUnavailable", message: "kubesim is shutting down")
            }
            for event in initial { continuation.yield(event) }
            if let from {
                if from < state.floor {
                    throw KubeSimError.gone("too old resource version: \(from) (\(state.floor + 1))")
                }
                for event in state.history
                where event.resourceVersion > from && event.storageKey == storageKey
                    && (namespace == nil || namespace == event.namespace)
                {
                    continuation.yield(event)
                }
            }
            let id = state.nextID
            state.nextID += 1
            state.subscribers[id] = Subscriber(
                storageKey: storageKey, namespace: namespace, continuation: continuation, isInternal: isInternal)
            return id
        }
        return (id, stream)
    }

    func unsubscribe(_ id: Int) {
        let subscriber = state.withLock { $0.subscribers.removeValue(forKey: id) }
        subscriber?.continuation.finish()
    }

    /// Queues a BOOKMARK at the current resourceVersion behind the events already delivered.
    func bookmark(_ id: Int) {
        state.withLock { state in
            guard let subscriber = state.subscribers[id] else { return }
            subscriber.continuation.yield(
                WatchEvent(
                    resourceVersion: state.lastResourceVersion, storageKey: subscriber.storageKey, namespace: "",
                    type: "BOOKMARK", object: .null))
        }
    }

    /// Ends every open watch (clients see the stream close and must resume).
    /// Ends every client's watch; with `refuseNew`, later watches get 503 (shutdown).
    func closeAll(refuseNew: Bool = false) {
        let subscribers = state.withLock { state in
            if refuseNew { state.closed = true }
            let external = state.subscribers.filter { !$0.value.isInternal }
            for id in external.keys { state.subscribers[id] = nil }
            return Array(external.values)
        }
        for subscriber in subscribers { subscriber.continuation.finish() }
    }

    /// Forgets the history, as an etcd compaction does: open watches get an in-stream
    /// `ERROR` 410 Expired and end (their clients must relist), and a watch from any
    /// resourceVersion before now gets 410 Expired.
    func expire() {
        let subscribers = state.withLock { state in
            state.history.removeAll()
            state.floor = state.lastResourceVersion
            let external = state.subscribers.filter { !$0.value.isInternal }
            for id in external.keys { state.subscribers[id] = nil }
            return (Array(external.values), state.lastResourceVersion)
        }
        let status: JSONValue = [
            "kind": "Status", "apiVersion": "v1", "metadata": [:], "status": "Failure",
            "message": .string("too old resource version (compacted at \(subscribers.1))"), "reason": "Expired",
            "code": 410,
        ]
        for subscriber in subscribers.0 {
            subscriber.continuation.yield(
                WatchEvent(
                    resourceVersion: subscribers.1, storageKey: subscriber.storageKey, namespace: "", type: "ERROR",
                    object: status))
            subscriber.continuation.finish()
        }
    }
}

extension WatchHub {
    /// Calls `pass` once, then again after changes of the given kinds (coalesced: one pass for
    /// any number of changes while the previous one ran) and every `resync`, until cancelled.
    func onChanges(of storageKeys: [String], resync: Duration, _ pass: @escaping @Sendable () async -> Void) async {
        let (signals, signal) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        await withTaskGroup(of: Void.self) { group in
            for key in storageKeys {
                group.addTask {
                    while !Task.isCancelled {
                        guard
                            let subscription = try? self.subscribe(
                                storageKey: key, namespace: nil, from: nil, initial: [], isInternal: true)
                        else { return }
                        for await _ in subscription.events { signal.yield() }
                        self.unsubscribe(subscription.id)
                    }
                }
            }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: resync)
                    signal.yield()
                }
            }
            signal.yield()
            for await _ in signals {
                if Task.isCancelled { break }
                await pass()
            }
            group.cancelAll()
        }
    }
}
