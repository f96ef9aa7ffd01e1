import ArgumentParser
import CMallocTuning
import DevIndex
import LegacyProtocol
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

    // The rest of the real fpindex's command line, so that a pod spec written for the real one
    // (the controller's `index.args`, say) starts fpindex-dev too.

    @Option(help: "As the real fpindex; fpindex-dev commits every write to its log at once, so it has no checkpoints.")
    var checkpointThreshold: Int?

    @Option(name: .customLong("checkpoint-age-ms"), help: "As the real fpindex; no effect (see --checkpoint-threshold).")
    var checkpointAgeMs: Int?

    @Option(help: "As the real fpindex; no effect (fpindex-dev replays one log at start).")
    var loadConcurrency: Int?

    @Option(help: "The legacy line protocol's port, on the index main (created if missing); 0 (the default) is off.")
    var legacyPort: Int?

    @Flag(help: "Refuse writes on the legacy port (begin: ERR read-only replica), as the real fpindex does as a replica of its own replication.")
    var legacyReadOnly = false

    @Option(help: "The real fpindex's built-in replication: fpindex-dev does not replicate (fpindex-cluster does).")
    var coordinator: String?
    @Option(help: "See --coordinator.")
    var coordinatorUrl: String?
    @Option(help: "See --coordinator.")
    var peers: String?
    @Option(name: .customLong("bootstrap-timeout-ms"), help: "See --coordinator.")
    var bootstrapTimeoutMs: Int?

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0-65535") }
        for (flag, value) in [("--checkpoint-threshold", checkpointThreshold), ("--checkpoint-age-ms", checkpointAgeMs),
            ("--load-concurrency", loadConcurrency), ("--legacy-port", legacyPort), ("--bootstrap-timeout-ms", bootstrapTimeoutMs)]
        where (value ?? 0) < 0 {
            throw ValidationError("\(flag) must not be negative")
        }
        guard (0...65535).contains(legacyPort ?? 0) else { throw ValidationError("--legacy-port must be 0-65535") }
        if coordinator != nil || coordinatorUrl != nil || peers != nil || bootstrapTimeoutMs != nil {
            throw ValidationError(
                "--coordinator, --coordinator-url, --peers and --bootstrap-timeout-ms are the real fpindex's own replication: "
                    + "fpindex-dev does not replicate (in fpindex-cluster every replica applies the stream instead)")
        }
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
        var services: [any Service] = [app]
        if let legacyPort, legacyPort != 0 {
            // The real fpindex is read-only there only as a replica of its own replication,
            // which fpindex-dev does not have: writes are taken unless --legacy-read-only.
            services.append(
                LegacyServer(
                    configuration: LegacyServerConfiguration(host: host, port: legacyPort, readOnly: legacyReadOnly),
                    backend: DevLegacyBackend(store: store, logger: logger), logger: logger,
                    // The real fpindex has no metrics of its legacy port: neither has this.
                    metricsFactory: NOOPMetricsHandler.instance,
                    onListening: { [host] port in
                        print("fpindex-dev legacy protocol on \(host):\(port)")
                        fflushStandardOutput()
                    }))
        }
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        logger.info("stopped")
    }
}
