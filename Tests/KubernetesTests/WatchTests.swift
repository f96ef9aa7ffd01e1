import Foundation
import KubeSim
import Kubernetes
import Logging
import Synchronization
import TestSupport
import Testing

@Suite("Watches against kubesim", .timeLimit(.minutes(2)))
struct WatchTests {
    /// Collects a ListWatch's view of the world into a name -> data map.
    final class View: Sendable {
        let state = Mutex<(objects: [String: [String: String]], syncs: Int, events: Int)>(([:], 0, 0))
        let restarts = Mutex<[ListWatchRestart]>([])

        func apply(_ event: ListWatchEvent<ConfigMap>) {
            state.withLock { state in
                switch event {
                case .synced(let items, _):
                    state.objects = Dictionary(items.map { ($0.metadata.name ?? "", $0.data ?? [:]) }) { $1 }
                    state.syncs += 1
                case .added(let object), .modified(let object):
                    state.objects[object.metadata.name ?? ""] = object.data ?? [:]
                    state.events += 1
                case .deleted(let object):
                    state.objects[object.metadata.name ?? ""] = nil
                    state.events += 1
                }
            }
        }

        var objects: [String: [String: String]] { state.withLock { $0.objects } }
        var syncs: Int { state.withLock { $0.syncs } }
    }

    func run(_ client: KubernetesClient, into view: View) -> Task<Void, any Error> {
        let watch = client.listWatch(
            ConfigMap.resourceType, namespace: "default", as: ConfigMap.self, pageSize: 5,
            initialBackoff: .milliseconds(50), maximumBackoff: .milliseconds(500)
        ) { restart in view.restarts.withLock { $0.append(restart) } }
        return Task {
            for try await event in watch { view.apply(event) }
        }
    }

    @Test func resumesAfterADroppedConnectionWithoutRelisting() async throws {
        try await withKubeSim { server, client in
            for index in 0..<7 { _ = try await client.create(configMap("pre-\(index)", data: ["v": "\(index)"])) }
            let view = View()
            let task = run(client, into: view)
            defer { task.cancel() }
            try await eventually("the initial list (paginated)") { view.objects.count == 7 ? true : nil }
            #expect(view.syncs == 1)
            _ = try await client.create(configMap("live", data: ["v": "1"]))
            try await eventually("the live event") { view.objects["live"] != nil ? true : nil }

            // Drop every watch; changes made meanwhile arrive after the resume, without a relist.
            try await eventually("the watch is open") { server.faults.openWatches > 0 ? true : nil }
            server.faults.closeAllWatches()
            _ = try await client.patch(
                ConfigMap.self, namespace: "default", name: "live", patch: .merge(["data": ["v": "2"]]))
            try await client.delete(ConfigMap.self, namespace: "default", name: "pre-0")
            try await eventually("changes made while disconnected") {
                view.objects["live"] == ["v": "2"] && view.objects["pre-0"] == nil ? true : nil
            }
            #expect(view.syncs == 1)
            #expect(view.restarts.withLock { $0.contains(.closed) })
        }
    }

    @Test func relistsAfterExpiry() async throws {
        try await withKubeSim { server, client in
            _ = try await client.create(configMap("a", data: ["v": "1"]))
            let view = View()
            let task = run(client, into: view)
            defer { task.cancel() }
            try await eventually("the initial list") { view.syncs == 1 ? true : nil }
            try await eventually("the watch is open") { server.faults.openWatches > 0 ? true : nil }

            // Every resourceVersion the watch knows is now too old: the next watch gets a 410
            // (in the stream or as HTTP), and the ListWatch lists again.
            server.faults.expireResourceVersions()
            server.faults.closeAllWatches()
            _ = try await client.create(configMap("b", data: ["v": "2"]))
            try await eventually("a relist with the new object") {
                view.syncs >= 2 && view.objects["b"] == ["v": "2"] ? true : nil
            }
            #expect(view.restarts.withLock { $0.contains(.expired) })
        }
    }

    /// A watch from a resourceVersion older than the retained history is refused with 410,
    /// whether the server says so before streaming or in the stream.
    @Test func tooOldResourceVersionIsExpired() async throws {
        try await withKubeSim(KubeSimConfiguration(tokens: ["test-token"], watchHistory: 5)) { _, client in
            let first = try await client.create(configMap("first", data: [:]))
            for index in 0..<20 { _ = try await client.create(configMap("n-\(index)", data: [:])) }
            do {
                let stream = try client.watch(
                    ConfigMap.resourceType, namespace: "default",
                    options: WatchOptions(resourceVersion: first.metadata.resourceVersion, timeout: .seconds(5)),
                    as: ConfigMap.self)
                for try await event in stream {
                    Issue.record("no event expected from an expired resourceVersion, got \(event)")
                    break
                }
                Issue.record("the watch must fail with 410")
            } catch let error as KubernetesError {
                #expect(error.reason == .expired)
            }
        }
    }

    @Test func bookmarksAdvanceAndEventsAreTyped() async throws {
        try await withKubeSim(
            KubeSimConfiguration(tokens: ["test-token"], bookmarkInterval: .milliseconds(200))
        ) { _, client in
            let created = try await client.create(configMap("a", data: [:]))
            let stream = try client.watch(
                ConfigMap.resourceType, namespace: "default",
                // Only a bound: the loop ends as soon as both events came (a busy machine may
                // hold this test for many seconds before it reads them).
                options: WatchOptions(resourceVersion: created.metadata.resourceVersion, timeout: .seconds(120)),
                as: ConfigMap.self)
            _ = try await client.create(configMap("b", data: ["x": "y"]))
            var sawAdded = false
            var bookmark: String?
            for try await event in stream {
                switch event {
                case .added(let object):
                    #expect(object.metadata.name == "b")
                    sawAdded = true
                case .bookmark(let version):
                    bookmark = version
                default:
                    Issue.record("unexpected \(event)")
                }
                if sawAdded && bookmark != nil { break }
            }
            #expect(sawAdded)
            #expect(Int(bookmark ?? "") ?? 0 >= Int(created.metadata.resourceVersion ?? "") ?? 0)
        }
    }
}
