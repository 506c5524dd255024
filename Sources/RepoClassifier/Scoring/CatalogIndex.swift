/// The catalog prepared for scoring: each repository's names, hints and description as words,
/// how many descriptions use each word, and the recorded picks per channel. Built once per
/// catalog change, then shared by every `Classify` without a lock.
struct CatalogIndex: Sendable {
  /// Words of a catalog string, with the string as written (for reasons).
  struct Phrase: Sendable {
    var text: String
    var words: [String]
  }

  /// One repository, prepared.
  struct Repo: Sendable {
    var entry: CatalogEntry
    /// ``CatalogEntry/key``, computed once (it is read for every message).
    var key: String
    /// `owner/name` and each alias.
    var names: [Phrase]
    /// The part after `/`, which people use alone ("the demo repo").
    var bareName: Phrase
    var hints: [Phrase]
    var descriptionWords: Set<String>
    /// Words of the README that are not description words.
    var readmeWords: Set<String>
    /// Normalized with ``ChannelName/normalized(_:)``.
    var channels: Set<String>

    init(_ entry: CatalogEntry) {
      self.entry = entry
      key = entry.key
      let phrase = { (text: String) in Phrase(text: text, words: Tokenizer.words(text)) }
      names = ([entry.name] + entry.aliases).map(phrase).filter { !$0.words.isEmpty }
      let bare = String(entry.name.split(separator: "/").last ?? "")
      bareName = phrase(bare)
      hints = entry.hints.map(phrase).filter { !$0.words.isEmpty }
      descriptionWords = Set(Tokenizer.words(entry.description))
      readmeWords = Set(Tokenizer.words(entry.readme)).subtracting(descriptionWords)
      channels = Set(entry.channels.map(ChannelName.normalized).filter { !$0.isEmpty })
    }
  }

  /// Sorted by name.
  var repos: [Repo]
  /// For each description word, how many repositories' descriptions contain it.
  var descriptionFrequency: [String: Int]
  /// For each README word, how many repositories' READMEs (and not descriptions) contain it.
  var readmeFrequency: [String: Int]
  /// README words in more READMEs than this say nothing about which repository is meant: a
  /// quarter of the catalog, at least 2.
  var commonReadmeWord: Int
  /// For each (normalized) channel, how many repositories list it.
  var channelListings: [String: Int]
  /// For each word that can start evidence (the first word of a name, alias, bare name or hint,
  /// and every description and README word), the repositories (positions in ``repos``) it may count for:
  /// a message is scored only against repositories sharing a word with it (or its channel).
  var reposByWord: [String: [Int]]
  /// For each (normalized) channel, the repositories listing it.
  var reposByChannel: [String: [Int]]
  /// Each repository's position in ``repos`` by its key (picks are recorded by key).
  var positionByKey: [String: Int]
  /// Picks per channel and repository key (see ``CatalogDocument/choices``).
  var choices: [String: [String: Int]]
  /// The owners of the catalog's repositories (lowercased): a named `owner/name` of one of these
  /// that is not in the catalog is a repository Inspect does not know.
  var owners: Set<String>

  init(_ document: CatalogDocument) {
    repos = document.repos.sorted { $0.key < $1.key }.map(Repo.init)
    var frequency: [String: Int] = [:]
    for repo in repos {
      for word in repo.descriptionWords { frequency[word, default: 0] += 1 }
    }
    descriptionFrequency = frequency
    var readmeFrequency: [String: Int] = [:]
    for repo in repos {
      for word in repo.readmeWords { readmeFrequency[word, default: 0] += 1 }
    }
    self.readmeFrequency = readmeFrequency
    commonReadmeWord = max(2, repos.count / 4)
    var listings: [String: Int] = [:]
    for repo in repos {
      for channel in repo.channels { listings[channel, default: 0] += 1 }
    }
    channelListings = listings
    var byWord: [String: Set<Int>] = [:]
    var byChannel: [String: [Int]] = [:]
    var byKey: [String: Int] = [:]
    for (position, repo) in repos.enumerated() {
      let starts = (repo.names + [repo.bareName] + repo.hints).compactMap(\.words.first)
      for word in Set(starts).union(repo.descriptionWords).union(repo.readmeWords) {
        byWord[word, default: []].insert(position)
      }
      for channel in repo.channels { byChannel[channel, default: []].append(position) }
      byKey[repo.key] = position
    }
    reposByWord = byWord.mapValues { $0.sorted() }
    reposByChannel = byChannel
    positionByKey = byKey
    choices = document.choices
    owners = Set(repos.map { String($0.key.prefix { $0 != "/" }) })
  }
}
