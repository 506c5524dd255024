import Crypto
import Foundation
import GRDB
import GRPCCore
import InspectKit

/// `sessions/index.sqlite`: users and their API tokens (stored as SHA-256 hashes) for now;
/// sessions, participants and PR links join it as they are built.
///
/// WAL mode with `synchronous=FULL`: whatever it acknowledges survives power loss.
struct IndexDatabase: Sendable {
  let writer: any DatabaseWriter

  /// Opens (creating if needed) the index at `url` in WAL mode.
  static func open(at url: URL) throws -> IndexDatabase {
    try IndexDatabase(writer: try DatabasePool.durable(at: url))
  }

  /// An in-memory index for unit tests.
  static func inMemory() throws -> IndexDatabase {
    try IndexDatabase(writer: DatabaseQueue())
  }

  init(writer: any DatabaseWriter) throws {
    self.writer = writer
    try Self.migrator.migrate(writer)
  }

  static var migrator: DatabaseMigrator {
    var migrator = DatabaseMigrator()
    migrator.registerMigration("v1: users and api tokens") { db in
      try db.create(table: "user") { table in
        table.primaryKey("id", .text)
        table.column("displayName", .text).notNull()
        table.column("email", .text).notNull().defaults(to: "")
        table.column("githubLogin", .text).notNull().defaults(to: "")
        table.column("isAdmin", .boolean).notNull().defaults(to: false)
        table.column("disabled", .boolean).notNull().defaults(to: false)
        table.column("createdAt", .datetime).notNull()
      }
      try db.create(table: "apiToken") { table in
        table.primaryKey("id", .text)
        table.column("userId", .text).notNull().references("user", onDelete: .cascade)
        table.column("name", .text).notNull()
        table.column("secretHash", .text).notNull().unique()
        table.column("prefix", .text).notNull()
        table.column("createdAt", .datetime).notNull()
        table.column("lastUsedAt", .datetime)
        table.column("revokedAt", .datetime)
      }
    }
    migrator.registerMigration("v2: sessions") { db in
      try db.create(table: "session") { table in
        table.primaryKey("id", .text)
        table.column("title", .text).notNull().defaults(to: "")
        table.column("repository", .text).notNull()
        table.column("baseBranch", .text).notNull()
        table.column("branch", .text).notNull()
        table.column("state", .text).notNull()
        table.column("model", .text).notNull().defaults(to: "")
        table.column("client", .text).notNull().defaults(to: "")
        table.column("externalKey", .text).unique()
        table.column("createdBy", .text).notNull().references("user")
        table.column("createdAt", .datetime).notNull()
        table.column("updatedAt", .datetime).notNull()
        table.column("lastSeq", .integer).notNull().defaults(to: 0)
        table.column("currentTurnId", .text)
        table.column("queuedPrompts", .integer).notNull().defaults(to: 0)
      }
      try db.create(index: "session_on_updatedAt", on: "session", columns: ["updatedAt"])
    }
    migrator.registerMigration("v3: participants, child sessions, pull requests, activity") { db in
      try db.create(table: "participant") { table in
        table.column("sessionId", .text).notNull().references("session", onDelete: .cascade)
        table.column("userId", .text).notNull().references("user", onDelete: .cascade)
        table.column("role", .text).notNull().check { ["owner", "collaborator", "viewer"].contains($0) }
        table.column("joinedAt", .datetime).notNull()
        table.column("addedBy", .text).references("user")
        table.primaryKey(["sessionId", "userId"])
      }
      try db.create(index: "participant_on_userId", on: "participant", columns: ["userId"])
      try db.alter(table: "session") { table in
        table.add(column: "parentId", .text).references("session")
        table.add(column: "depth", .integer).notNull().defaults(to: 0)
      }
      try db.create(index: "session_on_parentId", on: "session", columns: ["parentId"])
      // Every existing session's creator owns it.
      try db.execute(
        sql:
          "INSERT INTO participant (sessionId, userId, role, joinedAt) SELECT id, createdBy, 'owner', createdAt FROM session"
      )
      try db.create(table: "pullRequest") { table in
        table.primaryKey("sessionId", .text).references("session", onDelete: .cascade)
        table.column("repository", .text).notNull()
        table.column("number", .integer).notNull()
        table.column("url", .text).notNull()
        table.column("state", .text).notNull()
        table.column("openedAt", .datetime)
        table.column("mergedAt", .datetime)
        table.column("closedAt", .datetime)
        table.column("updatedAt", .datetime).notNull()
      }
      // Prompts and finished turns, for the stats page.
      try db.create(table: "activity") { table in
        table.autoIncrementedPrimaryKey("id")
        table.column("sessionId", .text).notNull().references("session", onDelete: .cascade)
        table.column("kind", .text).notNull().check { ["prompt", "turn"].contains($0) }
        table.column("userId", .text).notNull()
        table.column("client", .text).notNull()
        table.column("outcome", .text)
        table.column("inputTokens", .integer).notNull().defaults(to: 0)
        table.column("outputTokens", .integer).notNull().defaults(to: 0)
        table.column("costUsd", .double).notNull().defaults(to: 0)
        table.column("at", .datetime).notNull()
      }
      try db.create(index: "activity_on_at", on: "activity", columns: ["at"])
    }
    migrator.registerMigration("v4: repositories, webhook deliveries") { db in
      try db.create(table: "repository") { table in
        table.primaryKey("name", .text)
        table.column("defaultBranch", .text).notNull()
        table.column("headCommit", .text).notNull()
        table.column("registeredBy", .text).notNull()
        table.column("registeredAt", .datetime).notNull()
        table.column("mirroredAt", .datetime).notNull()
      }
      try db.create(table: "webhookDelivery") { table in
        table.primaryKey("id", .text)
        table.column("event", .text).notNull()
        table.column("payload", .blob).notNull()
        table.column("receivedAt", .datetime).notNull()
        table.column("state", .text).notNull().check { ["pending", "done", "ignored", "failed"].contains($0) }
        table.column("outcome", .text).notNull().defaults(to: "")
        table.column("processedAt", .datetime)
        // Failed attempts so far (transient failures are tried again), and not before when.
        table.column("attempts", .integer).notNull().defaults(to: 0)
        table.column("notBefore", .datetime)
      }
      try db.create(index: "webhookDelivery_on_state", on: "webhookDelivery", columns: ["state"])
      try db.create(index: "pullRequest_on_repository_number", on: "pullRequest", columns: ["repository", "number"])
    }
    migrator.registerMigration("v5: slack threads") { db in
      try db.create(table: "slackThread") { table in
        // `slack:<team>:<channel>:<thread ts>`, the external key of the thread's session.
        table.primaryKey("key", .text)
        table.column("channel", .text).notNull()
        table.column("threadTs", .text).notNull()
        table.column("sessionId", .text)
        // A question "which repository?" waiting for a button, and the request it is for.
        table.column("questionTs", .text)
        table.column("requestUser", .text).notNull().defaults(to: "")
        table.column("requestTs", .text).notNull().defaults(to: "")
        table.column("requestText", .text).notNull().defaults(to: "")
        table.column("channelName", .text).notNull().defaults(to: "")
        // The progress message of the turn being reported, and the event the report resumes after.
        table.column("turnId", .text)
        table.column("progressTs", .text)
        table.column("finishedTurnId", .text)
        table.column("followSeq", .integer).notNull().defaults(to: 0)
        table.column("following", .boolean).notNull().defaults(to: false)
        table.column("updatedAt", .datetime).notNull()
      }
      try db.create(index: "slackThread_on_sessionId", on: "slackThread", columns: ["sessionId"])
      try db.create(index: "slackThread_on_question", on: "slackThread", columns: ["channel", "questionTs"])
    }
    return migrator
  }

  /// The `synchronous` pragma in force on the writer (2 = FULL), for tests and start-up checks.
  func synchronousMode() async throws -> Int {
    try await writer.read { try Int.fetchOne($0, sql: "PRAGMA synchronous") ?? -1 }
  }
}

extension DatabasePool {
  /// A WAL database at `url` (its folder created if needed) with foreign keys on and
  /// `synchronous=FULL`: what it acknowledges survives power loss, not only a crash.
  static func durable(at url: URL) throws -> DatabasePool {
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    var configuration = Configuration()
    configuration.foreignKeysEnabled = true
    let pool = try DatabasePool(path: url.path, configuration: configuration)
    // DatabasePool switches its writer to synchronous=NORMAL when it enables WAL; put FULL back.
    try pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA synchronous = FULL") }
    return pool
  }
}

// MARK: - Callers

extension IndexDatabase {
  /// The user the current call acts for (``InspectCaller/userID``), who must exist and be enabled.
  func requireCaller() async throws -> UserRecord {
    guard let id = InspectCaller.userID else {
      throw RPCError(
        code: .unauthenticated,
        message: "the call carries no '\(InspectCaller.metadataKey)': call through the Gateway with a bearer token")
    }
    guard let user = try await user(id: id), !user.disabled else {
      throw RPCError(code: .unauthenticated, message: "user '\(id)' does not exist or is disabled")
    }
    return user
  }
}

// MARK: - Records

struct UserRecord: Codable, Sendable, FetchableRecord, PersistableRecord, Equatable {
  static let databaseTableName = "user"
  var id: String
  var displayName: String
  var email: String
  var githubLogin: String
  var isAdmin: Bool
  var disabled: Bool
  var createdAt: Date
}

struct APITokenRecord: Codable, Sendable, FetchableRecord, PersistableRecord, Equatable {
  static let databaseTableName = "apiToken"
  enum Columns {
    static let secretHash = Column(CodingKeys.secretHash)
    static let userId = Column(CodingKeys.userId)
  }
  var id: String
  var userId: String
  var name: String
  var secretHash: String
  var prefix: String
  var createdAt: Date
  var lastUsedAt: Date?
  var revokedAt: Date?
}

// MARK: - Users and tokens

extension IndexDatabase {
  func createUser(displayName: String, email: String, githubLogin: String, isAdmin: Bool) async throws -> UserRecord {
    let user = UserRecord(
      id: Identifier.make(.user), displayName: displayName, email: email, githubLogin: githubLogin,
      isAdmin: isAdmin, disabled: false, createdAt: Date())
    try await writer.write { try user.insert($0) }
    return user
  }

  /// Users in id order (ids are ULIDs, so creation order), `limit` of them after `afterID`.
  func users(after afterID: String? = nil, limit: Int = 1000) async throws -> [UserRecord] {
    try await writer.read { db in
      var request = UserRecord.order(Column("id")).limit(limit)
      if let afterID { request = request.filter(Column("id") > afterID) }
      return try request.fetchAll(db)
    }
  }

  /// True when another user already has this email or GitHub login (empty values never clash).
  func userExists(email: String, githubLogin: String) async throws -> Bool {
    try await writer.read { db in
      let byEmail = email.isEmpty ? false : try UserRecord.filter(Column("email") == email).fetchCount(db) > 0
      let byLogin =
        githubLogin.isEmpty
        ? false
        // GitHub logins are case-insensitive.
        : try UserRecord.filter(sql: "lower(githubLogin) = lower(?)", arguments: [githubLogin]).fetchCount(db) > 0
      return byEmail || byLogin
    }
  }

  func user(id: String) async throws -> UserRecord? {
    try await writer.read { try Self.user(id: id, in: $0) }
  }

  /// Several users in one read (missing ids are left out).
  func users(ids: some Sequence<String>) async throws -> [String: UserRecord] {
    let ids = Array(Set(ids))
    return try await writer.read { db in
      var users: [String: UserRecord] = [:]
      for id in ids { users[id] = try Self.user(id: id, in: db) }
      return users
    }
  }

  /// One user by id, through a prepared statement kept by the connection (every request reads
  /// its caller).
  static func user(id: String, in db: Database) throws -> UserRecord? {
    try UserRecord.fetchOne(db.cachedStatement(sql: "SELECT * FROM user WHERE id = ?"), arguments: [id])
  }

  /// Creates a token for `userId` and returns it with its secret, which is stored only hashed.
  func createToken(userId: String, name: String) async throws -> (APITokenRecord, secret: String) {
    let secret = TokenSecret.generate()
    let token = APITokenRecord(
      id: Identifier.make(.token), userId: userId, name: name, secretHash: TokenSecret.hash(secret),
      prefix: String(secret.prefix(9)), createdAt: Date(), lastUsedAt: nil, revokedAt: nil)
    try await writer.write { try token.insert($0) }
    return (token, secret)
  }

  func tokens(userId: String, includeRevoked: Bool) async throws -> [APITokenRecord] {
    try await writer.read { db in
      var request = APITokenRecord.filter(APITokenRecord.Columns.userId == userId).order(Column("id"))
      if !includeRevoked { request = request.filter(Column("revokedAt") == nil) }
      return try request.fetchAll(db)
    }
  }

  func token(id: String) async throws -> APITokenRecord? {
    try await writer.read { try APITokenRecord.fetchOne($0, key: id) }
  }

  /// Marks a token revoked (once) and returns it; nil when no such token exists.
  func revokeToken(id: String) async throws -> APITokenRecord? {
    try await writer.write { db in
      guard var token = try APITokenRecord.fetchOne(db, key: id) else { return nil }
      if token.revokedAt == nil {
        token.revokedAt = Date()
        try token.update(db)
      }
      return token
    }
  }

  func userCount() async throws -> Int {
    try await writer.read { try UserRecord.fetchCount($0) }
  }

  /// The user and token a presented secret belongs to, unless unknown, revoked or disabled.
  /// Records the token's last use (at most once a minute, to keep authentication a read).
  func authenticate(secret: String) async throws -> (UserRecord, APITokenRecord)? {
    let hash = TokenSecret.hash(secret)
    let found: (UserRecord, APITokenRecord)? = try await writer.read { db in
      guard
        let token = try APITokenRecord.fetchOne(
          db.cachedStatement(sql: "SELECT * FROM apiToken WHERE secretHash = ?"), arguments: [hash]),
        token.revokedAt == nil,
        let user = try Self.user(id: token.userId, in: db), !user.disabled
      else { return nil }
      return (user, token)
    }
    guard let (user, foundToken) = found else { return nil }
    var token = foundToken
    let now = Date()
    if token.lastUsedAt.map({ now.timeIntervalSince($0) > 60 }) ?? true {
      token.lastUsedAt = now
      let updated = token
      try await writer.write { try updated.update($0) }
    }
    return (user, token)
  }
}

/// API token secrets: `insp_` and 43 base64url characters (256 random bits); stored as SHA-256.
enum TokenSecret {
  static func generate() -> String {
    var generator = SystemRandomNumberGenerator()
    let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    let encoded = Data(bytes).base64EncodedString()
      .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
      .replacingOccurrences(of: "=", with: "")
    return "insp_" + encoded
  }

  static func hash(_ secret: String) -> String {
    SHA256.hash(data: Data(secret.utf8)).map { String(format: "%02x", $0) }.joined()
  }
}
