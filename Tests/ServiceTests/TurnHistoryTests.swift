import InspectProtos
import Testing

@testable import SandboxService
@testable import SessionService

@Suite("A session's earlier turns reach the model")
struct TurnHistoryTests {
  typealias Event = Inspect_Session_V1_SessionEvent

  static func event(_ turn: String, _ fill: (inout Event) -> Void) -> Event {
    var event = Event()
    event.turnID = turn
    fill(&event)
    return event
  }

  /// A turn that read a file, then started a command that never finished (the turn failed).
  static let events: [Event] = [
    event("") {
      $0.promptQueued = .with {
        $0.messageID = "msg-1"; $0.text = "fix it"; $0.author.displayName = "Ada"
      }
    },
    event("turn-1") {
      $0.turnStarted = .with {
        $0.turnID = "turn-1"; $0.promptIds = ["msg-1"]
      }
    },
    event("turn-1") {
      $0.assistantMessage = .with {
        $0.text = "Reading."; $0.toolCallIds = ["tc-1"]
      }
    },
    event("turn-1") {
      $0.toolCall = .with {
        $0.toolCallID = "tc-1"; $0.name = "read_file"; $0.state = .queued; $0.argumentsJson = #"{"path":"a"}"#
      }
    },
    event("turn-1") {
      $0.toolCall = .with {
        $0.toolCallID = "tc-1"; $0.name = "read_file"; $0.state = .succeeded; $0.result = "contents"
      }
    },
    event("turn-1") {
      $0.assistantMessage = .with {
        $0.text = "Testing."; $0.toolCallIds = ["tc-2"]
      }
    },
    event("turn-1") {
      $0.toolCall = .with {
        $0.toolCallID = "tc-2"; $0.name = "run_command"; $0.state = .queued; $0.argumentsJson = "{}"
      }
    },
    event("turn-1") {
      $0.turnFinished = .with {
        $0.outcome = .failed; $0.reason = "the sandbox died"
      }
    },
  ]

  @Test("history lists prompts, answers with their tool calls, every call's result, and how the turn ended")
  func history() {
    let items = TurnHistory.build(from: Self.events).items
    let kinds = items.map { item -> String in
      switch item.kind {
      case .prompt: "prompt"
      case .assistantMessage: "assistant"
      case .toolResult(let result): result.isError ? "error-result" : "result"
      case .turnEnd: "end"
      case .none: "none"
      }
    }
    #expect(kinds == ["prompt", "assistant", "result", "assistant", "error-result", "end"])
    if case .assistantMessage(let message) = items[1].kind {
      #expect(message.toolCalls.map(\.name) == ["read_file"])
      #expect(message.toolCalls.first?.argumentsJson == #"{"path":"a"}"#)
    }
    if case .toolResult(let unfinished) = items[4].kind {
      #expect(unfinished.toolCallID == "tc-2")
      #expect(unfinished.content.contains("the sandbox died"))
    }
  }

  @Test("after a compaction, history is its summary plus what came after it")
  func compaction() {
    var events = Self.events
    events.append(
      Self.event("turn-1") {
        $0.compaction = .with {
          $0.summaryID = "sum-1"; $0.summary = "Ada asked to fix it; the sandbox died."
        }
      })
    events.append(
      Self.event("") {
        $0.promptQueued = .with {
          $0.messageID = "msg-2"; $0.text = "again"; $0.author.displayName = "Ada"
        }
      })
    events.append(
      Self.event("turn-2") {
        $0.turnStarted = .with {
          $0.turnID = "turn-2"; $0.promptIds = ["msg-2"]
        }
      })
    events.append(Self.event("turn-2") { $0.turnFinished = .with { $0.outcome = .succeeded } })
    let history = TurnHistory.build(from: events)
    #expect(history.compactionSummaryID == "sum-1")
    #expect(history.compactionSummary == "Ada asked to fix it; the sandbox died.")
    #expect(history.items.map(\.turnID) == ["turn-2", "turn-2"])
    let messages = AgentLoop.messages(for: .with { $0.history = history })
    #expect(messages[1].text.contains("Ada asked to fix it; the sandbox died."))
  }

  @Test("a retried tool call gives the model one result: its last attempt's")
  func retriedCall() {
    var events = Array(Self.events.prefix(4))
    for (state, attempt, result) in [
      (Inspect_Session_V1_ToolCallState.failed, 1, "timed out"), (.queued, 2, ""), (.succeeded, 2, "contents"),
    ] {
      events.append(
        Self.event("turn-1") {
          $0.toolCall = .with {
            $0.toolCallID = "tc-1"; $0.name = "read_file"; $0.state = state; $0.attempt = UInt32(attempt)
            $0.result = result
          }
        })
    }
    events.append(Self.event("turn-1") { $0.turnFinished = .with { $0.outcome = .succeeded } })
    let results = TurnHistory.build(from: events).items.compactMap { item -> String? in
      if case .toolResult(let result) = item.kind { return result.content }
      return nil
    }
    #expect(results == ["contents"])
  }

  @Test("the model's messages: system, the earlier turn with matching tool results, then the new prompt")
  func messages() {
    let turn = Inspect_Sandbox_V1_StartTurn.with {
      $0.history = TurnHistory.build(from: Self.events)
      $0.prompts = [
        .with {
          $0.text = "try again"; $0.author.displayName = "Ada"
        }
      ]
    }
    let messages = AgentLoop.messages(for: turn)
    // The failed turn's end is told to the model before the new prompt.
    #expect(messages.map(\.role) == [.system, .user, .assistant, .tool, .assistant, .tool, .user, .user])
    #expect(messages[6].text.contains("ended failed: the sandbox died"))
    #expect(messages[1].text == "Ada: fix it")
    #expect(messages[2].toolCalls.map(\.id) == messages[3].toolResults.map(\.toolCallID))
    #expect(messages[5].toolResults.first?.isError == true)
    #expect(messages.last?.text == "Ada: try again")
  }
}
