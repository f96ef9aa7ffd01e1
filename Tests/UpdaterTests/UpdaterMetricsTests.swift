import JetStream
import TestSupport
import Testing

/// The updater's series the alert rules read (manifests/monitoring/): its NATS connection, its
/// own lag threshold and the sequence it has applied.
@Suite("Updater metrics", .timeLimit(.minutes(3)))
struct UpdaterMetricsTests {
    static func value(_ name: String, in metrics: String) -> Double? {
        metrics.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
    }

    @Test func theNATSConnectionThresholdAndAppliedSequenceAreSeries() async throws {
        try await withCluster(replicas: 1) { cluster in
            var model = Model()
            var random = SeededRandom(seed: 18)
            try await cluster.createIndex("m", &model)
            try await cluster.randomWrites(&model, requests: 5, random: &random)
            try await cluster.waitConverged()
            let replica = cluster.replicas[0]
            let lastSeq = try #require(try await cluster.inspector.streamInfo("fpindex")).state.lastSeq
            let metrics = try await replica.updaterHTTP.request(.GET, "/_metrics").text
            #expect(Self.value("fpindex_updater_nats_connected", in: metrics) == 1, "\(metrics)")
            // The harness starts updaters with --max-lag 10.
            #expect(Self.value("fpindex_updater_max_lag_messages", in: metrics) == 10)
            #expect(Self.value("fpindex_updater_applied_sequence", in: metrics) == Double(lastSeq))

            // NATS gone: the next scrape says so (the connection's state now, not at its last event).
            await cluster.natsServer!.kill()
            try await eventually("the updater to report NATS unreachable") {
                let text = try await replica.updaterHTTP.request(.GET, "/_metrics").text
                return Self.value("fpindex_updater_nats_connected", in: text) == 0 ? true : nil
            }
            try await cluster.natsServer!.restart()
            try await eventually("the updater to report NATS reachable again") {
                let text = try await replica.updaterHTTP.request(.GET, "/_metrics").text
                return Self.value("fpindex_updater_nats_connected", in: text) == 1 ? true : nil
            }
        }
    }

    @Test func anUpdaterThatNeverReachedNATSSaysSo() async throws {
        let unreachable = "nats://127.0.0.1:\(try FreePort.find())"
        let replica = try await Replica(name: "alone", natsURL: unreachable, persistent: false)
        do {
            let metrics = try await replica.updaterHTTP.request(.GET, "/_metrics").text
            #expect(Self.value("fpindex_updater_nats_connected", in: metrics) == 0, "\(metrics)")
            #expect(Self.value("fpindex_updater_ready", in: metrics) == 0)
            await replica.stop()
        } catch {
            await replica.stop()
            throw error
        }
    }
}
