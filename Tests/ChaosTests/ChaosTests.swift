import Foundation
import TestSupport
import Testing

/// The short form of `fpindex-bench chaos`: five rounds of random faults of every kind (with a random seed,
/// printed: `fpindex-bench chaos --seed N` replays the same fault sequence) must end with every
/// replica holding exactly what was acknowledged.
@Suite("Chaos", .timeLimit(.minutes(15)))
struct ChaosTests {
    @Test func fiveRoundsOfFaultsLoseAndCorruptNothing() async throws {
        let bench = try Locations.executable("fpindex-bench")
        let binaries = (bench as NSString).deletingLastPathComponent
        let work = try TemporaryDirectory.make(prefix: "chaos")
        defer { TemporaryDirectory.remove(work) }
        let seed = UInt64.random(in: 1...(1 << 53))
        print("chaos seed \(seed)")
        let process = try ChildProcess(
            name: "fpindex-bench-chaos", executable: bench,
            arguments: [
                "chaos", "--rounds", "5", "--seed", String(seed), "--binaries", binaries, "--nats-server", try Locations.natsServer(),
                "--work-dir", work + "/run",
            ])
        let status = await process.waitForExit(timeout: .seconds(840))
        #expect(status == 0, "\(process.output)")
        let last = try #require(process.stdout.split(separator: "\n").last, "\(process.output)")
        let figures = try #require(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any], "\(last)")
        #expect(figures["bench"] as? String == "chaos")
        #expect(figures["rounds"] as? Int == 5)
        #expect(figures["divergent_ids"] as? Int == 0, "\(process.output)")
        #expect(figures["lost_writes"] as? Int == 0, "\(process.output)")
        let faults = try #require(figures["faults"] as? [String: Int])
        #expect(faults.values.reduce(0, +) == 5)
        #expect((figures["acknowledged_writes"] as? Int ?? 0) >= 5 * 40)
        #expect(figures["seed"] as? Int == Int(seed))
    }
}
