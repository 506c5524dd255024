import Foundation
import GRDB

/// The storage floor of an acknowledged prompt: one small row inserted in its own transaction into
/// a WAL database with `synchronous=FULL`, opened the way SessionService opens its databases
/// (`DatabasePool.durable` in `Sources/SessionService/Database/IndexDatabase.swift`, copied here
/// so the bench does not link the service).
struct DurableInsertFloor: Sendable {
  let pool: DatabasePool

  /// Creates `url` (in the same directory, so on the same filesystem, as SessionService's data).
  init(at url: URL) throws {
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    var configuration = Configuration()
    configuration.foreignKeysEnabled = true
    pool = try DatabasePool(path: url.path, configuration: configuration)
    // DatabasePool switches its writer to synchronous=NORMAL when it enables WAL; put FULL back.
    try pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA synchronous = FULL") }
    try pool.write { db in
      try db.execute(
        sql: "CREATE TABLE IF NOT EXISTS row (id INTEGER PRIMARY KEY, text TEXT NOT NULL, createdAt DATETIME NOT NULL)")
    }
  }

  /// One durable insert: a write transaction, committed (and fsynced) before it returns.
  func insert(_ text: String) async throws {
    try await pool.write { db in
      try db.execute(sql: "INSERT INTO row (text, createdAt) VALUES (?, ?)", arguments: [text, Date()])
    }
  }

  /// The `synchronous` pragma in force on the writer (2 = FULL).
  func synchronousMode() async throws -> Int {
    try await pool.write { try Int.fetchOne($0, sql: "PRAGMA synchronous") ?? -1 }
  }
}
