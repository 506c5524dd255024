import Foundation
import GRDB
import InspectKit
import Synchronization

/// The repository catalog and the channel picks: kept in SQLite
/// (`<data-dir>/classifier/catalog.sqlite`, WAL, `synchronous=FULL`) and, prepared for scoring,
/// in memory. Every change is committed before it is visible, so an acknowledged `UpsertRepo`,
/// `DeleteRepo` or `RecordChoice` survives a restart (and power loss).
///
/// Tables: `repo` (one row per repository: its key — the lowercased name — and its fields, lists
/// as JSON arrays), `pick` (picks per channel and repository; deleted with the repository) and
/// `removed` (repositories deleted through the RPCs, so the seed file does not bring them back;
/// upserting one again clears it).
final class RepoCatalog: Sendable {
  /// The database file.
  let file: URL
  private let database: DatabaseQueue
  private let state: Mutex<State>

  private struct State {
    var document: CatalogDocument
    var index: CatalogIndex
  }

  /// Opens the catalog in `file` (created when missing) and adds every repository of `seed` it
  /// has neither nor was told to delete: the catalog's own entries — edited through the RPCs —
  /// win over the seed's. A new database first takes in `legacy`, the JSON file earlier versions
  /// kept the catalog in, when there is one. Throws a ``ConfigurationError`` naming the file when
  /// a file is malformed or cannot be opened, or when `seed` does not exist. The seed's
  /// `choices`, if any, are not read: picks come from `RecordChoice`.
  init(file: URL, seed: URL? = nil, legacy: URL? = nil) throws {
    self.file = file
    let isNew = !FileManager.default.fileExists(atPath: file.path)
    let database: DatabaseQueue
    do {
      try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
      var configuration = Configuration()
      configuration.foreignKeysEnabled = true
      database = try DatabaseQueue(path: file.path, configuration: configuration)
      try database.writeWithoutTransaction { db in
        try db.execute(sql: "PRAGMA journal_mode = WAL")
        try db.execute(sql: "PRAGMA synchronous = FULL")
      }
      try Self.migrator.migrate(database)
    } catch let error as ConfigurationError {
      throw error
    } catch {
      throw ConfigurationError("cannot open the catalog database \(file.path): \(error)")
    }
    if isNew, let legacy, FileManager.default.fileExists(atPath: legacy.path) {
      let old = try CatalogDocument.load(from: legacy)
      try Self.saving(file) {
        try database.write { db in
          for entry in old.repos { try RepoRow(entry).insert(db, onConflict: .replace) }
          for (channel, picks) in old.choices {
            for (repo, count) in picks where old.repos.contains(where: { $0.key == repo }) {
              try PickRow(channel: channel, repoKey: repo, count: count).insert(db, onConflict: .replace)
            }
          }
        }
      }
    }
    if let seed {
      let seeded = try CatalogDocument.load(from: seed)
      try Self.saving(file) {
        try database.write { db in
          for entry in seeded.repos
          where try RepoRow.fetchOne(db, key: entry.key) == nil && RemovedRow.fetchOne(db, key: entry.key) == nil {
            try RepoRow(entry).insert(db)
          }
        }
      }
    }
    let document = try Self.saving(file) { try database.read(Self.document) }
    self.database = database
    state = Mutex(State(document: document, index: CatalogIndex(document)))
  }

  /// The catalog prepared for scoring, as it is now.
  var index: CatalogIndex { state.withLock { $0.index } }

  /// Every repository, sorted by name.
  var repos: [CatalogEntry] { state.withLock { $0.index.repos.map(\.entry) } }

  /// Adds `entry`, or replaces the one with the same name (in any case); true when it was added.
  func upsert(_ entry: CatalogEntry) throws(ClassifierError) -> Bool {
    if let problem = CatalogEntry.nameProblem(entry.name) { throw .badName(problem) }
    return try change { db in
      let existed = try RepoRow.fetchOne(db, key: entry.key) != nil
      try RepoRow(entry).insert(db, onConflict: .replace)
      _ = try RemovedRow.deleteOne(db, key: entry.key)
      return !existed
    }
  }

  /// Removes the repository named `name` (in any case) and its picks; the entry as it was.
  func delete(_ name: String) throws(ClassifierError) -> CatalogEntry {
    let key = CatalogEntry.key(name)
    if let problem = CatalogEntry.nameProblem(key) { throw .badName(problem) }
    return try change { db throws in
      guard let row = try RepoRow.fetchOne(db, key: key) else { throw ClassifierError.unknownRepo(name) }
      try row.delete(db)
      try RemovedRow(key: key, removedAt: Date()).insert(db, onConflict: .replace)
      return row.entry
    }
  }

  /// Counts one pick of `repo` in `channel`; it raises `repo` for later messages there.
  func recordChoice(channel: String, repo: String) throws(ClassifierError) {
    let channelKey = ChannelName.normalized(channel)
    guard !channelKey.isEmpty else { throw .missingField("channel") }
    let repoKey = CatalogEntry.key(repo)
    guard !repoKey.isEmpty else { throw .missingField("repo") }
    try change { db throws in
      guard try RepoRow.fetchOne(db, key: repoKey) != nil else { throw ClassifierError.unknownRepo(repo) }
      try db.execute(
        sql: """
          INSERT INTO pick (channel, repoKey, count) VALUES (?, ?, 1)
          ON CONFLICT (channel, repoKey) DO UPDATE SET count = count + 1
          """, arguments: [channelKey, repoKey])
    }
  }

  /// Applies `edit` in one transaction and only then makes the result the catalog. The lock is
  /// held across the write, so the memory never shows a change the database does not have.
  private func change<T: Sendable>(_ edit: (Database) throws -> T) throws(ClassifierError) -> T {
    do {
      return try state.withLock { (state: inout State) throws -> T in
        let (result, document) = try database.write { db in (try edit(db), try Self.document(db)) }
        state = State(document: document, index: CatalogIndex(document))
        return result
      }
    } catch let error as ClassifierError {
      throw error
    } catch {
      throw .notSaved(path: file.path, reason: "\(error)")
    }
  }

  /// Turns a database failure at start-up into a ``ConfigurationError`` naming the file.
  private static func saving<T>(_ file: URL, _ body: () throws -> T) throws -> T {
    do {
      return try body()
    } catch let error as ConfigurationError {
      throw error
    } catch {
      throw ConfigurationError("cannot use the catalog database \(file.path): \(error)")
    }
  }

  // MARK: - Schema

  private static var migrator: DatabaseMigrator {
    var migrator = DatabaseMigrator()
    migrator.registerMigration("v1: repositories, picks, removals") { db in
      try db.create(table: "repo") { table in
        table.primaryKey("key", .text)
        table.column("name", .text).notNull()
        table.column("description", .text).notNull().defaults(to: "")
        table.column("hints", .text).notNull().defaults(to: "[]")
        table.column("aliases", .text).notNull().defaults(to: "[]")
        table.column("channels", .text).notNull().defaults(to: "[]")
        table.column("readme", .text).notNull().defaults(to: "")
      }
      try db.create(table: "pick") { table in
        table.column("channel", .text).notNull()
        table.column("repoKey", .text).notNull().references("repo", column: "key", onDelete: .cascade)
        table.column("count", .integer).notNull()
        table.primaryKey(["channel", "repoKey"])
      }
      try db.create(table: "removed") { table in
        table.primaryKey("key", .text)
        table.column("removedAt", .datetime).notNull()
      }
    }
    return migrator
  }

  private static func document(_ db: Database) throws -> CatalogDocument {
    var document = CatalogDocument()
    document.repos = try RepoRow.order(Column("key")).fetchAll(db).map(\.entry)
    for pick in try PickRow.fetchAll(db) { document.choices[pick.channel, default: [:]][pick.repoKey] = pick.count }
    return document
  }
}

/// A row of `repo`: the entry, its lists as JSON arrays.
private struct RepoRow: Codable, FetchableRecord, PersistableRecord {
  static let databaseTableName = "repo"
  var key: String
  var name: String
  var description: String
  var hints: String
  var aliases: String
  var channels: String
  var readme: String

  init(_ entry: CatalogEntry) {
    func json(_ list: [String]) -> String {
      String(decoding: (try? JSONEncoder().encode(list)) ?? Data("[]".utf8), as: UTF8.self)
    }
    key = entry.key
    name = entry.name
    description = entry.description
    hints = json(entry.hints)
    aliases = json(entry.aliases)
    channels = json(entry.channels)
    readme = entry.readme
  }

  var entry: CatalogEntry {
    func list(_ text: String) -> [String] { (try? JSONDecoder().decode([String].self, from: Data(text.utf8))) ?? [] }
    return CatalogEntry(
      name: name, description: description, hints: list(hints), aliases: list(aliases), channels: list(channels),
      readme: readme)
  }
}

private struct PickRow: Codable, FetchableRecord, PersistableRecord {
  static let databaseTableName = "pick"
  var channel: String
  var repoKey: String
  var count: Int
}

private struct RemovedRow: Codable, FetchableRecord, PersistableRecord {
  static let databaseTableName = "removed"
  var key: String
  var removedAt: Date
}
