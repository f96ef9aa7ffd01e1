#if canImport(Glibc)
    import Glibc
#endif

/// A blocking client of AcoustID's legacy line protocol, as `acoustid/indexclient.py` speaks
/// it: one line out, one `OK ...` / `ERR ...` line back (the test suites and `fpindex-bench
/// legacy` drive servers with it). A 30 s receive timeout, so a server that never answers is
/// an error, not a hang. Used by one thread at a time.
public final class LegacyClient: @unchecked Sendable {
    private let socket: Int32
    private var buffer: [UInt8] = []

    /// Connects to `host`:`port` (an IPv4 address), retrying until `timeout` (a server that is starting).
    public init(host: String = "127.0.0.1", port: Int, timeout: Duration = .seconds(20)) throws {
        let deadline = ContinuousClock.now + timeout
        guard inet_addr(host) != INADDR_NONE else { throw LegacyClientError("\(host) is not an IPv4 address") }
        while true {
            let candidate = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(port).bigEndian
            address.sin_addr.s_addr = inet_addr(host)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(candidate, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if connected == 0 {
                var timeout = timeval(tv_sec: 30, tv_usec: 0)
                setsockopt(candidate, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                var one: Int32 = 1
                setsockopt(candidate, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                socket = candidate
                return
            }
            Glibc.close(candidate)
            guard ContinuousClock.now < deadline else { throw LegacyClientError("nothing accepts legacy connections on \(host):\(port)") }
            usleep(50_000)
        }
    }

    /// Connects as `init` does, but waits between attempts without holding a thread: for a
    /// server that is still starting, from async code (a blocked thread of the cooperative
    /// pool stalls every other task of the process meanwhile).
    public static func connect(host: String = "127.0.0.1", port: Int, timeout: Duration = .seconds(20)) async throws -> LegacyClient {
        let deadline = ContinuousClock.now + timeout
        while true {
            do {
                return try LegacyClient(host: host, port: port, timeout: .zero)
            } catch {
                guard ContinuousClock.now < deadline else { throw error }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    deinit { Glibc.close(socket) }

    /// Sends `line` and CRLF, and returns the reply without its CRLF.
    @discardableResult
    public func send(_ line: String) throws -> String {
        try write(Array((line + "\r\n").utf8))
        return try readReply()
    }

    /// Sends raw bytes (no line break added).
    public func write(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.send(socket, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { throw LegacyClientError("legacy connection: send failed (errno \(errno))") }
            sent += written
        }
    }

    /// The next reply line, without its CRLF.
    public func readReply() throws -> String {
        while true {
            if let end = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                var line = Array(buffer[..<end])
                buffer.removeSubrange(...end)
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                return String(decoding: line, as: UTF8.self)
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count = chunk.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { throw LegacyClientError("legacy connection closed (or silent for 30 s) before a reply") }
            buffer += chunk[..<count]
        }
    }

    /// True when the server closed the connection (reads end, or the connection was reset:
    /// closed with bytes of ours unread), false if bytes came instead or nothing for 30 s.
    public func isClosedByServer() -> Bool {
        var byte: UInt8 = 0
        let count = recv(socket, &byte, 1, 0)
        return count == 0 || (count < 0 && errno == ECONNRESET)
    }

    /// Shuts the sending side down (the server reads the end of the stream); replies still come.
    public func finishSending() {
        shutdown(socket, Int32(SHUT_WR))
    }

    /// Closes the connection without a word (a client that goes away mid-transaction).
    public func drop() {
        shutdown(socket, Int32(SHUT_RDWR))
    }
}

public struct LegacyClientError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
