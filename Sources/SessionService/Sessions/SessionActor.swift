import Foundation
import GRDB
import GRPCCore
import InspectKit
import InspectProtos
import Logging
import SwiftProtobuf

/// One live session: the owner of its database file, its prompt queue, its running turn, its
/// participants and its subscribers. Every change is an event, stored (with the state it
/// changes, in one transaction) before it is delivered; subscribers receive events in `seq`
/// order, each exactly once, in batches at most every `deliveryInterval`.
actor SessionActor {
  typealias Event = Inspect_Session_V1_SessionEvent

  /// A person's request to stop the running turn.
  struct StopRequest: Sendable {
    var user: UserRecord
    var reason: String

    var description: String {
      "stopped by \(user.displayName)" + (reason.isEmpty ? "" : ": \(reason)")
    }
  }

  /// The turn being run: its control stream to the agent and the task running it.
  private struct RunningTurn {
    var id: String
    var controls: AsyncStream<Inspect_Sandbox_V1_RunAgentRequest>.Continuation
    var task: Task<Inspect_Session_V1_TurnFinished, any Error>
    var stop: StopRequest?
  }

  nonisolated let id: String
  /// Tool calls of the running turn that wait for a person's decision (`awaiting_approval`).
  /// Tool calls waiting for a person's decision, by id, with their tool's name.
  private var awaitingApproval: [String: String] = [:]
  private(set) var record: SessionRecord
  private(set) var participants: [String: ParticipantRecord]
  let database: SessionDatabase
  let index: IndexDatabase
  let indexWriter: IndexWriter
  let settings: SessionSettings
  let pullRequests: PullRequestOpener?
  /// The data directory (artifacts live under it); nil in tests that keep no files.
  let dataDirectory: URL?
  let logger: Logger

  /// Every event up to this seq is stored and has been handed to delivery (`pending` or sent).
  private var contiguousSeq: UInt64
  /// The newest seq offered to subscribers.
  private var deliveredSeq: UInt64
  /// Batches stored out of order (an earlier batch is still being stored), by first seq.
  private var reordered: [UInt64: [Event]] = [:]
  /// Stored, in order, not yet offered to subscribers.
  private var pending: [Event] = []
  private var lastDelivery = ContinuousClock.now - .seconds(1)
  private var deliveryScheduled = false
  private var subscribers: [ObjectIdentifier: Subscription] = [:]
  /// Open streams per watching user, for presence.
  private var watching: [String: Int] = [:]
  /// True while a turn loop runs for this session (at most one).
  private var turnLoopActive = false
  private var running: RunningTurn?
  private var turnEndWaiters: [CheckedContinuation<Void, Never>] = []
  /// The state last written to the index durably (recovery reads it).
  private var persistedState: SessionRecord.State

  init(
    record: SessionRecord, participants: [ParticipantRecord], database: SessionDatabase, index: IndexDatabase,
    indexWriter: IndexWriter, settings: SessionSettings, pullRequests: PullRequestOpener? = nil, lastSeq: UInt64,
    dataDirectory: URL? = nil, logger: Logger
  ) {
    self.pullRequests = pullRequests
    self.dataDirectory = dataDirectory
    self.id = record.id
    self.record = record
    self.participants = Dictionary(participants.map { ($0.userId, $0) }, uniquingKeysWith: { $1 })
    self.database = database
    self.index = index
    self.indexWriter = indexWriter
    self.settings = settings
    self.contiguousSeq = lastSeq
    self.deliveredSeq = lastSeq
    self.persistedState = record.state
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
    try await transact(turnID: turnID) { db in
      try change?(db)
      return (events, ())
    }.events
  }

  /// Runs `body` in one transaction with the events it returns, then delivers them.
  private func transact<Value: Sendable>(
    turnID: String? = nil,
    _ body: @escaping @Sendable (Database) throws -> (events: [Event], value: Value)
  ) async throws -> (events: [Event], value: Value) {
    let sessionID = id
    let result = try await database.transact { db in
      let (events, value) = try body(db)
      return (
        events.map { event in
          var event = event
          event.sessionID = sessionID
          if let turnID, event.turnID.isEmpty { event.turnID = turnID }
          return event
        }, value
      )
    }
    publish(result.events)
    return result
  }

  /// Hands stored events to delivery in seq order, and tells the index what it tracks.
  private func publish(_ stored: [Event]) {
    guard let first = stored.first, let last = stored.last else { return }
    record.lastSeq = max(record.lastSeq, Int64(last.seq))
    reordered[first.seq] = stored
    while let next = reordered.removeValue(forKey: contiguousSeq + 1) {
      contiguousSeq = next.last!.seq
      pending += next
    }
    for event in stored {
      recordActivity(event)
      if case .toolCall(let call) = event.kind {
        if call.awaitingApproval {
          awaitingApproval[call.toolCallID] = call.name
        } else {
          awaitingApproval[call.toolCallID] = nil
        }
      }
    }
    scheduleDelivery()
  }

  /// Delivers at once when the last delivery is older than the interval; otherwise when it is due,
  /// with everything stored by then in one batch.
  private func scheduleDelivery() {
    guard !pending.isEmpty, !deliveryScheduled else { return }
    let due = lastDelivery + settings.deliveryInterval
    if ContinuousClock.now >= due {
      deliver()
      return
    }
    deliveryScheduled = true
    Task { [weak self] in
      try? await Task.sleep(until: due, tolerance: .microseconds(200), clock: .continuous)
      await self?.deliverScheduled()
    }
  }

  private func deliverScheduled() {
    deliveryScheduled = false
    deliver()
  }

  private func deliver() {
    guard let last = pending.last else { return }
    let batch = pending
    pending = []
    deliveredSeq = last.seq
    lastDelivery = .now
    for (key, subscriber) in subscribers where !subscriber.offer(batch) {
      subscribers.removeValue(forKey: key)
    }
  }

  /// Registers a subscriber that has (or will replay from storage) everything up to the
  /// returned seq; every later event reaches it live.
  func subscribe(after: UInt64) throws -> (subscription: Subscription, replayThrough: UInt64) {
    guard after <= UInt64(record.lastSeq) else {
      throw RPCError(
        code: .outOfRange,
        message: "after_seq \(after) is beyond the session's last event (seq \(record.lastSeq))")
    }
    let subscription = Subscription(after: max(after, deliveredSeq), limit: settings.subscriberBuffer)
    subscribers[ObjectIdentifier(subscription)] = subscription
    return (subscription, deliveredSeq)
  }

  func unsubscribe(_ subscription: Subscription) {
    subscription.close()
    subscribers.removeValue(forKey: ObjectIdentifier(subscription))
  }

  var subscriberCount: Int { subscribers.count }

  // MARK: - Presence

  /// Someone opened a stream: they are online (an event when it is their first stream).
  func startWatching(_ user: UserRecord) async {
    watching[user.id, default: 0] += 1
    if watching[user.id] == 1 { await announce(user, .online) }
  }

  /// One of their streams ended: offline once it was the last.
  func stopWatching(_ user: UserRecord) async {
    guard let count = watching[user.id] else { return }
    if count > 1 {
      watching[user.id] = count - 1
      return
    }
    watching[user.id] = nil
    await announce(user, .offline)
  }

  /// Records a presence change a client reported (typing, idle…).
  func updatePresence(_ user: UserRecord, _ state: Inspect_Session_V1_PresenceState, client: String) async throws {
    try await append([
      .with {
        $0.presence = .with {
          $0.user = user.ref; $0.state = state; $0.client = client
        }
      }
    ])
  }

  private func announce(_ user: UserRecord, _ state: Inspect_Session_V1_PresenceState) async {
    do {
      // Recorded even when the stream ended by cancellation.
      try await Task { try await self.updatePresence(user, state, client: "") }.value
    } catch {
      logger.warning("could not record presence", metadata: ["user.id": "\(user.id)", "error": "\(error)"])
    }
  }

  // MARK: - Participants

  /// The caller's role: their participant role, owner for an administrator; nil for anyone else.
  func role(of user: UserRecord) -> Role? {
    participants[user.id]?.role ?? (user.isAdmin ? .owner : nil)
  }

  var participantList: [ParticipantRecord] {
    participants.values.sorted { ($0.joinedAt, $0.userId) < ($1.joinedAt, $1.userId) }
  }

  /// Adds `user` with `role`, or changes their role. Anyone may join as a viewer; everything
  /// else needs an owner (unless `checked` is false: the service itself admits someone), and the
  /// session always keeps one.
  func addParticipant(
    _ user: UserRecord, role: Role, by caller: UserRecord, checked: Bool = true
  ) async throws -> ParticipantRecord {
    let callerRole = self.role(of: caller)
    let existing = participants[user.id]
    let joining = user.id == caller.id && role == .viewer && existing == nil
    guard callerRole == .owner || joining || !checked else {
      throw RPCError(
        code: .permissionDenied,
        message: "only an owner of \(id) may add participants or change roles; anyone may join as a viewer")
    }
    if existing?.role == .owner, role != .owner, owners.count == 1 {
      throw RPCError(
        code: .failedPrecondition,
        message: "\(user.displayName) is the only owner of \(id); make someone else an owner first")
    }
    if existing?.role == role, let existing { return existing }
    let participant = ParticipantRecord(
      sessionId: id, userId: user.id, role: role, joinedAt: existing?.joinedAt ?? Date(),
      addedBy: joining ? nil : caller.id)
    try await index.save(participant)
    participants[user.id] = participant
    try await append([
      .with {
        $0.participant = .with {
          $0.participant = participant.proto(user: user, addedBy: joining ? nil : caller)
          $0.change = existing == nil ? .added : .roleChanged
          $0.changedBy = caller.ref
        }
      }
    ])
    return participant
  }

  /// Removes `user`. Owners may remove anyone, anyone may leave; the last owner stays.
  func removeParticipant(_ user: UserRecord, by caller: UserRecord) async throws {
    guard let existing = participants[user.id] else {
      throw RPCError(code: .notFound, message: "\(user.id) is not a participant of \(id)")
    }
    guard role(of: caller) == .owner || user.id == caller.id else {
      throw RPCError(code: .permissionDenied, message: "only an owner of \(id) may remove others; anyone may leave")
    }
    if existing.role == .owner, owners.count == 1 {
      throw RPCError(
        code: .failedPrecondition,
        message: "\(user.displayName) is the only owner of \(id); make someone else an owner first")
    }
    try await index.removeParticipant(sessionID: id, userID: user.id)
    participants[user.id] = nil
    try await append([
      .with {
        $0.participant = .with {
          $0.participant = existing.proto(user: user, addedBy: nil)
          $0.change = .removed
          $0.changedBy = caller.ref
        }
      }
    ])
  }

  private var owners: [ParticipantRecord] { participants.values.filter { $0.role == .owner } }

  // MARK: - Prompts

  /// Queues a prompt (never injected into a running turn) and returns it with its position in
  /// the queue and the seq of its `prompt_queued` event. The same idempotency key returns the
  /// prompt it first created (and seq 0).
  ///
  /// `attachments` (checked by ``PromptAttachments/check(_:)``) are stored as the session's
  /// artifacts first; the prompt and its `artifact_added` events are then stored together.
  func sendPrompt(
    text: String, author: UserRecord, client: String, idempotencyKey: String?,
    attachments: [Inspect_Session_V1_Attachment] = []
  ) async throws -> (prompt: PromptRecord, position: Int, seq: UInt64) {
    guard record.state != .archived else {
      throw RPCError(code: .failedPrecondition, message: "session \(id) is archived and takes no more prompts")
    }
    let key = idempotencyKey?.isEmpty == false ? idempotencyKey : nil
    let now = Date()
    var stored: [(artifact: Inspect_Session_V1_Artifact, stored: PromptAttachments.Stored)] = []
    if !attachments.isEmpty {
      guard let dataDirectory else {
        throw RPCError(
          code: .failedPrecondition, message: "this SessionService keeps no files: attachments are refused")
      }
      stored = try PromptAttachments.store(attachments, sessionID: id, dataDirectory: dataDirectory)
    }
    let fresh = PromptRecord(
      id: Identifier.make(.message), authorId: author.id, authorName: author.displayName, text: text,
      state: .queued, client: client, turnId: nil, createdAt: now, updatedAt: now, idempotencyKey: key,
      attachments: PromptAttachments.encode(stored.map(\.stored)))
    let references = PromptAttachments.references(stored.map(\.stored))
    let artifacts = stored.map(\.artifact)
    let authorRef = author.ref
    // Files written for a prompt that is not stored (a retry of one that was, a failed
    // transaction) are removed again.
    let removeFiles = { [dataDirectory] in
      guard let dataDirectory else { return }
      for artifact in artifacts {
        try? FileManager.default.removeItem(at: dataDirectory.appendingPathComponent(artifact.storagePath))
      }
    }
    let events: [Event]
    let prompt: PromptRecord
    let position: Int
    do {
      (events, (prompt, position)) = try await transact { db in
        if let key, let existing = try PromptRecord.filter(Column("idempotencyKey") == key).fetchOne(db) {
          return ([], (existing, try existing.queuePosition(db)))
        }
        try fresh.insert(db)
        let position = try fresh.queuePosition(db)
        let event = Event.with {
          $0.promptQueued = .with {
            $0.messageID = fresh.id
            $0.author = authorRef
            $0.text = text
            $0.queuePosition = UInt32(position)
            $0.client = client
            $0.attachments = references
          }
        }
        let added = artifacts.map { artifact in Event.with { $0.artifactAdded = .with { $0.artifact = artifact } } }
        return ([event] + added, (fresh, position))
      }
    } catch {
      removeFiles()
      throw error
    }
    guard let seq = events.first?.seq else {
      removeFiles()
      return (prompt, position, 0)
    }
    record.queuedPrompts += 1
    await settle()
    return (prompt, position, seq)
  }

  /// Prompts waiting for a turn, in queue order.
  func queuedPrompts() async throws -> [PromptRecord] {
    try await database.prompts(in: [.queued])
  }

  /// Replaces the text of a queued prompt (its author or an owner may).
  func editQueuedPrompt(_ promptID: String, text: String, by caller: UserRecord) async throws -> (PromptRecord, Int) {
    let isOwner = role(of: caller) == .owner
    let sessionID = id
    let callerRef = caller.ref
    return try await transact { db in
      var prompt = try Self.queuedPrompt(promptID, in: sessionID, db: db, caller: caller, isOwner: isOwner)
      prompt.text = text
      prompt.updatedAt = Date()
      try prompt.update(db)
      let position = try prompt.queuePosition(db)
      let event = Event.with {
        $0.promptUpdated = .with {
          $0.messageID = prompt.id
          $0.text = text
          $0.state = .queued
          $0.queuePosition = UInt32(position)
          $0.updatedBy = callerRef
        }
      }
      return ([event], (prompt, position))
    }.value
  }

  /// Removes a queued prompt (its author or an owner may).
  func cancelQueuedPrompt(_ promptID: String, by caller: UserRecord, reason: String = "") async throws -> PromptRecord {
    let isOwner = role(of: caller) == .owner
    let sessionID = id
    let callerRef = caller.ref
    let prompt = try await transact { db in
      var prompt = try Self.queuedPrompt(promptID, in: sessionID, db: db, caller: caller, isOwner: isOwner)
      prompt.state = .cancelled
      prompt.updatedAt = Date()
      try prompt.update(db)
      let event = Event.with {
        $0.promptCancelled = .with {
          $0.messageID = prompt.id
          $0.cancelledBy = callerRef
          $0.reason = reason
        }
      }
      return ([event], prompt)
    }.value
    record.queuedPrompts = max(0, record.queuedPrompts - 1)
    await settle()
    return prompt
  }

  private static func queuedPrompt(
    _ promptID: String, in sessionID: String, db: Database, caller: UserRecord, isOwner: Bool
  ) throws -> PromptRecord {
    guard let prompt = try PromptRecord.fetchOne(db, key: promptID) else {
      throw RPCError(code: .notFound, message: "no prompt '\(promptID)' in session \(sessionID)")
    }
    guard prompt.state == .queued else {
      throw RPCError(
        code: .failedPrecondition,
        message: "prompt \(promptID) is \(prompt.state.rawValue), not queued: only queued prompts can change")
    }
    guard prompt.authorId == caller.id || isOwner else {
      throw RPCError(
        code: .permissionDenied,
        message: "prompt \(promptID) was written by \(prompt.authorName); only they or an owner may change it")
    }
    return prompt
  }

  /// Cancels every queued prompt; returns how many.
  /// The session's pull request was merged or closed: records it (for the session and the
  /// stats), cancels the prompts still queued and closes the session for new prompts.
  func pullRequestEnded(_ event: Inspect_Session_V1_PullRequest, by closer: UserRecord) async throws {
    // Closed before the first suspension: no prompt gets in between.
    record.state = .archived
    try await append([.with { $0.pullRequest = event }])
    await indexWriter.flush()
    let word = event.state == .merged ? "merged" : "closed"
    if record.queuedPrompts > 0 {
      _ = try await cancelAllQueued(by: closer, reason: "the pull request was \(word)")
    }
    await settle()
  }

  /// Records a pull request opened outside Inspect as this session's (a session started from a
  /// comment on it works on its branch).
  func linkPullRequest(_ event: Inspect_Session_V1_PullRequest) async throws {
    try await append([.with { $0.pullRequest = event }])
    await indexWriter.flush()
  }

  private func cancelAllQueued(by caller: UserRecord, reason: String) async throws -> Int {
    let callerRef = caller.ref
    let cancelled = try await transact { db in
      let prompts = try PromptRecord.all(in: [.queued]).fetchAll(db)
      try db.execute(
        sql: "UPDATE prompt SET state = 'cancelled', updatedAt = ? WHERE state = 'queued'", arguments: [Date()])
      let events = prompts.map { prompt in
        Event.with {
          $0.promptCancelled = .with {
            $0.messageID = prompt.id
            $0.cancelledBy = callerRef
            $0.reason = reason
          }
        }
      }
      return (events, prompts.count)
    }.value
    record.queuedPrompts = 0
    await settle()
    return cancelled
  }

  // MARK: - Turns

  /// True when prompts wait and no turn loop runs; the caller then starts ``runQueuedTurns``.
  func claimTurnLoop() -> Bool {
    guard !turnLoopActive, record.queuedPrompts > 0, record.state != .archived else { return false }
    turnLoopActive = true
    return true
  }

  /// Runs turns until no prompt is queued: each takes every queued prompt, runs the agent
  /// through `runner`, stores what it streams back, and ends with `turn_finished`.
  func runQueuedTurns(runner: any AgentRunner) async {
    while !Task.isCancelled {
      do {
        guard try await runNextTurn(runner: runner) else { break }
      } catch {
        logger.error("turn bookkeeping failed", metadata: ["error": "\(error)"])
        break
      }
    }
    turnLoopActive = false
    await settle()
  }

  private func runNextTurn(runner: any AgentRunner) async throws -> Bool {
    // The conversation so far (finished turns only), before this turn's first event.
    let events = try await database.events(after: 0, limit: .max)
    let history = TurnHistory.build(from: events)
    // The sandbox resumes from the newest end-of-turn snapshot.
    let snapshotID =
      events.reversed().lazy.compactMap { event -> String? in
        if case .turnFinished(let finished) = event.kind, !finished.snapshotID.isEmpty { return finished.snapshotID }
        return nil
      }.first ?? ""
    // Read before the turn is recorded as started, so that nothing can fail in between.
    let rules = try await database.permissionRules()
    let turnID = Identifier.make(.turn)
    let model = record.model
    let (_, prompts) = try await transact(turnID: turnID) { db -> ([Event], [PromptRecord]) in
      let prompts = try PromptRecord.all(in: [.queued]).fetchAll(db)
      guard !prompts.isEmpty else { return ([], []) }
      let now = Date()
      for prompt in prompts {
        try db.execute(
          sql: "UPDATE prompt SET state = 'running', turnId = ?, updatedAt = ? WHERE id = ?",
          arguments: [turnID, now, prompt.id])
      }
      let started = Event.with {
        $0.turnStarted = .with {
          $0.turnID = turnID
          $0.promptIds = prompts.map(\.id)
          $0.model = model
        }
      }
      return ([started], prompts)
    }
    guard !prompts.isEmpty else {
      record.queuedPrompts = 0
      return false
    }
    record.currentTurnId = turnID
    record.queuedPrompts = max(0, record.queuedPrompts - prompts.count)
    let started = ContinuousClock.now
    var start = startTurn(turnID: turnID, prompts: prompts, history: history, snapshotID: snapshotID)
    start.sessionRules = rules
    // Commits are authored by the person who prompted, with their profile's email.
    for position in start.prompts.indices where start.prompts[position].author.email.isEmpty {
      let userID = start.prompts[position].author.userID
      if let user = try? await index.user(id: userID), !user.email.isEmpty {
        start.prompts[position].author.email = user.email
      }
    }
    let (controls, controlsContinuation) = AsyncStream.makeStream(of: Inspect_Sandbox_V1_RunAgentRequest.self)
    // What the agent streams is stored in batches: one transaction for everything that arrived
    // while the previous one was being written (group commit).
    let sink = BatchQueue<Event>()
    let task = Task {
      defer { sink.finish() }
      return try await runner.run(start: start, controls: controls) { event in sink.push(event) }
    }
    running = RunningTurn(id: turnID, controls: controlsContinuation, task: task)
    await settle()

    var storeFailure: (any Error)?
    var pushed: Inspect_Session_V1_BranchPushed?
    var summary = ""
    await withTaskCancellationHandler {
      while let batch = await sink.next() {
        for event in batch {
          switch event.kind {
          case .branchPushed(let branch): pushed = branch
          case .assistantMessage(let message) where !message.text.isEmpty: summary = message.text
          default: break
          }
        }
        do {
          try await append(batch, turnID: turnID)
        } catch {
          storeFailure = error
          task.cancel()
          break
        }
      }
    } onCancel: {
      task.cancel()
    }
    let result = await task.result
    controlsContinuation.finish()
    var finished = outcome(of: result, stop: running?.stop, storeFailure: storeFailure)
    if let pushed, finished.outcome != .cancelled {
      // Stored even when the loop is being cancelled, like turn_finished.
      let before = finished
      do {
        finished = try await Task {
          try await self.openPullRequest(
            turnID: turnID, pushed: pushed, summary: summary, history: events, prompts: prompts, finished: before)
        }.value
      } catch {
        // The turn still ends (below), saying what went wrong.
        logger.error("the pull request step failed", metadata: ["error": "\(error)"])
        if finished.outcome == .succeeded {
          finished = .with {
            $0.outcome = .failed
            $0.failedPhase = .pullRequest
            $0.reason = "SessionService could not open or record the pull request: \(error)"
          }
        }
      }
    }
    finished.duration = Google_Protobuf_Duration(rounding: ContinuousClock.now - started)
    // Stored even when the loop is being cancelled (the service is stopping).
    try await Task { try await self.finishTurn(turnID, finished) }.value
    return true
  }

  private func outcome(
    of result: Result<Inspect_Session_V1_TurnFinished, any Error>, stop: StopRequest?, storeFailure: (any Error)?
  ) -> Inspect_Session_V1_TurnFinished {
    switch result {
    case .success(var finished):
      if let stop, finished.outcome != .succeeded {
        finished.outcome = .cancelled
        finished.failedPhase = .unspecified
        if finished.reason.isEmpty { finished.reason = stop.description }
      }
      return finished
    case .failure(let error):
      if let stop {
        return .with {
          $0.outcome = .cancelled
          $0.reason = stop.description
        }
      }
      if let storeFailure {
        return .with {
          $0.outcome = .failed
          $0.failedPhase = .internal
          $0.reason = "SessionService could not store the agent's events: \(storeFailure)"
        }
      }
      if let failure = error as? TurnFailure {
        return .with {
          $0.outcome = .failed
          $0.failedPhase = failure.phase
          $0.reason = failure.reason
        }
      }
      if error is CancellationError || Task.isCancelled {
        return .with {
          $0.outcome = .cancelled
          $0.reason = "SessionService shut down while this turn was running; send the prompt again to retry"
        }
      }
      return .with {
        $0.outcome = .failed
        $0.failedPhase = .connection
        $0.reason = "the agent's stream broke: \(error)"
      }
    }
  }

  /// After a turn pushed the session's branch of a GitHub repository: opens its pull request
  /// unless one is open already (a follow-up's push updates the open one). Records a
  /// `pull_request` event; when opening failed, a turn that succeeded fails in the
  /// PULL_REQUEST phase with the event's reason (the branch stays pushed).
  private func openPullRequest(
    turnID: String, pushed: Inspect_Session_V1_BranchPushed, summary: String, history: [Event],
    prompts: [PromptRecord], finished: Inspect_Session_V1_TurnFinished
  ) async throws -> Inspect_Session_V1_TurnFinished {
    guard let opener = pullRequests, !record.repository.hasPrefix("local/") else { return finished }
    let current = try await database.latestPullRequest()
    if let current, [.open, .draft, .merged, .closed].contains(current.state) { return finished }
    let asked: [(author: String, text: String)] = history.compactMap { event in
      if case .promptQueued(let queued) = event.kind { (queued.author.displayName, queued.text) } else { nil }
    }
    let screenshots = try await database.artifacts(kind: .screenshot).map { ($0.name, $0.id) }
    let input = PullRequestDraftInput(
      sessionID: id, repository: record.repository, branch: pushed.branch.isEmpty ? record.branch : pushed.branch,
      baseBranch: pushed.baseBranch.isEmpty ? record.baseBranch : pushed.baseBranch,
      prompts: asked.isEmpty ? prompts.map { ($0.authorName, $0.text) } : asked, summary: summary,
      suggestedTitle: pushed.pullRequestTitle, suggestedBody: pushed.pullRequestBody, screenshots: screenshots)
    // The person whose token opens it: one of this turn's prompters, the latest first (never
    // someone who did not ask for this turn's work).
    var people: [String] = []
    for userID in prompts.reversed().map(\.authorId) where !people.contains(userID) { people.append(userID) }
    let event = await opener.open(input, people: people)
    try await append([.with { $0.pullRequest = event }], turnID: turnID)
    // Webhooks find the session by its pull request in the index: written before they can come.
    await indexWriter.flush()
    logger.info(
      "pull request", metadata: ["pr.state": "\(event.state)", "pr.url": "\(event.url)", "pr.error": "\(event.error)"])
    guard event.state == .failed, finished.outcome == .succeeded else { return finished }
    var failed = finished
    failed.outcome = .failed
    failed.failedPhase = .pullRequest
    failed.reason = event.error
    return failed
  }

  /// Ends a turn: tool calls it left open end CANCELLED (a stopped turn) or FAILED, then
  /// `turn_finished`, and its prompts are done.
  private func finishTurn(_ turnID: String, _ finished: Inspect_Session_V1_TurnFinished) async throws {
    let open = try await database.unfinishedToolCalls(turnID: turnID)
    let state: Inspect_Session_V1_ToolCallState = finished.outcome == .cancelled ? .cancelled : .failed
    let closing = open.map { call in
      Event.with {
        $0.toolCall = .with {
          $0.toolCallID = call.id
          $0.name = call.name
          $0.state = state
          $0.attempt = UInt32(call.attempt)
          $0.error = "the turn ended before this tool call finished (\(finished.reason))"
        }
      }
    }
    try await append(closing + [.with { $0.turnFinished = finished }], turnID: turnID) { db in
      try db.execute(
        sql: "UPDATE prompt SET state = 'done', updatedAt = ? WHERE turnId = ? AND state = 'running'",
        arguments: [Date(), turnID])
    }
    running = nil
    record.currentTurnId = nil
    for waiter in turnEndWaiters { waiter.resume() }
    turnEndWaiters = []
    logger.info(
      "turn finished",
      metadata: [
        "turn.id": "\(turnID)", "turn.outcome": "\(finished.outcome)", "turn.reason": "\(finished.reason)",
      ])
  }

  /// Hands a person's decision on a tool call that waits for one to the running turn. With
  /// `remember`, the decision first becomes a rule of the session's policy for that tool, so
  /// that later turns (and the running one, told by the decision) apply it without asking.
  func decide(
    by caller: UserRecord, toolCallID: String, approved: Bool, reason: String, remember: Bool = false
  ) async throws {
    guard let turn = running, let tool = awaitingApproval[toolCallID] else {
      throw RPCError(
        code: .failedPrecondition,
        message: "tool call '\(toolCallID)' is not waiting for a decision in session \(id) (it may have been decided "
          + "already, or its turn has ended)")
    }
    if remember {
      // Stored first: if it cannot be, the call still waits and can be decided again.
      try await database.addPermissionRules([
        .with {
          $0.tool = tool
          $0.decision = approved ? .allow : .deny
          $0.reason =
            "\(approved ? "allowed" : "denied") for this session by \(caller.displayName)"
            + (reason.isEmpty ? "" : ": \(reason)")
          $0.setBy = caller.ref
        }
      ])
    }
    guard awaitingApproval.removeValue(forKey: toolCallID) != nil, running?.id == turn.id else {
      throw RPCError(
        code: .failedPrecondition,
        message: "tool call '\(toolCallID)' was decided by someone else or its turn ended meanwhile")
    }
    turn.controls.yield(
      .with {
        $0.decision = .with {
          $0.toolCallID = toolCallID
          $0.approved = approved
          $0.reason = reason
          $0.decidedBy = caller.ref
          $0.remember = remember
        }
      })
    logger.info(
      "tool call decided",
      metadata: [
        "tool_call.id": "\(toolCallID)", "approved": "\(approved)", "remember": "\(remember)",
        "user.id": "\(caller.id)",
      ])
  }

  /// The session's own permission rules, newest first.
  func permissionRules() async throws -> [Inspect_Session_V1_PermissionRule] {
    try await database.permissionRules()
  }

  /// Adds rules to the session's policy (given when it was created, or inherited).
  func addPermissionRules(_ rules: [Inspect_Session_V1_PermissionRule]) async throws {
    try await database.addPermissionRules(rules)
  }

  /// Stops the running turn (the agent is asked to stop; after the grace period its stream is
  /// broken) and returns once the turn has ended. Queued prompts stay unless `clearQueue`.
  func stop(
    by caller: UserRecord, reason: String, clearQueue: Bool
  ) async throws -> (wasRunning: Bool, turnID: String, cancelledPrompts: Int) {
    var cancelled = 0
    if clearQueue {
      cancelled = try await cancelAllQueued(by: caller, reason: reason.isEmpty ? "the session was stopped" : reason)
    }
    guard let turn = running else { return (false, "", cancelled) }
    if turn.stop == nil {
      let request = StopRequest(user: caller, reason: reason)
      running?.stop = request
      turn.controls.yield(
        .with {
          $0.stop = .with {
            $0.reason = reason; $0.stoppedBy = caller.ref
          }
        })
      let task = turn.task
      let grace = settings.stopGrace
      Task {
        try? await Task.sleep(for: grace)
        task.cancel()
      }
      logger.info("stopping the turn", metadata: ["turn.id": "\(turn.id)", "user.id": "\(caller.id)"])
      await settle()
    }
    await withCheckedContinuation { continuation in
      if running?.id == turn.id { turnEndWaiters.append(continuation) } else { continuation.resume() }
    }
    return (true, turn.id, cancelled)
  }

  private func startTurn(
    turnID: String, prompts: [PromptRecord], history: Inspect_Sandbox_V1_History, snapshotID: String
  ) -> Inspect_Sandbox_V1_StartTurn {
    .with {
      $0.history = history
      $0.snapshotID = snapshotID
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
      var budget = PromptAttachments.maxTurnBytes
      $0.prompts = prompts.map { prompt in
        .with {
          $0.promptID = prompt.id
          $0.author = .with {
            $0.userID = prompt.authorId
            $0.displayName = prompt.authorName
          }
          $0.text = prompt.text
          if let dataDirectory {
            $0.attachments = PromptAttachments.load(
              prompt.storedAttachments, sessionID: id, dataDirectory: dataDirectory, budget: &budget)
          }
        }
      }
    }
  }

  /// After a restart: a turn that was running when the service stopped is recorded as FAILED
  /// (its open tool calls too), so no client waits for it forever; its prompts are done.
  func failInterruptedTurn() async throws {
    let turnID = try await database.writer.read { db in
      try String.fetchOne(db, sql: "SELECT id FROM turn WHERE finishedAt IS NULL ORDER BY startedSeq DESC LIMIT 1")
    }
    if let turnID {
      try await finishTurn(
        turnID,
        .with {
          $0.outcome = .failed
          $0.failedPhase = .internal
          $0.reason = "SessionService stopped while this turn was running; send the prompt again to retry"
        })
    }
    record.queuedPrompts = try await database.prompts(in: [.queued]).count
    await settle()
  }

  // MARK: - State and the index

  /// Derives the session's state from its turn and queue, and updates its index row: durably
  /// when the state changed (recovery reads it), otherwise in the background.
  private func settle() async {
    if record.state != .archived {
      record.state =
        if let running { running.stop == nil ? .running : .stopping } else if record.queuedPrompts > 0 {
          .queued
        } else {
          .idle
        }
    }
    record.updatedAt = Date()
    indexWriter.enqueue(
      .summary(
        SessionSummary(
          id: id, state: record.state, lastSeq: UInt64(record.lastSeq), currentTurnId: record.currentTurnId,
          queuedPrompts: record.queuedPrompts, updatedAt: record.updatedAt)))
    if record.state != persistedState {
      persistedState = record.state
      await indexWriter.flush()
    }
  }

  /// Counts prompts and finished turns for the stats page; records pull request links.
  private func recordActivity(_ event: Event) {
    let now = Date()
    switch event.kind {
    case .promptQueued(let queued):
      indexWriter.enqueue(
        .activity(
          ActivityRecord(
            sessionId: id, kind: .prompt, userId: queued.author.userID, client: queued.client, at: now)))
    case .turnFinished(let finished):
      indexWriter.enqueue(
        .activity(
          ActivityRecord(
            sessionId: id, kind: .turn, userId: record.createdBy, client: record.client,
            outcome: finished.outcome.recordName, inputTokens: Int64(clamping: finished.inputTokens),
            outputTokens: Int64(clamping: finished.outputTokens), costUsd: finished.costUsd, at: now)))
    case .pullRequest(let pullRequest):
      let state: String =
        switch pullRequest.state {
        case .open: "open"
        case .draft: "draft"
        case .merged: "merged"
        case .closed: "closed"
        case .failed: "failed"
        default: "unknown"
        }
      indexWriter.enqueue(
        .pullRequest(
          PullRequestRecord(
            sessionId: id, repository: pullRequest.repository.isEmpty ? record.repository : pullRequest.repository,
            number: Int64(pullRequest.number), url: pullRequest.url, state: state,
            openedAt: [.open, .draft, .merged, .closed].contains(pullRequest.state) ? now : nil,
            mergedAt: pullRequest.state == .merged ? now : nil, closedAt: pullRequest.state == .closed ? now : nil,
            updatedAt: now)))
    default:
      break
    }
  }

  /// Closes every subscriber (the service is shutting down or evicting the session).
  func closeSubscribers() {
    for subscriber in subscribers.values { subscriber.close() }
    subscribers = [:]
  }

  /// Releases the database file (the session was evicted).
  func close() {
    closeSubscribers()
    try? database.writer.close()
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
