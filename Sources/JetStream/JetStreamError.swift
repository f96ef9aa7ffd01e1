/// Everything that can go wrong talking to NATS, with what cnats or the server said.
public struct JetStreamError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// Not connected, connection closed, or no server answered.
        case unavailable
        /// No answer in time.
        case timeout
        /// The server refused an API request (`code` is the HTTP-like code, `errorCode` JetStream's).
        case api(code: Int, errorCode: Int)
        /// The server is too old for this project.
        case unsupportedServer
        /// The server stored a configuration other than the one asked for.
        case configurationMismatch(field: String)
        /// Bad settings given to the client (file missing, bad URL...).
        case configuration
        /// A publish was refused (e.g. an expected-sequence check failed).
        case publishRejected(errorCode: Int)
    }

    public var kind: Kind
    public var message: String
    /// The subject involved, when there is one.
    public var subject: String?
    /// For a refused expected-sequence check: the sequence the subject's last message has,
    /// as the server reported it (0: the subject holds no message).
    public var actualLastSequence: UInt64?

    public init(_ kind: Kind, _ message: String, subject: String? = nil) {
        self.kind = kind
        self.message = message
        self.subject = subject
    }

    public var description: String {
        subject.map { "\(message) (subject \($0))" } ?? message
    }

    /// Whether trying again later may succeed.
    public var isTransient: Bool {
        switch kind {
        case .unavailable, .timeout: true
        case .api(let code, _): code >= 500
        default: false
        }
    }

    /// JetStream's error code for "stream not found".
    public static let streamNotFoundCode = 10059
    /// JetStream's error code for "consumer not found".
    public static let consumerNotFoundCode = 10014
    /// JetStream's error code for "wrong last sequence" (an expected-sequence check failed).
    public static let wrongLastSequenceCode = 10071

    /// JetStream's error code for "wrong last sequence" without the sequence: a clustered
    /// stream refuses so a checked message whose subject has another message in process.
    public static let wrongLastSequenceInProcessCode = 10164

    /// True for a publish refused because its expected-sequence check failed (or could not be
    /// made yet, the subject having another message in process).
    public var isWrongLastSequence: Bool {
        if case .publishRejected(let code) = kind {
            return code == Self.wrongLastSequenceCode || code == Self.wrongLastSequenceInProcessCode
        }
        return false
    }

    /// The sequence in the server's "wrong last sequence: N" description, if it has one.
    static func lastSequence(in description: String) -> UInt64? {
        guard let colon = description.lastIndex(of: ":") else { return nil }
        return UInt64(description[description.index(after: colon)...].drop(while: { $0 == " " }))
    }
}
