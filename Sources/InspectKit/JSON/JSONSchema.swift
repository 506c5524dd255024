import Foundation

/// A JSON Schema (the subset tools and MCP servers use for their arguments) that checks values.
///
/// Supported keywords: `type` (one or a list of `object`, `array`, `string`, `integer`, `number`,
/// `boolean`, `null`), `properties`, `required`, `additionalProperties` (false or a schema),
/// `items`, `enum`, `const`, `minLength`, `maxLength`, `pattern`, `minimum`, `maximum`,
/// `exclusiveMinimum`, `exclusiveMaximum` (numbers, draft 6+), `minItems`, `maxItems`, `allOf`,
/// `anyOf`, `oneOf`, `not`. Other keywords (`description`, `default`, `format`, `$schema`…) are
/// accepted and ignored, as a validator may do for annotations.
///
/// ```swift
/// let schema = try JSONSchema(#"{"type":"object","properties":{"path":{"type":"string"}},"required":["path"]}"#)
/// schema.problems(in: try JSONValue.parse(#"{"path": 3}"#))  // ["/path: expected a string, got a number"]
/// ```
public struct JSONSchema: Sendable {
  /// Why a schema could not be read.
  public struct Invalid: Error, CustomStringConvertible {
    public let description: String
  }

  private let root: JSONValue

  /// Reads a schema; throws ``Invalid`` when the text is not a JSON object or a keyword has the
  /// wrong shape (a `pattern` that is not a regular expression, a `required` that is not a list).
  public init(_ text: String) throws {
    guard let value = try? JSONValue.parse(text) else { throw Invalid(description: "the schema is not valid JSON") }
    try self.init(value)
  }

  public init(_ value: JSONValue) throws {
    guard case .object = value else { throw Invalid(description: "the schema is not a JSON object") }
    try Self.check(value, at: "")
    root = value
  }

  /// The problems of `value`, each as `<JSON pointer>: <what is wrong>`; empty when it conforms.
  public func problems(in value: JSONValue) -> [String] {
    var problems: [String] = []
    Self.validate(value, against: root, at: "", into: &problems)
    return problems
  }

  // MARK: - Checking the schema

  private static func check(_ schema: JSONValue, at path: String) throws {
    guard case .object(let keywords) = schema else {
      if case .bool = schema { return }
      throw Invalid(description: "\(path.isEmpty ? "/" : path): a schema must be an object or a boolean")
    }
    if let required = keywords["required"] {
      guard case .array(let names) = required, names.allSatisfy({ if case .string = $0 { true } else { false } })
      else { throw Invalid(description: "\(path)/required: must be a list of property names") }
    }
    if case .string(let pattern)? = keywords["pattern"], (try? NSRegularExpression(pattern: pattern)) == nil {
      throw Invalid(description: "\(path)/pattern: '\(pattern)' is not a regular expression")
    }
    if case .object(let properties)? = keywords["properties"] {
      for (name, property) in properties { try check(property, at: "\(path)/properties/\(name)") }
    }
    for key in ["items", "additionalProperties", "not"] {
      if let nested = keywords[key] { try check(nested, at: "\(path)/\(key)") }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
      if case .array(let list)? = keywords[key] {
        for (index, nested) in list.enumerated() { try check(nested, at: "\(path)/\(key)/\(index)") }
      }
    }
  }

  // MARK: - Validating

  private static func validate(
    _ value: JSONValue, against schema: JSONValue, at path: String, into problems: inout [String]
  ) {
    let here = path.isEmpty ? "/" : path
    guard case .object(let keywords) = schema else {
      if case .bool(false) = schema { problems.append("\(here): no value is allowed here") }
      return
    }
    if let type = keywords["type"] {
      let allowed: [String] =
        switch type {
        case .string(let name): [name]
        case .array(let names): names.compactMap { if case .string(let name) = $0 { name } else { nil } }
        default: []
        }
      if !allowed.isEmpty, !allowed.contains(where: { value.isA($0) }) {
        problems.append("\(here): expected \(allowed.map(article).joined(separator: " or ")), got \(value.typeName)")
        return
      }
    }
    if case .array(let options)? = keywords["enum"], !options.contains(where: { $0.sameValue(as: value) }) {
      problems.append("\(here): \(value.brief) is not one of \(options.map(\.brief).joined(separator: ", "))")
    }
    if let constant = keywords["const"], !constant.sameValue(as: value) {
      problems.append("\(here): must be \(constant.brief)")
    }
    switch value {
    case .string(let text):
      if let least = keywords["minLength"]?.number, Double(text.count) < least {
        problems.append("\(here): must be at least \(Int(least)) characters long")
      }
      if let most = keywords["maxLength"]?.number, Double(text.count) > most {
        problems.append("\(here): must be at most \(Int(most)) characters long")
      }
      if case .string(let pattern)? = keywords["pattern"], let expression = try? NSRegularExpression(pattern: pattern),
        expression.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) == nil
      {
        problems.append("\(here): \(value.brief) does not match the pattern \(pattern)")
      }
    case .integer, .number:
      let number = value.number ?? 0
      if let least = keywords["minimum"]?.number, number < least {
        problems.append("\(here): \(value.brief) is below the minimum \(JSONValue.format(least))")
      }
      if let most = keywords["maximum"]?.number, number > most {
        problems.append("\(here): \(value.brief) is above the maximum \(JSONValue.format(most))")
      }
      if let bound = keywords["exclusiveMinimum"]?.number, number <= bound {
        problems.append("\(here): \(value.brief) must be above \(JSONValue.format(bound))")
      }
      if let bound = keywords["exclusiveMaximum"]?.number, number >= bound {
        problems.append("\(here): \(value.brief) must be below \(JSONValue.format(bound))")
      }
    case .array(let elements):
      if let least = keywords["minItems"]?.number, Double(elements.count) < least {
        problems.append("\(here): must have at least \(Int(least)) items")
      }
      if let most = keywords["maxItems"]?.number, Double(elements.count) > most {
        problems.append("\(here): must have at most \(Int(most)) items")
      }
      if let items = keywords["items"] {
        for (index, element) in elements.enumerated() {
          validate(element, against: items, at: "\(path)/\(index)", into: &problems)
        }
      }
    case .object(let members):
      if case .array(let required)? = keywords["required"] {
        for case .string(let name) in required where members[name] == nil {
          problems.append("\(path)/\(name): is required")
        }
      }
      let properties: [String: JSONValue]
      if case .object(let declared)? = keywords["properties"] { properties = declared } else { properties = [:] }
      for (name, member) in members.sorted(by: { $0.key < $1.key }) {
        if let property = properties[name] {
          validate(member, against: property, at: "\(path)/\(name)", into: &problems)
        } else if let extra = keywords["additionalProperties"] {
          if case .bool(false) = extra {
            let known = properties.keys.sorted().joined(separator: ", ")
            problems.append("\(path)/\(name): is not an argument of this tool (it takes: \(known))")
          } else {
            validate(member, against: extra, at: "\(path)/\(name)", into: &problems)
          }
        }
      }
    case .bool, .null:
      break
    }
    if case .array(let all)? = keywords["allOf"] {
      for nested in all { validate(value, against: nested, at: path, into: &problems) }
    }
    if case .array(let any)? = keywords["anyOf"] {
      let passing = any.filter { nested in
        var nestedProblems: [String] = []
        validate(value, against: nested, at: path, into: &nestedProblems)
        return nestedProblems.isEmpty
      }
      if passing.isEmpty { problems.append("\(here): matches none of the allowed shapes (anyOf)") }
    }
    if case .array(let one)? = keywords["oneOf"] {
      let passing = one.filter { nested in
        var nestedProblems: [String] = []
        validate(value, against: nested, at: path, into: &nestedProblems)
        return nestedProblems.isEmpty
      }
      if passing.count != 1 {
        problems.append("\(here): must match exactly one allowed shape (oneOf), matches \(passing.count)")
      }
    }
    if let not = keywords["not"] {
      var nestedProblems: [String] = []
      validate(value, against: not, at: path, into: &nestedProblems)
      if nestedProblems.isEmpty { problems.append("\(here): matches a shape that is not allowed (not)") }
    }
  }

  private static func article(_ type: String) -> String {
    ["integer", "object", "array"].contains(type) ? "an \(type)" : "a \(type)"
  }
}

extension JSONValue {
  fileprivate func isA(_ type: String) -> Bool {
    switch (type, self) {
    case ("object", .object), ("array", .array), ("string", .string), ("boolean", .bool), ("null", .null),
      ("integer", .integer), ("number", .integer), ("number", .number):
      return true
    case ("integer", .number(let value)):
      return value.rounded() == value
    default:
      return false
    }
  }

  fileprivate var typeName: String {
    switch self {
    case .null: "null"
    case .bool: "a boolean"
    case .integer, .number: "a number"
    case .string: "a string"
    case .array: "an array"
    case .object: "an object"
    }
  }

  fileprivate var number: Double? {
    switch self {
    case .integer(let value): Double(value)
    case .number(let value): value
    default: nil
    }
  }

  /// Equal as JSON values (1 and 1.0 are the same number).
  fileprivate func sameValue(as other: JSONValue) -> Bool {
    if let left = number, let right = other.number { return left == right }
    return self == other
  }

  fileprivate static func format(_ number: Double) -> String {
    number.rounded() == number && abs(number) < 1e15 ? String(Int64(number)) : String(number)
  }

  /// The value in a few characters, for messages.
  fileprivate var brief: String {
    switch self {
    case .null: return "null"
    case .bool(let value): return String(value)
    case .integer(let value): return String(value)
    case .number(let value): return Self.format(value)
    case .string(let text): return "\"\(text.count > 40 ? text.prefix(40) + "…" : text)\""
    case .array(let elements): return "a list of \(elements.count)"
    case .object: return "an object"
    }
  }
}
