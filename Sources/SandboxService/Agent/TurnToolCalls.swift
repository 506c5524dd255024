import Foundation
import InspectKit
import InspectProtos
import Logging
import Synchronization

/// Runs a turn's tool calls through their lifecycle, each transition a `tool_call` event:
///
/// QUEUED (arguments) → RUNNING → SUCCEEDED | FAILED | CANCELLED, and FAILED → QUEUED (the next
/// attempt) when the tool marks the failure retryable and has retries left. Before running, the
/// arguments are checked against the tool's schema and the before-execute hooks decide (a call a
/// person must approve stays QUEUED with `awaiting_approval` until `DecideToolCall`); after, the
/// after-execute hooks shape what the model reads. Every finished event carries the duration of
/// its attempt and the result exactly as the model sees it.
struct TurnToolCalls: Sendable {
  typealias Event = Inspect_Session_V1_SessionEvent

  let registry: ToolRegistry
  let hooks: [any ToolHook]
  let turn: Inspect_Sandbox_V1_StartTurn
  let sandbox: SandboxOfTurn
  let open: OpenToolCalls
  let decisions: TurnDecisions
  let emit: @Sendable (Event) async throws -> Void
  var sessions: SessionServiceClient?
  /// Scrubs the turn's credential values out of everything a tool returns.
  var redactor = CredentialRedactor([])
  var logger = Logger(label: "inspect.agent.tools")
  /// The turn's MCP servers (closed when the turn ends).
  var mcp = MCPConnections.none
  /// Where tools store what they make (screenshots).
  var artifacts: ArtifactStore?
  /// The session's permission rules, which remembered decisions join.
  var sessionPermissions = SessionPermissions()

  /// Runs one call to its end and returns what the model reads. Throws only to end the turn
  /// (a failed sync, a stop, a broken event stream).
  func run(_ call: Inspect_Model_V1_ToolCall, id: String) async throws -> Inspect_Model_V1_ToolResult {
    open.add(id, name: call.name)
    var attempt = 1
    func event(
      _ state: Inspect_Session_V1_ToolCallState, _ fill: (inout Inspect_Session_V1_ToolCall) -> Void = { _ in }
    ) -> Event {
      .with {
        $0.toolCall = .with {
          $0.toolCallID = id
          $0.name = call.name
          $0.state = state
          $0.attempt = UInt32(attempt)
          fill(&$0)
        }
      }
    }
    /// Ends the call with `draft`, as the model will read it.
    func finish(_ draft: ToolResultDraft, duration: Duration) async throws -> Inspect_Model_V1_ToolResult {
      // A stopped turn's tool call ends CANCELLED (by the loop), not with what cancelling did to it.
      try Task.checkCancellation()
      try await emit(
        event(draft.failed ? .failed : .succeeded) {
          $0.result = draft.content
          $0.duration = .init(rounding: duration)
          $0.artifactID = draft.artifactID
          if draft.failed { $0.error = draft.content } else { $0.resultSummary = draft.summary }
        })
      open.remove(id)
      logger.debug(
        "tool call finished",
        metadata: [
          "tool": "\(call.name)", "tool_call.id": "\(id)", "failed": "\(draft.failed)", "attempt": "\(attempt)",
          "duration_ms": "\(duration.milliseconds)", "session.id": "\(turn.sessionID)",
        ])
      return .with {
        $0.toolCallID = call.id
        $0.content = draft.content
        $0.isError = draft.failed
      }
    }

    try await emit(event(.queued) { $0.argumentsJson = call.argumentsJson })
    guard let tool = registry.tool(named: call.name) else {
      let names = registry.tools.map(\.name).joined(separator: ", ")
      return try await finish(
        .init(content: "there is no tool named \(call.name); the tools are: \(names)", summary: "", failed: true),
        duration: .zero)
    }
    let arguments: JSONValue
    switch registry.arguments(of: tool, for: call.argumentsJson) {
    case .success(let value): arguments = value
    case .failure(let failure):
      return try await finish(.init(content: failure.description, summary: "", failed: true), duration: .zero)
    }
    let clock = ContinuousClock()
    while true {
      let invocation = ToolInvocation(
        tool: tool, id: id, arguments: arguments, argumentsJSON: call.argumentsJson, attempt: attempt, turn: turn)
      for hook in hooks {
        switch try await hook.beforeExecute(invocation) {
        case .proceed:
          continue
        case .deny(let reason):
          return try await finish(.init(content: reason, summary: "", failed: true), duration: .zero)
        case .ask(let reason):
          try await emit(
            event(.queued) {
              $0.argumentsJson = call.argumentsJson
              $0.awaitingApproval = true
              $0.resultSummary = reason
            })
          let decision = try await decisions.wait(for: id)
          if decision.remember { sessionPermissions.remember(decision, tool: tool.name) }
          let who = decision.decidedBy.displayName.isEmpty ? "a person" : decision.decidedBy.displayName
          let scope = decision.remember ? " for the rest of the session" : ""
          guard decision.approved else {
            let why = decision.reason.isEmpty ? "" : ": \(decision.reason)"
            return try await finish(
              .init(content: "\(tool.name) was denied by \(who)\(scope)\(why)", summary: "", failed: true),
              duration: .zero)
          }
          try await emit(event(.queued) { $0.resultSummary = "approved by \(who)\(scope)" })
        }
      }
      try await emit(event(.running))
      let started = clock.now
      var draft: ToolResultDraft
      do {
        let output = try await Self.run(tool, arguments: call.argumentsJson, context: context(id))
        draft = ToolResultDraft(
          content: redactor.scrub(output.content), summary: redactor.scrub(output.summary), failed: false,
          artifactID: output.artifactID)
      } catch let failure as ToolFailure {
        if failure.retryable, attempt <= tool.retries {
          try Task.checkCancellation()
          try await emit(
            event(.failed) {
              $0.error = redactor.scrub(failure.description)
              $0.duration = .init(rounding: clock.now - started)
            })
          attempt += 1
          try await emit(event(.queued) { $0.argumentsJson = call.argumentsJson })
          continue
        }
        draft = ToolResultDraft(content: redactor.scrub(failure.description), summary: "", failed: true)
      } catch let end as TurnEnd {
        throw end
      } catch is CancellationError {
        throw CancellationError()
      } catch {
        draft = ToolResultDraft(content: redactor.scrub("\(tool.name) failed: \(error)"), summary: "", failed: true)
      }
      for hook in hooks { try await hook.afterExecute(invocation, result: &draft) }
      return try await finish(draft, duration: clock.now - started)
    }
  }

  private func context(_ id: String) -> ToolContext {
    ToolContext(
      sandbox: sandbox.entry.instance, turn: turn, toolCallID: id, emit: emit, sessions: sessions, artifacts: artifacts)
  }

  /// Runs `tool`, failing when it takes longer than its timeout (at that moment: a tool that
  /// ignores cancellation is left behind, not waited for).
  static func run(_ tool: Tool, arguments: String, context: ToolContext) async throws -> ToolOutput {
    try await withTimeout(
      tool.timeout,
      timedOut: { ToolFailure("\(tool.name) timed out after \(tool.timeout) and was stopped", retryable: true) }
    ) {
      try await tool.run(Data(arguments.utf8), context)
    }
  }
}

/// People's decisions on tool calls that wait for approval, delivered from the RunAgent request
/// stream.
final class TurnDecisions: Sendable {
  private struct State {
    var decided: [String: Inspect_Sandbox_V1_ToolDecision] = [:]
    var waiters: [String: CheckedContinuation<Inspect_Sandbox_V1_ToolDecision?, Never>] = [:]
  }

  private let state = Mutex(State())

  init() {}

  /// Hands `decision` to the call waiting for it (or keeps it until that call asks).
  func deliver(_ decision: Inspect_Sandbox_V1_ToolDecision) {
    let waiter = state.withLock { state in
      guard let waiter = state.waiters.removeValue(forKey: decision.toolCallID) else {
        state.decided[decision.toolCallID] = decision
        return nil as CheckedContinuation<Inspect_Sandbox_V1_ToolDecision?, Never>?
      }
      return waiter
    }
    waiter?.resume(returning: decision)
  }

  /// The decision on call `id`; throws `CancellationError` when the turn stops first.
  func wait(for id: String) async throws -> Inspect_Sandbox_V1_ToolDecision {
    let decision = await withTaskCancellationHandler {
      await withCheckedContinuation { (continuation: CheckedContinuation<Inspect_Sandbox_V1_ToolDecision?, Never>) in
        let ready = state.withLock { state -> Inspect_Sandbox_V1_ToolDecision?? in
          if let decided = state.decided.removeValue(forKey: id) { return .some(decided) }
          if Task.isCancelled { return .some(nil) }
          state.waiters[id] = continuation
          return nil
        }
        if let ready { continuation.resume(returning: ready) }
      }
    } onCancel: {
      state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(returning: nil)
    }
    guard let decision else { throw CancellationError() }
    return decision
  }
}

/// Spots the agent calling the same tool with the same arguments again and again.
struct LoopDetector {
  enum Verdict: Equatable {
    case fine
    /// Point it out to the model (the count so far).
    case warn(Int)
    /// Stop the turn.
    case stop(Int)
  }

  let warning: Int
  let limit: Int
  private var last: String?
  private var repeats = 0

  init(warning: Int, limit: Int) {
    self.warning = warning
    self.limit = limit
  }

  /// Records a call; arguments are compared as JSON values (key order and spacing do not count).
  mutating func record(name: String, arguments: String) -> Verdict {
    let canonical: String
    if let value = try? JSONValue.parse(arguments.isEmpty ? "{}" : arguments),
      let data = try? JSONEncoder.sorted.encode(value)
    {
      canonical = String(decoding: data, as: UTF8.self)
    } else {
      canonical = arguments
    }
    let signature = name + "\u{0}" + canonical
    repeats = signature == last ? repeats + 1 : 1
    last = signature
    if repeats >= limit { return .stop(repeats) }
    if repeats >= warning { return .warn(repeats) }
    return .fine
  }
}

extension JSONEncoder {
  /// Compact output with sorted keys (a canonical form).
  fileprivate static var sorted: JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return encoder
  }
}

/// The turn's budgets (`StartTurn.budgets`; zero means no limit, steps aside).
enum Budget {
  /// Why the turn must stop, or nil while it is within its budgets.
  static func exceeded(
    _ budgets: Inspect_Sandbox_V1_Budgets, totals: (input: UInt64, output: UInt64, cost: Double), elapsed: Duration
  ) -> String? {
    let tokens = totals.input + totals.output
    if budgets.maxTokens > 0, tokens > budgets.maxTokens {
      return "the turn used \(tokens) tokens, over its budget of \(budgets.maxTokens)"
    }
    if budgets.maxCostUsd > 0, totals.cost > budgets.maxCostUsd {
      return String(format: "the turn cost $%.4f, over its budget of $%.4f", totals.cost, budgets.maxCostUsd)
    }
    if budgets.treeTokensRemaining > 0, tokens > budgets.treeTokensRemaining {
      return
        "the session tree's token budget ran out (\(budgets.treeTokensRemaining) were left; the turn used \(tokens))"
    }
    if budgets.treeCostUsdRemaining > 0, totals.cost > budgets.treeCostUsdRemaining {
      return String(
        format: "the session tree's cost budget ran out ($%.4f was left; the turn cost $%.4f)",
        budgets.treeCostUsdRemaining, totals.cost)
    }
    if budgets.hasMaxDuration {
      let most = Duration.seconds(budgets.maxDuration.seconds) + .nanoseconds(Int64(budgets.maxDuration.nanos))
      if most > .zero, elapsed > most { return "the turn ran for longer than its budget of \(most)" }
    }
    return nil
  }
}
