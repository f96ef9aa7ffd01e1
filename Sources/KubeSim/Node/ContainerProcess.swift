import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One run of a container: a process started in the pod's network namespace, its output
/// appended to a log file. Its exit is awaited through `exit` (any number of times).
final class ContainerProcess: Sendable {
    struct ExitStatus: Sendable {
        var code: Int32
        var signal: Int32?
        var finishedAt: Date
    }

    let pid: Int32
    let startedAt: Date
    let exit: Task<ExitStatus, Never>

    private init(pid: Int32, startedAt: Date, exit: Task<ExitStatus, Never>) {
        self.pid = pid
        self.startedAt = startedAt
        self.exit = exit
    }

    /// Starts `launch` through `ip netns exec NAMESPACE sh -c SCRIPT`; `ip` and `sh` exec in
    /// place, so the process id is the program's.
    static func start(_ launch: ContainerLaunch, namespace: String, tools: NodeTools, logPath: String) throws -> ContainerProcess {
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tools.ip)
        process.arguments = ["netns", "exec", namespace, "/bin/sh", "-c", launch.script(setpriv: tools.setpriv)] + launch.argv
        process.environment = launch.environment
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        let (statuses, continuation) = AsyncStream<ExitStatus>.makeStream(bufferingPolicy: .bufferingNewest(1))
        process.terminationHandler = { finished in
            let signaled = finished.terminationReason == .uncaughtSignal
            continuation.yield(
                ExitStatus(
                    code: signaled ? 128 + finished.terminationStatus : finished.terminationStatus,
                    signal: signaled ? finished.terminationStatus : nil, finishedAt: Date()))
            continuation.finish()
            try? log.close()
        }
        do { try process.run() } catch {
            try? log.close()
            throw error
        }
        let exit = Task {
            for await status in statuses { return status }
            return ExitStatus(code: 255, signal: nil, finishedAt: Date())
        }
        return ContainerProcess(pid: process.processIdentifier, startedAt: Date(), exit: exit)
    }

    func signal(_ number: Int32) { kill(pid, number) }

    /// SIGTERM, then SIGKILL once `grace` has passed; returns when the process is gone.
    @discardableResult
    func stop(grace: Duration) async -> ExitStatus {
        signal(SIGTERM)
        let killer = Task { [pid] in
            try await Task.sleep(for: grace)
            kill(pid, SIGKILL)
        }
        let status = await exit.value
        killer.cancel()
        return status
    }
}

/// Host programs the node uses.
struct NodeTools: Sendable {
    var ip: String
    var setpriv: String
    var nsenter: String

    static func locate() throws(KubeSimError) -> NodeTools {
        var missing: [String] = []
        func find(_ name: String, _ package: String) -> String {
            if let path = HostCommand.locate(name) { return path }
            missing.append("\(name) (\(package))")
            return name
        }
        let tools = NodeTools(ip: find("ip", "iproute2"), setpriv: find("setpriv", "util-linux"), nsenter: find("nsenter", "util-linux"))
        if !missing.isEmpty { throw .badRequest("the pod runner needs \(missing.joined(separator: ", "))") }
        return tools
    }
}

/// Where each container's output goes, for `kubectl logs`: one file per run, the current and
/// the previous run kept (`--previous`).
final class PodLogs: Sendable {
    struct Entry: Sendable {
        var podUID: String
        var current: String
        var previous: String?
        var running: Bool
    }

    private let entries = Mutex<[String: Entry]>([:])

    static func key(_ namespace: String, _ pod: String, _ container: String) -> String { "\(namespace)/\(pod)/\(container)" }

    func started(namespace: String, pod: String, uid: String, container: String, path: String) {
        entries.withLock { entries in
            let key = Self.key(namespace, pod, container)
            let old = entries[key]
            if let old, old.podUID == uid, old.current != path, let stale = old.previous {
                try? FileManager.default.removeItem(atPath: stale)
            }
            let previous = old?.podUID == uid ? old?.current : nil
            entries[key] = Entry(podUID: uid, current: path, previous: previous, running: true)
        }
    }

    func stopped(namespace: String, pod: String, container: String) {
        entries.withLock { $0[Self.key(namespace, pod, container)]?.running = false }
    }

    func forget(namespace: String, pod: String, uid: String) {
        entries.withLock { entries in
            for (key, entry) in entries where entry.podUID == uid && key.hasPrefix("\(namespace)/\(pod)/") { entries[key] = nil }
        }
    }

    func entry(namespace: String, pod: String, container: String) -> Entry? {
        entries.withLock { $0[Self.key(namespace, pod, container)] }
    }
}
