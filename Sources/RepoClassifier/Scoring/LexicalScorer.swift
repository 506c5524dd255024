import Foundation

/// Ranks the catalog for a message by the words they share, and decides how sure that is.
///
/// Each repository collects points from evidence; one piece of evidence counts once, at full
/// weight when it is in the message and at ``threadFactor`` of it when only the thread has it:
///
/// | evidence | points |
/// |---|---|
/// | `owner/name` written out, or a URL of the repository (`github.com/owner/name/…`) | ``explicitWeight`` |
/// | `owner/name` or an alias, as consecutive words | ``nameWeight`` |
/// | the name without its owner (`demo`) | ``bareNameWeight`` |
/// | each hint, as consecutive words | ``hintWeight`` |
/// | each description word not already counted above | ``descriptionWordWeight`` ÷ number of repositories whose description has it, at most ``descriptionCap`` in all |
/// | each README word not already counted above | ``readmeWordWeight`` ÷ number of repositories whose README has it, at most ``readmeCap`` in all |
/// | the channel is one of the repository's `channels` | ``listedChannelPrior`` ÷ number of repositories listing the channel |
/// | people picked it in this channel | ``choicePrior`` × picks ÷ (all picks in the channel + ``choiceSmoothing``) |
///
/// A name, an alias or the bare name (not `owner/name` written out or linked) counts only
/// ``yieldedNameFactor`` of its points when another repository has at least
/// ``hintsThatOutweighAName`` different hints in the message itself (a hint inside a longer one
/// found too, `stripe` in `stripe webhook`, is not another) and this one fewer: people name the
/// repository where they see a symptom ("the dropdowns on the web app's settings page") and
/// describe the fix in another's words ("z-index", "dropdown").
///
/// The reported score is `points / (points + scoreHalfPoint)`: in [0, 1), 0.5 at one
/// `scoreHalfPoint` of evidence, rising ever more slowly after that. See ``decide(_:)`` for the
/// decision. A message that names a repository of a catalog owner which is not in the catalog
/// (`acme/marketing-site`), and names no catalog repository (written out, linked, by its name
/// or an alias), is NONE: people said which one they mean, and it is not one Inspect knows.
/// Named only earlier in the thread (a related pull request, say), it makes the answer at most
/// AMBIGUOUS. Either way the ranking says which names it did not know.
enum LexicalScorer {
  // MARK: - Weights

  /// `owner/name` written as such, or a link to the repository: people said which one they mean.
  static let explicitWeight = 2.0
  /// Naming the repository (`owner/name` as words) or an alias. People name where they see a
  /// symptom ("the search box in the web app"), not always where the fix is, so a name weighs
  /// less than two hints.
  static let nameWeight = 0.8
  /// The name without its owner: bare names are often ordinary words ("billing returns cents",
  /// "the search pods"), so little more than a hint.
  static let bareNameWeight = 0.65
  /// A hint (a word, path or product name the catalog says points at the repository).
  static let hintWeight = 0.5
  /// Hints of one repository that outweigh another's name (see the type's documentation).
  static let hintsThatOutweighAName = 2
  /// What a name or alias still counts when another repository's hints outweigh it: a quarter,
  /// so it still breaks a tie.
  static let yieldedNameFactor = 0.25
  /// One description word shared by one repository; split among repositories that share it.
  static let descriptionWordWeight = 0.15
  /// At most this much from description words, so a long description cannot outweigh a name.
  static let descriptionCap = 0.45
  /// One README word shared by one repository: README text is long and general, so it weighs
  /// a third of a description word.
  static let readmeWordWeight = 0.05
  /// At most this much from README words.
  static let readmeCap = 0.3
  /// What evidence found only in the thread is worth, relative to the message itself.
  static let threadFactor = 0.4
  /// The channel lists the repository as its usual one; split among the repositories that list
  /// it (a team's own channel says more than `#eng`).
  static let listedChannelPrior = 0.45
  /// The most that recorded picks in the channel add (approached when every pick there chose
  /// it): a steady habit (three picks of three: 0.3) weighs two thirds of a listing. Either
  /// alone puts its repository first in a tie of one hint each, which is still asked about;
  /// with a listing no other repository shares, one pick decides it.
  static let choicePrior = 0.4
  /// Added to the channel's pick count, so a single pick is worth less than a steady habit.
  static let choiceSmoothing = 1.0

  // MARK: - Decision

  /// Where the decision's lines fall; the defaults are the measured choice, each can be set from
  /// the environment (`INSPECT_CLASSIFIER_CONFIDENT_POINTS`, `…_CONFIDENT_LEAD`, `…_MINIMUM_POINTS`).
  /// A wrong repository started unasked costs more than a question (a click, or a rerank), so
  /// the defaults lean to asking: on 442 messages written blind they leave 26 CONFIDENT mistakes
  /// where 0.5 points and a 35 % lead left 49, and answer 185 with a question (or NONE) where
  /// those did 104 (docs/PERFORMANCE.md).
  struct Thresholds: Sendable, Equatable {
    /// CONFIDENT needs at least this many points: for example `owner/name` or an alias (0.8), two
    /// hints, or a hint and the listing of a channel no other repository lists; one hint, or the
    /// name without its owner (0.65), needs description or README words beside it. Less is never
    /// more than AMBIGUOUS.
    var confidentMinimum = 0.75
    /// CONFIDENT needs the runner-up at most `1 - confidentLead` (half) of the leader's points.
    var confidentLead = 0.5
    /// A leader with fewer points than this is NONE: a word or two of a description, or a
    /// channel several repositories share, say nothing about which repository is meant.
    var minimumPoints = 0.25

    static let standard = Thresholds()
  }

  static var confidentMinimum: Double { Thresholds.standard.confidentMinimum }
  static var confidentLead: Double { Thresholds.standard.confidentLead }
  static var minimumPoints: Double { Thresholds.standard.minimumPoints }
  /// Points at which the reported score is 0.5.
  static let scoreHalfPoint = 0.5
  /// Candidates returned, best first.
  static let maximumCandidates = 5

  /// How sure the ranking is (mirrors `inspect.classifier.v1.Decision`).
  enum Decision: Sendable, Equatable {
    case confident, ambiguous, none
  }

  /// A repository that scored, with its points, its score in [0, 1) and the evidence in words.
  struct Candidate: Sendable, Equatable {
    var repo: String
    var points: Double
    var score: Double
    var reason: String
  }

  /// The candidates, best first, and the decision.
  struct Ranking: Sendable {
    var candidates: [Candidate]
    var decision: Decision
    /// `owner/name`s named that are not in the catalog, of an owner it has (sorted).
    var unknownRepos: [String] = []
  }

  // MARK: - Ranking

  /// Ranks `index`'s repositories for `text`, the earlier messages of its `thread` and its
  /// `channel` (may be empty).
  ///
  /// Only repositories that share a word with the message or its thread, or are tied to its
  /// channel, can score, so only those are scored (`everyRepository` scores all of them: the
  /// tests check that both rank the same).
  static func rank(
    text: String, thread: [String], channel: String, in index: CatalogIndex, thresholds: Thresholds = .standard,
    everyRepository: Bool = false
  ) -> Ranking {
    let message = MessageWords(text: text, thread: thread, index: index)
    let channelKey = ChannelName.normalized(channel)
    // Only repositories sharing a word with the message, or listed or picked in its channel,
    // can score.
    var considered = everyRepository ? Set(index.repos.indices) : Set<Int>()
    for word in message.allWords { considered.formUnion(index.reposByWord[word]) }
    // (A repository written out counts even when its name has no word of its own, like `x/y`.)
    for key in message.explicitInText.union(message.explicitInThread) {
      if let position = index.positionByKey[key] { considered.insert(position) }
    }
    if !channelKey.isEmpty {
      considered.formUnion(index.reposByChannel[channelKey] ?? [])
      for key in (index.choices[channelKey] ?? [:]).keys {
        if let position = index.positionByKey[key] { considered.insert(position) }
      }
    }
    let channelName = channel.trimmingCharacters(in: .whitespaces)
    let (listings, picks) = (index.channelListings[channelKey] ?? 1, index.choices[channelKey] ?? [:])
    func score(_ repo: CatalogIndex.Repo, reasons: Bool) -> Evidence {
      var evidence = evidence(for: repo, in: message, index: index, reasons: reasons)
      if !channelKey.isEmpty {
        evidence.addPriors(
          for: repo, channel: channelName, key: channelKey, listings: listings, picks: picks, reasons: reasons)
      }
      return evidence
    }
    // Points for every repository that can score; the reasons only for those returned.
    var found = considered.sorted().map { (position: $0, evidence: score(index.repos[$0], reasons: false)) }
    // A repository with enough hints makes the others' names yield.
    let outweighed = found.contains { $0.evidence.hints >= hintsThatOutweighAName }
    if outweighed {
      for item in found.indices { found[item].evidence.yieldName() }
    }
    let scored =
      found
      .map { (position: $0.position, points: $0.evidence.points) }
      .filter { $0.points > 0 }
      .sorted { ($0.points, index.repos[$1.position].entry.name) > ($1.points, index.repos[$0.position].entry.name) }
    let ranked = scored.enumerated().map { rank, scored in
      let repo = index.repos[scored.position]
      var reason = ""
      if rank < maximumCandidates {
        var evidence = score(repo, reasons: true)
        if outweighed { evidence.yieldName() }
        reason = evidence.reason
      }
      return Candidate(
        repo: repo.entry.name, points: scored.points, score: scored.points / (scored.points + scoreHalfPoint),
        reason: reason)
    }
    let candidates = Array(ranked.prefix(maximumCandidates))
    let ranking = Ranking(candidates: candidates, decision: decide(ranked, thresholds))
    return message.explicitInText.isEmpty && message.explicitInThread.isEmpty
      ? ranking : unknownRepositories(ranking, text: text, message: message, index: index)
  }

  /// `ranking` after the rule for repositories named but not in the catalog (see the type's
  /// documentation).
  private static func unknownRepositories(
    _ ranking: Ranking, text: String, message: MessageWords, index: CatalogIndex
  ) -> Ranking {
    // A repository of a catalog owner; not a file (`acme/notes.txt`): names with a dot are left
    // to the words.
    func unknown(_ keys: Set<String>) -> Set<String> {
      keys.filter { key in
        let (owner, name) = (key.prefix { $0 != "/" }, key.drop { $0 != "/" }.dropFirst())
        return index.positionByKey[key] == nil && index.owners.contains(String(owner)) && !name.contains(".")
      }
    }
    let (inText, inThread) = (unknown(message.explicitInText), unknown(message.explicitInThread))
    guard !inText.isEmpty || !inThread.isEmpty else { return ranking }
    // A catalog repository named as well: written out or linked (in the message when the message
    // names the unknown one), or by its name or an alias in the message, not counting the
    // unknown names' own words (`acme/web-admin` does not name `acme/web`).
    let written = inText.isEmpty ? message.explicitInText.union(message.explicitInThread) : message.explicitInText
    var rest = text.lowercased()
    for key in inText.union(inThread).sorted(by: { $0.count > $1.count }) {
      rest = rest.replacingOccurrences(of: key, with: " ")
    }
    let restWords = Tokenizer.words(rest).map { index.wordNumbers[$0] ?? -1 }
    let namesKnown =
      written.contains { index.positionByKey[$0] != nil }
      || index.repos.contains { repo in repo.names.contains { Tokenizer.contains(restWords, phrase: $0.words) } }
    guard !namesKnown else { return ranking }
    var ranking = ranking
    ranking.unknownRepos = inText.union(inThread).sorted()
    let listed = ranking.unknownRepos.joined(separator: ", ")
    let note = inText.isEmpty ? "the thread names \(listed), not in the catalog" : "names \(listed), not in the catalog"
    for position in ranking.candidates.indices {
      let reason = ranking.candidates[position].reason
      ranking.candidates[position].reason = reason.isEmpty ? note : "\(note); \(reason)"
    }
    if !inText.isEmpty {
      ranking.decision = .none
    } else if ranking.decision == .confident {
      ranking.decision = .ambiguous
    }
    return ranking
  }

  /// NONE when nothing scored at least the minimum points; CONFIDENT when the leader has at
  /// least the confident minimum and the runner-up (if any) at most `1 - confidentLead` of the leader's; otherwise
  /// AMBIGUOUS (several are close, or the only evidence is weak).
  static func decide(_ ranked: [Candidate], _ thresholds: Thresholds = .standard) -> Decision {
    guard let leader = ranked.first, leader.points >= thresholds.minimumPoints else { return .none }
    let runnerUp = ranked.dropFirst().first?.points ?? 0
    if leader.points >= thresholds.confidentMinimum, runnerUp <= leader.points * (1 - thresholds.confidentLead) {
      return .confident
    }
    return .ambiguous
  }

  private static func evidence(
    for repo: CatalogIndex.Repo, in message: MessageWords, index: CatalogIndex, reasons: Bool
  ) -> Evidence {
    var evidence = Evidence(reasons: reasons)
    // Words already counted as part of a name or hint (a few at most).
    var counted: [Int] = []
    // The name counts once: the best of an explicit mention, the full name, an alias and the
    // bare name.
    var best: (points: Double, factor: Double, label: String, words: [Int], explicit: Bool)?
    if let factor = message.explicitFactor(of: repo.key) {
      best = (explicitWeight * factor, factor, "mentioned '\(repo.entry.name)'", repo.names.first?.words ?? [], true)
    }
    for (index, name) in repo.names.enumerated() {
      guard let factor = message.factor(of: name.words) else { continue }
      let label = index == 0 ? "name '\(name.text)'" : "alias '\(name.text)'"
      if nameWeight * factor > best?.points ?? 0 { best = (nameWeight * factor, factor, label, name.words, false) }
    }
    if let factor = message.factor(of: repo.bareName.words), bareNameWeight * factor > best?.points ?? 0 {
      best = (bareNameWeight * factor, factor, "name '\(repo.bareName.text)'", repo.bareName.words, false)
    }
    if let best {
      if best.explicit {
        evidence.add(best.points, best.label, factor: best.factor)
      } else {
        evidence.points += best.points
        evidence.name = (best.points, best.factor, best.label)
      }
      counted.append(contentsOf: best.words)
    }
    var hintsInMessage: [[Int]] = []
    for hint in repo.hints {
      guard let factor = message.factor(of: hint.words) else { continue }
      evidence.add(hintWeight * factor, "hint '\(hint.text)'", factor: factor)
      if factor == 1, !hintsInMessage.contains(hint.words) { hintsInMessage.append(hint.words) }
      counted.append(contentsOf: hint.words)
    }
    // Hints that say different things: `stripe` inside `stripe webhook` is one.
    evidence.hints =
      hintsInMessage.filter { hint in
        !hintsInMessage.contains { $0.count > hint.count && Tokenizer.contains($0, phrase: hint) }
      }.count
    var descriptionPoints = 0.0
    for word in repo.descriptionWords {
      guard let factor = message.factor(of: word), !counted.contains(word) else { continue }
      descriptionPoints += descriptionWordWeight * factor / Double(max(index.descriptionFrequency[word], 1))
      evidence.add(0, "description word '\(message.written(word, in: index))'", factor: factor)
    }
    evidence.points += min(descriptionPoints, descriptionCap)
    var readmePoints = 0.0
    var readmeWords: [String] = []
    for word in repo.readmeWords {
      // A word most READMEs use ("run", "test", "build") says nothing.
      let frequency = index.readmeFrequency[word]
      guard let factor = message.factor(of: word), frequency <= index.commonReadmeWord, !counted.contains(word)
      else { continue }
      readmePoints += readmeWordWeight * factor / Double(max(frequency, 1))
      if reasons, readmeWords.count < 5 { readmeWords.append(message.written(word, in: index)) }
    }
    if readmePoints > 0 {
      evidence.points += min(readmePoints, readmeCap)
      if reasons { evidence.inMessage.append("README words '\(readmeWords.joined(separator: "', '"))'") }
    }
    return evidence
  }
}

// MARK: - Evidence

/// The words of a message and of its thread, as the catalog's word numbers (a word the catalog
/// does not have is -1: it can match nothing).
private struct MessageWords {
  let text: [Int]
  let thread: [[Int]]
  /// For each catalog word (by number): 2 when the message has it, 1 when only the thread does.
  let presence: [UInt8]
  /// The catalog words of the message and the thread, each once.
  let allWords: [Int]
  /// Repository keys (`owner/name`, lowercased) written out or linked in the message, and in the
  /// thread.
  let explicitInText: Set<String>
  let explicitInThread: Set<String>
  /// The terms of the message, then of each thread message: reasons quote what people wrote.
  private let terms: [[Tokenizer.Term]]

  init(text: String, thread: [String], index: CatalogIndex) {
    let terms = Tokenizer.terms(text)
    let threadTerms = thread.map(Tokenizer.terms)
    let number = { (term: Tokenizer.Term) in index.wordNumbers[term.stem] ?? -1 }
    self.text = terms.map(number)
    self.thread = threadTerms.map { $0.map(number) }
    self.terms = [terms] + threadTerms
    var presence = [UInt8](repeating: 0, count: index.words.count)
    var allWords: [Int] = []
    for word in self.thread.joined() where word >= 0 && presence[word] == 0 {
      presence[word] = 1
      allWords.append(word)
    }
    for word in self.text where word >= 0 && presence[word] != 2 {
      if presence[word] == 0 { allWords.append(word) }
      presence[word] = 2
    }
    self.presence = presence
    self.allWords = allWords
    explicitInText = Tokenizer.repositoryMentions(text)
    explicitInThread = Set(thread.flatMap(Tokenizer.repositoryMentions))
  }

  /// Catalog word `word` as the message (or else the thread) first wrote it; looked up only for
  /// the reasons of the candidates returned.
  func written(_ word: Int, in index: CatalogIndex) -> String {
    let stem = index.words[word]
    for terms in terms {
      if let term = terms.first(where: { $0.stem == stem }) { return term.written }
    }
    return stem
  }

  /// 1 when the message names the repository explicitly, ``LexicalScorer/threadFactor`` when
  /// only the thread does.
  func explicitFactor(of key: String) -> Double? {
    if explicitInText.isEmpty && explicitInThread.isEmpty { return nil }
    if explicitInText.contains(key) { return 1 }
    return explicitInThread.contains(key) ? LexicalScorer.threadFactor : nil
  }

  /// 1 when the message has `phrase`, ``LexicalScorer/threadFactor`` when only one message of
  /// the thread has it, nil when neither does.
  func factor(of phrase: [Int]) -> Double? {
    // Most phrases share no word with the message: they are turned away without a scan.
    guard let first = phrase.first, presence[first] != 0 else { return nil }
    if phrase.count == 1 { return factor(of: first) }
    if Tokenizer.contains(text, phrase: phrase) { return 1 }
    if thread.contains(where: { Tokenizer.contains($0, phrase: phrase) }) { return LexicalScorer.threadFactor }
    return nil
  }

  func factor(of word: Int) -> Double? {
    switch presence[word] {
    case 2: 1
    case 1: LexicalScorer.threadFactor
    default: nil
    }
  }
}

/// Points and the words behind them, grouped by where they were found.
private struct Evidence {
  /// Whether the labels are kept (only for the candidates returned: they cost allocations); the
  /// name's label is kept either way, and read only then.
  var reasons: Bool
  var points = 0.0
  var inMessage: [String] = []
  var inThread: [String] = []
  var inChannel: [String] = []
  /// A name, alias or bare name found (not `owner/name` written out or linked): its points, the
  /// factor it was found at and its label, which ``reason`` puts first. It may yield.
  var name: (points: Double, factor: Double, label: String)?
  var nameYielded = false
  /// Hints found in the message (not only the thread), a hint inside a longer one found too
  /// not counted: what makes other repositories' names yield.
  var hints = 0

  /// Lets the name count only ``LexicalScorer/yieldedNameFactor`` of its points, when this
  /// repository has fewer than ``LexicalScorer/hintsThatOutweighAName`` hints (another one
  /// having at least that many).
  mutating func yieldName() {
    guard let name, !nameYielded, hints < LexicalScorer.hintsThatOutweighAName else { return }
    points -= name.points * (1 - LexicalScorer.yieldedNameFactor)
    nameYielded = true
  }

  mutating func add(_ points: Double, _ label: @autoclosure () -> String, factor: Double) {
    self.points += points
    guard reasons else { return }
    if factor == 1 { inMessage.append(label()) } else { inThread.append(label()) }
  }

  /// The channel's listing and its recorded picks.
  mutating func addPriors(
    for repo: CatalogIndex.Repo, channel: String, key: String, listings: Int, picks: [String: Int], reasons: Bool
  ) {
    if repo.channels.contains(key) {
      points += LexicalScorer.listedChannelPrior / Double(max(listings, 1))
      if reasons { inChannel.append("usual repository of \(channel)") }
    }
    let mine = picks[repo.key] ?? 0
    guard mine > 0 else { return }
    let all = picks.values.reduce(0, +)
    points += LexicalScorer.choicePrior * Double(mine) / (Double(all) + LexicalScorer.choiceSmoothing)
    if reasons { inChannel.append("picked \(mine) of \(all) times in \(channel)") }
  }

  /// E.g. `message: name 'local/demo', hint 'calculator'; thread: description word 'python'`.
  var reason: String {
    var (inMessage, inThread) = (inMessage, inThread)
    if let name {
      let note =
        nameYielded
        ? " (×\(LexicalScorer.yieldedNameFactor): another repository has \(LexicalScorer.hintsThatOutweighAName) hints "
          + "or more)" : ""
      if name.factor == 1 {
        inMessage.insert(name.label + note, at: 0)
      } else {
        inThread.insert(name.label + note, at: 0)
      }
    }
    return [("message", inMessage), ("thread", inThread), ("channel", inChannel)]
      .filter { !$0.1.isEmpty }
      .map { "\($0.0): \($0.1.joined(separator: ", "))" }
      .joined(separator: "; ")
  }
}
