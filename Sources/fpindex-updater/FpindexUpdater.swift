import ArgumentParser
import CMallocTuning
import CommandSupport
import FpindexAPI
import JetStream
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import UnixSignals
import Updater

@main
struct FpindexUpdater: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fpindex-updater",
        abstract: "Applies the JetStream stream to one fpindex, exactly once and without gaps.",
        discussion: "Runs next to fpindex (a sidecar). Its readiness (/ready) says whether the replica has caught up.")

    @OptionGroup var nats: NATSOptions
    @OptionGroup var stream: StreamOptions

    @Option(help: "Durable consumer name (env CONSUMER_NAME; in Kubernetes the pod name).")
    var consumer: String?

    @Option(help: "The fpindex to feed (env FPINDEX_URL; default http://127.0.0.1:8080).")
    var fpindexURL: String?

    @Option(help: "Probes and metrics address (env LISTEN_ADDR; default 0.0.0.0:8081; port 0 picks one and prints it).")
    var listen: String?

    @Option(help: "Messages per fetch (env BATCH; default 4000).")
    var batch: Int?

    @Option(help: "Largest _update body in bytes before it is split (default 8388608).")
    var batchBytes: Int = 8 << 20

    @Option(help: "Milliseconds an idle fetch waits for messages (default 1000).")
    var batchWait: Int = 1000

    @Option(help: "Ready while lag is at most this (env MAX_LAG; default 1000); not ready again above twice it.")
    var maxLag: UInt64?

    @Option(help: "Milliseconds between idle checkpoint advances and checks that fpindex still has every index (default 10000).")
    var idleCheck: Int = 10_000

    @Flag(help: "Create the durable consumer if it is missing (standalone use; in Kubernetes the controller creates it).")
    var createConsumer = false

    @Option(help: "An index fed from another stream: rebuild (default) or refuse.")
    var onForeignData: String = "rebuild"

    @Option(help: "Log level (env LOG_LEVEL; default info).")
    var logLevel: String?

    /// The settings of this run: flags, then environment, then defaults, each checked.
    func settings() throws -> UpdaterConfiguration {
        guard let consumerName = consumer ?? Settings.environment(ComponentEnvironment.consumerName), !consumerName.isEmpty else {
            throw SettingsError("--consumer / CONSUMER_NAME is required (the durable consumer of this replica)")
        }
        guard consumerName.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }), consumerName.utf8.count <= 255 else {
            throw SettingsError("--consumer / CONSUMER_NAME: '\(consumerName)' must be letters, digits, - and _")
        }
        let address = try Settings.hostAndPort(
            listen ?? Settings.environment(ComponentEnvironment.listenAddress) ?? "0.0.0.0:8081", flag: "--listen / LISTEN_ADDR")
        let batchText = batch.map(String.init) ?? Settings.environment(ComponentEnvironment.batch) ?? "4000"
        guard let batchSize = Int(batchText), (1...100_000).contains(batchSize) else {
            throw SettingsError("--batch / BATCH: '\(batchText)' must be 1-100000")
        }
        let lagText = maxLag.map(String.init) ?? Settings.environment(ComponentEnvironment.maxLag) ?? "1000"
        guard let lag = UInt64(lagText) else { throw SettingsError("--max-lag / MAX_LAG: '\(lagText)' is not a number") }
        guard ["rebuild", "refuse"].contains(onForeignData) else { throw SettingsError("--on-foreign-data: rebuild or refuse") }
        guard batchBytes > 0 else { throw SettingsError("--batch-bytes: '\(batchBytes)' must be positive") }
        guard batchWait > 0 else { throw SettingsError("--batch-wait: '\(batchWait)' must be a positive number of milliseconds") }
        guard idleCheck > 0 else { throw SettingsError("--idle-check: '\(idleCheck)' must be a positive number of milliseconds") }
        return UpdaterConfiguration(
            nats: try nats.configuration(name: "fpindex-updater/\(consumerName)"), stream: try stream.settings(),
            consumerName: consumerName,
            fpindexURL: fpindexURL ?? Settings.environment(ComponentEnvironment.fpindexURL) ?? "http://127.0.0.1:8080",
            host: address.host, port: address.port, batch: batchSize, batchBytes: batchBytes,
            batchWait: .milliseconds(batchWait), maxLag: lag, createConsumer: createConsumer,
            rebuildForeignData: onForeignData == "rebuild", idleCheckpointInterval: .milliseconds(idleCheck))
    }

    func run() async throws {
        // Batch buffers (messages, request bodies) are megabytes, allocated and freed per batch:
        // kept for the next batch rather than returned to the kernel, they cost no page faults.
        fpindex_keep_freed_memory(8 << 20, 16 << 20)
        let configuration = try settings()
        let consumerName = configuration.consumerName
        let host = configuration.host
        _ = try Settings.bootstrapLogging(level: logLevel)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        var logger = Logger(label: "fpindex-updater")
        logger[metadataKey: "consumer.name"] = "\(consumerName)"
        let (services, _) = buildUpdaterServices(configuration: configuration, registry: registry, logger: logger) { port in
            print("fpindex-updater listening on http://\(host):\(port)")
            flushStandardOutput()
        }
        // Linking CMallocTuning limits malloc to one arena: a sidecar should stay small.
        logger.info(
            "starting", metadata: ["configuration": "\(configuration)", "malloc.arena_limit": "\(fpindex_malloc_arena_limit())"])
        var groupConfiguration = ServiceGroupConfiguration(
            services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(ShutdownBudget.gracefulShutdownSeconds)
        try await ServiceGroup(configuration: groupConfiguration).run()
    }
}
