/// Turns text into the words the classifier compares: lowercased, split on every character that
/// is not a letter or a digit, without stopwords and one-character fragments (unless a hyphen
/// joins them to a word: `z-index`), and stemmed
/// (``PorterStemmer``: `charged` and `charges` → `charg`), so that "unit test" matches the hint
/// "unit tests" and "card was charged twice" the hint "charge". The last part of a dotted name
/// that is a top-level domain (`io` of `docs.acme.io`) is dropped.
///
/// The catalog and the message go through the same function, so a stem never has to be a real
/// word; it only has to be the same on both sides.
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

  /// The last part of a host name says nothing about a repository, and one of them would match
  /// a word that does: `io`, of `docs.acme.io`, is the stem of `iOS`. Only domains that are not
  /// also words of code (`dev` of `ANALYTICS.DEV`, `net` of `ASP.NET` stay).
  static let topLevelDomains: Set<String> = ["com", "io", "org"]

  /// A word of a text: as written (lowercased), and its stem, which is what is compared.
  struct Term: Sendable, Equatable {
    var written: String
    var stem: String
  }

  /// The terms of `text`, in order (repeats kept, so phrases can be found). A one-character
  /// fragment is dropped unless a hyphen joins it to a word on its other side (`z-index` is
  /// not `index`; the flag `-v` is nothing), and so is one of ``topLevelDomains`` after a dot
  /// that follows a word and ending the dotted name (`app.acme.io` is `app acme`,
  /// `acme.io/path` is `acme path`; `io.js` and `foo.io.bar` keep `io`).
  static func terms(_ text: String) -> [Term] {
    var terms: [Term] = []
    let characters = Array(text.lowercased())
    func isWordCharacter(_ index: Int) -> Bool {
      characters.indices.contains(index) && (characters[index].isLetter || characters[index].isNumber)
    }
    var start = 0
    while start < characters.count {
      guard isWordCharacter(start) else {
        start += 1
        continue
      }
      var end = start
      while isWordCharacter(end) { end += 1 }
      let word = String(characters[start..<end])
      let joined =
        (start >= 2 && characters[start - 1] == "-" && isWordCharacter(start - 2))
        || (end + 1 < characters.count && characters[end] == "-" && isWordCharacter(end + 1))
      let endsHostName =
        start >= 2 && characters[start - 1] == "." && isWordCharacter(start - 2) && topLevelDomains.contains(word)
        && !(end + 1 < characters.count && characters[end] == "." && isWordCharacter(end + 1))
      if word.count > 1 || joined, !endsHostName, !stopwords.contains(word) {
        terms.append(Term(written: word, stem: PorterStemmer.stem(word)))
      }
      start = end
    }
    return terms
  }

  /// The stems of `text`'s words, in order.
  static func words(_ text: String) -> [String] { terms(text).map(\.stem) }

  /// Whether `phrase` occurs in `words` as consecutive words.
  static func contains<Word: Equatable>(_ words: [Word], phrase: [Word]) -> Bool {
    guard !phrase.isEmpty, phrase.count <= words.count else { return false }
    for start in 0...(words.count - phrase.count) where words[start] == phrase[0] {
      if words[start..<(start + phrase.count)].elementsEqual(phrase) { return true }
    }
    return false
  }

  /// `owner/name` pairs written out in `text` (lowercased): links to a repository
  /// (`github.com/owner/name`, `…/pull/12`, `git@github.com:owner/name.git`) and `owner/name`
  /// standing alone as a word. Only pairs that are catalog keys, or name a catalog owner, count,
  /// so a pair that is not a repository (`and/or`) is harmless. Scanned by hand: it runs on
  /// every message.
  static func repositoryMentions(_ text: String) -> Set<String> {
    guard text.contains("/") else { return [] }
    var found: Set<String> = []
    let lower = Array(text.lowercased().unicodeScalars)
    func isNameCharacter(_ scalar: Unicode.Scalar) -> Bool {
      (scalar.properties.isAlphabetic && scalar.isASCII) || ("0"..."9").contains(scalar) || scalar == "-"
        || scalar == "_" || scalar == "."
    }
    /// The name part starting at `start` (dots at its end and a `.git` suffix dropped, in
    /// either order: `acme/web.git.` at the end of a sentence is `acme/web`).
    func part(from start: Int) -> (String, end: Int)? {
      var end = start
      while end < lower.count, isNameCharacter(lower[end]) { end += 1 }
      var name = String(String.UnicodeScalarView(lower[start..<end]))
      while name.hasSuffix(".") { name.removeLast() }
      if name.hasSuffix(".git") { name.removeLast(4) }
      while name.hasSuffix(".") { name.removeLast() }
      return name.isEmpty || name == "." || name == ".." ? nil : (name, end)
    }
    // Links: `github.com/owner/name…` or `github.com:owner/name`, the host not part of a longer
    // one (`gist.github.com/owner/id` is a gist; `www.github.com` is GitHub).
    let host = Array("github.com".unicodeScalars)
    let www = Array("www.".unicodeScalars)
    var position = 0
    while position + host.count < lower.count {
      defer { position += 1 }
      guard lower[position] == host[0], Array(lower[position..<(position + host.count)]) == host else { continue }
      let opensHost =
        position == 0 || !isNameCharacter(lower[position - 1])
        || (position >= www.count && Array(lower[(position - www.count)..<position]) == www
          && (position == www.count || !isNameCharacter(lower[position - www.count - 1])))
      guard opensHost else { continue }
      let after = position + host.count
      guard lower[after] == "/" || lower[after] == ":", let (owner, afterOwner) = part(from: after + 1),
        afterOwner < lower.count, lower[afterOwner] == "/", let (name, _) = part(from: afterOwner + 1)
      else { continue }
      found.insert("\(owner)/\(name)")
    }
    // `owner/name` standing alone as a word (not part of a longer path or a link).
    position = 0
    while position < lower.count {
      let opensWord = position == 0 || " \t\n(<`'\"[*_|".unicodeScalars.contains(lower[position - 1])
      guard opensWord, isNameCharacter(lower[position]), let (first, afterFirst) = part(from: position) else {
        position += 1
        continue
      }
      if afterFirst < lower.count, lower[afterFirst] == "/", let (name, afterName) = part(from: afterFirst + 1) {
        let closes = afterName == lower.count || " \t\n)>`'\",;:!?*_|".unicodeScalars.contains(lower[afterName])
        if closes, !first.contains("github.com") { found.insert("\(first)/\(name)") }
      }
      position = max(afterFirst, position + 1)
    }
    return found
  }
}
