import ArgumentParser
import CommandSupport
import FpindexAPI
import JetStream
import Logging
import StreamMigration

@main
struct FpindexBackup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fpindex-backup",
        abstract: "Copies the stream's content to a file, and back into an empty stream.",
        subcommands: [Create.self, Restore.self])

    struct Common: ParsableArguments {
        @OptionGroup var nats: NATSOptions
        @OptionGroup var stream: StreamOptions

        @Flag(help: "No progress lines.")
        var quiet = false

        @Option(help: "Log level (env LOG_LEVEL; default info).")
        var logLevel: String?

        /// Sets up logging for the run and returns the tool's logger.
        func logger() throws -> Logger {
            _ = try Settings.bootstrapLogging(level: logLevel)
            return Logger(label: "fpindex-backup")
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Writes the last message of every subject of the stream to FILE (complete only once renamed into place).")

        @OptionGroup var common: Common

        @Argument(help: "The backup file.")
        var file: String

        func run() async throws {
            let logger = try common.logger()
            let settings = try common.stream.settings()
            try await withClient(common, logger: logger) { client in
                let summary = try await StreamBackup.create(
                    client: client, stream: settings, path: file,
                    progress: ProgressReporter(label: "backing up \(settings.name)", unit: "messages", enabled: !common.quiet))
                print("backup of stream \(settings.name) up to sequence \(summary.lastSequence): \(summary.records) messages in \(file)")
                print(summary.jsonLine)
            }
        }
    }

    struct Restore: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Publishes a backup into an empty or new stream (--stream, --subject-prefix; defaults from the backup).")

        @OptionGroup var common: Common

        @Argument(help: "The backup file.")
        var file: String

        func run() async throws {
            let logger = try common.logger()
            let header: BackupHeader
            do {
                (header, _) = try StreamBackup.check(path: file)
            } catch {
                printToStandardError("fpindex-backup: \(error)")
                throw ExitCode(2)
            }
            // The target: flags and environment first, else where the backup came from.
            var options = common.stream
            if options.stream == nil, Settings.environment(ComponentEnvironment.streamName) == nil { options.stream = header.stream }
            if options.subjectPrefix == nil, Settings.environment(ComponentEnvironment.subjectPrefix) == nil {
                options.subjectPrefix = header.subjectPrefix
            }
            let settings = try options.settings()
            try await withClient(common, logger: logger) { client in
                let summary = try await StreamBackup.restore(
                    client: client, stream: settings, path: file,
                    progress: ProgressReporter(label: "restoring into \(settings.name)", unit: "messages", enabled: !common.quiet),
                    logger: logger)
                print(
                    "restored \(summary.records) messages of stream \(header.stream) (\(header.created)) into stream \(settings.name) (\(settings.subjectPrefix).>): it holds \(summary.streamMessages) messages"
                )
                print(summary.jsonLine)
            }
        }
    }
}

/// Runs `body` with a connection; a failure is printed and exits with status 2.
func withClient(_ common: FpindexBackup.Common, logger: Logger, _ body: (NATSClient) async throws -> Void) async throws {
    let client: NATSClient
    do {
        client = try await NATSClient.connect(try common.nats.configuration(name: "fpindex-backup"), logger: logger)
    } catch {
        printToStandardError("fpindex-backup: \(error)")
        throw ExitCode(2)
    }
    do {
        try await body(client)
    } catch {
        await client.close()
        printToStandardError("fpindex-backup: \(error)")
        throw ExitCode(2)
    }
    await client.close()
    flushStandardOutput()
}
