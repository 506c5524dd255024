import AsyncHTTPClient
import Foundation
import InspectKit
import InspectProtos
import NIOCore
import NIOHTTP1

/// Anthropic Messages over SSE (`../shared/docs/PROTOCOLS.md`, "Model providers"): text and
/// `tool_use` blocks become the one `Generate` stream shape, `input_json_delta` fragments are
/// passed on as argument fragments, usage is cumulative (input at `message_start`, output at
/// `message_delta`), `ping` and unknown events are skipped, and an `error` event mid-stream (529
/// `overloaded_error` after a 200) fails the call with its type (retries: ``ModelRetryPolicy``).
struct AnthropicProvider: ModelProvider {
  let name = "anthropic"
  let settings: AnthropicSettings
  let http: ProviderHTTPClient

  func models() -> [Inspect_Model_V1_ModelInfo] {
    [
      .with {
        $0.id = id(of: settings.defaultModel)
        $0.provider = name
        $0.displayName = "\(settings.defaultModel) at \(settings.baseURL)"
        $0.capabilities = [.tools, .streaming]
      }
    ]
  }

  func generate(_ request: Inspect_Model_V1_GenerateRequest, model: String, into sink: GenerateSink) async throws {
    let body = try AnthropicRequest(request, model: model).encoded()
    let stream = try await http.postEventStream(
      settings.messagesURL,
      headers: [("anthropic-version", AnthropicSettings.apiVersion)]
        + (settings.apiKey.map { [("x-api-key", $0)] } ?? []),
      body: body,
      unreachable: "cannot reach Anthropic at \(settings.baseURL) (check ANTHROPIC_BASE_URL and the network)"
    ) { status, text in
      let detail = try? JSONDecoder().decode(AnthropicErrorBody.self, from: Data(text.utf8)).error
      return classify(status: status, detail: detail, body: text, model: model)
    }
    try await self.stream(stream, model: model, into: sink)
  }

  private func stream(_ body: HTTPClientResponse.Body, model: String, into sink: GenerateSink) async throws {
    var translator = AnthropicStreamTranslator()
    _ = try await body.forEachEvent(from: settings.baseURL) { event in
      let object: AnthropicEvent
      do {
        object = try JSONDecoder().decode(AnthropicEvent.self, from: Data(event.data.utf8))
      } catch {
        throw ModelError.unavailable(
          "Anthropic at \(settings.baseURL) sent an event that is not JSON: " + ModelError.quote(event.data))
      }
      if object.type == "error" || event.event == "error" {
        throw classify(status: nil, detail: object.error, body: event.data, model: model)
      }
      for message in try translator.accept(object) { try await sink.write(message) }
      return !translator.stopped
    }
    guard translator.stopped else {
      throw ModelError.unavailable(
        "the stream from \(settings.baseURL) ended before the model finished (no message_stop)")
    }
    for message in translator.finish(model: id(of: model), provider: name) { try await sink.write(message) }
  }

  /// Maps a failed request (`status`) or an `error` event mid-stream (`status` nil) to its type.
  func classify(status: Int?, detail: AnthropicErrorDetail?, body: String, model: String) -> ModelError {
    let said = detail?.message ?? (body.isEmpty ? "no details" : ModelError.quote(body))
    let type = detail?.type ?? ""
    let what = status.map { "HTTP \($0)" } ?? "an error event mid-stream"
    let at = "Anthropic at \(settings.baseURL)"
    if said.lowercased().contains("prompt is too long") {
      return .contextTooLong("\(model): the conversation is longer than the model's context window (\(what): \(said))")
    }
    switch (status, type) {
    case (401?, _), (403?, _), (_, "authentication_error"), (_, "permission_error"):
      return .authentication("\(at) rejected the credentials (\(what): \(said)); check ANTHROPIC_API_KEY")
    case (429?, _), (_, "rate_limit_error"):
      return .rateLimited("\(at) is rate limiting requests (\(what): \(said)); try again later")
    case (529?, _), (_, "overloaded_error"):
      return .overloaded("\(at) is overloaded (\(what): \(said)); try again later")
    case (404?, _), (_, "not_found_error"):
      return .noProvider("\(at) does not serve model '\(model)' (\(what): \(said)); check the model name")
    case (413?, _), (_, "request_too_large"):
      return .contextTooLong("\(model): the request is too large (\(what): \(said))")
    case (let code?, _) where (400..<500).contains(code):
      return .invalidRequest("\(at) rejected the request for \(model) (\(what): \(said))")
    case (_, "invalid_request_error"):
      return .invalidRequest("\(at) rejected the request for \(model) (\(what): \(said))")
    default:
      return .unavailable("\(at) failed (\(what): \(said)); try again later")
    }
  }
}

/// Where and how to reach Anthropic's Messages API.
struct AnthropicSettings: Sendable {
  static let defaultBaseURL = "https://api.anthropic.com"
  static let fallbackModel = "claude-sonnet-4-5"
  static let apiVersion = "2023-06-01"

  /// Without `/v1`; requests go to `<baseURL>/v1/messages`.
  var baseURL: String
  var apiKey: String?
  var defaultModel: String

  init(baseURL: String, apiKey: String?, defaultModel: String = fallbackModel, source: String = "baseURL") throws {
    var trimmed = baseURL
    while trimmed.hasSuffix("/") { trimmed.removeLast() }
    if trimmed.hasSuffix("/v1") { trimmed.removeLast(3) }
    guard let url = URL(string: trimmed), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
      url.host != nil
    else {
      throw ConfigurationError("\(source)=\(baseURL) is not an http(s) URL; use e.g. https://api.anthropic.com")
    }
    self.baseURL = trimmed
    self.apiKey = apiKey
    self.defaultModel = defaultModel
  }

  var messagesURL: String { "\(baseURL)/v1/messages" }
}

// MARK: - Wire types

/// One event of the stream; only the fields Inspect uses.
struct AnthropicEvent: Decodable {
  var type: String
  var index: Int?
  var message: MessageStart?
  var contentBlock: ContentBlock?
  var delta: Delta?
  var usage: Usage?
  var error: AnthropicErrorDetail?

  enum CodingKeys: String, CodingKey {
    case type, index, message, delta, usage, error
    case contentBlock = "content_block"
  }

  struct MessageStart: Decodable {
    var usage: Usage?
  }

  struct ContentBlock: Decodable {
    var type: String
    var text: String?
    var id: String?
    var name: String?
  }

  struct Delta: Decodable {
    var type: String?
    var text: String?
    var partialJSON: String?
    var stopReason: String?

    enum CodingKeys: String, CodingKey {
      case type, text
      case partialJSON = "partial_json"
      case stopReason = "stop_reason"
    }
  }

  struct Usage: Decodable {
    var inputTokens: Int?
    var outputTokens: Int?
    var cacheReadInputTokens: Int?

    enum CodingKeys: String, CodingKey {
      case inputTokens = "input_tokens"
      case outputTokens = "output_tokens"
      case cacheReadInputTokens = "cache_read_input_tokens"
    }
  }
}

struct AnthropicErrorBody: Decodable {
  var error: AnthropicErrorDetail?
}

struct AnthropicErrorDetail: Decodable {
  var type: String?
  var message: String?
}

/// Turns Anthropic's events into `Generate` responses. Tool calls are numbered in the order their
/// `tool_use` blocks start (the stream's block index counts text blocks too).
struct AnthropicStreamTranslator {
  private var toolIndex: [Int: Int] = [:]
  private var openTools: Set<Int> = []
  private var usage = (input: 0, output: 0, cached: 0)
  private(set) var stopReason: String?
  private(set) var stopped = false

  mutating func accept(_ event: AnthropicEvent) throws -> [Inspect_Model_V1_GenerateResponse] {
    switch event.type {
    case "message_start":
      if let start = event.message?.usage {
        usage.input = start.inputTokens ?? usage.input
        usage.output = start.outputTokens ?? usage.output
        usage.cached = start.cacheReadInputTokens ?? usage.cached
      }
      return []
    case "content_block_start":
      guard let block = event.contentBlock, let index = event.index else { return [] }
      if block.type == "tool_use" {
        let number = toolIndex.count
        toolIndex[index] = number
        openTools.insert(index)
        return [
          .with {
            $0.toolCallStart = .with {
              $0.index = UInt32(number)
              $0.id = block.id ?? "toolu_\(number)"
              $0.name = block.name ?? ""
            }
          }
        ]
      }
      if let text = block.text, !text.isEmpty { return [.with { $0.textDelta.text = text }] }
      return []
    case "content_block_delta":
      guard let delta = event.delta else { return [] }
      if let text = delta.text, !text.isEmpty { return [.with { $0.textDelta.text = text }] }
      if let fragment = delta.partialJSON, !fragment.isEmpty, let index = event.index, let number = toolIndex[index] {
        return [
          .with {
            $0.toolCallArgumentsDelta = .with {
              $0.index = UInt32(number)
              $0.fragment = fragment
            }
          }
        ]
      }
      return []
    case "content_block_stop":
      guard let index = event.index, openTools.remove(index) != nil, let number = toolIndex[index] else { return [] }
      return [.with { $0.toolCallEnd.index = UInt32(number) }]
    case "message_delta":
      if let reason = event.delta?.stopReason { stopReason = reason }
      if let output = event.usage?.outputTokens { usage.output = output }
      if let input = event.usage?.inputTokens { usage.input = input }
      return []
    case "message_stop":
      stopped = true
      return []
    default:
      // `ping` and event types added later.
      return []
    }
  }

  /// Ends calls left open, then usage and finish.
  mutating func finish(model: String, provider: String) -> [Inspect_Model_V1_GenerateResponse] {
    var out: [Inspect_Model_V1_GenerateResponse] = openTools.sorted().compactMap { index in
      toolIndex[index].map { number in .with { $0.toolCallEnd.index = UInt32(number) } }
    }
    openTools = []
    let usage = self.usage
    out.append(
      .with {
        $0.usage = .with {
          $0.inputTokens = UInt32(clamping: usage.input)
          $0.outputTokens = UInt32(clamping: usage.output)
          $0.cachedInputTokens = UInt32(clamping: usage.cached)
        }
      })
    let reason: Inspect_Model_V1_FinishReason =
      switch stopReason {
      case "tool_use": .toolCalls
      case "max_tokens": .length
      case "refusal": .refusal
      default: .stop
      }
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
}
