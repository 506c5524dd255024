import ArgumentParser
import Foundation
import InspectKit
import InspectProtos

/// `inspect sessions [--repo R] [--parent ID]`: the sessions the caller takes part in, newest
/// first, one per line: id, state, repository, queued prompts, title.
struct SessionsCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sessions", abstract: "List your sessions, newest first.")

  @OptionGroup var client: ClientOptions

  @Option(help: "Only this repository (owner/name).")
  var repo: String?

  @Option(help: "Only the child sessions of this session.")
  var parent: String?

  @Option(help: "At most this many (default 50).")
  var limit: UInt32 = 50

  func run() async throws {
    let listed = try await client.withSessions { sessions, metadata in
      try await sessions.listSessions(
        .with {
          $0.repository = repo ?? ""
          $0.parentSessionID = parent ?? ""
          $0.pageSize = limit
        }, metadata: metadata)
    }
    for session in listed.sessions {
      let state = "\(session.state)".uppercased()
      let queued = session.queuedPrompts > 0 ? " (\(session.queuedPrompts) queued)" : ""
      StandardOutput.writeLine(
        "\(session.id)  \(state)\(queued)  \(session.repository.fullName)  \(session.title)")
    }
    if listed.sessions.isEmpty { StandardError.write("inspect: no sessions\n") }
  }
}

/// `inspect prompt ID "text"`: queues a prompt in a session (it runs when the current turn, if
/// any, has ended) and prints its id and place in the queue.
struct PromptCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "prompt", abstract: "Send a prompt to a session (queued behind a running turn).")

  @OptionGroup var client: ClientOptions

  @Flag(help: "Then follow the session until the next turn ends; exit 1 unless it succeeded.")
  var follow = false

  @Argument(help: "The session id.")
  var session: String

  @Argument(help: "What to ask for.")
  var text: String

  func run() async throws {
    let sent = try await client.withSessions { sessions, metadata in
      try await sessions.sendPrompt(
        .with {
          $0.sessionID = session
          $0.text = text
          $0.client = "cli"
          $0.idempotencyKey = Identifier.make(.message)
        }, metadata: metadata)
    }
    StandardOutput.writeLine("prompt \(sent.promptID) queued at position \(sent.queuePosition) (seq \(sent.seq))")
    guard follow else { return }
    let finished = try await Follower(client: client).follow(session, after: sent.seq, untilTurnEnds: true)
    if finished?.outcome != .succeeded { throw ExitCode(1) }
  }
}

/// `inspect stop ID [--clear-queue] [--reason R]`: stops the running turn (answers once it has
/// ended); queued prompts stay unless `--clear-queue`.
struct StopCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "stop", abstract: "Stop a session's running turn.")

  @OptionGroup var client: ClientOptions

  @Flag(help: "Also cancel every queued prompt.")
  var clearQueue = false

  @Option(help: "Why (shown to everyone in the session).")
  var reason: String?

  @Argument(help: "The session id.")
  var session: String

  func run() async throws {
    let stopped = try await client.withSessions { sessions, metadata in
      try await sessions.stopSession(
        .with {
          $0.sessionID = session
          $0.clearQueue_p = clearQueue
          $0.reason = reason ?? ""
        }, metadata: metadata)
    }
    let cancelled = stopped.cancelledPrompts > 0 ? "; \(stopped.cancelledPrompts) queued prompts cancelled" : ""
    StandardOutput.writeLine(
      stopped.wasRunning ? "stopped turn \(stopped.turnID)\(cancelled)" : "no turn was running\(cancelled)")
  }
}

/// `inspect join ID`: joins a session as a viewer (an owner can then make you a collaborator).
struct JoinCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "join", abstract: "Join a session as a viewer.")

  @OptionGroup var client: ClientOptions

  @Argument(help: "The session id.")
  var session: String

  func run() async throws {
    let joined = try await client.withSessions { sessions, metadata in
      try await sessions.addParticipant(
        .with {
          $0.sessionID = session
          $0.role = .viewer
        }, metadata: metadata)
    }
    StandardOutput.writeLine(
      "joined \(session) as \("\(joined.participant.role)".uppercased()); follow it with: inspect follow \(session)")
  }
}
