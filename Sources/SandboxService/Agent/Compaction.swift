import Foundation
import GRPCCore
import InspectKit
import InspectProtos

/// When and how the agent compacts its conversation.
///
/// Before each model call the loop knows how many tokens its messages hold: the provider's count
/// for what it sent last (`usage.input_tokens`) plus an estimate (four characters a token) of what
/// was added since. Past `threshold` of the model's context window (from ModelRouter's
/// `ListModels`, else ``defaultWindow``) the conversation so far is summarised by a model call
/// (task `compact`), a `compaction` event stores the summary, and the loop goes on with the
/// system message, the summary and the turn's request. A provider that still answers
/// `context_too_long` triggers one compaction and one retry. SessionService gives later turns
/// the latest summary in place of everything before it.
struct CompactionSettings: Sendable {
  /// The share of the window that triggers compaction (`INSPECT_AGENT_COMPACT_AT`, default 0.8).
  var threshold = 0.8
  /// The window assumed when ModelRouter does not know the model's (`INSPECT_AGENT_CONTEXT_WINDOW`).
  var defaultWindow = 128_000
  /// The model that writes summaries; nil uses the turn's model.
  var model: String?
  /// A tool result longer than this is cut when the conversation is shown to the summariser.
  static let resultExcerpt = 2_000

  static let prompt = """
    You compact the conversation of a coding agent so it can continue with less context. Write a \
    summary that lets the agent carry on without the original messages: the request it is working \
    on (quote it exactly, with its author), what it has learnt about the code (files, functions, \
    commands and their results), what it has changed so far, what failed and why, and what it was \
    about to do next. Be specific (paths, names, numbers); leave out pleasantries.
    """

  init() {}

  /// Reads `INSPECT_AGENT_COMPACT_AT`, `INSPECT_AGENT_CONTEXT_WINDOW`, `INSPECT_AGENT_COMPACTION_MODEL`.
  init(environment: [String: String]) throws {
    if let text = environment["INSPECT_AGENT_COMPACT_AT"], !text.isEmpty {
      guard let value = Double(text), value > 0, value <= 1 else {
        throw ConfigurationError(
          "INSPECT_AGENT_COMPACT_AT=\(text) is not a share of the window between 0 and 1 (e.g. 0.8)")
      }
      threshold = value
    }
    if let window = try environment.wholeNumber("INSPECT_AGENT_CONTEXT_WINDOW", in: 1_000...10_000_000) {
      defaultWindow = window
    }
    if let model = environment["INSPECT_AGENT_COMPACTION_MODEL"], !model.isEmpty { self.model = model }
  }

  /// About four characters a token (as ModelRouter's estimate).
  static func estimate(_ messages: [Inspect_Model_V1_Message]) -> Int {
    var characters = 0
    for message in messages {
      characters += message.text.count + message.images.count * 4_000
      for call in message.toolCalls { characters += call.name.count + call.argumentsJson.count }
      for result in message.toolResults { characters += result.content.count }
    }
    return (characters + 3) / 4
  }

  /// The conversation after the system message, as text for the summariser.
  static func render(_ messages: ArraySlice<Inspect_Model_V1_Message>) -> String {
    var lines: [String] = []
    for message in messages {
      switch message.role {
      case .user:
        lines.append("USER: \(message.text)")
      case .assistant:
        if !message.text.isEmpty { lines.append("AGENT: \(message.text)") }
        for call in message.toolCalls { lines.append("AGENT CALLS \(call.name) \(call.argumentsJson)") }
      case .tool:
        for result in message.toolResults {
          let content =
            result.content.count > resultExcerpt
            ? String(result.content.prefix(resultExcerpt)) + " … (cut)" : result.content
          lines.append("RESULT\(result.isError ? " (error)" : ""): \(content)")
        }
      default:
        if !message.text.isEmpty { lines.append(message.text) }
      }
    }
    return lines.joined(separator: "\n\n")
  }
}

/// The provider said the conversation does not fit the model's window.
struct ContextOverflow: Error {
  let message: String
}

extension AgentLoop {
  /// The context window of the turn's model as ModelRouter knows it, else the default.
  func contextWindow(for turn: Inspect_Sandbox_V1_StartTurn) async -> Int {
    guard let models = try? await model.listModels(.init()).models else { return compaction.defaultWindow }
    let match =
      turn.model.isEmpty
      ? models.first { $0.defaultForTasks.contains(.code) } : models.first { $0.id == turn.model }
    return match.map { Int($0.contextWindow) }.flatMap { $0 > 0 ? $0 : nil } ?? compaction.defaultWindow
  }

  /// Summarises `messages` and returns the shorter conversation: the system message, the summary,
  /// and the turn's request. Emits the `compaction` event.
  func compact(
    _ messages: [Inspect_Model_V1_Message], turn: Inspect_Sandbox_V1_StartTurn, tokensBefore: Int,
    emit: @escaping @Sendable (Event) async throws -> Void
  ) async throws -> [Inspect_Model_V1_Message] {
    let request = Inspect_Model_V1_GenerateRequest.instructed(
      task: .compact, model: compaction.model ?? turn.model, client: turn.client, system: CompactionSettings.prompt,
      user: CompactionSettings.render(messages.dropFirst()), sessionID: turn.sessionID, turnID: turn.turnID)
    let summary: String
    do {
      summary = try await model.text(of: request)
    } catch let error as RPCError {
      throw TurnEnd(
        finished: .failed(
          .model, "the conversation outgrew the model's window and compacting it failed: \(error.message)"))
    }
    let compacted: [Inspect_Model_V1_Message] = [
      messages[0],
      .with {
        $0.role = .user
        $0.text = "[Summary of the conversation so far, written when it was compacted]\n\n\(summary)"
      },
      Self.prompt(turn.prompts),
    ]
    let after = CompactionSettings.estimate(compacted)
    try await emit(
      .with {
        $0.compaction = .with {
          $0.summaryID = Identifier.make(.summary)
          $0.summary = summary
          $0.tokensBefore = UInt32(clamping: tokensBefore)
          $0.tokensAfter = UInt32(clamping: after)
        }
      })
    logger.info(
      "compacted the conversation",
      metadata: ["session.id": "\(turn.sessionID)", "tokens_before": "\(tokensBefore)", "tokens_after": "\(after)"])
    return compacted
  }
}
