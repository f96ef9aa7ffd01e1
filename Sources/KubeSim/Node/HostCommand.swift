import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Runs host programs (iproute2, nsenter) without blocking a thread of the cooperative pool:
/// the process's exit is awaited through its termination handler.
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
        let outputURL = FileManager.default.temporaryDirectory.appendingPathComponent("kubesim-cmd-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: outputURL.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: outputURL) }
        let handle = try FileHandle(forWritingTo: outputURL)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { finished in
                let code = finished.terminationReason == .uncaughtSignal ? 128 + finished.terminationStatus : finished.terminationStatus
                continuation.resume(returning: code)
            }
            do { try process.run() } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
                return
            }
            if let timeout {
                let pid = process.processIdentifier
                Task {
                    try? await Task.sleep(for: timeout)
                    if process.isRunning { kill(pid, SIGKILL) }
                }
            }
        }
        try? handle.close()
        let output = (try? String(contentsOf: outputURL, encoding: .utf8)) ?? ""
        return (status, output)
    }

    /// Quotes a word for `sh`.
    static func quote(_ word: String) -> String { "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'" }
}
