import Foundation
import GRDB
import GRPCCore
import InspectKit
import InspectProtos
import Logging
import SwiftProtobuf

/// One live session: the owner of its database file, its prompt queue, its running turn and its
/// subscribers. Every change is an event, stored (with the state it changes, in one transaction)
/// before it is delivered; subscribers receive events in `seq` order, each exactly once.
actor SessionActor {
  typealias Event = Inspect_Session_V1_SessionEvent

  nonisolated let id: String
  private(set) var record: SessionRecord
  let database: SessionDatabase
  let index: IndexDatabase
  let logger: Logger

  /// The newest seq handed to subscribers; events are delivered strictly in order after it.
  private var deliveredSeq: UInt64
  /// Batches stored but not yet delivered because an earlier batch is still being stored.
  private var undelivered: [UInt64: [Event]] = [:]
  private var subscribers: [ObjectIdentifier: Subscription] = [:]
  /// True while a turn loop runs for this session (at most one).
  private var turnLoopActive = false

  init(record: SessionRecord, database: SessionDatabase, index: IndexDatabase, lastSeq: UInt64, logger: Logger) {
    self.id = record.id
    self.record = record
    self.database = database
    self.index = index
    self.deliveredSeq = lastSeq
    var logger = logger
    logger[metadataKey: "session.id"] = "\(record.id)"
    self.logger = logger
  }

  // MARK: - Events

  /// Stores `events` (after `change`, in the same transaction), then delivers them.
  @discardableResult
  func append(
    _ events: [Event], turnID: String? = nil, change: (@Sendable (Database) throws -> Void)? = nil
  ) async throws -> [Event] {
    let prepared = events.map { event in
      var event = event
      event.sessionID = id
      if let turnID, event.turnID.isEmpty { event.turnID = turnID }
      return event
    }
    let stored = try await database.append(prepared, change: change)
    guard let first = stored.first, let last = stored.last else { return stored }
    record.lastSeq = Int64(last.seq)
    undelivered[first.seq] = stored
    while let next = undelivered.removeValue(forKey: deliveredSeq + 1) {
      deliveredSeq = next.last!.seq
      for (key, subscriber) in subscribers where !subscriber.offer(next) {
        subscribers.removeValue(forKey: key)
      }
    }
    return stored
  }

  /// Registers a subscriber that has (or will replay from storage) everything up to the
  /// returned seq; every later event reaches it live.
  func subscribe(after: UInt64) -> (subscription: Subscription, replayThrough: UInt64) {
    let subscription = Subscription(after: max(after, deliveredSeq))
    subscribers[ObjectIdentifier(subscription)] = subscription
    return (subscription, deliveredSeq)
  }

  func unsubscribe(_ subscription: Subscription) {
    subscription.close()
    subscribers.removeValue(forKey: ObjectIdentifier(subscription))
  }

  var subscriberCount: Int { subscribers.count }

  // MARK: - Prompts

  /// Queues a prompt (never injected into a running turn) and returns it with its position in
  /// the queue and the seq of its `prompt_queued` event. The same idempotency key returns the
  /// prompt it first created.
  func sendPrompt(
    text: String, author: UserRecord, client: String, idempotencyKey: String?
  ) async throws -> (prompt: PromptRecord, position: Int, seq: UInt64) {
    if let idempotencyKey, !idempotencyKey.isEmpty,
      let existing = try await database.prompt(idempotencyKey: idempotencyKey)
    {
      let queued = try await database.prompts(in: [.queued])
      let position = (queued.firstIndex { $0.id == existing.id } ?? -1) + 1
      return (existing, position, 0)
    }
    let now = Date()
    let prompt = PromptRecord(
      id: Identifier.make(.message), authorId: author.id, authorName: author.displayName, text: text,
      state: .queued, client: client, turnId: nil, createdAt: now, updatedAt: now,
      idempotencyKey: idempotencyKey?.isEmpty == false ? idempotencyKey : nil)
    let position = try await database.prompts(in: [.queued]).count + 1
    let event = Event.with {
      $0.promptQueued = .with {
        $0.messageID = prompt.id
        $0.author = author.ref
        $0.text = text
        $0.queuePosition = UInt32(position)
        $0.client = client
      }
    }
    let stored = try await append([event]) { try prompt.insert($0) }
    record.queuedPrompts += 1
    if record.state == .idle { record.state = .queued }
    try await saveSummary()
    return (prompt, position, stored[0].seq)
  }

  /// Prompts waiting for a turn, oldest first.
  func queuedPrompts() async throws -> [PromptRecord] {
    try await database.prompts(in: [.queued])
  }

  // MARK: - Turns

  /// True when prompts wait and no turn loop runs; the caller then starts ``runQueuedTurns``.
  func claimTurnLoop() -> Bool {
    guard !turnLoopActive, record.queuedPrompts > 0 else { return false }
    turnLoopActive = true
    return true
  }

  /// Runs turns until no prompt is queued: each takes every queued prompt, runs the agent
  /// through `runner`, stores what it streams back, and ends with `turn_finished`.
  func runQueuedTurns(runner: any AgentRunner) async {
    defer { turnLoopActive = false }
    while !Task.isCancelled {
      do {
        let prompts = try await database.prompts(in: [.queued])
        guard !prompts.isEmpty else { break }
        try await runTurn(prompts: prompts, runner: runner)
      } catch {
        logger.error("turn bookkeeping failed", metadata: ["error": "\(error)"])
        break
      }
    }
    record.state = record.queuedPrompts > 0 ? .queued : .idle
    try? await saveSummary()
  }

  private func runTurn(prompts: [PromptRecord], runner: any AgentRunner) async throws {
    // The conversation so far (finished turns only), before this turn's first event.
    let history = TurnHistory.build(from: try await database.events(after: 0, limit: .max))
    let turnID = Identifier.make(.turn)
    let promptIDs = prompts.map(\.id)
    let started = ContinuousClock.now
    try await append(
      [
        .with {
          $0.turnStarted = .with {
            $0.turnID = turnID; $0.promptIds = promptIDs; $0.model = record.model
          }
        }
      ],
      turnID: turnID
    ) { db in
      let now = Date()
      for promptID in promptIDs {
        try db.execute(
          sql: "UPDATE prompt SET state = 'running', turnId = ?, updatedAt = ? WHERE id = ?",
          arguments: [turnID, now, promptID])
      }
    }
    record.state = .running
    record.currentTurnId = turnID
    record.queuedPrompts -= prompts.count
    try await saveSummary()

    let finish: Inspect_Session_V1_TurnFinished
    do {
      let outcome = try await runner.run(start: startTurn(turnID: turnID, prompts: prompts, history: history)) {
        event in
        try await self.append([event], turnID: turnID)
      }
      finish = outcome
    } catch {
      finish = .with {
        $0.outcome = Task.isCancelled ? .cancelled : .failed
        $0.failedPhase = (error as? TurnFailure)?.phase ?? .connection
        $0.reason = (error as? TurnFailure)?.reason ?? "the agent's stream broke: \(error)"
      }
    }
    var finished = finish
    finished.duration = Google_Protobuf_Duration(rounding: ContinuousClock.now - started)
    let promptState: PromptRecord.State = finished.outcome == .cancelled ? .cancelled : .done
    try await append([.with { $0.turnFinished = finished }], turnID: turnID) { db in
      try db.execute(
        sql: "UPDATE prompt SET state = ?, updatedAt = ? WHERE turnId = ?",
        arguments: [promptState.rawValue, Date(), turnID])
    }
    record.currentTurnId = nil
    logger.info(
      "turn finished",
      metadata: [
        "turn.id": "\(turnID)", "turn.outcome": "\(finished.outcome)", "turn.reason": "\(finished.reason)",
      ])
  }

  private func startTurn(
    turnID: String, prompts: [PromptRecord], history: Inspect_Sandbox_V1_History
  ) -> Inspect_Sandbox_V1_StartTurn {
    .with {
      $0.history = history
      $0.sessionID = id
      $0.turnID = turnID
      $0.repository = .with {
        $0.fullName = record.repository
        $0.defaultBranch = record.baseBranch
      }
      $0.baseBranch = record.baseBranch
      $0.sessionBranch = record.branch
      $0.model = record.model
      $0.client = record.client
      $0.prompts = prompts.map { prompt in
        .with {
          $0.promptID = prompt.id
          $0.author = .with {
            $0.userID = prompt.authorId
            $0.displayName = prompt.authorName
          }
          $0.text = prompt.text
        }
      }
    }
  }

  /// After a restart: a turn that was running when the service stopped is recorded as FAILED,
  /// so no client waits for it forever; its prompts are done (they were taken by that turn).
  func failInterruptedTurn() async throws {
    guard let turnID = record.currentTurnId else { return }
    try await append(
      [
        .with {
          $0.turnFinished = .with {
            $0.outcome = .failed
            $0.failedPhase = .internal
            $0.reason = "SessionService stopped while this turn was running; send the prompt again to retry"
          }
        }
      ], turnID: turnID
    ) { db in
      try db.execute(
        sql: "UPDATE prompt SET state = 'done', updatedAt = ? WHERE turnId = ? AND state = 'running'",
        arguments: [Date(), turnID])
    }
    record.currentTurnId = nil
    record.queuedPrompts = try await database.prompts(in: [.queued]).count
    record.state = record.queuedPrompts > 0 ? .queued : .idle
    try await saveSummary()
  }

  // MARK: - Summary

  private func saveSummary() async throws {
    try await index.updateSession(
      id: id, state: record.state, lastSeq: UInt64(record.lastSeq), currentTurnId: record.currentTurnId,
      queuedPrompts: record.queuedPrompts)
  }

  /// Closes every subscriber (the service is shutting down or evicting the session).
  func closeSubscribers() {
    for subscriber in subscribers.values { subscriber.close() }
    subscribers = [:]
  }
}

/// Why a turn failed, as `turn_finished` reports it.
struct TurnFailure: Error {
  var phase: Inspect_Session_V1_TurnPhase
  var reason: String
}

extension UserRecord {
  var ref: Inspect_Common_V1_UserRef {
    .with {
      $0.userID = id
      $0.displayName = displayName
      $0.email = email
    }
  }
}
