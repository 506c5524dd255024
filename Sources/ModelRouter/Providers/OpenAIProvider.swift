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
    let body = try OpenAIChatRequest(request, model: model).encoded()
    let stream = try await http.postEventStream(
      settings.chatCompletionsURL, headers: settings.apiKey.map { [("Authorization", "Bearer \($0)")] } ?? [],
      body: body,
      unreachable:
        "cannot reach the OpenAI-compatible provider at \(settings.baseURL) (check OPENAI_BASE_URL and that the server is running)"
    ) { status, text in
      let detail = try? JSONDecoder().decode(OpenAIErrorBody.self, from: Data(text.utf8)).error
      return classify(status: status, detail: detail, body: text, model: model)
    }
    try await self.stream(stream, model: model, into: sink)
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
