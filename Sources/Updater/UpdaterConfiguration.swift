import FpindexAPI
import JetStream

/// Settings of an fpindex-updater.
public struct UpdaterConfiguration: Sendable {
    /// NATS servers and credentials (`--nats-url` / `NATS_URL`, ...).
    public var nats: NATSConfiguration
    /// The stream to replicate (`--stream`, `--subject-prefix`).
    public var stream: StreamSettings
    /// The durable consumer of this replica (`--consumer` / `CONSUMER_NAME`; the pod name in Kubernetes).
    public var consumerName: String
    /// The fpindex this updater feeds (`--fpindex-url` / `FPINDEX_URL`, default `http://127.0.0.1:8080`).
    public var fpindexURL: String
    /// Probes and metrics (`--listen` / `LISTEN_ADDR`, default `0.0.0.0:8081`).
    public var host: String
    public var port: Int
    /// Messages per fetch (`--batch`, default 4000).
    public var batch: Int
    /// Payload bytes per `_update` request before it is split (`--batch-bytes`, default 8 MiB).
    public var batchBytes: Int
    /// How long an idle fetch waits for messages (`--batch-wait`, default 1 s).
    public var batchWait: Duration
    /// Ready while lag is at most this (`--max-lag`, default 1000); not ready again only above twice it.
    public var maxLag: UInt64
    /// Create the durable consumer if it is missing (`--create-consumer`; in Kubernetes the controller does).
    public var createConsumer: Bool
    /// When an index holds data of another stream: rebuild it (default) or refuse to go on (`--on-foreign-data refuse`).
    public var rebuildForeignData: Bool
    /// How often idle indexes get their checkpoint advanced.
    public var idleCheckpointInterval: Duration

    public init(
        nats: NATSConfiguration = NATSConfiguration(), stream: StreamSettings = StreamSettings(), consumerName: String,
        fpindexURL: String = "http://127.0.0.1:8080", host: String = "0.0.0.0", port: Int = 8081, batch: Int = 4000,
        batchBytes: Int = 8 << 20, batchWait: Duration = .seconds(1), maxLag: UInt64 = 1000, createConsumer: Bool = false,
        rebuildForeignData: Bool = true, idleCheckpointInterval: Duration = .seconds(10)
    ) {
        self.nats = nats
        self.stream = stream
        self.consumerName = consumerName
        self.fpindexURL = fpindexURL
        self.host = host
        self.port = port
        self.batch = batch
        self.batchBytes = batchBytes
        self.batchWait = batchWait
        self.maxLag = maxLag
        self.createConsumer = createConsumer
        self.rebuildForeignData = rebuildForeignData
        self.idleCheckpointInterval = idleCheckpointInterval
    }

    /// The core NATS subject the applied sequence is announced on after each batch.
    public var appliedSubject: String { StreamSubjects(prefix: stream.subjectPrefix).applied(consumer: consumerName) }
}

extension UpdaterConfiguration: CustomStringConvertible {
    public var description: String {
        "UpdaterConfiguration(\(nats), stream: \(stream.name), consumer: \(consumerName), fpindex: \(fpindexURL), batch: \(batch))"
    }
}
