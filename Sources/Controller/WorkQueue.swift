/// A cluster's key: namespace and name (what a reconcile gets; never an event's content).
public struct ObjectKey: Hashable, Sendable, CustomStringConvertible, Comparable {
    public var namespace: String
    public var name: String
    public init(namespace: String, name: String) {
        self.namespace = namespace
        self.name = name
    }
    public var description: String { "\(namespace)/\(name)" }
    public static func < (a: ObjectKey, b: ObjectKey) -> Bool { (a.namespace, a.name) < (b.namespace, b.name) }
}

/// The reconcile queue, as controller-runtime's: a key is queued at most once (adds dedupe),
/// never handed to two workers at once (an add while it is processed marks it dirty and it
/// comes back after `done`), failed keys back off exponentially per key (capped), and
/// hand-outs are rate-limited overall (token bucket). Delayed adds wait in a timer list that
/// `runTimers()` drains.
public actor WorkQueue {
    private var queue: [ObjectKey] = []
    private var queued: Set<ObjectKey> = []
    private var processing: Set<ObjectKey> = []
    private var dirty: Set<ObjectKey> = []
    private var failures: [ObjectKey: Int] = [:]
    private var delayed: [ObjectKey: ContinuousClock.Instant] = [:]
    private var waiters: [CheckedContinuation<ObjectKey?, Never>] = []
    private var shuttingDown = false

    private let baseDelay: Duration
    private let maxDelay: Duration
    private let ratePerSecond: Double
    private let burst: Double
    private var tokens: Double
    private var lastRefill = ContinuousClock.now

    public init(
        baseDelay: Duration = .milliseconds(200), maxDelay: Duration = .seconds(300), ratePerSecond: Double = 20,
        burst: Int = 100
    ) {
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.ratePerSecond = ratePerSecond
        self.burst = Double(burst)
        tokens = Double(burst)
    }

    /// Keys waiting (queued or delayed), for the queue-depth metric.
    public var depth: Int { queue.count + delayed.count }

    public func add(_ key: ObjectKey) {
        guard !shuttingDown else { return }
        delayed[key] = nil
        if processing.contains(key) {
            dirty.insert(key)
            return
        }
        guard queued.insert(key).inserted else { return }
        if let waiter = waiters.first {
            waiters.removeFirst()
            queued.remove(key)
            processing.insert(key)
            waiter.resume(returning: key)
        } else {
            queue.append(key)
        }
    }

    /// Adds `key` after `delay` (an earlier pending time wins).
    public func add(_ key: ObjectKey, after delay: Duration) {
        guard !shuttingDown else { return }
        if delay <= .zero { return add(key) }
        let due = ContinuousClock.now + delay
        if let existing = delayed[key], existing <= due { return }
        delayed[key] = due
    }

    /// Adds `key` after its per-key backoff, which doubles with each failure.
    public func addRateLimited(_ key: ObjectKey) {
        let count = failures[key, default: 0]
        failures[key] = count + 1
        var delay = baseDelay * (1 << min(count, 20))
        if delay > maxDelay { delay = maxDelay }
        add(key, after: delay)
    }

    /// Resets a key's backoff after a success.
    public func forget(_ key: ObjectKey) { failures[key] = nil }

    public func failureCount(_ key: ObjectKey) -> Int { failures[key, default: 0] }

    /// The next key to reconcile, once the overall rate allows; nil after `shutDown()`.
    public func get() async -> ObjectKey? {
        while true {
            if shuttingDown { return nil }
            refill()
            if tokens < 1 {
                let wait = Duration.seconds((1 - tokens) / ratePerSecond)
                try? await Task.sleep(for: wait)
                continue
            }
            if let key = queue.first {
                queue.removeFirst()
                queued.remove(key)
                processing.insert(key)
                tokens -= 1
                return key
            }
            let key = await withCheckedContinuation { continuation in waiters.append(continuation) }
            if key != nil { tokens -= 1 }
            return key
        }
    }

    /// Marks a key processed; a key added meanwhile is queued again.
    public func done(_ key: ObjectKey) {
        processing.remove(key)
        if dirty.remove(key) != nil { add(key) }
    }

    /// Moves due delayed keys into the queue, until shut down or cancelled.
    public func runTimers(tick: Duration = .milliseconds(50)) async {
        while !shuttingDown && !Task.isCancelled {
            let now = ContinuousClock.now
            for (key, due) in delayed where due <= now {
                delayed[key] = nil
                add(key)
            }
            try? await Task.sleep(for: tick)
        }
    }

    /// Workers get nil from `get()`: they finish their current key and stop.
    public func shutDown() {
        shuttingDown = true
        for waiter in waiters { waiter.resume(returning: nil) }
        waiters = []
    }

    private func refill() {
        let now = ContinuousClock.now
        let elapsed = now - lastRefill
        lastRefill = now
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        tokens = min(burst, tokens + seconds * ratePerSecond)
    }
}
