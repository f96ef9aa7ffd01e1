import CYaml
import Testing

/// libyaml's event parser on a multi-document stream with anchors and aliases.
@Suite("libyaml")
struct CYamlTests {
    struct Event: Equatable {
        var kind: String
        var value: String = ""
    }

    static func events(_ text: String) throws -> [Event] {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { throw ParseError(message: "init failed") }
        defer { yaml_parser_delete(&parser) }
        let bytes = Array(text.utf8)
        return try bytes.withUnsafeBufferPointer { buffer in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var events: [Event] = []
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else {
                    let problem = parser.problem.map { String(cString: $0) } ?? "?"
                    throw ParseError(message: "\(problem) at line \(parser.problem_mark.line + 1)")
                }
                defer { yaml_event_delete(&event) }
                func string(_ pointer: UnsafeMutablePointer<yaml_char_t>?, _ length: Int) -> String {
                    guard let pointer else { return "" }
                    return String(decoding: UnsafeBufferPointer(start: pointer, count: length), as: UTF8.self)
                }
                func cString(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String {
                    pointer.map { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) } ?? ""
                }
                switch event.type {
                case YAML_DOCUMENT_START_EVENT: events.append(Event(kind: "doc"))
                case YAML_MAPPING_START_EVENT: events.append(Event(kind: "map", value: cString(event.data.mapping_start.anchor)))
                case YAML_SCALAR_EVENT:
                    events.append(Event(kind: "scalar", value: string(event.data.scalar.value, event.data.scalar.length)))
                case YAML_ALIAS_EVENT: events.append(Event(kind: "alias", value: cString(event.data.alias.anchor)))
                case YAML_STREAM_END_EVENT: return events
                default: break
                }
            }
        }
    }

    struct ParseError: Error { var message: String }

    @Test func multiDocumentWithAnchors() throws {
        let yaml = """
            base: &defaults {port: 6081, host: "localhost"}
            ---
            clusters:
              - name: a
                settings: *defaults
              - name: "b"
            """
        let events = try Self.events(yaml)
        #expect(events.filter { $0.kind == "doc" }.count == 2)
        #expect(events.contains(Event(kind: "map", value: "defaults")))
        #expect(events.contains(Event(kind: "alias", value: "defaults")))
        // Scalars are untyped: 6081 is a string like any other.
        let scalars = events.filter { $0.kind == "scalar" }.map(\.value)
        #expect(scalars == ["base", "port", "6081", "host", "localhost", "clusters", "name", "a", "settings", "name", "b"])
    }

    @Test func reportsErrorsWithALine() {
        #expect(throws: ParseError.self) { try Self.events("a: [1, 2\nb: c") }
        do {
            _ = try Self.events("ok: 1\nbad: [1, 2\nb: c")
        } catch let error as ParseError {
            #expect(error.message.contains("line"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
