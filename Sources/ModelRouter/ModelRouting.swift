import GRPCCore
import InspectProtos

/// Picks the provider and model for a request. An explicit model wins: `scripted:<name>` replays
/// a transcript, `openai:<model>` goes to the OpenAI-compatible provider, `anthropic:<model>` to
/// Anthropic, and any other name (e.g. `gpt-4.1-mini`, Ollama's `qwen2.5-coder:7b`) to the
/// OpenAI-compatible provider when it is configured. An empty model takes
/// `INSPECT_DEFAULT_MODEL`, else the OpenAI provider's default model, else Anthropic's; with none
/// the call fails FAILED_PRECONDITION (`no_provider`) saying how to configure one.
struct ModelRouting: Sendable {
  /// Where a request goes.
  struct Route {
    var provider: any ModelProvider
    /// The provider's own name for the model.
    var model: String
    /// `<provider>:<model>`.
    var id: String { provider.id(of: model) }
  }

  let scripted: ScriptedProvider
  let openAI: OpenAIProvider?
  var anthropic: AnthropicProvider? = nil
  let defaultModel: String?
  /// The routing file's rules, prices and fallback chains (empty without one).
  var table = RouteTable()
  /// Admission and circuit breaker per provider name; providers without one (scripted) are not
  /// limited. Transcription has its own (``transcriptionGate``).
  var gates: [String: ProviderGate] = [:]

  /// The gate of `Transcribe` calls.
  static let transcriptionGate = "openai-transcription"

  var providers: [any ModelProvider] {
    [scripted] + (openAI.map { [$0] } ?? []) + (anthropic.map { [$0] } ?? [])
  }

  /// The routes to try for `request`, in order: the model it names — else its client's, its
  /// task's or the default model of the routing file, else the configured default — then that
  /// model's fallback chain (models whose provider is not configured are left out).
  func chain(for request: Inspect_Model_V1_GenerateRequest) throws -> [Route] {
    let requested = request.model.trimmingCharacters(in: .whitespaces)
    let primary: Route
    if !requested.isEmpty {
      primary = try route(requested)
    } else if let ruled = table.model(client: request.client, task: request.task) {
      primary = try route(ruled)
    } else {
      primary = try route("")
    }
    var chain = [primary]
    for id in table.fallbacks[primary.id] ?? [] {
      guard let next = try? route(id), !chain.contains(where: { $0.id == next.id }) else { continue }
      chain.append(next)
    }
    return chain
  }

  /// The route for `requested` (empty: the default).
  func route(_ requested: String) throws -> Route {
    let model = requested.trimmingCharacters(in: .whitespaces)
    if !model.isEmpty { return try route(explicit: model) }
    if let defaultModel { return try route(explicit: defaultModel) }
    if let openAI { return Route(provider: openAI, model: openAI.settings.defaultModel) }
    if let anthropic { return Route(provider: anthropic, model: anthropic.settings.defaultModel) }
    throw ModelError.noProvider(notConfigured("the request names no model"), code: .failedPrecondition)
  }

  /// The provider and model that transcribe audio: the model the request names, else the routing
  /// file's `transcribe` task, else the OpenAI-compatible provider's transcription model
  /// (`OPENAI_TRANSCRIBE_MODEL`). Only OpenAI-compatible providers transcribe.
  func transcriber(_ requested: String) throws -> (OpenAIProvider, model: String) {
    let named = requested.trimmingCharacters(in: .whitespaces)
    let chosen = named.isEmpty ? table.tasks["transcribe"] : named
    guard let chosen else {
      guard let openAI else {
        throw ModelError.noProvider(
          "no provider can transcribe audio: set OPENAI_API_KEY or OPENAI_BASE_URL (a server with "
            + "/v1/audio/transcriptions, such as OpenAI, vLLM or whisper.cpp's server)", code: .failedPrecondition)
      }
      return (openAI, openAI.settings.transcriptionModel)
    }
    let route = try route(explicit: chosen)
    guard let openAI = route.provider as? OpenAIProvider else {
      throw ModelError.noProvider(
        "model \(route.id) cannot transcribe audio: only OpenAI-compatible providers offer /audio/transcriptions",
        code: .failedPrecondition)
    }
    return (openAI, route.model)
  }

  private func route(explicit model: String) throws -> Route {
    let prefix = model.firstIndex(of: ":").map { String(model[..<$0]) }
    let rest = model.firstIndex(of: ":").map { String(model[model.index(after: $0)...]) } ?? model
    switch prefix {
    case scripted.name?:
      return Route(provider: scripted, model: rest)
    case "openai"?:
      guard let openAI else {
        throw ModelError.noProvider(
          notConfigured("model \(model) needs the OpenAI provider"), code: .failedPrecondition)
      }
      guard !rest.isEmpty else { throw ModelError.invalidRequest("model '\(model)' names no model after 'openai:'") }
      return Route(provider: openAI, model: rest)
    case "anthropic"?:
      guard let anthropic else {
        throw ModelError.noProvider(
          "model \(model) needs the Anthropic provider: set ANTHROPIC_API_KEY (and ANTHROPIC_BASE_URL for another "
            + "endpoint)", code: .failedPrecondition)
      }
      guard !rest.isEmpty else {
        throw ModelError.invalidRequest("model '\(model)' names no model after 'anthropic:'")
      }
      return Route(provider: anthropic, model: rest)
    default:
      guard let openAI else {
        throw ModelError.noProvider(
          notConfigured("model \(model) is not a scripted: or openai: model"), code: .failedPrecondition)
      }
      return Route(provider: openAI, model: model)
    }
  }

  private func notConfigured(_ situation: String) -> String {
    "\(situation), and no model provider is configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for an "
      + "OpenAI-compatible server such as vLLM or Ollama), set INSPECT_DEFAULT_MODEL, or use model "
      + "scripted:<name> to replay \(scripted.directory.path)/<name>\(Transcript.fileSuffix)"
  }
}
