import Foundation
import FpindexAPI
import JetStream
import Logging
import NIOCore
import TestSupport
import Testing

@Suite("fpindex-proxy forwards reads", .timeLimit(.minutes(3)))
struct ProxyReadTests {
    @Test func searchesReachTheBackendUnchanged() async throws {
        try await withProxy { p in
            let backend = TestHTTPClient(baseURL: p.devURL)
            _ = try await backend.json(.PUT, "/r")
            _ = try await backend.json(
                .POST, "/r/_update",
                #"{"changes":[{"insert":{"id":1,"hashes":[1,2,3]}},{"insert":{"id":2,"hashes":[2,3]}}],"metadata":{"x":"y"}}"#)
            for (method, path, body) in [
                (HTTPMethod.POST, "/r/_search", #"{"query":[1,2,3]}"#), (.GET, "/r", nil), (.GET, "/r/_health", nil),
                (.GET, "/r/_status", nil),
                (.POST, "/nope/_search", #"{"query":[1]}"#), (.POST, "/r/_search", #"{"bad":1}"#),
            ] as [(HTTPMethod, String, String?)] {
                let direct = try await backend.json(method, path, body)
                let proxied = try await p.http.json(method, path, body)
                #expect(proxied.status == direct.status, "\(path)")
                #expect(proxied.body == direct.body, "\(path)")
                #expect(proxied.contentType == direct.contentType, "\(path)")
            }
            let msgpack = try await p.http.request(
                .POST, "/r/_search", body: SearchRequest(query: [2, 3]).encoded(as: .msgpack),
                headers: [("Content-Type", "application/vnd.msgpack")])
            #expect(try SearchResponse.decode(from: msgpack.body, format: .msgpack).results.map(\.id) == [1, 2])
        }
    }

    @Test func backendDownIs503() async throws {
        try await withProxy { p in
            await p.dev.stop()
            let reply = try await p.http.json(.POST, "/r/_search", #"{"query":[1]}"#)
            #expect(reply.status == 503)
            #expect(reply.errorName == "ServiceUnavailable")
            // Writes do not depend on the backend.
            #expect(try await p.http.json(.PUT, "/w").status == 200)
        }
    }
}

@Suite("fpindex-proxy on a stream it does not manage", .timeLimit(.minutes(2)))
struct ProxyVerifyOnlyTests {
    /// The controller creates the stream from the cluster's spec (replicas, storage) and runs
    /// proxies with --no-manage-stream: they verify what they rely on, not how it is kept.
    /// (A proxy refused a memory or a replicated stream and never became ready.)
    @Test func aStreamKeptDifferentlyIsAccepted() async throws {
        try await withNATSServer { nats in
            let manager = try await NATSClient.connect(NATSConfiguration(servers: [nats.url]), logger: Logger(label: "manager"))
            try await manager.ensureStream(StreamSettings(duplicateWindow: .seconds(30), memoryStorage: true))
            let p = try await ProxyHarness.start(nats: nats, arguments: ["--no-manage-stream"])
            #expect(try await p.http.json(.PUT, "/m").status == 200)
            await p.stop()
            // What the proxy relies on still counts: another subject prefix is refused.
            let other = try ChildProcess(
                name: "fpindex-proxy", executable: try Locations.executable("fpindex-proxy"),
                arguments: ["--listen", "127.0.0.1:0", "--no-manage-stream", "--subject-prefix", "other"],
                environment: ["NATS_URL": nats.url, "FPINDEX_URL": "http://127.0.0.1:9"])
            _ = try await other.waitForLogLine(containing: "differs in subjects")
            await other.stop()
            await manager.close()
        }
    }
}

@Suite("fpindex-proxy through a NATS outage", .timeLimit(.minutes(5)))
struct ProxyDurabilityTests {
    @Test func everyAcknowledgedWriteSurvivesAnOutage() async throws {
        try await withProxy { p in
            _ = try await p.http.json(.PUT, "/o")
            let acknowledged = Acknowledged()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for writer in 0..<3 {
                    group.addTask {
                        for n in 0..<400 {
                            let id = UInt32(writer * 10_000 + n + 1)
                            let started = ContinuousClock.now
                            let reply = try? await p.http.request(
                                .PUT, "/o/\(id)", body: Array(#"{"hashes":[\#(id)]}"#.utf8),
                                headers: [("Content-Type", "application/json")],
                                timeout: .seconds(30))
                            let elapsed = ContinuousClock.now - started
                            guard let reply else { continue }
                            await acknowledged.record(id: id, status: reply.status, elapsed: elapsed)
                        }
                    }
                }
                // Progress, not a rate: on a loaded machine (the suite beside a release build)
                // 100 acknowledgements once took over 30 s.
                try await eventually(timeout: .seconds(120), "some writes before the outage") { await acknowledged.ok.count > 20 ? true : nil }
                await p.nats.kill()
                try await eventually("writes refused during the outage") { await acknowledged.statuses[503, default: 0] > 0 ? true : nil }
                try await p.nats.restart()
                try await group.waitForAll()
            }
            let statuses = await acknowledged.statuses
            #expect(Set(statuses.keys).isSubset(of: [200, 503]), "\(statuses)")
            #expect(await acknowledged.slowest < .seconds(30))
            // Reconnect the inspector's view too, then check every 200.
            try await eventually("the proxy to be ready again") { try await p.http.request(.GET, "/_ready").status == 200 ? true : nil }
            for id in await acknowledged.ok {
                let stored = try await p.stored(p.subjects.fingerprint("o", id: id))
                #expect(stored?.payload == FingerprintRecord(hashes: [id]).payload, "acknowledged \(id) lost")
            }
        }
    }
}

actor Acknowledged {
    var ok: [UInt32] = []
    var statuses: [Int: Int] = [:]
    var slowest: Duration = .zero

    func record(id: UInt32, status: Int, elapsed: Duration) {
        statuses[status, default: 0] += 1
        if status == 200 { ok.append(id) }
        slowest = max(slowest, elapsed)
    }
}

@Suite("fpindex-proxy shutdown", .timeLimit(.minutes(3)))
struct ProxyShutdownTests {
    @Test func sigtermFinishesInFlightWritesAndExits() async throws {
        try await withNATSServer { nats in
            let p = try await ProxyHarness.start(nats: nats)
            _ = try await p.http.json(.PUT, "/s")
            let acknowledged = Acknowledged()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for writer in 0..<4 {
                    group.addTask {
                        for n in 0..<2000 {
                            let id = UInt32(writer * 10_000 + n + 1)
                            let body = UpdateRequest(changes: (0..<20).map { .insert(id: id * 100 + UInt32($0), hashes: [id]) })
                            guard
                                let reply = try? await p.http.request(
                                    .POST, "/s/_update", body: body.encoded(as: .msgpack),
                                    headers: [("Content-Type", "application/vnd.msgpack")],
                                    timeout: .seconds(30))
                            else { return }  // the server is gone
                            await acknowledged.record(id: id, status: reply.status, elapsed: .zero)
                        }
                    }
                }
                try await eventually("writes under way") { await acknowledged.ok.count > 50 ? true : nil }
                p.proxy.signal(SIGTERM)
                try await group.waitForAll()
            }
            let status = await p.proxy.waitForExit(timeout: .seconds(30))
            #expect(status == 0, "\(p.proxy.output)")
            let statuses = await acknowledged.statuses
            #expect(Set(statuses.keys).isSubset(of: [200, 503]), "\(statuses)")
            for id in await acknowledged.ok.suffix(50) {
                #expect(try await p.stored(p.subjects.fingerprint("s", id: id * 100 + 19)) != nil, "acknowledged \(id) lost")
            }
            await p.stop()
        }
    }

    /// The HTTP server stops before the read backend's connection pool closes: a search in
    /// flight when SIGTERM arrives still gets its answer. (The services were listed so that
    /// the pool closed first, and such a search got 503.)
    @Test func aSearchInFlightAtSigtermGetsItsAnswer() async throws {
        try await withNATSServer { nats in
            let backend = try await HeldBackend.start()
            // The backend is held until the test releases it: a test process slowed by a busy
            // machine must not turn that into the proxy's own read timeout (503).
            let p = try await ProxyHarness.start(nats: nats, readURL: backend.url, arguments: ["--read-timeout", "120000"])
            let search = Task { try await p.http.json(.POST, "/r/_search", #"{"query":[1,2,3]}"#) }
            var arrivals = backend.arrived.makeAsyncIterator()
            _ = await arrivals.next()
            p.proxy.signal(SIGTERM)
            // The HTTP server is the first service told to stop; until it has stopped, the
            // connection pool stays open.
            _ = try await p.proxy.waitForLogLine(containing: "Triggering graceful shutdown for service", "Application")
            await backend.release()
            let reply = try await search.value
            #expect(reply.status == 200, "\(reply.text)\n\(p.proxy.output)")
            #expect(reply.text == #"{"results":[]}"#)
            #expect(await p.proxy.waitForExit(timeout: .seconds(30)) == 0, "\(p.proxy.output)")
            await p.stop()
            await backend.stop()
        }
    }
}

/// The proxy shields fpindex: hostile reads (long targets, long and many headers, bodies on
/// reads, odd methods, names no index can have) get a 4xx or a normal answer, never a 5xx, and
/// the fpindex behind the proxy answers its health check after every one. The real fpindex
/// aborts (safety-checked builds) or drops the connection on request lines over about 8 KB:
/// nothing a client sends reaches it but a request rebuilt from the route.
@Suite("fpindex-proxy shields fpindex", .timeLimit(.minutes(3)))
struct ProxyShieldTests {
    @Test(arguments: IndexServerKind.all) func hostileReadsNeverReachTheIndexAsTheyCame(server: IndexServerKind) async throws {
        try await withNATSServer { nats in
            let port = try FreePort.find()
            let (index, scratch) = try await server.start(port: port, directory: nil)
            defer { if let scratch { TemporaryDirectory.remove(scratch) } }
            let backend = TestHTTPClient(baseURL: "http://127.0.0.1:\(port)")
            _ = try await backend.json(.PUT, "/h")
            _ = try await backend.json(.POST, "/h/_update", #"{"changes":[{"insert":{"id":7,"hashes":[1,2,3]}}]}"#)
            let p = try await ProxyHarness.start(nats: nats, readURL: "http://127.0.0.1:\(port)")
            let search = Array(#"{"query":[1,2,3]}"#.utf8)
            let json = [("Content-Type", "application/json")]
            let longest = String(repeating: "n", count: FpindexNames.maxIndexNameLength)
            var random = SeededRandom(seed: 22)
            var cases: [(String, HTTPMethod, String, [UInt8]?, [(String, String)], Set<Int>)] = [
                ("a 9000-character query string", .POST, "/h/_search?x=" + String(repeating: "q", count: 9000), search, json, [414]),
                ("a 9000-character Accept", .POST, "/h/_search", search, json + [("Accept", String(repeating: "a", count: 9000))], [431]),
                (
                    "a 5000-character Accept, forwarded as JSON", .POST, "/h/_search", search,
                    json + [("Accept", Array(repeating: "text/html", count: 500).joined(separator: ","))], [200]
                ),
                ("a query string on a read", .GET, "/h?" + String(repeating: "x=1&", count: 700), nil, [], [200]),
                ("150 header fields", .GET, "/h", nil, (0..<150).map { ("X-Pad-\($0)", "v") }, [431]),
                ("the longest legal index name", .GET, "/\(longest)/_status", nil, [], [404]),
                ("a name no index can have", .GET, "/" + String(repeating: ".", count: 300), nil, [], [404]),
                ("a body on a health check", .GET, "/h/_health", Array(repeating: 0x41, count: 5000), [], [200]),
                ("a foreign Content-Type on a search", .POST, "/h/_search", search, [("Content-Type", "text/plain")], [415]),
                ("a search by GET", .GET, "/h/_search", nil, [], [405]),
                ("many segments", .GET, "/" + Array(repeating: "s", count: 400).joined(separator: "/"), nil, [], [404]),
                ("escaped bytes in a name", .POST, "/%00%ff%2e%2e/_search", search, json, [404]),
            ]
            for method in ["OPTIONS", "PATCH", "TRACE", "PROPFIND"] {
                cases.append(("method \(method)", HTTPMethod(rawValue: method), "/h", nil, [], [405]))
            }
            // Thousands of malformed reads (the fpindex's health is checked after each).
            for n in 0..<2000 {
                let length = Int.random(in: 1...7000, using: &random)
                let junk = String((0..<length).map { _ in Array("abc/._-?=&~")[Int.random(in: 0..<11, using: &random)] })
                cases.append(("junk \(n)", n % 2 == 0 ? .GET : .POST, "/h/" + junk, n % 2 == 0 ? nil : search, json, []))
            }
            for (what, method, path, body, headers, expected) in cases {
                let reply = try await p.http.request(method, path, body: body, headers: headers)
                if expected.isEmpty {
                    #expect(reply.status < 500, "\(what): \(reply.status) \(reply.text.prefix(200))")
                } else {
                    #expect(expected.contains(reply.status), "\(what): \(reply.status) \(reply.text.prefix(200))")
                }
                #expect(try await backend.request(.GET, "/_health").status == 200, "the index after \(what)\n\(index.output)")
            }
            // And it still answers a search as before.
            let found = try await p.http.request(.POST, "/h/_search", body: search, headers: json)
            #expect(found.status == 200 && found.text.contains("\"id\":7"), "\(found.text)")
            await p.stop()
            await index.stop()
        }
    }
}
