import Crypto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectGitHub
import InspectKit
import InspectProtos
import InspectTestSupport
import Logging
import Synchronization
import Testing

@testable import SessionService

typealias SessionClient = Inspect_Session_V1_SessionService.Client<HTTP2ClientTransport.Posix>

/// An agent that streams a few text deltas per turn; a turn can be held open until released.
final class FakeAgentRunner: AgentRunner, Sendable {
  let turns = Mutex<[Inspect_Sandbox_V1_StartTurn]>([])
  let gate: AsyncStream<Void>?
  private let gateContinuation: AsyncStream<Void>.Continuation?
  let failure: TurnFailure?

  init(holdTurns: Bool = false, failure: TurnFailure? = nil) {
    if holdTurns {
      let (stream, continuation) = AsyncStream.makeStream(of: Void.self)
      (gate, gateContinuation) = (stream, continuation)
    } else {
      (gate, gateContinuation) = (nil, nil)
    }
    self.failure = failure
  }

  /// Lets one held turn finish.
  func release() { gateContinuation?.yield() }

  func run(
    start: Inspect_Sandbox_V1_StartTurn,
    controls: AsyncStream<Inspect_Sandbox_V1_RunAgentRequest>,
    onEvent: @escaping @Sendable (Inspect_Session_V1_SessionEvent) -> Void
  ) async throws -> Inspect_Session_V1_TurnFinished {
    turns.withLock { $0.append(start) }
    if let failure { throw failure }
    onEvent(.with { $0.textDelta = .with { $0.text = "Working on: " } })
    if let gate {
      for await _ in gate { break }
    }
    onEvent(.with { $0.textDelta = .with { $0.text = start.prompts.map(\.text).joined(separator: " + ") } })
    return .with {
      $0.outcome = .succeeded
      $0.snapshotID = "snp-after-\(start.turnID)"
    }
  }

  let prewarms = Mutex<[(repository: String, session: String)]>([])

  func prewarm(repository: String, sessionID: String) async throws {
    prewarms.withLock { $0.append((repository, sessionID)) }
  }
}

/// SessionService's RPC service in-process, acting as one user, with a fake agent.
struct SessionHarness {
  let directory: TemporaryDirectory
  let index: IndexDatabase
  let registry: SessionRegistry
  let service: SessionRPCService
  let user: UserRecord
  let secrets: SecretsStore
  /// Set when the harness was given GitHub settings: webhooks are served and processed.
  let webhooks: WebhookProcessor?

  init(
    runner: any AgentRunner, settings: SessionSettings = SessionSettings(), github: GitHubSettings? = nil,
    drafter: (any PullRequestDrafter)? = nil
  ) async throws {
    directory = try TemporaryDirectory()
    let index = try IndexDatabase.open(at: SessionPaths(directory.url).index)
    let secrets = try SecretsStore(writer: index.writer, key: SymmetricKey(size: .bits256))
    let links = ArtifactLinks(secretsKey: secrets.key)
    let pullRequests = github.map {
      PullRequestOpener(
        settings: $0, client: GitHubUserClient(apiBaseURL: $0.apiBaseURL), secrets: secrets, index: index,
        drafter: drafter, links: links)
    }
    let registry = SessionRegistry(
      index: index, paths: SessionPaths(directory.url), runner: runner, settings: settings,
      pullRequests: pullRequests, artifactLinks: links, logger: Logger(label: "test"))
    self.index = index
    self.secrets = secrets
    self.registry = registry
    service = SessionRPCService(registry: registry)
    webhooks = github.map {
      WebhookProcessor(
        registry: registry, secrets: secrets, settings: $0, client: GitHubUserClient(apiBaseURL: $0.apiBaseURL),
        retryDelay: .milliseconds(50), logger: Logger(label: "test"))
    }
    user = try await index.createUser(displayName: "Ada", email: "ada@example.com", githubLogin: "ada", isAdmin: false)
  }

  /// Another user, and the metadata that makes calls act for them.
  func makeUser(_ name: String, admin: Bool = false, githubLogin: String = "") async throws -> (UserRecord, Metadata) {
    let user = try await index.createUser(displayName: name, email: "", githubLogin: githubLogin, isAdmin: admin)
    return (user, Self.metadata(for: user))
  }

  static func metadata(for user: UserRecord) -> Metadata {
    var metadata = Metadata()
    metadata.addString(user.id, forKey: InspectCaller.metadataKey)
    return metadata
  }

  /// Runs `body` with a client of the service over HTTP/2 on 127.0.0.1 (and the registry's turn
  /// loop running). A real transport: a client that stops reading cancels the RPC on the server.
  func run<T: Sendable>(
    _ body: @Sendable (SessionClient, Metadata) async throws -> T
  ) async throws -> T {
    try await serve { _, client, metadata in try await body(client, metadata) }
  }

  /// As ``run(_:)``, also giving the server's address (to put a Gateway in front of it).
  func serve<T: Sendable>(
    _ body: @Sendable (HostAndPort, SessionClient, Metadata) async throws -> T
  ) async throws -> T {
    let metadata = Self.metadata(for: user)
    var services: [any RegistrableRPCService] = [service]
    if let webhooks {
      // With a Gateway in front: it authenticates through UserService and hands over webhooks.
      services.append(GitHubWebhookRPCService(processor: webhooks))
      services.append(UserService(database: index, secrets: secrets))
    }
    let server = GRPCServer(
      transport: .http2NIOPosix(address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext),
      services: services, interceptors: [CallerInterceptor()])
    return try await withThrowingTaskGroup(of: T?.self) { group in
      group.addTask {
        try await server.serve()
        return nil
      }
      group.addTask {
        try await registry.run()
        return nil
      }
      if let webhooks {
        group.addTask {
          try await webhooks.run()
          return nil
        }
      }
      defer {
        server.beginGracefulShutdown()
        group.cancelAll()
        directory.remove()
      }
      guard let address = try await server.listeningAddress?.ipv4 else {
        throw RPCError(code: .internalError, message: "the test server did not bind")
      }
      let hostAndPort = HostAndPort(host: address.host, port: address.port)
      return try await withClient(hostAndPort) { client in
        try await body(hostAndPort, Inspect_Session_V1_SessionService.Client(wrapping: client), metadata)
      }
    }
  }
}

/// Reads a session's stream until `stop` says so (or `count` events arrived).
func collectEvents(
  _ sessions: SessionClient, metadata: Metadata,
  session: String, after: UInt64 = 0, until stop: @escaping @Sendable ([Inspect_Session_V1_SessionEvent]) -> Bool
) async throws -> [Inspect_Session_V1_SessionEvent] {
  try await sessions.subscribe(
    .with {
      $0.sessionID = session; $0.afterSeq = after
    }, metadata: metadata
  ) { response in
    var events: [Inspect_Session_V1_SessionEvent] = []
    for try await message in response.messages {
      events += message.events
      if stop(events) { break }
    }
    return events
  }
}

func finishedTurns(_ events: [Inspect_Session_V1_SessionEvent]) -> Int {
  events.filter { if case .turnFinished = $0.kind { true } else { false } }.count
}

@Suite("SessionService: sessions, queued prompts, turns and the live stream")
struct SessionServiceTests {
  @Test("Prewarm forwards the session's repository to SandboxService; strangers, viewers and bad input are refused")
  func prewarm() async throws {
    let runner = FakeAgentRunner()
    let harness = try await SessionHarness(runner: runner)
    try await harness.run { sessions, metadata in
      let id = try await sessions.createSession(.with { $0.repository = "local/demo" }, metadata: metadata).session.id
      _ = try await sessions.prewarm(.with { $0.sessionID = id }, metadata: metadata)
      _ = try await sessions.prewarm(.with { $0.repository = "local/other" }, metadata: metadata)
      #expect(
        runner.prewarms.withLock { $0.map { "\($0.repository) \($0.session)" } } == [
          "local/demo \(id)", "local/other ",
        ])
      #expect(
        await rpcCode {
          _ = try await sessions.prewarm(
            .with {
              $0.sessionID = id; $0.repository = "local/other"
            }, metadata: metadata)
        } == .invalidArgument)
      #expect(
        await rpcCode { _ = try await sessions.prewarm(.with { $0.repository = "nope" }, metadata: metadata) }
          == .invalidArgument)
      #expect(
        await rpcCode { _ = try await sessions.prewarm(.with { $0.sessionID = "ses-none" }, metadata: metadata) }
          == .notFound)
      let (_, bob) = try await harness.makeUser("Bob")
      #expect(await rpcCode { _ = try await sessions.prewarm(.with { $0.sessionID = id }, metadata: bob) } == .notFound)
      _ = try await sessions.addParticipant(
        .with {
          $0.sessionID = id; $0.role = .viewer
        }, metadata: bob)
      #expect(
        await rpcCode { _ = try await sessions.prewarm(.with { $0.sessionID = id }, metadata: bob) }
          == .permissionDenied)
      #expect(runner.prewarms.withLock { $0.count } == 2)
    }
  }

  @Test("a created session starts its log with session_created at seq 1 and is found by Get and List")
  func createGetList() async throws {
    let harness = try await SessionHarness(runner: FakeAgentRunner())
    try await harness.run { sessions, metadata in
      let created = try await sessions.createSession(
        .with {
          $0.repository = "local/demo"; $0.title = "Fix the test"
        }, metadata: metadata)
      #expect(created.created)
      let id = created.session.id
      #expect(Identifier.isValid(id, kind: .session))
      #expect(created.session.branch == "inspect/\(id)")
      #expect(created.session.createdBy.displayName == "Ada")
      let fetched = try await sessions.getSession(.with { $0.sessionID = id }, metadata: metadata)
      #expect(fetched.session.repository.fullName == "local/demo")
      #expect(fetched.session.lastSeq == 1)
      let listed = try await sessions.listSessions(.init(), metadata: metadata)
      #expect(listed.sessions.map(\.id) == [id])
      let events = try await collectEvents(sessions, metadata: metadata, session: id) { $0.count >= 1 }
      #expect(events.first?.seq == 1)
      guard case .sessionCreated(let payload) = events.first?.kind else {
        Issue.record("first event is not session_created")
        return
      }
      #expect(payload.session.id == id)
    }
  }

  @Test(
    "bad requests: unknown session NOT_FOUND, empty prompt and bad repository INVALID_ARGUMENT, no user UNAUTHENTICATED"
  )
  func badRequests() async throws {
    let harness = try await SessionHarness(runner: FakeAgentRunner())
    try await harness.run { sessions, metadata in
      let unknown = await #expect(throws: RPCError.self) {
        _ = try await sessions.sendPrompt(
          .with {
            $0.sessionID = "ses-0-nope"; $0.text = "hi"
          }, metadata: metadata)
      }
      #expect(unknown?.code == .notFound)
      let traversal = await #expect(throws: RPCError.self) {
        _ = try await sessions.getSession(.with { $0.sessionID = "../../index" }, metadata: metadata)
      }
      #expect(traversal?.code == .notFound)
      let created = try await sessions.createSession(.with { $0.repository = "local/demo" }, metadata: metadata)
      let empty = await #expect(throws: RPCError.self) {
        _ = try await sessions.sendPrompt(
          .with {
            $0.sessionID = created.session.id; $0.text = "  \n"
          }, metadata: metadata)
      }
      #expect(empty?.code == .invalidArgument)
      for repository in ["", "demo", "a/b/c", "../x", "a/.."] {
        let bad = await #expect(throws: RPCError.self) {
          _ = try await sessions.createSession(.with { $0.repository = repository }, metadata: metadata)
        }
        #expect(bad?.code == .invalidArgument, "\(repository)")
      }
      let anonymous = await #expect(throws: RPCError.self) {
        _ = try await sessions.listSessions(.init())
      }
      #expect(anonymous?.code == .unauthenticated)
    }
  }

  @Test("a prompt runs a turn; seq is gap-free; the stream replays and then goes live")
  func promptRunsATurn() async throws {
    let harness = try await SessionHarness(runner: FakeAgentRunner())
    try await harness.run { sessions, metadata in
      let id = try await sessions.createSession(.with { $0.repository = "local/demo" }, metadata: metadata).session.id
      let sent = try await sessions.sendPrompt(
        .with {
          $0.sessionID = id; $0.text = "fix it"
        }, metadata: metadata)
      #expect(sent.queuePosition == 1)
      #expect(sent.seq == 2)
      let events = try await collectEvents(sessions, metadata: metadata, session: id) { finishedTurns($0) == 1 }
      #expect(events.map(\.seq) == Array(1...UInt64(events.count)))
      // Subscribing marks the subscriber online: a presence event may fall anywhere after seq 1.
      let turn = events.filter { $0.kindName != "presence" }
      #expect(
        turn.map(\.kindName) == [
          "session_created", "prompt_queued", "turn_started", "text_delta", "text_delta", "turn_finished",
        ])
      guard case .turnFinished(let finished) = turn.last?.kind else { return }
      #expect(finished.outcome == .succeeded)
      let turnID = turn[2].turnID
      #expect(turn[2...].allSatisfy { $0.turnID == turnID })
      // A later subscriber resuming after seq 3 gets exactly the rest, up to the turn's end.
      let resumed = try await collectEvents(sessions, metadata: metadata, session: id, after: 3) {
        finishedTurns($0) == 1
      }
      #expect(resumed.map(\.seq) == Array(4...(resumed.last?.seq ?? 0)))
      #expect((resumed.last?.seq ?? 0) >= (events.last?.seq ?? 0))
      let session = try await sessions.getSession(.with { $0.sessionID = id }, metadata: metadata).session
      #expect(session.state == .idle)
    }
  }

  @Test("prompts sent during a turn wait in the queue and run in the next turn, never injected")
  func promptsQueueDuringATurn() async throws {
    let runner = FakeAgentRunner(holdTurns: true)
    let harness = try await SessionHarness(runner: runner)
    try await harness.run { sessions, metadata in
      let id = try await sessions.createSession(.with { $0.repository = "local/demo" }, metadata: metadata).session.id
      _ = try await sessions.sendPrompt(
        .with {
          $0.sessionID = id; $0.text = "first"
        }, metadata: metadata)
      // Wait until the first turn is running, then queue two more.
      _ = try await collectEvents(sessions, metadata: metadata, session: id) {
        $0.contains { $0.kindName == "text_delta" }
      }
      let second = try await sessions.sendPrompt(
        .with {
          $0.sessionID = id; $0.text = "second"
        }, metadata: metadata)
      let third = try await sessions.sendPrompt(
        .with {
          $0.sessionID = id; $0.text = "third"
        }, metadata: metadata)
      #expect(second.queuePosition == 1)
      #expect(third.queuePosition == 2)
      let queued = try await sessions.getSession(.with { $0.sessionID = id }, metadata: metadata)
      #expect(queued.session.state == .running)
      #expect(queued.queuedPrompts.map(\.text) == ["second", "third"])
      runner.release()
      runner.release()
      let events = try await collectEvents(sessions, metadata: metadata, session: id) { finishedTurns($0) == 2 }
      #expect(events.map(\.seq) == Array(1...UInt64(events.count)))
      let turns = runner.turns.withLock { $0 }
      #expect(turns.map { $0.prompts.map(\.text) } == [["first"], ["second", "third"]])
      // The second turn resumes from the first turn's end-of-turn snapshot.
      #expect(turns[0].snapshotID.isEmpty)
      #expect(turns[1].snapshotID == "snp-after-\(turns[0].turnID)")
      // The second turn carries the first as history: its prompt, then how it ended.
      #expect(turns[0].history.items.isEmpty)
      let history = turns[1].history.items
      #expect(history.count == 2)
      if case .prompt(let prompt) = history.first?.kind {
        #expect(prompt.text == "first")
      } else {
        Issue.record("no prompt")
      }
      if case .turnEnd(let end) = history.last?.kind {
        #expect(end.outcome == "SUCCEEDED")
      } else {
        Issue.record("no end")
      }
      let started = events.compactMap { event -> [String]? in
        if case .turnStarted(let started) = event.kind { return started.promptIds } else { return nil }
      }
      #expect(started == [[turns[0].prompts[0].promptID], [second.promptID, third.promptID]])
    }
  }

  @Test("a turn the agent cannot run ends FAILED with the phase and the reason")
  func failedTurn() async throws {
    let runner = FakeAgentRunner(failure: TurnFailure(phase: .sandbox, reason: "no sandbox for you"))
    let harness = try await SessionHarness(runner: runner)
    try await harness.run { sessions, metadata in
      let id = try await sessions.createSession(
        .with {
          $0.repository = "local/demo"; $0.prompt = "go"
        }, metadata: metadata
      ).session.id
      let events = try await collectEvents(sessions, metadata: metadata, session: id) { finishedTurns($0) == 1 }
      // The subscriber's own presence event may follow turn_finished in the same batch.
      let finished = events.compactMap { event -> Inspect_Session_V1_TurnFinished? in
        if case .turnFinished(let finished) = event.kind { finished } else { nil }
      }
      guard let finished = finished.first else {
        Issue.record("no turn_finished")
        return
      }
      #expect(finished.outcome == .failed)
      #expect(finished.failedPhase == .sandbox)
      #expect(finished.reason == "no sandbox for you")
    }
  }

  @Test("the same idempotency key queues a prompt once")
  func idempotentPrompts() async throws {
    let harness = try await SessionHarness(runner: FakeAgentRunner(holdTurns: true))
    try await harness.run { sessions, metadata in
      let id = try await sessions.createSession(.with { $0.repository = "local/demo" }, metadata: metadata).session.id
      let first = try await sessions.sendPrompt(
        .with {
          $0.sessionID = id; $0.text = "once"; $0.idempotencyKey = "k1"
        }, metadata: metadata)
      let again = try await sessions.sendPrompt(
        .with {
          $0.sessionID = id; $0.text = "once"; $0.idempotencyKey = "k1"
        }, metadata: metadata)
      #expect(first.promptID == again.promptID)
    }
  }

  @Test("an event is on disk (synchronous=FULL) before SendPrompt answers")
  func durableBeforeAcknowledged() async throws {
    let harness = try await SessionHarness(runner: FakeAgentRunner(holdTurns: true))
    let paths = SessionPaths(harness.directory.url)
    try await harness.run { sessions, metadata in
      let id = try await sessions.createSession(.with { $0.repository = "local/demo" }, metadata: metadata).session.id
      let sent = try await sessions.sendPrompt(
        .with {
          $0.sessionID = id; $0.text = "persist me"
        }, metadata: metadata)
      let file = try SessionDatabase.open(at: paths.file(for: id))
      #expect(try await file.synchronousMode() == 2)
      let stored = try await file.events(after: sent.seq - 1, through: sent.seq)
      guard case .promptQueued(let queued) = stored.first?.kind else {
        Issue.record("prompt_queued not stored")
        return
      }
      #expect(queued.text == "persist me")
    }
  }
}

@Suite("Subscriptions never hold the session back")
struct SubscriptionTests {
  func events(_ seqs: ClosedRange<UInt64>) -> [Inspect_Session_V1_SessionEvent] {
    seqs.map { seq in .with { $0.seq = seq } }
  }

  @Test("a subscriber that falls more than its limit behind is told to resync from what it has")
  func slowSubscriberResyncs() async {
    let subscription = Subscription(after: 0, limit: 5)
    #expect(subscription.offer(events(1...3)))
    #expect(!subscription.offer(events(4...7)))  // 3 waiting + 4 > 5
    var items: [Subscription.Item] = []
    while let item = await subscription.next() { items.append(item) }
    #expect(items.count == 2)
    if case .events(let first) = items[0] { #expect(first.map(\.seq) == [1, 2, 3]) }
    if case .resync(let after) = items[1] { #expect(after == 3) } else { Issue.record("no resync") }
  }

  @Test("events already given are not given twice")
  func noDuplicates() async {
    let subscription = Subscription(after: 2)
    subscription.offer(events(1...4))
    subscription.offer(events(4...5))
    subscription.close()
    var seqs: [UInt64] = []
    while let item = await subscription.next() {
      if case .events(let batch) = item { seqs += batch.map(\.seq) }
    }
    #expect(seqs == [3, 4, 5])
  }
}

@Suite("SessionService after a crash")
struct SessionRecoveryTests {
  @Test("a turn left running by a crash is marked FAILED on restart; every acknowledged event is still there")
  func interruptedTurnFailsOnRestart() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let paths = SessionPaths(directory.url)
    let index = try IndexDatabase.open(at: paths.index)
    let user = try await index.createUser(displayName: "Ada", email: "", githubLogin: "", isAdmin: false)
    let now = Date()
    let id = Identifier.make(.session)
    let record = SessionRecord(
      id: id, title: "", repository: "local/demo", baseBranch: "main", branch: "inspect/\(id)", state: .idle, model: "",
      client: "", externalKey: nil, createdBy: user.id, createdAt: now, updatedAt: now, lastSeq: 0,
      currentTurnId: nil, queuedPrompts: 0)

    // The first life: a prompt is taken by a turn that streams one delta, then the process dies.
    let before = SessionRegistry(index: index, paths: paths, runner: FakeAgentRunner(), logger: Logger(label: "test"))
    let session = try await before.create(record, creator: user)
    _ = try await session.sendPrompt(text: "go", author: user, client: "", idempotencyKey: nil)
    try await session.append([.with { $0.turnStarted = .with { $0.turnID = "turn-crashed" } }], turnID: "turn-crashed")
    try await session.append([.with { $0.textDelta = .with { $0.text = "half" } }], turnID: "turn-crashed")
    try await index.updateSession(id: id, state: .running, lastSeq: 4, currentTurnId: "turn-crashed", queuedPrompts: 0)

    // The second life: a new registry over the same files recovers on start.
    let after = SessionRegistry(index: index, paths: paths, runner: FakeAgentRunner(), logger: Logger(label: "test"))
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await after.run() }
      defer { group.cancelAll() }
      let recovered = try #require(try after.session(id: id))
      var events: [Inspect_Session_V1_SessionEvent] = []
      let deadline = ContinuousClock.now + .seconds(10)
      while !events.contains(where: { $0.kindName == "turn_finished" }), ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(20))
        events = try await recovered.database.events(after: 0)
      }
      #expect(events.map(\.seq) == Array(1...UInt64(events.count)))
      #expect(events.prefix(4).map(\.kindName) == ["session_created", "prompt_queued", "turn_started", "text_delta"])
      // seq 5: the crashed turn is closed. (The prompt, still queued in this setup, then runs.)
      guard events.count > 4, case .turnFinished(let finished) = events[4].kind else {
        Issue.record("no turn_finished right after the restart")
        return
      }
      #expect(events[4].turnID == "turn-crashed")
      #expect(finished.outcome == .failed)
      #expect(finished.failedPhase == .internal)
      #expect(finished.reason.contains("SessionService stopped while this turn was running"))
      // The index row follows right after the event (same recovery step).
      var summary = try await index.session(id: id)
      while summary?.currentTurnId == "turn-crashed", ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(20))
        summary = try await index.session(id: id)
      }
      #expect(summary?.currentTurnId != "turn-crashed")
    }
  }
}
