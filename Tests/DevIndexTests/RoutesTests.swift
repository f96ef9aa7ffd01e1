import Foundation
import FpindexAPI
import TestSupport
import Testing

extension HTTPReply {
    /// The error name of an fpindex error reply (JSON).
    var errorName: String? { (try? jsonObject())?["error"] as? String }
}

@Suite("fpindex-dev routes over HTTP", .timeLimit(.minutes(2)))
struct RoutesTests {
    @Test func healthAndMetrics() async throws {
        try await withDevIndex { dev in
            let health = try await dev.http.request(.GET, "/_health")
            #expect(health.status == 200)
            #expect(health.text == "OK\n")
            let head = try await dev.http.request(.HEAD, "/_health")
            #expect(head.status == 200)
            #expect(head.body.isEmpty)
            // A fresh server declares every family of the real fpindex, series or not.
            let fresh = try await dev.http.request(.GET, "/_metrics").text
            for family in ["fpindex_searches_total counter", "fpindex_search_misses_total counter", "fpindex_docs gauge",
                           "fpindex_search_duration_seconds histogram", "fpindex_checkpoints_total counter"] {
                #expect(fresh.contains("# TYPE \(family)\n"), "\(family) in \(fresh)")
            }
            _ = try await dev.http.json(.PUT, "/m")
            _ = try await dev.http.json(.PUT, "/m/5", #"{"hashes":[1,2]}"#)
            let metrics = try await dev.http.request(.GET, "/_metrics")
            #expect(metrics.status == 200)
            #expect(metrics.contentType?.hasPrefix("text/plain") == true)
            #expect(metrics.text.contains("fpindex_dev_fingerprints 1"))
            #expect(metrics.text.contains("fpindex_dev_indexes 1"))
            #expect(metrics.text.contains(#"fpindex_dev_http_requests_total{route="fingerprint",method="PUT",status="200"} 1"#))
            // The real fpindex's metrics, under its names and with its index label.
            _ = try await dev.http.json(.POST, "/m/_search", #"{"query":[1,2]}"#)
            _ = try await dev.http.json(.POST, "/m/_search", #"{"query":[9]}"#)
            let real = try await dev.http.request(.GET, "/_metrics").text
            #expect(real.contains(#"fpindex_searches_total{index="m"} 2"#), "\(real)")
            #expect(real.contains(#"fpindex_search_hits_total{index="m"} 1"#))
            #expect(real.contains(#"fpindex_search_misses_total{index="m"} 1"#))
            #expect(real.contains(#"fpindex_updates_total{index="m"} 1"#))
            #expect(real.contains(#"fpindex_search_duration_seconds_bucket{index="m",le="0.001"}"#))
            #expect(real.contains(#"fpindex_search_duration_seconds_count{index="m"} 2"#))
            #expect(real.contains(#"fpindex_docs{index="m"} 1"#))
            #expect(real.contains(#"fpindex_version{index="m"} 1"#))
            #expect(real.components(separatedBy: "# TYPE fpindex_searches_total ").count == 2, "declared once")
            // A deleted index's series go, as in the real fpindex; the families stay declared.
            _ = try await dev.http.json(.DELETE, "/m")
            let afterDelete = try await dev.http.request(.GET, "/_metrics").text
            #expect(!afterDelete.contains(#"fpindex_searches_total{index="m"}"#), "\(afterDelete)")
            #expect(!afterDelete.contains(#"fpindex_docs{index="m"}"#))
            #expect(afterDelete.contains("# TYPE fpindex_searches_total counter\n"))
        }
    }

    @Test func indexLifecycle() async throws {
        try await withDevIndex { dev in
            let created = try await dev.http.json(.PUT, "/main")
            #expect(created.status == 200)
            #expect(created.contentType == "application/json; charset=UTF-8")
            let first = try created.jsonObject()
            #expect(first["version"] as? Int == 0)
            #expect(first["ready"] as? Bool == true)
            let generation = try #require(first["generation"] as? Int)
            // As the real fpindex: generations are per index, 1 for a name never seen.
            #expect(generation == 1)

            // Idempotent; with expect_does_not_exist it is a conflict.
            let again = try await dev.http.json(.PUT, "/main")
            #expect(again.status == 200)
            #expect(try again.jsonObject()["generation"] as? Int == generation)
            let conflict = try await dev.http.json(.PUT, "/main", #"{"expect_does_not_exist":true}"#)
            #expect(conflict.status == 409)
            #expect(conflict.errorName == "IndexAlreadyExists")

            // Write something, then delete and re-create: new generation, version 0, no metadata.
            let update = try await dev.http.json(
                .POST, "/main/_update", #"{"changes":[{"insert":{"id":1,"hashes":[1]}}],"metadata":{"k":"v"}}"#)
            #expect(update.status == 200)
            let deleted = try await dev.http.json(.DELETE, "/main")
            #expect(try deleted.jsonObject()["deleted"] as? Bool == true)
            let deletedAgain = try await dev.http.json(.DELETE, "/main")
            #expect(try deletedAgain.jsonObject()["deleted"] as? Bool == false)
            let expectExists = try await dev.http.json(.DELETE, "/main", #"{"expect_exists":true}"#)
            #expect(expectExists.status == 404)
            #expect(expectExists.errorName == "IndexNotFound")
            let gone = try await dev.http.request(.GET, "/main")
            #expect(gone.status == 404)
            #expect(gone.errorName == "IndexNotFound")

            let recreated = try await dev.http.json(.PUT, "/main", #"{"expect_does_not_exist":true}"#)
            let second = try recreated.jsonObject()
            #expect(second["version"] as? Int == 0)
            #expect(try #require(second["generation"] as? Int) == generation + 1)
            let info = try await dev.http.request(.GET, "/main").jsonObject()
            #expect((info["metadata"] as? [String: Any])?.isEmpty == true)
            let stats = try #require(info["stats"] as? [String: Any])
            #expect(stats["num_docs"] as? Int == 0)
            #expect(stats["num_segments"] as? Int == 1, "the real fpindex counts a fresh index's empty segment")

            // A caller may choose the generation (replicas agree on it).
            let chosen = try await dev.http.json(.PUT, "/other", #"{"generation":12345}"#)
            #expect(try chosen.jsonObject()["generation"] as? Int == 12345)
            let status = try await dev.http.request(.GET, "/other/_status").jsonObject()
            #expect(status["generation"] as? Int == 12345)
            #expect(status["version"] as? Int == 0)
            #expect(status["file_version"] as? Int == 0)
            // On a live index the same generation is the index as it is; another is refused.
            #expect(try await dev.http.json(.PUT, "/other", #"{"generation":12345}"#).status == 200)
            let older = try await dev.http.json(.PUT, "/other", #"{"generation":12}"#)
            #expect(older.status == 409)
            #expect(older.errorName == "OlderIndexAlreadyExists")
            let newer = try await dev.http.json(.PUT, "/other", #"{"generation":99999}"#)
            #expect(newer.status == 409)
            #expect(newer.errorName == "NewerIndexAlreadyExists")
            // After a delete, a generation must be newer than the name's last one.
            _ = try await dev.http.json(.DELETE, "/other")
            let reused = try await dev.http.json(.PUT, "/other", #"{"generation":12345}"#)
            #expect(reused.status == 409)
            #expect(reused.errorName == "OlderIndexAlreadyExists")
            #expect(try await dev.http.json(.PUT, "/other").jsonObject()["generation"] as? Int == 12346)
        }
    }

    @Test(arguments: ["a.b", "a%20b", String(repeating: "x", count: 256), "%C3%A9"])
    func invalidIndexNames(name: String) async throws {
        try await withDevIndex { dev in
            let create = try await dev.http.json(.PUT, "/\(name)")
            #expect(create.status == 400)
            #expect(create.errorName == "InvalidIndexName")
            let get = try await dev.http.request(.GET, "/\(name)")
            #expect(get.status == 404)
            #expect(get.errorName == "IndexNotFound")
            let search = try await dev.http.json(.POST, "/\(name)/_search", #"{"query":[1]}"#)
            #expect(search.status == 404)
        }
    }

    @Test func missingIndexOnEveryIndexRoute() async throws {
        try await withDevIndex { dev in
            for (method, path, body) in [
                ("GET", "/nope", nil), ("HEAD", "/nope", nil), ("GET", "/nope/_health", nil), ("GET", "/nope/_status", nil),
                ("POST", "/nope/_search", #"{"query":[1]}"#), ("POST", "/nope/_update", #"{"changes":[]}"#),
                ("PUT", "/nope/1", #"{"hashes":[1]}"#), ("DELETE", "/nope/1", nil), ("GET", "/nope/1", nil),
            ] as [(String, String, String?)] {
                let reply = try await dev.http.json(.init(rawValue: method), path, body)
                #expect(reply.status == 404, "\(method) \(path)")
                if method != "HEAD" { #expect(reply.errorName == "IndexNotFound", "\(method) \(path)") }
            }
        }
    }

    @Test func versionsMetadataAndExpectedVersion() async throws {
        try await withDevIndex { dev in
            _ = try await dev.http.json(.PUT, "/i")
            let v1 = try await dev.http.json(.POST, "/i/_update", #"{"changes":[]}"#)
            #expect(try v1.jsonObject()["version"] as? Int == 1)
            let v2 = try await dev.http.json(
                .POST, "/i/_update",
                #"{"changes":[{"insert":{"id":1,"hashes":[1,2]}},{"set_metadata":{"entries":[{"key":"a","value":"1"},{"key":"b","value":"x"}]}}],"metadata":{"a":"2"},"expected_version":1}"#
            )
            #expect(try v2.jsonObject()["version"] as? Int == 2)
            let mismatch = try await dev.http.json(
                .POST, "/i/_update", #"{"changes":[{"insert":{"id":9,"hashes":[9]}}],"metadata":{"a":"3"},"expected_version":1}"#)
            #expect(mismatch.status == 409)
            #expect(mismatch.errorName == "VersionMismatch")
            // Nothing of the refused write is visible.
            let missing = try await dev.http.request(.GET, "/i/9")
            #expect(missing.status == 404)
            #expect(missing.errorName == "FingerprintNotFound")
            let info = try await dev.http.request(.GET, "/i").jsonObject()
            #expect(info["version"] as? Int == 2)
            #expect(info["metadata"] as? [String: String] == ["a": "2", "b": "x"])

            // Single writes add one each; the fingerprint reports the version that wrote it.
            #expect(try await dev.http.json(.PUT, "/i/7", #"{"hashes":[]}"#).text == "{}")
            #expect(try await dev.http.request(.GET, "/i/7").jsonObject()["version"] as? Int == 3)
            #expect(try await dev.http.request(.GET, "/i/1").jsonObject()["version"] as? Int == 2)
            #expect(try await dev.http.request(.HEAD, "/i/7").status == 200)
            #expect(try await dev.http.json(.DELETE, "/i/7").status == 200)
            #expect(try await dev.http.json(.DELETE, "/i/123456").status == 200)  // never existed: fine
            #expect(try await dev.http.request(.GET, "/i/7").status == 404)
            #expect(try await dev.http.request(.HEAD, "/i/7").status == 404)
            #expect(try await dev.http.request(.GET, "/i").jsonObject()["version"] as? Int == 5)

            // Clearing metadata is setting "".
            _ = try await dev.http.json(.POST, "/i/_update", #"{"changes":[],"metadata":{"b":""}}"#)
            #expect(try await dev.http.request(.GET, "/i").jsonObject()["metadata"] as? [String: String] == ["a": "2", "b": ""])
        }
    }

    @Test func lastChangeForAnIdWins() async throws {
        try await withDevIndex { dev in
            _ = try await dev.http.json(.PUT, "/i")
            _ = try await dev.http.json(
                .POST, "/i/_update",
                #"{"changes":[{"insert":{"id":1,"hashes":[1]}},{"delete":{"id":1}},{"insert":{"id":2,"hashes":[5]}},{"insert":{"id":2,"hashes":[6]}}]}"#
            )
            #expect(try await dev.http.request(.GET, "/i/1").status == 404)
            let old = try await dev.http.json(.POST, "/i/_search", #"{"query":[5]}"#).jsonObject()
            #expect((old["results"] as? [Any])?.isEmpty == true)
            let new = try await dev.http.json(.POST, "/i/_search", #"{"query":[6]}"#).jsonObject()
            #expect((new["results"] as? [[String: Int]]) == [["id": 2, "score": 1]])
            let stats = try await dev.http.request(.GET, "/i").jsonObject()["stats"] as? [String: Int]
            // As the real fpindex answers (measured): the deletion of 1 still counts in the stats.
            #expect(stats?["num_docs"] == 2)
            #expect(stats?["min_doc_id"] == 1)
            #expect(stats?["max_doc_id"] == 2)
            // A later write is another segment: its ids count again, a deleted unknown id widens the range.
            _ = try await dev.http.json(.POST, "/i/_update", #"{"changes":[{"insert":{"id":2,"hashes":[7]}}]}"#)
            _ = try await dev.http.json(.POST, "/i/_update", #"{"changes":[{"delete":{"id":5}}]}"#)
            let later = try await dev.http.request(.GET, "/i").jsonObject()["stats"] as? [String: Int]
            #expect(later == ["min_doc_id": 1, "max_doc_id": 5, "num_segments": 3, "num_docs": 4])
        }
    }

    @Test func badBodiesAndIds() async throws {
        try await withDevIndex { dev in
            _ = try await dev.http.json(.PUT, "/i")
            for body in [#"{"changes":[{"insert":{"id":1,"hashes":[-1]}}]}"#, #"{"changes":[],"extra":1}"#, "{", #"{"metadata":{}}"#] {
                let reply = try await dev.http.json(.POST, "/i/_update", body)
                #expect(reply.status == 400, "\(body)")
                #expect(reply.errorName == "BadRequest", "\(body)")
            }
            let zero = try await dev.http.json(.POST, "/i/_update", #"{"changes":[{"insert":{"id":0,"hashes":[]}}]}"#)
            #expect(zero.status == 400)
            #expect(zero.errorName == "InvalidFingerprintId")
            #expect(try await dev.http.request(.GET, "/i/0").errorName == "InvalidFingerprintId")
            #expect(try await dev.http.request(.GET, "/i/x1").errorName == "BadRequest")
            #expect(try await dev.http.request(.GET, "/i/4294967296").errorName == "BadRequest")
            #expect(try await dev.http.json(.PUT, "/i/5", #"{"hashes":[1.5]}"#).errorName == "BadRequest")
            #expect(try await dev.http.json(.PUT, "/i/5").errorName == "BadRequest")
            #expect(try await dev.http.json(.POST, "/i/_search", #"{}"#).errorName == "BadRequest")
            // None of the refused writes changed the version.
            #expect(try await dev.http.request(.GET, "/i").jsonObject()["version"] as? Int == 0)
        }
    }

    @Test func unknownRoutesMethodsAndBigBodies() async throws {
        try await withDevIndex { dev in
            _ = try await dev.http.json(.PUT, "/i")
            let notFound = try await dev.http.request(.GET, "/i/1/2")
            #expect(notFound.status == 404)
            #expect(notFound.errorName == "NotFound")
            #expect(try await dev.http.request(.GET, "/").errorName == "NotFound")
            let wrongMethod = try await dev.http.request(.GET, "/i/_search")
            #expect(wrongMethod.status == 405)
            #expect(wrongMethod.errorName == "MethodNotAllowed")
            #expect(wrongMethod.headers.first(name: "allow") == "POST")
            #expect(try await dev.http.request(.POST, "/i").status == 405)
            #expect(try await dev.http.request(.PUT, "/_health").status == 405)

            let big = [UInt8](repeating: 0x20, count: FpindexNames.maxBodyBytes + 1)
            let tooBig = try await dev.http.request(.POST, "/i/_update", body: big, headers: [("Content-Type", "application/json")])
            #expect(tooBig.status == 413)
            #expect(tooBig.errorName == "BodyTooBig")
            // Exactly at the limit is accepted (white space around a valid body).
            var atLimit = Array(#"{"changes":[]}"#.utf8)
            atLimit += [UInt8](repeating: 0x20, count: FpindexNames.maxBodyBytes - atLimit.count)
            #expect(
                try await dev.http.request(.POST, "/i/_update", body: atLimit, headers: [("Content-Type", "application/json")]).status
                    == 200)
        }
    }

    @Test func indexHealthAndInfo() async throws {
        try await withDevIndex { dev in
            _ = try await dev.http.json(.PUT, "/i")
            let health = try await dev.http.request(.GET, "/i/_health")
            #expect(health.status == 200)
            #expect(health.text == "OK\n")
            #expect(try await dev.http.request(.HEAD, "/i/_health").status == 200)
            #expect(try await dev.http.request(.GET, "/x/_health").status == 404)
            _ = try await dev.http.json(
                .POST, "/i/_update", #"{"changes":[{"insert":{"id":9,"hashes":[1]}},{"insert":{"id":3,"hashes":[]}}]}"#)
            let info = try await dev.http.request(.GET, "/i").jsonObject()
            #expect(info["version"] as? Int == 1)
            let stats = try #require(info["stats"] as? [String: Int])
            #expect(stats["min_doc_id"] == 3)
            #expect(stats["max_doc_id"] == 9)
            #expect(stats["num_docs"] == 2)
            #expect(stats["num_segments"] != nil)
            let head = try await dev.http.request(.HEAD, "/i")
            #expect(head.status == 200)
            #expect(head.body.isEmpty)
        }
    }
}

@Suite("fpindex-dev takes the real fpindex's command line", .timeLimit(.minutes(1)))
struct CommandLineTests {
    /// The command line the controller gives the real image, plus tuning flags a user may add.
    @Test func theRealCommandLineStartsIt() async throws {
        let directory = try TemporaryDirectory.make(prefix: "dev-flags")
        defer { TemporaryDirectory.remove(directory) }
        let process = try ChildProcess(
            name: "fpindex-dev", executable: try Locations.executable("fpindex-dev"),
            arguments: [
                "--dir", directory, "--host", "127.0.0.1", "--port", "0", "--checkpoint-threshold", "500000",
                "--checkpoint-age-ms", "0", "--load-concurrency", "2", "--legacy-port", "0",
            ])
        defer { Task { await process.stop() } }
        let line = try await process.waitForLine(containing: "listening on ")
        let url = try #require(line.split(separator: " ").last.map(String.init))
        #expect(try await TestHTTPClient(baseURL: url).request(.GET, "/_health").status == 200)
    }

    @Test(arguments: [
        (["--peers", "a,b"], "does not replicate"), (["--coordinator", "nats://x"], "does not replicate"),
        (["--legacy-port", "70000"], "--legacy-port must be 0-65535"), (["--checkpoint-threshold=-1"], "must not be negative"),
    ])
    func whatItCannotDoIsRefusedClearly(arguments: [String], message: String) async throws {
        let process = try ChildProcess(
            name: "fpindex-dev", executable: try Locations.executable("fpindex-dev"), arguments: ["--port", "0"] + arguments)
        let status = await process.waitForExit(timeout: .seconds(20))
        #expect(status != nil && status != 0)
        #expect(process.stderr.contains(message), "\(process.stderr)")
    }
}
