import ArgumentParser
import FpindexAPI
import Testing
import Updater

@testable import fpindex_updater

@Suite("fpindex-updater's settings")
struct UpdaterCommandTests {
    @Test func everyFlagReachesTheConfiguration() throws {
        let command = try FpindexUpdater.parse([
            "--consumer", "replica-0", "--fpindex-url", "http://127.0.0.1:9", "--listen", "127.0.0.1:0", "--batch", "7",
            "--batch-bytes", "4096", "--batch-wait", "250", "--max-lag", "3", "--idle-check", "1500", "--create-consumer",
            "--on-foreign-data", "refuse",
        ])
        let configuration = try command.settings()
        #expect(configuration.consumerName == "replica-0")
        #expect(configuration.fpindexURL == "http://127.0.0.1:9")
        #expect(configuration.host == "127.0.0.1" && configuration.port == 0)
        #expect(configuration.batch == 7)
        #expect(configuration.batchBytes == 4096)
        #expect(configuration.batchWait == .milliseconds(250))
        #expect(configuration.maxLag == 3)
        #expect(configuration.idleCheckpointInterval == .milliseconds(1500))
        #expect(configuration.createConsumer)
        #expect(!configuration.rebuildForeignData)
        #expect(configuration.appliedSubject == "fpindex-applied.replica-0")
    }

    @Test func defaultsAreTheDocumentedOnes() throws {
        let configuration = try FpindexUpdater.parse(["--consumer", "c"]).settings()
        #expect(configuration.idleCheckpointInterval == .seconds(10))
        #expect(configuration.batchWait == .seconds(1))
        #expect(configuration.rebuildForeignData)
    }

    @Test(arguments: [
        (["--idle-check", "0"], "--idle-check"), (["--batch-wait=-1"], "--batch-wait"), (["--batch", "0"], "--batch"),
        (["--on-foreign-data", "keep"], "--on-foreign-data"), (["--listen", "nowhere"], "--listen"),
    ])
    func badSettingsAreRefusedByName(arguments: [String], flag: String) throws {
        let command = try FpindexUpdater.parse(["--consumer", "c"] + arguments)
        #expect { try command.settings() } throws: { "\($0)".contains(flag) }
    }
}
