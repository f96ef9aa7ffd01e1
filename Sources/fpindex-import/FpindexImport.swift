import ArgumentParser
import CommandSupport
import JetStream
import Logging
import StreamMigration

@main
struct FpindexImport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fpindex-import",
        abstract: "Fills the stream with an index's fingerprints from a file or standard input.",
        discussion: """
            Formats: pgcopy (PostgreSQL COPY text of (id, int[]) rows; \\N deletes), jsonl ({"id":1,"hashes":[...]} per line; \
            "hashes":null deletes), msgpack (MessagePack _update bodies, one after another). Signed int4 hashes are taken as their \
            unsigned 32-bit value. A re-run skips rows the stream already holds. Exit status: 0 when every row was imported, \
            1 when bad rows were skipped, 2 when the run stopped (a bad row with --on-error stop, NATS, the stream).
            """)

    @OptionGroup var nats: NATSOptions
    @OptionGroup var stream: StreamOptions

    @Option(help: "The index to fill (env INDEX).")
    var index: String?

    @Option(help: "Input format: pgcopy, jsonl or msgpack.")
    var format: String = "pgcopy"

    @Option(help: "A bad row: skip (report it and go on; exit status 1) or stop (report it and stop; exit status 2).")
    var onError: String = "stop"

    @Option(help: "A fingerprint the stream holds with other hashes: keep the stream's (newer) value, or replace it.")
    var existing: String = "keep"

    @Option(help: "Start at this line (msgpack: this body); the earlier ones are skipped unread.")
    var resumeFrom: Int = 1

    @Option(help: "Messages published, then acknowledged, together.")
    var batch: Int = 4096

    @Flag(help: "No progress lines.")
    var quiet = false

    @Option(help: "Log level (env LOG_LEVEL; default info).")
    var logLevel: String?

    @Argument(help: "The input file; - or nothing reads standard input.")
    var file: String = "-"

    func run() async throws {
        _ = try Settings.bootstrapLogging(level: logLevel)
        guard let index = index ?? Settings.environment("INDEX") else { throw ValidationError("--index is required") }
        guard let format = ImportFormat(rawValue: format) else { throw ValidationError("--format: pgcopy, jsonl or msgpack") }
        guard let onError = RowErrorPolicy(rawValue: onError) else { throw ValidationError("--on-error: skip or stop") }
        guard let existing = ExistingPolicy(rawValue: existing) else { throw ValidationError("--existing: keep or replace") }
        guard resumeFrom >= 1 else { throw ValidationError("--resume-from: a line number from 1") }
        guard (1...100_000).contains(batch) else { throw ValidationError("--batch: 1-100000") }
        let logger = Logger(label: "fpindex-import")
        let input = try ImportInput(path: file)
        let client = try await NATSClient.connect(try nats.configuration(name: "fpindex-import"), logger: logger)
        let importer = StreamImporter(
            client: client, stream: try stream.settings(),
            options: ImportOptions(
                index: index, format: format, onError: onError, existing: existing, resumeFrom: resumeFrom, batchSize: batch),
            logger: logger)
        let summary: ImportSummary
        do {
            summary = try await importer.run(
                input: input, progress: ProgressReporter(label: "importing \(input.name)", unit: "rows", enabled: !quiet),
                onBadRow: { error in printToStandardError("bad row: \(error)") })
        } catch {
            await client.close()
            printToStandardError("fpindex-import: \(error)")
            throw ExitCode(2)
        }
        await client.close()
        if summary.badRows > summary.errors.count {
            printToStandardError("... and \(summary.badRows - summary.errors.count) more bad rows")
        }
        print(
            """
            import of \(input.name) into index \(index):
              rows read              \(summary.rows)\(summary.resumedPast > 0 ? " (after skipping \(summary.resumedPast))" : "")
              published              \(summary.published)
              already in the stream  \(summary.unchanged)
              kept (stream differs)  \(summary.keptExisting)
              newer write kept       \(summary.superseded)
              nothing to delete      \(summary.nothingToDelete)
              bad rows               \(summary.badRows)
              time                   \((summary.seconds * 10).rounded() / 10) s (\(Int(summary.rowsPerSecond)) rows/s)
            """)
        if let stop = summary.stoppedBy {
            if stop.endsInput {
                print(
                    "stopped at body \(stop.line): MessagePack bodies carry no length, so none after a broken one can be found; every body before it is in the stream. Repair the input from that body on."
                )
            } else {
                print("stopped at line \(stop.line); fix it and run again with --resume-from \(stop.line)")
            }
        }
        if summary.keptAfterMatchingRow > 0 {
            let shown = summary.keptAfterMatchingRowIds.prefix(20).map(String.init).joined(separator: ", ")
            print(
                """
                \(summary.keptAfterMatchingRow) rows were not applied: the stream's value for their id equals an earlier row of
                this input, and they differ (ids \(shown)\(summary.keptAfterMatchingRowIds.count > 20 ? ", ..." : "")). After an interrupted
                run the stream holds that earlier row; a write through the proxy looks the same. Check them against the
                database; where no live write touched them, send their last rows again with --existing replace.
                """)
        }
        print(summary.jsonLine)
        flushStandardOutput()
        if !summary.completed { throw ExitCode(2) }
        if summary.badRows > 0 || summary.keptAfterMatchingRow > 0 { throw ExitCode(1) }
    }
}
