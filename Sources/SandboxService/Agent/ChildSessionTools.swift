import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos

/// SessionService, as the agent's tools reach it (child sessions).
typealias SessionServiceClient = Inspect_Session_V1_SessionService.Client<HTTP2ClientTransport.Posix>

extension BuiltinTools {
  /// The metadata that makes a call act for the person whose prompt the turn answers (the last
  /// one): child sessions are theirs, and SessionService checks they may work in the parent.
  static func actingFor(_ turn: Inspect_Sandbox_V1_StartTurn) throws -> Metadata {
    guard let author = turn.prompts.last?.author.userID, !author.isEmpty else {
      throw ToolFailure("child sessions need the prompt's author, and this turn's prompt has none")
    }
    var metadata = Metadata()
    metadata.addString(author, forKey: InspectCaller.metadataKey)
    return metadata
  }

  static func sessions(_ context: ToolContext, tool: String) throws -> SessionServiceClient {
    guard let sessions = context.sessions else {
      throw ToolFailure("\(tool): child sessions are not available here (SandboxService has no SessionService address)")
    }
    return sessions
  }

  static let spawnChildSession = Tool(
    name: "spawn_child_session",
    description:
      "Start a child session that works on its own task in parallel (its own sandbox and branch), e.g. the same fix in "
      + "another repository. Returns its id; check it with child_session_status. Limits on depth and count apply.",
    schema: """
      {"type":"object","properties":{"prompt":{"type":"string","minLength":1,"description":"The child's task"},\
      "repository":{"type":"string","description":"owner/name; default this session's repository"},\
      "title":{"type":"string"}},"required":["prompt"],"additionalProperties":false}
      """,
    timeout: .seconds(30)
  ) { data, context in
    struct Arguments: Decodable {
      let prompt: String
      let repository: String?
      let title: String?
    }
    let arguments = try decode(Arguments.self, data, tool: "spawn_child_session")
    let sessions = try sessions(context, tool: "spawn_child_session")
    let turn = context.turn
    let repository = arguments.repository ?? turn.repository.fullName
    do {
      let child = try await sessions.createSession(
        .with {
          $0.repository = repository
          $0.baseBranch = arguments.repository == nil ? turn.baseBranch : ""
          $0.title = arguments.title ?? ""
          $0.model = turn.model
          $0.client = "agent"
          $0.parentSessionID = turn.sessionID
          $0.prompt = arguments.prompt
        }, metadata: try actingFor(turn)
      ).session
      return ToolOutput(
        content: "started child session \(child.id) on \(repository) (branch \(child.branch))",
        summary: "child \(child.id) on \(repository)")
    } catch let error as RPCError {
      throw ToolFailure(
        "spawn_child_session: SessionService refused (\(RPCMetrics.statusName(error.code))): \(error.message)",
        retryable: error.code == .unavailable)
    }
  }

  static let childSessionStatus = Tool(
    name: "child_session_status",
    description: "The state of a child session this session started: running or idle, queued prompts, pull request.",
    schema: """
      {"type":"object","properties":{"session_id":{"type":"string","minLength":1}},"required":["session_id"],\
      "additionalProperties":false}
      """,
    access: .read, timeout: .seconds(30)
  ) { data, context in
    struct Arguments: Decodable {
      let sessionID: String
      enum CodingKeys: String, CodingKey { case sessionID = "session_id" }
    }
    let arguments = try decode(Arguments.self, data, tool: "child_session_status")
    let sessions = try sessions(context, tool: "child_session_status")
    let session: Inspect_Session_V1_Session
    do {
      session = try await sessions.getSession(
        .with { $0.sessionID = arguments.sessionID }, metadata: try actingFor(context.turn)
      ).session
    } catch let error as RPCError {
      throw ToolFailure(
        "child_session_status: \(RPCMetrics.statusName(error.code)): \(error.message)",
        retryable: error.code == .unavailable)
    }
    guard session.parentSessionID == context.turn.sessionID else {
      throw ToolFailure("child_session_status: \(arguments.sessionID) is not a child of this session")
    }
    var lines = [
      "session \(session.id): \(session.title.isEmpty ? "(untitled)" : session.title)",
      "state: \("\(session.state)".uppercased()), queued prompts: \(session.queuedPrompts)",
      "branch: \(session.branch)",
    ]
    if session.hasPullRequest {
      lines.append("pull request: \(session.pullRequest.url) (\(session.pullRequest.state))")
    }
    return ToolOutput(content: lines.joined(separator: "\n"), summary: "\(session.id): \(session.state)")
  }
}
