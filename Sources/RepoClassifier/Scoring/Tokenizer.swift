/// Turns text into the words the classifier compares: lowercased, split on every character that
/// is not a letter or a digit, without stopwords and one-character fragments, and with a plain
/// English plural folded (`tests` → `test`), so that "unit test" matches the hint "unit tests".
///
/// The catalog and the message go through the same function, so a folded form never has to be
/// a real word; it only has to be the same on both sides.
enum Tokenizer {
  /// Words too common to say anything about a repository.
  static let stopwords: Set<String> = [
    "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by",
    "can", "could", "did", "do", "does", "for", "from", "get", "got", "had", "has", "have", "he", "her", "here",
    "him", "his", "how", "if", "in", "into", "is", "it", "its", "just", "me", "my", "no", "not", "of", "on", "or",
    "our", "please", "she", "should", "so", "some", "that", "the", "their", "them", "then", "there", "these",
    "they", "this", "those", "to", "too", "up", "us", "was", "we", "were", "what", "when", "where", "which",
    "who", "why", "will", "with", "would", "you", "your",
  ]

  /// The words of `text`, in order (repeats kept, so phrases can be found).
  static func words(_ text: String) -> [String] {
    var words: [String] = []
    var current = ""
    func flush() {
      defer { current = "" }
      guard current.count > 1, !stopwords.contains(current) else { return }
      words.append(fold(current))
    }
    for character in text.lowercased() {
      if character.isLetter || character.isNumber {
        current.append(character)
      } else {
        flush()
      }
    }
    flush()
    return words
  }

  /// Folds a regular plural: `tests` → `test`, but `class`, `bus` and `is` stay.
  static func fold(_ word: String) -> String {
    guard word.count > 3, word.hasSuffix("s"), !word.hasSuffix("ss"), !word.hasSuffix("us") else { return word }
    return String(word.dropLast())
  }

  /// Whether `phrase` occurs in `words` as consecutive words.
  static func contains(_ words: [String], phrase: [String]) -> Bool {
    guard !phrase.isEmpty, phrase.count <= words.count else { return false }
    for start in 0...(words.count - phrase.count) where words[start] == phrase[0] {
      if words[start..<(start + phrase.count)].elementsEqual(phrase) { return true }
    }
    return false
  }
}
