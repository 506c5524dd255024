/// The catalog prepared for scoring: every word (stem) of the catalog numbered, each
/// repository's names, hints, description and README as those numbers, how many descriptions
/// and READMEs use each word, and the recorded picks per channel. Built once per catalog change,
/// then shared by every `Classify` without a lock.
struct CatalogIndex: Sendable {
  /// Words of a catalog string (their numbers in ``words``), with the string as written (for
  /// reasons).
  struct Phrase: Sendable {
    let text: String
    let words: [Int]
  }

  /// Gives each word (stem) of the catalog a number, so a message is compared by array lookups
  /// rather than by hashing strings for every repository.
  struct Vocabulary {
    var words: [String] = []
    var numbers: [String: Int] = [:]

    mutating func number(_ word: String) -> Int {
      if let number = numbers[word] { return number }
      words.append(word)
      numbers[word] = words.count - 1
      return words.count - 1
    }
  }

  /// One repository, prepared.
  struct Repo: Sendable {
    let entry: CatalogEntry
    /// ``CatalogEntry/key``, computed once (it is read for every message).
    let key: String
    /// `owner/name` and each alias.
    let names: [Phrase]
    /// The part after `/`, which people use alone ("the demo repo").
    let bareName: Phrase
    let hints: [Phrase]
    /// The description's words, each once, in the alphabetical order of the words.
    let descriptionWords: [Int]
    /// Words of the README that are not description words, each once, alphabetically.
    let readmeWords: [Int]
    /// Normalized with ``ChannelName/normalized(_:)``.
    let channels: Set<String>

    init(_ entry: CatalogEntry, vocabulary: inout Vocabulary) {
      self.entry = entry
      key = entry.key
      func phrase(_ text: String) -> Phrase {
        Phrase(text: text, words: Tokenizer.words(text).map { vocabulary.number($0) })
      }
      names = ([entry.name] + entry.aliases).map(phrase).filter { !$0.words.isEmpty }
      bareName = phrase(String(entry.name.split(separator: "/").last ?? ""))
      hints = entry.hints.map(phrase).filter { !$0.words.isEmpty }
      let description = Set(Tokenizer.words(entry.description))
      descriptionWords = description.sorted().map { vocabulary.number($0) }
      readmeWords = Set(Tokenizer.words(entry.readme)).subtracting(description).sorted().map { vocabulary.number($0) }
      channels = Set(entry.channels.map(ChannelName.normalized).filter { !$0.isEmpty })
    }
  }

  /// Sorted by name.
  let repos: [Repo]
  /// Every word (stem) of the catalog, by its number.
  let words: [String]
  /// Each word's number.
  let wordNumbers: [String: Int]
  /// For each word (by number), how many repositories' descriptions contain it.
  let descriptionFrequency: [Int]
  /// For each word (by number), how many repositories' READMEs (and not descriptions) contain it.
  let readmeFrequency: [Int]
  /// README words in more READMEs than this say nothing about which repository is meant: a
  /// quarter of the catalog, at least 2.
  let commonReadmeWord: Int
  /// For each (normalized) channel, how many repositories list it.
  let channelListings: [String: Int]
  /// For each word (by number) that can start evidence (the first word of a name, alias, bare
  /// name or hint, and every description and README word), the repositories (positions in
  /// ``repos``) it may count for: a message is scored only against repositories sharing a word
  /// with it (or its channel).
  let reposByWord: [[Int]]
  /// For each (normalized) channel, the repositories listing it.
  let reposByChannel: [String: [Int]]
  /// Each repository's position in ``repos`` by its key (picks are recorded by key).
  let positionByKey: [String: Int]
  /// Picks per channel and repository key (see ``CatalogDocument/choices``).
  let choices: [String: [String: Int]]
  /// The owners of the catalog's repositories (lowercased): a named `owner/name` of one of these
  /// that is not in the catalog is a repository Inspect does not know.
  let owners: Set<String>

  init(_ document: CatalogDocument) {
    var vocabulary = Vocabulary()
    repos = document.repos.sorted { $0.key < $1.key }.map { Repo($0, vocabulary: &vocabulary) }
    (words, wordNumbers) = (vocabulary.words, vocabulary.numbers)
    var frequency = [Int](repeating: 0, count: words.count)
    var readmeFrequency = [Int](repeating: 0, count: words.count)
    for repo in repos {
      for word in repo.descriptionWords { frequency[word] += 1 }
      for word in repo.readmeWords { readmeFrequency[word] += 1 }
    }
    descriptionFrequency = frequency
    self.readmeFrequency = readmeFrequency
    commonReadmeWord = max(2, repos.count / 4)
    var listings: [String: Int] = [:]
    for repo in repos {
      for channel in repo.channels { listings[channel, default: 0] += 1 }
    }
    channelListings = listings
    var byWord = [[Int]](repeating: [], count: words.count)
    var byChannel: [String: [Int]] = [:]
    var byKey: [String: Int] = [:]
    for (position, repo) in repos.enumerated() {
      let starts = (repo.names + [repo.bareName] + repo.hints).compactMap(\.words.first)
      for word in Set(starts).union(repo.descriptionWords).union(repo.readmeWords) {
        byWord[word].append(position)
      }
      for channel in repo.channels { byChannel[channel, default: []].append(position) }
      byKey[repo.key] = position
    }
    reposByWord = byWord
    reposByChannel = byChannel
    positionByKey = byKey
    choices = document.choices
    owners = Set(repos.map { String($0.key.prefix { $0 != "/" }) })
  }
}
