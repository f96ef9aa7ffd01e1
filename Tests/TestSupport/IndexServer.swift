import Foundation
import Testing

/// Which fpindex a test runs: the project's fpindex-dev, or the real upstream fpindex named by
/// `$FPINDEX_REAL_BINARY` (built by the real-fpindex build script; see README, Tests). Suites
/// that take `IndexServerKind.all` as arguments run once against each that is here.
public enum IndexServerKind: Sendable, CustomTestStringConvertible {
    case dev
    case real(binary: String)

    /// The real fpindex binary, when `$FPINDEX_REAL_BINARY` names an executable.
    public static let realBinary: String? = {
        guard let path = ProcessInfo.processInfo.environment["FPINDEX_REAL_BINARY"], !path.isEmpty else { return nil }
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }()

    /// fpindex-dev, and the real fpindex when it is here.
    public static var all: [IndexServerKind] { [.dev] + (realBinary.map { [.real(binary: $0)] } ?? []) }

    public var testDescription: String {
        switch self {
        case .dev: "fpindex-dev"
        case .real: "real fpindex"
        }
    }

    /// The program: the built fpindex-dev, or the real binary.
    public func executable() throws -> String {
        switch self {
        case .dev: try Locations.executable("fpindex-dev")
        case .real(let binary): binary
        }
    }

    /// Starts this fpindex on 127.0.0.1:`port` and waits until `/_health` answers 200.
    ///
    /// - Parameter directory: where it keeps its data. Without one, fpindex-dev keeps everything
    ///   in memory; the real fpindex always needs a folder, so it gets a new empty one each start
    ///   (`scratch`, for the caller to remove), so that both come back empty after a crash.
    /// - Parameter arguments: more of the real fpindex's flags (fpindex-dev takes them too).
    /// - Parameter niceness: run it under `nice` (see `ChildProcess`).
    public func start(port: Int, directory: String?, arguments extra: [String] = [], niceness: Int = 0) async throws
        -> (process: ChildProcess, scratch: String?)
    {
        let process: ChildProcess
        var scratch: String?
        switch self {
        case .dev:
            var arguments = ["--host", "127.0.0.1", "--port", String(port)]
            if let directory { arguments += ["--dir", directory] }
            process = try ChildProcess(name: "fpindex-dev", executable: try executable(), arguments: arguments + extra, niceness: niceness)
        case .real:
            if directory == nil { scratch = try TemporaryDirectory.make(prefix: "fpindex-real") }
            let folder = directory ?? scratch!
            process = try ChildProcess(
                name: "fpindex", executable: try executable(),
                arguments: ["--dir", folder, "--host", "127.0.0.1", "--port", String(port)] + extra,
                niceness: niceness)
        }
        let http = TestHTTPClient(baseURL: "http://127.0.0.1:\(port)")
        do {
            try await eventually("\(process.name) on port \(port) to be healthy\n\(process.output)") {
                guard process.isRunning else { throw TestFailure("\(process.name) exited\n\(process.output)") }
                return try await http.request(.GET, "/_health").status == 200 ? true : nil
            }
        } catch {
            await process.stop(timeout: .seconds(2))
            if let scratch { TemporaryDirectory.remove(scratch) }
            throw error
        }
        return (process, scratch)
    }
}
