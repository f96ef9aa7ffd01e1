import Foundation
import FpindexAPI
import JetStream
import TestSupport
import Testing

/// The tools as the `fpindex-tools` user of manifests/nats/nats-server-permissions.conf, over
/// TLS: the server refuses them nothing they need.
@Suite(.timeLimit(.minutes(10))) struct ToolsPermissionTests {
    @Test func theToolsWorkAsTheirOwnNATSUser() async throws {
        try await withSecuredNATS { nats in
            let directory = try TemporaryDirectory.make(prefix: "tools-user")
            defer { TemporaryDirectory.remove(directory) }
            try await ExportFile.write(path: directory + "/rows.copy", count: 500)
            let environment = nats.environment(as: .tools)
            // The stream does not exist yet: the import creates it.
            let imported = try await runTool("fpindex-import", ["--index", "main", directory + "/rows.copy"], environment: environment)
            #expect(imported.status == 0, "\(imported.stdout)\(imported.stderr)")
            #expect(try imported.int("published") == 500)
            let again = try await runTool("fpindex-import", ["--index", "main", directory + "/rows.copy"], environment: environment)
            #expect(try again.int("unchanged") == 500, "the re-run read the stream through its scan")

            let backup = directory + "/stream.fpbak"
            let created = try await runTool("fpindex-backup", ["create", backup], environment: environment)
            #expect(created.status == 0, "\(created.stdout)\(created.stderr)")
            // Deleting the stream is the controller's (or an administrator's) right, not the tools'.
            let controller = try await nats.connect(as: .controller)
            try await controller.deleteStream("fpindex")
            await controller.close()
            let restored = try await runTool("fpindex-backup", ["restore", backup], environment: environment)
            #expect(restored.status == 0, "\(restored.stdout)\(restored.stderr)")
            #expect(try restored.int("stream_messages") == 501)

            // Against an empty index every fingerprint is missing (status 1): what matters here is
            // that the stream was read to the end.
            let port = try FreePort.find()
            let (index, _) = try await IndexServerKind.dev.start(port: port, directory: nil)
            defer { Task { await index.stop() } }
            #expect(try await TestHTTPClient(baseURL: "http://127.0.0.1:\(port)").json(.PUT, "/main").status == 200)
            let verified = try await runTool(
                "fpindex-verify", ["--index", "main", "--fpindex-url", "http://127.0.0.1:\(port)"], environment: environment)
            #expect(verified.status == 1, "\(verified.stdout)\(verified.stderr)")
            #expect(try verified.int("missing") == 500)

            #expect(nats.violations.filter { $0.contains("user:fpindex-tools") }.isEmpty, "\(nats.violations)")
        }
    }
}
