/// What the binaries of fpindex-cluster agree on with each other: the environment variables
/// the controller sets and the executables read, the HTTP paths probes and scrapers use, and
/// the core NATS subject replicas announce their progress on. Written once here, so the
/// controller cannot give a container a variable or a probe path the executable does not know.
public enum ComponentEnvironment {
    // Every component.
    public static let natsURL = "NATS_URL"
    public static let natsUser = "NATS_USER"
    public static let natsPassword = "NATS_PASSWORD"
    public static let natsToken = "NATS_TOKEN"
    public static let natsCredentials = "NATS_CREDS"
    public static let natsNKey = "NATS_NKEY"
    public static let natsNKeySeed = "NATS_NKEY_SEED"
    public static let natsTLS = "NATS_TLS"
    public static let natsTLSCA = "NATS_TLS_CA"
    public static let natsTLSCertificate = "NATS_TLS_CERT"
    public static let natsTLSKey = "NATS_TLS_KEY"
    public static let streamName = "STREAM_NAME"
    public static let subjectPrefix = "SUBJECT_PREFIX"
    public static let streamReplicas = "STREAM_REPLICAS"
    public static let logLevel = "LOG_LEVEL"
    /// Where a process listens (`host:port`).
    public static let listenAddress = "LISTEN_ADDR"
    /// The proxy's read backend, or the fpindex an updater feeds.
    public static let fpindexURL = "FPINDEX_URL"

    // fpindex-updater.
    public static let consumerName = "CONSUMER_NAME"
    public static let batch = "BATCH"
    public static let maxLag = "MAX_LAG"

    // fpindex-proxy.
    public static let authToken = "AUTH_TOKEN"
    /// A file of bearer tokens, one a line; re-read when it changes.
    public static let authTokenFile = "AUTH_TOKEN_FILE"
    public static let protectReads = "PROTECT_READS"
    /// HTTPS on the proxy's listener: a PEM certificate chain and its key.
    public static let tlsCertificateFile = "TLS_CERT_FILE"
    public static let tlsKeyFile = "TLS_KEY_FILE"
    public static let consistency = "CONSISTENCY"
    public static let maxRequestTarget = "MAX_REQUEST_TARGET"
    public static let maxHeaderBytes = "MAX_HEADER_BYTES"
    public static let maxHeaders = "MAX_HEADERS"
    /// The legacy line protocol's address (`host:port`); the protocol is off without it.
    public static let legacyListenAddress = "LEGACY_LISTEN_ADDR"
    public static let legacyIndex = "LEGACY_INDEX"
    public static let legacyReadOnly = "LEGACY_READ_ONLY"
    public static let legacyCommitTimeout = "LEGACY_COMMIT_TIMEOUT"
}

/// The HTTP paths every long-running component serves, in fpindex's underscore style.
public enum ProbePath {
    /// Liveness: the process answers.
    public static let health = "/_health"
    /// Readiness: the process can do its job now (the proxy reaches NATS, an updater has caught up,
    /// the controller has synced its caches).
    public static let ready = "/_ready"
    /// Prometheus metrics.
    public static let metrics = "/_metrics"
    /// Readiness under its name before 0.3 (`/ready`), still answered so pods created by an older
    /// controller keep passing their probes during an upgrade.
    public static let legacyReady = "/ready"
}

extension StreamSubjects {
    /// The core NATS subject a replica announces its applied stream sequence on after each batch
    /// (`<prefix>-applied.<consumer>`): not in the stream, so announcing costs no storage.
    public func applied(consumer: String) -> String { "\(prefix)-applied.\(consumer)" }
    /// Every replica's announcements.
    public var allApplied: String { "\(prefix)-applied.*" }
    /// The consumer name in an announcement subject, or nil for another subject.
    public func appliedConsumer(in subject: String) -> String? {
        let head = "\(prefix)-applied."
        guard subject.hasPrefix(head), subject.count > head.count else { return nil }
        return String(subject.dropFirst(head.count))
    }
}

/// How a pod of this project stops: Kubernetes runs the preStop hook, then sends SIGTERM, and
/// kills whatever still runs when the pod's grace period ends. Each process finishes its
/// graceful shutdown within `gracefulShutdown`; a pod's grace period covers both plus `margin`,
/// so a shutdown that takes its whole allowance is not cut short by SIGKILL.
public enum ShutdownBudget {
    /// The preStop wait of a serving container, for endpoints to drop it before SIGTERM.
    public static let preStopSeconds = 5
    /// The longest graceful shutdown of the proxy, the updater and the controller.
    public static let gracefulShutdownSeconds = 25
    /// Slack between a process's own limit and the kubelet's SIGKILL.
    public static let marginSeconds = 5
    /// The least grace period of a pod whose serving container has the preStop wait.
    public static var servingPodGracePeriodSeconds: Int { preStopSeconds + gracefulShutdownSeconds + marginSeconds }
}
