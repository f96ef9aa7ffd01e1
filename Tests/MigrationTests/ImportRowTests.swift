import FpindexAPI
import StreamMigration
import TestSupport
import Testing

@Suite struct ImportRowTests {
    func pgcopy(_ line: String) throws -> ImportChange? { try ImportRowParser.pgcopy(Array(line.utf8)) }
    func jsonl(_ line: String) throws -> ImportChange? { try ImportRowParser.jsonl(Array(line.utf8)) }

    @Test func pgcopyRowsAsPostgreSQLWritesThem() throws {
        #expect(try pgcopy("123\t{1,2,3}") == .fingerprint(id: 123, hashes: [1, 2, 3]))
        // int4 hashes are signed: taken as their unsigned bit pattern, as the proxy stores u32.
        #expect(try pgcopy("7\t{-1,-2147483648,2147483647}") == .fingerprint(id: 7, hashes: [4_294_967_295, 2_147_483_648, 2_147_483_647]))
        #expect(try pgcopy("8\t{4294967295}") == .fingerprint(id: 8, hashes: [4_294_967_295]))
        #expect(try pgcopy("9\t{}") == .fingerprint(id: 9, hashes: []))
        #expect(try pgcopy("10\t\\N") == .deletion(id: 10))
        #expect(try pgcopy("4294967295\t{5}\r") == .fingerprint(id: 4_294_967_295, hashes: [5]))
        #expect(try pgcopy("") == nil)
        #expect(try pgcopy("\\.") == nil)
    }

    @Test(arguments: [
        ("0\t{1}", "id 0"),
        ("-1\t{1}", "not a number"),
        ("4294967296\t{1}", "larger than 4294967295"),
        ("abc\t{1}", "not a number"),
        ("12 {1}", "two tab-separated columns"),
        ("12\t{1}\textra", "found more"),
        ("12\t1,2", "not an array literal"),
        ("12\t{1,x}", "the hash 'x' is not an integer"),
        ("12\t{1,,2}", "is not an integer"),
        ("12\t{1,2,}", "end with a comma"),
        ("12\t{4294967296}", "above 4294967295"),
        ("12\t{-2147483649}", "below -2147483648"),
        ("12\t{NULL}", "the hash 'NULL' is not an integer"),
        ("12\t{1 ,2}", "is not an integer"),
    ])
    func badPgcopyRowsSayWhatIsWrong(line: String, reason: String) {
        do {
            let change = try pgcopy(line)
            Issue.record("\(line.debugDescription) parsed as \(String(describing: change))")
        } catch {
            #expect("\(error)".contains(reason), "\(line.debugDescription): \(error)")
        }
    }

    @Test func jsonLines() throws {
        #expect(try jsonl(#"{"id":5,"hashes":[1,-1,4294967295]}"#) == .fingerprint(id: 5, hashes: [1, 4_294_967_295, 4_294_967_295]))
        #expect(try jsonl(#" {"hashes":null,"id":6} "#) == .deletion(id: 6))
        #expect(try jsonl(#"{"id":7,"hashes":[]}"#) == .fingerprint(id: 7, hashes: []))
        #expect(try jsonl("  ") == nil)
        for (line, reason) in [
            (#"{"id":0,"hashes":[1]}"#, "fingerprint id 0"),
            (#"{"id":5}"#, "missing field hashes"),
            (#"{"hashes":[1]}"#, "missing field id"),
            (#"{"id":5,"hashes":[1],"x":1}"#, "unknown"),
            (#"{"id":5,"hashes":[-2147483649]}"#, "out of range"),
            (#"{"id":5,"hashes":[1.5]}"#, "fraction"),
            (#"{"id":5,"hashes":[1]} x"#, "trailing"),
            (#"{"id":5,"hashes":[- 1]}"#, "expected an integer"),
        ] {
            #expect(throws: FpindexError.self, "\(line)") { try jsonl(line) }
            do { _ = try jsonl(line) } catch { #expect("\(error)".lowercased().contains(reason), "\(line): \(error)") }
        }
    }

    @Test func msgpackBodiesOneAfterAnother() throws {
        let first = UpdateRequest(changes: [.insert(id: 1, hashes: [1, 2]), .delete(id: 2)], metadata: ["k": "v"])
        let second = UpdateRequest(changes: [.insert(id: 3, hashes: [])])
        let bytes = first.encoded(as: .msgpack) + second.encoded(as: .msgpack)
        try bytes.withUnsafeBytes { buffer in
            let (a, length) = try ImportRowParser.msgpackBody(buffer)
            #expect(a == first)
            let (b, rest) = try ImportRowParser.msgpackBody(UnsafeRawBufferPointer(rebasing: buffer[length...]))
            #expect(b == second)
            #expect(length + rest == bytes.count)
            // A body cut short is an error (the reader then reads more before it decides).
            #expect(throws: FpindexError.self) {
                try ImportRowParser.msgpackBody(UnsafeRawBufferPointer(rebasing: buffer[..<(length - 1)]))
            }
        }
        #expect(throws: FpindexError.self) { try ImportRowParser.validate(UpdateRequest(changes: [], expectedVersion: 3)) }
        #expect(throws: FpindexError.self) {
            try ImportRowParser.validate(UpdateRequest(changes: [], metadata: ["fpindex-cluster.seq": "1"]))
        }
    }

    /// Random rows written as PostgreSQL and jq would write them parse back to what was written.
    @Test func generatedRowsRoundTrip() throws {
        var random = SeededRandom(seed: 17)
        for _ in 0..<300 {
            let id = UInt32.random(in: 1...UInt32.max, using: &random)
            let signed = (0..<Int.random(in: 0...40, using: &random)).map { _ in Int32.random(in: Int32.min...Int32.max, using: &random) }
            let expected = ImportChange.fingerprint(id: id, hashes: signed.map { UInt32(bitPattern: $0) })
            #expect(try pgcopy("\(id)\t{\(signed.map(String.init).joined(separator: ","))}") == expected)
            #expect(try jsonl(#"{"id":\#(id),"hashes":[\#(signed.map(String.init).joined(separator: ","))]}"#) == expected)
        }
    }

    /// Hostile bytes never crash a parser: each line parses or is refused with an error.
    @Test func fuzzedLinesParseOrAreRefused() {
        var random = SeededRandom(seed: 99)
        let pieces = [
            "1", "-", "{", "}", ",", "\t", "\\N", "\\", "4294967295", "2147483648", "\r", "\"", "[", "]", ":", "null", "id", "hashes", " ",
            "\u{0}", "é",
        ]
        let valid = [Array("42\t{1,-2,3}".utf8), Array(#"{"id":42,"hashes":[1,-2,3]}"#.utf8)]
        var accepted = 0
        for round in 0..<3000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = Array((0..<Int.random(in: 0...12, using: &random)).map { _ in pieces.randomElement(using: &random)! }.joined().utf8)
            } else {
                // A valid row with a few bytes changed, inserted or removed: close to what parses.
                bytes = valid[round / 2 % 2]
                for _ in 0..<Int.random(in: 0...2, using: &random) {
                    let at = Int.random(in: 0..<bytes.count, using: &random)
                    switch Int.random(in: 0..<3, using: &random) {
                    case 0: bytes[at] = UInt8.random(in: 0...255, using: &random)
                    case 1: bytes.insert(UInt8.random(in: 0x20...0x7e, using: &random), at: at)
                    default: bytes.remove(at: at)
                    }
                }
            }
            if (try? ImportRowParser.pgcopy(bytes)) != nil { accepted += 1 }
            if (try? ImportRowParser.jsonl(bytes)) != nil { accepted += 1 }
            bytes.withUnsafeBytes { _ = try? ImportRowParser.msgpackBody($0) }
        }
        // Some generated lines are valid rows: the fuzzer reaches the accepting paths too.
        #expect(accepted > 0)
        for _ in 0..<1000 {
            let bytes = (0..<Int.random(in: 0...64, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            _ = try? ImportRowParser.pgcopy(bytes)
            _ = try? ImportRowParser.jsonl(bytes)
            bytes.withUnsafeBytes { _ = try? ImportRowParser.msgpackBody($0) }
        }
    }
}

/// The import's own sequences: a set of ranges, checked against a plain `Set` on random inserts.
@Suite struct SequenceRangesTests {
    @Test func rangesHoldExactlyWhatWasInserted() {
        var generator = SeededRandom(seed: 7)
        for _ in 0..<200 {
            var ranges = SequenceRanges()
            var plain = Set<UInt64>()
            for _ in 0..<Int.random(in: 0...60, using: &generator) {
                let sequence = UInt64.random(in: 1...80, using: &generator)
                ranges.insert(sequence)
                plain.insert(sequence)
            }
            for sequence in 0...82 { #expect(ranges.contains(UInt64(sequence)) == plain.contains(UInt64(sequence))) }
            // Disjoint and merged: as many ranges as runs of consecutive members.
            let runs = plain.filter { !plain.contains($0 - 1) }.count
            #expect(ranges.rangeCount == runs)
        }
    }

    @Test func inOrderSequencesWithGapsTakeOneRangePerRun() {
        var ranges = SequenceRanges()
        for sequence in UInt64(1)...100_000 where sequence % 25_000 != 0 { ranges.insert(sequence) }
        #expect(ranges.rangeCount == 4)
        #expect(!ranges.contains(50_000))
        #expect(ranges.contains(50_001))
        #expect(!ranges.contains(0))
    }
}
