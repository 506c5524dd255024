import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos

/// `classifier.classify`: `Classify` latency through a real RepoClassifier process with a catalog
/// of `repos` repositories (the lexical path), beside an empty unary RPC to the same process (the
/// gRPC floor: `grpc.health.v1.Health/Check`), alternating, in the same run.
struct ClassifierBenchmark: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "classifier.classify", abstract: "Classify latency with a catalog of many repositories.")

  @Option(help: "Repositories in the catalog.")
  var repos = 100

  @Option(help: "Classify calls (and as many empty calls).")
  var runs = 2000

  @Option(help: "RepoClassifier's --log-level.")
  var logLevel = "warning"

  @Option(help: "Seed of the generated catalog (the same seed, the same catalog).")
  var seed: UInt64 = 1

  @Option(help: "Hints per repository (docs/SLACK.md suggests 20 to 30).")
  var hints = 5

  @Option(help: "Words of README text per repository (0: none).")
  var readmeWords = 0

  @Option(help: "Earlier messages of the thread sent with each message.")
  var threadMessages = 1

  /// SplitMix64: a small generator whose sequence a seed fixes.
  struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
      state &+= 0x9E37_79B9_7F4A_7C15
      var z = state
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return z ^ (z >> 31)
    }
  }

  /// Words the generated catalog and messages are made of: each repository gets a few of them
  /// in its description and hints, so messages match several repositories, as in a real catalog.
  static let vocabulary = """
    invoice payment refund subscription checkout cart login session token oauth password search index query \
    ranking email sms push notification template dashboard chart report export import upload download image \
    video thumbnail cache queue worker cron deploy terraform kubernetes helm docker metrics alert log trace \
    button modal form table theme color font mobile ios android webhook api gateway rate limit schema migration \
    database postgres redis kafka airflow warehouse etl pipeline billing tax currency coupon discount price
    """.split(whereSeparator: \.isWhitespace).map(String.init)

  /// README text draws on more words than descriptions do: the vocabulary and words of its own.
  static let readmeVocabulary =
    vocabulary
      + """
      install run build configure environment variable local development release version docs \
      contributing license owner team service module handler client server request response retry \
      timeout config secret staging production test fixture lint format review branch
      """.split(whereSeparator: \.isWhitespace).map(String.init)

  static func catalog(repos: Int, seed: UInt64, hints: Int = 5, readmeWords: Int = 0) -> Data {
    var generator = SeededGenerator(state: seed)
    var entries: [[String: Any]] = []
    for index in 0..<repos {
      func words(_ count: Int) -> [String] {
        (0..<count).map { _ in vocabulary.randomElement(using: &generator)! }
      }
      entries.append([
        "name": "acme/service-\(index)",
        "description": "The \(words(6).joined(separator: " ")) service: \(words(10).joined(separator: " ")).",
        "hints": (0..<hints).map { _ in words(2).joined(separator: " ") },
        "aliases": ["svc\(index)"],
        "channels": ["#team-\(index % 20)"],
        "readme": (0..<readmeWords).map { _ in readmeVocabulary.randomElement(using: &generator)! }
          .joined(separator: " "),
      ])
    }
    return try! JSONSerialization.data(withJSONObject: ["repos": entries], options: [.sortedKeys])
  }

  static func messages(count: Int, threadMessages: Int = 1) -> [Inspect_Classifier_V1_ClassifyRequest] {
    (0..<count).map { index in
      .with {
        $0.text =
          "@inspect the \(vocabulary[index % vocabulary.count]) \(vocabulary[(index * 7) % vocabulary.count]) "
          + "fails after the \(vocabulary[(index * 13) % vocabulary.count]) change, see the stack trace below"
        // The first as it always was; more make a longer thread.
        $0.thread = (0..<threadMessages).map { line in
          line == 0
            ? "we saw a \(vocabulary[(index * 3) % vocabulary.count]) error on the dashboard yesterday"
            : "the \(vocabulary[(index * 3 + line * 11) % vocabulary.count]) errors started after the "
              + "\(vocabulary[(index * 5 + line) % vocabulary.count]) release, see the logs from the on-call"
        }
        $0.channel = "#team-\(index % 20)"
      }
    }
  }

  func run() async throws {
    let work = FileManager.default.temporaryDirectory.appendingPathComponent("inspect-bench-classifier-\(getpid())")
    let data = work.appendingPathComponent("data", isDirectory: true)
    try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: work) }
    let seed = work.appendingPathComponent("catalog.json")
    try Self.catalog(repos: repos, seed: self.seed, hints: hints, readmeWords: readmeWords).write(to: seed)
    let service = try await ServiceProcess.start(
      "RepoClassifier", binDirectory: try await BinaryDirectory.resolve(), dataDirectory: data,
      environment: ["INSPECT_CLASSIFIER_CATALOG": seed.path], logLevel: logLevel)
    let (runs, repos) = (self.runs, self.repos)
    do {
      let line = try await withGRPCClient(
        transport: .http2NIOPosix(
          target: .ipv4(host: service.grpc.host, port: service.grpc.port), transportSecurity: .plaintext)
      ) { grpc in
        let classifier = Inspect_Classifier_V1_RepoClassifierService.Client(wrapping: grpc)
        let health = Grpc_Health_V1_Health.Client(wrapping: grpc)
        let listed = try await classifier.listRepos(.init()).repos.count
        guard listed == repos else { throw BenchError("the catalog holds \(listed) repositories, not \(repos)") }
        let messages = Self.messages(count: 97, threadMessages: threadMessages)
        var (classify, empty) = (Samples(), Samples())
        let clock = ContinuousClock()
        for round in 0..<(runs + 200) {
          var started = clock.now
          _ = try await classifier.classify(messages[round % messages.count])
          let took = clock.now - started
          started = clock.now
          _ = try await health.check(.init())
          let floor = clock.now - started
          // The first 200 rounds warm up.
          guard round >= 200 else { continue }
          classify.append(took)
          empty.append(floor)
        }
        return String(
          format:
            "bench classifier.classify p50_ms=%.3f p99_ms=%.3f repos=%d baseline_p50_ms=%.3f runs=%d hints=%d "
            + "readme_words=%d thread_messages=%d",
          classify.p50, classify.p99, repos, empty.p50, runs, hints, readmeWords, threadMessages)
      }
      await service.stop()
      print(line)
    } catch {
      await service.stop()
      throw BenchError("\(error)\n\(ServiceProcess.tail(of: service.log))")
    }
  }
}
