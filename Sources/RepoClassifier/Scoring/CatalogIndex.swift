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
    /// `owner/name` and each alias.
    var names: [Phrase]
    /// The part after `/`, which people use alone ("the demo repo").
    var bareName: Phrase
    var hints: [Phrase]
    var descriptionWords: Set<String>
    /// Normalized with ``ChannelName/normalized(_:)``.
    var channels: Set<String>

    init(_ entry: CatalogEntry) {
      self.entry = entry
      let phrase = { (text: String) in Phrase(text: text, words: Tokenizer.words(text)) }
      names = ([entry.name] + entry.aliases).map(phrase).filter { !$0.words.isEmpty }
      let bare = String(entry.name.split(separator: "/").last ?? "")
      bareName = phrase(bare)
      hints = entry.hints.map(phrase).filter { !$0.words.isEmpty }
      descriptionWords = Set(Tokenizer.words(entry.description))
      channels = Set(entry.channels.map(ChannelName.normalized).filter { !$0.isEmpty })
    }
  }

  /// Sorted by name.
  var repos: [Repo]
  /// For each description word, how many repositories' descriptions contain it.
  var descriptionFrequency: [String: Int]
  /// Picks per channel and repository key (see ``CatalogDocument/choices``).
  var choices: [String: [String: Int]]

  init(_ document: CatalogDocument) {
    repos = document.repos.sorted { $0.key < $1.key }.map(Repo.init)
    var frequency: [String: Int] = [:]
    for repo in repos {
      for word in repo.descriptionWords { frequency[word, default: 0] += 1 }
    }
    descriptionFrequency = frequency
    choices = document.choices
  }
}
