import Foundation
import ProcessSpawning

#if canImport(Glibc)
    import Glibc
#endif

/// Runs host programs (iproute2, nsenter) without blocking a thread of the cooperative pool:
/// the process's exit is reaped by `SpawnedProcess`'s own thread.
enum HostCommand {
    struct Failure: Error, CustomStringConvertible {
        var command: String
        var status: Int32
        var output: String
        var description: String { "\(command) exited with \(status): \(output.trimmingCharacters(in: .whitespacesAndNewlines))" }
    }

    /// The first executable of that name in the usual system folders.
    static func locate(_ name: String) -> String? {
        for folder in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"] {
            let path = folder + "/" + name
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    /// Runs to completion; returns standard output and error, merged.
    /// - Throws: `Failure` on a non-zero exit, or when it cannot start.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], timeout: Duration? = nil) async throws -> String {
        let (status, output) = try await status(executable, arguments, timeout: timeout)
        guard status == 0 else {
            throw Failure(command: ([executable] + arguments).joined(separator: " "), status: status, output: output)
        }
        return output
    }

    /// Runs to completion; returns the exit status (128 + signal when killed) and the output.
    static func status(_ executable: String, _ arguments: [String], timeout: Duration? = nil) async throws -> (Int32, String) {
        let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("kubesim-cmd-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let output = open(outputPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw SpawnError(executable: executable, message: "cannot open \(outputPath)") }
        let process: SpawnedProcess
        do {
            defer { close(output) }
            process = try SpawnedProcess.spawn(
                executable, arguments: arguments, environment: ProcessInfo.processInfo.environment, input: .discard,
                output: .descriptor(output), error: .descriptor(output))
        }
        var status: ExitStatus?
        if let timeout {
            status = await process.waitForExit(timeout: timeout)
        } else {
            status = await process.waitForExit()
        }
        if status == nil {
            process.signal(SIGKILL)
            status = await process.waitForExit()
        }
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        return (status?.code ?? 255, text)
    }

    /// Quotes a word for `sh`.
    static func quote(_ word: String) -> String { "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'" }
}
