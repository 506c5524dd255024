import Foundation
import InspectKit
import InspectProtos

/// The body of `POST <base>/v1/messages`, mapped from a `GenerateRequest`
/// (`../shared/docs/PROTOCOLS.md`, "Model providers"): system messages become `system`, tool
/// calls `tool_use` blocks, tool results `tool_result` blocks in a user message, and messages of
/// the same role in a row are merged (the API wants user and assistant to alternate). Always
/// streamed.
struct AnthropicRequest: Encodable {
  /// `max_tokens` is required by the API; this is sent when the request sets no limit.
  static let defaultMaxTokens: UInt32 = 8192

  var model: String
  var maxTokens: UInt32
  var system: String?
  var messages: [Message]
  var tools: [Tool]?
  var toolChoice: ToolChoice?
  var stream = true
  var temperature: Double?
  var topP: Double?
  var stopSequences: [String]?

  enum CodingKeys: String, CodingKey {
    case model, system, messages, tools, stream, temperature
    case maxTokens = "max_tokens"
    case toolChoice = "tool_choice"
    case topP = "top_p"
    case stopSequences = "stop_sequences"
  }

  struct Message: Encodable {
    var role: String
    var content: [Block]
  }

  /// A content block: text, an image, a tool call the assistant made, or a tool's result.
  struct Block: Encodable {
    var type: String
    var text: String?
    var source: ImageSource?
    var id: String?
    var name: String?
    var input: JSONValue?
    var toolUseID: String?
    var content: String?
    var isError: Bool?

    enum CodingKeys: String, CodingKey {
      case type, text, source, id, name, input, content
      case toolUseID = "tool_use_id"
      case isError = "is_error"
    }
  }

  struct ImageSource: Encodable {
    var type = "base64"
    var mediaType: String
    var data: String

    enum CodingKeys: String, CodingKey {
      case type, data
      case mediaType = "media_type"
    }
  }

  struct Tool: Encodable {
    var name: String
    var description: String?
    var inputSchema: JSONValue

    enum CodingKeys: String, CodingKey {
      case name, description
      case inputSchema = "input_schema"
    }
  }

  struct ToolChoice: Encodable {
    var type: String
  }

  // MARK: - Mapping

  /// Maps `request` for `model`; throws INVALID_ARGUMENT (`invalid_request`) for messages without
  /// a role, TOOL messages without results, tool arguments or schemas that are not JSON objects.
  init(_ request: Inspect_Model_V1_GenerateRequest, model: String) throws {
    self.model = model
    let limits = request.limits
    maxTokens = limits.maxOutputTokens > 0 ? limits.maxOutputTokens : Self.defaultMaxTokens
    var systemTexts: [String] = []
    var messages: [Message] = []
    for (offset, message) in request.messages.enumerated() {
      let number = offset + 1
      let (role, blocks): (String, [Block])
      switch message.role {
      case .system:
        systemTexts.append(message.text)
        continue
      case .user:
        var content: [Block] = []
        if !message.text.isEmpty { content.append(Block(type: "text", text: message.text)) }
        for image in message.images {
          content.append(
            Block(
              type: "image", source: ImageSource(mediaType: image.mediaType, data: image.data.base64EncodedString())))
        }
        (role, blocks) = ("user", content)
      case .assistant:
        var content: [Block] = []
        if !message.text.isEmpty { content.append(Block(type: "text", text: message.text)) }
        for call in message.toolCalls {
          let arguments = call.argumentsJson.trimmingCharacters(in: .whitespacesAndNewlines)
          guard let input = try? JSONValue.parse(arguments.isEmpty ? "{}" : arguments), case .object = input else {
            throw ModelError.invalidRequest(
              "message \(number): the arguments of tool call \(call.id) are not a JSON object")
          }
          content.append(Block(type: "tool_use", id: call.id, name: call.name, input: input))
        }
        (role, blocks) = ("assistant", content)
      case .tool:
        guard !message.toolResults.isEmpty else {
          throw ModelError.invalidRequest("message \(number) has role TOOL but no tool_results")
        }
        (role, blocks) = (
          "user",
          message.toolResults.map {
            Block(type: "tool_result", toolUseID: $0.toolCallID, content: $0.content, isError: $0.isError ? true : nil)
          }
        )
      case .unspecified, .UNRECOGNIZED:
        throw ModelError.invalidRequest("message \(number) has no role; use SYSTEM, USER, ASSISTANT or TOOL")
      }
      guard !blocks.isEmpty else { continue }
      if messages.last?.role == role {
        messages[messages.count - 1].content += blocks
      } else {
        messages.append(Message(role: role, content: blocks))
      }
    }
    self.messages = messages
    system = systemTexts.isEmpty ? nil : systemTexts.joined(separator: "\n\n")
    if !request.tools.isEmpty {
      tools = try request.tools.map { tool in
        let schema = try OpenAIChatRequest.map(tool).function.parameters
        return Tool(
          name: tool.name, description: tool.description_p.isEmpty ? nil : tool.description_p, inputSchema: schema)
      }
      toolChoice =
        switch limits.toolChoice {
        case .auto: ToolChoice(type: "auto")
        case .none: ToolChoice(type: "none")
        case .required: ToolChoice(type: "any")
        case .unspecified, .UNRECOGNIZED: nil
        }
    }
    if limits.hasTemperature { temperature = limits.temperature }
    if limits.hasTopP { topP = limits.topP }
    if !limits.stopSequences.isEmpty { stopSequences = limits.stopSequences }
  }

  /// The JSON body.
  func encoded() throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return try encoder.encode(self)
  }
}
