// The request and reply bodies of docs/fpindex-api.md. Each type decodes and encodes itself
// once, generically, for both JSON and MessagePack.

/// `POST /:index/_search` request.
public struct SearchRequest: Sendable, Equatable, WireCodable {
    public static let defaultLimit: UInt32 = 40
    public static let maxLimit: UInt32 = 100
    public static let defaultTimeoutMilliseconds: UInt32 = 500
    public static let maxTimeoutMilliseconds: UInt32 = 10_000
    public static let defaultScorePercent: UInt32 = 10

    public var query: [UInt32]
    /// Milliseconds; 0 means no deadline. Default 500, at most 10000.
    public var timeout: UInt32?
    /// Clamped to 1...100; default 40.
    public var limit: UInt32?
    /// Default: ceil(query count before de-duplication / 20).
    public var minScore: UInt32?
    /// Drop results below `top * scorePct / 100`; default 10, 0 disables.
    public var scorePct: UInt32?

    public init(query: [UInt32], timeout: UInt32? = nil, limit: UInt32? = nil, minScore: UInt32? = nil, scorePct: UInt32? = nil) {
        self.query = query
        self.timeout = timeout
        self.limit = limit
        self.minScore = minScore
        self.scorePct = scorePct
    }

    /// The limit after defaults and clamping.
    public var effectiveLimit: Int { Int(min(max(limit ?? Self.defaultLimit, 1), Self.maxLimit)) }
    /// The deadline in milliseconds after defaults and clamping; nil for no deadline.
    public var effectiveTimeoutMilliseconds: UInt32? {
        let t = min(timeout ?? Self.defaultTimeoutMilliseconds, Self.maxTimeoutMilliseconds)
        return t == 0 ? nil : t
    }
    public var effectiveMinScore: UInt32 { minScore ?? UInt32((query.count + 19) / 20) }
    public var effectiveScorePct: UInt32 { scorePct ?? Self.defaultScorePercent }

    static let fields = WireFields(["query", "timeout", "limit", "min_score", "score_pct"])

    public init<R: WireReader>(from reader: inout R) throws(FpindexError) {
        var query: [UInt32]?
        var timeout: UInt32?, limit: UInt32?, minScore: UInt32?, scorePct: UInt32?
        try reader.readStruct(Self.fields) { (r, field) throws(FpindexError) in
            // As the real fpindex: null is a value only for an optional field (min_score); a
            // field with a default (timeout, limit, score_pct) or a required one refuses it.
            if try r.readNilIfPresent() {
                guard field == 3 else { throw .badRequest("null is not a value for \(Self.fields.names[field])") }
                minScore = nil
                return
            }
            switch field {
            case 0: query = try r.readUInt32Array()
            case 1: timeout = try r.readUInt32()
            case 2: limit = try r.readUInt32()
            case 3: minScore = try r.readUInt32()
            default: scorePct = try r.readUInt32()
            }
        }
        guard let query else { throw .badRequest("missing field query") }
        self.init(query: query, timeout: timeout, limit: limit, minScore: minScore, scorePct: scorePct)
    }

    public func encode<W: WireWriter>(to writer: inout W) {
        let optionals = [timeout, limit, minScore, scorePct]
        writer.beginMap(count: 1 + optionals.count(where: { $0 != nil }))
        writer.writeKey("query")
        writer.writeUInt32Array(query)
        for (name, value) in zip(Self.fields.names.dropFirst(), optionals) {
            if let value {
                writer.writeKey(name)
                writer.writeUInt(UInt64(value))
            }
        }
        writer.endMap()
    }
}

/// One search hit.
public struct SearchResult: Sendable, Equatable, Hashable, WireCodable {
    public var id: UInt32
    public var score: UInt32

    public init(id: UInt32, score: UInt32) {
        self.id = id
        self.score = score
    }

    static let fields = WireFields(["id", "score"])

    public init<R: WireReader>(from reader: inout R) throws(FpindexError) {
        var id: UInt32?, score: UInt32?
        try reader.readStruct(Self.fields) { (r, field) throws(FpindexError) in
            if field == 0 { id = try r.readUInt32() } else { score = try r.readUInt32() }
        }
        guard let id, let score else { throw .badRequest("missing field in search result") }
        self.init(id: id, score: score)
    }

    public func encode<W: WireWriter>(to writer: inout W) {
        writer.beginMap(count: 2)
        writer.writeKey("id")
        writer.writeUInt(UInt64(id))
        writer.writeKey("score")
        writer.writeUInt(UInt64(score))
        writer.endMap()
    }
}

/// `POST /:index/_search` reply.
public struct SearchResponse: Sendable, Equatable, WireCodable {
    public var results: [SearchResult]

    public init(results: [SearchResult]) { self.results = results }

    static let fields = WireFields(["results"])

    public init<R: WireReader>(from reader: inout R) throws(FpindexError) {
        var results: [SearchResult]?
        try reader.readStruct(Self.fields) { (r, _) throws(FpindexError) in
            var list: [SearchResult] = []
            try r.readArray { (r) throws(FpindexError) in list.append(try SearchResult(from: &r)) }
            results = list
        }
        guard let results else { throw .badRequest("missing field results") }
        self.results = results
    }

    public func encode<W: WireWriter>(to writer: inout W) {
        writer.beginMap(count: 1)
        writer.writeKey("results")
        writer.beginArray(count: results.count)
        for result in results { result.encode(to: &writer) }
        writer.endArray()
        writer.endMap()
    }
}

/// One metadata entry of a `set_metadata` change.
public struct MetadataEntry: Sendable, Equatable, Hashable, WireCodable {
    public var key: String
    public var value: String

    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }

    static let fields = WireFields(["key", "value"])

    public init<R: WireReader>(from reader: inout R) throws(FpindexError) {
        var key: String?, value: String?
        try reader.readStruct(Self.fields) { (r, field) throws(FpindexError) in
            if field == 0 { key = try r.readString() } else { value = try r.readString() }
        }
        guard let key, let value else { throw .badRequest("metadata entry needs key and value") }
        self.init(key: key, value: value)
    }

    public func encode<W: WireWriter>(to writer: inout W) {
        writer.beginMap(count: 2)
        writer.writeKey("key")
        writer.writeString(key)
        writer.writeKey("value")
        writer.writeString(value)
        writer.endMap()
    }
}

/// One change of an `_update`: an object with exactly one key.
public enum Change: Sendable, Equatable, Hashable, WireCodable {
    case insert(id: UInt32, hashes: [UInt32])
    case delete(id: UInt32)
    case setMetadata([MetadataEntry])

    static let fields = WireFields(["insert", "delete", "set_metadata"])
    static let idHashesFields = WireFields(["id", "hashes"])
    static let idFields = WireFields(["id"])
    static let entriesFields = WireFields(["entries"])

    /// The fingerprint id this change touches, if any.
    public var fingerprintId: UInt32? {
        switch self {
        case .insert(let id, _), .delete(let id): id
        case .setMetadata: nil
        }
    }

    public init<R: WireReader>(from reader: inout R) throws(FpindexError) {
        var hashes: [UInt32] = []
        switch try FlatUpdateRequest.readChange(from: &reader, hashes: &hashes) {
        case .insert(let id, _): self = .insert(id: id, hashes: hashes)
        case .delete(let id): self = .delete(id: id)
        case .setMetadata(let entries): self = .setMetadata(entries)
        }
    }

    public func encode<W: WireWriter>(to writer: inout W) {
        writer.beginMap(count: 1)
        switch self {
        case .insert(let id, let hashes):
            Self.writeInsert(id: id, to: &writer) { $0.writeUInt32Array(hashes) }
        case .delete(let id):
            Self.writeDelete(id: id, to: &writer)
        case .setMetadata(let entries):
            writer.writeKey("set_metadata")
            writer.beginMap(count: 1)
            writer.writeKey("entries")
            writer.beginArray(count: entries.count)
            for entry in entries { entry.encode(to: &writer) }
            writer.endArray()
            writer.endMap()
        }
        writer.endMap()
    }

    /// The body of an insert (inside the change's one-key map); `hashes` writes the array.
    static func writeInsert<W: WireWriter>(id: UInt32, to writer: inout W, hashes: (inout W) -> Void) {
        writer.writeKey("insert")
        writer.beginMap(count: 2)
        writer.writeKey("id")
        writer.writeUInt(UInt64(id))
        writer.writeKey("hashes")
        hashes(&writer)
        writer.endMap()
    }

    static func writeDelete<W: WireWriter>(id: UInt32, to writer: inout W) {
        writer.writeKey("delete")
        writer.beginMap(count: 1)
        writer.writeKey("id")
        writer.writeUInt(UInt64(id))
        writer.endMap()
    }
}

/// An insert or delete whose hashes are already MessagePack (`PackedHashes`, as the stream
/// holds them): what the updater sends, so hashes are never decoded and re-encoded on the way.
public enum PackedChange: Sendable, Equatable {
    case insert(id: UInt32, hashes: PackedHashes)
    case delete(id: UInt32)

    public var fingerprintId: UInt32 {
        switch self {
        case .insert(let id, _), .delete(let id): id
        }
    }

    /// At most this many bytes in an `_update` body.
    public var encodedSizeBound: Int {
        switch self {
        case .insert(_, let hashes): 16 + hashes.bytes.count
        case .delete: 16
        }
    }

    /// The same change, decoded (tests and diagnostics).
    public var change: Change {
        switch self {
        case .insert(let id, let hashes):
            let decoded = hashes.bytes.withUnsafeBytes { bytes in
                var reader = MsgPackReader(bytes)
                return (try? reader.readUInt32Array()) ?? []
            }
            return .insert(id: id, hashes: decoded)
        case .delete(let id): return .delete(id: id)
        }
    }
}

/// `POST /:index/_update` request.
public struct UpdateRequest: Sendable, Equatable, WireCodable {
    public var changes: [Change]
    public var metadata: [String: String]?
    public var expectedVersion: UInt64?

    public init(changes: [Change], metadata: [String: String]? = nil, expectedVersion: UInt64? = nil) {
        self.changes = changes
        self.metadata = metadata
        self.expectedVersion = expectedVersion
    }

    /// All metadata this request sets, in order: `set_metadata` changes first, then the
    /// `metadata` map (later entries win when keys repeat).
    public var metadataEntries: [MetadataEntry] {
        Self.metadataEntries(
            lists: changes.lazy.compactMap { if case .setMetadata(let list) = $0 { list } else { nil } }, metadata: metadata)
    }

    static func metadataEntries(lists: some Sequence<[MetadataEntry]>, metadata: [String: String]?) -> [MetadataEntry] {
        var entries: [MetadataEntry] = []
        for list in lists { entries.append(contentsOf: list) }
        if let metadata {
            for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
                entries.append(MetadataEntry(key: key, value: value))
            }
        }
        return entries
    }

    static let fields = WireFields(["changes", "metadata", "expected_version"])

    public init<R: WireReader>(from reader: inout R) throws(FpindexError) {
        var changes: [Change] = []
        let (metadata, expectedVersion) = try Self.readFields(
            from: &reader, startingChanges: { changes = [] }, change: { (r) throws(FpindexError) in changes.append(try Change(from: &r)) })
        self.init(changes: changes, metadata: metadata, expectedVersion: expectedVersion)
    }

    /// Reads an `_update` body's fields (the one reading of it, for `UpdateRequest` and
    /// `FlatUpdateRequest`): `startingChanges` is called where a `changes` list begins (or is
    /// reset by a null), `change` once per change to read it.
    static func readFields<R: WireReader>(
        from reader: inout R, startingChanges: () -> Void, change: (inout R) throws(FpindexError) -> Void
    ) throws(FpindexError) -> (metadata: [String: String]?, expectedVersion: UInt64?) {
        var sawChanges = false
        var metadata: [String: String]?
        var expectedVersion: UInt64?
        try reader.readStruct(fields) { (r, field) throws(FpindexError) in
            // As the real fpindex: metadata and expected_version are optional (null is none);
            // changes is required, null refused.
            if try r.readNilIfPresent() {
                guard field != 0 else { throw .badRequest("null is not a value for changes") }
                if field == 1 { metadata = nil } else { expectedVersion = nil }
                return
            }
            switch field {
            case 0:
                startingChanges()
                try r.readArray { (r) throws(FpindexError) in try change(&r) }
                sawChanges = true
            case 1:
                var map: [String: String] = [:]
                try r.readStringMap { (r, key) throws(FpindexError) in map[key] = try r.readString() }
                metadata = map
            default:
                expectedVersion = try r.readUInt64()
            }
        }
        guard sawChanges else { throw .badRequest("missing field changes") }
        return (metadata, expectedVersion)
    }

    public func encode<W: WireWriter>(to writer: inout W) {
        Self.write(changeCount: changes.count, metadata: metadata, expectedVersion: expectedVersion, to: &writer) { writer in
            for change in changes { change.encode(to: &writer) }
        }
    }

    /// The MessagePack body of an `_update` of packed changes: the same bytes as the equivalent
    /// `UpdateRequest`, built by copying the hashes.
    public static func packedBody(changes: some Collection<PackedChange>, metadata: [String: String]?) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(
            changes.reduce(64) { $0 + $1.encodedSizeBound }
                + (metadata?.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count + 10 } ?? 0))
        var writer = MsgPackWriter(into: bytes)
        write(changeCount: changes.count, metadata: metadata, expectedVersion: nil, to: &writer) { writer in
            for change in changes {
                writer.beginMap(count: 1)
                switch change {
                case .insert(let id, let hashes): Change.writeInsert(id: id, to: &writer) { $0.writeEncoded(hashes.bytes) }
                case .delete(let id): Change.writeDelete(id: id, to: &writer)
                }
                writer.endMap()
            }
        }
        return writer.bytes
    }

    static func write<W: WireWriter>(
        changeCount: Int, metadata: [String: String]?, expectedVersion: UInt64?, to writer: inout W, changes: (inout W) -> Void
    ) {
        writer.beginMap(count: 1 + (metadata == nil ? 0 : 1) + (expectedVersion == nil ? 0 : 1))
        writer.writeKey("changes")
        writer.beginArray(count: changeCount)
        changes(&writer)
        writer.endArray()
        if let metadata {
            writer.writeKey("metadata")
            writer.writeStringMap(metadata)
        }
        if let expectedVersion {
            writer.writeKey("expected_version")
            writer.writeUInt(expectedVersion)
        }
        writer.endMap()
    }
}

/// An `_update` request as a server applies it: the inserts' hashes in one flat array rather
/// than an array each, which a bulk write of thousands of fingerprints would allocate and
/// free one by one. It is read by the same code as `UpdateRequest`, so both accept exactly the same.
public struct FlatUpdateRequest: Sendable, Equatable, WireDecodable {
    public enum Item: Sendable, Equatable {
        /// An insert whose hashes are `hashes[range]`.
        case insert(id: UInt32, range: Range<Int>)
        case delete(id: UInt32)
        case setMetadata([MetadataEntry])
    }

    /// The changes, in request order.
    public var items: [Item] = []
    /// Every insert's hashes, one after the other.
    public var hashes: [UInt32] = []
    public var metadata: [String: String]?
    public var expectedVersion: UInt64?

    public init(items: [Item], hashes: [UInt32], metadata: [String: String]? = nil, expectedVersion: UInt64? = nil) {
        self.items = items
        self.hashes = hashes
        self.metadata = metadata
        self.expectedVersion = expectedVersion
    }

    /// A request given as `Change`s.
    public init(_ request: UpdateRequest) {
        for change in request.changes {
            switch change {
            case .insert(let id, let list):
                items.append(.insert(id: id, range: hashes.count..<(hashes.count + list.count)))
                hashes.append(contentsOf: list)
            case .delete(let id): items.append(.delete(id: id))
            case .setMetadata(let entries): items.append(.setMetadata(entries))
            }
        }
        metadata = request.metadata
        expectedVersion = request.expectedVersion
    }

    /// The same request with a `Change` per item.
    public var changes: [Change] {
        items.map { item in
            switch item {
            case .insert(let id, let range): .insert(id: id, hashes: Array(hashes[range]))
            case .delete(let id): .delete(id: id)
            case .setMetadata(let entries): .setMetadata(entries)
            }
        }
    }

    /// All metadata this request sets, in order (see `UpdateRequest.metadataEntries`).
    public var metadataEntries: [MetadataEntry] {
        UpdateRequest.metadataEntries(
            lists: items.lazy.compactMap { if case .setMetadata(let list) = $0 { list } else { nil } }, metadata: metadata)
    }

    public init<R: WireReader>(from reader: inout R) throws(FpindexError) {
        var items: [Item] = []
        var hashes: [UInt32] = []
        let (metadata, expectedVersion) = try UpdateRequest.readFields(
            from: &reader, startingChanges: { items = [] },
            change: { (r) throws(FpindexError) in items.append(try Self.readChange(from: &r, hashes: &hashes)) })
        self.init(items: items, hashes: hashes, metadata: metadata, expectedVersion: expectedVersion)
    }

    /// One change: an object with exactly one key (see `Change`).
    static func readChange<R: WireReader>(from reader: inout R, hashes: inout [UInt32]) throws(FpindexError) -> Item {
        var item: Item?
        var keys = 0
        try reader.readStruct(Change.fields) { (r, field) throws(FpindexError) in
            keys += 1
            switch field {
            case 0:
                var id: UInt32?
                var range: Range<Int>?
                try r.readStruct(Change.idHashesFields) { (r, field) throws(FpindexError) in
                    if field == 0 {
                        id = try r.readFingerprintId()
                    } else {
                        let start = hashes.count
                        range = start..<(start + (try r.readUInt32Array(appendingTo: &hashes)))
                    }
                }
                guard let id else { throw .badRequest("insert needs an id") }
                guard let range else { throw .badRequest("insert needs hashes") }
                item = .insert(id: id, range: range)
            case 1:
                var id: UInt32?
                try r.readStruct(Change.idFields) { (r, _) throws(FpindexError) in id = try r.readFingerprintId() }
                guard let id else { throw .badRequest("delete needs an id") }
                item = .delete(id: id)
            default:
                var entries: [MetadataEntry]?
                try r.readStruct(Change.entriesFields) { (r, _) throws(FpindexError) in
                    var list: [MetadataEntry] = []
                    try r.readArray { (r) throws(FpindexError) in list.append(try MetadataEntry(from: &r)) }
                    entries = list
                }
                guard let entries else { throw .badRequest("set_metadata needs entries") }
                item = .setMetadata(entries)
            }
        }
        guard keys == 1, let item else { throw .badRequest("a change must have exactly one key") }
        return item
    }
}

/// A reply that carries only a version: `_update` and `GET /:index/:id`.
public struct VersionResponse: Sendable, Equatable, WireCodable {
    public var version: UInt64

    public init(version: UInt64) { self.version = version }

    static let fields = WireFields(["version"])

    public init<R: WireReader>(from reader: inout R) throws(FpindexError) {
        var version: UInt64?
        try reader.readStruct(Self.fields) { (r, _) throws(FpindexError) in version = try r.readUInt64() }
        guard let version else { throw .badRequest("missing field version") }
        self.version = version
    }

    public func encode<W: WireWriter>(to writer: inout W) {
        writer.beginMap(count: 1)
        writer.writeKey("version")
        writer.writeUInt(version)
        writer.endMap()
    }
}

public typealias UpdateResponse = VersionResponse
public typealias FingerprintInfo = VersionResponse

/// `PUT /:index/:id` request.
public struct PutFingerprintRequest: Sendable, Equatable, WireCodable {
    public var hashes: [UInt32]

    public init(hashes: [UInt32]) { self.hashes = hashes }

    static let fields = WireFields(["hashes"])

    public init<R: WireReader>(from reader: inout R) throws(FpindexError) {
        var hashes: [UInt32]?
        try reader.readStruct(Self.fields) { (r, _) throws(FpindexError) in hashes = try r.readUInt32Array() }
        guard let hashes else { throw .badRequest("missing field hashes") }
        self.hashes = hashes
    }

    public func encode<W: WireWriter>(to writer: inout W) {
        writer.beginMap(count: 1)
        writer.writeKey("hashes")
        writer.writeUInt32Array(hashes)
        writer.endMap()
    }
}

/// The empty reply `{}` of single-fingerprint writes.
public struct EmptyResponse: Sendable, Equatable, WireCodable {
    public init() {}

    static let fields = WireFields([])

    public init<R: WireReader>(from reader: inout R) throws(FpindexError) {
        try reader.readStruct(Self.fields) { (_, _) throws(FpindexError) in }
    }

    public func encode<W: WireWriter>(to writer: inout W) {
        writer.beginMap(count: 0)
        writer.endMap()
    }
}

/// `PUT /:index` request (the body is optional).
public struct CreateIndexRequest: Sendable, Equatable, WireCodable {
    public var expectDoesNotExist: Bool?
    /// Create the index with this generation (replicas use it to agree on generations).
    public var generation: UInt64?

    public init(expectDoesNotExist: Bool? = nil, generation: UInt64? = nil) {
        self.expectDoesNotExist = expectDoesNotExist
        self.generation = generation
    }

    static let fields = WireFields(["expect_does_not_exist", "generation"])

    public init<R: WireReader>(from reader: inout R) throws(FpindexError) {
        var expect: Bool?, generation: UInt64?
        try reader.readStruct(Self.fields) { (r, field) throws(FpindexError) in
            // generation is optional (null is none); expect_does_not_exist has a default and refuses null.
            if try r.readNilIfPresent() {
                guard field == 1 else { throw .badRequest("null is not a value for expect_does_not_exist") }
                generation = nil
                return
            }
            if field == 0 { expect = try r.readBool() } else { generation = try r.readUInt64() }
        }
        self.init(expectDoesNotExist: expect, generation: generation)
    }

    public func encode<W: WireWriter>(to writer: inout W) {
        writer.beginMap(count: (expectDoesNotExist == nil ? 0 : 1) + (generation == nil ? 0 : 1))
        if let expectDoesNotExist {
            writer.writeKey("expect_does_not_exist")
            writer.writeBool(expectDoesNotExist)
        }
        if let generation {
            writer.writeKey("generation")
            writer.writeUInt(generation)
        }
        writer.endMap()
    }
}

/// `PUT /:index` reply.
public struct CreateIndexResponse: Sendable, Equatable, WireCodable {
    public var version: UInt64
    public var ready: Bool
    public var generation: UInt64

    public init(version: UInt64, ready: Bool, generation: UInt64) {
        self.version = version
        self.ready = ready
        self.generation = generation
    }

    static let fields = WireFields(["version", "ready", "generation"])

    public init<R: WireReader>(from reader: inout R) throws(FpindexError) {
        var version: UInt64?, ready: Bool?, generation: UInt64?
        try reader.readStruct(Self.fields) { (r, field) throws(FpindexError) in
            switch field {
            case 0: version = try r.readUInt64()
            case 1: ready = try r.readBool()
            default: generation = try r.readUInt64()
            }
        }
        guard let version, let generation else { throw .badRequest("missing field in create-index reply") }
        self.init(version: version, ready: ready ?? true, generation: generation)
    }

    public func encode<W: WireWriter>(to writer: inout W) {
        writer.beginMap(count: 3)
        writer.writeKey("version")
        writer.writeUInt(version)
        writer.writeKey("ready")
        writer.writeBool(ready)
        writer.writeKey("generation")
        writer.writeUInt(generation)
        writer.endMap()
    }
}

/// `DELETE /:index` request (the body is optional).
public struct DeleteIndexRequest: Sendable, Equatable, WireCodable {
    public var expectExists: Bool?

    public init(expectExists: Bool? = nil) { self.expectExists = expectExists }

    static let fields = WireFields(["expect_exists"])

    public init<R: WireReader>(from reader: inout R) throws(FpindexError) {
        var expect: Bool?
        try reader.readStruct(Self.fields) { (r, _) throws(FpindexError) in
            // expect_exists has a default: null is refused, as the real fpindex does.
            if try r.readNilIfPresent() { throw .badRequest("null is not a value for expect_exists") }
            expect = try r.readBool()
        }
        self.init(expectExists: expect)
    }

    public func encode<W: WireWriter>(to writer: inout W) {
        writer.beginMap(count: expectExists == nil ? 0 : 1)
        if let expectExists {
            writer.writeKey("expect_exists")
            writer.writeBool(expectExists)
        }
        writer.endMap()
    }
}

/// `DELETE /:index` reply.
public struct DeleteIndexResponse: Sendable, Equatable, WireCodable {
    public var deleted: Bool

    public init(deleted: Bool) { self.deleted = deleted }

    static let fields = WireFields(["deleted"])

    public init<R: WireReader>(from reader: inout R) throws(FpindexError) {
        var deleted: Bool?
        try reader.readStruct(Self.fields) { (r, _) throws(FpindexError) in deleted = try r.readBool() }
        guard let deleted else { throw .badRequest("missing field deleted") }
        self.deleted = deleted
    }

    public func encode<W: WireWriter>(to writer: inout W) {
        writer.beginMap(count: 1)
        writer.writeKey("deleted")
        writer.writeBool(deleted)
        writer.endMap()
    }
}

/// The `stats` of `GET /:index`. Encoded with full field names in both formats.
public struct IndexStats: Sendable, Equatable, WireCodable {
    public var minDocId: UInt32
    public var maxDocId: UInt32
    public var numSegments: UInt64
    public var numDocs: UInt32

    public init(minDocId: UInt32, maxDocId: UInt32, numSegments: UInt64, numDocs: UInt32) {
        self.minDocId = minDocId
        self.maxDocId = maxDocId
        self.numSegments = numSegments
        self.numDocs = numDocs
    }

    static let fields = WireFields(["min_doc_id", "max_doc_id", "num_segments", "num_docs"], fullNames: true)

    public init<R: WireReader>(from reader: inout R) throws(FpindexError) {
        var values: [UInt64?] = [nil, nil, nil, nil]
        try reader.readStruct(Self.fields) { (r, field) throws(FpindexError) in
            values[field] = try r.readUInt(max: field == 2 ? .max : UInt64(UInt32.max))
        }
        guard let minDoc = values[0], let maxDoc = values[1], let segments = values[2], let docs = values[3] else {
            throw .badRequest("missing field in index stats")
        }
        self.init(minDocId: UInt32(minDoc), maxDocId: UInt32(maxDoc), numSegments: segments, numDocs: UInt32(docs))
    }

    public func encode<W: WireWriter>(to writer: inout W) {
        writer.beginMap(count: 4)
        for (name, value) in zip(Self.fields.names, [UInt64(minDocId), UInt64(maxDocId), numSegments, UInt64(numDocs)]) {
            writer.writeKey(name, full: true)
            writer.writeUInt(value)
        }
        writer.endMap()
    }
}

/// `GET /:index` reply.
public struct IndexInfo: Sendable, Equatable, WireCodable {
    public var version: UInt64
    public var metadata: [String: String]
    public var stats: IndexStats

    public init(version: UInt64, metadata: [String: String], stats: IndexStats) {
        self.version = version
        self.metadata = metadata
        self.stats = stats
    }

    static let fields = WireFields(["version", "metadata", "stats"])

    public init<R: WireReader>(from reader: inout R) throws(FpindexError) {
        var version: UInt64?, metadata: [String: String]?, stats: IndexStats?
        try reader.readStruct(Self.fields) { (r, field) throws(FpindexError) in
            switch field {
            case 0: version = try r.readUInt64()
            case 1:
                var map: [String: String] = [:]
                try r.readStringMap { (r, key) throws(FpindexError) in map[key] = try r.readString() }
                metadata = map
            default: stats = try IndexStats(from: &r)
            }
        }
        guard let version, let stats else { throw .badRequest("missing field in index info") }
        self.init(version: version, metadata: metadata ?? [:], stats: stats)
    }

    public func encode<W: WireWriter>(to writer: inout W) {
        writer.beginMap(count: 3)
        writer.writeKey("version")
        writer.writeUInt(version)
        writer.writeKey("metadata")
        writer.writeStringMap(metadata)
        writer.writeKey("stats")
        stats.encode(to: &writer)
        writer.endMap()
    }
}

/// `GET /:index/_status` reply.
public struct IndexStatus: Sendable, Equatable, WireCodable {
    public var generation: UInt64
    public var version: UInt64
    /// The version that is durable on disk (equal to `version` once committed).
    public var fileVersion: UInt64

    public init(generation: UInt64, version: UInt64, fileVersion: UInt64) {
        self.generation = generation
        self.version = version
        self.fileVersion = fileVersion
    }

    static let fields = WireFields(["generation", "version", "file_version"])

    public init<R: WireReader>(from reader: inout R) throws(FpindexError) {
        var values: [UInt64?] = [nil, nil, nil]
        try reader.readStruct(Self.fields) { (r, field) throws(FpindexError) in values[field] = try r.readUInt64() }
        guard let g = values[0], let v = values[1], let f = values[2] else { throw .badRequest("missing field in index status") }
        self.init(generation: g, version: v, fileVersion: f)
    }

    public func encode<W: WireWriter>(to writer: inout W) {
        writer.beginMap(count: 3)
        writer.writeKey("generation")
        writer.writeUInt(generation)
        writer.writeKey("version")
        writer.writeUInt(version)
        writer.writeKey("file_version")
        writer.writeUInt(fileVersion)
        writer.endMap()
    }
}
