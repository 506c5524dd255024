import Foundation
import GRDB
import InspectKit
import Logging
import ServiceLifecycle
import Synchronization

/// The live sessions of this SessionService: loads each from its file on first use, creates new
/// ones, and runs their turns (one loop per session with queued prompts) as child tasks of its
/// own `run()`, so shutdown cancels them.
final class SessionRegistry: Service, Sendable {
  let index: IndexDatabase
  let paths: SessionPaths
  let runner: any AgentRunner
  let logger: Logger
  private let sessions = Mutex<[String: SessionActor]>([:])
  private let turnRequests: AsyncStream<SessionActor>
  private let turnRequestsContinuation: AsyncStream<SessionActor>.Continuation

  init(index: IndexDatabase, paths: SessionPaths, runner: any AgentRunner, logger: Logger) {
    self.index = index
    self.paths = paths
    self.runner = runner
    self.logger = logger
    (turnRequests, turnRequestsContinuation) = AsyncStream.makeStream(of: SessionActor.self)
  }

  // MARK: - Lookup and creation

  /// The live session `id`, loaded from disk if needed; nil when no such session exists.
  func session(id: String) throws -> SessionActor? {
    guard Identifier.isValid(id, kind: .session) else { return nil }
    return try sessions.withLock { sessions in
      if let live = sessions[id] { return live }
      guard let record = try index.writer.read({ try SessionRecord.fetchOne($0, key: id) }) else { return nil }
      let database = try SessionDatabase.open(at: paths.file(for: id))
      let lastSeq = try database.writer.read { UInt64(try Int64.fetchOne($0, sql: "SELECT MAX(seq) FROM event") ?? 0) }
      var current = record
      current.lastSeq = Int64(lastSeq)
      let actor = SessionActor(record: current, database: database, index: index, lastSeq: lastSeq, logger: logger)
      sessions[id] = actor
      return actor
    }
  }

  /// Creates a session (its file, its index row and its `session_created` event).
  func create(_ record: SessionRecord, creator: UserRecord) async throws -> SessionActor {
    let database = try SessionDatabase.open(at: paths.file(for: record.id))
    try await index.insert(record)
    let actor = SessionActor(record: record, database: database, index: index, lastSeq: 0, logger: logger)
    sessions.withLock { $0[record.id] = actor }
    try await actor.append([.with { $0.sessionCreated = .with { $0.session = record.proto(creator: creator) } }])
    return actor
  }

  // MARK: - Turns

  /// Starts the session's turn loop unless one is running or nothing is queued.
  func scheduleTurns(for session: SessionActor) async {
    if await session.claimTurnLoop() { turnRequestsContinuation.yield(session) }
  }

  func run() async throws {
    try await recoverInterruptedSessions()
    await withDiscardingTaskGroup { group in
      for await session in turnRequests.cancelOnGracefulShutdown() {
        let runner = self.runner
        group.addTask { await session.runQueuedTurns(runner: runner) }
      }
      group.cancelAll()
    }
    for session in sessions.withLock({ Array($0.values) }) { await session.closeSubscribers() }
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
}
