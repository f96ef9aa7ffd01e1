import FpindexAPI
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
    /// When set, writes (and with `protectReads` reads) need `Authorization: Bearer <token>`
    /// with one of its tokens (`--auth-token-file` / `AUTH_TOKEN`).
    public var auth: ProxyAuthSettings?
    /// HTTPS on the listener (`--tls-cert`, `--tls-key`); plain HTTP when nil.
    public var tls: ProxyTLSSettings?
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
    /// What a request may be before it is refused at the edge.
    public var limits: RequestLimits
    /// The legacy line protocol's port (`--legacy-listen`), off when nil.
    public var legacy: LegacySettings?

    public init(
        host: String = "0.0.0.0", port: Int = 8080, nats: NATSConfiguration = NATSConfiguration(),
        stream: StreamSettings = StreamSettings(),
        readURL: String = "http://127.0.0.1:6081", auth: ProxyAuthSettings? = nil, readTimeout: Duration = .seconds(10),
        manageStream: Bool = true,
        consistency: WriteConsistency = .stream, minReplicas: Int = 1, replicaTimeout: Duration = .seconds(5),
        limits: RequestLimits = RequestLimits(), legacy: LegacySettings? = nil, tls: ProxyTLSSettings? = nil
    ) {
        self.host = host
        self.port = port
        self.nats = nats
        self.stream = stream
        self.readURL = readURL
        self.auth = auth
        self.readTimeout = readTimeout
        self.manageStream = manageStream
        self.consistency = consistency
        self.minReplicas = minReplicas
        self.replicaTimeout = replicaTimeout
        self.limits = limits
        self.legacy = legacy
        self.tls = tls
    }
}

/// The proxy's legacy line protocol port (AcoustID's `indexclient.py` speaks it).
public struct LegacySettings: Sendable, Equatable {
    /// Where to listen (`--legacy-listen` / `LEGACY_LISTEN_ADDR`; port 0 picks one).
    public var host: String
    public var port: Int
    /// The index the protocol reads and writes (`--legacy-index` / `LEGACY_INDEX`, default `main`).
    public var index: String
    /// Refuse `begin`, as the real fpindex's read-only replicas do (`--legacy-read-only`).
    public var readOnly: Bool
    /// Connections at once (`--legacy-max-connections`, default 1024).
    public var maxConnections: Int
    /// How long a `commit` waits for replicas under `replica` consistency before `ERR commit
    /// failed` (`--legacy-commit-timeout`, default 20 s). Longer than an HTTP write's
    /// `--replica-timeout`: the protocol has no "durable, not applied yet" answer (HTTP's 504),
    /// so a large transaction on a busy replica should get its `OK`, not an error for a write
    /// that went through. 20 s fits in the 25 s a stopping proxy gives an open commit.
    public var commitTimeout: Duration

    public init(
        host: String = "0.0.0.0", port: Int = 6080, index: String = "main", readOnly: Bool = false, maxConnections: Int = 1024,
        commitTimeout: Duration = .seconds(20)
    ) {
        self.host = host
        self.port = port
        self.index = index
        self.readOnly = readOnly
        self.maxConnections = maxConnections
        self.commitTimeout = commitTimeout
    }
}

/// Bounds on a request, checked before it is routed: the proxy is all that stands between
/// clients and fpindex, whose HTTP parser cannot take request or header lines over about 8 KB.
public struct RequestLimits: Sendable, Equatable {
    /// Longest request target (path and query) in bytes (`--max-request-target`, default 4096): else 414.
    public var maxTargetBytes: Int
    /// Largest header field (name and value) in bytes (`--max-header-bytes`, default 8192): else 431.
    public var maxHeaderBytes: Int
    /// Most header fields (`--max-headers`, default 100): else 431.
    public var maxHeaders: Int

    public init(maxTargetBytes: Int = 4096, maxHeaderBytes: Int = 8192, maxHeaders: Int = 100) {
        self.maxTargetBytes = maxTargetBytes
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaders = maxHeaders
    }

    /// Why a request is refused before routing, or nil.
    public func violation(target: Int, headers: [(name: Int, value: Int)]) -> FpindexError? {
        if target > maxTargetBytes {
            return FpindexError(.uriTooLong, "request target of \(target) bytes (at most \(maxTargetBytes))")
        }
        if headers.count > maxHeaders {
            return FpindexError(.requestHeaderFieldsTooLarge, "\(headers.count) header fields (at most \(maxHeaders))")
        }
        if let largest = headers.map({ $0.name + $0.value + 2 }).max(), largest > maxHeaderBytes {
            return FpindexError(.requestHeaderFieldsTooLarge, "a header field of \(largest) bytes (at most \(maxHeaderBytes))")
        }
        return nil
    }
}

extension ProxyConfiguration: CustomStringConvertible, CustomDebugStringConvertible {
    /// Secrets are never part of a description: these end up in logs.
    public var description: String {
        "ProxyConfiguration(listen: \(host):\(port), \(nats), stream: \(stream.name), read: \(readURL), auth: \(auth == nil ? "none" : "***"))"
    }

    public var debugDescription: String { description }
}
