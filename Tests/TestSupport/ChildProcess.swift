import Foundation
@_exported import ProcessSpawning

/// A child process started by a test, with its output captured to files under a temporary
/// directory (so a failing test can show it) and cleaned up when stopped. Started as a
/// container runtime starts programs (`SpawnedProcess`: clean signal mask and dispositions).
public final class ChildProcess: Sendable {
    public let name: String
    public let process: SpawnedProcess
    public let stdoutPath: String
    public let stderrPath: String

    /// Starts `executable` with `arguments`, in this process's environment plus `environment`.
    /// - Parameter niceness: above 0, the program runs under `nice`, every thread of it: a test
    ///   that keeps both cores busy for minutes then yields them to the rest of the suite, whose
    ///   in-process servers have time limits, instead of starving it.
    public init(name: String, executable: String, arguments: [String], environment: [String: String]? = nil, niceness: Int = 0) throws {
        self.name = name
        let dir = try TemporaryDirectory.make(prefix: "\(name)-log")
        stdoutPath = dir + "/stdout"
        stderrPath = dir + "/stderr"
        // nice execs the program: the pid, signals and exit status are the program's own.
        let (program, programArguments) =
            niceness > 0 ? ("/usr/bin/nice", ["-n", String(niceness), executable] + arguments) : (executable, arguments)
        process = try SpawnedProcess.spawn(
            program, arguments: programArguments,
            environment: ProcessInfo.processInfo.environment.merging(environment ?? [:]) { $1 },
            output: .file(stdoutPath), error: .file(stderrPath))
    }

    public var pid: Int32 { process.pid }
    public var isRunning: Bool { process.isRunning }

    public var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    public var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Both outputs, for a failure message.
    public var output: String {
        "--- \(name) stdout ---\n\(stdout)\n--- \(name) stderr ---\n\(stderr)"
    }

    /// Sends a signal (SIGTERM, SIGKILL, ...).
    public func signal(_ signal: Int32) { process.signal(signal) }

    /// Waits for the process to exit, up to `timeout`; returns its exit status (128 + signal
    /// when killed by one), or nil if it is still running.
    @discardableResult
    public func waitForExit(timeout: Duration = .seconds(20)) async -> Int32? {
        await process.waitForExit(timeout: timeout)?.code
    }

    /// Stops the process: SIGTERM, then SIGKILL if it does not exit in time.
    public func stop(timeout: Duration = .seconds(10)) async {
        await process.stop(grace: timeout)
    }

    /// Waits until standard output has a line containing `marker` and returns that line.
    public func waitForLine(containing marker: String, timeout: Duration = .seconds(30)) async throws -> String {
        try await eventually(timeout: timeout, "\(name) to print '\(marker)'\n\(output)") {
            guard self.process.isRunning || self.stdout.contains(marker) else {
                throw TestFailure("\(self.name) exited (\(self.process.exitStatus.map { "\($0)" } ?? "?"))\n\(self.output)")
            }
            return self.stdout.split(separator: "\n").first(where: { $0.contains(marker) }).map(String.init)
        }
    }

    /// Waits until the log (standard error) has a line containing every one of `markers` and
    /// returns that line; a process that exits first fails the wait at once.
    public func waitForLogLine(containing markers: String..., timeout: Duration = .seconds(30)) async throws -> String {
        try await eventually(timeout: timeout, "\(name) to log a line with \(markers)\n\(output)") {
            let line = self.stderr.split(separator: "\n").first { line in markers.allSatisfy { line.contains($0) } }
            if let line { return String(line) }
            guard self.process.isRunning else {
                throw TestFailure("\(self.name) exited (\(self.process.exitStatus.map { "\($0)" } ?? "?"))\n\(self.output)")
            }
            return nil
        }
    }

    deinit {
        process.signal(SIGKILL)
    }
}

/// An error a test helper raises, with a message meant for the person reading the failure.
public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Polls `condition` until it returns a value or the deadline passes. Never relies on a fixed sleep.
@discardableResult
public func eventually<T>(
    timeout: Duration = .seconds(30), _ what: @autoclosure () -> String, interval: Duration = .milliseconds(25),
    _ condition: () async throws -> T?
) async throws -> T {
    let deadline = ContinuousClock.now + timeout
    var lastError: (any Error)?
    while true {
        do {
            if let value = try await condition() { return value }
        } catch let failure as TestFailure {
            throw failure
        } catch {
            lastError = error
        }
        if ContinuousClock.now > deadline {
            throw TestFailure("timed out after \(timeout) waiting for \(what())" + (lastError.map { "\nlast error: \($0)" } ?? ""))
        }
        try await Task.sleep(for: interval)
    }
}

/// Temporary directories for tests.
public enum TemporaryDirectory {
    public static func make(prefix: String) throws -> String {
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        let path = "\(base)/fpindex-test-\(prefix)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    public static func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }
}
