import Foundation
import InspectKit
import InspectProtos
import Logging

/// Reports a Slack session's turns in its thread: when a turn starts, one message is posted and
/// then updated in place (through ``SlackPoster``: at most one `chat.update` a second per channel)
/// with the status, the current step, the tool calls so far, the elapsed time and a Stop
/// button; when it ends, the message says how, and a last message gives the pull request (or
/// the pushed branch) and the agent's summary, or the failed phase and its reason.
///
/// A session is followed while it has a turn running or prompts queued. Where the report is
/// (the message, the event it resumes after, the last turn reported) is kept in the thread's
/// record, so a restarted service carries on updating the same message and never reports a
/// turn twice.
actor SlackProgress {
  let registry: SessionRegistry
  let poster: SlackPoster
  let sessionURL: @Sendable (String) -> String
  /// How often the progress message's elapsed time moves while nothing happens.
  let tick: Duration
  let logger: Logger
  /// Sessions being followed; true when asked to follow again after the current pass.
  private var active: [String: Bool] = [:]

  init(
    registry: SessionRegistry, poster: SlackPoster, sessionURL: @escaping @Sendable (String) -> String,
    tick: Duration = .seconds(15), logger: Logger
  ) {
    self.registry = registry
    self.poster = poster
    self.sessionURL = sessionURL
    self.tick = tick
    self.logger = logger
  }

  /// Follows the session (again) until it has nothing running or queued.
  func follow(_ sessionID: String) {
    if active[sessionID] != nil {
      active[sessionID] = true
      return
    }
    active[sessionID] = false
    Task { await self.loop(sessionID) }
  }

  /// Carries on reporting the sessions a previous run was following.
  func resume() async {
    do {
      for thread in try await registry.index.followedSlackThreads() {
        if let id = thread.sessionId { follow(id) }
      }
    } catch {
      logger.error("could not read the Slack threads being followed", metadata: ["error": "\(error)"])
    }
  }

  /// Failed passes (Slack refusing a post, a peer gone) are tried again this many times, with
  /// a growing pause, before the report gives up.
  static let maxFailures = 8

  private func loop(_ sessionID: String) async {
    var failures = 0
    while true {
      let outcome: PassOutcome
      do {
        outcome = try await report(sessionID)
        failures = 0
      } catch {
        failures += 1
        logger.warning(
          "a Slack thread's progress report failed",
          metadata: ["session.id": "\(sessionID)", "error": "\(error)", "failures": "\(failures)"])
        if failures < Self.maxFailures {
          try? await Task.sleep(for: .seconds(min(60, 1 << failures)))
          continue
        }
        outcome = .done
      }
      if outcome == .interrupted {
        // The service is stopping: the report carries on from `followSeq` at the next start.
        active[sessionID] = nil
        return
      }
      if active[sessionID] == true {
        active[sessionID] = false
        continue
      }
      // Recorded before the session leaves `active`, so a follow() arriving now starts a pass
      // whose `following = true` comes after this.
      do {
        if let thread = try await registry.index.slackThread(sessionID: sessionID) {
          try await registry.index.updateSlackThread(key: thread.key) { $0.following = false }
        }
      } catch {
        logger.warning("could not record the end of a Slack report", metadata: ["error": "\(error)"])
      }
      if active[sessionID] == true {
        active[sessionID] = false
        continue
      }
      active[sessionID] = nil
      return
    }
  }

  enum PassOutcome: Sendable { case done, interrupted }

  /// One pass: replays the session's events after the thread's `followSeq`, then follows live
  /// ones, until no turn is running, nothing is queued and every event was read (`done`), or the
  /// session closed under it (`interrupted`: the service is stopping).
  private nonisolated func report(_ sessionID: String) async throws -> PassOutcome {
    guard var thread = try await registry.index.slackThread(sessionID: sessionID) else { return .done }
    thread = try await registry.index.updateSlackThread(key: thread.key) { $0.following = true } ?? thread
    let pullRequest = try await registry.index.pullRequest(sessionID: sessionID)
    let reporter = TurnReporter(
      thread: thread, sessionURL: sessionURL(sessionID), pullRequest: pullRequest?.url, poster: poster,
      index: registry.index)
    let outcome: PassOutcome? = try await registry.withSession(id: sessionID) { session in
      await reporter.setRepository(await session.record.repository)
      // Keeps the elapsed time moving while a step takes long without events.
      let ticker = Task { [tick] in
        while !Task.isCancelled {
          try? await Task.sleep(for: tick)
          await reporter.tick()
        }
      }
      defer { ticker.cancel() }
      var after = UInt64(max(0, thread.followSeq))
      while true {
        let (subscription, replayThrough) = try await session.subscribe(after: after)
        do {
          while after < replayThrough {
            let page = try await session.database.events(after: after, through: replayThrough, limit: 500)
            guard let last = page.last else { break }
            for event in page { try await reporter.handle(event) }
            after = last.seq
          }
          if try await Self.isDone(session, reporter, after: after) {
            await session.unsubscribe(subscription)
            return .done
          }
          var resynced = false
          reading: while let item = await subscription.next() {
            switch item {
            case .events(let events):
              for event in events {
                try await reporter.handle(event)
                after = event.seq
              }
              if try await Self.isDone(session, reporter, after: after) {
                await session.unsubscribe(subscription)
                return .done
              }
            case .resync(let seq):
              after = seq
              resynced = true
              break reading
            }
          }
          await session.unsubscribe(subscription)
          // Fell behind: subscribe again from where the report is. Otherwise the session closed
          // (the service is stopping).
          if !resynced { return .interrupted }
        } catch {
          await session.unsubscribe(subscription)
          throw error
        }
      }
    }
    return outcome ?? .done
  }

  /// Nothing left to report: no turn in progress, nothing queued, and every event read (the
  /// session's record can be ahead of the events handled so far).
  private static func isDone(_ session: SessionActor, _ reporter: TurnReporter, after: UInt64) async throws -> Bool {
    guard await reporter.current == nil else { return false }
    let record = await session.record
    return record.queuedPrompts == 0 && after >= UInt64(max(0, record.lastSeq))
  }
}

/// The state of the turn being reported, and the messages that show it.
actor TurnReporter {
  struct Turn {
    var id: String
    var started: Date
    var toolCalls: Set<String> = []
    var step = "Starting the sandbox"
    var lastText = ""
    var pullRequest: String?
    var pullRequestError: String?
    var pushed: String?
  }

  var thread: SlackThreadRecord
  let sessionURL: String
  let poster: SlackPoster
  let index: IndexDatabase
  var repository = ""
  var current: Turn?
  /// The session's pull request: opened by one turn, it is every later turn's too.
  var pullRequest: String?

  init(thread: SlackThreadRecord, sessionURL: String, pullRequest: String?, poster: SlackPoster, index: IndexDatabase) {
    self.thread = thread
    self.sessionURL = sessionURL
    self.pullRequest = pullRequest.flatMap { $0.isEmpty ? nil : $0 }
    self.poster = poster
    self.index = index
  }

  func setRepository(_ repository: String) { self.repository = repository }

  /// Updates the progress message with the time elapsed so far.
  func tick() async {
    guard let current, current.id == thread.turnId, let ts = thread.progressTs else { return }
    let now = Date()
    await poster.update(
      channel: thread.channel, ts: ts, text: Self.summary(current, now: now),
      blocks: blocks(current, now: now, final: nil))
  }

  func handle(_ event: Inspect_Session_V1_SessionEvent) async throws {
    let time = event.hasTime ? event.time.date : Date()
    switch event.kind {
    case .turnStarted(let started):
      var turn = Turn(id: started.turnID, started: time)
      if thread.turnId != started.turnID || thread.progressTs == nil {
        let ts = try await poster.post(
          channel: thread.channel, thread: thread.threadTs, text: "Working on it…",
          blocks: blocks(turn, now: time, final: nil))
        let seq = Int64(event.seq) - 1
        let key = thread.key
        thread =
          try await index.updateSlackThread(key: key) {
            $0.turnId = started.turnID
            $0.progressTs = ts
            $0.followSeq = seq
          } ?? thread
      }
      turn.step = "Starting the sandbox"
      current = turn
      return
    case .sandboxStatus(let status):
      current?.step = Self.sandboxStep(status.phase)
    case .textDelta:
      if current?.step.hasPrefix("Running") != true { current?.step = "Thinking" }
    case .assistantMessage(let message):
      if !message.text.isEmpty { current?.lastText = message.text }
    case .toolCall(let call):
      current?.toolCalls.insert(call.toolCallID)
      current?.step = Self.toolStep(call)
    case .branchPushed(let pushed):
      current?.pushed = "`\(SlackText.escape(pushed.branch))` (\(pushed.commit.prefix(7)))"
    case .pullRequest(let pull):
      if pull.state == .failed {
        current?.pullRequestError = pull.error
      } else if !pull.url.isEmpty {
        pullRequest = pull.url
      }
    case .turnFinished(let finished):
      try await finish(finished, seq: event.seq, at: time)
      return
    default:
      return
    }
    guard let current, current.id == thread.turnId, let ts = thread.progressTs else { return }
    await poster.update(
      channel: thread.channel, ts: ts, text: Self.summary(current, now: time),
      blocks: blocks(current, now: time, final: nil))
  }

  private func finish(_ finished: Inspect_Session_V1_TurnFinished, seq: UInt64, at time: Date) async throws {
    guard var turn = current else { return }
    current = nil
    guard thread.finishedTurnId != turn.id else { return }
    turn.pullRequest = pullRequest
    turn.step = ""
    if let ts = thread.progressTs, thread.turnId == turn.id {
      await poster.update(
        channel: thread.channel, ts: ts, text: Self.summary(turn, now: time),
        blocks: blocks(turn, now: time, final: finished))
    }
    let message = Self.finalMessage(turn, finished)
    _ = try await poster.post(channel: thread.channel, thread: thread.threadTs, text: message)
    let key = thread.key
    let id = turn.id
    thread =
      try await index.updateSlackThread(key: key) {
        $0.finishedTurnId = id
        $0.followSeq = Int64(seq)
      } ?? thread
  }

  // MARK: - Rendering

  func blocks(_ turn: Turn, now: Date, final: Inspect_Session_V1_TurnFinished?) -> [JSONValue] {
    let repository = SlackText.escape(repository)
    let headline: String
    switch final?.outcome {
    case nil: headline = ":hourglass_flowing_sand: *Working* in `\(repository)`"
    case .succeeded?: headline = ":white_check_mark: *Done* in `\(repository)`"
    case .cancelled?: headline = ":black_square_for_stop: *Stopped* in `\(repository)`"
    default: headline = ":x: *Failed* in `\(repository)`"
    }
    var facts: [String] = []
    if final == nil { facts.append("Step: \(SlackText.escape(turn.step))") }
    facts.append(Self.toolCalls(turn))
    let elapsed = final.map { $0.hasDuration ? Double($0.duration.seconds) : now.timeIntervalSince(turn.started) }
    facts.append(SlackText.duration(elapsed ?? now.timeIntervalSince(turn.started)))
    var buttons: [JSONValue] = []
    if final == nil {
      buttons.append(
        SlackText.button("Stop", actionID: SlackProcessor.stopAction, value: thread.sessionId ?? "", style: "danger"))
    }
    buttons.append(SlackText.button("Open in Inspect", actionID: SlackProcessor.openAction, url: sessionURL))
    return [SlackText.section(headline), SlackText.context(facts), SlackText.actions(buttons)]
  }

  static func summary(_ turn: Turn, now: Date) -> String {
    let step = turn.step.isEmpty ? "" : "\(SlackText.escape(turn.step)) · "
    return
      "Working: \(step)\(toolCalls(turn)) · \(SlackText.duration(now.timeIntervalSince(turn.started)))"
  }

  /// "1 tool call", "3 tool calls".
  static func toolCalls(_ turn: Turn) -> String {
    turn.toolCalls.count == 1 ? "1 tool call" : "\(turn.toolCalls.count) tool calls"
  }

  static func finalMessage(_ turn: Turn, _ finished: Inspect_Session_V1_TurnFinished) -> String {
    let took = SlackText.duration(finished.hasDuration ? Double(finished.duration.seconds) : 0)
    let calls = toolCalls(turn)
    switch finished.outcome {
    case .succeeded:
      var lines = [":white_check_mark: Done in \(took) · \(calls)"]
      if let url = turn.pullRequest {
        lines.append("Pull request: <\(url)>")
      } else if let pushed = turn.pushed {
        lines.append("Pushed \(pushed)")
      }
      if let error = turn.pullRequestError {
        lines.append("The pull request could not be opened: \(SlackText.escape(error))")
      }
      if !turn.lastText.isEmpty { lines.append(SlackText.cut(SlackText.escape(turn.lastText), 2500)) }
      return lines.joined(separator: "\n")
    case .cancelled:
      return ":black_square_for_stop: Stopped after \(took): \(SlackText.escape(finished.reason))"
    default:
      return
        ":x: Failed in \(SlackText.phase(finished.failedPhase)) after \(took): \(SlackText.escape(SlackText.cut(finished.reason, 2500)))"
    }
  }

  static func sandboxStep(_ phase: Inspect_Session_V1_SandboxPhase) -> String {
    switch phase {
    case .provisioning: "Starting the sandbox"
    case .syncing: "Syncing the repository"
    case .ready: "Thinking"
    case .snapshotting: "Saving a snapshot"
    case .failed: "The sandbox failed"
    default: "Working"
    }
  }

  static func toolStep(_ call: Inspect_Session_V1_ToolCall) -> String {
    switch call.state {
    case .queued, .running: "Running `\(call.name)`"
    case .succeeded: "`\(call.name)` done"
    case .failed: "`\(call.name)` failed"
    case .cancelled: "`\(call.name)` cancelled"
    default: "`\(call.name)`"
    }
  }
}
