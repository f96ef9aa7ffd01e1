import Foundation

/// kubectl, the independent reference client, run against a kubeconfig with its own cache
/// and HOME. Never blocks a thread: processes are polled (kubesim may run in this process).
public struct Kubectl: Sendable {
    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        public var output: String { stdout + stderr }
    }

    public let directory: String
    public let kubeconfig: String

    /// Writes the kubeconfig into a fresh temporary directory (also kubectl's HOME and cache).
    public init(kubeconfig text: String) throws {
        guard let path = Kubectl.path, FileManager.default.isExecutableFile(atPath: path) else {
            throw TestFailure("kubectl not found: run hack/setup")
        }
        directory = try TemporaryDirectory.make(prefix: "kubectl")
        kubeconfig = directory + "/kubeconfig"
        try text.write(toFile: kubeconfig, atomically: true, encoding: .utf8)
    }

    public static let path = try? Locations.kubectl()

    public func cleanup() { TemporaryDirectory.remove(directory) }

    /// Writes `text` to a file in the directory and returns its path (for `-f`).
    public func file(_ name: String, _ text: String) throws -> String {
        let path = directory + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    public func process(_ arguments: [String], tag: String) throws -> (SpawnedProcess, String, String) {
        let out = directory + "/\(tag).out"
        let err = directory + "/\(tag).err"
        let process = try SpawnedProcess.spawn(
            Kubectl.path ?? "/usr/bin/kubectl",
            arguments: ["--kubeconfig", kubeconfig, "--cache-dir", directory + "/cache"] + arguments,
            environment: ["HOME": directory, "PATH": "/usr/bin:/bin"], output: .file(out), error: .file(err))
        return (process, out, err)
    }

    /// Runs kubectl to completion (at most `timeout`).
    @discardableResult
    public func run(_ arguments: String..., timeout: Duration = .seconds(30)) async throws -> Result {
        try await run(arguments, timeout: timeout)
    }

    public func run(_ arguments: [String], timeout: Duration = .seconds(30)) async throws -> Result {
        let (process, out, err) = try process(arguments, tag: String(UUID().uuidString.prefix(8)))
        guard let status = await process.waitForExit(timeout: timeout) else {
            await process.stop(grace: .seconds(2))
            throw TestFailure("kubectl \(arguments.joined(separator: " ")) timed out")
        }
        return Result(
            status: status.code, stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
    }

    /// Runs kubectl and fails unless it exits 0; returns standard output.
    @discardableResult
    public func ok(_ arguments: String..., timeout: Duration = .seconds(30)) async throws -> String {
        try await ok(arguments, timeout: timeout)
    }

    @discardableResult
    public func ok(_ arguments: [String], timeout: Duration = .seconds(30)) async throws -> String {
        let result = try await run(arguments, timeout: timeout)
        guard result.status == 0 else {
            throw TestFailure("kubectl \(arguments.joined(separator: " ")) exited \(result.status)\n\(result.output)")
        }
        return result.stdout
    }

    /// A long-running kubectl (`get -w`, `wait`) whose output can be polled.
    public final class Background: Sendable {
        let process: SpawnedProcess
        let out: String
        let err: String
        init(process: SpawnedProcess, out: String, err: String) {
            self.process = process
            self.out = out
            self.err = err
        }
        public var stdout: String { (try? String(contentsOfFile: out, encoding: .utf8)) ?? "" }
        public var stderr: String { (try? String(contentsOfFile: err, encoding: .utf8)) ?? "" }
        public func stop() { process.signal(SIGTERM) }
        public func waitForExit(timeout: Duration) async -> Int32? {
            await process.waitForExit(timeout: timeout)?.code
        }
        deinit { stop() }
    }

    public func start(_ arguments: String...) throws -> Background {
        let (process, out, err) = try process(arguments, tag: "bg-" + UUID().uuidString.prefix(8))
        return Background(process: process, out: out, err: err)
    }
}
