import FpindexAPI
import Hummingbird
import HummingbirdTesting
import NIOCore
import Prometheus
import TestSupport
import Testing

@testable import Proxy

/// The proxy's validation as a table against its HTTP responder in this process (Hummingbird's
/// router test client: no socket, no NATS, no read backend). The catalog knows index `i`; there
/// is no NATS connection, so a request that got past validation would be answered 503, never
/// with the error its row expects: a bad write cannot reach a publish.
@Suite("fpindex-proxy refuses bad writes before publishing")
struct ProxyValidationTests {
    @Test func badRequestsGetFpindexErrors() async throws {
        let runtime = ProxyRuntime()
        runtime.catalog.apply(index: "i", operation: .create, sequence: 1)
        runtime.catalog.markSynced()
        let configuration = ProxyConfiguration(readURL: "http://127.0.0.1:9")
        let forwarder = ReadForwarder(baseURL: configuration.readURL, timeout: .seconds(1))
        let responder = ProxyResponder(
            configuration: configuration, runtime: runtime, forwarder: forwarder, registry: PrometheusCollectorRegistry())
        let json: HTTPFields = [.contentType: "application/json"]
        let cases: [(HTTPRequest.Method, String, String?, HTTPFields, Int, String)] = [
            (.post, "/i/_update", #"{"changes":[{"insert":{"id":0,"hashes":[1]}}]}"#, json, 400, "InvalidFingerprintId"),
            (.post, "/i/_update", #"{"changes":[{"insert":{"id":4294967296,"hashes":[1]}}]}"#, json, 400, "BadRequest"),
            (.post, "/i/_update", #"{"changes":[{"insert":{"id":1,"hashes":["x"]}}]}"#, json, 400, "BadRequest"),
            (.post, "/i/_update", #"{"changes":[],"unknown":1}"#, json, 400, "BadRequest"),
            (
                .post, "/i/_update", #"{"changes":[{"insert":{"id":1,"hashes":[1]}}],"metadata":{"fpindex-cluster.seq":"9"}}"#, json, 400,
                "BadRequest"
            ),
            (
                .post, "/i/_update", #"{"changes":[{"set_metadata":{"entries":[{"key":"fpindex-cluster.x","value":"1"}]}}]}"#, json, 400,
                "BadRequest"
            ),
            (
                .post, "/i/_update", #"{"changes":[{"insert":{"id":1,"hashes":[1]}}]}"#, [.contentType: "text/plain"], 415,
                "UnsupportedMediaType"
            ),
            (.put, "/i/0", #"{"hashes":[1]}"#, json, 400, "InvalidFingerprintId"),
            (.put, "/i/4294967296", #"{"hashes":[1]}"#, json, 400, "BadRequest"),
            (.put, "/i/12", #"{"hashes":[-1]}"#, json, 400, "BadRequest"),
            (.put, "/bad.name", nil, [:], 400, "InvalidIndexName"),
            (.put, "/bad.name/1", #"{"hashes":[1]}"#, json, 404, "IndexNotFound"),
            (.post, "/missing/_update", #"{"changes":[]}"#, json, 404, "IndexNotFound"),
            (.get, "/i/_update", nil, [:], 405, "MethodNotAllowed"),
            (.get, "/a/b/c", nil, [:], 404, "NotFound"),
            (
                .post, "/i/_update", String(repeating: " ", count: FpindexNames.maxBodyBytes + 1), json, 413, "BodyTooBig"
            ),
            // A bad consistency header refuses the write before it is published (it was read
            // only after the write was in the stream: a 400 for a durable write).
            (.put, "/i/12", #"{"hashes":[1]}"#, [.contentType: "application/json", ProxyResponder.consistencyHeader: "eventual"], 400, "BadRequest"),
            // Limits at the edge (fpindex cannot take request lines over about 8 KB).
            (.post, "/i/_search?x=" + String(repeating: "q", count: 5000), #"{"query":[1]}"#, json, 414, "URITooLong"),
            // Valid: past validation, and refused only because there is no NATS to publish to.
            (.post, "/i/_update", #"{"changes":[{"insert":{"id":1,"hashes":[1]}}]}"#, json, 503, "ServiceUnavailable"),
        ]
        try await Application(responder: responder).test(.router) { client in
            for (method, path, body, headers, status, name) in cases {
                let reply = try await client.execute(
                    uri: path, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
                let label = "\(method) \(path) \((body ?? "").prefix(100))"
                #expect(reply.status.code == status, "\(label)")
                #expect((try? ErrorResponse.decode(from: Array(buffer: reply.body), format: .json))?.error == name, "\(label)")
            }
            let wrongMethod = try await client.execute(uri: "/i/_update", method: .get)
            #expect(wrongMethod.headers[.allow] == "POST")
        }
        await forwarder.shutdown()
    }
}

/// The proxy's parsers under random input, through the real process.
@Suite("fpindex-proxy under fuzzed bodies", .timeLimit(.minutes(3)))
struct ProxyFuzzTests {
    @Test func fuzzedBodiesNeverCrashOrFail() async throws {
        try await withProxy { p in
            _ = try await p.http.json(.PUT, "/f")
            var random = SystemRandomNumberGenerator()
            let valid = UpdateRequest(changes: [.insert(id: 5, hashes: [1, 2, 3]), .delete(id: 6)], metadata: ["a": "b"])
            let routes: [(HTTPMethod, String)] = [(.POST, "/f/_update"), (.PUT, "/f/9"), (.PUT, "/f"), (.DELETE, "/g")]
            var statuses: [Int: Int] = [:]
            for round in 0..<400 {
                let format: WireFormat = round % 2 == 0 ? .json : .msgpack
                var body = valid.encoded(as: format)
                if round % 4 < 2 {
                    for _ in 0..<Int.random(in: 1...4, using: &random) where !body.isEmpty {
                        body[Int.random(in: 0..<body.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                    }
                } else {
                    body = (0..<Int.random(in: 0...40, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
                }
                let (method, path) = routes[round % routes.count]
                let contentType = format == .json ? "application/json" : "application/vnd.msgpack"
                let reply = try await p.http.request(method, path, body: body, headers: [("Content-Type", contentType)])
                statuses[reply.status, default: 0] += 1
                #expect(reply.status < 500, "\(method) \(path) \(body) -> \(reply.status) \(reply.text)")
            }
            #expect(p.proxy.isRunning)
            #expect(statuses[400, default: 0] > 100)
        }
    }
}
