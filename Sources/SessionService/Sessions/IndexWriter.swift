import Foundation
import GRDB
import Logging
import Synchronization

/// Writes what the index learns from sessions — summary columns, activity for the stats page,
/// pull request links — in batches, off the path of acknowledgements: a prompt is acknowledged
/// once it is in its session's own file; the index row follows within milliseconds, and the
/// session file stays the truth (it is read again whenever a session is loaded).
///
/// Writes are applied in the order they were enqueued (the newest summary of a session wins).
/// ``flush()`` waits until everything enqueued before it is stored, for state changes that
/// recovery relies on. The writer runs from its creation until ``finish()``.
final class IndexWriter: Sendable {
  enum Write: Sendable {
    case summary(SessionSummary)
    case activity(ActivityRecord)
    case pullRequest(PullRequestRecord)
    case flushed(CheckedContinuation<Void, Never>)
  }

  let index: IndexDatabase
  let logger: Logger
  private let queue = BatchQueue<Write>()
  private let running = Mutex<Task<Void, Never>?>(nil)

  /// Creates the writer and starts storing (not tied to any caller's task or cancellation).
  static func start(index: IndexDatabase, logger: Logger) -> IndexWriter {
    let writer = IndexWriter(index: index, logger: logger)
    writer.running.withLock { $0 = Task.detached { await writer.run() } }
    return writer
  }

  private init(index: IndexDatabase, logger: Logger) {
    self.index = index
    self.logger = logger
  }

  func enqueue(_ write: Write) { queue.push(write) }

  /// Returns once every write enqueued before it is stored (or the writer has stopped).
  func flush() async {
    await withCheckedContinuation { continuation in
      if queue.push(.flushed(continuation)) == nil { continuation.resume() }
    }
  }

  private func run() async {
    while let batch = await queue.next() {
      await store(batch)
    }
  }

  /// Stops taking writes and returns once what was waiting is stored.
  func finish() async {
    queue.finish()
    await running.withLock { $0 }?.value
  }

  private func store(_ batch: [Write]) async {
    var summaries: [String: SessionSummary] = [:]
    var order: [String] = []
    var activities: [ActivityRecord] = []
    var pullRequests: [PullRequestRecord] = []
    var waiters: [CheckedContinuation<Void, Never>] = []
    for write in batch {
      switch write {
      case .summary(let summary):
        if summaries.updateValue(summary, forKey: summary.id) == nil { order.append(summary.id) }
      case .activity(let activity): activities.append(activity)
      case .pullRequest(let pullRequest): pullRequests.append(pullRequest)
      case .flushed(let continuation): waiters.append(continuation)
      }
    }
    let ordered = order.compactMap { summaries[$0] }
    if !ordered.isEmpty || !activities.isEmpty || !pullRequests.isEmpty {
      do {
        try await index.writer.write { [activities, pullRequests] db in
          for summary in ordered { try summary.save(db) }
          for activity in activities { try activity.insert(db) }
          for pullRequest in pullRequests { try pullRequest.upsert(db) }
        }
      } catch {
        logger.error("could not update the session index", metadata: ["error": "\(error)"])
      }
    }
    for waiter in waiters { waiter.resume() }
  }
}

/// A prompt or a finished turn, counted on the stats page.
struct ActivityRecord: Codable, Sendable, FetchableRecord, PersistableRecord, Equatable {
  static let databaseTableName = "activity"
  enum Kind: String, Codable, Sendable { case prompt, turn }
  var id: Int64?
  var sessionId: String
  var kind: Kind
  var userId: String
  var client: String
  var outcome: String?
  var inputTokens: Int64 = 0
  var outputTokens: Int64 = 0
  var costUsd: Double = 0
  var at: Date
}

/// The pull request of a session, as its `pull_request` events report it.
struct PullRequestRecord: Codable, Sendable, FetchableRecord, PersistableRecord, Equatable {
  static let databaseTableName = "pullRequest"
  var sessionId: String
  var repository: String
  var number: Int64
  var url: String
  var state: String
  var openedAt: Date?
  var mergedAt: Date?
  var closedAt: Date?
  var updatedAt: Date

  /// Inserts or updates, keeping the first time it was opened, merged or closed.
  func upsert(_ db: Database) throws {
    try db.execute(
      sql: """
        INSERT INTO pullRequest (sessionId, repository, number, url, state, openedAt, mergedAt, closedAt, updatedAt)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(sessionId) DO UPDATE SET repository = excluded.repository, number = excluded.number,
          url = excluded.url, state = excluded.state, openedAt = COALESCE(openedAt, excluded.openedAt),
          mergedAt = COALESCE(mergedAt, excluded.mergedAt), closedAt = COALESCE(closedAt, excluded.closedAt),
          updatedAt = excluded.updatedAt
        """,
      arguments: [sessionId, repository, number, url, state, openedAt, mergedAt, closedAt, updatedAt])
  }
}
