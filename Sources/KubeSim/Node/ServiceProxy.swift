import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The node's kube-proxy, in user space: a TCP listener per Service port on the Service's
/// address (and on 127.0.0.1:nodePort for NodePort Services), each connection forwarded to
/// one ready endpoint, round robin. Connections to a Service without ready endpoints are
/// closed at once (as kube-proxy rejects them).
final class ServiceProxy: Sendable {
    struct Listener: Hashable, Sendable {
        var host: String
        var port: Int
    }
    struct Backend: Hashable, Sendable {
        var host: String
        var port: Int
    }

    private let backends = Mutex<[Listener: [Backend]]>([:])
    private let turn = Atomic<Int>(0)
    /// NetworkPolicies: a connection goes only to a backend whose policies admit its source.
    private let policy = Mutex((snapshot: NetworkPolicySnapshot(), podAddresses: Set<String>()))
    private let channels = Mutex<[Listener: any Channel]>([:])
    /// Accepted connections, closed with the proxy (a pod's connection can outlive its network
    /// namespace without a FIN reaching here).
    private let connections = Mutex<[ObjectIdentifier: any Channel]>([:])
    let logger: Logger

    init(logger: Logger) { self.logger = logger }

    var listeners: Set<Listener> { Set(channels.withLock { $0.keys }) }

    /// Sets where each listener forwards to; opens missing listeners and closes those not wanted.
    /// A listener that cannot bind is logged and retried on the next call.
    func apply(_ table: [Listener: [Backend]]) async {
        backends.withLock { $0 = table }
        let open = listeners
        for listener in open where table[listener] == nil {
            if let channel = channels.withLock({ $0.removeValue(forKey: listener) }) { try? await channel.close() }
        }
        for listener in table.keys where !open.contains(listener) {
            do {
                let channel = try await bind(listener)
                channels.withLock { $0[listener] = channel }
            } catch {
                logger.warning(
                    "service proxy cannot listen", metadata: ["address": "\(listener.host):\(listener.port)", "error": "\(error)"])
            }
        }
    }

    func closeAll() async {
        let open = channels.withLock { channels in
            defer { channels = [:] }
            return Array(channels.values)
        }
        let accepted = connections.withLock { connections in
            defer { connections = [:] }
            return Array(connections.values)
        }
        for channel in open + accepted { try? await channel.close() }
    }

    func setPolicy(_ snapshot: NetworkPolicySnapshot, podAddresses: Set<String>) {
        policy.withLock { $0 = (snapshot, podAddresses) }
    }

    /// The backends a connection from `source` may reach, as NetworkPolicies say.
    func admitted(_ candidates: [Backend], from source: String?) -> [Backend] {
        let (snapshot, addresses) = policy.withLock { ($0.snapshot, $0.podAddresses) }
        return candidates.filter { snapshot.allows(source: source, destination: $0.host, port: $0.port, podAddresses: addresses) }
    }

    private func next(for listener: Listener) -> [Backend] {
        let candidates = backends.withLock { $0[listener] ?? [] }
        guard !candidates.isEmpty else { return [] }
        let start = turn.wrappingAdd(1, ordering: .relaxed).oldValue
        return (0..<candidates.count).map { candidates[(start + $0) % candidates.count] }
    }

    private func bind(_ listener: Listener) async throws -> any Channel {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { [self] inbound in
                let key = ObjectIdentifier(inbound)
                connections.withLock { $0[key] = inbound }
                inbound.closeFuture.whenComplete { [self] _ in _ = connections.withLock { $0.removeValue(forKey: key) } }
                // Refused by policy: closed, as a dropped connection ends for the client.
                connect(inbound, candidates: admitted(next(for: listener), from: inbound.remoteAddress?.ipAddress))
                return inbound.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: listener.host, port: listener.port).get()
    }

    /// Connects to the first reachable backend and glues the two channels.
    private func connect(_ inbound: any Channel, candidates: [Backend]) {
        guard let backend = candidates.first else {
            inbound.close(promise: nil)
            return
        }
        ClientBootstrap(group: inbound.eventLoop)
            .connectTimeout(.seconds(2))
            .channelOption(.autoRead, value: false)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .connect(host: backend.host, port: backend.port)
            .whenComplete { [self] result in
                switch result {
                case .success(let outbound):
                    let (toOutbound, toInbound) = GlueHandler.matchedPair()
                    do {
                        try inbound.pipeline.syncOperations.addHandler(toOutbound)
                        try outbound.pipeline.syncOperations.addHandler(toInbound)
                    } catch {
                        inbound.close(promise: nil)
                        outbound.close(promise: nil)
                        return
                    }
                    // Reading starts now that the glue is in place; the glue holds reads back while
                    // the other side cannot take more (back-pressure).
                    inbound.setOption(.autoRead, value: true).whenFailure { _ in inbound.close(promise: nil) }
                    outbound.setOption(.autoRead, value: true).whenFailure { _ in outbound.close(promise: nil) }
                case .failure:
                    connect(inbound, candidates: Array(candidates.dropFirst()))
                }
            }
    }
}

/// Copies bytes between two channels with back-pressure (after swift-nio's connect-proxy example).
final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false

    static func matchedPair() -> (GlueHandler, GlueHandler) {
        let first = GlueHandler()
        let second = GlueHandler()
        first.partner = second
        second.partner = first
        return (first, second)
    }

    private func partnerWrite(_ data: NIOAny) { context?.write(data, promise: nil) }
    private func partnerFlush() { context?.flush() }
    private func partnerWriteEOF() { context?.close(mode: .output, promise: nil) }
    private func partnerCloseFull() { context?.close(promise: nil) }
    private func partnerBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }
    private var partnerWritable: Bool { context?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { partner?.partnerWrite(data) }
    func channelReadComplete(context: ChannelHandlerContext) { partner?.partnerFlush() }
    func channelInactive(context: ChannelHandlerContext) { partner?.partnerCloseFull() }
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event { partner?.partnerWriteEOF() }
    }
    func errorCaught(context: ChannelHandlerContext, error: any Error) { partner?.partnerCloseFull() }
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
    }
    func read(context: ChannelHandlerContext) {
        if let partner, partner.partnerWritable {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
