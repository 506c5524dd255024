import Foundation
import GRPCCore
import InspectKit
import InspectProtos
import InspectTestSupport
import Testing

@testable import RepoClassifier

@Suite("RepoClassifier keeps a catalog, classifies messages against it and refuses bad input")
struct ClassifierTests {
  typealias Fixtures = ClassifierFixtures

  // MARK: - Catalog

  @Test("UpsertRepo adds an entry, then replaces it; ListRepos lists the catalog sorted by name")
  func upsertAndList() async throws {
    try await withClassifier([Fixtures.web]) { client in
      let added = try await client.upsertRepo(.with { $0.repo = Fixtures.demo.proto })
      #expect(added.created)
      var changed = Fixtures.demo.proto
      changed.description_p = "A calculator"
      changed.hints = [" division ", "", "division"]
      let replaced = try await client.upsertRepo(.with { $0.repo = changed })
      #expect(!replaced.created)
      #expect(replaced.repo.hints == ["division"])
      let repos = try await client.listRepos(.init()).repos
      #expect(repos.map(\.name) == ["acme/web", "local/demo"])
      #expect(repos.last?.description_p == "A calculator")
    }
  }

  @Test("recorded picks raise that repository for later messages in the same channel, and then decide")
  func recordChoiceFeedsPriors() async throws {
    try await withClassifier { client in
      func pick(_ repo: String, in channel: String) async throws {
        _ = try await client.recordChoice(
          .with {
            $0.channel = channel
            $0.repo = repo
            $0.text = "the deploy failed"
            $0.userID = "usr-1"
          })
      }
      // A tie in a channel no repository lists: the picks put their repository first.
      let tie = ClassifyRequest.message("the deploy failed again", channel: "#ops")
      let before = try await client.classify(tie)
      #expect(before.decision == .ambiguous)
      for _ in 0..<3 { try await pick("ACME/web", in: "ops") }
      let leaning = try await client.classify(tie)
      #expect(leaning.decision == .ambiguous)
      #expect(leaning.candidates.first?.repo == "acme/web")
      #expect(leaning.candidates.first?.reason.contains("picked 3 of 3 times in #ops") == true)
      #expect(leaning.candidates.first!.score > before.candidates.first { $0.repo == "acme/web" }!.score)

      // In the channel the repository is listed for, its listing and the picks together decide.
      let listed = ClassifyRequest.message("the deploy failed again", channel: "#payments")
      #expect(try await client.classify(listed).decision == .ambiguous)
      for _ in 0..<3 { try await pick("acme/payments-api", in: "#payments") }
      let decided = try await client.classify(listed)
      #expect(decided.decision == .confident)
      #expect(decided.candidates.first?.repo == "acme/payments-api")
    }
  }

  @Test("DeleteRepo removes an entry and its picks; the seed does not bring it back; upserting it again does")
  func deleteRepo() async throws {
    try await TemporaryDirectory.with { directory in
      let seed = directory.appendingPathComponent("seed.json")
      try Data(#"{"repos": [{"name": "acme/web", "hints": ["deploy"]}, {"name": "local/demo"}]}"#.utf8).write(to: seed)
      let configuration = testConfiguration(.classifier, dataDirectory: directory)
      let environment = [RepoClassifierApp.catalogVariable: seed.path]
      try await withRunningService(RepoClassifierApp.build(configuration, environment: environment)) { addresses in
        try await withClient(addresses.grpc) { client in
          let classifier = Inspect_Classifier_V1_RepoClassifierService.Client(wrapping: client)
          _ = try await classifier.recordChoice(
            .with {
              $0.channel = "#ops"; $0.repo = "acme/web"
            })
          let deleted = try await classifier.deleteRepo(.with { $0.name = "ACME/Web" })
          #expect(deleted.repo.name == "acme/web" && deleted.repo.hints == ["deploy"])
          #expect(try await classifier.listRepos(.init()).repos.map(\.name) == ["local/demo"])
          let again = await #expect(throws: RPCError.self) {
            try await classifier.deleteRepo(.with { $0.name = "acme/web" })
          }
          #expect(again?.code == .notFound)
          let bad = await #expect(throws: RPCError.self) { try await classifier.deleteRepo(.with { $0.name = "web" }) }
          #expect(bad?.code == .invalidArgument)
        }
      }
      // A restart with the same seed: still deleted.
      try await withRunningService(RepoClassifierApp.build(configuration, environment: environment)) { addresses in
        try await withClient(addresses.grpc) { client in
          let classifier = Inspect_Classifier_V1_RepoClassifierService.Client(wrapping: client)
          #expect(try await classifier.listRepos(.init()).repos.map(\.name) == ["local/demo"])
          _ = try await classifier.upsertRepo(.with { $0.repo = .with { $0.name = "acme/web" } })
          // Its old picks went with it.
          let ranked = try await classifier.classify(.message("hello there", channel: "#ops"))
          #expect(ranked.candidates.isEmpty)
        }
      }
      try await withRunningService(RepoClassifierApp.build(configuration, environment: environment)) { addresses in
        try await withClient(addresses.grpc) { client in
          let classifier = Inspect_Classifier_V1_RepoClassifierService.Client(wrapping: client)
          let names = try await classifier.listRepos(.init()).repos.map(\.name)
          #expect(names == ["acme/web", "local/demo"])
        }
      }
    }
  }

  @Test("a catalog kept by an earlier version in catalog.json is taken into the new database once")
  func legacyImport() async throws {
    try await TemporaryDirectory.with { directory in
      let legacy = ClassifierPaths(directory).legacyCatalog
      try FileManager.default.createDirectory(at: legacy.deletingLastPathComponent(), withIntermediateDirectories: true)
      try Data(
        ##"{"repos": [{"name": "acme/web", "readme": "# web"}], "choices": {"#ops": {"acme/web": 3, "gone/repo": 1}}}"##
          .utf8
      ).write(to: legacy)
      let catalog = try RepoCatalog(file: ClassifierPaths(directory).catalog, legacy: legacy)
      #expect(catalog.repos.map(\.name) == ["acme/web"] && catalog.repos.first?.readme == "# web")
      #expect(catalog.index.choices == ["ops": ["acme/web": 3]])
      _ = try catalog.delete("acme/web")
      // Opened again: the database is not new, the old file is not read again.
      let reopened = try RepoCatalog(file: ClassifierPaths(directory).catalog, legacy: legacy)
      #expect(reopened.repos.isEmpty)
    }
  }

  @Test("the catalog and the channel picks survive a rebuild in the same data directory")
  func persistence() async throws {
    try await TemporaryDirectory.with { directory in
      let configuration = testConfiguration(.classifier, dataDirectory: directory)
      try await withRunningService(RepoClassifierApp.build(configuration, environment: [:])) { addresses in
        try await withClient(addresses.grpc) { client in
          let classifier = Inspect_Classifier_V1_RepoClassifierService.Client(wrapping: client)
          for repo in Fixtures.repos { _ = try await classifier.upsertRepo(.with { $0.repo = repo.proto }) }
          for _ in 0..<3 {
            _ = try await classifier.recordChoice(
              .with {
                $0.channel = "ops"; $0.repo = "acme/web"
              })
          }
        }
      }
      #expect(FileManager.default.fileExists(atPath: ClassifierPaths(directory).catalog.path))
      try await withRunningService(RepoClassifierApp.build(configuration, environment: [:])) { addresses in
        try await withClient(addresses.grpc) { client in
          let classifier = Inspect_Classifier_V1_RepoClassifierService.Client(wrapping: client)
          let repos = try await classifier.listRepos(.init()).repos
          #expect(repos.map(\.name) == ["acme/payments-api", "acme/web", "local/demo"])
          #expect(repos.last == Fixtures.demo.proto)
          let leaning = try await classifier.classify(.message("the deploy failed again", channel: "#ops"))
          #expect(leaning.candidates.first?.repo == "acme/web")
          #expect(leaning.candidates.first?.reason.contains("picked 3 of 3 times in #ops") == true)
        }
      }
    }
  }

  @Test("a seed file adds its repositories once; edits made through the RPCs win over it on restart")
  func seedFile() async throws {
    try await TemporaryDirectory.with { directory in
      let configuration = testConfiguration(.classifier, dataDirectory: directory)
      let environment = [RepoClassifierApp.catalogVariable: Fixtures.exampleCatalog.path]
      try await withRunningService(RepoClassifierApp.build(configuration, environment: environment)) { addresses in
        try await withClient(addresses.grpc) { client in
          let classifier = Inspect_Classifier_V1_RepoClassifierService.Client(wrapping: client)
          let repos = try await classifier.listRepos(.init()).repos
          #expect(repos.map(\.name) == ["acme/payments-api", "acme/storefront", "local/demo"])
          let answer = try await classifier.classify(.message("the calculator's unit tests fail on division"))
          #expect(answer.decision == .confident)
          #expect(answer.candidates.first?.repo == "local/demo")
          var edited = try #require(repos.last)
          edited.description_p = "Edited through UpsertRepo"
          _ = try await classifier.upsertRepo(.with { $0.repo = edited })
        }
      }
      try await withRunningService(RepoClassifierApp.build(configuration, environment: environment)) { addresses in
        try await withClient(addresses.grpc) { client in
          let repos = try await Inspect_Classifier_V1_RepoClassifierService.Client(wrapping: client).listRepos(.init())
          #expect(repos.repos.count == 3)
          #expect(repos.repos.last?.description_p == "Edited through UpsertRepo")
        }
      }
    }
  }

  // MARK: - Bad input

  @Test("Classify with empty text and an empty thread is INVALID_ARGUMENT")
  func emptyMessage() async throws {
    try await withClassifier { client in
      for request in [ClassifyRequest.message(""), .message("  \n", thread: ["", " "], channel: "#demo")] {
        let error = await #expect(throws: RPCError.self) { try await client.classify(request) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("text and thread are both empty") == true)
      }
      // A thread alone is enough.
      let threadOnly = try await client.classify(.message("", thread: ["local/demo"]))
      #expect(threadOnly.decision != .none)
    }
  }

  @Test("Classify on an empty catalog is FAILED_PRECONDITION saying how to fill it")
  func emptyCatalog() async throws {
    try await withClassifier([]) { client in
      let error = await #expect(throws: RPCError.self) { try await client.classify(.message("local/demo")) }
      #expect(error?.code == .failedPrecondition)
      #expect(error?.message.contains("INSPECT_CLASSIFIER_CATALOG") == true)
    }
  }

  @Test(
    "UpsertRepo refuses a name that is not owner/name with INVALID_ARGUMENT",
    arguments: [
      "", "demo", "a/b/c", "/demo", "local/", "local demo/x", "../x", "local/..", "ökö/x",
    ])
  func badRepoName(name: String) async throws {
    try await withClassifier([]) { client in
      let error = await #expect(throws: RPCError.self) {
        try await client.upsertRepo(.with { $0.repo.name = name })
      }
      #expect(error?.code == .invalidArgument)
      #expect(error?.message.contains("is not owner/name") == true)
      let repos = try await client.listRepos(.init()).repos
      #expect(repos.isEmpty)
    }
  }

  @Test("RecordChoice is NOT_FOUND for a repository not in the catalog, INVALID_ARGUMENT without repo or channel")
  func badChoice() async throws {
    try await withClassifier { client in
      let unknown = await #expect(throws: RPCError.self) {
        try await client.recordChoice(
          .with {
            $0.channel = "ops"; $0.repo = "acme/nope"
          })
      }
      #expect(unknown?.code == .notFound)
      #expect(unknown?.message.contains("'acme/nope' is not in the catalog") == true)
      for (channel, repo) in [("ops", ""), ("", "local/demo"), ("#", "local/demo")] {
        let error = await #expect(throws: RPCError.self) {
          try await client.recordChoice(
            .with {
              $0.channel = channel; $0.repo = repo
            })
        }
        #expect(error?.code == .invalidArgument)
      }
    }
  }

  @Test(
    "a malformed catalog file fails start-up with a message naming the file and what is wrong",
    arguments: [
      ("{ \"repos\": [", "not valid JSON"),
      ("{\n  \"repos\": [],,\n}", "not valid JSON: Invalid value around character 16 (line 2, column 15)"),
      ("[]", "at the top level: expected an object"),
      ("{\"repos\": {}}", "at repos: expected a list"),
      ("{\"repos\": [{\"description\": \"x\"}]}", "at repos[0]: missing field 'name'"),
      ("{\"repos\": [{\"name\": \"demo\"}]}", "at repos[0].name: repository name 'demo' is not owner/name"),
      ("{\"repos\": [{\"name\": \"a/b\", \"hint\": [\"x\"]}]}", "at repos[0].hint: unknown field 'hint'"),
      ("{\"repos\": [{\"name\": \"a/b\", \"hints\": [\"x\", 1]}]}", "at repos[0].hints[1]: expected a string"),
      ("{\"repos\": [{\"name\": \"a/b\"}, {\"name\": \"A/b\"}]}", "at repos[1].name: 'A/b' appears more than once"),
      ("{\"repo\": []}", "unknown field 'repo'"),
      ("{\"choices\": {\"ops\": {\"a/b\": -1}}}", "at choices.ops.a/b: a count of picks cannot be negative"),
    ])
  func malformedCatalog(contents: String, problem: String) async throws {
    try await TemporaryDirectory.with { directory in
      let file = directory.appendingPathComponent("seed.json")
      try Data(contents.utf8).write(to: file)
      let error = await #expect(throws: ConfigurationError.self) {
        _ = try await RepoClassifierApp.build(
          testConfiguration(.classifier, dataDirectory: directory),
          environment: [RepoClassifierApp.catalogVariable: file.path])
      }
      #expect(error?.description.contains("catalog file \(file.path) is malformed: ") == true)
      #expect(error?.description.contains(problem) == true, "\(error?.description ?? "no error")")
    }
  }

  @Test("a seed file that does not exist fails start-up naming it")
  func missingSeed() async throws {
    try await TemporaryDirectory.with { directory in
      let seed = directory.appendingPathComponent("nope.json").path
      let error = await #expect(throws: ConfigurationError.self) {
        _ = try await RepoClassifierApp.build(
          testConfiguration(.classifier, dataDirectory: directory),
          environment: [RepoClassifierApp.catalogVariable: seed])
      }
      #expect(error?.description == "catalog file \(seed) does not exist")
    }
  }

  // MARK: - Over HTTP/2

  @Test("over the real HTTP/2 server the catalog, Classify and RecordChoice work and errors keep their codes")
  func overHTTP2() async throws {
    try await TemporaryDirectory.with { directory in
      let built = try await RepoClassifierApp.build(testConfiguration(.classifier, dataDirectory: directory))
      try await withRunningService(built) { addresses in
        try await withClient(addresses.grpc) { client in
          let classifier = Inspect_Classifier_V1_RepoClassifierService.Client(wrapping: client)
          let empty = await #expect(throws: RPCError.self) { try await classifier.classify(.message("calc")) }
          #expect(empty?.code == .failedPrecondition)
          for repo in Fixtures.repos {
            #expect(try await classifier.upsertRepo(.with { $0.repo = repo.proto }).created)
          }
          #expect(try await classifier.listRepos(.init()).repos.count == 3)

          let answer = try await classifier.classify(.message("refund failed in stripe", channel: "#payments"))
          #expect(answer.decision == .confident)
          let top = try #require(answer.candidates.first)
          #expect(top.repo == "acme/payments-api")
          #expect(top.score > 0 && top.score < 1)
          #expect(top.reason == "message: hint 'stripe', hint 'refund'; channel: usual repository of #payments")

          _ = try await classifier.recordChoice(
            .with {
              $0.channel = "#payments"; $0.repo = "acme/payments-api"
            })
          let badName = await #expect(throws: RPCError.self) {
            try await classifier.upsertRepo(.with { $0.repo.name = "payments" })
          }
          #expect(badName?.code == .invalidArgument)
          let unknown = await #expect(throws: RPCError.self) {
            try await classifier.recordChoice(
              .with {
                $0.channel = "#payments"; $0.repo = "acme/nope"
              })
          }
          #expect(unknown?.code == .notFound)
          let blank = await #expect(throws: RPCError.self) { try await classifier.classify(.message("")) }
          #expect(blank?.code == .invalidArgument)
        }
      }
    }
  }
}

private typealias ClassifyRequest = Inspect_Classifier_V1_ClassifyRequest
