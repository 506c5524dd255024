import Foundation
import GRDB
import InspectProtos

/// A registered repository (`inspect repos add`).
struct RepositoryRecord: Codable, Sendable, FetchableRecord, PersistableRecord, Equatable {
  static let databaseTableName = "repository"
  var name: String
  var defaultBranch: String
  var headCommit: String
  var registeredBy: String
  var registeredAt: Date
  var mirroredAt: Date

  func proto(registeredBy user: UserRecord?) -> Inspect_Session_V1_RegisteredRepository {
    .with {
      $0.name = name
      $0.defaultBranch = defaultBranch
      $0.headCommit = headCommit
      if let user { $0.registeredBy = user.ref } else { $0.registeredBy.userID = registeredBy }
      $0.registeredAt = .init(date: registeredAt)
      $0.mirroredAt = .init(date: mirroredAt)
    }
  }
}

/// Where deliveries come from. They share one table: Slack's ids are stored with a `slack:`
/// prefix (GitHub's delivery ids are GUIDs).
enum DeliverySource: Sendable {
  case github, slack

  static let slackPrefix = "slack:"

  var filter: String {
    switch self {
    case .github: "id NOT LIKE 'slack:%'"
    case .slack: "id LIKE 'slack:%'"
    }
  }
}

/// A GitHub webhook delivery or a Slack request, kept from its arrival until it was processed
/// (and after, so that an id seen again is recognised).
struct WebhookDeliveryRecord: Codable, Sendable, FetchableRecord, PersistableRecord, Equatable {
  static let databaseTableName = "webhookDelivery"
  enum State: String, Codable, Sendable {
    case pending, done, ignored, failed
  }
  var id: String
  var event: String
  var payload: Data
  var receivedAt: Date
  var state: State
  var outcome: String
  var processedAt: Date?
  var attempts: Int = 0
  var notBefore: Date? = nil
}

extension IndexDatabase {
  /// Registers `name` (or records a new fetch of its mirror, keeping the first registration's
  /// author and time); true when it was not registered before.
  func register(
    repository name: String, defaultBranch: String, headCommit: String, by userID: String
  ) async throws -> (RepositoryRecord, created: Bool) {
    try await writer.write { db in
      let now = Date()
      if var existing = try RepositoryRecord.fetchOne(db, key: name) {
        existing.defaultBranch = defaultBranch
        existing.headCommit = headCommit
        existing.mirroredAt = now
        try existing.update(db)
        return (existing, false)
      }
      let record = RepositoryRecord(
        name: name, defaultBranch: defaultBranch, headCommit: headCommit, registeredBy: userID, registeredAt: now,
        mirroredAt: now)
      try record.insert(db)
      return (record, true)
    }
  }

  func repositories() async throws -> [RepositoryRecord] {
    try await writer.read { try RepositoryRecord.order(Column("name")).fetchAll($0) }
  }

  func repository(_ name: String) async throws -> RepositoryRecord? {
    try await writer.read { try RepositoryRecord.fetchOne($0, key: name) }
  }

  /// Stores a delivery as pending; false when its id was stored before (nothing is changed),
  /// except a delivery that failed when `repeatFailed`: GitHub's "Redeliver" (a person's choice)
  /// makes it pending again. Slack's retries are automatic and never repeat a failure.
  func storeDelivery(id: String, event: String, payload: Data, repeatFailed: Bool = true) async throws -> Bool {
    try await writer.write { db in
      if let existing = try WebhookDeliveryRecord.fetchOne(db, key: id) {
        guard repeatFailed, existing.state == .failed else { return false }
      }
      try WebhookDeliveryRecord(
        id: id, event: event, payload: payload, receivedAt: Date(), state: .pending, outcome: "", processedAt: nil
      ).save(db)
      return true
    }
  }

  /// Deliveries not processed yet whose time has come, oldest first; and when the next of those
  /// waiting for a retry is due.
  func pendingDeliveries(
    from source: DeliverySource = .github, now: Date = Date()
  ) async throws -> (due: [WebhookDeliveryRecord], next: Date?) {
    try await writer.read { db in
      let pending = try WebhookDeliveryRecord.filter(Column("state") == "pending")
        .filter(sql: source.filter).order(Column("receivedAt")).fetchAll(db)
      let due = pending.filter { ($0.notBefore ?? .distantPast) <= now }
      let next = pending.compactMap(\.notBefore).filter { $0 > now }.min()
      return (due, next)
    }
  }

  /// A transient failure: the delivery stays pending until `notBefore`.
  func retryDelivery(id: String, attempts: Int, notBefore: Date, outcome: String) async throws {
    try await writer.write { db in
      try db.execute(
        sql: "UPDATE webhookDelivery SET attempts = ?, notBefore = ?, outcome = ? WHERE id = ?",
        arguments: [attempts, notBefore, outcome, id])
    }
  }

  func delivery(id: String) async throws -> WebhookDeliveryRecord? {
    try await writer.read { try WebhookDeliveryRecord.fetchOne($0, key: id) }
  }

  func finishDelivery(id: String, state: WebhookDeliveryRecord.State, outcome: String) async throws {
    try await writer.write { db in
      try db.execute(
        sql: "UPDATE webhookDelivery SET state = ?, outcome = ?, processedAt = ? WHERE id = ?",
        arguments: [state.rawValue, outcome, Date(), id])
    }
  }

  /// The session whose pull request is `repository`#`number`.
  func session(pullRequest number: Int, repository: String) async throws -> String? {
    try await writer.read { db in
      try String.fetchOne(
        db,
        // GitHub's repository names are case-insensitive.
        sql:
          "SELECT sessionId FROM pullRequest WHERE repository = ? COLLATE NOCASE AND number = ? ORDER BY updatedAt DESC",
        arguments: [repository, number])
    }
  }

  /// The user whose GitHub login is `login` (GitHub logins are case-insensitive).
  func user(githubLogin login: String) async throws -> UserRecord? {
    guard !login.isEmpty else { return nil }
    return try await writer.read { db in
      try UserRecord.filter(sql: "lower(githubLogin) = lower(?)", arguments: [login]).fetchOne(db)
    }
  }

  /// The pull request recorded for a session.
  func pullRequest(sessionID: String) async throws -> PullRequestRecord? {
    try await writer.read { try PullRequestRecord.fetchOne($0, key: sessionID) }
  }
}
