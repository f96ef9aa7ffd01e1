import Foundation
import Proxy
import TestSupport
import Testing

/// Bearer tokens from a file, as a Kubernetes Secret volume provides them: several valid at
/// once, re-read when the file changes, reads open unless `--protect-reads`.
@Suite("fpindex-proxy authorizes with bearer tokens", .timeLimit(.minutes(2)))
struct ProxyAuthTests {
    /// Runs `body` with a proxy whose tokens come from a file the test may rewrite.
    func withTokenFile(_ contents: String, arguments: [String] = [], _ body: (ProxyHarness, String) async throws -> Void) async throws {
        let folder = try TemporaryDirectory.make(prefix: "proxy-auth")
        defer { TemporaryDirectory.remove(folder) }
        let file = "\(folder)/tokens"
        try Self.replace(file, with: contents)
        try await withNATSServer { nats in
            let harness = try await ProxyHarness.start(nats: nats, arguments: ["--auth-token-file", file] + arguments)
            do {
                try await body(harness, file)
                await harness.stop()
            } catch {
                print(harness.proxy.output)
                await harness.stop()
                throw error
            }
        }
    }

    /// Replaces the file at once (written aside, then renamed), as the kubelet swaps a Secret
    /// volume's contents: a reader never sees half a file.
    static func replace(_ file: String, with contents: String) throws {
        try contents.write(toFile: file + ".new", atomically: false, encoding: .utf8)
        guard rename(file + ".new", file) == 0 else { throw TestFailure("rename failed: errno \(errno)") }
    }

    static func bearer(_ token: String) -> [(String, String)] { [("Authorization", "Bearer \(token)")] }

    @Test func everyTokenOfTheFileAuthorizesWritesAndReadsStayOpen() async throws {
        try await withTokenFile("# rotation: old, then new\nold-t0ken\n\n  new-t0ken  \n") { p, _ in
            let refused = try await p.http.json(.PUT, "/a")
            #expect(refused.status == 401)
            #expect(refused.errorName == "Unauthorized")
            #expect(try await p.http.json(.PUT, "/a", headers: Self.bearer("# rotation: old, then new")).status == 401)
            #expect(try await p.http.json(.PUT, "/a", headers: Self.bearer("old-t0ke")).status == 401)
            #expect(try await p.http.json(.PUT, "/a", headers: [("Authorization", "old-t0ken")]).status == 401)
            #expect(try await p.http.json(.PUT, "/a", headers: Self.bearer("old-t0ken")).status == 200)
            #expect(try await p.http.json(.PUT, "/a/1", #"{"hashes":[1]}"#, headers: Self.bearer("new-t0ken")).status == 200)
            #expect(try await p.http.json(.DELETE, "/a/1").status == 401)
            #expect(try await p.http.json(.POST, "/a/_update", #"{"changes":[]}"#).status == 401)
            // Reads and searches are not writes: open.
            #expect(try await p.http.json(.POST, "/a/_search", #"{"query":[1]}"#).status != 401)
            #expect(try await p.http.request(.GET, "/a").status != 401)
            let metrics = String(decoding: try await p.http.request(.GET, "/_metrics").body, as: UTF8.self)
            #expect(metrics.contains("fpindex_proxy_unauthorized_total 6"))
            #expect(!p.proxy.output.contains("t0ken"))
        }
    }

    @Test func aRotatedFileTakesEffectWithoutARestart() async throws {
        try await withTokenFile("first-token\n") { p, file in
            #expect(try await p.http.json(.PUT, "/a", headers: Self.bearer("first-token")).status == 200)
            // Rotation step 1: both. Step 2: only the new one.
            try Self.replace(file, with: "first-token\nsecond-token\n")
            try await eventually("the second token accepted") {
                try await p.http.json(.PUT, "/b", headers: Self.bearer("second-token")).status == 200 ? true : nil
            }
            #expect(try await p.http.json(.PUT, "/c", headers: Self.bearer("first-token")).status == 200)
            try Self.replace(file, with: "second-token\n")
            try await eventually("the first token refused") {
                try await p.http.json(.PUT, "/d", headers: Self.bearer("first-token")).status == 401 ? true : nil
            }
            #expect(try await p.http.json(.PUT, "/d", headers: Self.bearer("second-token")).status == 200)
            // A file emptied or removed mid-update neither opens the proxy nor locks clients out.
            try Self.replace(file, with: "\n")
            try await eventually("the empty file noticed") {
                p.proxy.output.contains("the auth token file holds no token") ? true : nil
            }
            #expect(try await p.http.json(.PUT, "/e").status == 401)
            #expect(try await p.http.json(.PUT, "/e", headers: Self.bearer("second-token")).status == 200)
            #expect(p.proxy.isRunning)
            #expect(!p.proxy.output.contains("first-token") && !p.proxy.output.contains("second-token"))
        }
    }

    @Test func protectedReadsNeedATokenButProbesAndMetricsDoNot() async throws {
        try await withTokenFile("reader-token\n", arguments: ["--protect-reads"]) { p, _ in
            #expect(try await p.http.json(.PUT, "/a", headers: Self.bearer("reader-token")).status == 200)
            let search = try await p.http.json(.POST, "/a/_search", #"{"query":[1]}"#)
            #expect(search.status == 401)
            #expect(search.errorName == "Unauthorized")
            #expect(try await p.http.request(.GET, "/a").status == 401)
            #expect(try await p.http.request(.GET, "/a/_health").status == 401)
            // Forwarded with the token (the read backend has no updater here: it knows no index).
            let authorized = try await p.http.json(.POST, "/a/_search", #"{"query":[1]}"#, headers: Self.bearer("reader-token"))
            #expect(authorized.status == 404)
            #expect(authorized.errorName == "IndexNotFound")
            for probe in ["/_health", "/_ready", "/_metrics"] {
                #expect(try await p.http.request(.GET, probe).status == 200, "\(probe)")
            }
        }
    }

    @Test func aProxyWithoutAUsableTokenDoesNotStart() async throws {
        let folder = try TemporaryDirectory.make(prefix: "proxy-auth")
        defer { TemporaryDirectory.remove(folder) }
        try "# no token yet\n\n".write(toFile: "\(folder)/empty", atomically: true, encoding: .utf8)
        for (arguments, message) in [
            (["--auth-token-file", "\(folder)/empty"], "holds no token"),
            (["--auth-token-file", "\(folder)/missing"], "cannot read"),
            (["--protect-reads"], "--protect-reads / PROTECT_READS needs a token"),
        ] {
            let proxy = try ChildProcess(
                name: "fpindex-proxy", executable: try Locations.executable("fpindex-proxy"),
                arguments: ["--listen", "127.0.0.1:0"] + arguments, environment: ["NATS_URL": "nats://127.0.0.1:9"])
            #expect(await proxy.waitForExit(timeout: .seconds(20)) != 0, "\(arguments)")
            #expect(proxy.output.contains(message), "\(proxy.output)")
        }
    }
}
