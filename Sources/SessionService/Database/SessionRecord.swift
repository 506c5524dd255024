import Foundation
import GRDB
import InspectKit
import InspectProtos
import SwiftProtobuf

/// A session's row in `index.sqlite`: what lists and lookups need without opening its own file.
/// The session's own file is the truth for its events; this row is updated after each change.
struct SessionRecord: Codable, Sendable, FetchableRecord, PersistableRecord, Equatable {
  static let databaseTableName = "session"

  enum State: String, Codable, Sendable {
    case idle, queued, running, stopping, archived

    var proto: Inspect_Session_V1_SessionState {
      switch self {
      case .idle: .idle
      case .queued: .queued
      case .running: .running
      case .stopping: .stopping
      case .archived: .archived
      }
    }
  }

  var id: String
  var title: String
  var repository: String
  var baseBranch: String
  var branch: String
  var state: State
  var model: String
  var client: String
  var externalKey: String?
  var createdBy: String
  var createdAt: Date
  var updatedAt: Date
  var lastSeq: Int64
  var currentTurnId: String?
  var queuedPrompts: Int
  /// The session that spawned this one, if any.
  var parentId: String? = nil
  /// 0 for a top-level session, the parent's depth + 1 for a child.
  var depth: Int = 0

  func proto(creator: UserRecord?) -> Inspect_Session_V1_Session {
    .with {
      $0.id = id
      $0.title = title
      $0.repository = .with {
        $0.fullName = repository
        $0.defaultBranch = baseBranch
      }
      $0.baseBranch = baseBranch
      $0.branch = branch
      $0.state = state.proto
      $0.createdBy = .with {
        $0.userID = createdBy
        $0.displayName = creator?.displayName ?? ""
        $0.email = creator?.email ?? ""
      }
      $0.createdAt = Google_Protobuf_Timestamp(date: createdAt)
      $0.updatedAt = Google_Protobuf_Timestamp(date: updatedAt)
      $0.lastSeq = UInt64(lastSeq)
      $0.model = model
      $0.client = client
      $0.externalKey = externalKey ?? ""
      $0.currentTurnID = currentTurnId ?? ""
      $0.queuedPrompts = UInt32(queuedPrompts)
      $0.parentSessionID = parentId ?? ""
    }
  }
}

extension IndexDatabase {
  func insert(_ session: SessionRecord) async throws {
    try await writer.write { try session.insert($0) }
  }

  func session(id: String) async throws -> SessionRecord? {
    try await writer.read { try SessionRecord.fetchOne($0, key: id) }
  }

  func session(externalKey: String) async throws -> SessionRecord? {
    try await writer.read { try SessionRecord.filter(Column("externalKey") == externalKey).fetchOne($0) }
  }

  /// Updates the summary columns after the session changed.
  func updateSession(
    id: String, state: SessionRecord.State, lastSeq: UInt64, currentTurnId: String?, queuedPrompts: Int
  ) async throws {
    try await writer.write { db in
      try SessionSummary(
        id: id, state: state, lastSeq: lastSeq, currentTurnId: currentTurnId, queuedPrompts: queuedPrompts,
        updatedAt: Date()
      ).save(db)
    }
  }

  /// The sessions whose parent is `id`, oldest first.
  /// The ids of a session's children, oldest first.
  func childIDs(of id: String) async throws -> [String] {
    try await writer.read { db in
      try String.fetchAll(
        db.cachedStatement(sql: "SELECT id FROM session WHERE parentId = ? ORDER BY id"), arguments: [id])
    }
  }

  func children(of id: String) async throws -> [SessionRecord] {
    try await writer.read { db in
      try SessionRecord.filter(Column("parentId") == id).order(Column("id")).fetchAll(db)
    }
  }

  /// Sessions newest first (by id: ids are ULIDs), `limit` of them after the page token's id.
  func sessions(
    before: String?, limit: Int, repository: String?, states: [SessionRecord.State], externalKey: String?,
    parentId: String? = nil, participants: [String] = []
  ) async throws -> [SessionRecord] {
    try await writer.read { db in
      var request = SessionRecord.order(Column("id").desc).limit(limit)
      if let parentId { request = request.filter(Column("parentId") == parentId) }
      for participant in participants {
        request = request.filter(
          sql: "id IN (SELECT sessionId FROM participant WHERE userId = ?)", arguments: [participant])
      }
      if let before { request = request.filter(Column("id") < before) }
      if let repository { request = request.filter(Column("repository") == repository) }
      if !states.isEmpty { request = request.filter(states.map(\.rawValue).contains(Column("state"))) }
      if let externalKey { request = request.filter(Column("externalKey") == externalKey) }
      return try request.fetchAll(db)
    }
  }

  /// Every session left RUNNING, QUEUED or STOPPING (by a crash, say), to resume or fail on start.
  func unfinishedSessions() async throws -> [SessionRecord] {
    try await writer.read { db in
      try SessionRecord.filter(["running", "queued", "stopping"].contains(Column("state"))).fetchAll(db)
    }
  }
}

/// The summary columns of a session's index row, which follow its own file.
struct SessionSummary: Sendable, Equatable {
  var id: String
  var state: SessionRecord.State
  var lastSeq: UInt64
  var currentTurnId: String?
  var queuedPrompts: Int
  var updatedAt: Date

  func save(_ db: Database) throws {
    try db.execute(
      sql: """
        UPDATE session SET state = ?, lastSeq = MAX(lastSeq, ?), currentTurnId = ?, queuedPrompts = ?, updatedAt = ?
        WHERE id = ?
        """,
      arguments: [state.rawValue, Int64(lastSeq), currentTurnId, queuedPrompts, updatedAt, id])
  }
}
