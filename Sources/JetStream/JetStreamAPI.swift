import CNats
import Logging
import NIOPosix

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// The JetStream JSON API (`$JS.API.*`), spoken directly: cnats 3.4's config structs stop at
// 2.9-era fields, and the server's answer must be checked field by field anyway.

struct APIErrorBody: Decodable {
    var code: Int
    var errCode: Int?
    var description: String?

    enum CodingKeys: String, CodingKey {
        case code
        case errCode = "err_code"
        case description
    }
}

struct APIEnvelope: Decodable {
    var error: APIErrorBody?
}

struct AccountInfo: Decodable {
    struct API: Decodable {
        var level: Int?
    }

    var api: API?
}

/// A stream's configuration, as far as this project sets and checks it.
public struct StreamConfig: Codable, Sendable, Equatable {
    public var name: String
    public var subjects: [String]
    public var retention: String
    public var storage: String
    public var numReplicas: Int
    public var maxMsgsPerSubject: Int64
    public var maxMsgs: Int64
    public var maxBytes: Int64
    public var maxAge: Int64
    public var discard: String
    public var duplicateWindow: Int64
    public var allowDirect: Bool
    public var denyDelete: Bool
    public var denyPurge: Bool
    public var description: String?

    enum CodingKeys: String, CodingKey {
        case name, subjects, retention, storage, discard, description
        case numReplicas = "num_replicas"
        case maxMsgsPerSubject = "max_msgs_per_subject"
        case maxMsgs = "max_msgs"
        case maxBytes = "max_bytes"
        case maxAge = "max_age"
        case duplicateWindow = "duplicate_window"
        case allowDirect = "allow_direct"
        case denyDelete = "deny_delete"
        case denyPurge = "deny_purge"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        subjects = try c.decodeIfPresent([String].self, forKey: .subjects) ?? []
        retention = try c.decodeIfPresent(String.self, forKey: .retention) ?? "limits"
        storage = try c.decodeIfPresent(String.self, forKey: .storage) ?? "file"
        numReplicas = try c.decodeIfPresent(Int.self, forKey: .numReplicas) ?? 1
        maxMsgsPerSubject = try c.decodeIfPresent(Int64.self, forKey: .maxMsgsPerSubject) ?? -1
        maxMsgs = try c.decodeIfPresent(Int64.self, forKey: .maxMsgs) ?? -1
        maxBytes = try c.decodeIfPresent(Int64.self, forKey: .maxBytes) ?? -1
        maxAge = try c.decodeIfPresent(Int64.self, forKey: .maxAge) ?? 0
        discard = try c.decodeIfPresent(String.self, forKey: .discard) ?? "old"
        duplicateWindow = try c.decodeIfPresent(Int64.self, forKey: .duplicateWindow) ?? 0
        allowDirect = try c.decodeIfPresent(Bool.self, forKey: .allowDirect) ?? false
        denyDelete = try c.decodeIfPresent(Bool.self, forKey: .denyDelete) ?? false
        denyPurge = try c.decodeIfPresent(Bool.self, forKey: .denyPurge) ?? false
        description = try c.decodeIfPresent(String.self, forKey: .description)
    }

    /// The configuration docs/design.md (section 4) describes.
    public init(_ settings: StreamSettings) {
        name = settings.name
        subjects = ["\(settings.subjectPrefix).>"]
        retention = "limits"
        storage = settings.memoryStorage ? "memory" : "file"
        numReplicas = settings.replicas
        maxMsgsPerSubject = 1
        maxMsgs = -1
        maxBytes = -1
        maxAge = 0
        discard = "old"
        duplicateWindow =
            Int64(settings.duplicateWindow.components.seconds) * 1_000_000_000
            + settings.duplicateWindow.components.attoseconds / 1_000_000_000
        allowDirect = true
        denyDelete = false
        denyPurge = false
        description = "fpindex-cluster: one subject per fingerprint, last message wins"
    }

    /// The fields whose values differ between two configurations (description aside).
    public func differences(from other: StreamConfig) -> [String] {
        var fields: [String] = []
        if name != other.name { fields.append("name") }
        if Set(subjects) != Set(other.subjects) { fields.append("subjects") }
        if retention != other.retention { fields.append("retention") }
        if storage != other.storage { fields.append("storage") }
        if numReplicas != other.numReplicas { fields.append("num_replicas") }
        if maxMsgsPerSubject != other.maxMsgsPerSubject { fields.append("max_msgs_per_subject") }
        if maxMsgs != other.maxMsgs { fields.append("max_msgs") }
        if maxBytes != other.maxBytes { fields.append("max_bytes") }
        if maxAge != other.maxAge { fields.append("max_age") }
        if discard != other.discard { fields.append("discard") }
        if duplicateWindow != other.duplicateWindow { fields.append("duplicate_window") }
        if allowDirect != other.allowDirect { fields.append("allow_direct") }
        if denyDelete != other.denyDelete { fields.append("deny_delete") }
        if denyPurge != other.denyPurge { fields.append("deny_purge") }
        return fields
    }

    /// How the stream is kept rather than what it keeps: the choice of whoever manages it (the
    /// controller, from the cluster's spec). A process that only verifies the stream ignores them.
    public static let placementFields: Set<String> = ["num_replicas", "storage", "duplicate_window"]

    /// Fields JetStream cannot change on an existing stream.
    public static let immutableFields: Set<String> = ["name", "storage", "retention"]
}

/// What `$JS.API.STREAM.INFO` says of a stream.
public struct StreamInfo: Decodable, Sendable {
    public struct State: Decodable, Sendable {
        public var messages: UInt64
        public var bytes: UInt64
        public var firstSeq: UInt64
        public var lastSeq: UInt64
        public var numSubjects: UInt64?
        public var consumerCount: Int?
        public var subjects: [String: UInt64]?

        enum CodingKeys: String, CodingKey {
            case messages, bytes, subjects
            case firstSeq = "first_seq"
            case lastSeq = "last_seq"
            case numSubjects = "num_subjects"
            case consumerCount = "consumer_count"
        }
    }

    public var config: StreamConfig
    /// When the stream was created (RFC 3339); with the name, it identifies the stream.
    public var created: String
    public var state: State

    /// `name@created`: a stream deleted and re-created under the same name gets a new identity.
    public var identity: String { "\(config.name)@\(created)" }
}

struct PurgeResponse: Decodable {
    var success: Bool
    var purged: UInt64
}

/// A message read back from the stream.
public struct StoredMessage: Sendable, Equatable {
    public var subject: String
    public var sequence: UInt64
    public var payload: [UInt8]
}

enum JetStreamAPI {
    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], what: String, subject: String? = nil) throws -> T {
        let data = Data(bytes)
        if let envelope = try? JSONDecoder().decode(APIEnvelope.self, from: data), let error = envelope.error {
            throw JetStreamError(
                .api(code: error.code, errorCode: error.errCode ?? 0), "\(what): \(error.description ?? "error \(error.code)")",
                subject: subject)
        }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw JetStreamError(.unavailable, "\(what): unexpected reply (\(error))", subject: subject)
        }
    }

    static func encode(_ request: some Encodable) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return Array((try? encoder.encode(request)) ?? Data("{}".utf8))
    }

    /// `$JS.API.STREAM.INFO` with its subjects listed.
    struct SubjectsFilterRequest: Encodable {
        var subjectsFilter: String

        enum CodingKeys: String, CodingKey { case subjectsFilter = "subjects_filter" }
    }

    /// A paged list request.
    struct OffsetRequest: Encodable {
        var offset: Int
    }

    /// `$JS.API.STREAM.PURGE`.
    struct PurgeRequest: Encodable {
        var filter: String
        var seq: UInt64?
    }
}

extension NATSClient {
    /// Reads a stream's configuration and state.
    /// - Parameter subjectsFilter: also list the subjects matching this filter with their counts.
    /// - Returns: nil when the stream does not exist.
    public func streamInfo(_ name: String, subjectsFilter: String? = nil) async throws -> StreamInfo? {
        let subject = "$JS.API.STREAM.INFO.\(name)"
        let payload = subjectsFilter.map { JetStreamAPI.encode(JetStreamAPI.SubjectsFilterRequest(subjectsFilter: $0)) } ?? []
        let reply = try await request(subject: subject, payload: payload)
        do {
            return try JetStreamAPI.decode(StreamInfo.self, from: reply, what: "stream info of \(name)", subject: subject)
        } catch let error as JetStreamError where error.kind == .api(code: 404, errorCode: JetStreamError.streamNotFoundCode) {
            return nil
        }
    }

    /// Creates the stream of `settings`, or updates it to match, then checks that the server
    /// stored exactly that: old servers silently drop options they do not know.
    /// - Throws: `.configurationMismatch(field:)` naming a field the server would not take.
    @discardableResult
    public func ensureStream(_ settings: StreamSettings) async throws -> StreamInfo {
        let desired = StreamConfig(settings)
        let body = Array(try JSONEncoder().encode(desired))
        let info: StreamInfo
        if let existing = try await streamInfo(settings.name) {
            let differences = desired.differences(from: existing.config)
            if differences.isEmpty {
                info = existing
            } else {
                if let field = differences.first(where: StreamConfig.immutableFields.contains) {
                    throw JetStreamError(
                        .configurationMismatch(field: field),
                        "stream \(settings.name) has \(field) \(existing.config.value(of: field)) and JetStream cannot change it to \(desired.value(of: field)) in place"
                    )
                }
                logger.notice(
                    "updating the stream to the wanted configuration",
                    metadata: ["stream.name": "\(settings.name)", "stream.fields": "\(differences.joined(separator: ","))"])
                let subject = "$JS.API.STREAM.UPDATE.\(settings.name)"
                info = try JetStreamAPI.decode(
                    StreamInfo.self, from: try await request(subject: subject, payload: body), what: "stream update", subject: subject)
            }
        } else {
            let subject = "$JS.API.STREAM.CREATE.\(settings.name)"
            info = try JetStreamAPI.decode(
                StreamInfo.self, from: try await request(subject: subject, payload: body), what: "stream create", subject: subject)
            logger.notice("created the stream", metadata: ["stream.name": "\(settings.name)", "stream.subjects": "\(desired.subjects)"])
        }
        if let field = desired.differences(from: info.config).first {
            throw JetStreamError(
                .configurationMismatch(field: field),
                "the server stored stream \(settings.name) with \(field) \(info.config.value(of: field)) instead of \(desired.value(of: field)) (is nats-server older than 2.11?)"
            )
        }
        return info
    }

    /// Checks an existing stream for a process that uses it but does not manage it (the proxy,
    /// the bulk tools): what writes and reads rely on must be as `settings` says. Replicas and
    /// storage are the manager's to choose (the controller sets them from the cluster's spec).
    /// - Throws: `.configuration` when the stream does not exist, `.configurationMismatch(field:)`.
    public func verifyStream(_ settings: StreamSettings) async throws -> StreamInfo {
        guard let info = try await streamInfo(settings.name) else {
            throw JetStreamError(.configuration, "stream \(settings.name) does not exist")
        }
        let desired = StreamConfig(settings)
        if let field = desired.differences(from: info.config).first(where: { !StreamConfig.placementFields.contains($0) }) {
            throw JetStreamError(
                .configurationMismatch(field: field),
                "stream \(settings.name) differs in \(field): it has \(info.config.value(of: field)), this process needs \(desired.value(of: field))")
        }
        return info
    }

    /// Purges the messages matching `filter` with a sequence below `upTo` (all of them when nil).
    /// - Returns: how many messages were removed.
    @discardableResult
    public func purge(stream: String, filter: String, upTo sequence: UInt64? = nil) async throws -> UInt64 {
        let request = JetStreamAPI.PurgeRequest(filter: filter, seq: sequence)
        let subject = "$JS.API.STREAM.PURGE.\(stream)"
        let reply = try await self.request(subject: subject, payload: JetStreamAPI.encode(request))
        return try JetStreamAPI.decode(PurgeResponse.self, from: reply, what: "purge", subject: subject).purged
    }

    /// Deletes a stream (tests and tear-down).
    public func deleteStream(_ name: String) async throws {
        let subject = "$JS.API.STREAM.DELETE.\(name)"
        _ = try JetStreamAPI.decode(
            PurgeResponseOrSuccess.self, from: try await request(subject: subject, payload: []), what: "stream delete")
    }

    /// The last message stored on `subject` (a direct get: any replica answers), or nil if there is none.
    public func lastMessage(stream: String, subject: String) async throws -> StoredMessage? {
        try await directGet(stream: stream, subject: subject, lastBySubject: true, sequence: 0)
    }

    /// The first message at or after `sequence` on subjects matching `filter`, or nil if there is none.
    public func firstMessage(stream: String, filter: String, atOrAfter sequence: UInt64) async throws -> StoredMessage? {
        try await directGet(stream: stream, subject: filter, lastBySubject: false, sequence: sequence)
    }

    private func directGet(stream: String, subject: String, lastBySubject: Bool, sequence: UInt64) async throws -> StoredMessage? {
        try await threadPool.runIfActive { [self] in
            var message: OpaquePointer?
            var options = jsDirectGetMsgOptions()
            jsDirectGetMsgOptions_Init(&options)
            options.Sequence = sequence
            let status = subject.withCString { subjectPointer -> natsStatus in
                if lastBySubject { options.LastBySubject = subjectPointer } else { options.NextBySubject = subjectPointer }
                return js_DirectGetMsg(&message, self.jetStream, stream, nil, &options)
            }
            defer { natsMsg_Destroy(message) }
            switch status {
            case NATS_OK:
                guard let message else { return nil }
                var value: UnsafePointer<CChar>?
                guard natsMsgHeader_Get(message, "Nats-Sequence", &value) == NATS_OK, let value,
                    let sequence = UInt64(String(cString: value))
                else { throw JetStreamError(.unavailable, "direct get reply without a sequence", subject: subject) }
                var storedSubject: UnsafePointer<CChar>?
                let actualSubject =
                    natsMsgHeader_Get(message, "Nats-Subject", &storedSubject) == NATS_OK
                    ? storedSubject.map { String(cString: $0) } ?? subject : subject
                return StoredMessage(subject: actualSubject, sequence: sequence, payload: payloadBytes(of: message))
            case NATS_NOT_FOUND:
                return nil
            case NATS_TIMEOUT:
                throw JetStreamError(.timeout, "direct get timed out", subject: subject)
            default:
                throw JetStreamError(.unavailable, "direct get failed: \(statusText(status))", subject: subject)
            }
        }
    }
}

struct PurgeResponseOrSuccess: Decodable {
    var success: Bool?
}

extension StreamConfig {
    func value(of field: String) -> String {
        switch field {
        case "name": name
        case "subjects": subjects.joined(separator: ",")
        case "retention": retention
        case "storage": storage
        case "num_replicas": String(numReplicas)
        case "max_msgs_per_subject": String(maxMsgsPerSubject)
        case "max_msgs": String(maxMsgs)
        case "max_bytes": String(maxBytes)
        case "max_age": String(maxAge)
        case "discard": discard
        case "duplicate_window": String(duplicateWindow)
        case "allow_direct": String(allowDirect)
        case "deny_delete": String(denyDelete)
        case "deny_purge": String(denyPurge)
        default: "?"
        }
    }
}
