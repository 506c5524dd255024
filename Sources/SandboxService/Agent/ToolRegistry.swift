import Foundation
import InspectKit
import InspectProtos

/// The tools of a turn, by name, each with its compiled argument schema. Built-in tools,
/// integrations and MCP servers' tools all register here; the model is offered ``protos`` and
/// every call's arguments are checked by ``arguments(of:for:)`` before anything runs.
struct ToolRegistry: Sendable {
  private(set) var tools: [Tool] = []
  private var schemas: [String: JSONSchema] = [:]

  /// Registers `tools`; throws naming the tool whose schema is not a valid JSON Schema or whose
  /// name is taken.
  init(_ tools: [Tool]) throws {
    for tool in tools { try register(tool) }
  }

  mutating func register(_ tool: Tool) throws {
    guard schemas[tool.name] == nil else { throw ToolFailure("two tools are named \(tool.name)") }
    // The providers' rule for function names (OpenAI and Anthropic alike).
    guard tool.name.range(of: #"^[a-zA-Z0-9_-]{1,64}$"#, options: .regularExpression) != nil else {
      throw ToolFailure("'\(tool.name)' is not a valid tool name (letters, digits, _ and -; at most 64)")
    }
    do {
      schemas[tool.name] = try JSONSchema(tool.schema)
    } catch {
      throw ToolFailure("the argument schema of tool \(tool.name) is not valid: \(error)")
    }
    tools.append(tool)
  }

  func tool(named name: String) -> Tool? { tools.first { $0.name == name } }

  /// What the model is offered.
  var protos: [Inspect_Model_V1_Tool] { tools.map(\.proto) }

  /// The arguments of a call to `tool`, parsed and checked against its schema; the failure says
  /// what is wrong in words the model can act on.
  func arguments(of tool: Tool, for json: String) -> Result<JSONValue, ToolFailure> {
    let text = json.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? "{}" : json
    guard let value = try? JSONValue.parse(text) else {
      return .failure(ToolFailure("\(tool.name): the arguments are not valid JSON: \(text.prefix(200))"))
    }
    let problems = schemas[tool.name]?.problems(in: value) ?? []
    guard problems.isEmpty else {
      return .failure(
        ToolFailure(
          "\(tool.name): the arguments do not match the tool's schema: " + problems.joined(separator: "; ")
            + ". Schema: \(tool.schema)"))
    }
    return .success(value)
  }
}
