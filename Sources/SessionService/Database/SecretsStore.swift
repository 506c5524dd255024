import Crypto
import Foundation
import GRDB
import GRPCCore
import InspectKit
import InspectProtos

/// Secrets (people's tokens, integration credentials), encrypted at rest with AES-GCM in
/// `sessions/index.sqlite`. Each value is sealed with the key and, as authenticated data, its
/// scope, owner and name, so a row copied onto another secret does not open. Values leave this
/// type only through ``value(_:owner:name:)`` and ``credentials(repository:)`` — never through
/// an RPC, a log line or an event.
///
/// The key (32 bytes) comes from `INSPECT_SECRETS_KEY` (base64), else the file
/// `INSPECT_SECRETS_KEY_FILE` names (32 raw bytes or base64), else
/// `<data-dir>/sessions/secrets.key`, created with mode 0600 on first start.
struct SecretsStore: Sendable {
  let writer: any DatabaseWriter
  let key: SymmetricKey

  static let keyFileName = "secrets.key"

  init(writer: any DatabaseWriter, key: SymmetricKey) throws {
    self.writer = writer
    self.key = key
    var migrator = DatabaseMigrator()
    migrator.registerMigration("secrets v1") { db in
      try db.create(table: "secret", ifNotExists: true) { table in
        table.column("scope", .text).notNull()
        table.column("owner", .text).notNull()
        table.column("name", .text).notNull()
        table.column("sealed", .blob).notNull()
        table.column("updatedAt", .datetime).notNull()
        table.primaryKey(["scope", "owner", "name"])
      }
    }
    try migrator.migrate(writer)
  }

  /// The key from the environment, a key file, or the data directory's own (created when absent).
  static func key(environment: [String: String], directory: URL) throws -> SymmetricKey {
    func decode(_ data: Data, source: String) throws -> SymmetricKey {
      if data.count == 32 { return SymmetricKey(data: data) }
      let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
      guard let decoded = Data(base64Encoded: text), decoded.count == 32 else {
        throw ConfigurationError("\(source) is not a 32-byte key (raw, or base64 of 32 bytes)")
      }
      return SymmetricKey(data: decoded)
    }
    if let text = environment["INSPECT_SECRETS_KEY"], !text.isEmpty {
      return try decode(Data(text.utf8), source: "INSPECT_SECRETS_KEY")
    }
    if let path = environment["INSPECT_SECRETS_KEY_FILE"], !path.isEmpty {
      guard let data = FileManager.default.contents(atPath: path) else {
        throw ConfigurationError("INSPECT_SECRETS_KEY_FILE=\(path) cannot be read")
      }
      return try decode(data, source: "INSPECT_SECRETS_KEY_FILE=\(path)")
    }
    let file = directory.appendingPathComponent(keyFileName)
    if let data = FileManager.default.contents(atPath: file.path) {
      return try decode(data, source: file.path)
    }
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let key = SymmetricKey(size: .bits256)
    let data = key.withUnsafeBytes { Data($0) }
    guard FileManager.default.createFile(atPath: file.path, contents: data, attributes: [.posixPermissions: 0o600])
    else { throw ConfigurationError("cannot create the secrets key file \(file.path)") }
    return key
  }

  // MARK: - Secrets

  /// Stores (or replaces) a secret.
  func set(
    _ scope: Inspect_Session_V1_SecretScope, owner: String, name: String, value: String
  ) async throws -> Inspect_Session_V1_SecretInfo {
    let sealed = try AES.GCM.seal(Data(value.utf8), using: key, authenticating: Self.label(scope, owner, name))
    guard let combined = sealed.combined else { throw RPCError(code: .internalError, message: "sealing failed") }
    let now = Date()
    try await writer.write { db in
      try db.execute(
        sql: "INSERT OR REPLACE INTO secret (scope, owner, name, sealed, updatedAt) VALUES (?, ?, ?, ?, ?)",
        arguments: [Self.column(scope), owner, name, combined, now])
    }
    return Self.info(scope, owner, name, now)
  }

  /// Metadata of the secrets matching the filters (nil: any).
  func list(scope: Inspect_Session_V1_SecretScope?, owner: String?) async throws -> [Inspect_Session_V1_SecretInfo] {
    try await writer.read { db in
      try Row.fetchAll(
        db,
        sql: """
          SELECT scope, owner, name, updatedAt FROM secret
          WHERE (? IS NULL OR scope = ?) AND (? IS NULL OR owner = ?) ORDER BY scope, owner, name
          """,
        arguments: [scope.map(Self.column), scope.map(Self.column), owner, owner]
      ).map { row in
        Self.info(Self.scope(row["scope"]), row["owner"], row["name"], row["updatedAt"])
      }
    }
  }

  /// Deletes a secret; false when there was none.
  func delete(_ scope: Inspect_Session_V1_SecretScope, owner: String, name: String) async throws -> Bool {
    try await writer.write { db in
      try db.execute(
        sql: "DELETE FROM secret WHERE scope = ? AND owner = ? AND name = ?",
        arguments: [Self.column(scope), owner, name])
      return db.changesCount > 0
    }
  }

  /// A secret's value, or nil when there is none; a value that does not open with this key (a
  /// different key, a tampered row) is an error naming the secret, not its value.
  func value(_ scope: Inspect_Session_V1_SecretScope, owner: String, name: String) async throws -> String? {
    let sealed = try await writer.read { db in
      try Data.fetchOne(
        db, sql: "SELECT sealed FROM secret WHERE scope = ? AND owner = ? AND name = ?",
        arguments: [Self.column(scope), owner, name])
    }
    guard let sealed else { return nil }
    return try open(sealed, scope, owner, name)
  }

  /// The integration credentials a turn on `repository` gets: every GLOBAL secret named
  /// `<integration>.<field>`, overridden by the repository's own. An integration is enabled for
  /// a repository when it has credentials there.
  func credentials(repository: String) async throws -> [Inspect_Sandbox_V1_IntegrationCredential] {
    let rows = try await writer.read { db in
      try Row.fetchAll(
        db,
        sql: """
          SELECT scope, owner, name, sealed FROM secret
          WHERE (scope = 'global') OR (scope = 'repository' AND owner = ?) ORDER BY scope = 'repository', name
          """,
        arguments: [repository])
    }
    var byName: [String: Inspect_Sandbox_V1_IntegrationCredential] = [:]
    for row in rows {
      let name: String = row["name"]
      guard let dot = name.firstIndex(of: "."), dot != name.startIndex else { continue }
      let scope = Self.scope(row["scope"])
      let owner: String = row["owner"]
      let value = try open(row["sealed"], scope, owner, name)
      byName[name] = .with {
        $0.integration = String(name[..<dot])
        $0.name = String(name[name.index(after: dot)...])
        $0.value = value
      }
    }
    return byName.keys.sorted().compactMap { byName[$0] }
  }

  // MARK: - Encoding

  private func open(
    _ sealed: Data, _ scope: Inspect_Session_V1_SecretScope, _ owner: String, _ name: String
  ) throws -> String {
    do {
      let box = try AES.GCM.SealedBox(combined: sealed)
      return String(
        decoding: try AES.GCM.open(box, using: key, authenticating: Self.label(scope, owner, name)), as: UTF8.self)
    } catch {
      throw RPCError(
        code: .internalError,
        message:
          "secret \(Self.column(scope))/\(owner)/\(name) does not open with the configured key (was the key changed?)")
    }
  }

  private static func label(_ scope: Inspect_Session_V1_SecretScope, _ owner: String, _ name: String) -> Data {
    Data("\(column(scope))\u{0}\(owner)\u{0}\(name)".utf8)
  }

  static func column(_ scope: Inspect_Session_V1_SecretScope) -> String {
    switch scope {
    case .user: "user"
    case .repository: "repository"
    case .global: "global"
    case .unspecified, .UNRECOGNIZED: "unspecified"
    }
  }

  static func scope(_ column: String) -> Inspect_Session_V1_SecretScope {
    switch column {
    case "user": .user
    case "repository": .repository
    case "global": .global
    default: .unspecified
    }
  }

  private static func info(
    _ scope: Inspect_Session_V1_SecretScope, _ owner: String, _ name: String, _ updated: Date
  ) -> Inspect_Session_V1_SecretInfo {
    .with {
      $0.scope = scope
      $0.owner = owner
      $0.name = name
      $0.updatedAt = .init(date: updated)
    }
  }
}
