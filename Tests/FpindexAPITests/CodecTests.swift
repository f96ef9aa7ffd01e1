import FpindexAPI
import Testing

/// Hex text to bytes, ignoring spaces.
func bytes(_ hex: String) -> [UInt8] {
    let digits = hex.filter { !$0.isWhitespace }
    return stride(from: 0, to: digits.count, by: 2).map { i in
        let start = digits.index(digits.startIndex, offsetBy: i)
        return UInt8(digits[start..<digits.index(start, offsetBy: 2)], radix: 16)!
    }
}

func decode<T: WireDecodable>(_ type: T.Type, json: String) throws(FpindexError) -> T {
    try T.decode(from: Array(json.utf8), format: .json)
}

func jsonText(_ value: some WireEncodable) -> String {
    String(decoding: value.encoded(as: .json), as: UTF8.self)
}

@Suite("MessagePack and JSON codecs")
struct CodecTests {
    /// The byte-exact example of docs/fpindex-api.md.
    static let exampleHex =
        "83 a1 63 92 81 a1 69 82 a1 69 01 a1 68 93 65 cc c9 cd 01 2d 81 a1 64 81 a1 69 02 a1 6d 81 aa 73 74 72 65 61 6d 5f 73 65 71 a1 37 a1 65 00"
    static let example = UpdateRequest(
        changes: [.insert(id: 1, hashes: [101, 201, 301]), .delete(id: 2)], metadata: ["stream_seq": "7"], expectedVersion: 0)

    @Test func updateRequestEncodesToTheDocumentedBytes() {
        #expect(Self.example.encoded(as: .msgpack) == bytes(Self.exampleHex))
    }

    @Test func updateRequestDecodesFromTheDocumentedBytes() throws {
        #expect(try UpdateRequest.decode(from: bytes(Self.exampleHex), format: .msgpack) == Self.example)
    }

    @Test func msgpackAcceptsFullFieldNames() throws {
        var w = MsgPackWriter()
        w.beginMap(count: 3)
        w.writeKey("query", full: true)
        w.writeUInt32Array([1, 2])
        w.writeKey("limit", full: true)
        w.writeUInt(5)
        w.writeKey("score_pct", full: true)
        w.writeUInt(0)
        w.endMap()
        let request = try SearchRequest.decode(from: w.bytes, format: .msgpack)
        #expect(request == SearchRequest(query: [1, 2], limit: 5, scorePct: 0))
    }

    @Test(arguments: [
        ("uint8", "81 a1 76 cc 05"), ("uint16", "81 a1 76 cd 00 05"), ("uint32", "81 a1 76 ce 00 00 00 05"),
        ("uint64", "81 a1 76 cf 00 00 00 00 00 00 00 05"), ("int8", "81 a1 76 d0 05"), ("int16", "81 a1 76 d1 00 05"),
        ("int32", "81 a1 76 d2 00 00 00 05"), ("int64", "81 a1 76 d3 00 00 00 00 00 00 00 05"), ("fixint", "81 a1 76 05"),
    ])
    func msgpackIntegersOfAnyWidthThatFits(width: String, hex: String) throws {
        #expect(try VersionResponse.decode(from: bytes(hex), format: .msgpack).version == 5, "\(width)")
    }

    @Test(arguments: [
        ("negative fixint", "81 a1 69 f0"), ("negative int8", "81 a1 69 d0 ff"), ("too big for u32", "81 a1 69 cf 00 00 00 01 00 00 00 00"),
        ("float", "81 a1 69 cb 3f f0 00 00 00 00 00 00"), ("bin key", "81 c4 01 69 01"), ("nil", "81 a1 69 c0"),
    ])
    func msgpackRejectsIntegersThatDoNotFit(name: String, hex: String) {
        // {"i": <value>} as a delete change body
        #expect(throws: FpindexError(.badRequest), "\(name)") {
            try Change.decode(from: bytes("81 a1 64" + hex), format: .msgpack)
        }
    }

    @Test func msgpackRejectsBinStrings() {
        // {"k": bin "a", "v": "b"}
        #expect(throws: FpindexError(.badRequest)) {
            try MetadataEntry.decode(from: bytes("82 a1 6b c4 01 61 a1 76 a1 62"), format: .msgpack)
        }
    }

    @Test func msgpackEncodesErrorsAndEmptyReplies() {
        #expect(ErrorResponse(error: "IndexNotFound").encoded(as: .msgpack) == [0x81, 0xa1, 0x65, 0xad] + Array("IndexNotFound".utf8))
        #expect(EmptyResponse().encoded(as: .msgpack) == [0x80])
        #expect(jsonText(EmptyResponse()) == "{}")
    }

    @Test func msgpackIndexStatsUseFullNames() throws {
        let info = IndexInfo(version: 3, metadata: ["a": "b"], stats: IndexStats(minDocId: 1, maxDocId: 9, numSegments: 2, numDocs: 5))
        let encoded = info.encoded(as: .msgpack)
        #expect(encoded.starts(with: [0x83, 0xa1, 0x76, 0x03, 0xa1, 0x6d, 0x81, 0xa1, 0x61, 0xa1, 0x62, 0xa1, 0x73, 0x84, 0xaa]))
        #expect(try IndexInfo.decode(from: encoded, format: .msgpack) == info)
    }

    @Test func searchReplyUsesFirstLetters() {
        let reply = SearchResponse(results: [SearchResult(id: 7, score: 40)])
        #expect(reply.encoded(as: .msgpack) == bytes("81 a1 72 91 82 a1 69 07 a1 73 28"))
        #expect(jsonText(reply) == #"{"results":[{"id":7,"score":40}]}"#)
    }

    @Test func jsonUsesFullNamesAndOmitsNulls() {
        #expect(jsonText(SearchRequest(query: [1, 2], limit: 10)) == #"{"query":[1,2],"limit":10}"#)
        #expect(
            jsonText(Self.example)
                == #"{"changes":[{"insert":{"id":1,"hashes":[101,201,301]}},{"delete":{"id":2}}],"metadata":{"stream_seq":"7"},"expected_version":0}"#
        )
        #expect(jsonText(CreateIndexResponse(version: 0, ready: true, generation: 4)) == #"{"version":0,"ready":true,"generation":4}"#)
    }

    @Test(arguments: [
        #"{"query":[1],"bogus":1}"#, #"{"query":[-1]}"#, #"{"query":[1.5]}"#, #"{"query":[1e2]}"#, #"{"query":[4294967296]}"#,
        #"{"query":[01]}"#, #"{"query":"1"}"#, #"{"query":[1],}"#, #"{"query":[1]} x"#, #"{"timeout":1}"#, "", "[]", "{",
        #"{"query":[1],"limit":-0.0}"#, #"{"query":[1] "limit":1}"#, #"{"QUERY":[1]}"#, #"{"q":[1]}"#,
    ])
    func jsonRejectsMalformedSearches(body: String) {
        #expect(throws: FpindexError(.badRequest)) { try decode(SearchRequest.self, json: body) }
    }

    @Test func jsonAcceptsWhitespaceEscapesAndNulls() throws {
        let update = try decode(
            UpdateRequest.self,
            json:
                " {\n \"changes\" : [ ] , \"metadata\" : { \"k\\u00e9\\n\" : \"\\ud83d\\ude00 \\\"q\\\"\" }, \"expected_version\": null } ")
        #expect(update == UpdateRequest(changes: [], metadata: ["ké\n": "😀 \"q\""]))
        #expect(try decode(UpdateRequest.self, json: jsonText(update)) == update)
    }

    @Test func idZeroIsInvalidFingerprintId() throws {
        #expect(throws: FpindexError(.invalidFingerprintId)) {
            try decode(UpdateRequest.self, json: #"{"changes":[{"insert":{"id":0,"hashes":[]}}]}"#)
        }
        #expect(throws: FpindexError(.invalidFingerprintId)) {
            try decode(UpdateRequest.self, json: #"{"changes":[{"delete":{"id":0}}]}"#)
        }
        #expect(throws: FpindexError(.invalidFingerprintId)) { try FpindexNames.parseFingerprintId("0") }
        #expect(throws: FpindexError(.badRequest)) { try FpindexNames.parseFingerprintId("4294967296") }
        #expect(throws: FpindexError(.badRequest)) { try FpindexNames.parseFingerprintId("-1") }
        #expect(throws: FpindexError(.badRequest)) { try FpindexNames.parseFingerprintId("abc") }
        #expect(try FpindexNames.parseFingerprintId("4294967295") == .max)
    }

    @Test func aChangeHasExactlyOneKey() {
        #expect(throws: FpindexError(.badRequest)) {
            try decode(Change.self, json: #"{"insert":{"id":1,"hashes":[]},"delete":{"id":1}}"#)
        }
        #expect(throws: FpindexError(.badRequest)) { try decode(Change.self, json: "{}") }
    }

    @Test func metadataValuesMustBeStrings() {
        #expect(throws: FpindexError(.badRequest)) {
            try decode(UpdateRequest.self, json: #"{"changes":[],"metadata":{"a":1}}"#)
        }
    }

    @Test func updateRequiresChangesAndSearchRequiresQuery() {
        #expect(throws: FpindexError(.badRequest)) { try decode(UpdateRequest.self, json: #"{"metadata":{}}"#) }
        #expect(throws: FpindexError(.badRequest)) { try decode(SearchRequest.self, json: #"{"query":null}"#) }
    }

    @Test func invalidUTF8IsRejected() {
        let json: [UInt8] = Array(#"{"changes":[],"metadata":{"a":""#.utf8) + [0xff] + Array(#""}}"#.utf8)
        #expect(throws: FpindexError(.badRequest)) { try UpdateRequest.decode(from: json, format: .json) }
        #expect(throws: FpindexError(.badRequest)) { try MetadataRecord.decode(from: [0x81, 0xa1, 0x76, 0xa1, 0xff], format: .msgpack) }
    }
}

@Suite("Content negotiation")
struct NegotiationTests {
    @Test func requestFormat() throws {
        #expect(try ContentNegotiation.requestFormat(contentType: "application/json", bodyIsEmpty: false) == .json)
        #expect(try ContentNegotiation.requestFormat(contentType: "Application/JSON; charset=utf-8", bodyIsEmpty: false) == .json)
        #expect(try ContentNegotiation.requestFormat(contentType: "application/vnd.msgpack", bodyIsEmpty: false) == .msgpack)
        #expect(try ContentNegotiation.requestFormat(contentType: nil, bodyIsEmpty: false) == .msgpack)
        #expect(try ContentNegotiation.requestFormat(contentType: nil, bodyIsEmpty: true) == nil)
        #expect(throws: FpindexError(.unsupportedMediaType)) {
            try ContentNegotiation.requestFormat(contentType: "text/plain", bodyIsEmpty: false)
        }
        #expect(throws: FpindexError(.unsupportedMediaType)) {
            try ContentNegotiation.requestFormat(contentType: "application/x-msgpack", bodyIsEmpty: false)
        }
    }

    @Test func responseFormat() {
        #expect(ContentNegotiation.responseFormat(accept: "application/vnd.msgpack", requestFormat: .json) == .msgpack)
        #expect(ContentNegotiation.responseFormat(accept: "*/*", requestFormat: .msgpack) == .msgpack)
        #expect(ContentNegotiation.responseFormat(accept: nil, requestFormat: nil) == .json)
        #expect(ContentNegotiation.responseFormat(accept: "text/html", requestFormat: nil) == .json)
        #expect(
            ContentNegotiation.responseFormat(accept: "application/json;q=0.5, application/vnd.msgpack;q=0.9", requestFormat: nil)
                == .msgpack)
        #expect(ContentNegotiation.responseFormat(accept: "application/json, application/vnd.msgpack", requestFormat: .msgpack) == .json)
        #expect(ContentNegotiation.responseFormat(accept: "application/json;q=0", requestFormat: .msgpack) == .msgpack)
        #expect(WireFormat.json.contentType == "application/json; charset=UTF-8")
        #expect(WireFormat.msgpack.contentType == "application/vnd.msgpack")
    }

    @Test func indexNames() {
        #expect(FpindexNames.isValidIndexName("main-2_x"))
        #expect(FpindexNames.isValidIndexName(String(repeating: "a", count: 255)))
        #expect(!FpindexNames.isValidIndexName(String(repeating: "a", count: 256)))
        #expect(!FpindexNames.isValidIndexName(""))
        #expect(!FpindexNames.isValidIndexName("a.b"))
        #expect(!FpindexNames.isValidIndexName("a b"))
        #expect(!FpindexNames.isValidIndexName("é"))
    }
}
