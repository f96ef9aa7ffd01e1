#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// How to reach NATS: servers, credentials and TLS. Secrets travel as file paths or values
/// read by the executable; nothing here logs them.
public struct NATSConfiguration: Sendable {
    /// Server URLs (`--nats-url` / `NATS_URL`, comma-separated), e.g. `nats://nats:4222`.
    public var servers: [String]
    /// User and password (`NATS_USER` / `NATS_PASSWORD`).
    public var user: String?
    public var password: String?
    /// Token (`NATS_TOKEN`).
    public var token: String?
    /// A `.creds` file with a user JWT and NKey seed (`NATS_CREDS`).
    public var credentialsFile: String?
    /// NKey authentication: the user's public NKey (`NATS_NKEY`) and a file holding its seed (`NATS_NKEY_SEED`).
    public var nkeyPublicKey: String?
    public var nkeySeedFile: String?
    /// CA bundle to verify the server with (`NATS_TLS_CA`). Verification is always on with TLS.
    public var tlsCAFile: String?
    /// Client certificate and key for mutual TLS (`NATS_TLS_CERT` / `NATS_TLS_KEY`).
    public var tlsCertificateFile: String?
    public var tlsKeyFile: String?
    /// Require TLS even when the URLs say `nats://`.
    public var tlsRequired: Bool
    /// Connection name shown in the server's monitoring.
    public var name: String
    /// Timeout of the first connection attempt and of API requests.
    public var timeout: Duration
    /// Base delay between reconnect attempts (jittered, doubled up to 10x by cnats' own backoff settings).
    public var reconnectWait: Duration
    /// Publishes awaiting their stream acknowledgement at once (4096-16384 works well).
    public var publishWindow: Int
    /// How long a publish may wait for its acknowledgement before it fails.
    public var publishTimeout: Duration
    /// How often the client pings the server, and how many pings may go unanswered before the
    /// connection counts as lost and another server is tried: a hung server (stopped, or its
    /// host frozen) is left within `pingInterval * maxPingsOut` instead of cnats's 4 minutes.
    public var pingInterval: Duration
    public var maxPingsOut: Int

    public init(
        servers: [String] = ["nats://127.0.0.1:4222"], user: String? = nil, password: String? = nil, token: String? = nil,
        credentialsFile: String? = nil, nkeyPublicKey: String? = nil, nkeySeedFile: String? = nil, tlsCAFile: String? = nil,
        tlsCertificateFile: String? = nil,
        tlsKeyFile: String? = nil, tlsRequired: Bool = false, name: String = "fpindex-cluster", timeout: Duration = .seconds(5),
        reconnectWait: Duration = .milliseconds(250), publishWindow: Int = 8192, publishTimeout: Duration = .seconds(10),
        pingInterval: Duration = .seconds(5), maxPingsOut: Int = 3
    ) {
        self.servers = servers
        self.user = user
        self.password = password
        self.token = token
        self.credentialsFile = credentialsFile
        self.nkeyPublicKey = nkeyPublicKey
        self.nkeySeedFile = nkeySeedFile
        self.tlsCAFile = tlsCAFile
        self.tlsCertificateFile = tlsCertificateFile
        self.tlsKeyFile = tlsKeyFile
        self.tlsRequired = tlsRequired
        self.name = name
        self.timeout = timeout
        self.reconnectWait = reconnectWait
        self.publishWindow = publishWindow
        self.publishTimeout = publishTimeout
        self.pingInterval = pingInterval
        self.maxPingsOut = maxPingsOut
    }

    /// The server URLs with any credentials in them masked, for logs.
    public var redactedServers: String {
        servers.map { url in
            guard let at = url.firstIndex(of: "@"), let scheme = url.firstRange(of: "://") else { return url }
            return String(url[..<scheme.upperBound]) + "***" + String(url[at...])
        }.joined(separator: ",")
    }
}

/// The stream of docs/design.md (section 4), as this project wants it.
public struct StreamSettings: Sendable, Equatable {
    /// Stream name (default `fpindex`).
    public var name: String
    /// Subject prefix; the stream takes `<prefix>.>` (default `fpindex`).
    public var subjectPrefix: String
    /// Copies of the stream in a clustered JetStream (1 in development, 3 in production).
    public var replicas: Int
    /// Window in which a repeated `Nats-Msg-Id` is dropped as a duplicate.
    public var duplicateWindow: Duration
    /// File storage (the default) or memory.
    public var memoryStorage: Bool

    public init(
        name: String = "fpindex", subjectPrefix: String = "fpindex", replicas: Int = 1, duplicateWindow: Duration = .seconds(120),
        memoryStorage: Bool = false
    ) {
        self.name = name
        self.subjectPrefix = subjectPrefix
        self.replicas = replicas
        self.duplicateWindow = duplicateWindow
        self.memoryStorage = memoryStorage
    }
}

extension NATSConfiguration: CustomStringConvertible, CustomDebugStringConvertible {
    /// Secrets are never part of a description: these end up in logs.
    public var description: String {
        var parts = ["servers: \(redactedServers)"]
        if let user { parts.append("user: \(user)") }
        if password != nil { parts.append("password: ***") }
        if token != nil { parts.append("token: ***") }
        if let credentialsFile { parts.append("creds: \(credentialsFile)") }
        if let nkeySeedFile { parts.append("nkey seed: \(nkeySeedFile)") }
        if tlsCAFile != nil || tlsRequired { parts.append("tls: on") }
        return "NATSConfiguration(\(parts.joined(separator: ", ")))"
    }

    public var debugDescription: String { description }
}
