import AsyncHTTPClient
import Foundation
import InspectProtos
import NIOCore
import NIOHTTP1

/// OpenAI Chat Completions over SSE — also vLLM, Ollama, llama.cpp and any compatible server,
/// chosen by base URL (`../shared/docs/PROTOCOLS.md`, "Model providers"). A failure is typed
/// (`inspect-model-error`) with the wait the server asked for; `ModelRouterService` decides on
/// retries (``ModelRetryPolicy``).
struct OpenAIProvider: ModelProvider {
  let name = "openai"
  let settings: OpenAISettings
  let http: ProviderHTTPClient
  /// Models (the provider's names) asked without streaming when a request offers tools, for
  /// servers that cannot stream tool calls (`stream_tool_calls: false` in the routing file).
  var nonStreamingToolModels: Set<String> = []

  /// The largest non-streamed completion read.
  static let completionLimit = 16 << 20

  /// The default model only: the provider's own model list is not fetched (yet).
  func models() -> [Inspect_Model_V1_ModelInfo] {
    [info(for: settings.defaultModel)]
  }

  /// What ModelRouter knows about `model` without asking the provider.
  func info(for model: String) -> Inspect_Model_V1_ModelInfo {
    .with {
      $0.id = id(of: model)
      $0.provider = name
      $0.displayName = "\(model) at \(settings.baseURL)"
      $0.capabilities = [.tools, .streaming]
    }
  }

  func generate(_ request: Inspect_Model_V1_GenerateRequest, model: String, into sink: GenerateSink) async throws {
    var chat = try OpenAIChatRequest(request, model: model)
    chat.stream = request.tools.isEmpty || !nonStreamingToolModels.contains(model)
    let response = try await http.post(
      settings.chatCompletionsURL, headers: settings.apiKey.map { [("Authorization", "Bearer \($0)")] } ?? [],
      contentType: "application/json", accept: chat.stream ? "text/event-stream" : "application/json",
      body: try chat.encoded(),
      unreachable:
        "cannot reach the OpenAI-compatible provider at \(settings.baseURL) (check OPENAI_BASE_URL and that the server is running)"
    ) { status, text in
      let detail = try? JSONDecoder().decode(OpenAIErrorBody.self, from: Data(text.utf8)).error
      return classify(status: status, detail: detail, body: text, model: model)
    }
    // A server that ignores `stream: true` answers with one JSON completion; it is passed on the same way.
    let contentType = response.headers.first(name: "content-type")?.lowercased() ?? ""
    if !chat.stream || contentType.hasPrefix("application/json") {
      try await completion(response, model: model, into: sink)
    } else {
      try await stream(response.body, model: model, into: sink)
    }
  }

  // MARK: - Without streaming

  /// A whole `chat.completion`, passed on as the same events a stream gives.
  private func completion(_ response: HTTPClientResponse, model: String, into sink: GenerateSink) async throws {
    let data = try await ProviderHTTPClient.collect(response, upTo: Self.completionLimit, from: settings.baseURL)
    let completion: OpenAIChatChunk
    do {
      completion = try JSONDecoder().decode(OpenAIChatChunk.self, from: data)
    } catch {
      throw ModelError.unavailable(
        "the provider at \(settings.baseURL) sent a body that is not a chat completion: "
          + ModelError.quote(String(decoding: data, as: UTF8.self)))
    }
    if let detail = completion.error {
      throw classify(status: nil, detail: detail, body: String(decoding: data, as: UTF8.self), model: model)
    }
    var translator = OpenAIStreamTranslator()
    for message in translator.accept(completion.asOneChunk()) { try await sink.write(message) }
    guard translator.finishReason != nil else {
      throw ModelError.unavailable("the completion from \(settings.baseURL) has no finish_reason")
    }
    for message in translator.finish(model: id(of: model), provider: name) { try await sink.write(message) }
  }

  // MARK: - Streaming

  private func stream(_ body: HTTPClientResponse.Body, model: String, into sink: GenerateSink) async throws {
    var translator = OpenAIStreamTranslator()
    let ended = try await body.forEachEvent(from: settings.baseURL) { event in
      if event.data == "[DONE]" { return false }
      let chunk: OpenAIChatChunk
      do {
        chunk = try JSONDecoder().decode(OpenAIChatChunk.self, from: Data(event.data.utf8))
      } catch {
        throw ModelError.unavailable(
          "the provider at \(settings.baseURL) sent an event that is not a chat completion chunk: "
            + ModelError.quote(event.data))
      }
      if let detail = chunk.error { throw classify(status: nil, detail: detail, body: event.data, model: model) }
      for message in translator.accept(chunk) { try await sink.write(message) }
      return true
    }
    guard ended || translator.finishReason != nil else {
      throw ModelError.unavailable(
        "the stream from \(settings.baseURL) ended before the model finished (no finish_reason, no [DONE])")
    }
    for message in translator.finish(model: id(of: model), provider: name) { try await sink.write(message) }
  }

  // MARK: - Errors

  /// Maps a failed request (`status`) or an error event mid-stream (`status` nil) to its type.
  func classify(status: Int?, detail: OpenAIErrorDetail?, body: String, model: String) -> ModelError {
    let said = detail?.message ?? (body.isEmpty ? "no details" : ModelError.quote(body))
    let code = detail?.code ?? ""
    let type = detail?.type ?? ""
    let what = status.map { "HTTP \($0)" } ?? "an error event mid-stream"
    let at = "the OpenAI-compatible provider at \(settings.baseURL)"
    let lowered = said.lowercased()
    if code == "context_length_exceeded" || lowered.contains("context length") || lowered.contains("maximum context") {
      return .contextTooLong("\(model): the conversation is longer than the model's context window (\(what): \(said))")
    }
    switch status {
    case 401?, 403?:
      return .authentication("\(at) rejected the credentials (\(what): \(said)); check OPENAI_API_KEY")
    case 429?:
      if code == "insufficient_quota" {
        return .rateLimited(
          "\(at) says the account's quota is used up (\(what): \(said)); check its plan and billing", retryable: false)
      }
      return .rateLimited("\(at) is rate limiting requests (\(what): \(said)); try again later")
    case 404?:
      return .noProvider("\(at) does not serve model '\(model)' (\(what): \(said)); check the model name")
    case 408?, 409?:
      return .unavailable("\(at) could not answer (\(what): \(said)); try again")
    case 529?:
      return .overloaded("\(at) is overloaded (\(what): \(said)); try again later")
    case let status? where (400..<500).contains(status):
      return .invalidRequest("\(at) rejected the request for \(model) (\(what): \(said))")
    case let status? where status >= 500:
      return .unavailable("\(at) failed (\(what): \(said)); try again later")
    default:
      if code == "rate_limit_exceeded" || type == "rate_limit_error" || type == "tokens" || type == "requests" {
        return .rateLimited("\(at) is rate limiting requests (\(what): \(said)); try again later")
      }
      if type == "overloaded_error" { return .overloaded("\(at) is overloaded (\(what): \(said)); try again later") }
      return .unavailable("\(at) failed (\(what): \(said))")
    }
  }
}
