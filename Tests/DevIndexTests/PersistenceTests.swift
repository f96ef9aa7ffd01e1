import Foundation
import FpindexAPI
import NIOCore
import TestSupport
import Testing

@Suite("fpindex-dev persistence", .timeLimit(.minutes(3)))
struct PersistenceTests {
    func state(_ dev: DevIndexProcess, _ index: String) async throws -> (info: [String: Any], status: [String: Any]) {
        (try await dev.http.request(.GET, "/\(index)").jsonObject(), try await dev.http.request(.GET, "/\(index)/_status").jsonObject())
    }

    @Test func restartAfterSIGTERMKeepsEverything() async throws {
        let dir = try TemporaryDirectory.make(prefix: "dev-term")
        defer { TemporaryDirectory.remove(dir) }
        let generation = try await withDevIndex(directory: dir) { (dev: DevIndexProcess) async throws in
            let created = try await dev.http.json(.PUT, "/a").jsonObject()
            _ = try await dev.http.json(.PUT, "/gone")
            _ = try await dev.http.json(.DELETE, "/gone")
            _ = try await dev.http.json(
                .POST, "/a/_update",
                #"{"changes":[{"insert":{"id":1,"hashes":[1,2,3]}},{"insert":{"id":2,"hashes":[2,3]}}],"metadata":{"seq":"10"}}"#)
            _ = try await dev.http.json(.DELETE, "/a/2")
            _ = try await dev.http.json(.PUT, "/a/3", #"{"hashes":[3]}"#)
            return try #require(created["generation"] as? Int)
        }
        try await withDevIndex(directory: dir) { (dev: DevIndexProcess) async throws in
            let (info, status) = try await state(dev, "a")
            #expect(info["version"] as? Int == 3)
            #expect(info["metadata"] as? [String: String] == ["seq": "10"])
            #expect(status["generation"] as? Int == generation)
            #expect(try await dev.http.request(.GET, "/a/2").status == 404)
            #expect(try await dev.http.request(.GET, "/a/1").jsonObject()["version"] as? Int == 1)
            #expect(try await dev.http.request(.GET, "/gone").status == 404)
            let search = try await dev.http.json(.POST, "/a/_search", #"{"query":[1,2,3],"min_score":1,"score_pct":0}"#)
            #expect(search.text == #"{"results":[{"id":1,"score":3},{"id":3,"score":1}]}"#)
            // A name's last generation survives restarts, also a deleted index's.
            let next = try await dev.http.json(.PUT, "/gone").jsonObject()
            #expect(try #require(next["generation"] as? Int) == 2)
            #expect(try await dev.http.json(.PUT, "/b").jsonObject()["generation"] as? Int == 1)
        }
    }

    @Test func sigkillLosesNoAcknowledgedWrite() async throws {
        let dir = try TemporaryDirectory.make(prefix: "dev-kill")
        defer { TemporaryDirectory.remove(dir) }
        let dev = try await DevIndexProcess.start(directory: dir)
        _ = try await dev.http.json(.PUT, "/k")
        let acknowledged = AcknowledgedWrites()
        // Writers keep writing while the process is killed; each records what was acknowledged.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<4 {
                group.addTask {
                    for n in 0..<10_000 {
                        let id = UInt32(writer * 100_000 + n + 1)
                        let body = UpdateRequest(
                            changes: [.insert(id: id, hashes: [id, id &+ 1])], metadata: ["writer-\(writer)": String(n)])
                        guard
                            let reply = try? await dev.http.request(
                                .POST, "/k/_update", body: body.encoded(as: .msgpack),
                                headers: [("Content-Type", "application/vnd.msgpack")],
                                timeout: .seconds(5)),
                            reply.status == 200
                        else { return }
                        await acknowledged.add(id: id, writer: writer, n: n)
                    }
                }
            }
            try await eventually(timeout: .seconds(60), "some writes to be acknowledged") {
                await acknowledged.count >= 200 ? true : nil
            }
            dev.process.signal(SIGKILL)
            try await group.waitForAll()
        }
        await dev.process.waitForExit()
        let ids = await acknowledged.ids
        let lastPerWriter = await acknowledged.lastPerWriter
        try await withDevIndex(directory: dir) { restarted in
            let info = try await restarted.http.request(.GET, "/k").jsonObject()
            let version = try #require(info["version"] as? Int)
            #expect(version >= ids.count)
            let metadata = try #require(info["metadata"] as? [String: String])
            for (writer, n) in lastPerWriter {
                #expect(Int(metadata["writer-\(writer)"] ?? "-1")! >= n, "writer \(writer)")
            }
            let stats = try #require(info["stats"] as? [String: Int])
            #expect(try #require(stats["num_docs"]) >= ids.count)
            for id in ids.shuffled().prefix(300) {
                let reply = try await restarted.http.request(.GET, "/k/\(id)")
                #expect(reply.status == 200, "acknowledged fingerprint \(id) lost")
            }
        }
    }

    @Test func tornTailIsCutOff() async throws {
        let dir = try TemporaryDirectory.make(prefix: "dev-torn")
        defer { TemporaryDirectory.remove(dir) }
        try await withDevIndex(directory: dir) { (dev: DevIndexProcess) async throws in
            _ = try await dev.http.json(.PUT, "/t")
            _ = try await dev.http.json(.PUT, "/t/1", #"{"hashes":[1]}"#)
        }
        // A crash in the middle of an append leaves a partial record.
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/fpindex-dev.wal"))
        try log.seekToEnd()
        try log.write(contentsOf: Data([0x40, 0x00, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x93, 0x02]))
        try log.close()
        try await withDevIndex(directory: dir) { (dev: DevIndexProcess) async throws in
            #expect(try await dev.http.request(.GET, "/t/1").status == 200)
            #expect(try await dev.http.json(.PUT, "/t/2", #"{"hashes":[2]}"#).status == 200)
            #expect(dev.process.stderr.contains("torn"))
        }
        try await withDevIndex(directory: dir) { (dev: DevIndexProcess) async throws in
            #expect(try await dev.http.request(.GET, "/t").jsonObject()["version"] as? Int == 2)
            #expect(try await dev.http.request(.GET, "/t/2").status == 200)
        }
    }
}

actor AcknowledgedWrites {
    var ids: [UInt32] = []
    var lastPerWriter: [Int: Int] = [:]
    var count: Int { ids.count }

    func add(id: UInt32, writer: Int, n: Int) {
        ids.append(id)
        lastPerWriter[writer] = max(lastPerWriter[writer] ?? -1, n)
    }
}
