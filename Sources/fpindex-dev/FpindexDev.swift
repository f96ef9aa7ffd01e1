import ArgumentParser
import CMallocTuning
import DevIndex
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import UnixSignals

@main
struct FpindexDev: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fpindex-dev",
        abstract: "An in-memory fingerprint index speaking the fpindex HTTP API.",
        discussion: "With --dir every acknowledged write is in a write-ahead log (fsync before the reply) and survives restarts.")

    @Option(help: "Address to listen on.")
    var host: String = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free one; the bound address is printed on standard output).")
    var port: Int = 8080

    @Option(help: "Directory to persist the indexes in; without it everything is in memory only.")
    var dir: String?

    @Option(help: "Log level (trace, debug, info, notice, warning, error, critical); default $LOG_LEVEL or info.")
    var logLevel: String?

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0-65535") }
        if let level = resolvedLogLevel, Logger.Level(rawValue: level) == nil {
            throw ValidationError("--log-level / LOG_LEVEL: unknown level '\(level)'")
        }
    }

    var resolvedLogLevel: String? {
        logLevel ?? ProcessEnvironment.value("LOG_LEVEL")
    }

    func run() async throws {
        // Every write builds its segment in fresh buffers of megabytes; kept by malloc for the
        // next write instead of returned to the kernel, they cost no page faults. Merged
        // segments above 32 MiB still come and go as mappings. (Linking
        // CMallocTuning also keeps malloc to one arena, so a buffer freed by a merge on one
        // thread is reused by the next write on another.)
        fpindex_keep_freed_memory(32 << 20, 256 << 20)
        let level = resolvedLogLevel.flatMap(Logger.Level.init(rawValue:)) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let logger = Logger(label: "fpindex-dev")

        let store = try IndexStore(directory: dir, logger: logger)
        let configuration = DevIndexConfiguration(host: host, port: port, directory: dir)
        let app = buildDevIndexApplication(
            configuration: configuration, store: store, registry: registry, logger: logger,
            onServerRunning: { [host] port in
                // A stable line on standard output, for scripts and tests that start us on port 0.
                print("fpindex-dev listening on http://\(host):\(port)")
                fflushStandardOutput()
            })
        let group = ServiceGroup(
            configuration: .init(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        logger.info("stopped")
    }
}
