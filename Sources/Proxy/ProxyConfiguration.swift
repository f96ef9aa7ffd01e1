import JetStream

/// Settings of an fpindex-proxy.
public struct ProxyConfiguration: Sendable {
    /// Where to listen (`--listen` / `LISTEN_ADDR`, default `0.0.0.0:8080`).
    public var host: String
    public var port: Int
    /// NATS servers and credentials (`--nats-url` / `NATS_URL`, ...).
    public var nats: NATSConfiguration
    /// The stream writes go to (`--stream`, `--subject-prefix`).
    public var stream: StreamSettings
    /// Where searches and index reads are forwarded (`--read-url` / `FPINDEX_URL`).
    public var readURL: String
    /// When set, writes need `Authorization: Bearer <token>` (`--auth-token-file` / `AUTH_TOKEN`).
    public var authToken: String?
    /// Timeout of a forwarded read.
    public var readTimeout: Duration
    /// Whether the proxy may create or update the stream (else it only verifies it).
    public var manageStream: Bool
    /// When a write is answered (`--consistency`, default `stream`); a request may ask with
    /// the `Fpindex-Consistency` header.
    public var consistency: WriteConsistency
    /// Replicas that must have applied a write under `replica` consistency (`--min-replicas`, default 1).
    public var minReplicas: Int
    /// How long a write waits for replicas before 504 (`--replica-timeout`, default 5 s).
    public var replicaTimeout: Duration

    public init(
        host: String = "0.0.0.0", port: Int = 8080, nats: NATSConfiguration = NATSConfiguration(),
        stream: StreamSettings = StreamSettings(),
        readURL: String = "http://127.0.0.1:6081", authToken: String? = nil, readTimeout: Duration = .seconds(10),
        manageStream: Bool = true,
        consistency: WriteConsistency = .stream, minReplicas: Int = 1, replicaTimeout: Duration = .seconds(5)
    ) {
        self.host = host
        self.port = port
        self.nats = nats
        self.stream = stream
        self.readURL = readURL
        self.authToken = authToken
        self.readTimeout = readTimeout
        self.manageStream = manageStream
        self.consistency = consistency
        self.minReplicas = minReplicas
        self.replicaTimeout = replicaTimeout
    }
}

extension ProxyConfiguration: CustomStringConvertible, CustomDebugStringConvertible {
    /// Secrets are never part of a description: these end up in logs.
    public var description: String {
        "ProxyConfiguration(listen: \(host):\(port), \(nats), stream: \(stream.name), read: \(readURL), auth: \(authToken == nil ? "none" : "***"))"
    }

    public var debugDescription: String { description }
}
