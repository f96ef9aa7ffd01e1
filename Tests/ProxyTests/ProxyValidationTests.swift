import FpindexAPI
import TestSupport
import Testing

@Suite("fpindex-proxy refuses bad writes and publishes nothing", .timeLimit(.minutes(3)))
struct ProxyValidationTests {
    @Test func badRequestsGetFpindexErrors() async throws {
        try await withProxy { p in
            _ = try await p.http.json(.PUT, "/i")
            let before = try await p.lastSequence()
            let cases: [(HTTPMethod, String, String?, [(String, String)], Int, String)] = [
                (.POST, "/i/_update", #"{"changes":[{"insert":{"id":0,"hashes":[1]}}]}"#, [], 400, "InvalidFingerprintId"),
                (.POST, "/i/_update", #"{"changes":[{"insert":{"id":4294967296,"hashes":[1]}}]}"#, [], 400, "BadRequest"),
                (.POST, "/i/_update", #"{"changes":[{"insert":{"id":1,"hashes":["x"]}}]}"#, [], 400, "BadRequest"),
                (.POST, "/i/_update", #"{"changes":[],"unknown":1}"#, [], 400, "BadRequest"),
                (
                    .POST, "/i/_update", #"{"changes":[{"insert":{"id":1,"hashes":[1]}}],"metadata":{"fpindex-cluster.seq":"9"}}"#, [], 400,
                    "BadRequest"
                ),
                (
                    .POST, "/i/_update", #"{"changes":[{"set_metadata":{"entries":[{"key":"fpindex-cluster.x","value":"1"}]}}]}"#, [], 400,
                    "BadRequest"
                ),
                (
                    .POST, "/i/_update", #"{"changes":[{"insert":{"id":1,"hashes":[1]}}]}"#, [("Content-Type", "text/plain")], 415,
                    "UnsupportedMediaType"
                ),
                (.PUT, "/i/0", #"{"hashes":[1]}"#, [], 400, "InvalidFingerprintId"),
                (.PUT, "/i/4294967296", #"{"hashes":[1]}"#, [], 400, "BadRequest"),
                (.PUT, "/i/12", #"{"hashes":[-1]}"#, [], 400, "BadRequest"),
                (.PUT, "/bad.name", nil, [], 400, "InvalidIndexName"),
                (.PUT, "/bad.name/1", #"{"hashes":[1]}"#, [], 404, "IndexNotFound"),
                (.POST, "/missing/_update", #"{"changes":[]}"#, [], 404, "IndexNotFound"),
                (.GET, "/i/_update", nil, [], 405, "MethodNotAllowed"),
                (.GET, "/a/b/c", nil, [], 404, "NotFound"),
            ]
            for (method, path, body, headers, status, name) in cases {
                let reply = try await p.http.request(
                    method, path, body: body.map { Array($0.utf8) },
                    headers: headers.isEmpty && body != nil ? [("Content-Type", "application/json")] : headers)
                #expect(reply.status == status, "\(method) \(path) \(body ?? "")")
                #expect(reply.errorName == name, "\(method) \(path) \(body ?? "")")
            }
            let big = [UInt8](repeating: 0x20, count: FpindexNames.maxBodyBytes + 1)
            let tooBig = try await p.http.request(.POST, "/i/_update", body: big, headers: [("Content-Type", "application/json")])
            #expect(tooBig.status == 413)
            #expect(tooBig.errorName == "BodyTooBig")
            #expect(try await p.lastSequence() == before)
        }
    }

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
