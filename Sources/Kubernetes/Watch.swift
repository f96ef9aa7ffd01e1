import Foundation
import Logging

/// One event of a watch.
public enum WatchEvent<T: Sendable>: Sendable {
    case added(T)
    case modified(T)
    case deleted(T)
    /// The server's progress mark: nothing to apply, but watching can resume from here.
    case bookmark(resourceVersion: String)

    public var object: T? {
        switch self {
        case .added(let object), .modified(let object), .deleted(let object): return object
        case .bookmark: return nil
        }
    }
}

/// Options of a watch request.
public struct WatchOptions: Sendable {
    public var resourceVersion: String?
    public var labelSelector: String?
    public var fieldSelector: String?
    public var allowBookmarks: Bool
    /// The server ends the watch after this long (it must be bounded).
    public var timeout: Duration

    public init(
        resourceVersion: String? = nil, labelSelector: String? = nil, fieldSelector: String? = nil,
        allowBookmarks: Bool = true, timeout: Duration = .seconds(300)
    ) {
        self.resourceVersion = resourceVersion
        self.labelSelector = labelSelector
        self.fieldSelector = fieldSelector
        self.allowBookmarks = allowBookmarks
        self.timeout = timeout
    }
}

/// Splits a chunked watch body into lines; chunks may cut a line anywhere.
struct LineBuffer {
    private var pending: [UInt8] = []

    /// Appends bytes and returns the complete lines they finish (without the newline).
    mutating func append(_ bytes: [UInt8]) -> [[UInt8]] {
        pending += bytes
        var lines: [[UInt8]] = []
        var start = 0
        while let newline = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
            let line = Array(pending[start..<newline])
            if !line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) { lines.append(line) }
            start = newline + 1
        }
        pending.removeFirst(start)
        return lines
    }

    var isEmpty: Bool { pending.allSatisfy { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") || $0 == 10 } }
}

/// Decodes one watch line: `{"type":"ADDED","object":{...}}`. An `ERROR` event throws its
/// `Status` as a `KubernetesError` (410 Expired: relist).
enum WatchLineDecoder {
    private struct Head: Decodable { var type: String }
    private struct Body<T: Decodable>: Decodable { var object: T }
    private struct Bookmark: Decodable {
        struct Object: Decodable {
            struct Meta: Decodable { var resourceVersion: String? }
            var metadata: Meta?
        }
        var object: Object
    }

    static func decode<T: Decodable & Sendable>(_ line: [UInt8], as: T.Type) throws -> WatchEvent<T> {
        let data = Data(line)
        let decoder = JSONDecoder()
        do {
            let head = try decoder.decode(Head.self, from: data)
            switch head.type {
            case "ADDED": return .added(try decoder.decode(Body<T>.self, from: data).object)
            case "MODIFIED": return .modified(try decoder.decode(Body<T>.self, from: data).object)
            case "DELETED": return .deleted(try decoder.decode(Body<T>.self, from: data).object)
            case "BOOKMARK":
                let rv = try decoder.decode(Bookmark.self, from: data).object.metadata?.resourceVersion ?? ""
                return .bookmark(resourceVersion: rv)
            case "ERROR":
                let status = try decoder.decode(Body<Status>.self, from: data).object
                throw KubernetesError.from(status: status)
            default:
                throw KubernetesError(reason: .decoding, code: 0, message: "unknown watch event type \(head.type)")
            }
        } catch let error as KubernetesError {
            throw error
        } catch {
            let text = String(decoding: line.prefix(200), as: UTF8.self)
            throw KubernetesError(reason: .decoding, code: 0, message: "cannot decode watch event \(text): \(error)")
        }
    }
}

extension KubernetesClient {
    /// One watch connection: events from `options.resourceVersion` until the server ends it
    /// (`timeout`), the connection drops (the stream finishes or throws a transport error) or
    /// the resourceVersion is too old (throws `KubernetesError` with reason `.expired`).
    /// Reconnection is the caller's: `ListWatch` does it.
    public func watch<T: Decodable & Sendable>(
        _ type: ResourceType, namespace: String?, options: WatchOptions = WatchOptions(), as: T.Type = T.self
    ) throws -> WatchStream<T> {
        var query: [(String, String)] = [("watch", "true")]
        if let rv = options.resourceVersion { query.append(("resourceVersion", rv)) }
        if let labels = options.labelSelector, !labels.isEmpty { query.append(("labelSelector", labels)) }
        if let fields = options.fieldSelector, !fields.isEmpty { query.append(("fieldSelector", fields)) }
        if options.allowBookmarks { query.append(("allowWatchBookmarks", "true")) }
        let seconds = max(1, options.timeout.components.seconds)
        query.append(("timeoutSeconds", String(seconds)))
        let path = type.path(namespace: type.namespaced ? namespace : nil)
        // The transfer may outlive the server's timeout a little; anything longer is a dead connection.
        let request = try buildRequest(
            method: "GET", path: path, query: query, body: nil, contentType: nil, accept: "application/json",
            timeout: .seconds(seconds + 30))
        return WatchStream(chunks: try transport.stream(request))
    }
}

/// The events of one watch connection, decoded as the body arrives. Dropping the iterator (or
/// cancelling the task iterating it) closes the connection.
public struct WatchStream<T: Decodable & Sendable>: AsyncSequence, Sendable {
    public typealias Element = WatchEvent<T>
    let chunks: AsyncThrowingStream<[UInt8], any Error>

    public func makeAsyncIterator() -> Iterator {
        Iterator(chunks: chunks.makeAsyncIterator())
    }

    public struct Iterator: AsyncIteratorProtocol {
        var chunks: AsyncThrowingStream<[UInt8], any Error>.AsyncIterator
        var lines = LineBuffer()
        var ready: [[UInt8]] = []

        public mutating func next() async throws -> WatchEvent<T>? {
            while ready.isEmpty {
                guard let chunk = try await chunks.next() else { return nil }
                ready = lines.append(chunk)
            }
            return try WatchLineDecoder.decode(ready.removeFirst(), as: T.self)
        }
    }
}
