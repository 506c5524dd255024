import Foundation
import GRPCCore
import InspectKit
import InspectProtos
import InspectTestSupport
import Logging
import Synchronization
import Testing

@testable import SandboxService

/// A data directory with the demo remote, a `DirectoryDriver` over it and a manager.
struct DirectoryFixture {
  let directory: TemporaryDirectory
  let driver: DirectoryDriver
  let manager: SandboxManager
  let repository = try! RepositoryName("local/demo")

  /// - Parameter extraFiles: files (path → text) added to the demo repository's first commit.
  init(
    syncRelease: Gate? = nil, configuration: SandboxManager.Configuration = .init(), extraFiles: [String: String] = [:]
  ) throws {
    directory = try TemporaryDirectory("inspect-directory-driver")
    var source = try #require(DemoRepository.source(environment: [:], start: URL(fileURLWithPath: #filePath)))
    if !extraFiles.isEmpty {
      let copy = directory.url.appendingPathComponent("source", isDirectory: true)
      try FileManager.default.copyItem(at: source, to: copy)
      for (path, text) in extraFiles {
        let file = copy.appendingPathComponent(path)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try text.write(to: file, atomically: true, encoding: .utf8)
      }
      source = copy
    }
    try DemoRepository.ensureRemote(in: directory.url, from: source)
    driver = DirectoryDriver(root: directory.url, syncRelease: syncRelease)
    manager = SandboxManager(driver: driver, configuration: configuration, logger: Logger(label: "test"))
  }

  var demoTranscript: String {
    get throws {
      let source = try #require(DemoRepository.source(environment: [:], start: URL(fileURLWithPath: #filePath)))
      return try String(
        contentsOf: source.deletingLastPathComponent().appendingPathComponent("demo.transcript.jsonl"), encoding: .utf8)
    }
  }

  func turn(session: String, base: String = "main") -> Inspect_Sandbox_V1_StartTurn {
    .with {
      $0.sessionID = session
      $0.turnID = "turn-1"
      $0.repository = .with { $0.fullName = "local/demo" }
      $0.baseBranch = base
      $0.sessionBranch = "inspect/\(session)"
      $0.model = "scripted:demo"
      $0.prompts = [
        .with {
          $0.text = "Fix the failing test"
          $0.author = .with {
            $0.userID = "usr-ada"
            $0.displayName = "Ada"
            $0.email = "ada@example.com"
          }
        }
      ]
    }
  }

  func finish() async {
    await manager.shutdown()
    directory.remove()
  }
}

/// Collects a turn's events.
final class EventLog: Sendable {
  private let events = Mutex<[Inspect_Session_V1_SessionEvent]>([])
  func append(_ event: Inspect_Session_V1_SessionEvent) { events.withLock { $0.append(event) } }
  var all: [Inspect_Session_V1_SessionEvent] { events.withLock { $0 } }

  var toolCalls: [Inspect_Session_V1_ToolCall] {
    all.compactMap { if case .toolCall(let call) = $0.kind { call } else { nil } }
  }
  var sandboxStatuses: [Inspect_Session_V1_SandboxStatus] {
    all.compactMap { if case .sandboxStatus(let status) = $0.kind { status } else { nil } }
  }
  var pushes: [Inspect_Session_V1_BranchPushed] {
    all.compactMap { if case .branchPushed(let pushed) = $0.kind { pushed } else { nil } }
  }
}

@Suite("The driver interface: the manager, sync gating, warm pools and agent turns on a second driver", .serialized)
struct SandboxManagerTests {
  @Test("an agent turn runs on the directory driver through the interface alone: tools, push, end-of-turn snapshot")
  func agentTurnOnAnotherDriver() async throws {
    let fixture = try DirectoryFixture()
    let transcript = try fixture.demoTranscript
    try await withModelRouter(transcripts: ["demo": transcript]) { client, _ in
      let loop = AgentLoop(
        model: client, modelAddress: HostAndPort(host: "127.0.0.1", port: 0), manager: fixture.manager,
        logger: Logger(label: "test"))
      let log = EventLog()
      let finished = await loop.run(fixture.turn(session: "ses-directory")) { log.append($0) }
      #expect(finished.outcome == .succeeded, "\(finished.reason)")
      #expect(finished.snapshotID.hasPrefix("snp-"))
      #expect(fixture.driver.snapshotRecord(finished.snapshotID)?.sessionID == "ses-directory")
      let calls = log.toolCalls
      for name in ["run_command", "read_file", "edit_file", "git_commit_and_push"] {
        #expect(calls.contains { $0.name == name && $0.state == .succeeded }, "\(name) did not succeed")
      }
      let statuses = log.sandboxStatuses.map(\.phase)
      #expect(statuses.contains(.ready))
      // One usage event per model step, each naming the model; they add up to the turn's totals.
      let usages = log.all.compactMap { event -> Inspect_Session_V1_Usage? in
        if case .usage(let usage) = event.kind { return usage }
        return nil
      }
      #expect(usages.count == Int(finished.steps))
      #expect(usages.allSatisfy { $0.model == "scripted:demo" && $0.inputTokens > 0 })
      #expect(usages.reduce(0) { $0 + UInt64($1.inputTokens) } == finished.inputTokens)
      let pushed = try #require(log.pushes.first)
      let remote = fixture.driver.remote(fixture.repository).path
      #expect(try await Git.run(["--git-dir", remote, "rev-parse", "inspect/ses-directory"]) == pushed.commit)
    }
    await fixture.finish()
  }

  @Test("while a sandbox syncs, reads work at once and writes wait; once synced, the write lands")
  func syncGating() async throws {
    let release = Gate()
    let fixture = try DirectoryFixture(syncRelease: release)
    let entry = try await fixture.manager.claim(
      .init(repository: fixture.repository, sessionID: "ses-gate", branch: "main"))
    #expect(entry.state == .syncing)
    let read = try entry.instance.readFile("calc.py", offset: 0, limit: 0)
    #expect(!read.content.isEmpty)
    let wrote = Mutex(false)
    let writer = Task {
      try await entry.writable(within: .seconds(30))
      try entry.instance.writeFile("after-sync.txt", content: Data("x".utf8), mode: nil, createParents: false)
      wrote.withLock { $0 = true }
    }
    try await Task.sleep(for: .milliseconds(200))
    #expect(!wrote.withLock { $0 }, "a write went through before the sync finished")
    release.open()
    try await writer.value
    #expect(wrote.withLock { $0 })
    #expect(entry.state == .ready)
    await fixture.finish()
  }

  @Test("a write that waits longer than the bounded wait fails naming the sync phase")
  func syncWaitBounded() async throws {
    var configuration = SandboxManager.Configuration()
    configuration.syncWait = .milliseconds(200)
    let release = Gate()
    let fixture = try DirectoryFixture(syncRelease: release, configuration: configuration)
    let entry = try await fixture.manager.claim(
      .init(repository: fixture.repository, sessionID: "ses-slow", branch: "main"))
    do {
      try await entry.writable(within: configuration.syncWait)
      Issue.record("the wait should have failed")
    } catch let error as SandboxError {
      guard case .unavailable(let message) = error else {
        Issue.record("expected unavailable, got \(error)")
        return
      }
      #expect(message.contains("sync phase"))
    }
    release.open()
    await fixture.finish()
  }

  @Test("a sync that fails ends the turn FAILED in the SYNC phase, with the reason")
  func syncFailureFailsTheTurn() async throws {
    let fixture = try DirectoryFixture()
    let transcript = try fixture.demoTranscript
    try await withModelRouter(transcripts: ["demo": transcript]) { client, _ in
      let loop = AgentLoop(
        model: client, modelAddress: HostAndPort(host: "127.0.0.1", port: 0), manager: fixture.manager,
        logger: Logger(label: "test"))
      let log = EventLog()
      let finished = await loop.run(fixture.turn(session: "ses-nosync", base: "no-such-branch")) { log.append($0) }
      #expect(finished.outcome == .failed)
      #expect(finished.failedPhase == .sync)
      #expect(finished.reason.contains("no-such-branch"))
      #expect(log.sandboxStatuses.contains { $0.phase == .failed })
    }
    await fixture.finish()
  }

  @Test("Prewarm for a session restores its newest snapshot (or sets a sandbox aside) and its next claim takes it")
  func prewarmForASession() async throws {
    var configuration = SandboxManager.Configuration()
    configuration.poolSize = 1
    let fixture = try DirectoryFixture(configuration: configuration)
    let first = try await fixture.manager.claim(.init(repository: fixture.repository, sessionID: "ses-a"))
    try first.instance.writeFile("work.txt", content: Data("kept".utf8), mode: nil, createParents: false)
    let snapshot = try #require(try await fixture.manager.terminate(first.id, snapshot: true))
    await fixture.manager.prewarm(fixture.repository, sessionID: "ses-a")
    try await waitFor {
      await fixture.manager.list(repository: "", sessionID: "").contains { $0.snapshotID == snapshot.id }
    }
    let prepared = try #require(
      await fixture.manager.list(repository: "", sessionID: "").first { $0.snapshotID == snapshot.id })
    let resumed = try await fixture.manager.claim(
      .init(repository: fixture.repository, sessionID: "ses-a", snapshotID: snapshot.id))
    #expect(resumed.id == prepared.id)
    #expect(resumed.source == .snapshot)
    #expect(
      String(decoding: try resumed.instance.readFile("work.txt", offset: 0, limit: 0).content, as: UTF8.self) == "kept")
    // A session without a snapshot gets a sandbox set aside.
    await fixture.manager.prewarm(fixture.repository, sessionID: "ses-b")
    try await waitFor { await fixture.manager.isPrewarmed("ses-b") }
    let setAside = try #require(await fixture.manager.prewarmedID("ses-b"))
    let claimed = try await fixture.manager.claim(.init(repository: fixture.repository, sessionID: "ses-b"))
    #expect(claimed.id == setAside)
    await fixture.finish()
  }

  @Test("a session keeps its newest three snapshots")
  func snapshotRetention() async throws {
    let fixture = try DirectoryFixture()
    let entry = try await fixture.manager.claim(.init(repository: fixture.repository, sessionID: "ses-many"))
    var taken: [String] = []
    for _ in 0..<5 { taken.append(try await fixture.manager.snapshot(entry.id).id) }
    #expect(fixture.driver.snapshots(session: "ses-many").map(\.id) == Array(taken.suffix(3).reversed()))
    await fixture.finish()
  }

  @Test("the warm pool fills to its target, a claim takes a warm sandbox, and the pool refills")
  func warmPool() async throws {
    var configuration = SandboxManager.Configuration()
    configuration.poolSize = 2
    let fixture = try DirectoryFixture(configuration: configuration)
    await fixture.manager.prewarm(fixture.repository, sessionID: "")
    try await waitFor { await fixture.manager.warmPools("local/demo").first?.ready == 2 }
    let entry = try await fixture.manager.claim(.init(repository: fixture.repository, sessionID: "ses-warm"))
    #expect(entry.source == .warmPool)
    #expect(entry.state == .ready)
    try await waitFor { await fixture.manager.warmPools("local/demo").first?.ready == 2 }
    let status = try #require(await fixture.manager.warmPools("").first)
    #expect(status.claims == 1)
    #expect(status.misses == 0)
    #expect(await fixture.manager.list(repository: "", sessionID: "").count == 3)
    await fixture.finish()
  }
}

@Suite("SandboxService's settings")
struct SandboxSettingsTests {
  @Test("the environment sets the pool size, node limit and sync wait; a bad value names its variable")
  func environment() throws {
    let configuration = try SandboxManager.Configuration(environment: [
      "INSPECT_SANDBOX_POOL_SIZE": "0", "INSPECT_SANDBOX_MAX_SANDBOXES": "7", "INSPECT_SANDBOX_SYNC_WAIT_MS": "1500",
    ])
    #expect(configuration.poolSize == 0)
    #expect(configuration.maxSandboxes == 7)
    #expect(configuration.syncWait == .milliseconds(1500))
    #expect(try SandboxManager.Configuration(environment: [:]).poolSize == 2)
    do {
      _ = try SandboxManager.Configuration(environment: ["INSPECT_SANDBOX_POOL_SIZE": "many"])
      Issue.record("a pool size of 'many' was accepted")
    } catch let error as SettingsError {
      #expect(error.message.contains("INSPECT_SANDBOX_POOL_SIZE='many'"))
    }
  }

  @Test("past the node's sandbox limit a claim is refused with RESOURCE_EXHAUSTED")
  func nodeLimit() async throws {
    var configuration = SandboxManager.Configuration()
    configuration.poolSize = 0
    configuration.maxSandboxes = 1
    let fixture = try DirectoryFixture(configuration: configuration)
    _ = try await fixture.manager.claim(.init(repository: fixture.repository, sessionID: "ses-one"))
    do {
      _ = try await fixture.manager.claim(.init(repository: fixture.repository, sessionID: "ses-two"))
      Issue.record("a second sandbox was created past the limit")
    } catch let error as SandboxError {
      #expect(error.rpcError.code == .resourceExhausted)
      #expect(error.description.contains("INSPECT_SANDBOX_MAX_SANDBOXES"))
    }
    await fixture.finish()
  }
}

/// Polls `condition` every 20 ms for up to `limit`.
func waitFor(_ limit: Duration = .seconds(20), _ condition: () async throws -> Bool) async throws {
  let deadline = ContinuousClock.now + limit
  while ContinuousClock.now < deadline {
    if try await condition() { return }
    try await Task.sleep(for: .milliseconds(20))
  }
  Issue.record("the condition did not hold within \(limit)")
}
