import Foundation
import GRDB
import GRPCCore
import InspectKit
import InspectProtos
import InspectTestSupport
import Logging
import Synchronization
import Testing

@testable import SandboxService
@testable import SessionService

/// An agent whose turns do what the test says, in order (the last behaviour repeats).
final class ScriptedAgentRunner: AgentRunner, Sendable {
  typealias Turn =
    @Sendable (
      Inspect_Sandbox_V1_StartTurn, AsyncStream<Inspect_Sandbox_V1_RunAgentRequest>,
      @escaping @Sendable (Inspect_Session_V1_SessionEvent) -> Void
    ) async throws -> Inspect_Session_V1_TurnFinished

  let behaviours: [Turn]
  let started = Mutex<[Inspect_Sandbox_V1_StartTurn]>([])

  init(_ behaviours: Turn...) { self.behaviours = behaviours }

  func prewarm(repository: String, sessionID: String) async throws {
    throw RPCError(code: .unimplemented, message: "the scripted runner does not prewarm")
  }

  func run(
    start: Inspect_Sandbox_V1_StartTurn, controls: AsyncStream<Inspect_Sandbox_V1_RunAgentRequest>,
    onEvent: @escaping @Sendable (Inspect_Session_V1_SessionEvent) -> Void
  ) async throws -> Inspect_Session_V1_TurnFinished {
    let index = started.withLock { started in
      started.append(start)
      return started.count - 1
    }
    return try await behaviours[min(index, behaviours.count - 1)](start, controls, onEvent)
  }

  /// Starts a tool call (QUEUED, RUNNING) and never finishes it, ignoring every control message:
  /// only breaking the stream ends it.
  static let hangsInATool: Turn = { _, _, emit in
    emit(toolCall("tc-hang", .queued))
    emit(toolCall("tc-hang", .running))
    try await Task.sleep(for: .seconds(120))
    return .with { $0.outcome = .succeeded }
  }

  /// Starts a tool call, then on StopTurn ends it CANCELLED and the turn CANCELLED, as
  /// SandboxService does.
  static let stopsWhenAsked: Turn = { _, controls, emit in
    emit(toolCall("tc-stop", .queued))
    emit(toolCall("tc-stop", .running))
    for await control in controls {
      if case .stop(let stop) = control.kind {
        emit(toolCall("tc-stop", .cancelled))
        return .with {
          $0.outcome = .cancelled
          $0.reason = "stopped by \(stop.stoppedBy.displayName)"
        }
      }
    }
    return .with { $0.outcome = .succeeded }
  }

  /// Asks for approval of a tool call, then ends it as the decision says (naming who decided).
  static let asksForApproval: Turn = { _, controls, emit in
    emit(toolCall("tc-ask", .queued))
    var waiting = toolCall("tc-ask", .queued)
    waiting.toolCall.awaitingApproval = true
    emit(waiting)
    for await control in controls {
      guard case .decision(let decision) = control.kind, decision.toolCallID == "tc-ask" else { continue }
      var ended = toolCall("tc-ask", decision.approved ? .succeeded : .failed)
      ended.toolCall.result = "\(decision.approved ? "approved" : "denied") by \(decision.decidedBy.displayName)"
      emit(ended)
      return .with { $0.outcome = .succeeded }
    }
    return .with { $0.outcome = .failed }
  }

  static let succeeds: Turn = { start, _, emit in
    emit(.with { $0.textDelta = .with { $0.text = start.prompts.map(\.text).joined(separator: " + ") } })
    return .with { $0.outcome = .succeeded }
  }

  static func toolCall(_ id: String, _ state: Inspect_Session_V1_ToolCallState) -> Inspect_Session_V1_SessionEvent {
    .with {
      $0.toolCall = .with {
        $0.toolCallID = id
        $0.name = "run_command"
        $0.state = state
        $0.attempt = 1
        if state == .queued { $0.argumentsJson = #"{"command":"sleep 120"}"# }
      }
    }
  }
}

/// Polls `condition` every 10 ms for up to 10 s.
func eventually(_ condition: () async throws -> Bool) async throws -> Bool {
  let deadline = ContinuousClock.now + .seconds(10)
  while ContinuousClock.now < deadline {
    if try await condition() { return true }
    try await Task.sleep(for: .milliseconds(10))
  }
  return false
}

/// The session's stored events, read through a Subscribe up to its current last seq.
func storedEvents(
  _ sessions: SessionClient, _ metadata: Metadata, _ id: String
) async throws -> [Inspect_Session_V1_SessionEvent] {
  let last = try await sessions.getSession(.with { $0.sessionID = id }, metadata: metadata).session.lastSeq
  return try await collectEvents(sessions, metadata: metadata, session: id) { ($0.last?.seq ?? 0) >= last }
}

func toolCalls(_ events: [Inspect_Session_V1_SessionEvent]) -> [Inspect_Session_V1_ToolCall] {
  events.compactMap { if case .toolCall(let call) = $0.kind { call } else { nil } }
}

func turnsFinished(_ events: [Inspect_Session_V1_SessionEvent]) -> [Inspect_Session_V1_TurnFinished] {
  events.compactMap { if case .turnFinished(let finished) = $0.kind { finished } else { nil } }
}

func rpcCode(_ body: () async throws -> Void) async -> RPCError.Code? {
  do {
    try await body()
    return nil
  } catch let error as RPCError {
    return error.code
  } catch {
    return .unknown
  }
}

@Suite("Artifacts: stored by the agent, listed and served by SessionService")
struct ArtifactTests {
  @Test("ListArtifacts pages a session's artifacts; GetArtifact returns one with its content; bad ids are refused")
  func listAndGet() async throws {
    let dataDirectory = Mutex<URL?>(nil)
    let storesTwo: ScriptedAgentRunner.Turn = { start, _, emit in
      let store = ArtifactStore(dataDirectory: dataDirectory.withLock { $0 }!)
      for (index, text) in ["first output", "second output"].enumerated() {
        let artifact = try store.store(
          Data(text.utf8), name: "out-\(index).txt", mediaType: "text/plain", kind: .toolOutput,
          session: start.sessionID, turn: start.turnID, toolCall: "tc-\(index)")
        emit(.with { $0.artifactAdded = .with { $0.artifact = artifact } })
      }
      return .with { $0.outcome = .succeeded }
    }
    let harness = try await SessionHarness(runner: ScriptedAgentRunner(storesTwo))
    dataDirectory.withLock { $0 = harness.directory.url }
    try await harness.run { sessions, metadata in
      let id = try await sessions.createSession(
        .with {
          $0.repository = "local/demo"; $0.prompt = "make outputs"
        }, metadata: metadata
      ).session.id
      _ = try await collectEvents(sessions, metadata: metadata, session: id) { !turnsFinished($0).isEmpty }
      let page = try await sessions.listArtifacts(
        .with {
          $0.sessionID = id; $0.pageSize = 1
        }, metadata: metadata)
      #expect(page.artifacts.map(\.name) == ["out-0.txt"])
      #expect(!page.nextPageToken.isEmpty)
      let rest = try await sessions.listArtifacts(
        .with {
          $0.sessionID = id; $0.pageToken = page.nextPageToken
        }, metadata: metadata)
      #expect(rest.artifacts.map(\.name) == ["out-1.txt"])
      #expect(rest.nextPageToken.isEmpty)
      let got = try await sessions.getArtifact(
        .with {
          $0.sessionID = id; $0.artifactID = rest.artifacts[0].id
        }, metadata: metadata)
      #expect(String(decoding: got.content, as: UTF8.self) == "second output")
      #expect(got.artifact.kind == .toolOutput)
      #expect(got.artifact.sessionID == id)
      #expect(got.artifact.sizeBytes == 13)
      let unknown = await rpcCode {
        _ = try await sessions.getArtifact(
          .with {
            $0.sessionID = id; $0.artifactID = "art-nope"
          }, metadata: metadata)
      }
      #expect(unknown == .notFound)
      let badToken = await rpcCode {
        _ = try await sessions.listArtifacts(
          .with {
            $0.sessionID = id; $0.pageToken = "zzz"
          }, metadata: metadata)
      }
      #expect(badToken == .invalidArgument)
      // Content removed from disk: NOT_FOUND saying so, not an empty answer.
      try FileManager.default.removeItem(
        at: harness.directory.url.appendingPathComponent(page.artifacts[0].storagePath))
      let gone = await #expect(throws: RPCError.self) {
        _ = try await sessions.getArtifact(
          .with {
            $0.sessionID = id; $0.artifactID = page.artifacts[0].id
          }, metadata: metadata)
      }
      #expect(gone?.code == .notFound)
      #expect(gone?.message.contains("is gone") == true)
    }
  }
}

@Suite("StopSession and the prompt queue")
struct StopAndQueueTests {
  @Test("DecideToolCall hands a person's decision to the turn whose tool call waits; anything else is refused")
  func decideToolCall() async throws {
    let runner = ScriptedAgentRunner(ScriptedAgentRunner.asksForApproval)
    let harness = try await SessionHarness(runner: runner)
    try await harness.run { sessions, metadata in
      let id = try await sessions.createSession(
        .with {
          $0.repository = "local/demo"; $0.prompt = "deploy"
        }, metadata: metadata
      ).session.id
      let early = await rpcCode {
        _ = try await sessions.decideToolCall(
          .with {
            $0.sessionID = id; $0.toolCallID = "tc-other"; $0.approved = true
          }, metadata: metadata)
      }
      #expect(early == .failedPrecondition)
      _ = try await collectEvents(sessions, metadata: metadata, session: id) {
        toolCalls($0).contains { $0.awaitingApproval }
      }
      _ = try await sessions.decideToolCall(
        .with {
          $0.sessionID = id; $0.toolCallID = "tc-ask"; $0.approved = true
        }, metadata: metadata)
      let events = try await collectEvents(sessions, metadata: metadata, session: id) { !turnsFinished($0).isEmpty }
      #expect(toolCalls(events).last?.result == "approved by Ada")
      let again = await rpcCode {
        _ = try await sessions.decideToolCall(
          .with {
            $0.sessionID = id; $0.toolCallID = "tc-ask"; $0.approved = false
          }, metadata: metadata)
      }
      #expect(again == .failedPrecondition)
      let empty = await rpcCode {
        _ = try await sessions.decideToolCall(.with { $0.sessionID = id }, metadata: metadata)
      }
      #expect(empty == .invalidArgument)
    }
  }

  @Test(
    "session permission rules: given at creation (bad ones refused), a remembered decision joins them, later turns and child sessions get them"
  )
  func sessionPermissionRules() async throws {
    let runner = ScriptedAgentRunner(ScriptedAgentRunner.asksForApproval, ScriptedAgentRunner.succeeds)
    let harness = try await SessionHarness(runner: runner)
    try await harness.run { sessions, metadata in
      for (rule, message) in [
        (Inspect_Session_V1_PermissionRule.with { $0.decision = .allow }, "has no tool"),
        (.with { $0.tool = "run_command" }, "has no decision"),
        (
          .with {
            $0.tool = "run_command"; $0.path = "[z-a]"; $0.decision = .deny
          }, "not a valid glob"
        ),
      ] {
        do {
          _ = try await sessions.createSession(
            .with {
              $0.repository = "local/demo"; $0.permissionRules = [rule]
            }, metadata: metadata)
          Issue.record("a session was created with a bad rule: \(rule)")
        } catch let error as RPCError {
          #expect(error.code == .invalidArgument)
          #expect(error.message.contains(message), "\(error.message)")
        }
      }
      let given: [Inspect_Session_V1_PermissionRule] = [
        .with {
          $0.tool = "write_file"; $0.path = "docs/**"; $0.decision = .allow
          // Whoever the request names, the rule is set by its caller.
          $0.setBy = .with { $0.userID = "usr-someone-else" }
        },
        .with {
          $0.tool = "edit_file"; $0.decision = .ask
        },
      ]
      let id = try await sessions.createSession(
        .with {
          $0.repository = "local/demo"; $0.prompt = "deploy"; $0.permissionRules = given
        }, metadata: metadata
      ).session.id
      _ = try await collectEvents(sessions, metadata: metadata, session: id) {
        toolCalls($0).contains { $0.awaitingApproval }
      }
      _ = try await sessions.decideToolCall(
        .with {
          $0.sessionID = id; $0.toolCallID = "tc-ask"; $0.approved = true; $0.remember = true
        }, metadata: metadata)
      _ = try await collectEvents(sessions, metadata: metadata, session: id) { !turnsFinished($0).isEmpty }
      _ = try await sessions.sendPrompt(
        .with {
          $0.sessionID = id; $0.text = "again"
        }, metadata: metadata)
      _ = try await collectEvents(sessions, metadata: metadata, session: id) { turnsFinished($0).count == 2 }
      let started = runner.started.withLock { $0 }
      #expect(started.count == 2)
      // The first turn had the given rule; the decision reached it with `remember`, and the
      // second turn has the remembered rule first (newest first).
      // Matched in the order given.
      #expect(started[0].sessionRules.map(\.tool) == ["write_file", "edit_file"])
      #expect(started[0].sessionRules.first?.setBy.userID != "usr-someone-else")
      // Commits will be authored with the prompter's profile email.
      #expect(started[0].prompts.first?.author.email == "ada@example.com")
      #expect(started[0].sessionRules.first?.setBy.userID.isEmpty == false)
      #expect(started[1].sessionRules.map(\.tool) == ["run_command", "write_file", "edit_file"])
      #expect(started[1].sessionRules.first?.decision == .allow)
      #expect(started[1].sessionRules.first?.reason == "allowed for this session by Ada")
      // A child session starts with its parent's rules, in the same order, then its own.
      let child = try await sessions.createSession(
        .with {
          $0.repository = "local/demo"; $0.parentSessionID = id; $0.prompt = "child"
          $0.permissionRules = [
            .with {
              $0.tool = "git_commit_and_push"; $0.decision = .deny
            }
          ]
        }, metadata: metadata
      ).session.id
      _ = try await collectEvents(sessions, metadata: metadata, session: child) { !turnsFinished($0).isEmpty }
      let third = try #require(runner.started.withLock { $0 }.last)
      #expect(third.sessionID == child)
      #expect(third.sessionRules.map(\.tool) == ["git_commit_and_push", "run_command", "write_file", "edit_file"])
    }
  }

  @Test(
    "a stop ends a turn whose agent ignores it within 2 s: its running tool call and the turn end CANCELLED; the queued prompt then runs"
  )
  func stopBreaksAnUnresponsiveTurn() async throws {
    let runner = ScriptedAgentRunner(ScriptedAgentRunner.hangsInATool, ScriptedAgentRunner.succeeds)
    var settings = SessionSettings()
    settings.stopGrace = .milliseconds(500)
    let harness = try await SessionHarness(runner: runner, settings: settings)
    try await harness.run { sessions, metadata in
      let id = try await sessions.createSession(
        .with {
          $0.repository = "local/demo"; $0.prompt = "run forever"
        }, metadata: metadata
      ).session.id
      _ = try await collectEvents(sessions, metadata: metadata, session: id) {
        toolCalls($0).contains { $0.state == .running }
      }
      _ = try await sessions.sendPrompt(
        .with {
          $0.sessionID = id; $0.text = "then this"
        }, metadata: metadata)
      let clock = ContinuousClock()
      let begin = clock.now
      let stopped = try await sessions.stopSession(
        .with {
          $0.sessionID = id; $0.reason = "wrong approach"
        }, metadata: metadata)
      #expect(clock.now - begin < .seconds(5))
      #expect(stopped.wasRunning)
      #expect(stopped.cancelledPrompts == 0)
      let events = try await collectEvents(sessions, metadata: metadata, session: id) { turnsFinished($0).count == 2 }
      let finished = turnsFinished(events)
      #expect(finished[0].outcome == .cancelled)
      #expect(finished[0].reason == "stopped by Ada: wrong approach")
      #expect(events.first { $0.kindName == "turn_finished" }?.turnID == stopped.turnID)
      let hung = toolCalls(events).filter { $0.toolCallID == "tc-hang" }.map(\.state)
      #expect(hung == [.queued, .running, .cancelled])
      // The queued prompt stayed queued and ran next.
      #expect(finished[1].outcome == .succeeded)
      #expect(runner.started.withLock { $0.map { $0.prompts.map(\.text) } } == [["run forever"], ["then this"]])
      #expect(events.map(\.seq) == Array(1...UInt64(events.count)))
    }
  }

  @Test("a stop the agent honours ends the turn at once; clear_queue cancels the queued prompts too")
  func stopWithClearQueue() async throws {
    let runner = ScriptedAgentRunner(ScriptedAgentRunner.stopsWhenAsked, ScriptedAgentRunner.succeeds)
    let harness = try await SessionHarness(runner: runner)
    try await harness.run { sessions, metadata in
      let id = try await sessions.createSession(
        .with {
          $0.repository = "local/demo"; $0.prompt = "work"
        }, metadata: metadata
      ).session.id
      _ = try await collectEvents(sessions, metadata: metadata, session: id) {
        toolCalls($0).contains { $0.state == .running }
      }
      for text in ["a", "b"] {
        _ = try await sessions.sendPrompt(
          .with {
            $0.sessionID = id; $0.text = text
          }, metadata: metadata)
      }
      let stopped = try await sessions.stopSession(
        .with {
          $0.sessionID = id; $0.clearQueue_p = true
        }, metadata: metadata)
      #expect(stopped.wasRunning)
      #expect(stopped.cancelledPrompts == 2)
      let session = try await sessions.getSession(.with { $0.sessionID = id }, metadata: metadata)
      #expect(session.session.state == .idle)
      #expect(session.queuedPrompts.isEmpty)
      let events = try await storedEvents(sessions, metadata, id)
      #expect(events.filter { $0.kindName == "prompt_cancelled" }.count == 2)
      #expect(turnsFinished(events).map(\.outcome) == [.cancelled])
      // The agent ended the turn itself (in its own words), not the grace period running out.
      #expect(turnsFinished(events).first?.reason == "stopped by Ada")
      #expect(toolCalls(events).map(\.state) == [.queued, .running, .cancelled])
      #expect(runner.started.withLock { $0.count } == 1)
      // Stopping an idle session succeeds and does nothing.
      let idle = try await sessions.stopSession(.with { $0.sessionID = id }, metadata: metadata)
      #expect(!idle.wasRunning)
    }
  }

  @Test("queued prompts can be edited and cancelled (each an event); the next turn gets the edited queue")
  func editAndCancelQueuedPrompts() async throws {
    let runner = FakeAgentRunner(holdTurns: true)
    let harness = try await SessionHarness(runner: runner)
    try await harness.run { sessions, metadata in
      let created = try await sessions.createSession(
        .with {
          $0.repository = "local/demo"; $0.prompt = "first"
        }, metadata: metadata)
      let id = created.session.id
      _ = try await collectEvents(sessions, metadata: metadata, session: id) {
        $0.contains { $0.kindName == "text_delta" }
      }
      let second = try await sessions.sendPrompt(
        .with {
          $0.sessionID = id; $0.text = "second"
        }, metadata: metadata)
      let third = try await sessions.sendPrompt(
        .with {
          $0.sessionID = id; $0.text = "third"
        }, metadata: metadata)
      let fourth = try await sessions.sendPrompt(
        .with {
          $0.sessionID = id; $0.text = "fourth"
        }, metadata: metadata)

      let edited = try await sessions.editQueuedPrompt(
        .with {
          $0.sessionID = id; $0.promptID = third.promptID; $0.text = "third, edited"
        }, metadata: metadata)
      #expect(edited.prompt.text == "third, edited")
      #expect(edited.prompt.queuePosition == 2)
      let cancelled = try await sessions.cancelQueuedPrompt(
        .with {
          $0.sessionID = id; $0.promptID = second.promptID
        }, metadata: metadata)
      #expect(cancelled.prompt.state == .cancelled)
      let queue = try await sessions.getSession(.with { $0.sessionID = id }, metadata: metadata).queuedPrompts
      #expect(queue.map(\.text) == ["third, edited", "fourth"])
      #expect(queue.map(\.queuePosition) == [1, 2])

      // The running prompt cannot change; an unknown one is not found.
      #expect(
        await rpcCode {
          _ = try await sessions.editQueuedPrompt(
            .with {
              $0.sessionID = id; $0.promptID = created.promptID; $0.text = "x"
            }, metadata: metadata)
        } == .failedPrecondition)
      #expect(
        await rpcCode {
          _ = try await sessions.cancelQueuedPrompt(
            .with {
              $0.sessionID = id; $0.promptID = "msg-unknown"
            }, metadata: metadata)
        } == .notFound)
      #expect(
        await rpcCode {
          _ = try await sessions.editQueuedPrompt(
            .with {
              $0.sessionID = id; $0.promptID = fourth.promptID; $0.text = " "
            }, metadata: metadata)
        } == .invalidArgument)

      runner.release()
      runner.release()
      let events = try await collectEvents(sessions, metadata: metadata, session: id) { finishedTurns($0) == 2 }
      #expect(runner.turns.withLock { $0.map { $0.prompts.map(\.text) } } == [["first"], ["third, edited", "fourth"]])
      let updated = events.compactMap { if case .promptUpdated(let update) = $0.kind { update } else { nil } }
      #expect(updated.map(\.messageID) == [third.promptID])
      #expect(updated.first?.updatedBy.displayName == "Ada")
      let removed = events.compactMap { if case .promptCancelled(let cancel) = $0.kind { cancel } else { nil } }
      #expect(removed.map(\.messageID) == [second.promptID])
    }
  }
}

@Suite("Multiplayer: participants, roles and presence")
struct MultiplayerTests {
  @Test(
    "a non-member finds no session; a viewer watches but may not prompt or stop; a collaborator prompts as themself; the last owner stays"
  )
  func roles() async throws {
    let harness = try await SessionHarness(runner: FakeAgentRunner())
    let (bob, bobMetadata) = try await harness.makeUser("Bob")
    let (carol, carolMetadata) = try await harness.makeUser("Carol")
    try await harness.run { sessions, ada in
      let id = try await sessions.createSession(.with { $0.repository = "local/demo" }, metadata: ada).session.id

      // Bob is not a member: the session does not exist for him.
      #expect(
        await rpcCode { _ = try await sessions.getSession(.with { $0.sessionID = id }, metadata: bobMetadata) }
          == .notFound)
      #expect(
        await rpcCode {
          _ = try await sessions.sendPrompt(
            .with {
              $0.sessionID = id; $0.text = "hi"
            }, metadata: bobMetadata)
        } == .notFound)
      #expect(
        await rpcCode {
          _ = try await collectEvents(sessions, metadata: bobMetadata, session: id) { _ in true }
        } == .notFound)
      #expect(try await sessions.listSessions(.init(), metadata: bobMetadata).sessions.isEmpty)

      // He joins as a viewer with the id: he may watch, not prompt or stop.
      let joined = try await sessions.addParticipant(
        .with {
          $0.sessionID = id; $0.role = .viewer
        }, metadata: bobMetadata)
      #expect(joined.participant.user.userID == bob.id)
      #expect(joined.participant.role == .viewer)
      _ = try await sessions.getSession(.with { $0.sessionID = id }, metadata: bobMetadata)
      #expect(
        await rpcCode {
          _ = try await sessions.sendPrompt(
            .with {
              $0.sessionID = id; $0.text = "hi"
            }, metadata: bobMetadata)
        } == .permissionDenied)
      #expect(
        await rpcCode { _ = try await sessions.stopSession(.with { $0.sessionID = id }, metadata: bobMetadata) }
          == .permissionDenied)
      #expect(
        await rpcCode {
          _ = try await sessions.addParticipant(
            .with {
              $0.sessionID = id; $0.userID = carol.id; $0.role = .viewer
            }, metadata: bobMetadata)
        } == .permissionDenied)

      // Ada makes him a collaborator; his prompt carries him as author.
      _ = try await sessions.addParticipant(
        .with {
          $0.sessionID = id; $0.userID = bob.id; $0.role = .collaborator
        }, metadata: ada)
      _ = try await sessions.sendPrompt(
        .with {
          $0.sessionID = id; $0.text = "from Bob"; $0.client = "slack"
        }, metadata: bobMetadata)
      let events = try await collectEvents(sessions, metadata: ada, session: id) { finishedTurns($0) == 1 }
      let queued = events.compactMap { if case .promptQueued(let queued) = $0.kind { queued } else { nil } }
      #expect(queued.map(\.author.displayName) == ["Bob"])
      #expect(queued.map(\.client) == ["slack"])
      let changes = events.compactMap { if case .participant(let change) = $0.kind { change } else { nil } }
      #expect(changes.map(\.change) == [.added, .roleChanged])
      #expect(changes.map(\.changedBy.displayName) == ["Bob", "Ada"])

      // The session keeps an owner; a participant may leave; Carol is still no member.
      #expect(
        await rpcCode {
          _ = try await sessions.removeParticipant(.with { $0.sessionID = id }, metadata: ada)
        } == .failedPrecondition)
      _ = try await sessions.removeParticipant(.with { $0.sessionID = id }, metadata: bobMetadata)
      #expect(
        await rpcCode { _ = try await sessions.getSession(.with { $0.sessionID = id }, metadata: bobMetadata) }
          == .notFound)
      #expect(
        await rpcCode {
          _ = try await sessions.stopSession(.with { $0.sessionID = id }, metadata: carolMetadata)
        } == .notFound)
      let session = try await sessions.getSession(.with { $0.sessionID = id }, metadata: ada).session
      #expect(session.participants.map(\.user.displayName) == ["Ada"])
      #expect(session.participants.map(\.role) == [.owner])
    }
  }

  @Test("watching marks a person online and leaving offline, once per person however many streams they open")
  func presence() async throws {
    let harness = try await SessionHarness(runner: FakeAgentRunner())
    let (bob, bobMetadata) = try await harness.makeUser("Bob")
    try await harness.run { sessions, ada in
      let id = try await sessions.createSession(
        .with {
          $0.repository = "local/demo"
          $0.participants = [
            .with {
              $0.userID = bob.id; $0.role = .viewer
            }
          ]
        }, metadata: ada
      ).session.id
      // Two streams of Bob's at once: one online event, then one offline event when both end.
      let typing: @Sendable ([Inspect_Session_V1_SessionEvent]) -> Bool = { events in
        events.contains { if case .presence(let presence) = $0.kind { presence.state == .typing } else { false } }
      }
      let session = try #require(try harness.registry.session(id: id))
      try await withThrowingTaskGroup(of: Void.self) { group in
        for _ in 0..<2 {
          group.addTask { _ = try await collectEvents(sessions, metadata: bobMetadata, session: id, until: typing) }
        }
        #expect(try await eventually { await session.subscriberCount == 2 })
        try await sessions.updatePresence(
          .with {
            $0.sessionID = id; $0.state = .typing; $0.client = "web"
          }, metadata: ada)
        try await group.waitForAll()
      }
      #expect(
        await rpcCode { try await sessions.updatePresence(.with { $0.sessionID = id }, metadata: bobMetadata) }
          == .invalidArgument)
      var states: [Inspect_Session_V1_PresenceState] = []
      #expect(
        try await eventually {
          states = try await storedEvents(sessions, ada, id).compactMap {
            if case .presence(let presence) = $0.kind, presence.user.userID == bob.id { presence.state } else { nil }
          }
          return states == [.online, .offline]
        }, "\(states)")
    }
  }
}

@Suite("Child sessions")
struct ChildSessionTests {
  @Test("children are created under a parent, listed with their state, and refused past the depth and count limits")
  func childrenAndLimits() async throws {
    var settings = SessionSettings()
    settings.maxChildDepth = 1
    settings.maxChildren = 2
    let harness = try await SessionHarness(runner: FakeAgentRunner(), settings: settings)
    let (bob, bobMetadata) = try await harness.makeUser("Bob")
    try await harness.run { sessions, ada in
      let parent = try await sessions.createSession(
        .with {
          $0.repository = "local/demo"
          $0.participants = [
            .with {
              $0.userID = bob.id; $0.role = .viewer
            }
          ]
        }, metadata: ada
      ).session
      let child = try await sessions.createSession(
        .with {
          $0.repository = "local/demo"; $0.parentSessionID = parent.id; $0.client = "agent"; $0.prompt = "sub-task"
        }, metadata: ada
      ).session
      #expect(child.parentSessionID == parent.id)
      // The parent's people can see the child.
      #expect(child.participants.map(\.user.displayName).sorted() == ["Ada", "Bob"])
      let second = try await sessions.createSession(
        .with {
          $0.repository = "local/demo"; $0.parentSessionID = parent.id
        }, metadata: ada
      ).session
      let fetched = try await sessions.getSession(.with { $0.sessionID = parent.id }, metadata: ada).session
      #expect(fetched.childSessionIds == [child.id, second.id])
      let children = try await sessions.listSessions(.with { $0.parentSessionID = parent.id }, metadata: ada)
      #expect(Set(children.sessions.map(\.id)) == [child.id, second.id])
      #expect(children.sessions.allSatisfy { $0.state != .unspecified })

      let tooMany = await #expect(throws: RPCError.self) {
        _ = try await sessions.createSession(
          .with {
            $0.repository = "local/demo"; $0.parentSessionID = parent.id
          }, metadata: ada)
      }
      #expect(tooMany?.code == .resourceExhausted)
      #expect(tooMany?.message.contains("2 child sessions") == true)
      let tooDeep = await #expect(throws: RPCError.self) {
        _ = try await sessions.createSession(
          .with {
            $0.repository = "local/demo"; $0.parentSessionID = child.id
          }, metadata: ada)
      }
      #expect(tooDeep?.code == .resourceExhausted)
      #expect(tooDeep?.message.contains("at most 1 deep") == true)
      #expect(
        await rpcCode {
          _ = try await sessions.createSession(
            .with {
              $0.repository = "local/demo"; $0.parentSessionID = "ses-0-01m8q1b71txfv6451wymmwxg4g"
            },
            metadata: ada)
        } == .notFound)
      #expect(
        await rpcCode {
          _ = try await sessions.createSession(
            .with {
              $0.repository = "local/demo"; $0.parentSessionID = parent.id
            }, metadata: bobMetadata)
        } == .permissionDenied)
    }
  }
}

@Suite("Bad input to SessionService")
struct SessionBadInputTests {
  @Test("oversized prompts, seqs past the end, unspecified roles and unknown users get the right status and say why")
  func badInput() async throws {
    let harness = try await SessionHarness(runner: FakeAgentRunner(holdTurns: true))
    try await harness.run { sessions, metadata in
      let id = try await sessions.createSession(.with { $0.repository = "local/demo" }, metadata: metadata).session.id
      let huge = String(repeating: "x", count: 64 * 1024 + 1)
      let oversized = await #expect(throws: RPCError.self) {
        _ = try await sessions.sendPrompt(
          .with {
            $0.sessionID = id; $0.text = huge
          }, metadata: metadata)
      }
      #expect(oversized?.code == .invalidArgument)
      #expect(oversized?.message.contains("65537 bytes") == true)
      let future = await #expect(throws: RPCError.self) {
        _ = try await collectEvents(sessions, metadata: metadata, session: id, after: 99) { _ in true }
      }
      #expect(future?.code == .outOfRange)
      #expect(future?.message.contains("after_seq 99") == true)
      #expect(
        await rpcCode {
          _ = try await sessions.addParticipant(
            .with {
              $0.sessionID = id; $0.userID = "usr-x"
            }, metadata: metadata)
        } == .invalidArgument)
      #expect(
        await rpcCode {
          _ = try await sessions.addParticipant(
            .with {
              $0.sessionID = id; $0.userID = "usr-nobody"; $0.role = .viewer
            }, metadata: metadata)
        } == .notFound)
      #expect(
        await rpcCode {
          _ = try await sessions.getStats(.with { $0.activeWindow = .with { $0.seconds = -5 } }, metadata: metadata)
        } == .invalidArgument)
      // Nothing accepted was lost: the session is intact.
      #expect(try await sessions.getSession(.with { $0.sessionID = id }, metadata: metadata).session.lastSeq >= 1)
    }
  }
}

@Suite("GetStats")
struct StatsTests {
  @Test("sessions by state, prompts and people prompting in the window, turns, pull requests — overall and per client")
  func stats() async throws {
    let runner = ScriptedAgentRunner({ start, _, emit in
      emit(
        .with {
          $0.pullRequest = .with {
            $0.number = 7; $0.url = "http://127.0.0.1/pr/7";
            $0.state = start.prompts[0].text == "merge" ? .merged : .open
          }
        })
      return .with {
        $0.outcome = .succeeded; $0.inputTokens = 100; $0.outputTokens = 10
      }
    })
    let harness = try await SessionHarness(runner: runner)
    let (_, bobMetadata) = try await harness.makeUser("Bob")
    try await harness.run { sessions, ada in
      let web = try await sessions.createSession(
        .with {
          $0.repository = "local/demo"; $0.client = "web"; $0.prompt = "open"
        }, metadata: ada
      ).session.id
      _ = try await collectEvents(sessions, metadata: ada, session: web) { finishedTurns($0) == 1 }
      _ = try await sessions.sendPrompt(
        .with {
          $0.sessionID = web; $0.text = "merge"; $0.client = "web"
        }, metadata: ada)
      _ = try await collectEvents(sessions, metadata: ada, session: web) { finishedTurns($0) == 2 }
      _ = try await sessions.createSession(
        .with {
          $0.repository = "local/other"; $0.client = "slack"; $0.prompt = "hello"
        }, metadata: bobMetadata)
      var stats = Inspect_Session_V1_SessionStats()
      #expect(
        try await eventually {
          stats = try await sessions.getStats(.init(), metadata: ada).stats
          return stats.promptsTotal == 3 && stats.turnsSucceeded == 3
        }, "\(stats)")
      #expect(stats.sessionsTotal == 2)
      #expect(stats.sessionsCreated == 2)
      #expect(stats.sessionsByState.values.reduce(0, +) == 2)
      #expect(stats.humansPromptingNow == 2)
      #expect(stats.promptsInWindow == 3)
      #expect(stats.pullRequestsOpened == 2)
      #expect(stats.pullRequestsMerged == 1)
      #expect(stats.inputTokens == 300)
      #expect(stats.usersTotal == 2)
      let byClient = Dictionary(uniqueKeysWithValues: stats.byClient.map { ($0.client, $0) })
      #expect(byClient["web"]?.prompts == 2)
      #expect(byClient["web"]?.humansPromptingNow == 1)
      #expect(byClient["web"]?.pullRequestsMerged == 1)
      #expect(byClient["slack"]?.sessionsCreated == 1)
      // One repository only; and a window in the past counts nobody as prompting now.
      let demo = try await sessions.getStats(.with { $0.repository = "local/demo" }, metadata: ada).stats
      #expect(demo.sessionsTotal == 1)
      #expect(demo.promptsTotal == 2)
      let none = try await sessions.getStats(.with { $0.activeWindow = .with { $0.seconds = 0 } }, metadata: ada).stats
      #expect(none.humansPromptingNow == 0)
    }
  }
}

@Suite("Session lifecycle in memory and on disk")
struct SessionLifecycleTests {
  @Test("an idle session is evicted and loads again from its file with the same events, and goes on numbering")
  func evictionAndRehydration() async throws {
    var settings = SessionSettings()
    settings.idleEviction = .milliseconds(100)
    let harness = try await SessionHarness(runner: FakeAgentRunner(), settings: settings)
    try await harness.run { sessions, metadata in
      let id = try await sessions.createSession(
        .with {
          $0.repository = "local/demo"; $0.prompt = "one"
        }, metadata: metadata
      ).session.id
      let before = try await collectEvents(sessions, metadata: metadata, session: id) { finishedTurns($0) == 1 }
      #expect(try await eventually { harness.registry.liveCount == 0 })
      let replayed = try await collectEvents(sessions, metadata: metadata, session: id) {
        ($0.last?.seq ?? 0) >= (before.last?.seq ?? 0)
      }
      #expect(Array(replayed.prefix(before.count)) == before)
      let sent = try await sessions.sendPrompt(
        .with {
          $0.sessionID = id; $0.text = "two"
        }, metadata: metadata)
      #expect(sent.seq > before.last?.seq ?? 0)
      let after = try await collectEvents(sessions, metadata: metadata, session: id) { finishedTurns($0) == 2 }
      #expect(after.map(\.seq) == Array(1...UInt64(after.count)))
    }
  }

  @Test("tool calls, turns and prompts are tables of the session file, with foreign keys and NOT NULL enforced")
  func dataModel() async throws {
    let runner = ScriptedAgentRunner({ _, _, emit in
      emit(ScriptedAgentRunner.toolCall("tc-1", .queued))
      emit(ScriptedAgentRunner.toolCall("tc-1", .running))
      emit(
        .with {
          $0.toolCall = .with {
            $0.toolCallID = "tc-1"; $0.name = "run_command"; $0.state = .succeeded; $0.result = "ok"; $0.attempt = 1
          }
        })
      return .with { $0.outcome = .succeeded }
    })
    let harness = try await SessionHarness(runner: runner)
    try await harness.run { sessions, metadata in
      let id = try await sessions.createSession(
        .with {
          $0.repository = "local/demo"; $0.prompt = "go"
        }, metadata: metadata
      ).session.id
      _ = try await collectEvents(sessions, metadata: metadata, session: id) { finishedTurns($0) == 1 }
      let file = try SessionDatabase.open(at: SessionPaths(harness.directory.url).file(for: id))
      let row = try await file.writer.read { db in
        try Row.fetchOne(db, sql: "SELECT state, argumentsJson, result, attempt FROM toolCall WHERE id = 'tc-1'")
      }
      #expect(row?["state"] as String? == "succeeded")
      #expect(row?["result"] as String? == "ok")
      #expect((row?["argumentsJson"] as String?)?.contains("sleep") == true)
      let turn = try await file.writer.read { db in try String.fetchOne(db, sql: "SELECT outcome FROM turn") }
      #expect(turn == "succeeded")
      await #expect(throws: DatabaseError.self) {
        try await file.writer.write { db in
          try db.execute(
            sql: """
              INSERT INTO toolCall (id, turnId, name, state, lastSeq, updatedAt)
              VALUES ('tc-x', 'turn-none', 'x', 'queued', 1, CURRENT_TIMESTAMP)
              """)
        }
      }
      await #expect(throws: DatabaseError.self) {
        try await file.writer.write { db in
          try db.execute(
            sql: "INSERT INTO prompt (id, authorId, authorName, text, state) VALUES ('m', 'u', 'n', NULL, 'queued')")
        }
      }
      let migrations = try await file.writer.read { db in
        try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY rowid")
      }
      #expect(
        migrations == [
          "v1: events and prompts", "v2: turns, tool calls, artifacts and summaries", "v3: permission rules",
          "v4: events by kind", "v5: prompt attachments",
        ])
      // The newest pull request is found through the index, not by scanning the log.
      let plan = try await file.writer.read { db in
        try Row.fetchAll(
          db, sql: "EXPLAIN QUERY PLAN SELECT payload FROM event WHERE kind = 'pull_request' ORDER BY seq DESC LIMIT 1"
        ).map { $0["detail"] as String? ?? "" }.joined(separator: "; ")
      }
      #expect(plan.contains("event_on_kind_seq"), "\(plan)")
    }
  }
}

@Suite("The event log under concurrency")
struct EventLogPropertyTests {
  @Test(
    "concurrent appenders and subscribers joining at random points: every subscriber gets exactly seq k+1…end, in order",
    arguments: [1, 2, 3])
  func appendersAndSubscribers(seed: Int) async throws {
    var settings = SessionSettings()
    settings.subscriberBuffer = 1_000_000
    let harness = try await SessionHarness(runner: FakeAgentRunner(), settings: settings)
    try await harness.run { sessions, metadata in
      let id = try await sessions.createSession(.with { $0.repository = "local/demo" }, metadata: metadata).session.id
      let session = try #require(try harness.registry.session(id: id))
      let appenders = 4
      let perAppender = 150
      var generator = SeededGenerator(seed: UInt64(seed))
      let joinPoints = (0..<6).map { _ in Int.random(in: 0..<(appenders * perAppender), using: &generator) }
      let marker = "end-\(seed)"
      try await withThrowingTaskGroup(of: [UInt64].self) { group in
        for appender in 0..<appenders {
          group.addTask {
            for index in 0..<perAppender {
              try await session.append([.with { $0.textDelta = .with { $0.text = "\(appender).\(index)" } }])
            }
            return []
          }
        }
        for point in joinPoints {
          group.addTask {
            // Join once the log has reached roughly `point` events, from a seq at or before it.
            while await session.record.lastSeq < Int64(point) { try await Task.sleep(for: .milliseconds(1)) }
            let after = UInt64(max(0, point - 5))
            // Other subscribers' presence events may follow the marker in the same batch.
            let isMarker: @Sendable (Inspect_Session_V1_SessionEvent) -> Bool = {
              if case .sessionUpdated(let update) = $0.kind { update.title == marker } else { false }
            }
            let events = try await collectEvents(sessions, metadata: metadata, session: id, after: after) {
              $0.contains(where: isMarker)
            }
            let throughMarker = events.prefix { !isMarker($0) } + events.filter(isMarker).prefix(1)
            let seqs = throughMarker.map(\.seq)
            #expect(seqs == Array((after + 1)...(after + UInt64(seqs.count))), "joined after \(after)")
            return seqs
          }
        }
        // The marker goes last, once every appender is done.
        var finishedAppenders = 0
        while finishedAppenders < appenders, let result = try await group.next() {
          if result.isEmpty { finishedAppenders += 1 }
        }
        let markerSeq = try await session.append([.with { $0.sessionUpdated = .with { $0.title = marker } }])[0].seq
        for try await seqs in group where !seqs.isEmpty {
          #expect(seqs.last == markerSeq)
        }
      }
      let all = try await session.database.events(after: 0, limit: .max)
      #expect(all.map(\.seq) == Array(1...UInt64(all.count)))
      #expect(all.filter { $0.kindName == "text_delta" }.count == appenders * perAppender)
    }
  }
}

/// A deterministic generator (SplitMix64) so a failing seed can be replayed.
struct SeededGenerator: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_E4B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
