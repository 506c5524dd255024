import InspectProtos

/// Rebuilds the conversation of a session's finished turns from its event log, for `StartTurn`:
/// each turn's prompts, the assistant's messages with their tool calls, each tool call's result,
/// and how the turn ended. A tool call that never finished gets an error result, so the model
/// always sees a result for every call it made.
enum TurnHistory {
  static func build(from events: [Inspect_Session_V1_SessionEvent]) -> Inspect_Sandbox_V1_History {
    var prompts: [String: Inspect_Sandbox_V1_TurnPrompt] = [:]
    var calls: [String: (name: String, arguments: String)] = [:]
    for event in events {
      switch event.kind {
      case .promptQueued(let queued):
        prompts[queued.messageID] = .with {
          $0.promptID = queued.messageID
          $0.author = queued.author
          $0.text = queued.text
          // Named, without content: the turn that answered the prompt saw it whole.
          $0.attachments = queued.attachments.map { attachment in
            .with {
              $0.name = attachment.name
              $0.mediaType = attachment.mediaType
            }
          }
        }
      case .toolCall(let call) where call.state == .queued:
        calls[call.toolCallID] = (call.name, call.argumentsJson)
      default:
        break
      }
    }
    var items: [Inspect_Sandbox_V1_HistoryItem] = []
    var unanswered: [String] = []
    var resultIndex: [String: Int] = [:]
    var summary: (id: String, text: String)?
    for event in events {
      let turnID = event.turnID
      func add(_ fill: (inout Inspect_Sandbox_V1_HistoryItem) -> Void) {
        var item = Inspect_Sandbox_V1_HistoryItem()
        item.turnID = turnID
        fill(&item)
        items.append(item)
      }
      switch event.kind {
      case .turnStarted(let started):
        for id in started.promptIds {
          if let prompt = prompts[id] { add { $0.prompt = prompt } }
        }
      case .assistantMessage(let message):
        add {
          $0.assistantMessage = .with {
            $0.text = message.text
            $0.toolCalls = message.toolCallIds.compactMap { id in
              calls[id].map { call in
                .with {
                  $0.toolCallID = id
                  $0.name = call.name
                  $0.argumentsJson = call.arguments
                }
              }
            }
          }
        }
        unanswered += message.toolCallIds.filter { calls[$0] != nil }
      case .toolCall(let call) where [.succeeded, .failed, .cancelled].contains(call.state):
        unanswered.removeAll { $0 == call.toolCallID }
        // A retried call finishes once per attempt: only its last result counts.
        if let earlier = resultIndex.removeValue(forKey: call.toolCallID) {
          items.remove(at: earlier)
          for (id, index) in resultIndex where index > earlier { resultIndex[id] = index - 1 }
        }
        resultIndex[call.toolCallID] = items.count
        add {
          $0.toolResult = .with {
            $0.toolCallID = call.toolCallID
            $0.name = call.name
            $0.content = call.result.isEmpty ? (call.error.isEmpty ? call.resultSummary : call.error) : call.result
            $0.isError = call.state != .succeeded
          }
        }
      case .compaction(let compaction):
        // The summary stands for everything before it (the current turn's request included).
        items.removeAll()
        resultIndex.removeAll()
        unanswered.removeAll()
        summary = (compaction.summaryID, compaction.summary)
      case .turnFinished(let finished):
        for id in unanswered {
          add {
            $0.toolResult = .with {
              $0.toolCallID = id
              $0.name = calls[id]?.name ?? ""
              $0.content = "the tool call did not finish: the turn ended (\(finished.reason))"
              $0.isError = true
            }
          }
        }
        unanswered = []
        add {
          $0.turnEnd = .with {
            $0.outcome = "\(finished.outcome)".uppercased()
            $0.reason = finished.reason
          }
        }
      default:
        break
      }
    }
    return .with {
      $0.items = items
      if let summary {
        $0.compactionSummaryID = summary.id
        $0.compactionSummary = summary.text
      }
    }
  }
}
