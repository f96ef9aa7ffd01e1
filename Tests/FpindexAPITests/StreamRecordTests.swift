import FpindexAPI
import Testing

@Suite("Stream subjects and records")
struct StreamRecordTests {
    let subjects = StreamSubjects(prefix: "fpindex")

    @Test func subjectNames() {
        #expect(subjects.fingerprint("main", id: 0xabc) == "fpindex.main.00000abc")
        #expect(subjects.fingerprint("main", id: .max) == "fpindex.main.ffffffff")
        #expect(subjects.lifecycle("main") == "fpindex.main")
        #expect(subjects.metadata("main", key: "ab") == "fpindex.main._meta.6162")
        #expect(subjects.indexContents("main") == "fpindex.main.>")
        #expect(subjects.all == "fpindex.>")
    }

    @Test func subjectsParseBack() {
        #expect(subjects.parse("fpindex.main.00000abc") == .fingerprint(index: "main", id: 0xabc))
        #expect(subjects.parse("fpindex.main") == .lifecycle(index: "main"))
        #expect(subjects.parse("fpindex.main._meta.6162") == .metadata(index: "main", key: "ab"))
        #expect(
            subjects.parse(subjects.metadata("_meta", key: "fpindex-cluster.seq")) == .metadata(index: "_meta", key: "fpindex-cluster.seq"))
        for bad in [
            "fpindex", "fpindex.", "other.main", "fpindexx.main", "fpindex.main.abc", "fpindex.main.0000ABC0",
            "fpindex.main.00000000", "fpindex.main._meta.6", "fpindex.main._meta.zz", "fpindex.a.b.c.d", "fpindex.ma in",
        ] {
            #expect(subjects.parse(bad) == nil, "\(bad)")
        }
        let dotted = StreamSubjects(prefix: "prod.fp")
        #expect(dotted.parse("prod.fp.main.00000001") == .fingerprint(index: "main", id: 1))
        #expect(StreamSubjects.isValidPrefix("prod.fp"))
        #expect(!StreamSubjects.isValidPrefix("prod..fp"))
        #expect(!StreamSubjects.isValidPrefix("fp.>"))
    }

    @Test func fingerprintRecords() throws {
        let record = FingerprintRecord(hashes: [1, 300, 70000, .max])
        #expect(record.payload == bytes("81 a1 68 94 01 cd 01 2c ce 00 01 11 70 ce ff ff ff ff"))
        let decoded = try record.payload.withUnsafeBytes { buffer throws(FpindexError) in try FingerprintRecord.decode(payload: buffer) }
        #expect(decoded == record)
        #expect(FingerprintRecord.tombstone.payload == [0x80])
        let empty = try [UInt8]().withUnsafeBytes { buffer throws(FpindexError) in try FingerprintRecord.decode(payload: buffer) }
        #expect(empty == .tombstone)
        let map = try [UInt8(0x80)].withUnsafeBytes { buffer throws(FpindexError) in try FingerprintRecord.decode(payload: buffer) }
        #expect(map == .tombstone)
    }

    @Test func a120HashMessageIsAbout600Bytes() {
        var generator = SystemRandomNumberGenerator()
        let hashes = (0..<120).map { _ in UInt32(truncatingIfNeeded: generator.next() | 0x8000_0000) }
        #expect(FingerprintRecord(hashes: hashes).payload.count == 1 + 2 + 3 + 120 * 5)  // map, key "h", array16 header, 5 bytes a hash
    }

    @Test func lifecycleAndMetadataRecords() throws {
        #expect(LifecycleRecord(.create).payload == [0x81, 0xa2, 0x6f, 0x70, 0xa6] + Array("create".utf8))
        #expect(try LifecycleRecord.decode(from: LifecycleRecord(.delete).payload, format: .msgpack) == LifecycleRecord(.delete))
        #expect(throws: FpindexError(.badRequest)) {
            try LifecycleRecord.decode(from: [0x81, 0xa2, 0x6f, 0x70, 0xa1, 0x78], format: .msgpack)
        }
        #expect(MetadataRecord(value: "7").payload == [0x81, 0xa1, 0x76, 0xa1, 0x37])
        #expect(try MetadataRecord.decode(from: MetadataRecord(value: "x").payload, format: .msgpack).value == "x")
        #expect(ReservedMetadata.isReserved("fpindex-cluster.seq"))
        #expect(!ReservedMetadata.isReserved("fpindex-clusterx"))
    }
}
