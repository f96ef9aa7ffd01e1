import FpindexAPI
import JetStream
import TestSupport
import Testing

/// A publish the proxy gave up on (503) can still reach the stream later: held in a paused
/// server's socket, it arrives when the server runs again. Every data message carries its
/// subject's last sequence as the proxy knew it, so such a late message cannot replace a newer
/// acknowledged write (what the chaos bench found with a SIGSTOPped NATS node).
@Suite("fpindex-proxy fences its publishes", .timeLimit(.minutes(3)))
struct ProxyFenceTests {
    @Test func aWriteHeldByAPausedServerCannotOverwriteANewerAcknowledgedOne() async throws {
        try await withNATSServer { nats in
            let relay = try TCPRelay(upstreamPort: nats.port)
            defer { relay.close() }
            let held = try await ProxyHarness.start(nats: nats, natsURL: relay.url, arguments: ["--publish-timeout", "1000"])
            let direct = try await ProxyHarness.start(nats: nats)
            do {
                #expect(try await direct.http.json(.PUT, "/main").status == 200)
                try await eventually("the held proxy to know the index") {
                    try await held.http.json(.PUT, "/main/1", #"{"hashes":[1,2,3]}"#).status == 200 ? true : nil
                }

                let connections = relay.connections
                relay.pause()
                // Sent into the paused server's socket; no acknowledgement comes in time.
                let unanswered = try await held.http.json(.PUT, "/main/1", #"{"hashes":[4,5,6]}"#)
                #expect(unanswered.status == 503)
                // The client sends its writes elsewhere, and they are acknowledged.
                #expect(try await direct.http.json(.PUT, "/main/1", #"{"hashes":[7,8,9]}"#).status == 200)
                relay.resume()

                // Same connection, so the held message reached the stream before this one.
                // (Sent again until acknowledged: a loaded machine may take over the 1 s timeout.)
                try await eventually("a write through the held proxy after the pause") {
                    try await held.http.json(.PUT, "/main/2", #"{"hashes":[10]}"#).status == 200 ? true : nil
                }
                #expect(relay.connections == connections, "the held proxy reconnected: the held message's fate is not known")

                let stored = try #require(try await direct.stored(direct.subjects.fingerprint("main", id: 1)))
                #expect(stored.payload == FingerprintRecord(hashes: [7, 8, 9]).payload)
                // The direct proxy had not seen id 1: its first guess was refused and sent again.
                let metrics = try await direct.http.request(.GET, "/_metrics").text
                #expect(metrics.contains("fpindex_proxy_publish_fence_retries_total 1"))
            } catch {
                print(held.proxy.output)
                await held.stop()
                await direct.stop()
                throw error
            }
            await held.stop()
            await direct.stop()
        }
    }
}
