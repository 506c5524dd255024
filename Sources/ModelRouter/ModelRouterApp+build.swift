import Foundation
import GRPCCore
import InspectKit
import InspectProtos

extension ModelRouterApp {
  /// Reads the provider settings from the environment (see ``ModelRouterSettings``) and builds
  /// the service.
  static func build(_ configuration: ServiceConfiguration) async throws -> BuiltService {
    let settings = try ModelRouterSettings(
      environment: ProcessInfo.processInfo.environment, dataDirectory: configuration.dataDirectory)
    return try await build(configuration, settings: settings)
  }

  /// Builds the service with explicit provider settings; tests point these at stand-ins.
  static func build(_ configuration: ServiceConfiguration, settings: ModelRouterSettings) async throws -> BuiltService {
    let host = ServiceHost(
      configuration: configuration, servedServices: [Inspect_Model_V1_ModelRouterService.descriptor])
    let http = ProviderHTTPClient(connectTimeout: settings.openAI?.connectTimeout ?? .seconds(10))
    let metrics = ModelRouterMetrics(registry: host.metrics.registry)
    var gates: [String: ProviderGate] = [:]
    for name in ["openai", "anthropic"] {
      gates[name] = ProviderGate(
        provider: name, limits: settings.routes.limits(of: name), logger: host.logger, metrics: metrics)
    }
    // Transcription often goes to another server (a local whisper) than chat: its outages do not
    // open the chat breaker, and its limits are the OpenAI provider's own.
    gates[ModelRouting.transcriptionGate] = ProviderGate(
      provider: ModelRouting.transcriptionGate, limits: settings.routes.limits(of: "openai"), logger: host.logger,
      metrics: metrics)
    let nonStreaming = Set(
      settings.routes.models.filter { $0.streamToolCalls == false && $0.id.hasPrefix("openai:") }
        .map { String($0.id.dropFirst("openai:".count)) })
    let routing = ModelRouting(
      scripted: ScriptedProvider(directory: settings.transcriptsDirectory),
      openAI: settings.openAI.map { OpenAIProvider(settings: $0, http: http, nonStreamingToolModels: nonStreaming) },
      anthropic: settings.anthropic.map { AnthropicProvider(settings: $0, http: http) },
      defaultModel: settings.defaultModel, table: settings.routes, gates: gates)
    host.logger.info(
      "model providers",
      metadata: [
        "model.transcripts": "\(settings.transcriptsDirectory.path)",
        "model.openai": "\(settings.openAI?.baseURL ?? "not configured")",
        "model.anthropic": "\(settings.anthropic?.baseURL ?? "not configured")",
        "model.default": "\((try? routing.route("").id) ?? "none")",
      ])
    return BuiltService(
      host: host,
      grpcServer: try host.makeGRPCServer(
        services: [
          ModelRouterService(
            routing: routing, logger: host.logger, retry: settings.retry, metrics: metrics,
            ledger: try UsageLedger.open(
              in: configuration.dataDirectory.appendingPathComponent("model", isDirectory: true)))
        ],
        // Audio for Transcribe is larger than gRPC's usual 4 MiB.
        maxRequestBytes: Transcription.maximumBytes + (1 << 20)),
      httpServer: host.makeHTTPServer(router: host.makeRouter()),
      dependencies: [http])
  }
}
