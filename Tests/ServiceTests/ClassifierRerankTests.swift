import Foundation
import GRPCCore
import InspectProtos
import Synchronization
import Testing

@testable import RepoClassifier

@Suite("RepoClassifier's model rerank: used when it answers well, never a reason to fail")
struct ClassifierRerankTests {
  typealias Fixtures = ClassifierFixtures
  static let allowed: Set<String> = ["acme/web", "acme/payments-api"]

  @Test("an answer is one JSON object naming a candidate (or null) with a confidence in [0, 1]")
  func parsing() throws {
    let plain = try ModelRerank.parse(
      #"{"repo": "acme/payments-api", "confidence": 0.9, "reason": "refunds"}"#, allowed: Self.allowed)
    #expect(plain == .init(repo: "acme/payments-api", confidence: 0.9, reason: "refunds"))
    let fenced = try ModelRerank.parse(
      "```json\n{\"repo\": \"ACME/Web\", \"confidence\": 1}\n```", allowed: Self.allowed)
    #expect(fenced == .init(repo: "acme/web", confidence: 1, reason: ""))
    #expect(try ModelRerank.parse(#"{"repo": null, "confidence": 0.8}"#, allowed: Self.allowed).repo == nil)
    // The reason reaches people: one line, no markup or mentions.
    let marked = try ModelRerank.parse(
      #"{"repo": "acme/web", "confidence": 0.9, "reason": "<@U1> *bold*\nnext `code`"}"#, allowed: Self.allowed)
    #expect(marked.reason == "  U1   bold  next  code ")
    for bad in [
      "acme/web", #"{"repo": "acme/other", "confidence": 0.9}"#, #"{"repo": "acme/web", "confidence": 1.5}"#,
      #"{"repo": "acme/web", "confidence": true}"#, #"{"repo": "acme/web"}"#, #"{"repo": 3, "confidence": 0.5}"#,
      // No repo key at all is not "none fits".
      #"{"confidence": 0.9}"#, #"{"repository": "acme/web", "confidence": 0.9}"#, "", "[]",
    ] {
      #expect(throws: ModelRerank.Refused.self, "\(bad)") { try ModelRerank.parse(bad, allowed: Self.allowed) }
    }
  }

  /// A rerank answering `answer` (or failing), counting its calls and keeping the last request.
  final class Script: Sendable {
    let calls = Mutex<[Inspect_Model_V1_GenerateRequest]>([])
    let answer: @Sendable () async throws -> String
    init(_ answer: @escaping @Sendable () async throws -> String) { self.answer = answer }
    func rerank(timeout: Duration = .seconds(5)) -> ModelRerank {
      ModelRerank(model: "scripted:rerank", timeout: timeout) { request in
        self.calls.withLock { $0.append(request) }
        return try await self.answer()
      }
    }
  }

  func ambiguous() -> LexicalScorer.Ranking {
    LexicalScorer.rank(text: "the deploy failed again", thread: [], channel: "", in: Fixtures.index())
  }

  @Test("a confident pick moves to the top and decides; a doubtful one only reorders; null with confidence is NONE")
  func picks() async throws {
    let lexical = ambiguous()
    #expect(lexical.decision == .ambiguous && lexical.candidates.first?.repo == "acme/payments-api")
    let sure = Script { #"{"repo": "acme/web", "confidence": 0.9, "reason": "the shop's deploy"}"# }
    let (reranked, failure) = await sure.rerank().rerank(
      lexical, text: "the deploy failed again", thread: ["the checkout page is down"], channel: "#ops",
      index: Fixtures.index())
    #expect(failure == nil)
    #expect(reranked.decision == .confident)
    #expect(reranked.candidates.map(\.repo).prefix(2) == ["acme/web", "acme/payments-api"])
    #expect(reranked.candidates[0].reason.hasPrefix("model (0.90): the shop's deploy"))
    // What the model was shown: the message, thread, channel and both candidates with hints.
    let request = try #require(sure.calls.withLock { $0.first })
    #expect(request.task == .classify && request.model == "scripted:rerank" && request.client == "classifier")
    let prompt = request.messages.last?.text ?? ""
    // What people wrote is quoted as JSON strings (data, not instructions).
    for part in [
      #"Message: "the deploy failed again""#, #"- "the checkout page is down""#, ##"Channel: "#ops""##, "- acme/web:",
      "- acme/payments-api:", "hints: stripe, refund, deploy",
    ] {
      #expect(prompt.contains(part), "\(part)")
    }

    let doubtful = await Script { #"{"repo": "acme/web", "confidence": 0.4}"# }.rerank().rerank(
      lexical, text: "the deploy failed again", thread: [], channel: "", index: Fixtures.index())
    #expect(doubtful.ranking.decision == .ambiguous && doubtful.ranking.candidates[0].repo == "acme/web")
    let neither = await Script { #"{"repo": null, "confidence": 0.95}"# }.rerank().rerank(
      lexical, text: "the deploy failed again", thread: [], channel: "", index: Fixtures.index())
    #expect(neither.ranking.decision == .none && neither.ranking.candidates == lexical.candidates)
    // A doubtful "none" never makes a decision more certain than the words made it.
    var weak = lexical
    weak.decision = .none
    let doubtfulNone = await Script { #"{"repo": null, "confidence": 0.4}"# }.rerank().rerank(
      weak, text: "the deploy failed again", thread: [], channel: "", index: Fixtures.index())
    #expect(doubtfulNone.ranking.decision == .none)
  }

  @Test("a model that fails, answers nonsense or takes too long leaves the lexical ranking, with the reason")
  func fallbacks() async throws {
    let lexical = ambiguous()
    struct Down: Error {}
    for (script, words, timeout) in [
      (Script { throw Down() }, "Down", Duration.seconds(10)),
      (Script { "I think it is the web shop" }, "not a JSON object", .seconds(10)),
      (Script { #"{"repo": "acme/elsewhere", "confidence": 0.99}"# }, "not a candidate", .seconds(10)),
      (
        Script {
          try await Task.sleep(for: .seconds(30))
          return "{}"
        }, "no answer within", .milliseconds(200)
      ),
    ] {
      let started = ContinuousClock.now
      let (ranking, failure) = await script.rerank(timeout: timeout).rerank(
        lexical, text: "the deploy failed again", thread: [], channel: "", index: Fixtures.index())
      #expect(ranking.candidates == lexical.candidates && ranking.decision == lexical.decision)
      #expect(failure?.contains(words) == true, "\(failure ?? "nil")")
      #expect(ContinuousClock.now - started < .seconds(15))
    }
  }

  @Test("through the service: only rankings the words do not decide are reranked, and Classify says by which model")
  func service() async throws {
    let script = Script { #"{"repo": "acme/web", "confidence": 0.9, "reason": "shop"}"# }
    try await withClassifier(rerank: script.rerank()) { client in
      let reranked = try await client.classify(.message("the deploy failed again"))
      #expect(reranked.rerankedBy == "scripted:rerank")
      #expect(reranked.decision == .confident && reranked.candidates.first?.repo == "acme/web")
      // Certain from the words alone: no model call.
      let named = try await client.classify(.message("Please fix the failing test in local/demo"))
      #expect(named.rerankedBy.isEmpty && named.candidates.first?.repo == "local/demo")
      // Nothing matched: nothing to rerank.
      let nothing = try await client.classify(.message("what is for lunch today?"))
      #expect(nothing.rerankedBy.isEmpty && nothing.decision == .none)
      #expect(script.calls.withLock { $0.count } == 1)
      // The thread named a repository the catalog lacks: the model reorders, a person decides.
      let unknown = try await client.classify(
        .message("the deploy failed again", thread: ["like https://github.com/acme/landing-page/pull/3"]))
      #expect(unknown.rerankedBy == "scripted:rerank" && unknown.candidates.first?.repo == "acme/web")
      #expect(unknown.decision == .ambiguous && unknown.unknownRepos == ["acme/landing-page"])
      #expect(script.calls.withLock { $0.count } == 2)
    }
    // A model that is down costs the answer nothing but the wait.
    struct Down: Error {}
    try await withClassifier(rerank: Script { throw Down() }.rerank()) { client in
      let answer = try await client.classify(.message("the deploy failed again"))
      #expect(answer.rerankedBy.isEmpty && answer.decision == .ambiguous)
    }
  }

  @Test("with a real ModelRouter (a scripted model) over gRPC")
  func throughModelRouter() async throws {
    let line = #"{"text": "{\"repo\": \"acme/web\", \"confidence\": 0.85, \"reason\": \"checkout\"}"}"#
    try await withModelRouter(transcripts: ["rerank": line + "\n"]) { router, _ in
      let rerank = ModelRerank(
        model: "scripted:rerank", timeout: .seconds(10), ask: ModelRerank.asking(router, timeout: .seconds(10)))
      try await withClassifier(rerank: rerank) { client in
        let answer = try await client.classify(.message("the deploy failed again"))
        #expect(answer.rerankedBy == "scripted:rerank")
        #expect(answer.candidates.first?.repo == "acme/web" && answer.decision == .confident)
        #expect(answer.candidates.first?.reason.contains("model (0.85): checkout") == true)
      }
    }
  }

  @Test("INSPECT_CLASSIFIER_RERANK: off, on, or a provider:model name; anything else is refused naming the variable")
  func rerankSetting() throws {
    for off in [nil, "", "off", "False", "no", "0"] {
      #expect(try RepoClassifierApp.rerankModel(off.map { ["INSPECT_CLASSIFIER_RERANK": $0] } ?? [:]) == nil)
    }
    for on in ["on", "TRUE", "yes", "1"] {
      #expect(try RepoClassifierApp.rerankModel(["INSPECT_CLASSIFIER_RERANK": on]) == "")
    }
    #expect(
      try RepoClassifierApp.rerankModel(["INSPECT_CLASSIFIER_RERANK": " openai:gpt-4.1-mini "]) == "openai:gpt-4.1-mini"
    )
    for bad in ["enabled", "gpt-4", ":x", "openai:"] {
      #expect {
        _ = try RepoClassifierApp.rerankModel(["INSPECT_CLASSIFIER_RERANK": bad])
      } throws: { "\($0)".contains("INSPECT_CLASSIFIER_RERANK") }
    }
  }
}
