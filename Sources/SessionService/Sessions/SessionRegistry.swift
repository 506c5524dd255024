import Foundation
import GRDB
import InspectKit
import Logging
import ServiceLifecycle
import Synchronization

/// The live sessions of this SessionService: loads each from its file on first use, creates new
/// ones, runs their turns (one loop per session with queued prompts) as child tasks of its own
/// `run()`, so shutdown cancels them, and evicts sessions nobody has used for
/// ``SessionSettings/idleEviction``.
///
/// Every use of a session holds a lease (``withSession(id:_:)``, a stream, a turn loop); only a
/// session without leases is evicted, so two actors never own one file.
final class SessionRegistry: Service, Sendable {
  private struct Entry {
    var session: SessionActor
    var leases = 0
    var lastUse = ContinuousClock.now
  }

  let index: IndexDatabase
  let paths: SessionPaths
  let runner: any AgentRunner
  let settings: SessionSettings
  let logger: Logger
  let indexWriter: IndexWriter
  /// Opens pull requests after turns that pushed a GitHub repository's branch; nil: none are.
  let pullRequests: PullRequestOpener?
  /// Verifies signed artifact links (nil: signed links are refused).
  let artifactLinks: ArtifactLinks?
  private let sessions = Mutex<[String: Entry]>([:])
  private let turnRequests: AsyncStream<SessionActor>
  private let turnRequestsContinuation: AsyncStream<SessionActor>.Continuation

  init(
    index: IndexDatabase, paths: SessionPaths, runner: any AgentRunner, settings: SessionSettings = SessionSettings(),
    pullRequests: PullRequestOpener? = nil, artifactLinks: ArtifactLinks? = nil, logger: Logger
  ) {
    self.pullRequests = pullRequests
    self.artifactLinks = artifactLinks
    self.index = index
    self.paths = paths
    self.runner = runner
    self.settings = settings
    self.logger = logger
    self.indexWriter = IndexWriter.start(index: index, logger: logger)
    (turnRequests, turnRequestsContinuation) = AsyncStream.makeStream(of: SessionActor.self)
  }

  // MARK: - Lookup and creation

  /// Runs `body` with the live session `id` (loaded from disk if needed), holding a lease so it
  /// is not evicted meanwhile; nil when no such session exists.
  func withSession<T>(id: String, _ body: (SessionActor) async throws -> T) async throws -> T? {
    guard let session = try acquire(id: id) else { return nil }
    defer { release(id: id) }
    return try await body(session)
  }

  /// The live session `id` with a lease taken (pair with ``release(id:)``); nil when it does not
  /// exist.
  func acquire(id: String) throws -> SessionActor? {
    guard Identifier.isValid(id, kind: .session) else { return nil }
    return try sessions.withLock { sessions in
      if sessions[id] == nil {
        guard let loaded = try load(id: id) else { return nil }
        sessions[id] = Entry(session: loaded)
      }
      sessions[id]!.leases += 1
      return sessions[id]!.session
    }
  }

  func release(id: String) {
    sessions.withLock { sessions in
      sessions[id]?.leases -= 1
      sessions[id]?.lastUse = .now
    }
  }

  /// The live session without a lease, for tests and recovery; nil when it does not exist.
  func session(id: String) throws -> SessionActor? {
    guard let session = try acquire(id: id) else { return nil }
    release(id: id)
    return session
  }

  /// How many sessions are in memory.
  var liveCount: Int { sessions.withLock { $0.count } }

  private func load(id: String) throws -> SessionActor? {
    guard
      let (record, participants) = try index.writer.read({ db -> (SessionRecord, [ParticipantRecord])? in
        guard let record = try SessionRecord.fetchOne(db, key: id) else { return nil }
        return (record, try ParticipantRecord.filter(Column("sessionId") == id).fetchAll(db))
      })
    else { return nil }
    let database = try SessionDatabase.open(at: paths.file(for: id))
    let lastSeq = try database.writer.read { UInt64(try Int64.fetchOne($0, sql: "SELECT MAX(seq) FROM event") ?? 0) }
    var current = record
    current.lastSeq = Int64(lastSeq)
    current.queuedPrompts = try database.writer.read { try PromptRecord.all(in: [.queued]).fetchCount($0) }
    return SessionActor(
      record: current, participants: participants, database: database, index: index, indexWriter: indexWriter,
      settings: settings, pullRequests: pullRequests, lastSeq: lastSeq,
      dataDirectory: paths.root.deletingLastPathComponent(), logger: logger)
  }

  /// Creates a session (its file, its index row with its participants, and its
  /// `session_created` event).
  func create(
    _ record: SessionRecord, creator: UserRecord, participants: [ParticipantRecord] = []
  ) async throws -> SessionActor {
    let database = try SessionDatabase.open(at: paths.file(for: record.id))
    let owner = ParticipantRecord(
      sessionId: record.id, userId: creator.id, role: .owner, joinedAt: record.createdAt, addedBy: nil)
    let everyone = [owner] + participants.filter { $0.userId != creator.id }
    try await index.insert(record, participants: everyone, childLimit: settings.maxChildren)
    let session = SessionActor(
      record: record, participants: everyone, database: database, index: index, indexWriter: indexWriter,
      settings: settings, pullRequests: pullRequests, lastSeq: 0,
      dataDirectory: paths.root.deletingLastPathComponent(), logger: logger)
    sessions.withLock { $0[record.id] = Entry(session: session, leases: 0) }
    try await session.append([.with { $0.sessionCreated = .with { $0.session = record.proto(creator: creator) } }])
    return session
  }

  // MARK: - Turns

  /// Starts the session's turn loop unless one is running or nothing is queued.
  /// The loop holds a lease from here on: a session with a running turn is never evicted.
  func scheduleTurns(for session: SessionActor) async {
    guard await session.claimTurnLoop() else { return }
    sessions.withLock { $0[session.id]?.leases += 1 }
    turnRequestsContinuation.yield(session)
  }

  func run() async throws {
    try await recoverInterruptedSessions()
    await withDiscardingTaskGroup { group in
      group.addTask { await self.evictIdleSessions() }
      for await session in turnRequests.cancelOnGracefulShutdown() {
        let runner = self.runner
        group.addTask {
          defer { self.release(id: session.id) }
          await session.runQueuedTurns(runner: runner)
        }
      }
      group.cancelAll()
    }
    for entry in sessions.withLock({ Array($0.values) }) { await entry.session.closeSubscribers() }
    await indexWriter.finish()
  }

  /// Sessions the last run left running or queued: fail the interrupted turn, then run what is
  /// still queued.
  private func recoverInterruptedSessions() async throws {
    for record in try await index.unfinishedSessions() {
      guard let session = try session(id: record.id) else { continue }
      try await session.failInterruptedTurn()
      logger.notice("recovered a session left unfinished", metadata: ["session.id": "\(record.id)"])
      await scheduleTurns(for: session)
    }
  }

  // MARK: - Eviction

  /// Every so often, drops sessions without leases unused for the idle bound (they load again
  /// from their files on next use).
  private func evictIdleSessions() async {
    let period = max(settings.idleEviction / 4, .milliseconds(50))
    while !Task.isCancelled {
      try? await Task.sleep(for: period)
      for session in evictable() {
        await session.close()
        logger.debug("evicted an idle session", metadata: ["session.id": "\(session.id)"])
      }
    }
  }

  /// Removes and returns the sessions to evict now.
  func evictable(now: ContinuousClock.Instant = .now) -> [SessionActor] {
    sessions.withLock { sessions in
      let idle = sessions.filter { $0.value.leases == 0 && now - $0.value.lastUse >= settings.idleEviction }
      for id in idle.keys { sessions.removeValue(forKey: id) }
      return idle.values.map(\.session)
    }
  }
}
