import Foundation
import InspectKit

/// ModelRouter's provider configuration. `build` reads it from the environment; tests construct
/// it directly (e.g. pointing the OpenAI provider at a loopback stand-in) without `setenv`.
///
/// | variable | meaning |
/// |---|---|
/// | `INSPECT_TRANSCRIPTS_DIR` | where `scripted:<name>` finds `<name>.transcript.jsonl` (default `<data-dir>/transcripts`) |
/// | `INSPECT_DEFAULT_MODEL` | the model for requests that name none (e.g. `scripted:demo`, `openai:gpt-4.1-mini`) |
/// | `OPENAI_API_KEY` | enables the OpenAI provider; sent as `Authorization: Bearer …` |
/// | `OPENAI_BASE_URL` | an OpenAI-compatible endpoint including `/v1` (vLLM, Ollama, llama.cpp…); enables the provider without a key |
/// | `OPENAI_MODEL` | the OpenAI model used when a request names none and `INSPECT_DEFAULT_MODEL` is unset (default `gpt-4.1-mini`) |
/// | `OPENAI_TRANSCRIBE_MODEL` | the model `Transcribe` uses when neither the request nor the routing file's `transcribe` task names one (default `whisper-1`) |
/// | `INSPECT_MODEL_ROUTES` | a YAML routing file (``RouteTable``): models and prices, per-client / per-task / default models, fallback chains |
/// | `INSPECT_MODEL_MAX_ATTEMPTS` | attempts per model call for rate limits, overload and outages (default 3; 1 = no retries) |
/// | `ANTHROPIC_API_KEY` | enables the Anthropic provider (`anthropic:<model>`); sent as `x-api-key` |
/// | `ANTHROPIC_BASE_URL` | Anthropic's endpoint without `/v1` (default `https://api.anthropic.com`); setting it enables the provider without a key |
/// | `ANTHROPIC_MODEL` | the Anthropic model used when routing picks Anthropic for a request that names none (default `claude-sonnet-4-5`) |
struct ModelRouterSettings: Sendable {
  /// Where scripted transcripts live.
  var transcriptsDirectory: URL
  /// The model for requests with an empty `model`; nil lets the configured providers decide.
  var defaultModel: String?
  /// The OpenAI-compatible provider; nil when neither a key nor a base URL is configured.
  var openAI: OpenAISettings?
  /// The Anthropic provider; nil when neither a key nor a base URL is configured.
  var anthropic: AnthropicSettings?
  /// How failed calls are tried again (`INSPECT_MODEL_MAX_ATTEMPTS`).
  var retry = ModelRetryPolicy.default
  /// The routing file (`INSPECT_MODEL_ROUTES`): rules, prices, fallback chains.
  var routes = RouteTable()

  init(
    transcriptsDirectory: URL, defaultModel: String? = nil, openAI: OpenAISettings? = nil,
    anthropic: AnthropicSettings? = nil
  ) {
    self.transcriptsDirectory = transcriptsDirectory
    self.defaultModel = defaultModel
    self.openAI = openAI
    self.anthropic = anthropic
  }

  /// Reads the variables in the table above; throws when one is set but unusable.
  init(environment: [String: String], dataDirectory: URL) throws {
    func value(_ name: String) -> String? {
      guard let text = environment[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty
      else { return nil }
      return text
    }
    let transcripts =
      value("INSPECT_TRANSCRIPTS_DIR").map { URL(fileURLWithPath: $0, isDirectory: true).standardizedFileURL }
      ?? dataDirectory.appendingPathComponent("transcripts", isDirectory: true)
    var openAI: OpenAISettings?
    let apiKey = value("OPENAI_API_KEY")
    let baseURL = value("OPENAI_BASE_URL")
    if apiKey != nil || baseURL != nil {
      openAI = try OpenAISettings(
        baseURL: baseURL ?? OpenAISettings.defaultBaseURL, apiKey: apiKey,
        defaultModel: value("OPENAI_MODEL") ?? OpenAISettings.fallbackModel, source: "OPENAI_BASE_URL")
      if let model = value("OPENAI_TRANSCRIBE_MODEL") { openAI?.transcriptionModel = model }
    }
    var anthropic: AnthropicSettings?
    let anthropicKey = value("ANTHROPIC_API_KEY")
    let anthropicURL = value("ANTHROPIC_BASE_URL")
    if anthropicKey != nil || anthropicURL != nil {
      anthropic = try AnthropicSettings(
        baseURL: anthropicURL ?? AnthropicSettings.defaultBaseURL, apiKey: anthropicKey,
        defaultModel: value("ANTHROPIC_MODEL") ?? AnthropicSettings.fallbackModel, source: "ANTHROPIC_BASE_URL")
    }
    self.init(
      transcriptsDirectory: transcripts, defaultModel: value("INSPECT_DEFAULT_MODEL"), openAI: openAI,
      anthropic: anthropic)
    if let attempts = try environment.wholeNumber("INSPECT_MODEL_MAX_ATTEMPTS", in: 1...10) {
      retry.maxAttempts = attempts
    }
    if let path = value("INSPECT_MODEL_ROUTES") { routes = try RouteTable.load(URL(fileURLWithPath: path)) }
  }
}

/// Where and how to reach an OpenAI-compatible Chat Completions endpoint.
struct OpenAISettings: Sendable {
  static let defaultBaseURL = "https://api.openai.com/v1"
  static let fallbackModel = "gpt-4.1-mini"

  /// The base URL including the version path (`https://api.openai.com/v1`,
  /// `http://127.0.0.1:11434/v1`), without a trailing slash; requests go to
  /// `<baseURL>/chat/completions`.
  var baseURL: String
  /// Sent as a bearer token when set; local servers often need none.
  var apiKey: String?
  /// The model used when routing picks this provider for a request that names none.
  var defaultModel: String
  /// The model `Transcribe` uses by default.
  var transcriptionModel = "whisper-1"
  /// How long to keep trying to connect before the call fails UNAVAILABLE.
  var connectTimeout: Duration = .seconds(10)

  /// - Parameter source: names where `baseURL` came from, for the error message.
  init(baseURL: String, apiKey: String?, defaultModel: String = fallbackModel, source: String = "baseURL") throws {
    var trimmed = baseURL
    while trimmed.hasSuffix("/") { trimmed.removeLast() }
    guard let url = URL(string: trimmed), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
      url.host != nil
    else {
      throw ConfigurationError(
        "\(source)=\(baseURL) is not an http(s) URL; use e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1")
    }
    self.baseURL = trimmed
    self.apiKey = apiKey
    self.defaultModel = defaultModel
  }

  /// The Chat Completions endpoint.
  var chatCompletionsURL: String { baseURL + "/chat/completions" }
}
