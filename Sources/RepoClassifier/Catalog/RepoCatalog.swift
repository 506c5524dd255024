import Foundation
import InspectKit
import Synchronization

/// The repository catalog and the channel picks, kept in memory and in one JSON file
/// (``CatalogDocument``). Every change is written to the file before it is visible, so an
/// acknowledged `UpsertRepo` or `RecordChoice` survives a restart.
final class RepoCatalog: Sendable {
  /// The file the catalog is kept in.
  let file: URL
  private let state: Mutex<State>

  private struct State {
    var document: CatalogDocument
    var index: CatalogIndex
  }

  /// Opens the catalog kept in `file` (empty when the file does not exist yet) and adds every
  /// repository of `seed` it does not have yet: the catalog's own entries — edited through the
  /// RPCs — win over the seed's. Throws a ``ConfigurationError`` naming the file when either file
  /// is malformed, or when `seed` does not exist. The seed's `choices`, if any, are not read:
  /// picks come from `RecordChoice`.
  init(file: URL, seed: URL? = nil) throws {
    self.file = file
    var document = FileManager.default.fileExists(atPath: file.path) ? try CatalogDocument.load(from: file) : .init()
    if let seed, seed.standardizedFileURL != file.standardizedFileURL {
      let seeded = try CatalogDocument.load(from: seed)
      let known = Set(document.repos.map(\.key))
      let added = seeded.repos.filter { !known.contains($0.key) }
      if !added.isEmpty {
        document.repos += added
        do {
          try document.save(to: file)
        } catch {
          throw ConfigurationError("cannot write the catalog to \(file.path): \(error.localizedDescription)")
        }
      }
    }
    state = Mutex(State(document: document, index: CatalogIndex(document)))
  }

  /// The catalog prepared for scoring, as it is now.
  var index: CatalogIndex { state.withLock { $0.index } }

  /// Every repository, sorted by name.
  var repos: [CatalogEntry] { state.withLock { $0.index.repos.map(\.entry) } }

  /// Adds `entry`, or replaces the one with the same name (in any case); true when it was added.
  func upsert(_ entry: CatalogEntry) throws(ClassifierError) -> Bool {
    if let problem = CatalogEntry.nameProblem(entry.name) { throw .badName(problem) }
    return try change { document in
      if let existing = document.repos.firstIndex(where: { $0.key == entry.key }) {
        document.repos[existing] = entry
        return false
      }
      document.repos.append(entry)
      return true
    }
  }

  /// Counts one pick of `repo` in `channel`; it raises `repo` for later messages there.
  func recordChoice(channel: String, repo: String) throws(ClassifierError) {
    let channelKey = ChannelName.normalized(channel)
    guard !channelKey.isEmpty else { throw .missingField("channel") }
    let repoKey = CatalogEntry.key(repo)
    guard !repoKey.isEmpty else { throw .missingField("repo") }
    try change { document throws(ClassifierError) in
      guard document.repos.contains(where: { $0.key == repoKey }) else { throw .unknownRepo(repo) }
      document.choices[channelKey, default: [:]][repoKey, default: 0] += 1
    }
  }

  /// Applies `edit` to a copy, saves the copy, and only then makes it the catalog. The lock is
  /// held across the write so that the file always holds the newest catalog.
  private func change<T>(_ edit: (inout CatalogDocument) throws(ClassifierError) -> T) throws(ClassifierError) -> T {
    try state.withLock { (state: inout State) throws(ClassifierError) -> T in
      var document = state.document
      let result = try edit(&document)
      do {
        try document.save(to: file)
      } catch {
        throw .notSaved(path: file.path, reason: error.localizedDescription)
      }
      state = State(document: document, index: CatalogIndex(document))
      return result
    }
  }
}
