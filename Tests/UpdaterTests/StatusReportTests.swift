import Foundation
import Metrics
import Testing

@testable import Updater

/// `/status` keeps its documented keys, and index names as they are.
@Suite("Status report")
struct StatusReportTests {
    @Test func keysAreSnakeCaseAndIndexNamesUntouched() throws {
        let status = UpdaterStatus(maxLag: 10, factory: NOOPMetricsHandler.instance)
        status.update { state in
            state.appliedSeq = 42
            state.indexes = ["myIndex": ReplicaIndex(exists: true, generation: nil, checkpoint: 41)]
            state.lastError = "fpindex unavailable"
        }
        let object = try #require(try JSONSerialization.jsonObject(with: Data(status.json())) as? [String: Any])
        #expect(object["applied_seq"] as? Int == 42)
        #expect(object["last_error"] as? String == "fpindex unavailable")
        let stream = try #require(object["stream"] as? [String: Any])
        #expect(stream["identity"] is NSNull && stream["last_seq"] as? Int == 0)
        let index = try #require((object["indexes"] as? [String: Any])?["myIndex"] as? [String: Any])
        #expect(index["checkpoint"] as? Int == 41 && index["generation"] is NSNull && index["exists"] as? Bool == true)
    }
}
