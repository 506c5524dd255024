import Foundation
import InspectKit
import InspectProtos
import Yams

/// The routing file (`INSPECT_MODEL_ROUTES`, YAML): the models Inspect knows (context window,
/// prices, capabilities), which model serves a request that names none — per client, per task,
/// else the default — and each model's fallback chain.
///
/// ```yaml
/// models:
///   - id: anthropic:claude-sonnet-4-5
///     context_window: 200000
///     input_price_per_million: 3
///     output_price_per_million: 15
///     capabilities: [tools, streaming, vision]
/// default: anthropic:claude-sonnet-4-5
/// clients: {slack: openai:gpt-4.1-mini}
/// tasks: {title: openai:gpt-4.1-mini, classify: openai:gpt-4.1-mini}
/// fallbacks:
///   anthropic:claude-sonnet-4-5: [openai:gpt-4.1]
/// providers:
///   openai: {max_concurrent: 16, tokens_per_minute: 400000, breaker_failures: 5, breaker_cooldown_seconds: 30}
/// ```
///
/// A model with `stream_tool_calls: false` is asked without streaming whenever the request
/// offers tools (for servers that cannot stream tool calls); its answer is passed on in the same
/// events.
struct RouteTable: Decodable, Sendable {
  struct Model: Decodable, Sendable {
    var id: String
    var contextWindow: UInt32?
    var maxOutputTokens: UInt32?
    var inputPricePerMillion: Double?
    var outputPricePerMillion: Double?
    var cachedInputPricePerMillion: Double?
    var capabilities: [String]?
    /// False for servers that cannot stream tool calls: requests with tools are sent with
    /// `stream: false` (OpenAI-compatible providers).
    var streamToolCalls: Bool?

    enum CodingKeys: String, CodingKey {
      case id, capabilities
      case streamToolCalls = "stream_tool_calls"
      case contextWindow = "context_window"
      case maxOutputTokens = "max_output_tokens"
      case inputPricePerMillion = "input_price_per_million"
      case outputPricePerMillion = "output_price_per_million"
      case cachedInputPricePerMillion = "cached_input_price_per_million"
    }

    /// What a call with `usage` cost, when the prices are known.
    func cost(of usage: Inspect_Model_V1_Usage) -> Double? {
      guard let input = inputPricePerMillion, let output = outputPricePerMillion else { return nil }
      let cached = Double(usage.cachedInputTokens)
      let uncached = Double(usage.inputTokens) - cached
      return
        (max(0, uncached) * input + cached * (cachedInputPricePerMillion ?? input)
        + Double(usage.outputTokens) * output) / 1_000_000
    }
  }

  /// Admission limits and the circuit breaker of one provider (``ProviderGate``).
  struct ProviderLimits: Decodable, Sendable {
    var maxConcurrent: Int?
    var tokensPerMinute: Int?
    var breakerFailures: Int?
    var breakerCooldownSeconds: Double?

    enum CodingKeys: String, CodingKey {
      case maxConcurrent = "max_concurrent"
      case tokensPerMinute = "tokens_per_minute"
      case breakerFailures = "breaker_failures"
      case breakerCooldownSeconds = "breaker_cooldown_seconds"
    }

    var limits: ProviderGate.Limits {
      var limits = ProviderGate.Limits(maxConcurrent: maxConcurrent, tokensPerMinute: tokensPerMinute)
      if let breakerFailures { limits.breakerFailures = breakerFailures }
      if let breakerCooldownSeconds { limits.breakerCooldown = .milliseconds(Int64(breakerCooldownSeconds * 1000)) }
      return limits
    }
  }

  var models: [Model] = []
  var `default`: String?
  var clients: [String: String] = [:]
  var tasks: [String: String] = [:]
  var fallbacks: [String: [String]] = [:]
  /// By provider name (`openai`, `anthropic`).
  var providers: [String: ProviderLimits] = [:]

  enum CodingKeys: String, CodingKey { case models, `default`, clients, tasks, fallbacks, providers }

  init() {}

  init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    models = try container.decodeIfPresent([Model].self, forKey: .models) ?? []
    self.default = try container.decodeIfPresent(String.self, forKey: .default)
    clients = try container.decodeIfPresent([String: String].self, forKey: .clients) ?? [:]
    tasks = try container.decodeIfPresent([String: String].self, forKey: .tasks) ?? [:]
    fallbacks = try container.decodeIfPresent([String: [String]].self, forKey: .fallbacks) ?? [:]
    providers = try container.decodeIfPresent([String: ProviderLimits].self, forKey: .providers) ?? [:]
  }

  /// The limits of `provider`: the file's, else none (and the breaker's defaults).
  func limits(of provider: String) -> ProviderGate.Limits {
    providers[provider]?.limits ?? ProviderGate.Limits()
  }

  /// Reads and checks the file; the error names the file and what is wrong.
  static func load(_ url: URL) throws -> RouteTable {
    let text: String
    do {
      text = try String(contentsOf: url, encoding: .utf8)
    } catch {
      throw ConfigurationError("INSPECT_MODEL_ROUTES=\(url.path) cannot be read: \(error.localizedDescription)")
    }
    let table: RouteTable
    do {
      table = try YAMLDecoder().decode(RouteTable.self, from: text)
    } catch {
      throw ConfigurationError("INSPECT_MODEL_ROUTES=\(url.path) is not a valid routing file: \(error)")
    }
    let tasks = Set(["code", "classify", "title", "compact", "transcribe"])
    for task in table.tasks.keys where !tasks.contains(task) {
      throw ConfigurationError(
        "INSPECT_MODEL_ROUTES=\(url.path): unknown task '\(task)' (tasks: \(tasks.sorted().joined(separator: ", ")))")
    }
    for (name, limits) in table.providers {
      guard ["openai", "anthropic"].contains(name) else {
        throw ConfigurationError(
          "INSPECT_MODEL_ROUTES=\(url.path): unknown provider '\(name)' under providers (providers: anthropic, openai)")
      }
      let numbers: [(String, Double?)] = [
        ("max_concurrent", limits.maxConcurrent.map(Double.init)),
        ("tokens_per_minute", limits.tokensPerMinute.map(Double.init)),
        ("breaker_failures", limits.breakerFailures.map(Double.init)),
        ("breaker_cooldown_seconds", limits.breakerCooldownSeconds),
      ]
      for case (let key, let value?) in numbers where !(value > 0) {
        throw ConfigurationError("INSPECT_MODEL_ROUTES=\(url.path): providers.\(name).\(key) must be above 0")
      }
    }
    for id in [table.default].compactMap({ $0 }) + table.clients.values + table.tasks.values
      + table.fallbacks.keys + table.fallbacks.values.flatMap({ $0 }) + table.models.map(\.id)
    where !id.contains(":") {
      throw ConfigurationError(
        "INSPECT_MODEL_ROUTES=\(url.path): '\(id)' is not a model id (<provider>:<model>, e.g. openai:gpt-4.1-mini)")
    }
    return table
  }

  func model(_ id: String) -> Model? { models.first { $0.id == id } }

  /// The model the table names for a request that names none: its client's, else its task's,
  /// else the default.
  func model(client: String, task: Inspect_Model_V1_Task) -> String? {
    if let byClient = clients[client.lowercased()], !client.isEmpty { return byClient }
    if let taskName = Self.name(of: task), let byTask = tasks[taskName] { return byTask }
    return self.default
  }

  /// The name a task has in the file (`code`, `classify`…); nil for none.
  static func name(of task: Inspect_Model_V1_Task) -> String? {
    switch task {
    case .code: "code"
    case .classify: "classify"
    case .title: "title"
    case .compact: "compact"
    case .transcribe: "transcribe"
    case .unspecified, .UNRECOGNIZED: nil
    }
  }

  /// `info` with what the table knows about it (window, prices, capabilities).
  func enrich(_ info: Inspect_Model_V1_ModelInfo) -> Inspect_Model_V1_ModelInfo {
    guard let model = model(info.id) else { return info }
    var info = info
    if let window = model.contextWindow { info.contextWindow = window }
    if let output = model.maxOutputTokens { info.maxOutputTokens = output }
    if let price = model.inputPricePerMillion { info.inputPricePerMillion = price }
    if let price = model.outputPricePerMillion { info.outputPricePerMillion = price }
    if let price = model.cachedInputPricePerMillion { info.cachedInputPricePerMillion = price }
    if let names = model.capabilities {
      info.capabilities = names.compactMap {
        switch $0.lowercased() {
        case "tools": .tools
        case "vision": .vision
        case "streaming": .streaming
        case "transcription": .transcription
        case "reasoning": .reasoning
        default: nil
        }
      }
    }
    return info
  }
}
