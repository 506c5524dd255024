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
  /// Where every call is recorded (``UsageLedger``); nil records nothing and `GetUsage` is
  /// UNIMPLEMENTED.
  var ledger: UsageLedger?

  /// What a call reached, for the ledger: the model trying or answering now, and its usage.
  private final class Progress: Sendable {
    struct Reached {
      var model: String
      var usage = Inspect_Model_V1_Usage()
      var audioSeconds = 0.0
    }

    private let state: Mutex<Reached>

    init(model: String) { state = Mutex(Reached(model: model)) }

    var reached: Reached { state.withLock { $0 } }

    func update(_ change: (inout Reached) -> Void) { state.withLock { change(&$0) } }
  }

  func generate(
    request: Inspect_Model_V1_GenerateRequest,
    response: RPCWriter<Inspect_Model_V1_GenerateResponse>,
    context: ServerContext
  ) async throws {
    guard !request.messages.isEmpty else {
      throw ModelError.invalidRequest("the request has no messages; send at least one USER message")
    }
    for tool in request.tools where !tool.jsonSchema.isEmpty {
      guard ToolSchemas.object(tool.jsonSchema) != nil else {
        throw ModelError.invalidRequest("the json_schema of tool '\(tool.name)' is not a JSON object")
      }
    }
    let chain = try routing.chain(for: request)
    let progress = Progress(model: chain[0].id)
    try await accounted(
      session: request.sessionID, turn: request.turnID, client: request.client, task: request.task,
      progress: progress, context: context
    ) {
      try await self.generate(request, chain: chain, response: response, progress: progress)
    }
  }

  /// Runs a call's `work` so that it stops when the RPC is cancelled, and records it in the
  /// ledger whatever its outcome.
  ///
  /// grpc-swift reports a deadline or a client that went away through the RPC's cancellation
  /// handle, not by cancelling the handler's task: the work runs in a task cancelled with the RPC,
  /// so the upstream HTTP request (or a wait for a retry or a slot) stops at once.
  private func accounted(
    session: String, turn: String, client: String, task: Inspect_Model_V1_Task, progress: Progress,
    context: ServerContext, _ work: @escaping @Sendable () async throws -> Void
  ) async throws {
    let session = session.trimmingCharacters(in: .whitespaces)
    let started = ContinuousClock.now
    func record(_ outcome: UsageLedger.Call.Outcome, _ errorType: String = "") async {
      guard let ledger else { return }
      let reached = progress.reached
      let call = UsageLedger.Call(
        sessionID: session, turnID: turn, client: client, task: RouteTable.name(of: task) ?? "",
        model: reached.model, outcome: outcome, errorType: errorType, usage: reached.usage,
        audioSeconds: reached.audioSeconds, duration: ContinuousClock.now - started)
      do {
        try await ledger.record(call)
      } catch {
        logger.warning("the usage ledger could not record a call", metadata: ["error": "\(error)"])
      }
    }
    let finished: Bool
    do {
      finished = try await untilRPCCancelled(cancelledValue: false) {
        try await work()
        return true
      }
    } catch {
      // A caller that went away mid-stream makes writes fail with errors of their own: still a
      // cancellation, not a failed call.
      if context.cancellation.isCancelled || error is CancellationError {
        await record(.cancelled)
      } else {
        await record(.failed, (error as? ModelError)?.kind.rawValue ?? "")
      }
      throw error
    }
    guard finished else {
      await record(.cancelled)
      throw RPCError(
        code: .cancelled, message: "the call was cancelled or its deadline passed; the provider request was stopped")
    }
    await record(.succeeded)
  }

  /// Tries the routes of `chain` in order.
  private func generate(
    _ request: Inspect_Model_V1_GenerateRequest, chain: [ModelRouting.Route],
    response: RPCWriter<Inspect_Model_V1_GenerateResponse>, progress: Progress
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
    let estimate =
      TokenEstimate.tokens(messages: request.messages, tools: request.tools)
      + Int(request.limits.maxOutputTokens)
    for (position, route) in chain.enumerated() {
      progress.update { $0.model = route.id }
      let priced = routing.table.model(route.id)
      // What the provider reported, to charge the call with its real size.
      let used = Mutex<Int?>(nil)
      let sink = GenerateSink { message in
        streamed.withLock { $0 = true }
        var message = message
        if case .usage(var usage) = message.kind {
          if let cost = priced?.cost(of: usage) { usage.costUsd = cost }
          message.usage = usage
          metrics?.usage(model: route.id, usage)
          progress.update { $0.usage = usage }
          used.withLock { $0 = Int(usage.inputTokens) + Int(usage.outputTokens) }
        }
        try await response.write(message)
      }
      do {
        try await attempts(
          route: route, gate: routing.gates[route.provider.name], estimate: estimate,
          streamed: { streamed.withLock { $0 } }, used: { used.withLock { $0 } }
        ) {
          try await route.provider.generate(request, model: route.model, into: sink)
        }
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

  /// One model's attempts at `call`: each admitted by the provider's ``ProviderGate`` (limits,
  /// circuit breaker) with `estimate` tokens and charged what `used` reports after it; retried
  /// per ``ModelRetryPolicy`` while nothing reached the caller (`streamed`).
  private func attempts<T: Sendable>(
    route: ModelRouting.Route, gate: ProviderGate?, estimate: Int, streamed: @Sendable () -> Bool = { false },
    used: @Sendable () -> Int? = { nil }, _ call: () async throws -> T
  ) async throws -> T {
    var attempt = 1
    while true {
      do {
        let permit = try await gate?.admit(tokens: estimate)
        do {
          let value = try await call()
          if let permit { await gate?.release(permit, .succeeded, usedTokens: used()) }
          return value
        } catch let error as ModelError where !Task.isCancelled {
          if let permit { await gate?.release(permit, .failed(error), usedTokens: used()) }
          throw error
        } catch {
          if let permit { await gate?.release(permit, .abandoned, usedTokens: used()) }
          throw error
        }
      } catch let error as ModelError {
        try Task.checkCancellation()
        // A failure that opened the circuit is reported at once (the route may fall back).
        let circuitOpened = await gate?.isOpen ?? false
        guard !streamed(), !error.circuitOpen, !circuitOpened, let delay = retry.delay(after: attempt, error: error)
        else {
          logger.notice(
            "model call failed",
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
    guard !request.audio.isEmpty else {
      throw ModelError.invalidRequest("the request has no audio; send the recording in `audio`")
    }
    guard request.audio.count <= Transcription.maximumBytes else {
      throw ModelError.invalidRequest(
        "the audio is \(request.audio.count) bytes; at most \(Transcription.maximumBytes) bytes can be transcribed "
          + "in one call")
    }
    guard Transcription.fileExtension(for: request.mediaType) != nil else {
      throw ModelError.invalidRequest(
        "media type '\(request.mediaType)' cannot be transcribed; send one of "
          + Transcription.extensions.keys.sorted().joined(separator: ", "))
    }
    let (provider, model) = try routing.transcriber(request.model)
    let route = ModelRouting.Route(provider: provider, model: model)
    let progress = Progress(model: route.id)
    let result = Mutex<Transcription?>(nil)
    try await accounted(
      session: request.sessionID, turn: "", client: request.client, task: .transcribe, progress: progress,
      context: context
    ) {
      let transcription = try await self.attempts(
        route: route, gate: self.routing.gates[ModelRouting.transcriptionGate], estimate: 0
      ) {
        try await provider.transcribe(
          audio: request.audio, mediaType: request.mediaType, language: request.language, model: model)
      }
      result.withLock { $0 = transcription }
      progress.update { $0.audioSeconds = transcription.durationSeconds ?? 0 }
    }
    let transcription = try result.withLock { value in
      guard let value else { throw ModelError.unavailable("the transcription ended without an answer") }
      return value
    }
    return .with {
      $0.text = transcription.text
      $0.language = transcription.language
      if let seconds = transcription.durationSeconds, seconds.isFinite, (0...1e7).contains(seconds) {
        $0.duration = .with {
          $0.seconds = Int64(seconds)
          $0.nanos = Int32((seconds - Double(Int64(seconds))) * 1e9)
        }
      }
      $0.model = route.id
    }
  }

  func getUsage(
    request: Inspect_Model_V1_GetUsageRequest, context: ServerContext
  ) async throws -> Inspect_Model_V1_GetUsageResponse {
    let session = request.sessionID.trimmingCharacters(in: .whitespaces)
    guard !session.isEmpty else {
      throw ModelError.invalidRequest("session_id is empty; name the session whose usage to sum")
    }
    guard let ledger else {
      throw RPCError(code: .unimplemented, message: "this ModelRouter keeps no usage ledger")
    }
    do {
      return try await ledger.usage(session: session)
    } catch {
      throw RPCError(code: .internalError, message: "the usage ledger could not be read: \(error)")
    }
  }
}
