import Foundation
import InspectProtos

/// One `data:` event of a streamed Chat Completion (`../shared/docs/PROTOCOLS.md`). Only the
/// fields ModelRouter uses are decoded; everything else is ignored.
struct OpenAIChatChunk: Decodable {
  var model: String?
  var choices: [Choice]?
  var usage: Usage?
  /// Some servers report a failure mid-stream as a chunk with an `error` object.
  var error: OpenAIErrorDetail?

  /// A non-streamed completion (`"object": "chat.completion"`) as one chunk: its message becomes
  /// the delta, and its tool calls (which carry no `index`) are numbered in order.
  func asOneChunk() -> OpenAIChatChunk {
    var chunk = self
    chunk.choices = choices?.map { choice in
      var choice = choice
      if choice.delta == nil, var message = choice.message {
        message.toolCalls = message.toolCalls?.enumerated().map { position, call in
          var call = call
          call.index = call.index ?? position
          return call
        }
        choice.delta = message
        choice.message = nil
      }
      return choice
    }
    return chunk
  }

  struct Choice: Decodable {
    var delta: Delta?
    /// A non-streamed completion's whole message (same shape as a delta).
    var message: Delta?
    var finishReason: String?
    enum CodingKeys: String, CodingKey {
      case delta, message
      case finishReason = "finish_reason"
    }
  }

  struct Delta: Decodable {
    var content: String?
    var refusal: String?
    var toolCalls: [ToolCallDelta]?
    enum CodingKeys: String, CodingKey {
      case content, refusal
      case toolCalls = "tool_calls"
    }
  }

  /// A piece of one tool call: `id` and the name come in its first piece, arguments in any.
  struct ToolCallDelta: Decodable {
    var index: Int?
    var id: String?
    var function: Function?
    struct Function: Decodable {
      var name: String?
      var arguments: String?
    }
  }

  struct Usage: Decodable {
    var promptTokens: Int?
    var completionTokens: Int?
    var promptTokensDetails: Details?
    struct Details: Decodable {
      var cachedTokens: Int?
      enum CodingKeys: String, CodingKey { case cachedTokens = "cached_tokens" }
    }
    enum CodingKeys: String, CodingKey {
      case promptTokens = "prompt_tokens"
      case completionTokens = "completion_tokens"
      case promptTokensDetails = "prompt_tokens_details"
    }
  }
}

/// `{"error": {message, type, code}}`, the body of a failed request.
struct OpenAIErrorBody: Decodable {
  var error: OpenAIErrorDetail?
}

/// The error object; `code` is a string at OpenAI but a number (or null) at some servers.
struct OpenAIErrorDetail: Decodable {
  var message: String?
  var type: String?
  var code: String?

  enum CodingKeys: String, CodingKey { case message, type, code }

  init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    message = try? container.decodeIfPresent(String.self, forKey: .message)
    type = try? container.decodeIfPresent(String.self, forKey: .type)
    if let text = try? container.decodeIfPresent(String.self, forKey: .code) {
      code = text
    } else if let number = try? container.decodeIfPresent(Int.self, forKey: .code) {
      code = String(number)
    }
  }
}

/// Turns chunks into `GenerateResponse`s: text as it comes, each tool call's start when its name
/// is known and its argument fragments as they come; at the end, every tool call's end, then
/// usage, then finish. Pure state, so it is tested without a network.
struct OpenAIStreamTranslator {
  private struct PendingCall {
    var id: String?
    var name: String?
    var started = false
    var bufferedArguments = ""
  }

  private var calls: [Int: PendingCall] = [:]
  private var callOrder: [Int] = []
  private var lastIndex: Int?
  private var sawRefusal = false
  private(set) var finishReason: String?
  private var usage: OpenAIChatChunk.Usage?

  /// The responses one chunk produces, in order.
  mutating func accept(_ chunk: OpenAIChatChunk) -> [Inspect_Model_V1_GenerateResponse] {
    var out: [Inspect_Model_V1_GenerateResponse] = []
    if let usage = chunk.usage { self.usage = usage }
    for choice in chunk.choices?.prefix(1) ?? [] {
      if let text = choice.delta?.content, !text.isEmpty { out.append(.with { $0.textDelta.text = text }) }
      if let refusal = choice.delta?.refusal, !refusal.isEmpty {
        sawRefusal = true
        out.append(.with { $0.textDelta.text = refusal })
      }
      for piece in choice.delta?.toolCalls ?? [] { out += accept(piece) }
      if let reason = choice.finishReason { finishReason = reason }
    }
    return out
  }

  private mutating func accept(_ piece: OpenAIChatChunk.ToolCallDelta) -> [Inspect_Model_V1_GenerateResponse] {
    // A server that streams a single call may leave out `index`; it then continues the last one.
    let index = piece.index ?? lastIndex ?? 0
    lastIndex = index
    if calls[index] == nil {
      calls[index] = PendingCall()
      callOrder.append(index)
    }
    var call = calls[index]!
    defer { calls[index] = call }
    if let id = piece.id, !id.isEmpty, call.id == nil { call.id = id }
    if let name = piece.function?.name, !name.isEmpty, call.name == nil { call.name = name }
    let fragment = piece.function?.arguments ?? ""
    guard call.started || call.name != nil else {
      call.bufferedArguments += fragment
      return []
    }
    var out: [Inspect_Model_V1_GenerateResponse] = []
    if !call.started {
      call.started = true
      out.append(Self.start(index: index, call: call))
      if !call.bufferedArguments.isEmpty {
        out.append(Self.arguments(index: index, fragment: call.bufferedArguments))
        call.bufferedArguments = ""
      }
    }
    if !fragment.isEmpty { out.append(Self.arguments(index: index, fragment: fragment)) }
    return out
  }

  /// The closing responses: each tool call's end, usage (when the server sent it), finish.
  mutating func finish(model: String, provider: String) -> [Inspect_Model_V1_GenerateResponse] {
    var out: [Inspect_Model_V1_GenerateResponse] = []
    for index in callOrder {
      guard var call = calls[index] else { continue }
      if !call.started {
        // The name never came; still hand the call over rather than lose it silently.
        call.started = true
        out.append(Self.start(index: index, call: call))
        if !call.bufferedArguments.isEmpty {
          out.append(Self.arguments(index: index, fragment: call.bufferedArguments))
        }
      }
      out.append(.with { $0.toolCallEnd.index = UInt32(clamping: index) })
    }
    if let usage {
      out.append(
        .with {
          $0.usage = .with {
            $0.inputTokens = UInt32(clamping: usage.promptTokens ?? 0)
            $0.outputTokens = UInt32(clamping: usage.completionTokens ?? 0)
            $0.cachedInputTokens = UInt32(clamping: usage.promptTokensDetails?.cachedTokens ?? 0)
          }
        })
    }
    let reason = reason
    out.append(
      .with {
        $0.finish = .with {
          $0.reason = reason
          $0.model = model
          $0.provider = provider
        }
      })
    return out
  }

  /// `finish_reason` as a `FinishReason`; when the server gave none, what the stream showed.
  var reason: Inspect_Model_V1_FinishReason {
    switch finishReason {
    case "stop": sawRefusal ? .refusal : .stop
    case "length": .length
    case "tool_calls", "function_call": .toolCalls
    case "content_filter": .contentFilter
    default: callOrder.isEmpty ? (sawRefusal ? .refusal : .stop) : .toolCalls
    }
  }

  private static func start(index: Int, call: PendingCall) -> Inspect_Model_V1_GenerateResponse {
    .with {
      $0.toolCallStart = .with {
        $0.index = UInt32(clamping: index)
        $0.id = call.id ?? "call_\(index)"
        $0.name = call.name ?? ""
      }
    }
  }

  private static func arguments(index: Int, fragment: String) -> Inspect_Model_V1_GenerateResponse {
    .with {
      $0.toolCallArgumentsDelta = .with {
        $0.index = UInt32(clamping: index)
        $0.fragment = fragment
      }
    }
  }
}
