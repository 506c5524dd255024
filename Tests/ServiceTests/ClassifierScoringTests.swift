import Foundation
import Testing

@testable import RepoClassifier

@Suite("RepoClassifier ranks repositories by the words of a message, its thread and its channel")
struct ClassifierScoringTests {
  typealias Fixtures = ClassifierFixtures

  func rank(
    _ text: String, thread: [String] = [], channel: String = "", in index: CatalogIndex = Fixtures.index()
  )
    -> LexicalScorer.Ranking
  {
    LexicalScorer.rank(text: text, thread: thread, channel: channel, in: index)
  }

  @Test("words are lowercased, split on punctuation, stripped of stopwords and stemmed")
  func tokenizer() {
    #expect(Tokenizer.words("Fix the Unit-Tests in calc.py, please!") == ["fix", "unit", "test", "calc", "py"])
    #expect(Tokenizer.words("the class is a bus") == ["class", "bu"])
    // A one-letter part of a hyphenated word stays: `z-index` is not `index`.
    #expect(Tokenizer.words("z-index, e-mail, a b - c, run -v") == ["z", "index", "e", "mail", "run"])
    // Inflections and derivations meet: the card was charged / a second charge / charging.
    #expect(Set(["charged", "charge", "charges", "charging"].flatMap(Tokenizer.words)) == ["charg"])
    #expect(Tokenizer.words("validation validate") == ["valid", "valid"])
    // A host name's top-level domain is no word (`io` is the stem of `iOS`); elsewhere it is.
    #expect(Tokenizer.words("docs.acme.io, bob@acme.com") == ["doc", "acm", "bob", "acm"])
    #expect(Tokenizer.words("see docs.acme.io. then acme.io/path") == ["see", "doc", "acm", "acm", "path"])
    #expect(
      Tokenizer.words("iOS io.js foo.io.bar ANALYTICS.DEV") == ["io", "io", "js", "foo", "io", "bar", "analyt", "dev"])
    // What people wrote is kept beside the stem, for reasons.
    #expect(Tokenizer.terms("Suggestions!") == [.init(written: "suggestions", stem: "suggest")])
    #expect(Tokenizer.contains(["run", "unit", "test"], phrase: ["unit", "test"]))
    #expect(!Tokenizer.contains(["unit", "run", "test"], phrase: ["unit", "test"]))
  }

  @Test("a message naming a repository, or one of its aliases, is CONFIDENT for it")
  func namingIsConfident() throws {
    let named = rank("Please fix the failing test in local/demo")
    #expect(named.decision == .confident)
    let top = try #require(named.candidates.first)
    #expect(top.repo == "local/demo")
    #expect(top.reason.contains("mentioned 'local/demo'"))
    #expect(top.score > 0.5 && top.score < 1)

    let aliased = rank("the calc rounds 0.1 + 0.2 wrong")
    #expect(aliased.decision == .confident)
    #expect(aliased.candidates.first?.repo == "local/demo")
    #expect(aliased.candidates.first?.reason.contains("alias 'calc'") == true)
  }

  @Test("a message matching two repositories equally is AMBIGUOUS and lists both")
  func equalMatchesAreAmbiguous() {
    let ranking = rank("the deploy failed again")
    #expect(ranking.decision == .ambiguous)
    #expect(Set(ranking.candidates.prefix(2).map(\.repo)) == ["acme/web", "acme/payments-api"])
    #expect(ranking.candidates[0].score == ranking.candidates[1].score)
    #expect(ranking.candidates.allSatisfy { $0.reason.contains("hint 'deploy'") })
  }

  @Test("an unrelated message is NONE with no candidates")
  func unrelatedIsNone() {
    let ranking = rank("what is for lunch today?")
    #expect(ranking.decision == .none)
    #expect(ranking.candidates.isEmpty)
  }

  @Test("the thread's words help, but count less than the message's")
  func threadContextHelps() {
    #expect(rank("it crashes when dividing by zero").decision == .none)

    let withThread = rank(
      "it crashes when dividing by zero", thread: ["I am looking at the calculator in local/demo", "ok"])
    #expect(withThread.decision == .confident)
    #expect(withThread.candidates.first?.repo == "local/demo")
    #expect(withThread.candidates.first?.reason.hasPrefix("thread: ") == true)

    let messageWins = rank("the checkout in acme/web is broken", thread: ["yesterday we talked about local/demo"])
    #expect(messageWins.decision == .confident)
    #expect(messageWins.candidates.map(\.repo) == ["acme/web", "local/demo"])
  }

  @Test("a channel prior breaks a tie: its repository first, asked; a listing with a habit of picks there decides")
  func channelPriorBreaksATie() {
    // One prior alone puts the channel's repository first, but a run does not start on it.
    let listed = rank("the deploy failed again", channel: "#payments")
    #expect(listed.decision == .ambiguous)
    #expect(listed.candidates.first?.repo == "acme/payments-api")
    #expect(listed.candidates.first?.reason.contains("channel: usual repository of #payments") == true)

    let picked = rank(
      "the deploy failed again", channel: "ops", in: Fixtures.index(choices: ["ops": ["acme/web": 3]]))
    #expect(picked.decision == .ambiguous)
    #expect(picked.candidates.first?.repo == "acme/web")
    #expect(picked.candidates.first?.reason.contains("picked 3 of 3 times in ops") == true)

    // The channel's usual repository, picked there every time it was asked: CONFIDENT.
    let habit = rank(
      "the deploy failed again", channel: "#payments",
      in: Fixtures.index(choices: ["payments": ["acme/payments-api": 3]]))
    #expect(habit.decision == .confident)
    #expect(habit.candidates.first?.repo == "acme/payments-api")

    // A prior never outweighs a repository named in the message.
    let named = rank("deploy acme/web please", channel: "#payments")
    #expect(named.candidates.first?.repo == "acme/web")
  }

  @Test("a name yields to two hints of another repository: one hint does not, and a link never yields")
  func nameYieldsToHints() throws {
    // The name and the channel would win over two hints; the hints say where the fix is.
    let hinted = rank("the webshop shows a stripe refund twice", channel: "#frontend")
    #expect(hinted.candidates.map(\.repo) == ["acme/payments-api", "acme/web"])
    let yielded = try #require(hinted.candidates.last)
    #expect(yielded.reason.contains("alias 'webshop' (×0.25: another repository has 2 hints or more)"))
    #expect(abs(yielded.points - (LexicalScorer.nameWeight * 0.25 + LexicalScorer.listedChannelPrior)) < 1e-9)
    #expect(hinted.candidates.first?.reason.contains("another repository has") == false)

    let oneHint = rank("the webshop shows a stripe fee twice", channel: "#frontend")
    #expect(oneHint.candidates.first?.repo == "acme/web")
    #expect(oneHint.candidates.allSatisfy { !$0.reason.contains("another repository has") })

    let linked = rank("acme/web shows a stripe refund twice", channel: "#frontend")
    #expect(linked.decision == .confident)
    #expect(linked.candidates.first?.repo == "acme/web")

    // The bare name yields too.
    let bare = rank("the web page shows a stripe refund twice", channel: "#frontend")
    #expect(bare.candidates.first?.repo == "acme/payments-api")
    #expect(bare.candidates.last?.reason.contains("name 'web' (×0.25: another repository has 2 hints") == true)

    // Hints only in the thread do not make the message's name yield.
    let threadHints = rank("the webshop cart is broken", thread: ["stripe refund failed twice"])
    #expect(threadHints.decision == .confident)
    #expect(threadHints.candidates.first?.repo == "acme/web")
    #expect(threadHints.candidates.allSatisfy { !$0.reason.contains("another repository has") })

    // Two repositories with two hints each: neither name yields.
    let both = rank("the webshop checkout in react shows a stripe refund twice")
    #expect(both.candidates.first?.repo == "acme/web")
    #expect(both.candidates.allSatisfy { !$0.reason.contains("another repository has") })
  }

  @Test("a hint inside a longer hint found too is not a second hint")
  func nestedHintsCountOnce() {
    let payments = CatalogEntry(
      name: "acme/payments-api", description: "Go service for cards", hints: ["stripe", "stripe webhook", "refund"])
    let index = Fixtures.index([Fixtures.web, payments])
    let nested = rank("the webshop stripe webhook fails", channel: "#frontend", in: index)
    #expect(nested.candidates.first?.repo == "acme/web")
    #expect(nested.candidates.allSatisfy { !$0.reason.contains("another repository has") })

    let two = rank("the webshop stripe webhook fails for a refund", channel: "#frontend", in: index)
    #expect(two.candidates.first?.repo == "acme/payments-api")
    #expect(two.candidates.last?.reason.contains("alias 'webshop' (×0.25") == true)
  }

  @Test("candidates are best first with scores in [0, 1]; NONE, AMBIGUOUS and CONFIDENT follow the margins")
  func decisionMargins() {
    typealias Candidate = LexicalScorer.Candidate
    func candidates(_ points: Double...) -> [Candidate] {
      points.enumerated().map { Candidate(repo: "o/r\($0.offset)", points: $0.element, score: 0, reason: "") }
    }
    let minimum = LexicalScorer.confidentMinimum
    let lead = LexicalScorer.confidentLead
    #expect(LexicalScorer.decide([]) == .none)
    #expect(LexicalScorer.decide(candidates(minimum)) == .confident)
    #expect(LexicalScorer.decide(candidates(minimum * 0.9)) == .ambiguous)
    #expect(LexicalScorer.decide(candidates(1, 1 - lead)) == .confident)
    #expect(LexicalScorer.decide(candidates(1, 1 - lead + 0.01)) == .ambiguous)

    let ranking = rank("calculator checkout stripe refund react unit tests")
    #expect(ranking.candidates.map(\.score) == ranking.candidates.map(\.score).sorted(by: >))
    #expect(ranking.candidates.allSatisfy { $0.score > 0 && $0.score < 1 })
  }

  @Test("the thresholds come from the environment when set; a value out of range is refused naming the variable")
  func configurableThresholds() throws {
    let set = try RepoClassifierApp.thresholds([
      "INSPECT_CLASSIFIER_CONFIDENT_POINTS": "2", "INSPECT_CLASSIFIER_CONFIDENT_LEAD": "0.5",
      "INSPECT_CLASSIFIER_MINIMUM_POINTS": " 0.1 ",
    ])
    #expect(set == .init(confidentMinimum: 2, confidentLead: 0.5, minimumPoints: 0.1))
    #expect(try RepoClassifierApp.thresholds([:]) == .standard)
    for (name, value) in [
      ("INSPECT_CLASSIFIER_CONFIDENT_LEAD", "1.5"), ("INSPECT_CLASSIFIER_CONFIDENT_LEAD", "0"),
      ("INSPECT_CLASSIFIER_MINIMUM_POINTS", "-1"), ("INSPECT_CLASSIFIER_CONFIDENT_POINTS", "lots"),
      ("INSPECT_CLASSIFIER_MINIMUM_POINTS", "0.9"),
    ] {
      #expect {
        _ = try RepoClassifierApp.thresholds([name: value])
      } throws: { error in
        "\(error)".contains(name) && "\(error)".contains(value)
      }
    }
    // The same message under stricter lines: a named repository is no longer CONFIDENT, and
    // weak evidence falls to NONE.
    let strict = LexicalScorer.Thresholds(confidentMinimum: 5, confidentLead: 0.35, minimumPoints: 0.9)
    let named = LexicalScorer.rank(
      text: "Please fix the failing test in local/demo", thread: [], channel: "", in: Fixtures.index(),
      thresholds: strict)
    #expect(named.decision == .ambiguous && named.candidates.first?.repo == "local/demo")
    #expect(rank("the deploy failed again").decision == .ambiguous)
    #expect(
      LexicalScorer.rank(
        text: "the deploy failed again", thread: [], channel: "", in: Fixtures.index(), thresholds: strict
      ).decision == .none)
  }

  @Test("a channel listed by several repositories counts for each a share of what a team's own channel counts")
  func sharedChannelIsSplit() {
    let shared = CatalogEntry(
      name: "acme/docs", description: "Product documentation site", hints: [], aliases: [], channels: ["#frontend"])
    let index = Fixtures.index(Fixtures.repos + [shared])
    let ranking = LexicalScorer.rank(text: "hello there", thread: [], channel: "#frontend", in: index)
    #expect(
      ranking.candidates.map(\.points) == [LexicalScorer.listedChannelPrior / 2, LexicalScorer.listedChannelPrior / 2])
    #expect(ranking.decision == .none)  // under the minimum: a shared channel alone says nothing
    let own = LexicalScorer.rank(text: "hello there", thread: [], channel: "#payments", in: index)
    #expect(own.candidates.map(\.points) == [LexicalScorer.listedChannelPrior])
    #expect(own.decision == .ambiguous)
  }
}

@Suite("RepoClassifier's explicit mentions and README text")
struct ClassifierMentionTests {
  typealias Fixtures = ClassifierFixtures

  @Test("links and owner/name written out are found; longer paths and URL paths are not")
  func mentions() {
    #expect(Tokenizer.repositoryMentions("see https://github.com/Acme/Web/pull/1873 please") == ["acme/web"])
    #expect(Tokenizer.repositoryMentions("clone git@github.com:acme/payments-api.git") == ["acme/payments-api"])
    #expect(Tokenizer.repositoryMentions("(github.com/acme/web)") == ["acme/web"])
    #expect(Tokenizer.repositoryMentions("fix `local/demo`, then acme/web.") == ["local/demo", "acme/web"])
    #expect(Tokenizer.repositoryMentions("edit src/pages/cart.tsx") == [])
    #expect(Tokenizer.repositoryMentions("GET /v1/search?q=a, https://example.com/acme/web") == [])
    // Pairs that are not repositories are found too; only catalog keys and owners count.
    #expect(Tokenizer.repositoryMentions("and/or 1/2") == ["and/or", "1/2"])
    #expect(Tokenizer.repositoryMentions("nothing here") == [])
    // `.git` and a full stop, in either order; a host that only ends in github.com is another.
    #expect(Tokenizer.repositoryMentions("clone git@github.com:acme/web.git.") == ["acme/web"])
    #expect(Tokenizer.repositoryMentions("see www.github.com/acme/web") == ["acme/web"])
    #expect(Tokenizer.repositoryMentions("https://gist.github.com/acme/0a1b2c") == [])
    #expect(Tokenizer.repositoryMentions("https://notgithub.com/acme/web") == [])
  }

  @Test("a link to a repository outweighs another repository's hints; in the thread it counts less")
  func explicitWins() throws {
    let index = Fixtures.index()
    // "refund" and "stripe" are acme/payments-api's hints, but the link names acme/web.
    let linked = LexicalScorer.rank(
      text: "the refund page from stripe is broken, see https://github.com/acme/web/issues/12", thread: [],
      channel: "", in: index)
    #expect(linked.candidates.first?.repo == "acme/web")
    #expect(linked.candidates.first?.reason.contains("mentioned 'acme/web'") == true)
    let inThread = LexicalScorer.rank(
      text: "and the refund too", thread: ["see https://github.com/acme/web/issues/12"], channel: "", in: index)
    let web = try #require(inThread.candidates.first { $0.repo == "acme/web" })
    #expect(web.reason.contains("thread: mentioned 'acme/web'"))
    #expect(web.points == LexicalScorer.explicitWeight * LexicalScorer.threadFactor)
  }

  @Test("a catalog owner's repository the catalog lacks: named in the message NONE, in the thread at most AMBIGUOUS")
  func unknownRepository() throws {
    let index = Fixtures.index()
    // The refund words point at acme/payments-api, but the person named another acme repository.
    for text in [
      "the stripe refund banner in acme/marketing-site is wrong",
      "the stripe refund banner is wrong: https://github.com/acme/marketing-site/pull/3",
    ] {
      let named = LexicalScorer.rank(text: text, thread: [], channel: "", in: index)
      #expect(named.decision == .none, "\(text)")
      #expect(named.unknownRepos == ["acme/marketing-site"])
      let top = try #require(named.candidates.first)
      // The candidates are kept, and say first why none was taken.
      #expect(top.repo == "acme/payments-api")
      #expect(top.reason.hasPrefix("names acme/marketing-site, not in the catalog; "), "\(top.reason)")
    }
    // Named earlier in the thread (a related pull request, say): asked, never taken silently.
    let text = "the stripe refund wording is off, can you fix it?"
    #expect(LexicalScorer.rank(text: text, thread: [], channel: "", in: index).decision == .confident)
    let threaded = LexicalScorer.rank(
      text: text, thread: ["see https://github.com/acme/marketing-site/pull/3"], channel: "", in: index)
    #expect(threaded.decision == .ambiguous && threaded.candidates.first?.repo == "acme/payments-api")
    #expect(threaded.unknownRepos == ["acme/marketing-site"])
    let threadNote = "the thread names acme/marketing-site, not in the catalog"
    #expect(threaded.candidates.first?.reason.hasPrefix(threadNote) == true)
    // The unknown name's own words name nothing: acme/web-admin is not acme/web, nor is
    // acme/payments-v2 the alias "payments".
    for text in ["the checkout button in acme/web-admin is broken", "the stripe refund in acme/payments-v2 fails"] {
      let ranking = LexicalScorer.rank(text: text, thread: [], channel: "", in: index)
      #expect(ranking.decision == .none && ranking.unknownRepos.count == 1, "\(text)")
    }
    // A catalog repository linked earlier in the thread does not cancel one the message names.
    let linkedBefore = LexicalScorer.rank(
      text: "acme/landing-page has the wrong checkout link", thread: ["fixed in https://github.com/acme/web/pull/12"],
      channel: "", in: index)
    #expect(linkedBefore.decision == .none && linkedBefore.unknownRepos == ["acme/landing-page"])
    // A repository whose name has no word of its own still counts when written out.
    let short = Fixtures.index(Fixtures.repos + [CatalogEntry(name: "x/y", description: "a tiny thing")])
    let shortRanking = LexicalScorer.rank(text: "fix x/y please", thread: [], channel: "", in: short)
    #expect(shortRanking.candidates.first?.repo == "x/y")
    // Naming a catalog repository as well (written out, or by an alias in the message) leaves
    // the words to decide; so do a pair of another owner, a file of a folder named like the
    // owner, a gist, and a pair that is not a repository at all.
    for text in [
      "move the refund banner from acme/marketing-site to acme/payments-api, stripe refund",
      "the payments refund from stripe, copied from acme/marketing-site",
      "the refund from stripe fails like in torvalds/linux", "stripe refund, see acme/notes.txt",
      "stripe refund, script in https://gist.github.com/acme/0a1b2c", "stripe refund and/or payout",
    ] {
      let ranking = LexicalScorer.rank(text: text, thread: [], channel: "", in: index)
      #expect(ranking.decision == .confident && ranking.candidates.first?.repo == "acme/payments-api", "\(text)")
      #expect(ranking.unknownRepos.isEmpty, "\(text)")
    }
  }

  @Test("README words count, less than description words, capped, and not when most READMEs use them")
  func readmeWords() throws {
    var demo = Fixtures.demo
    demo.readme = "# demo\nRounding uses decimal arithmetic; run the tests with unittest. Build and run it."
    var web = Fixtures.web
    web.readme = "# web\nBuild and run it with npm; tests run with vitest."
    var api = Fixtures.api
    api.readme = "# payments\nBuild and run it with go; tests run with go test."
    let index = Fixtures.index([demo, web, api])
    let ranked = LexicalScorer.rank(text: "rounding is off by one", thread: [], channel: "", in: index)
    let top = try #require(ranked.candidates.first)
    #expect(top.repo == "local/demo")
    #expect(top.reason.contains("README words 'rounding'"))
    #expect(top.points == LexicalScorer.readmeWordWeight)
    // "build" and "run" are in every README: they say nothing.
    #expect(LexicalScorer.rank(text: "build run", thread: [], channel: "", in: index).candidates.isEmpty)
    // Many README words cannot add up past the cap.
    demo.readme = (0..<200).map { "word\($0)" }.joined(separator: " ")
    let capped = LexicalScorer.rank(
      text: (0..<200).map { "word\($0)" }.joined(separator: " "), thread: [], channel: "",
      in: Fixtures.index([demo, web, api]))
    #expect(capped.candidates.first?.points == LexicalScorer.readmeCap)
  }
}
