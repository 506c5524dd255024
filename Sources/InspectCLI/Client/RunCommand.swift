import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos

/// `inspect run --repo R [--model M] "prompt"`: creates a session, sends the prompt and follows
/// it until the turn ends. Exits 0 when the turn succeeded, 1 otherwise.
struct RunCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "run", abstract: "Start a session with a prompt and follow it until the turn ends.")

  @OptionGroup var client: ClientOptions

  @Option(help: "The repository, owner/name (e.g. local/demo).")
  var repo: String

  @Option(help: "The model (e.g. scripted:demo, openai:gpt-4o-mini); default: ModelRouter's routing.")
  var model: String?

  @Argument(help: "What to ask for.")
  var prompt: String

  func run() async throws {
    let (_, finished) = try await Self.runSession(client: client, repo: repo, model: model ?? "", prompt: prompt)
    if finished?.outcome != .succeeded { throw ExitCode(1) }
  }

  /// Creates the session with the prompt and follows it until its turn ends.
  static func runSession(
    client: ClientOptions, repo: String, model: String, prompt: String
  ) async throws -> (Inspect_Session_V1_Session, Inspect_Session_V1_TurnFinished?) {
    let created = try await client.withSessions { sessions, metadata in
      try await sessions.createSession(
        .with {
          $0.repository = repo
          $0.model = model
          $0.client = "cli"
          $0.prompt = prompt
        }, metadata: metadata)
    }
    StandardOutput.writeLine(
      "session \(created.session.id) (\(created.session.repository.fullName), branch \(created.session.branch))")
    let finished = try await Follower(client: client).follow(created.session.id, after: 0, untilTurnEnds: true)
    return (created.session, finished)
  }
}

/// `inspect follow ID [--after SEQ]`: prints a session's events live; resumes after a dropped
/// connection from the last event it printed.
struct FollowCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "follow", abstract: "Print a session's events live (Ctrl-C to stop).")

  @OptionGroup var client: ClientOptions

  @Option(help: "Start after this event seq.")
  var after: UInt64 = 0

  @Flag(help: "Stop when the next turn ends; exit 1 unless it succeeded.")
  var untilTurnEnds = false

  @Argument(help: "The session id.")
  var session: String

  func run() async throws {
    let finished = try await Follower(client: client).follow(session, after: after, untilTurnEnds: untilTurnEnds)
    if untilTurnEnds, finished?.outcome != .succeeded { throw ExitCode(1) }
  }
}

/// Follows a session's stream through the Gateway, reconnecting after `after_seq` when the
/// connection drops or the server asks for a resync.
struct Follower {
  let client: ClientOptions
  var maxReconnects = 30

  func follow(_ session: String, after: UInt64, untilTurnEnds: Bool) async throws -> Inspect_Session_V1_TurnFinished? {
    var lastSeq = after
    var printer = EventPrinter()
    var failures = 0
    while true {
      let cursor = lastSeq
      let outcome: (seq: UInt64, finished: Inspect_Session_V1_TurnFinished?, printer: EventPrinter)
      do {
        outcome = try await client.withSessions { [printer] sessions, metadata in
          try await sessions.subscribe(
            .with {
              $0.sessionID = session; $0.afterSeq = cursor
            }, metadata: metadata
          ) {
            response in
            var printer = printer
            var seq = cursor
            for try await message in response.messages {
              for event in message.events where event.seq > seq {
                printer.print(event)
                seq = event.seq
                if untilTurnEnds, case .turnFinished(let finished) = event.kind { return (seq, finished, printer) }
              }
              if message.hasResync { return (seq, nil, printer) }
            }
            return (seq, nil, printer)
          }
        }
      } catch let error as RPCError where error.code == .unavailable || error.code == .cancelled {
        failures += 1
        guard failures <= maxReconnects else { throw error }
        StandardError.write("inspect: connection lost (\(error.message)); reconnecting after seq \(lastSeq)\n")
        try await Task.sleep(for: .milliseconds(500))
        continue
      }
      lastSeq = outcome.seq
      printer = outcome.printer
      if let finished = outcome.finished { return finished }
      if !untilTurnEnds, outcome.seq == cursor { return nil }
    }
  }
}
