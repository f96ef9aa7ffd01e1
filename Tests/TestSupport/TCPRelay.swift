import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A TCP relay on a free loopback port to an upstream server, that can stop carrying bytes
/// in both directions and start again: what a client sees of a server that is paused
/// (SIGSTOP, a frozen host) while its kernel still accepts what is sent. Bytes sent while
/// paused wait in the sockets and arrive, in order, on `resume()`.
public final class TCPRelay: Sendable {
    private struct State {
        var paused = false
        var closed = false
        /// Pumps moving bytes right now (outside the lock).
        var moving = 0
        var sockets: [Int32] = []
        var connections = 0
    }

    public let port: Int
    private let listener: Int32
    private let upstreamPort: Int
    private let state = Mutex(State())

    /// Listens on a free loopback port, relaying every connection to `127.0.0.1:upstreamPort`.
    public init(upstreamPort: Int) throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw TestFailure("relay: socket() failed") }
        var address = Self.loopback(port: 0)
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(listener, 16) == 0 else {
            Glibc.close(listener)
            throw TestFailure("relay: cannot listen on loopback")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        self.listener = listener
        self.port = Int(UInt16(bigEndian: address.sin_port))
        self.upstreamPort = upstreamPort
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    public var url: String { "nats://127.0.0.1:\(port)" }

    /// Connections accepted so far.
    public var connections: Int { state.withLock { $0.connections } }

    /// Stops carrying bytes; when this returns, no byte moves until `resume()`.
    public func pause() {
        state.withLock { $0.paused = true }
        while state.withLock({ $0.moving > 0 }) { usleep(1000) }
    }

    public func resume() { state.withLock { $0.paused = false } }

    /// Closes the listener and every relayed connection.
    public func close() {
        let sockets = state.withLock { state -> [Int32] in
            state.closed = true
            return state.sockets
        }
        for socket in sockets { shutdown(socket, Int32(SHUT_RDWR)) }
        shutdown(listener, Int32(SHUT_RDWR))
    }

    /// The pump threads hold the relay until they end, so no socket is closed under them.
    deinit {
        for socket in state.withLock({ $0.sockets }) { Glibc.close(socket) }
        Glibc.close(listener)
    }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    private func acceptLoop() {
        while !state.withLock({ $0.closed }) {
            guard Self.waitReadable(listener) else { continue }
            let client = accept(listener, nil, nil)
            guard client >= 0 else { continue }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = Self.loopback(port: UInt16(upstreamPort))
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else {
                Glibc.close(client)
                Glibc.close(upstream)
                continue
            }
            state.withLock {
                $0.sockets += [client, upstream]
                $0.connections += 1
            }
            Thread { [self] in pump(from: client, to: upstream) }.start()
            Thread { [self] in pump(from: upstream, to: client) }.start()
        }
    }

    /// Carries bytes from one socket to the other while not paused. A pump counts itself as
    /// moving (under the lock that `pause()` takes) before it reads, and `pause()` waits until
    /// none is, so nothing moves once it returned; the reads and writes happen outside the lock.
    private func pump(from source: Int32, to destination: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            if state.withLock({ $0.closed }) { break }
            guard Self.waitReadable(source) else { continue }
            enum Step { case paused, moved, ended }
            let admitted = state.withLock { state -> Step in
                if state.closed { return .ended }
                if state.paused { return .paused }
                state.moving += 1
                return .moved
            }
            var step = admitted
            if admitted == .moved {
                defer { state.withLock { $0.moving -= 1 } }
                let count = buffer.withUnsafeMutableBytes { recv(source, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if count == 0 || (count < 0 && errno != EAGAIN && errno != EINTR) {
                    step = .ended
                } else if count > 0 {
                    var sent = 0
                    while sent < count {
                        let written = buffer.withUnsafeBytes { send(destination, $0.baseAddress! + sent, count - sent, Int32(MSG_NOSIGNAL)) }
                        guard written > 0 else {
                            step = .ended
                            break
                        }
                        sent += written
                    }
                }
            }
            switch step {
            case .paused: usleep(5000)
            case .moved: continue
            case .ended:
                shutdown(destination, Int32(SHUT_WR))
                return
            }
        }
    }

    /// Waits up to 50 ms for `socket` to be readable (or closed).
    private static func waitReadable(_ socket: Int32) -> Bool {
        var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 50) > 0
    }
}
