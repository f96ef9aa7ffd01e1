import CYaml

/// A parsed YAML node. Scalars stay untyped strings (libyaml does not type them; kubeconfig
/// values are strings anyway); `plain` tells a plain scalar from a quoted one.
public indirect enum YAMLNode: Sendable, Equatable {
    case scalar(String, plain: Bool)
    case sequence([YAMLNode])
    case mapping([(key: String, value: YAMLNode)])

    public static func == (lhs: YAMLNode, rhs: YAMLNode) -> Bool {
        switch (lhs, rhs) {
        case let (.scalar(a, pa), .scalar(b, pb)): return a == b && pa == pb
        case let (.sequence(a), .sequence(b)): return a == b
        case let (.mapping(a), .mapping(b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    /// The value under `key` of a mapping (the last one if repeated), nil for other nodes.
    public subscript(key: String) -> YAMLNode? {
        guard case .mapping(let pairs) = self else { return nil }
        return pairs.last { $0.key == key }?.value
    }

    /// The scalar's text; nil for collections and for a plain `null`/`~`.
    public var string: String? {
        guard case .scalar(let text, let plain) = self else { return nil }
        if plain && (text == "null" || text == "~" || text == "Null" || text == "NULL") { return nil }
        return text
    }

    /// YAML 1.1/1.2 booleans as kubeconfig writers produce them.
    public var bool: Bool? {
        guard let text = string else { return nil }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: return nil
        }
    }

    public var array: [YAMLNode]? {
        guard case .sequence(let items) = self else { return nil }
        return items
    }
}

/// A YAML syntax error with its position (1-based line and column).
public struct YAMLError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var line: Int
    public var column: Int
    public var description: String { "YAML error at line \(line), column \(column): \(message)" }
}

/// Parses YAML text with libyaml's event API into one node per document. Anchors and aliases
/// are resolved; merge keys (`<<`) are applied.
public enum YAMLParser {
    /// - Returns: one node per document (an empty stream gives none).
    /// - Throws: `YAMLError` with the line and column of the problem.
    public static func parse(_ text: String) throws(YAMLError) -> [YAMLNode] {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            throw YAMLError(message: "cannot initialize the YAML parser", line: 0, column: 0)
        }
        defer { yaml_parser_delete(&parser) }
        let bytes = Array(text.utf8)
        return try bytes.withUnsafeBufferPointer { (buffer) throws(YAMLError) -> [YAMLNode] in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var builder = Builder()
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else {
                    let problem = parser.problem.map { String(cString: $0) } ?? "invalid YAML"
                    let context = parser.context.map { String(cString: $0) + ": " } ?? ""
                    throw YAMLError(
                        message: context + problem, line: Int(parser.problem_mark.line) + 1,
                        column: Int(parser.problem_mark.column) + 1)
                }
                defer { yaml_event_delete(&event) }
                let mark = event.start_mark
                do {
                    if try builder.consume(&event) { return builder.documents }
                } catch let message as BuildError {
                    throw YAMLError(message: message.text, line: Int(mark.line) + 1, column: Int(mark.column) + 1)
                } catch {
                    throw YAMLError(message: "\(error)", line: Int(mark.line) + 1, column: Int(mark.column) + 1)
                }
            }
        }
    }

    private struct BuildError: Error { var text: String }

    /// Builds nodes from events with an explicit stack (no recursion over untrusted depth).
    private struct Builder {
        enum Frame {
            case sequence(anchor: String?, items: [YAMLNode])
            case mapping(anchor: String?, pairs: [(key: String, value: YAMLNode)], pendingKey: String?)
        }
        var documents: [YAMLNode] = []
        var stack: [Frame] = []
        var anchors: [String: YAMLNode] = [:]
        var root: YAMLNode?

        /// Returns true at the end of the stream.
        mutating func consume(_ event: inout yaml_event_t) throws -> Bool {
            switch event.type {
            case YAML_STREAM_END_EVENT:
                return true
            case YAML_DOCUMENT_START_EVENT:
                root = nil
                anchors = [:]
            case YAML_DOCUMENT_END_EVENT:
                documents.append(root ?? .scalar("", plain: true))
            case YAML_SCALAR_EVENT:
                let scalar = event.data.scalar
                let text = Self.text(scalar.value, Int(scalar.length))
                let node = YAMLNode.scalar(text, plain: scalar.style == YAML_PLAIN_SCALAR_STYLE)
                if let anchor = Self.cString(scalar.anchor) { anchors[anchor] = node }
                try add(node)
            case YAML_ALIAS_EVENT:
                let name = Self.cString(event.data.alias.anchor) ?? ""
                guard let node = anchors[name] else { throw BuildError(text: "unknown alias *\(name)") }
                try add(node)
            case YAML_SEQUENCE_START_EVENT:
                guard stack.count < 512 else { throw BuildError(text: "nesting deeper than 512") }
                stack.append(.sequence(anchor: Self.cString(event.data.sequence_start.anchor), items: []))
            case YAML_MAPPING_START_EVENT:
                guard stack.count < 512 else { throw BuildError(text: "nesting deeper than 512") }
                stack.append(.mapping(anchor: Self.cString(event.data.mapping_start.anchor), pairs: [], pendingKey: nil))
            case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                let frame = stack.removeLast()
                let node: YAMLNode
                let anchor: String?
                switch frame {
                case .sequence(let a, let items):
                    node = .sequence(items)
                    anchor = a
                case .mapping(let a, let pairs, _):
                    node = .mapping(pairs)
                    anchor = a
                }
                if let anchor { anchors[anchor] = node }
                try add(node)
            default:
                break
            }
            return false
        }

        mutating func add(_ node: YAMLNode) throws {
            guard let top = stack.popLast() else {
                root = node
                return
            }
            switch top {
            case .sequence(let anchor, var items):
                items.append(node)
                stack.append(.sequence(anchor: anchor, items: items))
            case .mapping(let anchor, var pairs, let pendingKey):
                if let key = pendingKey {
                    if key == "<<" {
                        // Merge keys: the mapping (or list of mappings) fills keys not set explicitly.
                        let sources = node.array ?? [node]
                        for source in sources {
                            guard case .mapping(let merged) = source else {
                                throw BuildError(text: "merge key << needs a mapping")
                            }
                            for pair in merged where !pairs.contains(where: { $0.key == pair.key }) {
                                pairs.append(pair)
                            }
                        }
                    } else {
                        pairs.removeAll { $0.key == key }
                        pairs.append((key, node))
                    }
                    stack.append(.mapping(anchor: anchor, pairs: pairs, pendingKey: nil))
                } else {
                    guard case .scalar(let key, _) = node else {
                        throw BuildError(text: "only scalar mapping keys are supported")
                    }
                    stack.append(.mapping(anchor: anchor, pairs: pairs, pendingKey: key))
                }
            }
        }

        static func text(_ pointer: UnsafeMutablePointer<yaml_char_t>?, _ length: Int) -> String {
            guard let pointer else { return "" }
            return String(decoding: UnsafeBufferPointer(start: pointer, count: length), as: UTF8.self)
        }

        static func cString(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
            pointer.map { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
        }
    }
}
