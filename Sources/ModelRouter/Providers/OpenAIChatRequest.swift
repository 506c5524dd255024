import Foundation
import InspectKit
import InspectProtos

/// The body of `POST <base>/chat/completions`, mapped from a `GenerateRequest`
/// (`../shared/docs/PROTOCOLS.md`, "Model providers"): streamed with usage in the last chunk,
/// unless `stream` is turned off (servers that cannot stream tool calls). Keys are spelled out (no snake-case strategy), because a tool's JSON Schema must pass
/// through unchanged.
struct OpenAIChatRequest: Encodable {
  var model: String
  var messages: [Message]
  var tools: [Tool]?
  var toolChoice: String?
  var stream = true {
    didSet { streamOptions = stream ? StreamOptions() : nil }
  }
  var streamOptions: StreamOptions? = StreamOptions()
  /// `max_tokens` rather than `max_completion_tokens`: every compatible server accepts it.
  var maxTokens: UInt32?
  var temperature: Double?
  var topP: Double?
  var stop: [String]?

  enum CodingKeys: String, CodingKey {
    case model, messages, tools, stream, temperature, stop
    case toolChoice = "tool_choice"
    case streamOptions = "stream_options"
    case maxTokens = "max_tokens"
    case topP = "top_p"
  }

  struct StreamOptions: Encodable {
    var includeUsage = true
    enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
  }

  struct Message: Encodable {
    var role: String
    var content: Content
    var toolCalls: [ToolCall]?
    var toolCallID: String?

    enum CodingKeys: String, CodingKey {
      case role, content
      case toolCalls = "tool_calls"
      case toolCallID = "tool_call_id"
    }
  }

  /// A message's content: plain text, or parts when it carries images.
  enum Content: Encodable {
    case text(String)
    case parts([Part])

    func encode(to encoder: any Encoder) throws {
      var container = encoder.singleValueContainer()
      switch self {
      case .text(let text): try container.encode(text)
      case .parts(let parts): try container.encode(parts)
      }
    }
  }

  struct Part: Encodable {
    var type: String
    var text: String?
    var imageURL: ImageURL?

    enum CodingKeys: String, CodingKey {
      case type, text
      case imageURL = "image_url"
    }
  }

  struct ImageURL: Encodable {
    var url: String
  }

  struct ToolCall: Encodable {
    var id: String
    var type = "function"
    var function: Function

    struct Function: Encodable {
      var name: String
      var arguments: String
    }
  }

  struct Tool: Encodable {
    var type = "function"
    var function: Function

    struct Function: Encodable {
      var name: String
      var description: String?
      var parameters: JSONValue
    }
  }

  // MARK: - Mapping

  /// Maps `request` for `model`; throws INVALID_ARGUMENT (`invalid_request`) for messages without
  /// a role, TOOL messages without results, and tool schemas that are not JSON objects.
  init(_ request: Inspect_Model_V1_GenerateRequest, model: String) throws {
    self.model = model
    messages = try request.messages.enumerated().flatMap { try Self.map($1, number: $0 + 1) }
    if !request.tools.isEmpty {
      tools = try request.tools.map(Self.map)
      toolChoice =
        switch request.limits.toolChoice {
        case .auto: "auto"
        case .none: "none"
        case .required: "required"
        case .unspecified, .UNRECOGNIZED: nil
        }
    }
    let limits = request.limits
    if limits.maxOutputTokens > 0 { maxTokens = limits.maxOutputTokens }
    if limits.hasTemperature { temperature = limits.temperature }
    if limits.hasTopP { topP = limits.topP }
    if !limits.stopSequences.isEmpty { stop = limits.stopSequences }
  }

  /// The JSON body.
  func encoded() throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return try encoder.encode(self)
  }

  static func map(_ message: Inspect_Model_V1_Message, number: Int) throws -> [Message] {
    switch message.role {
    case .system:
      return [Message(role: "system", content: .text(message.text))]
    case .user:
      guard !message.images.isEmpty else { return [Message(role: "user", content: .text(message.text))] }
      var parts: [Part] = []
      if !message.text.isEmpty { parts.append(Part(type: "text", text: message.text)) }
      for image in message.images {
        let url = "data:\(image.mediaType);base64,\(image.data.base64EncodedString())"
        parts.append(Part(type: "image_url", imageURL: ImageURL(url: url)))
      }
      return [Message(role: "user", content: .parts(parts))]
    case .assistant:
      // Some local servers reject `content: null`, so an assistant that only called tools sends "".
      let calls = message.toolCalls.map {
        ToolCall(
          id: $0.id, function: .init(name: $0.name, arguments: $0.argumentsJson.isEmpty ? "{}" : $0.argumentsJson))
      }
      return [Message(role: "assistant", content: .text(message.text), toolCalls: calls.isEmpty ? nil : calls)]
    case .tool:
      guard !message.toolResults.isEmpty else {
        throw ModelError.invalidRequest("message \(number) has role TOOL but no tool_results")
      }
      // Chat Completions has no error flag on tool results; the model reads it from the text.
      return message.toolResults.map {
        Message(
          role: "tool", content: .text($0.isError ? "Error: \($0.content)" : $0.content), toolCallID: $0.toolCallID)
      }
    case .unspecified, .UNRECOGNIZED:
      throw ModelError.invalidRequest("message \(number) has no role; use SYSTEM, USER, ASSISTANT or TOOL")
    }
  }

  static func map(_ tool: Inspect_Model_V1_Tool) throws -> Tool {
    let parameters: JSONValue
    if tool.jsonSchema.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
      parameters = .object(["type": .string("object"), "properties": .object([:])])
    } else {
      guard let schema = ToolSchemas.object(tool.jsonSchema) else {
        throw ModelError.invalidRequest("the json_schema of tool '\(tool.name)' is not a JSON object")
      }
      parameters = schema
    }
    return Tool(
      function: .init(
        name: tool.name, description: tool.description_p.isEmpty ? nil : tool.description_p, parameters: parameters))
  }
}
