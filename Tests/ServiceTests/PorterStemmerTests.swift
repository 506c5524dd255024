import Testing

@testable import RepoClassifier

@Suite("The Porter stemmer agrees with an independent implementation")
struct PorterStemmerTests {
  /// Words and their stems as NLTK 3.9's `PorterStemmer(mode=ORIGINAL_ALGORITHM)` gives them:
  /// the examples of Porter's paper for every step, and words of the classifier's own sets.
  /// (The whole vocabulary of `examples/classifier/` and `docs/`, 4,038 words of three letters
  /// or more, agreed when this was written; NLTK also stems shorter words, which are left alone
  /// here on purpose.)
  static let expected: [(String, String)] = [
    ("caresses", "caress"), ("ponies", "poni"), ("ties", "ti"), ("caress", "caress"), ("cats", "cat"),
    ("feed", "feed"), ("agreed", "agre"), ("plastered", "plaster"), ("bled", "bled"), ("motoring", "motor"),
    ("sing", "sing"), ("conflated", "conflat"), ("troubled", "troubl"), ("sized", "size"), ("hopping", "hop"),
    ("tanned", "tan"), ("falling", "fall"), ("hissing", "hiss"), ("fizzed", "fizz"), ("failing", "fail"),
    ("filing", "file"), ("happy", "happi"), ("sky", "sky"), ("relational", "relat"), ("conditional", "condit"),
    ("rational", "ration"), ("valenci", "valenc"), ("hesitanci", "hesit"), ("digitizer", "digit"),
    ("conformabli", "conform"), ("radicalli", "radic"), ("differentli", "differ"), ("vileli", "vile"),
    ("analogousli", "analog"), ("vietnamization", "vietnam"), ("predication", "predic"), ("operator", "oper"),
    ("feudalism", "feudal"), ("decisiveness", "decis"), ("hopefulness", "hope"), ("callousness", "callous"),
    ("formaliti", "formal"), ("sensitiviti", "sensit"), ("sensibiliti", "sensibl"), ("triplicate", "triplic"),
    ("formative", "form"), ("formalize", "formal"), ("electriciti", "electr"), ("electrical", "electr"),
    ("hopeful", "hope"), ("goodness", "good"), ("revival", "reviv"), ("allowance", "allow"),
    ("inference", "infer"), ("airliner", "airlin"), ("gyroscopic", "gyroscop"), ("adjustable", "adjust"),
    ("defensible", "defens"), ("irritant", "irrit"), ("replacement", "replac"), ("adjustment", "adjust"),
    ("dependent", "depend"), ("adoption", "adopt"), ("homologou", "homolog"), ("communism", "commun"),
    ("activate", "activ"), ("angulariti", "angular"), ("homologous", "homolog"), ("effective", "effect"),
    ("bowdlerize", "bowdler"), ("probate", "probat"), ("rate", "rate"), ("cease", "ceas"),
    ("controll", "control"), ("roll", "roll"), ("generalizations", "gener"), ("oscillators", "oscil"),
    ("charged", "charg"), ("charges", "charg"), ("charging", "charg"), ("suggestions", "suggest"),
    ("typing", "type"), ("expired", "expir"), ("renewing", "renew"), ("validation", "valid"),
    ("validate", "valid"), ("notifications", "notif"), ("oomkilled", "oomkil"), ("v1", "v1"), ("5xx", "5xx"),
    ("yesterday", "yesterdai"),
  ]

  @Test("every step of the paper, on its own examples and on the sets' words")
  func agrees() {
    for (word, stem) in Self.expected {
      #expect(PorterStemmer.stem(word) == stem, "\(word)")
    }
  }

  @Test("short words, very long words and words with other characters are left as they are")
  func leftAlone() {
    let long = String(repeating: "y", count: 50_000) + "e"
    for word in ["as", "is", "naïve", "größe", "日本語", "a_b", "Caps", long, String(repeating: "ab", count: 21)] {
      #expect(PorterStemmer.stem(word) == word)
    }
    // 40 letters is still a word.
    #expect(PorterStemmer.stem(String(repeating: "ab", count: 18) + "ness") == String(repeating: "ab", count: 18))
  }
}
