import InspectKit
import Testing

@Suite("JSON Schema: the subset tool arguments use")
struct JSONSchemaTests {
  static let schema = try! JSONSchema(
    """
    {"type":"object","additionalProperties":false,"required":["path","mode"],
     "properties":{
       "path":{"type":"string","minLength":1,"pattern":"^[^/]"},
       "mode":{"enum":["read","write"]},
       "count":{"type":"integer","minimum":1,"maximum":10},
       "ratio":{"type":"number","exclusiveMaximum":1},
       "tags":{"type":"array","items":{"type":"string"},"maxItems":2},
       "either":{"anyOf":[{"type":"string"},{"type":"boolean"}]}
     }}
    """)

  func problems(_ json: String) throws -> [String] {
    Self.schema.problems(in: try JSONValue.parse(json))
  }

  @Test("a conforming value has no problems; 3.0 counts as an integer")
  func conforming() throws {
    #expect(try problems(#"{"path":"a.py","mode":"read","count":3.0,"ratio":0.5,"tags":["x"],"either":true}"#) == [])
  }

  @Test("each violated keyword is named with its JSON pointer")
  func violations() throws {
    #expect(try problems(#"{"mode":"read"}"#) == ["/path: is required"])
    #expect(try problems(#"{"path":3,"mode":"read"}"#) == ["/path: expected a string, got a number"])
    #expect(
      try problems(#"{"path":"","mode":"read"}"#) == [
        "/path: must be at least 1 characters long", #"/path: "" does not match the pattern ^[^/]"#,
      ])
    #expect(try problems(#"{"path":"/etc","mode":"read"}"#) == [#"/path: "/etc" does not match the pattern ^[^/]"#])
    #expect(try problems(#"{"path":"a","mode":"delete"}"#) == [#"/mode: "delete" is not one of "read", "write""#])
    #expect(try problems(#"{"path":"a","mode":"read","count":11}"#) == ["/count: 11 is above the maximum 10"])
    #expect(try problems(#"{"path":"a","mode":"read","count":1.5}"#) == ["/count: expected an integer, got a number"])
    #expect(try problems(#"{"path":"a","mode":"read","ratio":1}"#) == ["/ratio: 1 must be below 1"])
    #expect(
      try problems(#"{"path":"a","mode":"read","tags":["x",2,"z"]}"#).sorted() == [
        "/tags/1: expected a string, got a number", "/tags: must have at most 2 items",
      ])
    #expect(
      try problems(#"{"path":"a","mode":"read","either":3}"#) == ["/either: matches none of the allowed shapes (anyOf)"]
    )
    #expect(
      try problems(#"{"path":"a","mode":"read","verbose":true}"#).first?.hasPrefix("/verbose: is not an argument")
        == true)
    #expect(try problems(#"[1]"#) == ["/: expected an object, got an array"])
  }

  @Test("a schema that is not JSON, not an object, or has a malformed keyword is refused")
  func invalidSchemas() {
    #expect(throws: JSONSchema.Invalid.self) { try JSONSchema("{") }
    #expect(throws: JSONSchema.Invalid.self) { try JSONSchema("[]") }
    #expect(throws: JSONSchema.Invalid.self) { try JSONSchema(#"{"required":"path"}"#) }
    #expect(throws: JSONSchema.Invalid.self) { try JSONSchema(#"{"pattern":"("}"#) }
    #expect(throws: JSONSchema.Invalid.self) { try JSONSchema(#"{"properties":{"a":3}}"#) }
  }
}
