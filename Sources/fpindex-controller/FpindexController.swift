import ArgumentParser
import CommandSupport
import Controller
import Foundation
import Kubernetes
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import UnixSignals

@main
struct FpindexController: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fpindex-controller",
        abstract: "The FpindexCluster operator: runs fpindex replicas kept in sync through NATS JetStream.",
        discussion: "Uses --kubeconfig when given, else the in-cluster service account, else KUBECONFIG / ~/.kube/config.")

    @Option(help: "Kubeconfig file (env KUBECONFIG_FILE); in a pod the service account is used.")
    var kubeconfig: String?
    @Option(help: "Kubeconfig context (default: its current context).")
    var context: String?
    @Option(help: "In-cluster service-account folder (token, ca.crt, namespace).")
    var serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"
    @Option(help: "Watch only this namespace (env WATCH_NAMESPACE; default: all namespaces).")
    var namespace: String?
    @Flag(help: "Elect a leader on a Lease so only one replica acts (env LEADER_ELECT=true).")
    var leaderElect = false
    @Option(help: "Lease name for leader election (default fpindex-controller).")
    var leaseName = "fpindex-controller"
    @Option(help: "Lease namespace (env POD_NAMESPACE; default: the service account's or kubeconfig's namespace).")
    var leaseNamespace: String?
    @Option(help: "This replica's identity (env POD_NAME; default: the host name).")
    var identity: String?
    @Option(help: "Probes and metrics address (env METRICS_LISTEN; default 0.0.0.0:8080; port 0 picks one).")
    var metricsListen: String?
    @Option(help: "Seconds between full resyncs of every cluster, ±10% (default 60).")
    var resync: Int = 60
    @Option(help: "Concurrent reconciles (default 2).")
    var workers: Int = 2
    @Option(help: "Seconds a deletion waits for an unreachable NATS before releasing its finalizer (default 120).")
    var finalizerTimeout: Int = 120
    @Flag(help: "Log what would change instead of changing it.")
    var dryRun = false
    @Option(help: "Log level (env LOG_LEVEL; default info).")
    var logLevel: String?

    func validate() throws {
        guard resync >= 5 else { throw ValidationError("--resync must be at least 5 seconds") }
        guard (1...32).contains(workers) else { throw ValidationError("--workers must be 1-32") }
        guard finalizerTimeout >= 1 else { throw ValidationError("--finalizer-timeout must be at least 1 second") }
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let address = try Settings.hostAndPort(
            metricsListen ?? Settings.environment("METRICS_LISTEN") ?? "0.0.0.0:8080",
            flag: "--metrics-listen / METRICS_LISTEN")
        _ = try Settings.bootstrapLogging(level: logLevel)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let logger = Logger(label: "fpindex-controller")

        let kubernetesConfiguration = try KubernetesConfiguration.resolve(
            kubeconfig: kubeconfig ?? Settings.environment("KUBECONFIG_FILE"), context: context,
            environment: environment, serviceAccountDirectory: serviceAccountDir)
        var kubernetesSettings = kubernetesConfiguration
        kubernetesSettings.userAgent = "fpindex-controller"
        let kubernetes = try KubernetesClient(configuration: kubernetesSettings, logger: logger)
        defer { kubernetes.shutdown() }

        let identity =
            self.identity ?? Settings.environment("POD_NAME") ?? ProcessInfo.processInfo.hostName + "-\(getpid())"
        var configuration = ControllerConfiguration(identity: identity)
        configuration.namespace = namespace ?? Settings.environment("WATCH_NAMESPACE")
        configuration.metricsHost = address.host
        configuration.metricsPort = address.port
        configuration.resync = .seconds(resync)
        configuration.workers = workers
        configuration.reconciler.dryRun = dryRun
        configuration.reconciler.finalizerTimeout = .seconds(finalizerTimeout)
        if leaderElect || Settings.environment("LEADER_ELECT") == "true" {
            configuration.leaderElection = LeaderElector.Settings(
                namespace: leaseNamespace ?? Settings.environment("POD_NAMESPACE") ?? kubernetesConfiguration.namespace,
                name: leaseName, identity: identity)
        }
        let services = try buildControllerServices(
            configuration: configuration, kubernetes: kubernetes, registry: registry, logger: logger
        ) { port in
            print("fpindex-controller listening on http://\(address.host):\(port)")
            flushStandardOutput()
        }
        logger.info(
            "starting",
            metadata: [
                "api.server": "\(kubernetesConfiguration.server)", "namespace": "\(configuration.namespace ?? "(all)")",
                "identity": "\(identity)", "leader.election": "\(configuration.leaderElection != nil)",
            ])
        var groupConfiguration = ServiceGroupConfiguration(
            services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(20)
        try await ServiceGroup(configuration: groupConfiguration).run()
    }
}
