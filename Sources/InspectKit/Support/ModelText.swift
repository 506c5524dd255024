import GRPCCore
import InspectProtos

extension Inspect_Model_V1_GenerateRequest {
  /// A request of one instruction (the system message) and one input (the user message), as the
  /// services' own model calls are: titles, compaction summaries, the classifier's rerank.
  public static func instructed(
    task: Inspect_Model_V1_Task, model: String, client: String, system: String, user: String,
    sessionID: String = "", turnID: String = ""
  ) -> Self {
    .with {
      $0.model = model
      $0.task = task
      $0.client = client
      $0.sessionID = sessionID
      $0.turnID = turnID
      $0.messages = [
        .with {
          $0.role = .system
          $0.text = system
        },
        .with {
          $0.role = .user
          $0.text = user
        },
      ]
    }
  }
}

extension Inspect_Model_V1_ModelRouterService.Client {
  /// Calls `Generate` and returns the answer's text (its text deltas, joined).
  public func text(
    of request: Inspect_Model_V1_GenerateRequest, options: CallOptions = .defaults
  ) async throws -> String {
    try await generate(request, options: options) { response in
      var text = ""
      for try await message in response.messages {
        if case .textDelta(let delta) = message.kind { text += delta.text }
      }
      return text
    }
  }
}
