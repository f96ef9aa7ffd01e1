import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// The bearer tokens that authorize requests. Several may be valid at once so a token can be
/// rotated without a moment where clients are refused: add the new one, move the clients,
/// remove the old one. Tokens never reach logs or errors.
public final class BearerTokens: Sendable {
    private let tokens: Mutex<[[UInt8]]>

    public init(_ tokens: [String]) {
        self.tokens = Mutex(tokens.map { Array($0.utf8) })
    }

    /// The tokens of a token file: one a line; surrounding blanks, empty lines and lines
    /// starting with `#` are not tokens.
    public static func parse(_ text: String) -> [String] {
        text.split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
    }

    func replace(_ newTokens: [String]) {
        tokens.withLock { $0 = newTokens.map { Array($0.utf8) } }
    }

    /// Whether an `Authorization` header value carries one of the tokens. Every token is
    /// compared in constant time, so timing tells neither where a guess differs nor which
    /// token it was close to.
    public func authorizes(_ header: String?) -> Bool {
        guard let header, header.hasPrefix("Bearer ") else { return false }
        let presented = Array(header.utf8.dropFirst(7))
        return tokens.withLock { tokens in
            var matched = false
            for token in tokens where constantTimeEquals(presented, token) { matched = true }
            return matched
        }
    }
}

/// How writes (and, when asked, reads) are authorized: the tokens, and the file they are
/// re-read from.
public struct ProxyAuthSettings: Sendable {
    /// The tokens the proxy starts with (from the file, or `AUTH_TOKEN`).
    public var tokens: [String]
    /// Re-read when its content changes (`--auth-token-file`); a Kubernetes Secret volume is
    /// updated in place by the kubelet, so a rotated Secret takes effect without a restart.
    public var tokenFile: String?
    /// Reads and searches need a token too (`--protect-reads`); probes and metrics never do.
    public var protectReads: Bool
    /// How often the token file is checked.
    public var reloadInterval: Duration

    public init(tokens: [String], tokenFile: String? = nil, protectReads: Bool = false, reloadInterval: Duration = .seconds(2)) {
        self.tokens = tokens
        self.tokenFile = tokenFile
        self.protectReads = protectReads
        self.reloadInterval = reloadInterval
    }
}

extension BearerTokens {
    /// Takes a token file's new contents. One that cannot be read or holds no token keeps the
    /// tokens in force (a Secret being rewritten must neither open the proxy nor lock every
    /// client out); the log says so, without the tokens.
    func reload(_ contents: Data?, file: String, logger: Logger, reloads: Metrics.Counter) {
        guard let contents else {
            logger.warning("cannot read the auth token file; the tokens in force stay", metadata: ["file": "\(file)"])
            return
        }
        let parsed = Self.parse(String(decoding: contents, as: UTF8.self))
        guard !parsed.isEmpty else {
            logger.warning("the auth token file holds no token; the tokens in force stay", metadata: ["file": "\(file)"])
            return
        }
        replace(parsed)
        reloads.increment()
        logger.info("auth tokens reloaded", metadata: ["file": "\(file)", "tokens": "\(parsed.count)"])
    }
}
