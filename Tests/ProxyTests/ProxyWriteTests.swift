import FpindexAPI
import Hummingbird
import HummingbirdTesting
import JetStream
import Logging
import NIOCore
import Prometheus
import TestSupport
import Testing

@testable import Proxy

@Suite("fpindex-proxy writes into the stream", .timeLimit(.minutes(3)))
struct ProxyWriteTests {
    @Test func updatesBecomeOneMessagePerSubject() async throws {
        try await withProxy { p in
            let created = try await p.http.json(.PUT, "/main").jsonObject()
            let generation = try #require(created["generation"] as? Int)
            let lifecycle = try #require(try await p.stored(p.subjects.lifecycle("main")))
            #expect(lifecycle.payload == LifecycleRecord(.create).payload)
            #expect(lifecycle.sequence == UInt64(generation))

            let reply = try await p.http.json(
                .POST, "/main/_update",
                #"{"changes":[{"insert":{"id":1,"hashes":[1,300,70000]}},{"insert":{"id":2,"hashes":[9]}},{"delete":{"id":2}},{"set_metadata":{"entries":[{"key":"k","value":"v1"}]}}],"metadata":{"k":"v2","other":"x"}}"#
            )
            #expect(reply.status == 200)
            let version = try #require(try reply.jsonObject()["version"] as? Int)
            #expect(UInt64(version) == (try await p.lastSequence()))

            let one = try #require(try await p.stored(p.subjects.fingerprint("main", id: 1)))
            #expect(one.payload == FingerprintRecord(hashes: [1, 300, 70000]).payload)
            let two = try #require(try await p.stored(p.subjects.fingerprint("main", id: 2)))
            #expect(two.payload == [0x80])  // tombstone: the last change for id 2 wins
            let meta = try #require(try await p.stored(p.subjects.metadata("main", key: "k")))
            #expect(meta.payload == MetadataRecord(value: "v2").payload)
            #expect(meta.subject == "fpindex.main._meta.6b")

            // One message per subject: 4 subjects plus the lifecycle record.
            let info = try #require(try await p.inspector.streamInfo("fpindex"))
            #expect(info.state.messages == 5)

            // GET /:index/:id answers from the stream.
            #expect(try await p.http.request(.GET, "/main/1").jsonObject()["version"] as? Int == Int(one.sequence))
            #expect(try await p.http.request(.GET, "/main/2").errorName == "FingerprintNotFound")
            #expect(try await p.http.request(.HEAD, "/main/1").status == 200)
            #expect(try await p.http.request(.GET, "/main/3").status == 404)

            let metrics = try await p.http.request(.GET, "/_metrics").text
            #expect(metrics.contains("fpindex_proxy_nats_connected 1"))
            #expect(metrics.contains("fpindex_proxy_published_messages_total 4"))
            #expect(metrics.contains("fpindex_proxy_publish_batch_duration_seconds_bucket"))
            #expect(metrics.contains(#"fpindex_proxy_http_requests_total{route="update",method="POST",status="200"} 1"#))
        }
    }

    @Test func singleWritesAndCompaction() async throws {
        try await withProxy { p in
            _ = try await p.http.json(.PUT, "/i")
            for round in 0..<5 {
                let reply = try await p.http.json(.PUT, "/i/7", #"{"hashes":[\#(round)]}"#)
                #expect(reply.status == 200)
                #expect(reply.text == "{}")
            }
            #expect(try await p.stored(p.subjects.fingerprint("i", id: 7))?.payload == FingerprintRecord(hashes: [4]).payload)
            let info = try #require(try await p.inspector.streamInfo("fpindex"))
            #expect(info.state.messages == 2)  // compaction: only the last message per subject
            #expect(try await p.http.json(.DELETE, "/i/7").status == 200)
            #expect(try await p.stored(p.subjects.fingerprint("i", id: 7))?.payload == [0x80])
            #expect(try await p.http.request(.GET, "/i/7").status == 404)
        }
    }

    @Test func msgpackWrites() async throws {
        try await withProxy { p in
            let msgpack = [("Content-Type", "application/vnd.msgpack")]
            let created = try await p.http.request(.PUT, "/m", body: CreateIndexRequest().encoded(as: .msgpack), headers: msgpack)
            #expect(created.contentType == "application/vnd.msgpack")
            #expect(try CreateIndexResponse.decode(from: created.body, format: .msgpack).ready)
            let update = UpdateRequest(changes: (1...50).map { .insert(id: UInt32($0), hashes: [UInt32($0)]) })
            let reply = try await p.http.request(.POST, "/m/_update", body: update.encoded(as: .msgpack), headers: msgpack)
            #expect(reply.status == 200)
            let version = try VersionResponse.decode(from: reply.body, format: .msgpack).version
            #expect(version == (try await p.lastSequence()))
            #expect(try await p.inspector.streamInfo("fpindex")?.state.messages == 51)
        }
    }

    @Test func deletingAnIndexPurgesItsSubjects() async throws {
        try await withProxy { p in
            _ = try await p.http.json(.PUT, "/d")
            _ = try await p.http.json(.POST, "/d/_update", #"{"changes":[{"insert":{"id":1,"hashes":[1]}}],"metadata":{"a":"b"}}"#)
            _ = try await p.http.json(.PUT, "/keep")
            _ = try await p.http.json(.PUT, "/keep/1", #"{"hashes":[1]}"#)
            let deleted = try await p.http.json(.DELETE, "/d")
            #expect(try deleted.jsonObject()["deleted"] as? Bool == true)
            #expect(try await p.stored(p.subjects.fingerprint("d", id: 1)) == nil)
            #expect(try await p.stored(p.subjects.metadata("d", key: "a")) == nil)
            #expect(try await p.stored(p.subjects.lifecycle("d"))?.payload == LifecycleRecord(.delete).payload)
            #expect(try await p.stored(p.subjects.fingerprint("keep", id: 1)) != nil)
            #expect(try await p.http.json(.PUT, "/d/1", #"{"hashes":[1]}"#).errorName == "IndexNotFound")
            #expect(try await p.http.json(.DELETE, "/d").jsonObject()["deleted"] as? Bool == false)
            #expect(try await p.http.json(.DELETE, "/d", #"{"expect_exists":true}"#).errorName == "IndexNotFound")
            // Re-created: a new generation, and writes work again.
            let again = try await p.http.json(.PUT, "/d", #"{"expect_does_not_exist":true}"#).jsonObject()
            #expect((again["generation"] as? Int).map { UInt64($0) } == (try await p.stored(p.subjects.lifecycle("d")))?.sequence)
            #expect(try await p.http.json(.PUT, "/d/1", #"{"hashes":[1]}"#).status == 200)
            #expect(try await p.http.json(.PUT, "/d", #"{"expect_does_not_exist":true}"#).errorName == "IndexAlreadyExists")
        }
    }

    /// AcoustID's HTTP client labels an empty body `application/octet-stream` (aiohttp does);
    /// the real fpindex takes it on routes whose body is optional, and so does the proxy.
    @Test func anEmptyBodyIsFineWhateverItsLabel() async throws {
        try await withProxy { (p: ProxyHarness) async throws in
            let octet = [("Content-Type", "application/octet-stream")]
            #expect(try await p.http.request(.PUT, "/ac", headers: octet).status == 200)
            #expect(try await p.http.request(.DELETE, "/ac/5", headers: octet).status == 200)
            #expect(try await p.http.request(.DELETE, "/ac", headers: octet).status == 200)
            #expect(try await p.http.request(.PUT, "/ac/5", headers: octet).status == 415)
            #expect(try await p.http.request(.PUT, "/ac", body: Array("x".utf8), headers: octet).status == 415)
        }
    }

    @Test func expectedVersionIsACompareAndSwapOnTheIndex() async throws {
        try await withProxy { p in
            _ = try await p.http.json(.PUT, "/v")
            let first = try await p.http.json(.PUT, "/v/1", #"{"hashes":[1]}"#)
            #expect(first.status == 200)
            let current = try #require(try await p.stored(p.subjects.fingerprint("v", id: 1))).sequence
            let before = try await p.lastSequence()
            let stale = try await p.http.json(
                .POST, "/v/_update", #"{"changes":[{"insert":{"id":2,"hashes":[2]}}],"expected_version":\#(current - 1)}"#)
            #expect(stale.status == 409)
            #expect(stale.errorName == "VersionMismatch")
            #expect(try await p.lastSequence() == before)
            let fresh = try await p.http.json(
                .POST, "/v/_update", #"{"changes":[{"insert":{"id":2,"hashes":[2]}}],"expected_version":\#(current)}"#)
            #expect(fresh.status == 200)
        }
    }

    @Test func authTokenGuardsWrites() async throws {
        try await withProxy(authToken: "s3cret") { (p: ProxyHarness) async throws in
            #expect(try await p.http.json(.PUT, "/a").status == 401)
            #expect(try await p.http.json(.PUT, "/a", headers: [("Authorization", "Bearer wrong")]).errorName == "Unauthorized")
            #expect(try await p.http.json(.PUT, "/a", headers: [("Authorization", "Bearer s3cret")]).status == 200)
            #expect(try await p.http.json(.PUT, "/a/1", #"{"hashes":[1]}"#).status == 401)
            #expect(try await p.http.json(.POST, "/a/_search", #"{"query":[1]}"#).status != 401)
            #expect(!p.proxy.stderr.contains("s3cret"))
        }
    }
}

/// Lifecycle records and index generations when writers race, made deterministic: the proxy's
/// responder runs in this process with a catalog that has not heard of what another proxy
/// (played by the test) just published.
@Suite("fpindex-proxy lifecycle races", .timeLimit(.minutes(2)))
struct ProxyLifecycleRaceTests {
    static func responder(_ nats: NATSServer) async throws -> (ProxyResponder, ProxyRuntime, NATSClient, ReadForwarder) {
        let client = try await NATSClient.connect(NATSConfiguration(servers: [nats.url]), logger: Logger(label: "proxy"))
        try await client.ensureStream(StreamSettings())
        let runtime = ProxyRuntime()
        runtime.attach(client)
        runtime.catalog.markSynced()
        let configuration = ProxyConfiguration(readURL: "http://127.0.0.1:9")
        let forwarder = ReadForwarder(baseURL: configuration.readURL, timeout: .seconds(1))
        let responder = ProxyResponder(
            configuration: configuration, runtime: runtime, forwarder: forwarder, registry: PrometheusCollectorRegistry())
        return (responder, runtime, client, forwarder)
    }

    /// Another proxy created the index a moment ago: this one must not publish a second create
    /// record (a new generation, which replicas would start afresh, dropping the writes between).
    @Test func aCreateThatLostTheRaceAnswersTheWinnersGeneration() async throws {
        try await withNATSServer { nats in
            let (responder, _, client, forwarder) = try await Self.responder(nats)
            let subjects = StreamSubjects()
            let winner = try await client.publish(subject: subjects.lifecycle("r"), payload: LifecycleRecord(.create).payload)
            _ = try await client.publish(subject: subjects.fingerprint("r", id: 1), payload: FingerprintRecord(hashes: [1]).payload)
            try await Application(responder: responder).test(.router) { http in
                let reply = try await http.execute(uri: "/r", method: .put)
                #expect(reply.status == .ok)
                let created = try CreateIndexResponse.decode(from: Array(buffer: reply.body), format: .json)
                #expect(created.generation == winner.sequence)
                let strict = try await http.execute(
                    uri: "/r", method: .put, headers: [.contentType: "application/json"],
                    body: ByteBuffer(string: #"{"expect_does_not_exist":true}"#))
                #expect(strict.status == .conflict)
            }
            let lifecycle = try await client.lastMessage(stream: "fpindex", subject: subjects.lifecycle("r"))
            #expect(lifecycle?.sequence == winner.sequence, "a second create record was published")
            await forwarder.shutdown()
            await client.close()
        }
    }

    /// A write that raced with a delete sits after the delete record; once the index is
    /// created again it is not part of the new generation, and the proxy does not report it.
    @Test func dataOfAnEarlierGenerationIsNotReported() async throws {
        try await withNATSServer { nats in
            let (responder, _, client, forwarder) = try await Self.responder(nats)
            let subjects = StreamSubjects()
            try await Application(responder: responder).test(.router) { http in
                #expect(try await http.execute(uri: "/g", method: .put).status == .ok)
                #expect(try await http.execute(uri: "/g", method: .delete).status == .ok)
                // The racing write, published by a proxy that still believed the index existed.
                _ = try await client.publish(subject: subjects.fingerprint("g", id: 5), payload: FingerprintRecord(hashes: [5]).payload)
                #expect(try await http.execute(uri: "/g", method: .put).status == .ok)
                let reply = try await http.execute(uri: "/g/5", method: .get)
                #expect(reply.status == .notFound)
                #expect((try? ErrorResponse.decode(from: Array(buffer: reply.body), format: .json))?.error == "FingerprintNotFound")
            }
            await forwarder.shutdown()
            await client.close()
        }
    }
}
