import InspectProtos

extension Inspect_Session_V1_SessionEvent {
  /// The name of the event's kind, as in the protobuf field (`prompt_queued`, …): the SSE `event:`.
  public var kindName: String {
    guard let kind else { return "unknown" }
    switch kind {
    case .sessionCreated: return "session_created"
    case .promptQueued: return "prompt_queued"
    case .promptUpdated: return "prompt_updated"
    case .promptCancelled: return "prompt_cancelled"
    case .turnStarted: return "turn_started"
    case .sandboxStatus: return "sandbox_status"
    case .textDelta: return "text_delta"
    case .assistantMessage: return "assistant_message"
    case .toolCall: return "tool_call"
    case .commandOutput: return "command_output"
    case .artifactAdded: return "artifact_added"
    case .branchPushed: return "branch_pushed"
    case .pullRequest: return "pull_request"
    case .compaction: return "compaction"
    case .presence: return "presence"
    case .participant: return "participant"
    case .turnFinished: return "turn_finished"
    case .sessionUpdated: return "session_updated"
    case .usage: return "usage"
    }
  }
}
