/// The subset of CEL that kubesim evaluates in CRD validation rules (`x-kubernetes-validations`):
/// literals, `self`/`oldSelf`, field selection and indexing, `has()`, `size()`, the string
/// functions `startsWith`/`endsWith`/`contains`, `!`, `-`, arithmetic, comparisons, `in`,
/// `&&`/`||` and `?:`. A CRD with a rule outside the subset is refused (kubesim is never more
/// permissive than the real server: it cannot accept what it cannot check).
enum CEL {
    indirect enum Expr: Equatable {
        case literal(JSONValue)
        case identifier(String)
        case select(Expr, String)
        case index(Expr, Expr)
        /// `has(e.f)`: whether `e` has the field `f`.
        case has(Expr, String)
        /// A function call, as `f(args)` (no target) or `target.f(args)`.
        case call(String, target: Expr?, arguments: [Expr])
        case unary(String, Expr)
        case binary(String, Expr, Expr)
        case conditional(Expr, Expr, Expr)
        case list([Expr])
    }

    /// A rule kubesim cannot compile (a syntax error, or CEL beyond the subset).
    struct CompileError: Error, CustomStringConvertible {
        var message: String
        var offset: Int
        var description: String { "ERROR: <input>:1:\(offset + 1): \(message)" }
    }

    /// A rule that failed at run time (`no such key: name`, `no such overload`, ...).
    struct EvaluationError: Error, CustomStringConvertible {
        var description: String
    }

    static func compile(_ text: String) throws(CompileError) -> Expr {
        var parser = CELParser(text: text)
        let expr = try parser.parseConditional()
        parser.skipSpace()
        guard parser.atEnd else { throw parser.fail("Syntax error: extraneous input") }
        return expr
    }

    /// Whether the rule reads `oldSelf` (a transition rule: evaluated only on updates where an
    /// old value exists).
    static func readsOldSelf(_ expr: Expr) -> Bool {
        switch expr {
        case .identifier(let name): return name == "oldSelf"
        case .literal: return false
        case .select(let e, _), .has(let e, _), .unary(_, let e): return readsOldSelf(e)
        case .index(let a, let b), .binary(_, let a, let b): return readsOldSelf(a) || readsOldSelf(b)
        case .call(_, let target, let arguments): return (target.map(readsOldSelf) ?? false) || arguments.contains(where: readsOldSelf)
        case .conditional(let a, let b, let c): return readsOldSelf(a) || readsOldSelf(b) || readsOldSelf(c)
        case .list(let items): return items.contains(where: readsOldSelf)
        }
    }

    /// The field chains a rule selects from `self` or `oldSelf` (`self.a.b` -> ["a", "b"]),
    /// for the compile-time check that they exist in the schema.
    static func selectedPaths(_ expr: Expr) -> [[String]] {
        func chain(_ e: Expr) -> [String]? {
            switch e {
            case .identifier(let name): return name == "self" || name == "oldSelf" ? [] : nil
            case .select(let inner, let field): return chain(inner).map { $0 + [field] }
            default: return nil
            }
        }
        var paths: [[String]] = []
        func walk(_ e: Expr) {
            if let path = chain(e), !path.isEmpty { paths.append(path) }
            switch e {
            case .identifier, .literal: break
            case .select(let inner, _): if chain(e) == nil { walk(inner) }
            case .has(let inner, let field):
                if let path = chain(inner) { paths.append(path + [field]) } else { walk(inner) }
            case .unary(_, let inner): walk(inner)
            case .index(let a, let b), .binary(_, let a, let b):
                walk(a)
                walk(b)
            case .call(_, let target, let arguments):
                target.map(walk)
                arguments.forEach(walk)
            case .conditional(let a, let b, let c):
                walk(a)
                walk(b)
                walk(c)
            case .list(let items): items.forEach(walk)
            }
        }
        walk(expr)
        return paths
    }

    static func evaluate(_ expr: Expr, _ bindings: [String: JSONValue]) throws(EvaluationError) -> JSONValue {
        switch expr {
        case .literal(let value): return value
        case .identifier(let name):
            guard let value = bindings[name] else { throw EvaluationError(description: "undeclared reference to '\(name)'") }
            return value
        case .select(let target, let field):
            let value = try evaluate(target, bindings)
            guard case .object(let object) = value else { throw EvaluationError(description: "no such key: \(field)") }
            guard let member = object[field] else { throw EvaluationError(description: "no such key: \(field)") }
            return member
        case .has(let target, let field):
            let value = try evaluate(target, bindings)
            guard case .object(let object) = value else { throw EvaluationError(description: "no such overload: has") }
            return .bool(object[field] != nil)
        case .index(let target, let key):
            let container = try evaluate(target, bindings)
            let index = try evaluate(key, bindings)
            switch (container, index) {
            case (.array(let items), .int(let i)):
                guard i >= 0, i < items.count else { throw EvaluationError(description: "index out of bounds: \(i)") }
                return items[Int(i)]
            case (.object(let object), .string(let k)):
                guard let member = object[k] else { throw EvaluationError(description: "no such key: \(k)") }
                return member
            default: throw EvaluationError(description: "no such overload: _[_]")
            }
        case .unary(let op, let operand):
            let value = try evaluate(operand, bindings)
            switch (op, value) {
            case ("!", .bool(let b)): return .bool(!b)
            case ("-", .int(let i)): return .int(-i)
            case ("-", .double(let d)): return .double(-d)
            default: throw EvaluationError(description: "no such overload: \(op)_")
            }
        case .binary("&&", let left, let right), .binary("||", let left, let right):
            let isAnd = if case .binary("&&", _, _) = expr { true } else { false }
            // CEL's logical operators are commutative over errors: `false && error` is false.
            var leftError: EvaluationError?
            var leftValue: Bool?
            do throws(EvaluationError) {
                guard case .bool(let b) = try evaluate(left, bindings) else {
                    throw EvaluationError(description: "no such overload: _\(isAnd ? "&&" : "||")_")
                }
                leftValue = b
            } catch { leftError = error }
            if let leftValue, leftValue != isAnd { return .bool(leftValue) }
            guard case .bool(let rightValue) = try evaluate(right, bindings) else {
                throw EvaluationError(description: "no such overload: _\(isAnd ? "&&" : "||")_")
            }
            if rightValue != isAnd { return .bool(rightValue) }
            if let leftError { throw leftError }
            return .bool(isAnd)
        case .binary(let op, let left, let right):
            return try binary(op, try evaluate(left, bindings), try evaluate(right, bindings))
        case .conditional(let condition, let then, let otherwise):
            guard case .bool(let b) = try evaluate(condition, bindings) else {
                throw EvaluationError(description: "no such overload: _?_:_")
            }
            return try evaluate(b ? then : otherwise, bindings)
        case .list(let items):
            var values: [JSONValue] = []
            for item in items { values.append(try evaluate(item, bindings)) }
            return .array(values)
        case .call(let name, let target, let arguments):
            var values: [JSONValue] = []
            for argument in arguments { values.append(try evaluate(argument, bindings)) }
            let receiver = try target.map { e throws(EvaluationError) in try evaluate(e, bindings) }
            return try call(name, receiver, values)
        }
    }

    static func binary(_ op: String, _ a: JSONValue, _ b: JSONValue) throws(EvaluationError) -> JSONValue {
        switch op {
        case "==", "!=":
            // CEL has no implicit conversions: 1 == 1.0 is an error, not false.
            switch (a, b) {
            case (.int, .double), (.double, .int): throw EvaluationError(description: "no such overload: _\(op)_")
            default: return .bool((a == b) == (op == "=="))
            }
        case "<", "<=", ">", ">=":
            let order: Int
            switch (a, b) {
            case (.int(let x), .int(let y)): order = x < y ? -1 : x == y ? 0 : 1
            case (.double(let x), .double(let y)): order = x < y ? -1 : x == y ? 0 : 1
            case (.string(let x), .string(let y)): order = x < y ? -1 : x == y ? 0 : 1
            default: throw EvaluationError(description: "no such overload: _\(op)_")
            }
            switch op {
            case "<": return .bool(order < 0)
            case "<=": return .bool(order <= 0)
            case ">": return .bool(order > 0)
            default: return .bool(order >= 0)
            }
        case "in":
            switch b {
            case .array(let items): return .bool(items.contains(a))
            case .object(let object):
                guard case .string(let key) = a else { throw EvaluationError(description: "no such overload: @in") }
                return .bool(object[key] != nil)
            default: throw EvaluationError(description: "no such overload: @in")
            }
        case "+":
            switch (a, b) {
            case (.int(let x), .int(let y)):
                let (sum, overflow) = x.addingReportingOverflow(y)
                if overflow { throw EvaluationError(description: "integer overflow") }
                return .int(sum)
            case (.double(let x), .double(let y)): return .double(x + y)
            case (.string(let x), .string(let y)): return .string(x + y)
            case (.array(let x), .array(let y)): return .array(x + y)
            default: throw EvaluationError(description: "no such overload: _+_")
            }
        case "-", "*", "/", "%":
            switch (a, b) {
            case (.int(let x), .int(let y)):
                if (op == "/" || op == "%") && y == 0 { throw EvaluationError(description: "division by zero") }
                let (result, overflow): (Int64, Bool) =
                    switch op {
                    case "-": x.subtractingReportingOverflow(y)
                    case "*": x.multipliedReportingOverflow(by: y)
                    case "/": x.dividedReportingOverflow(by: y)
                    default: x.remainderReportingOverflow(dividingBy: y)
                    }
                if overflow { throw EvaluationError(description: "integer overflow") }
                return .int(result)
            case (.double(let x), .double(let y)) where op != "%":
                return .double(op == "-" ? x - y : op == "*" ? x * y : x / y)
            default: throw EvaluationError(description: "no such overload: _\(op)_")
            }
        default:
            throw EvaluationError(description: "no such overload: _\(op)_")
        }
    }

    static func call(_ name: String, _ receiver: JSONValue?, _ arguments: [JSONValue]) throws(EvaluationError) -> JSONValue {
        switch (name, receiver, arguments.count) {
        case ("size", nil, 1), ("size", .some, 0):
            switch receiver ?? arguments[0] {
            case .string(let s): return .int(Int64(s.unicodeScalars.count))
            case .array(let items): return .int(Int64(items.count))
            case .object(let object): return .int(Int64(object.count))
            default: throw EvaluationError(description: "no such overload: size")
            }
        case ("startsWith", .string(let s), 1), ("endsWith", .string(let s), 1), ("contains", .string(let s), 1):
            guard case .string(let part) = arguments[0] else { throw EvaluationError(description: "no such overload: \(name)") }
            return .bool(name == "startsWith" ? s.hasPrefix(part) : name == "endsWith" ? s.hasSuffix(part) : s.contains(part))
        default:
            throw EvaluationError(description: "found no matching overload for '\(name)'")
        }
    }

    /// The functions the evaluator knows, for the compile-time check.
    static let functions: Set<String> = ["size", "startsWith", "endsWith", "contains"]
}

/// A recursive-descent parser for the subset (CEL's grammar and precedence).
struct CELParser {
    let scalars: [Unicode.Scalar]
    var index = 0

    init(text: String) { scalars = Array(text.unicodeScalars) }

    var atEnd: Bool { index >= scalars.count }

    func fail(_ message: String) -> CEL.CompileError { CEL.CompileError(message: message, offset: index) }

    mutating func skipSpace() {
        while index < scalars.count, [" ", "\t", "\n", "\r"].contains(scalars[index]) { index += 1 }
    }

    /// Consumes `token` if it comes next (after spaces).
    mutating func accept(_ token: String) -> Bool {
        skipSpace()
        let wanted = Array(token.unicodeScalars)
        guard index + wanted.count <= scalars.count, Array(scalars[index..<index + wanted.count]) == wanted else {
            return false
        }
        // `in` is a keyword: not the start of an identifier such as `index`.
        if token.first?.isLetter == true, index + wanted.count < scalars.count,
            Self.isIdentifierPart(scalars[index + wanted.count])
        {
            return false
        }
        index += wanted.count
        return true
    }

    static func isIdentifierStart(_ c: Unicode.Scalar) -> Bool { c == "_" || (c.isASCII && c.properties.isAlphabetic) }
    static func isIdentifierPart(_ c: Unicode.Scalar) -> Bool { isIdentifierStart(c) || ("0"..."9").contains(c) }

    mutating func parseConditional() throws(CEL.CompileError) -> CEL.Expr {
        let condition = try parseOr()
        guard accept("?") else { return condition }
        let then = try parseConditional()
        guard accept(":") else { throw fail("Syntax error: missing ':'") }
        return .conditional(condition, then, try parseConditional())
    }

    mutating func parseOr() throws(CEL.CompileError) -> CEL.Expr {
        var left = try parseAnd()
        while accept("||") { left = .binary("||", left, try parseAnd()) }
        return left
    }

    mutating func parseAnd() throws(CEL.CompileError) -> CEL.Expr {
        var left = try parseRelation()
        while accept("&&") { left = .binary("&&", left, try parseRelation()) }
        return left
    }

    mutating func parseRelation() throws(CEL.CompileError) -> CEL.Expr {
        var left = try parseAdditive()
        while true {
            var matched: String?
            for op in ["==", "!=", "<=", ">=", "<", ">", "in"] where accept(op) {
                matched = op
                break
            }
            guard let op = matched else { return left }
            left = .binary(op, left, try parseAdditive())
        }
    }

    mutating func parseAdditive() throws(CEL.CompileError) -> CEL.Expr {
        var left = try parseMultiplicative()
        while true {
            if accept("+") {
                left = .binary("+", left, try parseMultiplicative())
            } else if accept("-") {
                left = .binary("-", left, try parseMultiplicative())
            } else {
                return left
            }
        }
    }

    mutating func parseMultiplicative() throws(CEL.CompileError) -> CEL.Expr {
        var left = try parseUnary()
        while true {
            var matched: String?
            for op in ["*", "/", "%"] where accept(op) {
                matched = op
                break
            }
            guard let op = matched else { return left }
            left = .binary(op, left, try parseUnary())
        }
    }

    mutating func parseUnary() throws(CEL.CompileError) -> CEL.Expr {
        if accept("!") { return .unary("!", try parseUnary()) }
        if accept("-") { return .unary("-", try parseUnary()) }
        return try parseMember()
    }

    mutating func parseMember() throws(CEL.CompileError) -> CEL.Expr {
        var expr = try parsePrimary()
        while true {
            if accept(".") {
                skipSpace()
                let name = try parseIdentifier()
                if accept("(") {
                    guard CEL.functions.contains(name) else {
                        throw fail("undeclared reference to '\(name)' (kubesim evaluates only a subset of CEL)")
                    }
                    expr = .call(name, target: expr, arguments: try parseArguments())
                } else {
                    expr = .select(expr, name)
                }
            } else if accept("[") {
                let key = try parseConditional()
                guard accept("]") else { throw fail("Syntax error: missing ']'") }
                expr = .index(expr, key)
            } else {
                return expr
            }
        }
    }

    mutating func parseArguments() throws(CEL.CompileError) -> [CEL.Expr] {
        var arguments: [CEL.Expr] = []
        if accept(")") { return arguments }
        repeat { arguments.append(try parseConditional()) } while accept(",")
        guard accept(")") else { throw fail("Syntax error: missing ')'") }
        return arguments
    }

    mutating func parseIdentifier() throws(CEL.CompileError) -> String {
        guard index < scalars.count, Self.isIdentifierStart(scalars[index]) else { throw fail("Syntax error: expected an identifier") }
        var name = ""
        while index < scalars.count, Self.isIdentifierPart(scalars[index]) {
            name.unicodeScalars.append(scalars[index])
            index += 1
        }
        return name
    }

    mutating func parsePrimary() throws(CEL.CompileError) -> CEL.Expr {
        skipSpace()
        guard index < scalars.count else { throw fail("Syntax error: unexpected end of expression") }
        let c = scalars[index]
        if accept("(") {
            let inner = try parseConditional()
            guard accept(")") else { throw fail("Syntax error: missing ')'") }
            return inner
        }
        if accept("[") {
            var items: [CEL.Expr] = []
            if accept("]") { return .list(items) }
            repeat { items.append(try parseConditional()) } while accept(",")
            guard accept("]") else { throw fail("Syntax error: missing ']'") }
            return .list(items)
        }
        if c == "\"" || c == "'" { return .literal(.string(try parseString())) }
        if ("0"..."9").contains(c) { return try parseNumber() }
        if Self.isIdentifierStart(c) {
            let name = try parseIdentifier()
            switch name {
            case "true": return .literal(.bool(true))
            case "false": return .literal(.bool(false))
            case "null": return .literal(.null)
            case "self", "oldSelf": return .identifier(name)
            case "has":
                guard accept("(") else { throw fail("Syntax error: has needs an argument") }
                let argument = try parseConditional()
                guard accept(")"), case .select(let target, let field) = argument else {
                    throw fail("invalid argument to has() macro")
                }
                return .has(target, field)
            default:
                if accept("(") {
                    guard CEL.functions.contains(name) else {
                        throw fail("undeclared reference to '\(name)' (kubesim evaluates only a subset of CEL)")
                    }
                    return .call(name, target: nil, arguments: try parseArguments())
                }
                throw fail("undeclared reference to '\(name)'")
            }
        }
        throw fail("Syntax error: unexpected '\(c)'")
    }

    mutating func parseString() throws(CEL.CompileError) -> String {
        let quote = scalars[index]
        index += 1
        var text = ""
        while index < scalars.count {
            let c = scalars[index]
            index += 1
            if c == quote { return text }
            if c == "\\" {
                guard index < scalars.count else { break }
                let escaped = scalars[index]
                index += 1
                switch escaped {
                case "n": text += "\n"
                case "t": text += "\t"
                case "r": text += "\r"
                case "\\", "\"", "'": text.unicodeScalars.append(escaped)
                default: throw fail("Syntax error: unsupported escape \\\(escaped)")
                }
            } else {
                text.unicodeScalars.append(c)
            }
        }
        throw fail("Syntax error: unterminated string")
    }

    mutating func parseNumber() throws(CEL.CompileError) -> CEL.Expr {
        let start = index
        while index < scalars.count, ("0"..."9").contains(scalars[index]) { index += 1 }
        var isDouble = false
        if index + 1 < scalars.count, scalars[index] == ".", ("0"..."9").contains(scalars[index + 1]) {
            isDouble = true
            index += 1
            while index < scalars.count, ("0"..."9").contains(scalars[index]) { index += 1 }
        }
        var text = ""
        text.unicodeScalars.append(contentsOf: scalars[start..<index])
        if isDouble, let d = Double(text) { return .literal(.double(d)) }
        guard let i = Int64(text) else { throw fail("Syntax error: bad number \(text)") }
        return .literal(.int(i))
    }
}
