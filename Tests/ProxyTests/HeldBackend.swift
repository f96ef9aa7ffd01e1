import NIOCore
import NIOPosix
import Synchronization

/// A read backend that takes requests and answers none of them until `release()`: a request
/// can be held in flight through the proxy for as long as a test needs, with no timing guess.
final class HeldBackend: Sendable {
    let port: Int
    private let channel: any Channel
    private let held: HeldChannels
    private let arrivals: AsyncStream<Void>.Continuation
    /// One element per request whose head has arrived.
    let arrived: AsyncStream<Void>

    static let reply = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{\"results\":[]}"

    static func start() async throws -> HeldBackend {
        let held = HeldChannels()
        let (arrived, arrivals) = AsyncStream<Void>.makeStream()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { child in
                child.pipeline.addHandler(RequestHeadCatcher { held.channels.withLock { $0.append(child) }; arrivals.yield() })
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return HeldBackend(channel: channel, held: held, arrived: arrived, arrivals: arrivals)
    }

    private init(
        channel: any Channel, held: HeldChannels, arrived: AsyncStream<Void>, arrivals: AsyncStream<Void>.Continuation
    ) {
        self.channel = channel
        self.port = channel.localAddress?.port ?? 0
        self.held = held
        self.arrived = arrived
        self.arrivals = arrivals
    }

    var url: String { "http://127.0.0.1:\(port)" }

    /// Answers every held request still connected with a 200 and an empty search result.
    func release() async {
        for child in held.channels.withLock({ $0 }) {
            try? await child.writeAndFlush(ByteBuffer(string: Self.reply))
        }
    }

    func stop() async {
        arrivals.finish()
        try? await channel.close()
    }
}

private final class HeldChannels: Sendable {
    let channels = Mutex<[any Channel]>([])
}

/// Calls `onHead` once a request's head (up to the blank line) has been read.
private final class RequestHeadCatcher: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private var received = ""
    private var caught = false
    private let onHead: @Sendable () -> Void

    init(onHead: @escaping @Sendable () -> Void) { self.onHead = onHead }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received += String(buffer: unwrapInboundIn(data))
        if !caught, received.contains("\r\n\r\n") {
            caught = true
            onHead()
        }
    }
}
