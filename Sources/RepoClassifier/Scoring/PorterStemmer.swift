/// The Porter stemming algorithm (M. F. Porter, "An algorithm for suffix stripping", 1980), as
/// published: it folds a word's inflections and common derivations to one stem, so "charged",
/// "charges" and "charging" are all `charg`, and "validation" and "validate" both `valid`.
///
/// Stems are not words; they only have to be the same for the catalog and the message, which
/// both go through ``Tokenizer``. Words with anything but lowercase ASCII letters and digits,
/// words of one or two letters, and words longer than ``longestStemmed`` (a hash, a run of
/// letters: no suffix to strip, and the measure's cost grows with the length) are returned as
/// they are. `PorterStemmerTests` checks it against NLTK's implementation in its
/// `ORIGINAL_ALGORITHM` mode (which also stems words of one or two letters).
enum PorterStemmer {
  /// Longer words are left as they are.
  static let longestStemmed = 40

  static func stem(_ word: String) -> String {
    let bytes = Array(word.utf8)
    guard (3...longestStemmed).contains(bytes.count),
      bytes.allSatisfy({ (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || isDigit($0) })
    else { return word }
    var stem = Stem(bytes)
    stem.step1a()
    stem.step1b()
    stem.step1c()
    stem.step2()
    stem.step3()
    stem.step4()
    stem.step5()
    return String(decoding: stem.letters, as: UTF8.self)
  }

  static let step2Rules = [
    ("ational", "ate"), ("tional", "tion"), ("enci", "ence"), ("anci", "ance"), ("izer", "ize"), ("abli", "able"),
    ("alli", "al"), ("entli", "ent"), ("eli", "e"), ("ousli", "ous"), ("ization", "ize"), ("ation", "ate"),
    ("ator", "ate"), ("alism", "al"), ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous"), ("aliti", "al"),
    ("iviti", "ive"), ("biliti", "ble"),
  ]
  static let step3Rules = [
    ("icate", "ic"), ("ative", ""), ("alize", "al"), ("iciti", "ic"), ("ical", "ic"), ("ful", ""), ("ness", ""),
  ]
  static let step4Suffixes = [
    "al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent", "ion", "ou", "ism", "ate", "iti",
    "ous", "ive", "ize",
  ]

  private static func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }

  /// A word being stemmed, lowercase ASCII.
  private struct Stem {
    var letters: [UInt8]

    init(_ letters: [UInt8]) { self.letters = letters }

    // MARK: The paper's conditions

    /// Whether the letter at `index` is a consonant: not a, e, i, o or u, and not a y that
    /// follows a consonant.
    func isConsonant(_ index: Int) -> Bool {
      switch letters[index] {
      case UInt8(ascii: "a"), UInt8(ascii: "e"), UInt8(ascii: "i"), UInt8(ascii: "o"), UInt8(ascii: "u"): false
      case UInt8(ascii: "y"): index == 0 || !isConsonant(index - 1)
      default: true
      }
    }

    /// m in [C](VC)^m[V] of the first `length` letters.
    func measure(_ length: Int) -> Int {
      var (count, index) = (0, 0)
      while index < length, isConsonant(index) { index += 1 }
      while index < length {
        while index < length, !isConsonant(index) { index += 1 }
        guard index < length else { break }
        count += 1
        while index < length, isConsonant(index) { index += 1 }
      }
      return count
    }

    /// *v*: the first `length` letters contain a vowel.
    func hasVowel(_ length: Int) -> Bool { (0..<length).contains { !isConsonant($0) } }

    /// *d: the first `length` letters end with a double consonant.
    func endsWithDoubleConsonant(_ length: Int) -> Bool {
      length >= 2 && letters[length - 1] == letters[length - 2] && isConsonant(length - 1)
    }

    /// *o: the first `length` letters end consonant-vowel-consonant, the last not w, x or y.
    func endsCVC(_ length: Int) -> Bool {
      guard length >= 3, isConsonant(length - 3), !isConsonant(length - 2), isConsonant(length - 1) else {
        return false
      }
      return !"wxy".utf8.contains(letters[length - 1])
    }

    func endsWith(_ suffix: String) -> Bool {
      letters.count >= suffix.utf8.count && letters.suffix(suffix.utf8.count).elementsEqual(suffix.utf8)
    }

    /// Length of the word without `suffix` (which it ends with).
    func stemLength(without suffix: String) -> Int { letters.count - suffix.utf8.count }

    mutating func replace(_ suffix: String, with replacement: String) {
      letters.removeLast(suffix.utf8.count)
      letters.append(contentsOf: replacement.utf8)
    }

    /// The first rule whose suffix the word ends with is the only one tried (the lists are in
    /// the paper's order, a longer suffix before a shorter one it ends with); it applies when the
    /// stem left has a measure above `minimum`.
    mutating func applyFirst(_ rules: [(String, String)], measureAbove minimum: Int) {
      guard let (suffix, replacement) = rules.first(where: { endsWith($0.0) }) else { return }
      if measure(stemLength(without: suffix)) > minimum { replace(suffix, with: replacement) }
    }

    // MARK: The steps

    mutating func step1a() {
      if endsWith("sses") {
        replace("sses", with: "ss")
      } else if endsWith("ies") {
        replace("ies", with: "i")
      } else if endsWith("ss") {
        return
      } else if endsWith("s") {
        replace("s", with: "")
      }
    }

    mutating func step1b() {
      if endsWith("eed") {
        if measure(stemLength(without: "eed")) > 0 { replace("eed", with: "ee") }
        return
      }
      guard let suffix = ["ed", "ing"].first(where: endsWith), hasVowel(stemLength(without: suffix)) else { return }
      replace(suffix, with: "")
      if endsWith("at") || endsWith("bl") || endsWith("iz") {
        letters.append(UInt8(ascii: "e"))
      } else if endsWithDoubleConsonant(letters.count), !"lsz".utf8.contains(letters[letters.count - 1]) {
        letters.removeLast()
      } else if measure(letters.count) == 1, endsCVC(letters.count) {
        letters.append(UInt8(ascii: "e"))
      }
    }

    mutating func step1c() {
      if endsWith("y"), hasVowel(letters.count - 1) { letters[letters.count - 1] = UInt8(ascii: "i") }
    }

    mutating func step2() { applyFirst(PorterStemmer.step2Rules, measureAbove: 0) }

    mutating func step3() { applyFirst(PorterStemmer.step3Rules, measureAbove: 0) }

    mutating func step4() {
      guard let suffix = PorterStemmer.step4Suffixes.first(where: endsWith) else { return }
      let length = stemLength(without: suffix)
      guard measure(length) > 1 else { return }
      // -ion goes only after s or t.
      if suffix == "ion", length == 0 || !"st".utf8.contains(letters[length - 1]) { return }
      replace(suffix, with: "")
    }

    mutating func step5() {
      if endsWith("e") {
        let length = letters.count - 1
        let measure = measure(length)
        if measure > 1 || (measure == 1 && !endsCVC(length)) { letters.removeLast() }
      }
      if endsWith("ll"), measure(letters.count - 1) > 1 { letters.removeLast() }
    }
  }
}
