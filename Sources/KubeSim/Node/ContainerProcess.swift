import Foundation
import ProcessSpawning
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
    /// place, so the process id is the program's. Started as a container runtime starts
    /// programs: an empty signal mask and default dispositions (`SpawnedProcess`).
    static func start(_ launch: ContainerLaunch, namespace: String, tools: NodeTools, logPath: String) throws -> ContainerProcess {
        // One descriptor for both streams, as a runtime's log: lines keep their order.
        let log = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard log >= 0 else { throw SpawnError(executable: tools.ip, message: "cannot open \(logPath)") }
        defer { close(log) }
        let process = try SpawnedProcess.spawn(
            tools.ip,
            arguments: ["netns", "exec", namespace, "/bin/sh", "-c", launch.script(setpriv: tools.setpriv)] + launch.argv,
            environment: launch.environment, input: .discard, output: .descriptor(log), error: .descriptor(log))
        let exit = Task {
            let status = await process.waitForExit()
            return ExitStatus(code: status?.code ?? 255, signal: status?.signal, finishedAt: Date())
        }
        return ContainerProcess(pid: process.pid, startedAt: Date(), exit: exit)
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
    /// NetworkPolicies are enforced with it, in each pod's network namespace.
    var nft: String

    static func locate() throws(KubeSimSetupError) -> NodeTools {
        var missing: [String] = []
        func find(_ name: String, _ package: String) -> String {
            if let path = HostCommand.locate(name) { return path }
            missing.append("\(name) (\(package))")
            return name
        }
        let tools = NodeTools(ip: find("ip", "iproute2"), setpriv: find("setpriv", "util-linux"), nsenter: find("nsenter", "util-linux"),
            nft: find("nft", "nftables"))
        if !missing.isEmpty { throw KubeSimSetupError("the pod runner needs \(missing.joined(separator: ", "))") }
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
