import FpindexAPI
import Synchronization

/// How long a write waits before its reply.
public enum WriteConsistency: String, Sendable, CaseIterable {
    /// Reply once the stream acknowledged the write (durable).
    case stream
    /// Reply once enough replicas applied it too (read-your-writes for searches).
    case replica
}

/// The applied sequence each replica announces (`<prefix>-applied.<consumer>`), and writes
/// waiting for enough replicas to reach theirs.
final class ReplicaProgress: Sendable {
    private struct Waiter {
        var id: Int
        var sequence: UInt64
        var replicas: Int
        var continuation: CheckedContinuation<Void, Never>
    }

    private struct State {
        var applied: [String: UInt64] = [:]
        var waiters: [Waiter] = []
        /// Waits cancelled before they were registered (the cancellation handler can run first).
        var cancelledEarly: Set<Int> = []
        var nextID = 0
    }

    private let state = Mutex(State())

    /// Records a replica's progress and wakes the writes it satisfies.
    func observe(replica: String, applied: UInt64) {
        let ready = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.applied[replica] = max(state.applied[replica] ?? 0, applied)
            let counts = state.applied.values
            var woken: [CheckedContinuation<Void, Never>] = []
            state.waiters.removeAll { waiter in
                guard counts.count(where: { $0 >= waiter.sequence }) >= waiter.replicas else { return false }
                woken.append(waiter.continuation)
                return true
            }
            return woken
        }
        for continuation in ready { continuation.resume() }
    }

    /// Waits until `replicas` replicas applied `sequence`, at most `timeout`.
    /// - Throws: 504 `GatewayTimeout` when they did not in time (the write is still durable).
    func wait(for sequence: UInt64, replicas: Int, timeout: Duration) async throws {
        let reached = await withTaskGroup(of: Bool.self) { group in
            group.addTask { await self.waitUntilApplied(sequence, replicas: replicas) }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        guard reached else {
            throw FpindexError(
                .gatewayTimeout,
                "the write is durable (stream sequence \(sequence)) but \(replicas) replica(s) did not apply it within \(timeout)")
        }
    }

    private func waitUntilApplied(_ sequence: UInt64, replicas: Int) async -> Bool {
        let id = state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now = state.withLock { state -> Bool in
                    if state.cancelledEarly.remove(id) != nil { return true }
                    if state.applied.values.count(where: { $0 >= sequence }) >= replicas { return true }
                    state.waiters.append(Waiter(id: id, sequence: sequence, replicas: replicas, continuation: continuation))
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let cancelled = state.withLock { state -> CheckedContinuation<Void, Never>? in
                guard let position = state.waiters.firstIndex(where: { $0.id == id }) else {
                    state.cancelledEarly.insert(id)
                    return nil
                }
                return state.waiters.remove(at: position).continuation
            }
            cancelled?.resume()
        }
        return !Task.isCancelled
    }
}
