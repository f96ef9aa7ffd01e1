import Foundation
import TestSupport

/// The real fpindex-dev executable, started on a free port as the conformance suite starts it.
final class DevIndexProcess: Sendable {
    let process: ChildProcess
    let url: String
    let http: TestHTTPClient

    static func start(directory: String? = nil, port: Int = 0) async throws -> DevIndexProcess {
        var arguments = ["--host", "127.0.0.1", "--port", String(port)]
        if let directory { arguments += ["--dir", directory] }
        let process = try ChildProcess(name: "fpindex-dev", executable: try Locations.executable("fpindex-dev"), arguments: arguments)
        let line = try await process.waitForLine(containing: "listening on ")
        guard let url = line.split(separator: " ").last.map(String.init) else { throw TestFailure("no URL in '\(line)'") }
        return DevIndexProcess(process: process, url: url)
    }

    private init(process: ChildProcess, url: String) {
        self.process = process
        self.url = url
        self.http = TestHTTPClient(baseURL: url)
    }

    var port: Int { Int(url.split(separator: ":").last!)! }

    func stop() async { await process.stop() }
}

/// Runs `body` against a fresh in-memory fpindex-dev, always stopping it.
func withDevIndex<T>(directory: String? = nil, _ body: (DevIndexProcess) async throws -> T) async throws -> T {
    let server = try await DevIndexProcess.start(directory: directory)
    do {
        let result = try await body(server)
        await server.stop()
        return result
    } catch {
        await server.stop()
        print(server.process.output)
        throw error
    }
}
