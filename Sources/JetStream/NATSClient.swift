import CNats
import Logging
import NIOPosix
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A connection to NATS with JetStream, over cnats.
///
/// cnats calls block their thread, so every blocking call runs on the thread pool given at
/// connect time, never on the cooperative pool or an event loop. cnats handles are
/// thread-safe; callbacks arrive on cnats' threads and are bridged to Swift concurrency.
public final class NATSClient: @unchecked Sendable {
    /// The connection as cnats reports it.
    public enum State: String, Sendable {
        case connected
        case reconnecting
        case disconnected
        case closed
    }

    let connection: OpaquePointer
    let jetStream: OpaquePointer
    private let options: OpaquePointer
    let events: ConnectionEvents
    let publishes: PublishTracker
    let threadPool: NIOThreadPool
    let configuration: NATSConfiguration
    let logger: Logger
    /// The version the server announced, e.g. `2.15.1`.
    public let serverVersion: String
    private let closed = OnceFlag()

    /// The oldest server this project supports: older ones silently drop stream options it relies on.
    public static let minimumServerVersion = (2, 11)

    /// Connects, retrying until `configuration.timeout` passes, and checks the server version.
    /// - Throws: `JetStreamError` with kind `.unavailable`, `.configuration` or `.unsupportedServer`.
    public static func connect(
        _ configuration: NATSConfiguration, logger: Logger, threadPool: NIOThreadPool = .singleton
    ) async throws -> NATSClient {
        let events = ConnectionEvents(logger: logger)
        let publishes = PublishTracker()
        let handles = try await threadPool.runIfActive {
            try Self.openConnection(configuration, events: events, publishes: publishes)
        }
        let version = (try? await threadPool.runIfActive { Self.probeServerVersion(handles) }) ?? nil
        let client = NATSClient(
            connection: handles.connection, jetStream: handles.jetStream, options: handles.options, events: events,
            publishes: publishes, threadPool: threadPool, configuration: configuration, logger: logger,
            serverVersion: version ?? "unknown")
        do {
            try await client.checkServer()
        } catch {
            await client.close()
            throw error
        }
        logger.info(
            "connected to NATS",
            metadata: ["nats.servers": "\(configuration.redactedServers)", "nats.server_version": "\(client.serverVersion)"])
        return client
    }

    /// Connects, retrying with capped exponential backoff while no server answers (NATS may start
    /// after us). Errors that retrying cannot fix (an unsupported server, bad settings) are thrown.
    /// - Parameters:
    ///   - sleep: how to wait between attempts (services wake early on shutdown).
    ///   - keepTrying: false stops the retries (shutdown); the result is then nil.
    public static func connectRetrying(
        _ configuration: NATSConfiguration, logger: Logger, threadPool: NIOThreadPool = .singleton,
        sleep: (Duration) async -> Void, keepTrying: () -> Bool
    ) async throws -> NATSClient? {
        var delay = Duration.milliseconds(200)
        while keepTrying() {
            do {
                return try await connect(configuration, logger: logger, threadPool: threadPool)
            } catch let error as JetStreamError where error.kind == .unsupportedServer || error.kind == .configuration {
                logger.critical("cannot use this NATS server", metadata: ["error": "\(error)"])
                throw error
            } catch {
                logger.warning("cannot connect to NATS yet; retrying", metadata: ["error": "\(error)", "retry.delay": "\(delay)"])
                await sleep(delay)
                delay = min(delay * 2, .seconds(10))
            }
        }
        return nil
    }

    private init(
        connection: OpaquePointer, jetStream: OpaquePointer, options: OpaquePointer, events: ConnectionEvents,
        publishes: PublishTracker, threadPool: NIOThreadPool, configuration: NATSConfiguration, logger: Logger, serverVersion: String
    ) {
        self.connection = connection
        self.jetStream = jetStream
        self.options = options
        self.events = events
        self.publishes = publishes
        self.threadPool = threadPool
        self.configuration = configuration
        self.logger = logger
        self.serverVersion = serverVersion
    }

    deinit {
        if !closed.isSet {
            jsCtx_Destroy(jetStream)
            natsConnection_Destroy(connection)
            natsOptions_Destroy(options)
        }
    }

    /// The connection state now.
    public var state: State { events.state }

    /// Waits for in-flight publishes, drains and closes the connection. Idempotent.
    ///
    /// Without a server (reconnecting), nothing can be acknowledged or drained: it closes at
    /// once, and publishes still in flight fail as unavailable (never acknowledged to anyone).
    /// Waiting there would only hold a stopping pod until its SIGKILL.
    public func close() async {
        guard closed.setOnce() else { return }
        // A thread of its own, not the shared pool: with the server away, requests block pool
        // threads for their whole timeout, and closing must not queue behind them.
        let closer = NIOThreadPool(numberOfThreads: 1)
        closer.start()
        try? await closer.runIfActive { [self] in closeHandles() }
        try? await closer.shutdownGracefully()
        publishes.failAll(JetStreamError(.unavailable, "connection closed"))
        events.markClosed()
        logger.info("closed the NATS connection")
    }

    /// Drains when connected, then closes and frees the cnats handles (blocking).
    private func closeHandles() {
        if natsConnection_Status(connection) == NATS_CONN_STATUS_CONNECTED {
            var publishOptions = jsPubOptions()
            jsPubOptions_Init(&publishOptions)
            publishOptions.MaxWait = 5000
            _ = js_PublishAsyncComplete(jetStream, &publishOptions)
            _ = natsConnection_DrainTimeout(connection, 5000)
            // Wait (bounded) for the drain to finish before destroying the handles; a
            // connection lost meanwhile cannot drain any more.
            for _ in 0..<100
            where !natsConnection_IsClosed(connection) && natsConnection_Status(connection) != NATS_CONN_STATUS_RECONNECTING {
                usleep(50_000)
            }
        }
        natsConnection_Close(connection)
        jsCtx_Destroy(jetStream)
        natsConnection_Destroy(connection)
        natsOptions_Destroy(options)
    }

    // MARK: Connecting

    private struct Handles: @unchecked Sendable {
        var connection: OpaquePointer
        var jetStream: OpaquePointer
        var options: OpaquePointer
    }

    private static func check(_ status: natsStatus, _ what: String, kind: JetStreamError.Kind = .configuration) throws {
        guard status == NATS_OK else {
            throw JetStreamError(kind, "\(what): \(statusText(status))")
        }
    }

    private static func openConnection(
        _ configuration: NATSConfiguration, events: ConnectionEvents, publishes: PublishTracker
    ) throws -> Handles {
        var options: OpaquePointer?
        try check(natsOptions_Create(&options), "cannot create NATS options")
        guard let options else { throw JetStreamError(.configuration, "cannot create NATS options") }
        var ok = false
        defer { if !ok { natsOptions_Destroy(options) } }

        let servers = configuration.servers.map { strdup($0) }
        defer { servers.forEach { free($0) } }
        var serverPointers = servers.map { UnsafePointer($0) }
        try serverPointers.withUnsafeMutableBufferPointer { buffer in
            try check(natsOptions_SetServers(options, buffer.baseAddress, Int32(buffer.count)), "bad NATS server list")
        }
        try check(natsOptions_SetName(options, configuration.name), "bad connection name")
        if let user = configuration.user {
            try check(natsOptions_SetUserInfo(options, user, configuration.password ?? ""), "bad NATS user")
        }
        if let token = configuration.token {
            try check(natsOptions_SetToken(options, token), "bad NATS token")
        }
        if let creds = configuration.credentialsFile {
            try check(natsOptions_SetUserCredentialsFromFiles(options, creds, nil), "cannot use credentials file \(creds)")
        }
        if let seedFile = configuration.nkeySeedFile {
            guard let publicKey = configuration.nkeyPublicKey else {
                throw JetStreamError(.configuration, "an NKey seed file needs the user's public NKey (NATS_NKEY)")
            }
            try check(natsOptions_SetNKeyFromSeed(options, publicKey, seedFile), "cannot use NKey seed file \(seedFile)")
        }
        let wantsTLS =
            configuration.tlsRequired || configuration.tlsCAFile != nil || configuration.tlsCertificateFile != nil
            || configuration.servers.contains { $0.hasPrefix("tls://") }
        if wantsTLS {
            try check(natsOptions_SetSecure(options, true), "cannot enable TLS")
        }
        if let ca = configuration.tlsCAFile {
            try check(natsOptions_LoadCATrustedCertificates(options, ca), "cannot load CA file \(ca)")
        }
        if let cert = configuration.tlsCertificateFile {
            guard let key = configuration.tlsKeyFile else {
                throw JetStreamError(.configuration, "a TLS client certificate needs its key file")
            }
            try check(natsOptions_LoadCertificatesChain(options, cert, key), "cannot load client certificate \(cert)")
        }
        let timeoutMs = configuration.timeout.cnatsMilliseconds
        let reconnectMs = configuration.reconnectWait.cnatsMilliseconds
        try check(natsOptions_SetTimeout(options, timeoutMs), "bad timeout")
        try check(natsOptions_SetMaxReconnect(options, -1), "bad reconnect setting")
        try check(natsOptions_SetReconnectWait(options, reconnectMs), "bad reconnect wait")
        try check(natsOptions_SetReconnectJitter(options, 100, 1000), "bad reconnect jitter")
        try check(natsOptions_SetPingInterval(options, configuration.pingInterval.cnatsMilliseconds), "bad ping interval")
        try check(natsOptions_SetMaxPingsOut(options, Int32(max(configuration.maxPingsOut, 1))), "bad ping limit")
        try check(natsOptions_SetRetryOnFailedConnect(options, false, nil, nil), "bad retry setting")
        // Requests fail fast while disconnected instead of waiting out their timeout.
        try check(natsOptions_SetFailRequestsOnDisconnect(options, true), "bad request setting")
        // Publishes made while reconnecting are buffered (bounded) and flushed on reconnect.
        try check(natsOptions_SetReconnectBufSize(options, 64 << 20), "bad reconnect buffer")
        // cnats calls these on its own threads, also after close() returned and the client was
        // released (the closed callback in particular): the state they touch is retained for
        // good, a few bytes per connection ever opened.
        let box = Unmanaged.passRetained(events).toOpaque()
        try check(natsOptions_SetDisconnectedCB(options, connectionDisconnected, box), "cannot set callback")
        try check(natsOptions_SetReconnectedCB(options, connectionReconnected, box), "cannot set callback")
        try check(natsOptions_SetClosedCB(options, connectionClosed, box), "cannot set callback")

        var connection: OpaquePointer?
        let status = natsConnection_Connect(&connection, options)
        guard status == NATS_OK, let connection else {
            throw JetStreamError(
                .unavailable,
                "cannot connect to NATS at \(configuration.redactedServers): \(statusText(status))")
        }
        var jsOptions = jsOptions()
        jsOptions_Init(&jsOptions)
        jsOptions.Wait = timeoutMs
        jsOptions.PublishAsync.MaxPending = Int64(configuration.publishWindow) * 2
        jsOptions.PublishAsync.AckHandler = publishAcknowledged
        jsOptions.PublishAsync.AckHandlerClosure = Unmanaged.passUnretained(publishes).toOpaque()
        var jetStream: OpaquePointer?
        let jsStatus = natsConnection_JetStream(&jetStream, connection, &jsOptions)
        guard jsStatus == NATS_OK, let jetStream else {
            natsConnection_Destroy(connection)
            throw JetStreamError(.configuration, "cannot create a JetStream context: \(String(cString: natsStatus_GetText(jsStatus)))")
        }
        events.markConnected()
        ok = true
        return Handles(connection: connection, jetStream: jetStream, options: options)
    }

    /// Reads the `INFO` line a NATS server sends first on a new connection, for its version.
    /// Best effort: nil when the server speaks TLS first or cannot be reached.
    private static func probeServerVersion(_ handles: Handles) -> String? {
        var buffer = [CChar](repeating: 0, count: 512)
        guard natsConnection_GetConnectedUrl(handles.connection, &buffer, buffer.count) == NATS_OK else { return nil }
        let url = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let components = URLComponents(string: url), let host = components.host else { return nil }
        return ServerInfoProbe.version(host: host, port: components.port ?? 4222)
    }

    /// Refuses servers older than 2.11 and servers without JetStream.
    private func checkServer() async throws {
        let reply = try await request(subject: "$JS.API.INFO", payload: [])
        let info = try JetStreamAPI.decode(AccountInfo.self, from: reply, what: "JetStream account info")
        if let version = ServerVersion(serverVersion) {
            guard version >= ServerVersion(major: Self.minimumServerVersion.0, minor: Self.minimumServerVersion.1, patch: 0) else {
                throw JetStreamError(
                    .unsupportedServer,
                    "nats-server \(serverVersion) is too old: fpindex-cluster needs 2.11 or newer (older servers silently ignore stream options it relies on)"
                )
            }
        } else if (info.api?.level ?? 0) < 1 {
            // No version from the probe (TLS first): JetStream API level 1 arrived with 2.11.
            throw JetStreamError(
                .unsupportedServer, "the NATS server reports no JetStream API level: fpindex-cluster needs nats-server 2.11 or newer")
        }
    }

    // MARK: Requests

    /// Sends a core NATS request and returns the reply's payload.
    public func request(subject: String, payload: [UInt8], timeout: Duration? = nil) async throws -> [UInt8] {
        let timeout = timeout ?? configuration.timeout
        let milliseconds = timeout.cnatsMilliseconds
        return try await threadPool.runIfActive { [self] in
            var reply: OpaquePointer?
            let status = payload.withUnsafeBytes { bytes in
                natsConnection_Request(&reply, self.connection, subject, bytes.baseAddress, Int32(bytes.count), milliseconds)
            }
            defer { natsMsg_Destroy(reply) }
            switch status {
            case NATS_OK:
                guard let reply else { throw JetStreamError(.unavailable, "empty reply", subject: subject) }
                if natsMsg_IsNoResponders(reply) {
                    throw JetStreamError(.unavailable, "no responders: is JetStream enabled on the server?", subject: subject)
                }
                return payloadBytes(of: reply)
            case NATS_TIMEOUT:
                throw JetStreamError(.timeout, "no reply within \(timeout)", subject: subject)
            case NATS_NO_RESPONDERS:
                throw JetStreamError(.unavailable, "no responders: is JetStream enabled on the server?", subject: subject)
            default:
                throw JetStreamError(.unavailable, statusText(status), subject: subject)
            }
        }
    }

    /// Publishes on core NATS (not stored by JetStream), e.g. progress notices.
    public func publishCore(subject: String, payload: [UInt8]) async throws {
        // On the thread pool like every other cnats call: a publish can block while cnats
        // flushes a full buffer to a slow or stalled server, and must not hold a cooperative thread.
        try await threadPool.runIfActive { [self] in
            let status = payload.withUnsafeBytes { bytes in
                natsConnection_Publish(connection, subject, bytes.baseAddress, Int32(bytes.count))
            }
            guard status == NATS_OK else {
                throw JetStreamError(.unavailable, statusText(status), subject: subject)
            }
        }
    }
}

/// Connection state, kept current by cnats' callbacks.
final class ConnectionEvents: Sendable {
    private let current = Mutex(NATSClient.State.disconnected)
    let logger: Logger

    init(logger: Logger) { self.logger = logger }

    var state: NATSClient.State { current.withLock { $0 } }

    func markConnected() { current.withLock { $0 = .connected } }
    func markClosed() { current.withLock { $0 = .closed } }

    func changed(to state: NATSClient.State) {
        let previous = current.withLock { old in
            defer { if old != .closed { old = state } }
            return old
        }
        guard previous != state, previous != .closed else { return }
        switch state {
        case .connected: logger.notice("reconnected to NATS")
        case .reconnecting, .disconnected: logger.warning("lost the NATS connection; reconnecting")
        case .closed: logger.info("NATS connection closed")
        }
    }
}

private func connectionDisconnected(_ connection: OpaquePointer?, _ closure: UnsafeMutableRawPointer?) {
    guard let closure else { return }
    Unmanaged<ConnectionEvents>.fromOpaque(closure).takeUnretainedValue().changed(to: .reconnecting)
}

private func connectionReconnected(_ connection: OpaquePointer?, _ closure: UnsafeMutableRawPointer?) {
    guard let closure else { return }
    Unmanaged<ConnectionEvents>.fromOpaque(closure).takeUnretainedValue().changed(to: .connected)
}

private func connectionClosed(_ connection: OpaquePointer?, _ closure: UnsafeMutableRawPointer?) {
    guard let closure else { return }
    Unmanaged<ConnectionEvents>.fromOpaque(closure).takeUnretainedValue().changed(to: .closed)
}

/// A dotted server version, compared numerically.
struct ServerVersion: Comparable {
    var major: Int
    var minor: Int
    var patch: Int

    init(major: Int, minor: Int, patch: Int) {
        self.major = major
        self.minor = minor
        self.patch = patch
    }

    init?(_ text: String) {
        let numbers = text.split(separator: "-").first?.split(separator: ".").map { Int($0) } ?? []
        guard numbers.count >= 2, let major = numbers[0], let minor = numbers[1] else { return nil }
        self.init(major: major, minor: minor, patch: numbers.count > 2 ? (numbers[2] ?? 0) : 0)
    }

    static func < (a: ServerVersion, b: ServerVersion) -> Bool {
        (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch)
    }
}
