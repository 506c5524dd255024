import Foundation
import GRDB

/// A Slack thread Inspect works in: its session once there is one, a question about the
/// repository while one waits for a button, and where the progress report of its session is.
struct SlackThreadRecord: Codable, Sendable, FetchableRecord, PersistableRecord, Equatable {
  static let databaseTableName = "slackThread"
  var key: String
  var channel: String
  var threadTs: String
  var sessionId: String?
  var questionTs: String?
  var requestUser = ""
  var requestTs = ""
  var requestText = ""
  var channelName = ""
  var turnId: String?
  var progressTs: String?
  var finishedTurnId: String?
  var followSeq: Int64 = 0
  var following = false
  var updatedAt = Date()
}

extension IndexDatabase {
  func slackThread(key: String) async throws -> SlackThreadRecord? {
    try await writer.read { try SlackThreadRecord.fetchOne($0, key: key) }
  }

  func slackThread(sessionID: String) async throws -> SlackThreadRecord? {
    try await writer.read { try SlackThreadRecord.filter(Column("sessionId") == sessionID).fetchOne($0) }
  }

  /// The thread whose question message is `ts` in `channel`.
  func slackThread(channel: String, questionTs ts: String) async throws -> SlackThreadRecord? {
    try await writer.read {
      try SlackThreadRecord.filter(Column("channel") == channel && Column("questionTs") == ts).fetchOne($0)
    }
  }

  func saveSlackThread(_ record: SlackThreadRecord) async throws {
    var record = record
    record.updatedAt = Date()
    try await writer.write { [record] in try record.save($0) }
  }

  /// Changes a thread's record in one transaction; nil when there is none.
  @discardableResult
  func updateSlackThread(
    key: String, _ change: @Sendable (inout SlackThreadRecord) -> Void
  ) async throws -> SlackThreadRecord? {
    try await writer.write { db in
      guard var record = try SlackThreadRecord.fetchOne(db, key: key) else { return nil }
      change(&record)
      record.updatedAt = Date()
      try record.update(db)
      return record
    }
  }

  /// Threads whose session's progress was being reported (to carry on after a restart).
  func followedSlackThreads() async throws -> [SlackThreadRecord] {
    try await writer.read { try SlackThreadRecord.filter(Column("following") == true).fetchAll($0) }
  }

  /// The enabled user with this email (case-insensitive), if any.
  func user(email: String) async throws -> UserRecord? {
    guard !email.isEmpty else { return nil }
    return try await writer.read {
      try UserRecord.filter(sql: "lower(email) = lower(?) AND disabled = 0", arguments: [email]).fetchOne($0)
    }
  }
}
