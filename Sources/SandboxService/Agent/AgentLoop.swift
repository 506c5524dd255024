import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos
import Logging
import SwiftProtobuf
import Synchronization

/// One turn of the agent next to its sandbox: get a sandbox, then ask the model, run the tools it
/// calls, give it their results, and repeat until it answers without tools or the step budget
/// runs out. Every token and every tool call's lifecycle is streamed through `emit`.
struct AgentLoop: Sendable {
  typealias Event = Inspect_Session_V1_SessionEvent

  let model: Inspect_Model_V1_ModelRouterService.Client<HTTP2ClientTransport.Posix>
  let modelAddress: HostAndPort
  let manager: SandboxManager
  let logger: Logger
  var tools: [Tool] = BuiltinTools.all
  /// Hooks added after the built-in ones (sync gate, workspace confinement, permission policy;
  /// the output limit runs after-execute), in order (``ToolHook``).
  var hooks: [any ToolHook] = []
  /// Where full outputs of cut tool results go; nil keeps only the cut text.
  var artifacts: ArtifactStore?
  /// The service's permission policy (`INSPECT_AGENT_PERMISSIONS`); a repository's
  /// `.inspect/permissions.json` rules come before it.
  var permissions = PermissionPolicy()
  /// SessionService, for the child session tools (nil: they answer that it is not available).
  var sessions: SessionServiceClient?
  /// When the conversation is compacted (``CompactionSettings``).
  var compaction = CompactionSettings()
  /// The same tool call (name and arguments) this many times in a row is pointed out to the model;
  /// at ``loopLimit`` the turn stops.
  static let loopWarning = 3
  static let loopLimit = 5

  static let defaultMaxSteps: UInt32 = 40
  static let systemPrompt = """
    You are Inspect, a coding agent working in a sandbox that holds a checkout of the repository \
    (your working directory, /workspace). Read the code, run the tests with run_command, make the \
    smallest correct change with edit_file or write_file, run the tests again, and when they pass \
    call git_commit_and_push with a short commit message. The sandbox has no network.
    """

  /// Runs the turn and says how it finished (never throws: failures are outcomes). When `stop`
  /// is requested, the work is cancelled (a running command's processes are killed), every tool
  /// call still open ends CANCELLED, and the turn ends CANCELLED.
  func run(
    _ turn: Inspect_Sandbox_V1_StartTurn, stop: TurnStop = TurnStop(), decisions: TurnDecisions = TurnDecisions(),
    emit: @escaping @Sendable (Event) async throws -> Void
  ) async -> Inspect_Session_V1_TurnFinished {
    let open = OpenToolCalls()
    let finished = await withTaskGroup(of: Inspect_Session_V1_TurnFinished?.self) { group in
      group.addTask { await self.work(turn, open: open, decisions: decisions, emit: emit) }
      group.addTask {
        await stop.wait()
        return nil
      }
      let first = await group.next() ?? nil
      group.cancelAll()
      return first
    }
    if let finished, stop.requested == nil { return finished }
    let reason = stop.requested.map(TurnStop.describe) ?? "the turn was stopped"
    for (id, name) in open.drain() {
      try? await emit(
        .with {
          $0.toolCall = .with {
            $0.toolCallID = id
            $0.name = name
            $0.state = .cancelled
            $0.attempt = 1
            $0.error = "cancelled: \(reason)"
          }
        })
    }
    return .with {
      $0.outcome = .cancelled
      $0.reason = reason
    }
  }

  private func work(
    _ turn: Inspect_Sandbox_V1_StartTurn, open: OpenToolCalls, decisions: TurnDecisions,
    emit: @escaping @Sendable (Event) async throws -> Void
  ) async -> Inspect_Session_V1_TurnFinished {
    let clock = ContinuousClock()
    let started = clock.now
    do {
      try await emit(.with { $0.sandboxStatus = .with { $0.phase = .provisioning } })
      let repository = try RepositoryName(turn.repository.fullName)
      let entry: SandboxEntry
      var claim = SandboxManager.Claim(
        repository: repository, sessionID: turn.sessionID, snapshotID: turn.snapshotID, branch: turn.sessionBranch,
        fallbackBranch: turn.baseBranch)
      do {
        do {
          entry = try await manager.claim(claim)
        } catch SandboxError.notFound(let reason) where !claim.snapshotID.isEmpty {
          // The session's snapshot is gone: start from the session branch instead.
          logger.warning("the turn's snapshot is gone; starting fresh", metadata: ["reason": "\(reason)"])
          claim.snapshotID = ""
          entry = try await manager.claim(claim)
        }
      } catch {
        throw TurnEnd(finished: .failed(.sandbox, "the sandbox could not be prepared: \(error)"))
      }
      let sandbox = SandboxOfTurn(entry: entry, manager: manager, emit: emit)
      do {
        try await emit(
          .with {
            $0.sandboxStatus = .with {
              $0.phase = .syncing
              $0.sandboxID = entry.id
              $0.imageID = entry.instance.image.id
              $0.commit = entry.instance.image.commit
              $0.timings = ["claim": .init(rounding: clock.now - started)]
              $0.message =
                "\(entry.source) sandbox; syncing to the newest commit of \(turn.sessionBranch) (else \(turn.baseBranch))"
            }
          })
        let calls = try await toolCalls(for: turn, sandbox: sandbox, open: open, decisions: decisions, emit: emit)
        var finished: Inspect_Session_V1_TurnFinished
        do {
          finished = try await steps(turn, sandbox: sandbox, calls: calls, emit: emit)
          await calls.mcp.close()
        } catch {
          await calls.mcp.close()
          throw error
        }
        if let snapshot = await end(entry) { finished.snapshotID = snapshot }
        return finished
      } catch {
        _ = await end(entry)
        throw error
      }
    } catch let failure as TurnEnd {
      return failure.finished
    } catch let error as SandboxError {
      return .failed(.sandbox, "the sandbox could not be prepared: \(error)")
    } catch {
      return .failed(.internal, "the turn failed: \(error)")
    }
  }

  /// Snapshots the sandbox (so a later turn can resume it) and terminates it, also when the
  /// turn was cancelled; the snapshot's id, or nil when it failed (logged).
  private func end(_ entry: SandboxEntry) async -> String? {
    let manager = self.manager
    let logger = self.logger
    return await Task {
      do {
        return try await manager.terminate(entry.id, snapshot: true)?.id
      } catch {
        logger.warning("the end-of-turn snapshot failed", metadata: ["sandbox.id": "\(entry.id)", "error": "\(error)"])
        return nil
      }
    }.value
  }

  private func steps(
    _ turn: Inspect_Sandbox_V1_StartTurn, sandbox: SandboxOfTurn, calls: TurnToolCalls,
    emit: @escaping @Sendable (Event) async throws -> Void
  ) async throws -> Inspect_Session_V1_TurnFinished {
    var messages = Self.messages(for: turn, context: RepositoryContext.read(from: sandbox.entry.instance))
    let budgets = turn.budgets
    let maxSteps = budgets.maxSteps == 0 ? Self.defaultMaxSteps : budgets.maxSteps
    let started = ContinuousClock.now
    var totals = (input: UInt64(0), output: UInt64(0), cost: 0.0)
    var loops = LoopDetector(warning: Self.loopWarning, limit: Self.loopLimit)
    func finished(_ outcome: Inspect_Session_V1_TurnFinished, steps: UInt32) -> Inspect_Session_V1_TurnFinished {
      var outcome = outcome
      outcome.steps = steps
      outcome.inputTokens = totals.input
      outcome.outputTokens = totals.output
      outcome.costUsd = totals.cost
      return outcome
    }
    let window = await contextWindow(for: turn)
    // Tokens the next call will send: the provider's count of the last request plus an estimate
    // of what was added since.
    var tokens = CompactionSettings.estimate(messages)
    for step in 1...maxSteps {
      try await sandbox.announce()
      if Double(tokens) > compaction.threshold * Double(window) {
        messages = try await compact(messages, turn: turn, tokensBefore: tokens, emit: emit)
        tokens = CompactionSettings.estimate(messages)
      }
      let reply: Reply
      do {
        reply = try await generate(turn, messages: messages, tools: calls.registry.protos, emit: emit)
      } catch is ContextOverflow {
        // The estimate was short of the provider's count: compact now and try once more.
        messages = try await compact(messages, turn: turn, tokensBefore: max(tokens, window), emit: emit)
        tokens = CompactionSettings.estimate(messages)
        do {
          reply = try await generate(turn, messages: messages, tools: calls.registry.protos, emit: emit)
        } catch let overflow as ContextOverflow {
          throw TurnEnd(
            finished: .failed(
              .model, "the conversation does not fit the model's window even compacted: \(overflow.message)"))
        }
      }
      totals.input += UInt64(reply.usage.inputTokens)
      totals.output += UInt64(reply.usage.outputTokens)
      totals.cost += reply.usage.costUsd
      // Each model call's usage goes into the session's log (budgets, stats, clients' cost view);
      // ModelRouter keeps its own per-session ledger of the same calls (GetUsage).
      try await emit(
        .with {
          $0.usage = .with {
            $0.model = reply.model
            $0.inputTokens = reply.usage.inputTokens
            $0.outputTokens = reply.usage.outputTokens
            $0.cachedInputTokens = reply.usage.cachedInputTokens
            $0.costUsd = reply.usage.costUsd
          }
        })
      let ids = reply.calls.map { _ in Identifier.make(.toolCall) }
      try await emit(
        .with {
          $0.assistantMessage = .with {
            $0.text = reply.text
            $0.toolCallIds = ids
            $0.model = reply.model
          }
        })
      guard !reply.calls.isEmpty else { return finished(.with { $0.outcome = .succeeded }, steps: step) }
      if let exceeded = Budget.exceeded(budgets, totals: totals, elapsed: ContinuousClock.now - started) {
        return finished(.failed(.budget, exceeded), steps: step)
      }
      messages.append(
        .with {
          $0.role = .assistant
          $0.text = reply.text
          $0.toolCalls = reply.calls
        })
      tokens =
        (reply.usage.inputTokens > 0 ? Int(reply.usage.inputTokens) : tokens)
        + CompactionSettings.estimate([messages[messages.count - 1]])
      var results: [Inspect_Model_V1_ToolResult] = []
      for (call, id) in zip(reply.calls, ids) {
        var result = try await calls.run(call, id: id)
        switch loops.record(name: call.name, arguments: call.argumentsJson) {
        case .fine:
          break
        case .warn(let times):
          result.content +=
            "\n\n[Inspect: this is the \(times)th identical \(call.name) call in a row with the same arguments. It will "
            + "not give a different result; change your approach.]"
        case .stop(let times):
          return finished(
            .failed(
              .budget,
              "the agent repeated the same \(call.name) call \(times) times in a row with the same arguments (a loop); "
                + "stopped"),
            steps: step)
        }
        results.append(result)
      }
      messages.append(
        .with {
          $0.role = .tool
          $0.toolResults = results
        })
      tokens += CompactionSettings.estimate([messages[messages.count - 1]])
    }
    return finished(
      .failed(.budget, "the agent used all \(maxSteps) steps of its budget without finishing"), steps: maxSteps)
  }

  // MARK: - The model

  struct Reply {
    var text = ""
    var calls: [Inspect_Model_V1_ToolCall] = []
    var usage = Inspect_Model_V1_Usage()
    var model = ""
  }

  private func generate(
    _ turn: Inspect_Sandbox_V1_StartTurn, messages: [Inspect_Model_V1_Message], tools: [Inspect_Model_V1_Tool],
    emit: @escaping @Sendable (Event) async throws -> Void
  ) async throws -> Reply {
    let request = Inspect_Model_V1_GenerateRequest.with {
      $0.model = turn.model
      $0.task = .code
      $0.client = turn.client
      $0.sessionID = turn.sessionID
      $0.turnID = turn.turnID
      $0.messages = messages
      $0.tools = tools
    }
    do {
      return try await model.generate(request) { response in
        var reply = Reply()
        var calls: [UInt32: (id: String, name: String, arguments: String)] = [:]
        var coalescer = TextCoalescer()
        for try await message in response.messages {
          switch message.kind {
          case .textDelta(let delta):
            reply.text += delta.text
            if let text = coalescer.add(delta.text) {
              try await emit(.with { $0.textDelta = .with { $0.text = text } })
            }
          case .toolCallStart(let start):
            calls[start.index] = (start.id, start.name, "")
          case .toolCallArgumentsDelta(let delta):
            calls[delta.index]?.arguments += delta.fragment
          case .usage(let usage):
            reply.usage = usage
          case .finish(let finish):
            reply.model = finish.model
          case .toolCallEnd, .none:
            break
          }
        }
        if let text = coalescer.flush() { try await emit(.with { $0.textDelta = .with { $0.text = text } }) }
        reply.calls = calls.keys.sorted().compactMap { index in
          calls[index].map { call in
            .with {
              $0.id = call.id
              $0.name = call.name
              $0.argumentsJson = call.arguments
            }
          }
        }
        return reply
      }
    } catch let error as RPCError {
      let type = error.metadata[stringValues: "inspect-model-error"].first(where: { _ in true })
      if type == "context_too_long" { throw ContextOverflow(message: error.message) }
      let kind = type.map { " [\($0)]" } ?? ""
      let reason =
        error.code == .unavailable
        ? "ModelRouter is unavailable at \(modelAddress): \(error.message)"
        : "the model call failed (\(RPCMetrics.statusName(error.code))\(kind)): \(error.message)"
      throw TurnEnd(finished: .failed(.model, reason))
    }
  }

  // MARK: - Tools

  /// The service's permission policy: the JSON file `INSPECT_AGENT_PERMISSIONS` names (same
  /// format as a repository's `.inspect/permissions.json`), else allow everything.
  static func permissions(environment: [String: String]) throws -> PermissionPolicy {
    guard let path = environment["INSPECT_AGENT_PERMISSIONS"], !path.isEmpty else { return PermissionPolicy() }
    guard let data = FileManager.default.contents(atPath: path) else {
      throw ConfigurationError("INSPECT_AGENT_PERMISSIONS=\(path) cannot be read")
    }
    do {
      return try PermissionPolicy.parse(data, source: "INSPECT_AGENT_PERMISSIONS=\(path)")
    } catch {
      throw ConfigurationError("\(error)")
    }
  }

  /// The turn's tools and hooks: the registry, then the built-in hooks (sync gate, workspace
  /// confinement, the permission policy of the repository — `.inspect/permissions.json`, read
  /// from the sandbox before the agent can change it — then the service's), the added ones, and
  /// the output limit.
  private func toolCalls(
    for turn: Inspect_Sandbox_V1_StartTurn, sandbox: SandboxOfTurn, open: OpenToolCalls, decisions: TurnDecisions,
    emit: @escaping @Sendable (Event) async throws -> Void
  ) async throws -> TurnToolCalls {
    let configuration: MCPConfiguration?
    do {
      configuration = try MCPConfiguration.read(from: sandbox.entry.instance)
    } catch {
      throw TurnEnd(finished: .failed(.tool, "\(error)"))
    }
    var mcp = MCPConnections.none
    if let configuration {
      mcp = await MCPConnections.connect(configuration, sandbox: sandbox.entry.instance, logger: logger)
    }
    let registry: ToolRegistry
    do {
      registry = try ToolRegistry(tools + IntegrationTools.tools(for: turn.credentials) + mcp.tools)
    } catch {
      await mcp.close()
      throw TurnEnd(finished: .failed(.internal, "the tools could not be registered: \(error)"))
    }
    var repositoryPolicy: PermissionPolicy?
    if let file = try? sandbox.entry.instance.readFile(PermissionPolicy.repositoryFile, offset: 0, limit: 1 << 20) {
      do {
        repositoryPolicy = try PermissionPolicy.parse(file.content, source: PermissionPolicy.repositoryFile)
      } catch {
        throw TurnEnd(finished: .failed(.tool, "\(error)"))
      }
    }
    let sessionPermissions = SessionPermissions(turn.sessionRules)
    let permissionHook: PermissionHook
    do {
      permissionHook = try PermissionHook(
        service: permissions, repository: repositoryPolicy, session: sessionPermissions)
    } catch {
      throw TurnEnd(finished: .failed(.internal, "the service's permission policy cannot be used: \(error)"))
    }
    let before: [any ToolHook] = [SyncGateHook(sandbox: sandbox), WorkspaceConfinementHook(), permissionHook]
    return TurnToolCalls(
      registry: registry, hooks: before + hooks + [OutputLimitHook(artifacts: artifacts, emit: emit)], turn: turn,
      sandbox: sandbox, open: open, decisions: decisions, emit: emit, sessions: sessions,
      redactor: CredentialRedactor(turn.credentials), logger: logger, mcp: mcp, artifacts: artifacts,
      sessionPermissions: sessionPermissions)
  }
}

/// A person's request to stop a turn, and a way to wait for one.
final class TurnStop: Sendable {
  private struct State {
    var request: Inspect_Sandbox_V1_StopTurn?
    var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    var nextWaiter = 0
  }

  private let state = Mutex(State())

  init() {}

  var requested: Inspect_Sandbox_V1_StopTurn? { state.withLock { $0.request } }

  /// Records the stop (the first one counts) and wakes whoever waits.
  func request(_ stop: Inspect_Sandbox_V1_StopTurn) {
    let waiters = state.withLock { state in
      if state.request == nil { state.request = stop }
      defer { state.waiters = [:] }
      return Array(state.waiters.values)
    }
    for waiter in waiters { waiter.resume() }
  }

  /// Returns once a stop is requested, or when the calling task is cancelled.
  func wait() async {
    let id = state.withLock { state in
      defer { state.nextWaiter += 1 }
      return state.nextWaiter
    }
    await withTaskCancellationHandler {
      await withCheckedContinuation { continuation in
        let ready = state.withLock { state in
          if state.request != nil || Task.isCancelled { return true }
          state.waiters[id] = continuation
          return false
        }
        if ready { continuation.resume() }
      }
    } onCancel: {
      state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
    }
  }

  static func describe(_ stop: Inspect_Sandbox_V1_StopTurn) -> String {
    let who = stop.stoppedBy.displayName.isEmpty ? "stopped" : "stopped by \(stop.stoppedBy.displayName)"
    return stop.reason.isEmpty ? who : "\(who): \(stop.reason)"
  }
}

/// The tool calls of a turn that started and have not finished, in the order they started.
final class OpenToolCalls: Sendable {
  private let calls = Mutex<[(id: String, name: String)]>([])

  func add(_ id: String, name: String) { calls.withLock { $0.append((id, name)) } }
  func remove(_ id: String) { calls.withLock { $0.removeAll { $0.id == id } } }
  func drain() -> [(id: String, name: String)] {
    calls.withLock { calls in
      defer { calls = [] }
      return calls
    }
  }
}

/// Ends a turn early with a given outcome.
struct TurnEnd: Error {
  let finished: Inspect_Session_V1_TurnFinished
}

extension Inspect_Session_V1_TurnFinished {
  static func failed(_ phase: Inspect_Session_V1_TurnPhase, _ reason: String) -> Self {
    .with {
      $0.outcome = .failed
      $0.failedPhase = phase
      $0.reason = reason
    }
  }
}

/// Coalesces text deltas to at most about 20 events a second.
struct TextCoalescer {
  static let interval: Duration = .milliseconds(50)
  private var pending = ""
  private var lastFlush = ContinuousClock.now - .seconds(1)

  mutating func add(_ text: String) -> String? {
    pending += text
    guard ContinuousClock.now - lastFlush >= Self.interval else { return nil }
    return flush()
  }

  mutating func flush() -> String? {
    guard !pending.isEmpty else { return nil }
    defer { pending = "" }
    lastFlush = ContinuousClock.now
    return pending
  }
}

/// The turn's sandbox: its entry, and the turn's view of its sync — announced (`sandbox_status`
/// READY or FAILED) as soon as the loop sees it settled, waited for before a tool that writes.
final class SandboxOfTurn: Sendable {
  let entry: SandboxEntry
  private let manager: SandboxManager
  private let emit: @Sendable (Inspect_Session_V1_SessionEvent) async throws -> Void
  private let announced = Mutex(false)

  init(
    entry: SandboxEntry, manager: SandboxManager,
    emit: @escaping @Sendable (Inspect_Session_V1_SessionEvent) async throws -> Void
  ) {
    self.entry = entry
    self.manager = manager
    self.emit = emit
  }

  /// Emits the sync's outcome once it is known (does not wait for it).
  func announce() async throws {
    if case .syncing = entry.gate.state { return }
    guard
      announced.withLock({ announced in
        defer { announced = true }
        return !announced
      })
    else { return }
    let entry = self.entry
    try await emit(
      .with {
        $0.sandboxStatus = .with {
          $0.sandboxID = entry.id
          $0.imageID = entry.instance.image.id
          $0.commit = entry.commit
          if let duration = entry.gate.duration { $0.timings = ["sync": .init(rounding: duration)] }
          if case .failed(let reason) = entry.gate.state {
            $0.phase = .failed
            $0.message = "sync failed: \(reason)"
          } else {
            $0.phase = .ready
          }
        }
      })
  }

  /// Waits until the sandbox has synced; a failed or overlong sync ends the turn FAILED in SYNC.
  func synced() async throws {
    do {
      try await entry.writable(within: manager.configuration.syncWait)
    } catch let error as SandboxError {
      try? await announce()
      throw TurnEnd(finished: .failed(.sync, "\(error)"))
    }
    try await announce()
  }
}
