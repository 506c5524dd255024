import Foundation
import GRPCCore
import InspectKit
import InspectProtos
import Logging
import Synchronization

/// `inspect.model.v1.ModelRouterService`: one API in front of every model provider. Routing is
/// ``ModelRouting``; the providers live in `Providers/`; failures are ``ModelError``s.
struct ModelRouterService: Inspect_Model_V1_ModelRouterService.SimpleServiceProtocol {
  let routing: ModelRouting
  let logger: Logger
  var retry = ModelRetryPolicy.default
  var metrics: ModelRouterMetrics?

  func generate(
    request: Inspect_Model_V1_GenerateRequest,
    response: RPCWriter<Inspect_Model_V1_GenerateResponse>,
    context: ServerContext
  ) async throws {
    guard !request.messages.isEmpty else {
      throw ModelError.invalidRequest("the request has no messages; send at least one USER message")
    }
    for tool in request.tools where !tool.jsonSchema.isEmpty {
      guard case .object? = try? JSONValue.parse(tool.jsonSchema) else {
        throw ModelError.invalidRequest("the json_schema of tool '\(tool.name)' is not a JSON object")
      }
    }
    let chain = try routing.chain(for: request)
    // grpc-swift reports a deadline or a client that went away through the RPC's cancellation
    // handle, not by cancelling this task: the work runs in a task cancelled with the RPC, so the
    // upstream HTTP request (or a wait for a retry or a slot) stops at once.
    let finished = try await untilRPCCancelled(cancelledValue: false) {
      try await self.generate(request, chain: chain, response: response)
      return true
    }
    if !finished {
      throw RPCError(
        code: .cancelled, message: "the call was cancelled or its deadline passed; the provider request was stopped")
    }
  }

  /// Tries the routes of `chain` in order.
  private func generate(
    _ request: Inspect_Model_V1_GenerateRequest, chain: [ModelRouting.Route],
    response: RPCWriter<Inspect_Model_V1_GenerateResponse>
  ) async throws {
    logger.debug(
      "generate",
      metadata: [
        "model.id": "\(chain[0].id)", "model.fallbacks": "\(chain.dropFirst().map(\.id))",
        "model.messages": "\(request.messages.count)", "session.id": "\(request.sessionID)",
        "turn.id": "\(request.turnID)",
      ])
    // Whether the caller has been sent anything: after that a failure is reported, not retried
    // and not passed to a fallback model.
    let streamed = Mutex(false)
    for (position, route) in chain.enumerated() {
      let priced = routing.table.model(route.id)
      let sink = GenerateSink { message in
        streamed.withLock { $0 = true }
        var message = message
        if case .usage(var usage) = message.kind {
          if let cost = priced?.cost(of: usage) { usage.costUsd = cost }
          message.usage = usage
          metrics?.usage(model: route.id, usage)
        }
        try await response.write(message)
      }
      do {
        try await generate(request, route: route, sink: sink) { streamed.withLock { $0 } }
        return
      } catch let error as ModelError
        where error.retryable && !streamed.withLock({ $0 }) && position + 1 < chain.count && !Task.isCancelled
      {
        logger.notice(
          "falling back to the next model",
          metadata: [
            "model.id": "\(route.id)", "model.fallback": "\(chain[position + 1].id)", "model.error": "\(error)",
          ])
      }
    }
  }

  /// One model's attempts: retried per ``ModelRetryPolicy`` while nothing reached the caller,
  /// each admitted by the provider's ``ProviderGate`` (limits, circuit breaker).
  private func generate(
    _ request: Inspect_Model_V1_GenerateRequest, route: ModelRouting.Route, sink: GenerateSink,
    streamed: @Sendable () -> Bool
  ) async throws {
    let gate = routing.gates[route.provider.name]
    let estimate =
      gate == nil
      ? 0 : TokenEstimate.tokens(messages: request.messages, tools: request.tools) + Int(request.limits.maxOutputTokens)
    var attempt = 1
    while true {
      // What the provider reported, to charge the call with its real size.
      let used = Mutex<Int?>(nil)
      let counting = GenerateSink { message in
        if case .usage(let usage) = message.kind {
          used.withLock { $0 = Int(usage.inputTokens) + Int(usage.outputTokens) }
        }
        try await sink.write(message)
      }
      do {
        let permit = try await gate?.admit(tokens: estimate)
        do {
          try await route.provider.generate(request, model: route.model, into: counting)
          if let permit { await gate?.release(permit, .succeeded, usedTokens: used.withLock { $0 }) }
          return
        } catch let error as ModelError where !Task.isCancelled {
          if let permit { await gate?.release(permit, .failed(error), usedTokens: used.withLock { $0 }) }
          throw error
        } catch {
          if let permit { await gate?.release(permit, .abandoned, usedTokens: used.withLock { $0 }) }
          throw error
        }
      } catch let error as ModelError {
        try Task.checkCancellation()
        guard !streamed(), !error.circuitOpen, let delay = retry.delay(after: attempt, error: error) else {
          logger.notice(
            "generate failed",
            metadata: ["model.id": "\(route.id)", "model.error": "\(error)", "attempts": "\(attempt)"])
          throw error
        }
        logger.info(
          "retrying a model call",
          metadata: [
            "model.id": "\(route.id)", "model.error": "\(error.kind.rawValue)", "attempt": "\(attempt)",
            "delay_ms": "\(delay.milliseconds)",
          ])
        // The wait ends early when the caller goes away (cancellation or deadline).
        try await Task.sleep(for: delay)
        attempt += 1
      }
    }
  }

  func listModels(
    request: Inspect_Model_V1_ListModelsRequest, context: ServerContext
  ) async throws -> Inspect_Model_V1_ListModelsResponse {
    var models = routing.providers.flatMap { $0.models() }.map(routing.table.enrich)
    // The model a request without one gets is marked; an OpenAI default named by
    // INSPECT_DEFAULT_MODEL rather than OPENAI_MODEL is listed too.
    if let route = try? routing.route("") {
      if !models.contains(where: { $0.id == route.id }), let openAI = route.provider as? OpenAIProvider {
        models.append(openAI.info(for: route.model))
      }
      for index in models.indices where models[index].id == route.id {
        models[index].defaultForTasks = [.code, .classify, .title, .compact]
      }
    }
    return .with { $0.models = models }
  }

  /// An estimate (about four characters a token, see ``TokenEstimate``), so `exact` is false; no
  /// provider is asked.
  func countTokens(
    request: Inspect_Model_V1_CountTokensRequest, context: ServerContext
  ) async throws -> Inspect_Model_V1_CountTokensResponse {
    guard !request.messages.isEmpty else {
      throw ModelError.invalidRequest("the request has no messages; send at least one message to count")
    }
    let route = try routing.route(request.model)
    return .with {
      $0.inputTokens = UInt32(clamping: TokenEstimate.tokens(messages: request.messages, tools: request.tools))
      $0.model = route.id
      $0.exact = false
    }
  }

  func transcribe(
    request: Inspect_Model_V1_TranscribeRequest, context: ServerContext
  ) async throws -> Inspect_Model_V1_TranscribeResponse {
    throw RPCError(
      code: .unimplemented,
      message: "\(Inspect_Model_V1_ModelRouterService.Method.Transcribe.descriptor.fullyQualifiedMethod) is not "
        + "implemented yet: no provider of this version can transcribe audio")
  }
}
