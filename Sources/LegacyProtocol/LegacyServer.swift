import Logging
import Metrics
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// What answers a legacy session's searches, attribute reads and commits.
public protocol LegacyBackend: Sendable {
    /// Called once before the port opens: the real server creates its index then if missing.
    /// Returns early when the service is told to stop (the port then never opens).
    func prepare() async throws
    /// `OK id:score ...`, or `ERR timeout exceeded` / `ERR search failed`.
    func search(_ hashes: [UInt32], tuning: LegacySearchTuning) async -> LegacyReply
    /// The index attribute's committed value; empty when unset or unreadable.
    func attribute(_ name: String) async -> String
    /// Writes the transaction; true once it is written (durable, and applied as the backend's
    /// consistency asks). False: `ERR commit failed`, the transaction stays open, and part or
    /// all of it may still have been written (a commit again writes the same again).
    func commit(_ transaction: LegacyTransaction) async -> Bool
}

public struct LegacyServerConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Connections served at once; one more is answered `ERR too many connections` and closed.
    public var maxConnections: Int
    public var readOnly: Bool

    public init(host: String, port: Int, maxConnections: Int = 1024, readOnly: Bool = false) {
        self.host = host
        self.port = port
        self.maxConnections = maxConnections
        self.readOnly = readOnly
    }

    /// The real server's read buffer, which bounds a line, line break included.
    public static let maxLineBytes = 256 * 1024
}

/// Serves AcoustID's legacy line protocol over TCP: one task per connection, lines answered
/// in order. On graceful shutdown it stops accepting, closes idle connections, and lets a
/// command in progress (a commit) finish and answer before its connection closes.
public final class LegacyServer: Service {
    let configuration: LegacyServerConfiguration
    let backend: any LegacyBackend
    let logger: Logger
    let onListening: @Sendable (Int) -> Void
    let metrics: LegacyMetrics
    /// Open connections, and whether the server is stopping (a connection that arrives then is
    /// closed at once: the shutdown already told the others).
    private let connections = Mutex<(open: [ObjectIdentifier: any Channel], stopping: Bool)>(([:], false))

    public init(
        configuration: LegacyServerConfiguration, backend: any LegacyBackend, logger: Logger,
        metricsFactory: any MetricsFactory = MetricsSystem.factory, onListening: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.backend = backend
        self.logger = logger
        self.metrics = LegacyMetrics(factory: metricsFactory)
        self.onListening = onListening
    }

    public func run() async throws {
        try await backend.prepare()
        guard !Task.isShuttingDownGracefully else { return }
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            // A client that sends its lines and then shuts its side down still gets every
            // reply, as from the real server.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .bind(host: configuration.host, port: configuration.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LegacyLineDecoder()))
                    try channel.pipeline.syncOperations.addHandler(LegacyIdleHandler())
                    return try NIOAsyncChannel<LegacyInbound, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        // A connection that fails while it is being set up is closed by NIO and its error
        // fired down the listener's pipeline, which would end the accept loop (and the
        // process): it is logged here instead.
        let channel = server.channel
        let logger = self.logger
        try await channel.eventLoop.submit {
            let accept = try channel.pipeline.syncOperations.context(name: "AcceptHandler")
            try channel.pipeline.syncOperations.addHandler(AcceptFailureLogger(logger: logger), position: .after(accept.handler))
        }.get()
        let port = server.channel.localAddress?.port ?? configuration.port
        logger.info("legacy protocol listening", metadata: ["host": "\(configuration.host)", "port": "\(port)"])
        onListening(port)
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                try await server.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask { await self.serve(connection) }
                    }
                }
            }
        } onGracefulShutdown: {
            server.channel.close(promise: nil)
            let open = self.connections.withLock { connections in
                connections.stopping = true
                return Array(connections.open.values)
            }
            for channel in open {
                channel.triggerUserOutboundEvent(LegacyIdleHandler.Event.shutdown, promise: nil)
            }
        }
        logger.info("legacy protocol stopped")
    }

    private func serve(_ connection: NIOAsyncChannel<LegacyInbound, ByteBuffer>) async {
        let id = ObjectIdentifier(connection.channel)
        enum Admission { case admitted, full, stopping }
        let admission = connections.withLock { connections -> Admission in
            if connections.stopping { return .stopping }
            guard connections.open.count < configuration.maxConnections else { return .full }
            connections.open[id] = connection.channel
            return .admitted
        }
        metrics.connected()
        defer {
            connections.withLock { _ = $0.open.removeValue(forKey: id) }
            metrics.disconnected()
        }
        do {
            try await connection.executeThenClose { inbound, outbound in
                guard admission != .stopping else { return }
                guard admission == .admitted else {
                    try await outbound.write(ByteBuffer(string: LegacyReply.error("too many connections").line))
                    return
                }
                var session = LegacySession(readOnly: configuration.readOnly)
                for try await item in inbound {
                    guard case .line(let line) = item else {
                        try await outbound.write(ByteBuffer(string: LegacyReply.error("line too long").line))
                        return
                    }
                    let idleTimeout = session.idleTimeoutMilliseconds
                    let start = ContinuousClock.now
                    let reply = await answer(session.handle(line: line[...]), &session)
                    metrics.answered(line[...], reply, since: start)
                    if session.idleTimeoutMilliseconds != idleTimeout {
                        try await connection.channel.triggerUserOutboundEvent(
                            LegacyIdleHandler.Event.idleTimeout(milliseconds: session.idleTimeoutMilliseconds)
                        ).get()
                    }
                    try await outbound.write(ByteBuffer(string: reply.line))
                }
            }
        } catch {
            logger.debug("legacy connection ended", metadata: ["error": "\(error)"])
        }
    }

    private func answer(_ step: LegacySession.Step, _ session: inout LegacySession) async -> LegacyReply {
        switch step {
        case .reply(let reply):
            return reply
        case .search(let hashes, let tuning):
            return await backend.search(hashes, tuning: tuning)
        case .readAttribute(let name):
            return .ok(await backend.attribute(name))
        case .commit(let transaction):
            guard await backend.commit(transaction) else { return .error("commit failed") }
            session.committed()
            return .ok("")
        }
    }
}

/// Logs the failure of one accepted connection instead of passing it on to the accept loop.
final class AcceptFailureLogger: ChannelInboundHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel
    let logger: Logger

    init(logger: Logger) { self.logger = logger }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.warning("a legacy connection failed while being set up", metadata: ["error": "\(error)"])
    }
}

/// A line of the legacy protocol, or the sign that one went past the limit.
public enum LegacyInbound: Sendable {
    /// Without its line break (trailing `\r` and `\n` trimmed).
    case line([UInt8])
    case tooLong
}

/// Splits the byte stream into lines at `\n`, as the real server's reader does: a line,
/// line break included, may take `LegacyServerConfiguration.maxLineBytes`; a longer one is
/// reported once and the rest of the stream ignored. Bytes after the last line break when
/// the stream ends are not a line.
struct LegacyLineDecoder: ByteToMessageDecoder {
    typealias InboundOut = LegacyInbound
    private var overflowed = false
    /// How many bytes of the line in progress were already searched for its end: a line that
    /// comes a byte at a time is scanned once, not once per byte.
    private var scanned = 0

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard !overflowed else {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        let limit = LegacyServerConfiguration.maxLineBytes
        let view = buffer.readableBytesView
        let window = view.dropFirst(scanned).prefix(max(limit - scanned, 0))
        guard let newline = window.firstIndex(of: UInt8(ascii: "\n")) else {
            scanned = min(view.count, limit)
            if buffer.readableBytes >= limit {
                overflowed = true
                context.fireChannelRead(wrapInboundOut(.tooLong))
            }
            return .needMoreData
        }
        scanned = 0
        var line = buffer.readBytes(length: newline - buffer.readerIndex + 1)!
        while let last = line.last, last == UInt8(ascii: "\n") || last == UInt8(ascii: "\r") { line.removeLast() }
        context.fireChannelRead(wrapInboundOut(.line(line)))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}

/// The idle timeout: a connection with no command in progress and no new line for the
/// session's `idle_timeout` gets `ERR timeout` and is closed. Also closes a connection on
/// shutdown as soon as it has no command in progress.
final class LegacyIdleHandler: ChannelDuplexHandler {
    typealias InboundIn = LegacyInbound
    typealias InboundOut = LegacyInbound
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Event: Sendable {
        case idleTimeout(milliseconds: UInt32)
        case shutdown
    }

    private var timeout = TimeAmount.milliseconds(60_000)
    /// Lines received and not answered yet.
    private var unanswered = 0
    private var shuttingDown = false
    private var timer: Scheduled<Void>?

    func channelActive(context: ChannelHandlerContext) {
        schedule(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        unanswered += 1
        timer?.cancel()
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        unanswered = max(unanswered - 1, 0)
        context.write(data, promise: promise)
        guard unanswered == 0 else { return }
        if shuttingDown {
            context.flush()
            context.close(promise: nil)
        } else {
            schedule(context)
        }
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard let event = event as? Event else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        switch event {
        case .idleTimeout(let milliseconds):
            timeout = .milliseconds(Int64(milliseconds))
        case .shutdown:
            shuttingDown = true
            if unanswered == 0 { context.close(promise: nil) }
        }
        promise?.succeed()
    }

    private func schedule(_ context: ChannelHandlerContext) {
        timer?.cancel()
        guard context.channel.isActive else { return }
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = bound.value
            guard handler.unanswered == 0 else { return }
            context.writeAndFlush(handler.wrapOutboundOut(ByteBuffer(string: LegacyReply.error("timeout").line)), promise: nil)
            context.close(promise: nil)
        }
    }
}
