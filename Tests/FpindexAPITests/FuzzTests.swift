import FpindexAPI
import Testing

/// A small seeded generator, so a failing case can be replayed from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

extension SplitMix64 {
    mutating func u32() -> UInt32 {
        // Favour the edges of each msgpack width.
        switch Int.random(in: 0..<6, using: &self) {
        case 0: return UInt32.random(in: 0...0x80, using: &self)
        case 1: return UInt32.random(in: 0xf0...0x1_0010, using: &self)
        case 2: return UInt32.max - UInt32.random(in: 0...3, using: &self)
        default: return UInt32.random(in: 0...UInt32.max, using: &self)
        }
    }

    mutating func string() -> String {
        let alphabet: [Character] = ["a", "Z", "0", "-", ".", "\"", "\\", "\n", "\u{1}", "é", "😀", " ", "/", "\u{7f}"]
        let length = [0, 1, 5, 31, 32, 40, 300][Int.random(in: 0..<7, using: &self)]
        return String((0..<length).map { _ in alphabet.randomElement(using: &self)! })
    }

    mutating func hashes() -> [UInt32] {
        let count = [0, 1, 15, 16, 120, 70000][Int.random(in: 0..<(Int.random(in: 0..<20, using: &self) == 0 ? 6 : 5), using: &self)]
        return (0..<count).map { _ in u32() }
    }

    mutating func id() -> UInt32 { max(1, u32()) }

    mutating func maybe<T>(_ make: (inout SplitMix64) -> T) -> T? {
        Bool.random(using: &self) ? make(&self) : nil
    }

    mutating func change() -> Change {
        switch Int.random(in: 0..<3, using: &self) {
        case 0: return .insert(id: id(), hashes: hashes())
        case 1: return .delete(id: id())
        default:
            return .setMetadata((0..<Int.random(in: 0..<3, using: &self)).map { _ in MetadataEntry(key: string(), value: string()) })
        }
    }

    mutating func update() -> UpdateRequest {
        UpdateRequest(
            changes: (0..<Int.random(in: 0..<20, using: &self)).map { _ in change() },
            metadata: maybe { r in Dictionary((0..<Int.random(in: 0..<20, using: &r)).map { _ in (r.string(), r.string()) }) { $1 } },
            expectedVersion: maybe { r in UInt64.random(in: 0...UInt64.max, using: &r) })
    }

    mutating func search() -> SearchRequest {
        SearchRequest(
            query: hashes(), timeout: maybe { $0.u32() }, limit: maybe { $0.u32() }, minScore: maybe { $0.u32() },
            scorePct: maybe { $0.u32() })
    }
}

/// Every decoder the servers and the stream use, fed the same bytes.
func decodeWithEveryDecoder(_ bytes: [UInt8], format: WireFormat) {
    _ = try? UpdateRequest.decode(from: bytes, format: format)
    _ = try? SearchRequest.decode(from: bytes, format: format)
    _ = try? SearchResponse.decode(from: bytes, format: format)
    _ = try? PutFingerprintRequest.decode(from: bytes, format: format)
    _ = try? CreateIndexRequest.decode(from: bytes, format: format)
    _ = try? DeleteIndexRequest.decode(from: bytes, format: format)
    _ = try? IndexInfo.decode(from: bytes, format: format)
    _ = try? IndexStatus.decode(from: bytes, format: format)
    _ = try? ErrorResponse.decode(from: bytes, format: format)
    _ = try? FingerprintRecord.decode(from: bytes, format: format)
    _ = try? LifecycleRecord.decode(from: bytes, format: format)
    _ = try? MetadataRecord.decode(from: bytes, format: format)
}

@Suite("Codec properties")
struct FuzzTests {
    @Test(arguments: WireFormat.allCases)
    func everyValidValueRoundTrips(format: WireFormat) throws {
        var rng = SplitMix64(seed: 42)
        for round in 0..<300 {
            let update = rng.update()
            #expect(try UpdateRequest.decode(from: update.encoded(as: format), format: format) == update, "round \(round)")
            // As a server reads it: every insert's hashes in one array, in order.
            let flat = try FlatUpdateRequest.decode(from: update.encoded(as: format), format: format)
            let inserted: [UInt32] = update.changes.flatMap { change -> [UInt32] in
                if case .insert(_, let hashes) = change { return hashes }
                return []
            }
            #expect(flat.changes == update.changes && flat.hashes == inserted && flat.metadata == update.metadata)
            let search = rng.search()
            #expect(try SearchRequest.decode(from: search.encoded(as: format), format: format) == search, "round \(round)")
            let info = IndexInfo(
                version: rng.next(), metadata: [rng.string(): rng.string()],
                stats: IndexStats(minDocId: rng.u32(), maxDocId: rng.u32(), numSegments: rng.next(), numDocs: rng.u32()))
            #expect(try IndexInfo.decode(from: info.encoded(as: format), format: format) == info, "round \(round)")
            let reply = SearchResponse(
                results: (0..<Int.random(in: 0..<50, using: &rng)).map { _ in SearchResult(id: rng.id(), score: rng.u32()) })
            #expect(try SearchResponse.decode(from: reply.encoded(as: format), format: format) == reply)
            let record = FingerprintRecord(hashes: rng.maybe { $0.hashes() })
            #expect(try FingerprintRecord.decode(from: record.encoded(as: format), format: format) == record)
            let status = IndexStatus(generation: rng.next(), version: rng.next(), fileVersion: rng.next())
            #expect(try IndexStatus.decode(from: status.encoded(as: format), format: format) == status)
            let create = CreateIndexRequest(expectDoesNotExist: rng.maybe { Bool.random(using: &$0) }, generation: rng.maybe { $0.next() })
            #expect(try CreateIndexRequest.decode(from: create.encoded(as: format), format: format) == create)
        }
    }

    @Test(arguments: WireFormat.allCases)
    func randomBytesNeverCrashADecoder(format: WireFormat) {
        var rng = SplitMix64(seed: 7)
        // Bytes drawn mostly from the formats' structural characters, so decoders get deep.
        let interesting: [UInt8] =
            format == .json
            ? Array("{}[]\":,0123456789-.eE truefalsenull\\u\"changes\"\"query\"\"id\"".utf8) + [0xff, 0xc3, 0x00]
            : [
                0x80, 0x81, 0x8f, 0x90, 0x91, 0x9f, 0xa1, 0x63, 0x69, 0x68, 0x64, 0x6d, 0x71, 0xc0, 0xc2, 0xc3, 0xcc, 0xcd, 0xce,
                0xcf, 0xd0, 0xd3, 0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff, 0x00, 0x7f, 0xc4, 0xcb,
            ]
        for _ in 0..<8_000 {
            let length = Int.random(in: 0..<64, using: &rng)
            let input = (0..<length).map { _ in
                Bool.random(using: &rng) ? interesting.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng)
            }
            decodeWithEveryDecoder(input, format: format)
        }
    }

    @Test(arguments: WireFormat.allCases)
    func mutatedValidBodiesNeverCrashADecoder(format: WireFormat) {
        var rng = SplitMix64(seed: 99)
        var rejected = 0
        for _ in 0..<3_000 {
            var input = rng.update().encoded(as: format)
            guard !input.isEmpty else { continue }
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let position = Int.random(in: 0..<input.count, using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: input[position] = UInt8.random(in: 0...255, using: &rng)
                case 1: input.remove(at: position)
                case 2: input.insert(UInt8.random(in: 0...255, using: &rng), at: position)
                default: input.removeSubrange(position...)
                }
                if input.isEmpty { break }
            }
            decodeWithEveryDecoder(input, format: format)
            if (try? UpdateRequest.decode(from: input, format: format)) == nil { rejected += 1 }
        }
        // The mutations must actually exercise the error paths.
        #expect(rejected > 1_000)
    }

    @Test func hostileLengthsAreRejectedWithoutReserving() {
        // array32 claiming 4 billion elements in a 10-byte body
        #expect(throws: FpindexError(.badRequest)) {
            try PutFingerprintRequest.decode(from: [0x81, 0xa1, 0x68, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02], format: .msgpack)
        }
        // map32 claiming 4 billion entries
        #expect(throws: FpindexError(.badRequest)) {
            try UpdateRequest.decode(from: [0xdf, 0xff, 0xff, 0xff, 0xff], format: .msgpack)
        }
        // str32 longer than the body
        #expect(throws: FpindexError(.badRequest)) {
            try MetadataRecord.decode(from: [0x81, 0xa1, 0x76, 0xdb, 0x7f, 0xff, 0xff, 0xff], format: .msgpack)
        }
    }

    @Test func deepJSONNestingIsRejectedNotRecursed() {
        let deep = String(repeating: "[", count: 100_000)
        #expect(throws: FpindexError(.badRequest)) { try UpdateRequest.decode(from: Array(deep.utf8), format: .json) }
        let deepChanges = #"{"changes":"# + deep
        #expect(throws: FpindexError(.badRequest)) { try UpdateRequest.decode(from: Array(deepChanges.utf8), format: .json) }
    }
}

/// The updater's shortcut (hashes passed on as the stream holds them) against the decoder.
@Suite("Packed hashes")
struct PackedHashesTests {
    /// The hashes `packedHashes` gives, decoded again: what fpindex will read.
    func unpacked(_ packed: PackedHashes?) -> [UInt32]? {
        packed.map { packed in
            guard case .insert(_, let hashes) = PackedChange.insert(id: 1, hashes: packed).change else { return [] }
            return hashes
        }
    }

    @Test func theProxysRecordsAreSlicedAsTheyAre() throws {
        var rng = SplitMix64(seed: 5)
        for _ in 0..<500 {
            let hashes = rng.hashes()
            let payload = FingerprintRecord(hashes: hashes).payload
            let packed = try #require(try FingerprintRecord.packedHashes(payload: payload))
            #expect(packed.count == hashes.count)
            #expect(packed.bytes == payload[3...])  // after {"h":
            #expect(unpacked(packed) == hashes)
        }
        // Wider encodings than needed are sliced too: they decode the same.
        let wide: [UInt8] = [0x81, 0xa1, 0x68, 0x93, 0xce, 0, 0, 0, 5, 0xcd, 0, 7, 0xcc, 9]
        let packed = try #require(try FingerprintRecord.packedHashes(payload: wide))
        #expect(packed.bytes == wide[3...] && unpacked(packed) == [5, 7, 9])
        #expect(try FingerprintRecord.packedHashes(payload: []) == nil)
        #expect(try FingerprintRecord.packedHashes(payload: FingerprintRecord.tombstone.payload) == nil)
    }

    @Test func otherEncodingsAreAcceptedExactlyWhenTheDecoderAcceptsThem() {
        var rng = SplitMix64(seed: 17)
        var accepted = 0
        var rejected = 0
        for _ in 0..<6_000 {
            var input = FingerprintRecord(hashes: rng.maybe { r in Array(r.hashes().prefix(40)) }).payload
            // Valid re-encodings the proxy never writes, then random damage.
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: input = [0x81, 0xa6] + Array("hashes".utf8) + input.dropFirst(3)  // a full key name
            case 1 where input.count > 3: input.insert(contentsOf: [0xdc, 0x00, UInt8(input[3] & 0x0f)], at: 3)  // long array header
            case 2: input = [0x81, 0xa1, 0x68, 0x92, 0xcf, 0, 0, 0, 0, 0, 0, 0, 7, 0xd0, 0x05]  // uint64 and int8 forms
            default: break
            }
            if case 1 = input.count % 2, !input.isEmpty, Bool.random(using: &rng) {
                let position = Int.random(in: 0..<input.count, using: &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: input[position] = UInt8.random(in: 0...255, using: &rng)
                case 1: input.remove(at: position)
                default: input.removeSubrange(position...)
                }
            }
            // The stream's reading: an empty payload is a tombstone.
            let decoded = Result {
                try input.withUnsafeBytes { bytes throws(FpindexError) in try FingerprintRecord.decode(payload: bytes) }
            }
            let packed = Result { try FingerprintRecord.packedHashes(payload: input) }
            switch (decoded, packed) {
            case (.success(let record), .success(let hashes)):
                accepted += 1
                #expect(unpacked(hashes) == record.hashes, "\(input)")
            case (.failure, .failure):
                rejected += 1
            default:
                Issue.record("the decoder and packedHashes disagree on \(input)")
            }
        }
        #expect(accepted > 1_000 && rejected > 500)
    }

    @Test func aPackedBodyIsTheBytesOfTheSameUpdateRequest() {
        var rng = SplitMix64(seed: 23)
        for round in 0..<300 {
            let changes: [PackedChange] = (0..<Int.random(in: 0..<20, using: &rng)).map { _ in
                Bool.random(using: &rng) ? .insert(id: rng.id(), hashes: PackedHashes(rng.hashes())) : .delete(id: rng.id())
            }
            let metadata = rng.maybe { r in Dictionary((0..<Int.random(in: 0..<5, using: &r)).map { _ in (r.string(), r.string()) }) { $1 }
            }
            let expected = UpdateRequest(changes: changes.map(\.change), metadata: metadata).encoded(as: .msgpack)
            #expect(UpdateRequest.packedBody(changes: changes, metadata: metadata) == expected, "round \(round)")
        }
    }
}
