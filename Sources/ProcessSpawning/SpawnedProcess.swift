import CProcessSpawn
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// How a child process ended.
public struct ExitStatus: Sendable, Equatable, CustomStringConvertible {
    /// The exit code, or 128 + the signal for a process killed by one (as shells report it).
    public var code: Int32
    /// The signal that killed it, if one did.
    public var signal: Int32?

    public init(code: Int32, signal: Int32? = nil) {
        self.code = code
        self.signal = signal
    }

    public var description: String { signal.map { "killed by signal \($0)" } ?? "exit \(code)" }
}

/// A program that could not be started.
public struct SpawnError: Error, Sendable, CustomStringConvertible {
    public var executable: String
    public var message: String
    public var description: String { "cannot start \(executable): \(message)" }

    public init(executable: String, message: String) {
        self.executable = executable
        self.message = message
    }
}

/// A child process, started the way a container runtime starts one: an empty signal mask and
/// default signal dispositions, only the standard descriptors the caller names, an explicit
/// environment. The only way this project starts processes (kubesim's containers and host
/// commands, the benchmarks' servers, the tests' children), so none inherits the blocked
/// signals of the Swift thread that spawned it: such a child ignores SIGTERM forever.
///
/// Its exit is reaped by a thread of its own (a blocking `waitpid`), never by the cooperative
/// pool; any number of tasks can await it.
public final class SpawnedProcess: Sendable {
    /// Where a standard descriptor of the child goes.
    public enum Stream: Sendable {
        /// The parent's own.
        case inherit
        /// `/dev/null`.
        case discard
        /// A file, created if missing; `append` keeps what is there.
        case file(String, append: Bool = false)
        /// An open descriptor of the caller's (it stays open in the parent).
        case descriptor(Int32)
    }

    private struct State {
        var status: ExitStatus?
        var waiters: [UInt64: CheckedContinuation<ExitStatus?, Never>] = [:]
        var nextWaiter: UInt64 = 0
    }

    public let pid: pid_t
    public let executable: String
    private let state = Mutex(State())

    private init(pid: pid_t, executable: String) {
        self.pid = pid
        self.executable = executable
    }

    /// Starts `executable` (a path) with `arguments`.
    /// - Parameters:
    ///   - environment: the child's whole environment (nothing of the parent's is added).
    ///   - workingDirectory: the child's working directory; the parent's when nil.
    /// - Throws: `SpawnError` when a stream cannot be opened or the program cannot be started.
    public static func spawn(
        _ executable: String, arguments: [String], environment: [String: String], workingDirectory: String? = nil,
        input: Stream = .discard, output: Stream = .inherit, error: Stream = .inherit
    ) throws(SpawnError) -> SpawnedProcess {
        var opened: [Int32] = []
        defer { for fd in opened { close(fd) } }
        func descriptor(_ stream: Stream, forInput: Bool) throws(SpawnError) -> Int32 {
            switch stream {
            case .inherit: return -1
            case .descriptor(let fd): return fd
            case .discard:
                let fd = open("/dev/null", forInput ? O_RDONLY : O_WRONLY)
                guard fd >= 0 else { throw SpawnError(executable: executable, message: "cannot open /dev/null") }
                opened.append(fd)
                return fd
            case .file(let path, let append):
                let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0o644)
                guard fd >= 0 else {
                    throw SpawnError(executable: executable, message: "cannot open \(path): \(String(cString: strerror(errno)))")
                }
                opened.append(fd)
                return fd
            }
        }
        let inputFD = try descriptor(input, forInput: true)
        let outputFD = try descriptor(output, forInput: false)
        let errorFD = try descriptor(error, forInput: false)

        let argv = ([executable] + arguments).map { strdup($0) }
        let envp = environment.map { strdup("\($0.key)=\($0.value)") }
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let result = (argv + [nil]).withUnsafeBufferPointer { argvBuffer in
            (envp + [nil]).withUnsafeBufferPointer { envpBuffer in
                fpindex_spawn(
                    executable, argvBuffer.baseAddress, envpBuffer.baseAddress, workingDirectory, inputFD, outputFD, errorFD,
                    &pid)
            }
        }
        guard result == 0 else { throw SpawnError(executable: executable, message: String(cString: strerror(result))) }
        let process = SpawnedProcess(pid: pid, executable: executable)
        // The reaper: one thread blocked in waitpid for this child alone.
        Thread.detachNewThread { [process] in process.reap() }
        return process
    }

    private func reap() {
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) < 0 {
            if errno != EINTR {
                finish(ExitStatus(code: 255))
                return
            }
        }
        // WIFSIGNALED / WTERMSIG / WEXITSTATUS, which Swift does not import.
        let signal = raw & 0x7f
        if signal != 0 && signal != 0x7f {
            finish(ExitStatus(code: 128 + signal, signal: signal))
        } else {
            finish(ExitStatus(code: (raw >> 8) & 0xff))
        }
    }

    private func finish(_ status: ExitStatus) {
        let waiters = state.withLock { state in
            state.status = status
            defer { state.waiters = [:] }
            return state.waiters.values
        }
        for waiter in waiters { waiter.resume(returning: status) }
    }

    /// How it ended, or nil while it runs.
    public var exitStatus: ExitStatus? { state.withLock { $0.status } }
    public var isRunning: Bool { exitStatus == nil }

    /// Sends a signal (nothing once it has exited: its id may belong to another process by then).
    public func signal(_ number: Int32) {
        state.withLock { state in
            if state.status == nil { _ = kill(pid, number) }
        }
    }

    /// Waits until it exits; nil only when the waiting task is cancelled first.
    public func waitForExit() async -> ExitStatus? {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ExitStatus?, Never>) in
                let done = state.withLock { state -> ExitStatus?? in
                    if let status = state.status { return .some(status) }
                    if Task.isCancelled { return .some(nil) }
                    state.waiters[id] = continuation
                    return nil
                }
                if let done { continuation.resume(returning: done) }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(returning: nil)
        }
    }

    /// Waits until it exits, at most `timeout`; nil when it still runs.
    public func waitForExit(timeout: Duration) async -> ExitStatus? {
        await withTaskGroup(of: ExitStatus?.self) { group in
            group.addTask { await self.waitForExit() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? exitStatus
        }
    }

    /// SIGTERM, then SIGKILL once `grace` has passed; returns how it ended.
    ///
    /// The grace period holds in a cancelled task too (shutdown paths often run in one):
    /// the waits run in a task of their own, so cancellation cannot turn a stop into a kill.
    @discardableResult
    public func stop(grace: Duration) async -> ExitStatus? {
        await Task { [self] in
            signal(SIGTERM)
            if let status = await waitForExit(timeout: grace) { return status }
            signal(SIGKILL)
            return await waitForExit()
        }.value
    }
}
