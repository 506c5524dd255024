import GRPCCore
import InspectProtos

/// Picks the provider and model for a request. An explicit model wins: `scripted:<name>` replays
/// a transcript, `openai:<model>` goes to the OpenAI-compatible provider, and any other name
/// (e.g. `gpt-4.1-mini`, Ollama's `qwen2.5-coder:7b`) goes there too when it is configured. An
/// empty model takes `INSPECT_DEFAULT_MODEL`, else the OpenAI provider's default model; with
/// neither the call fails FAILED_PRECONDITION (`no_provider`) saying how to configure one.
struct ModelRouting: Sendable {
  /// Where a request goes.
  struct Route {
    var provider: any ModelProvider
    /// The provider's own name for the model.
    var model: String
    /// `<provider>:<model>`.
    var id: String { provider.id(of: model) }
  }

  /// Providers that are planned but not built: their names are NOT_FOUND rather than guessed to
  /// be OpenAI model names.
  static let unbuiltProviders: Set<String> = ["anthropic"]

  let scripted: ScriptedProvider
  let openAI: OpenAIProvider?
  let defaultModel: String?

  var providers: [any ModelProvider] { [scripted] + (openAI.map { [$0] } ?? []) }

  /// The route for `requested` (empty: the default).
  func route(_ requested: String) throws -> Route {
    let model = requested.trimmingCharacters(in: .whitespaces)
    if !model.isEmpty { return try route(explicit: model) }
    if let defaultModel { return try route(explicit: defaultModel) }
    if let openAI { return Route(provider: openAI, model: openAI.settings.defaultModel) }
    throw ModelError.noProvider(notConfigured("the request names no model"), code: .failedPrecondition)
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
    case let prefix? where Self.unbuiltProviders.contains(prefix):
      throw ModelError.noProvider(
        "model \(model): the \(prefix) provider is not built yet; use openai:<model> or scripted:<name>")
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
