import ArgumentParser
import CommandSupport
import FpindexAPI
import FpindexClient
import JetStream
import Logging
import StreamMigration

@main
struct FpindexVerify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fpindex-verify",
        abstract: "Proves that a replica holds what the stream holds for an index.",
        discussion: """
            Reads the last message of every fingerprint of the index from the stream and looks each up in the replica: a live \
            fingerprint must be found by a search with its hashes at the full score, a deleted one must be absent. With --compare, \
            also runs queries made from the stream's fingerprints (whole, partial, noisy) against both endpoints and compares the \
            top results. Exit status 0 only when everything matched; the last line is one JSON object.
            """)

    @OptionGroup var nats: NATSOptions
    @OptionGroup var stream: StreamOptions

    @Option(help: "The index to verify (env INDEX).")
    var index: String?

    @Option(help: "The replica's fpindex (env FPINDEX_URL; default http://127.0.0.1:8080).")
    var fpindexURL: String?

    @Option(help: "Check this share of the fingerprints, chosen by id (e.g. 1% or 0.01); default all.")
    var sample: String = "1"

    @Option(help: "Another fpindex to compare search results with (the A/B check of a migration).")
    var compare: String?

    @Option(help: "Fingerprints the --compare queries are made from (three queries each).")
    var compareSources: Int = 1000

    @Option(help: "Requests in flight at once.")
    var concurrency: Int = 16

    @Flag(help: "No progress lines.")
    var quiet = false

    @Option(help: "Log level (env LOG_LEVEL; default info).")
    var logLevel: String?

    func run() async throws {
        _ = try Settings.bootstrapLogging(level: logLevel)
        guard let index = index ?? Settings.environment("INDEX") else { throw ValidationError("--index is required") }
        guard let fraction = Self.fraction(sample) else {
            throw ValidationError("--sample: a share such as 1%, 0.5% or 0.01 (more than 0, at most 1)")
        }
        guard (1...256).contains(concurrency) else { throw ValidationError("--concurrency: 1-256") }
        let logger = Logger(label: "fpindex-verify")
        let url = fpindexURL ?? Settings.environment(ComponentEnvironment.fpindexURL) ?? "http://127.0.0.1:8080"
        let settings = try stream.settings()
        let client = try await NATSClient.connect(try nats.configuration(name: "fpindex-verify"), logger: logger)
        let replica = FpindexClient(baseURL: url)
        let other = compare.map { FpindexClient(baseURL: $0) }
        var line = JSONLine()
        var failed = false
        do {
            let report = try await ReplicaVerifier(
                client: client, stream: settings, fpindex: replica,
                options: VerifyOptions(index: index, sample: fraction, concurrency: concurrency), logger: logger
            ).run(progress: ProgressReporter(label: "verifying \(url)", unit: "fingerprints", enabled: !quiet))
            print(
                """
                index \(index) on \(url) against stream \(settings.name)\(fraction < 1 ? " (sample \(fraction * 100)%)" : ""):
                  checked   \(report.checked) of \(report.streamFingerprints)
                  matching  \(report.matching)\(report.existenceOnly > 0 ? " (\(report.existenceOnly) by existence only: more than 100 equal fingerprints)" : "")
                  missing   \(report.missing)\(Self.list(report.missingIds, of: report.missing))
                  stale     \(report.stale)\(Self.list(report.staleIds, of: report.stale))
                  extra     \(report.extra)\(Self.list(report.extraIds, of: report.extra))
                """)
            report.addFields(to: &line)
            failed = report.differences > 0
            if let other {
                let comparison = try await EndpointComparison(
                    client: client, stream: settings, first: replica, second: other, index: index, sources: compareSources
                ).run(progress: ProgressReporter(label: "comparing with \(other.baseURL)", unit: "queries", enabled: !quiet))
                print(
                    "search results of \(url) and \(other.baseURL): \(comparison.queries) queries, \(comparison.differentTop) with another top result"
                )
                for difference in comparison.samples {
                    print(
                        "  fingerprint \(difference.sourceId) (\(difference.variant)): \(Self.describe(difference.top)) vs \(Self.describe(difference.otherTop))"
                    )
                }
                if comparison.queries == 0 {
                    print("no query could be made: index \(index) has no fingerprint of 8 hashes or more; the comparison proves nothing")
                }
                comparison.addFields(to: &line)
                failed = failed || comparison.differentTop > 0 || comparison.queries == 0
            }
        } catch {
            await replica.shutdown()
            await other?.shutdown()
            await client.close()
            printToStandardError("fpindex-verify: \(error)")
            throw ExitCode(2)
        }
        await replica.shutdown()
        await other?.shutdown()
        await client.close()
        print(line.text)
        flushStandardOutput()
        if failed { throw ExitCode(1) }
    }

    /// `1%`, `0.5%` or `0.01`.
    static func fraction(_ text: String) -> Double? {
        let value = text.hasSuffix("%") ? Double(text.dropLast()).map { $0 / 100 } : Double(text)
        guard let value, value > 0, value <= 1 else { return nil }
        return value
    }

    static func list(_ ids: [UInt32], of count: Int) -> String {
        ids.isEmpty ? "" : ": " + ids.map(String.init).joined(separator: " ") + (count > ids.count ? " ..." : "")
    }

    static func describe(_ result: SearchResult?) -> String {
        result.map { "\($0.id) (score \($0.score))" } ?? "nothing"
    }
}
