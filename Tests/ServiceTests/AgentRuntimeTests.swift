import Foundation
import GRPCCore
import InspectKit
import InspectProtos
import InspectTestSupport
import Logging
import Synchronization
import Testing

@testable import ModelRouter
@testable import SandboxService
@testable import SessionService

/// A scripted turn: one JSON object per model step (`text`, `tool_calls`, `expect` — what the
/// previous tool result must contain, checked by the scripted provider).
func transcript(_ steps: [[String: Any]]) -> String {
  steps.map { step in
    String(decoding: try! JSONSerialization.data(withJSONObject: step, options: [.sortedKeys]), as: UTF8.self)
  }.joined(separator: "\n")
}

func call(_ name: String, _ arguments: [String: Any]) -> [String: Any] {
  ["name": name, "arguments": arguments]
}

/// Runs one turn of `steps` on the directory driver with `configure` applied to the loop, and
/// returns how it finished and its events; `during` runs alongside the turn.
private func runTurn(
  _ steps: [[String: Any]], budgets: Inspect_Sandbox_V1_Budgets = .init(),
  configure: @Sendable (inout AgentLoop) -> Void = { _ in },
  during: @escaping @Sendable (EventLog, TurnDecisions, TurnStop) async throws -> Void = { _, _, _ in },
  turnSetup: @Sendable (inout Inspect_Sandbox_V1_StartTurn) -> Void = { _ in }
) async throws -> (Inspect_Session_V1_TurnFinished, EventLog) {
  let fixture = try DirectoryFixture()
  defer { Task { await fixture.finish() } }
  return try await withModelRouter(transcripts: ["steps": transcript(steps)]) { client, _ in
    var loop = AgentLoop(
      model: client, modelAddress: HostAndPort(host: "127.0.0.1", port: 0), manager: fixture.manager,
      logger: Logger(label: "test"))
    configure(&loop)
    let turn = {
      var turn = fixture.turn(session: "ses-runtime")
      turn.model = "scripted:steps"
      turn.budgets = budgets
      turnSetup(&turn)
      return turn
    }()
    let log = EventLog()
    let decisions = TurnDecisions()
    let stop = TurnStop()
    let frozen = loop
    let finished = try await withThrowingTaskGroup(of: Inspect_Session_V1_TurnFinished?.self) { group in
      group.addTask { await frozen.run(turn, stop: stop, decisions: decisions) { log.append($0) } }
      group.addTask {
        try await during(log, decisions, stop)
        return nil
      }
      var finished: Inspect_Session_V1_TurnFinished?
      for try await result in group where result != nil { finished = result }
      return try #require(finished)
    }
    return (finished, log)
  }
}

extension EventLog {
  /// The states one tool call went through, with their attempts.
  func lifecycle(of name: String, occurrence: Int = 0) -> [String] {
    let ids = toolCalls.filter {
      $0.name == name && $0.state == .queued && $0.attempt == 1 && !$0.argumentsJson.isEmpty
    }
    .map(\.toolCallID)
    var unique: [String] = []
    for id in ids where !unique.contains(id) { unique.append(id) }
    guard occurrence < unique.count else { return [] }
    return toolCalls.filter { $0.toolCallID == unique[occurrence] }.map { "\($0.state)#\($0.attempt)" }
  }

  func call(_ name: String, state: Inspect_Session_V1_ToolCallState) -> Inspect_Session_V1_ToolCall? {
    toolCalls.last { $0.name == name && $0.state == state }
  }
}

@Suite("The agent runtime: tool contracts, hooks, permissions, budgets and loops")
struct AgentRuntimeTests {
  @Test("every built-in tool has a valid schema and a unique name")
  func builtinsRegister() throws {
    let registry = try ToolRegistry(BuiltinTools.all)
    #expect(registry.tools.count == BuiltinTools.all.count)
    #expect(throws: ToolFailure.self) { try ToolRegistry(BuiltinTools.all + [BuiltinTools.readFile]) }
    let broken = Tool(name: "broken", description: "", schema: #"{"type":"object","required":"path"}"#) { _, _ in
      ToolOutput(content: "", summary: "")
    }
    #expect(throws: ToolFailure.self) { try ToolRegistry([broken]) }
  }

  @Test("the built-in tools: bad arguments fail before running, line ranges, glob, search, write, diff, confinement")
  func builtinTools() async throws {
    let steps: [[String: Any]] = [
      ["tool_calls": [call("read_file", ["path": 3])]],
      [
        "expect": "/path: expected a string, got a number",
        "tool_calls": [call("read_file", ["path": "calc.py", "start_line": 1, "end_line": 2])],
      ],
      ["expect": "lines 1–2 of", "tool_calls": [call("glob", ["pattern": "**/*.py"])]],
      ["expect": "test_calc.py", "tool_calls": [call("search", ["pattern": "def aver[a-z]+", "glob": "*.py"])]],
      ["expect": "calc.py:", "tool_calls": [call("write_file", ["path": "notes/new.txt", "content": "hello\n"])]],
      ["expect": "wrote notes/new.txt", "tool_calls": [call("git_diff", [:])]],
      ["expect": "+hello", "tool_calls": [call("read_file", ["path": "../../etc/passwd"])]],
      [
        "expect": "leads outside the repository",
        "tool_calls": [call("read_file", ["path": "calc.py", "extra": true])],
      ],
      ["expect": "is not an argument of this tool", "tool_calls": [call("no_such_tool", [:])]],
      ["expect": "there is no tool named no_such_tool", "text": "Done."],
    ]
    let (finished, log) = try await runTurn(steps)
    #expect(finished.outcome == .succeeded, "\(finished.reason)")
    // Arguments that do not match the schema never run: QUEUED, then FAILED.
    #expect(log.lifecycle(of: "read_file", occurrence: 0) == ["queued#1", "failed#1"])
    #expect(log.lifecycle(of: "read_file", occurrence: 1) == ["queued#1", "running#1", "succeeded#1"])
    #expect(
      log.lifecycle(of: "read_file", occurrence: 2) == ["queued#1", "failed#1"], "confinement refuses before running")
    let finishedCalls = log.toolCalls.filter { $0.state == .succeeded }
    #expect(finishedCalls.allSatisfy { $0.hasDuration && !$0.result.isEmpty })
  }

  @Test("search gives the same matches with ripgrep and with the built-in search")
  func searchEngines() async throws {
    let steps: [[String: Any]] = [
      ["tool_calls": [call("search", ["pattern": "average", "path": "."])]],
      ["text": "Done."],
    ]
    var results: [String] = []
    for ripgrep in [false, true] {
      let (finished, log) = try await runTurn(steps) { loop in
        loop.tools = BuiltinTools.all.filter { $0.name != "search" } + [BuiltinTools.searchTool(ripgrep: ripgrep)]
      }
      #expect(finished.outcome == .succeeded, "\(finished.reason)")
      let result = try #require(log.call("search", state: .succeeded))
      results.append(result.result.split(separator: "\n").sorted().joined(separator: "\n"))
      if ripgrep, !result.resultSummary.contains("ripgrep") {
        // ripgrep is not installed here; the comparison is only meaningful with it.
        return
      }
    }
    #expect(results[0] == results[1])
    #expect(results[0].contains("calc.py:"))
  }

  @Test("a retryable failure is tried again (FAILED → QUEUED) up to the tool's retries; a slow tool times out")
  func retriesAndTimeouts() async throws {
    let failures = Mutex(0)
    let flaky = Tool(
      name: "flaky", description: "fails twice", schema: #"{"type":"object"}"#, access: .read, retries: 2
    ) { _, _ in
      let attempt = failures.withLock {
        $0 += 1
        return $0
      }
      guard attempt > 2 else { throw ToolFailure("the service timed out (attempt \(attempt))", retryable: true) }
      return ToolOutput(content: "third time lucky", summary: "ok")
    }
    let slow = Tool(
      name: "slow", description: "never ends", schema: #"{"type":"object"}"#, access: .read,
      timeout: .milliseconds(200)
    ) { _, _ in
      try await Task.sleep(for: .seconds(60))
      return ToolOutput(content: "", summary: "")
    }
    let steps: [[String: Any]] = [
      ["tool_calls": [call("flaky", [:])]],
      ["expect": "third time lucky", "tool_calls": [call("slow", [:])]],
      ["expect": "timed out after", "text": "Done."],
    ]
    let (finished, log) = try await runTurn(steps) { loop in loop.tools += [flaky, slow] }
    #expect(finished.outcome == .succeeded, "\(finished.reason)")
    #expect(
      log.lifecycle(of: "flaky") == [
        "queued#1", "running#1", "failed#1", "queued#2", "running#2", "failed#2", "queued#3", "running#3",
        "succeeded#3",
      ])
    #expect(log.lifecycle(of: "slow") == ["queued#1", "running#1", "failed#1"])
  }

  @Test("the permission policy denies, or asks a person and waits: approved runs, denied fails with who and why")
  func permissions() async throws {
    let policy = PermissionPolicy(rules: [
      .init(tool: "write_file", path: "*.py", decision: .deny, reason: "python files are reviewed by hand"),
      .init(tool: "run_command", command: "echo *", decision: .ask),
    ])
    let steps: [[String: Any]] = [
      ["tool_calls": [call("write_file", ["path": "calc.py", "content": "x"])]],
      [
        "expect": "python files are reviewed by hand",
        "tool_calls": [call("run_command", ["command": "echo approved"])],
      ],
      ["expect": "approved", "tool_calls": [call("run_command", ["command": "echo second"])]],
      [
        "expect": "denied by Grace: not now", "tool_calls": [call("write_file", ["path": "notes.md", "content": "x"])],
      ],
      ["expect": "wrote notes.md", "text": "Done."],
    ]
    let (finished, log) = try await runTurn(steps) { loop in
      loop.permissions = policy
    } during: { log, decisions, _ in
      for approved in [true, false] {
        var waiting: Inspect_Session_V1_ToolCall?
        while waiting == nil {
          waiting = log.toolCalls.last {
            $0.awaitingApproval && $0.name == "run_command"
              && !$0.argumentsJson.contains(approved ? "second" : "approved")
          }
          if waiting == nil { try await Task.sleep(for: .milliseconds(10)) }
        }
        decisions.deliver(
          .with {
            $0.toolCallID = waiting!.toolCallID
            $0.approved = approved
            $0.reason = approved ? "" : "not now"
            $0.decidedBy = .with { $0.displayName = "Grace" }
          })
      }
    }
    #expect(finished.outcome == .succeeded, "\(finished.reason)")
    #expect(log.lifecycle(of: "write_file", occurrence: 0) == ["queued#1", "failed#1"])
    #expect(
      log.lifecycle(of: "run_command", occurrence: 0) == [
        "queued#1", "queued#1", "queued#1", "running#1", "succeeded#1",
      ])
    #expect(log.lifecycle(of: "run_command", occurrence: 1) == ["queued#1", "queued#1", "failed#1"])
  }

  @Test(
    "session rules: they allow what the service asks about but not what it denies; a remembered decision stops the asking"
  )
  func sessionRules() async throws {
    let service = PermissionPolicy(rules: [
      .init(tool: "run_command", command: "rm *", decision: .deny, reason: "no deleting"),
      .init(tool: "write_file", decision: .ask),
    ])
    let steps: [[String: Any]] = [
      ["tool_calls": [call("run_command", ["command": "rm -rf build"])]],
      ["expect": "no deleting", "tool_calls": [call("write_file", ["path": "notes/a.txt", "content": "a"])]],
      ["expect": "wrote notes/a.txt", "tool_calls": [call("write_file", ["path": "b.txt", "content": "b"])]],
      ["expect": "wrote b.txt", "tool_calls": [call("write_file", ["path": "c.txt", "content": "c"])]],
      ["expect": "wrote c.txt", "text": "Done."],
    ]
    let (finished, log) = try await runTurn(steps) { loop in
      loop.permissions = service
    } during: { log, decisions, _ in
      var waiting: Inspect_Session_V1_ToolCall?
      while waiting == nil {
        waiting = log.toolCalls.last { $0.awaitingApproval }
        if waiting == nil { try await Task.sleep(for: .milliseconds(10)) }
      }
      decisions.deliver(
        .with {
          $0.toolCallID = waiting!.toolCallID
          $0.approved = true
          $0.remember = true
          $0.decidedBy = .with { $0.displayName = "Grace" }
        })
    } turnSetup: { turn in
      turn.sessionRules = [
        .with {
          $0.tool = "run_command"; $0.decision = .allow
        },
        .with {
          $0.tool = "write_file"; $0.path = "notes/*"; $0.decision = .allow
        },
      ]
    }
    #expect(finished.outcome == .succeeded, "\(finished.reason)")
    // The service's deny holds although the session allows run_command.
    #expect(log.lifecycle(of: "run_command") == ["queued#1", "failed#1"])
    // The session's rule allows what the service would ask about.
    #expect(log.lifecycle(of: "write_file", occurrence: 0) == ["queued#1", "running#1", "succeeded#1"])
    // Asked, approved for the rest of the session…
    #expect(
      log.lifecycle(of: "write_file", occurrence: 1) == [
        "queued#1", "queued#1", "queued#1", "running#1", "succeeded#1",
      ])
    #expect(log.toolCalls.contains { $0.resultSummary == "approved by Grace for the rest of the session" })
    // …so the next write runs without asking.
    #expect(log.lifecycle(of: "write_file", occurrence: 2) == ["queued#1", "running#1", "succeeded#1"])
  }

  @Test(
    "permission layers: any deny of the service or repository holds; then session, repository, service; then defaults")
  func permissionLayers() throws {
    func invocation(_ tool: Tool, _ arguments: [String: JSONValue]) -> ToolInvocation {
      ToolInvocation(
        tool: tool, id: "tc", arguments: .object(arguments), argumentsJSON: "{}", attempt: 1, turn: .init())
    }
    let command = invocation(BuiltinTools.runCommand, ["command": .string("make deploy")])
    let write = invocation(BuiltinTools.writeFile, ["path": .string("src/a.py"), "content": .string("")])
    let service = PermissionPolicy(rules: [.init(tool: "write_file", decision: .ask)], default: .allow)
    let repository = PermissionPolicy(
      rules: [.init(tool: "run_command", command: "make deploy*", decision: .deny, reason: "deploys go through CI")],
      default: .ask)
    let session = SessionPermissions([
      .with {
        $0.tool = "*"; $0.decision = .allow
      }
    ])
    let hook = try PermissionHook(service: service, repository: repository, session: session)
    // The repository's deny holds over the session's allow-everything.
    #expect(hook.decision(for: command) == (.deny, "deploys go through CI"))
    // The session's rule comes before the service's ask.
    #expect(hook.decision(for: write).0 == .allow)
    // Without session rules: the service's rule, then the repository's default (ask).
    let plain = try PermissionHook(service: service, repository: repository, session: SessionPermissions())
    #expect(plain.decision(for: write).0 == .ask)
    let other = invocation(
      BuiltinTools.editFile, ["path": .string("a"), "old_text": .string("x"), "new_text": .string("y")])
    #expect(plain.decision(for: other).0 == .ask)
    // No repository policy: the service's default.
    let serviceOnly = try PermissionHook(service: service, repository: nil, session: SessionPermissions())
    #expect(serviceOnly.decision(for: other).0 == .allow)
    // A remembered denial is the newest rule: it comes before the older allow.
    session.remember(
      .with {
        $0.approved = false; $0.decidedBy = .with { $0.displayName = "Grace" }
      }, tool: "write_file")
    #expect(hook.decision(for: write) == (.deny, "denied for this session by Grace"))

    // A default of deny holds like a deny rule: a session's allow-everything does not lift it.
    let locked = try PermissionHook(
      service: PermissionPolicy(rules: [.init(tool: "read_file", decision: .allow)], default: .deny), repository: nil,
      session: SessionPermissions([
        .with {
          $0.tool = "*"; $0.decision = .allow
        }
      ]))
    #expect(locked.decision(for: other).0 == .deny)
    // Paths are matched normalised; commands across line breaks.
    let guarded = try PermissionHook(
      service: PermissionPolicy(rules: [
        .init(tool: "write_file", path: ".github/**", decision: .deny),
        .init(tool: "run_command", command: "*curl*", decision: .deny),
      ]), repository: nil, session: SessionPermissions())
    let sneaky = invocation(
      BuiltinTools.writeFile, ["path": .string("./src/../.github/workflows/x.yml"), "content": .string("")])
    #expect(guarded.decision(for: sneaky).0 == .deny)
    let twoLines = invocation(BuiltinTools.runCommand, ["command": .string("true\ncurl http://example.com")])
    #expect(guarded.decision(for: twoLines).0 == .deny)
  }

  @Test("the service's policy comes from INSPECT_AGENT_PERMISSIONS; a file that is not a policy is refused, naming it")
  func policyFile() throws {
    let temporary = try TemporaryDirectory("inspect-policy")
    defer { temporary.remove() }
    let directory = temporary.url
    do {
      let good = directory.appendingPathComponent("good.json")
      try #"{"rules":[{"tool":"run_command","command":"rm *","decision":"deny"}],"default":"ask"}"#.write(
        to: good, atomically: true, encoding: .utf8)
      let policy = try AgentLoop.permissions(environment: ["INSPECT_AGENT_PERMISSIONS": good.path])
      #expect(policy.rules.first?.decision == .deny)
      #expect(policy.default == .ask)
      #expect(try AgentLoop.permissions(environment: [:]) == PermissionPolicy())
      let bad = directory.appendingPathComponent("bad.json")
      try #"{"rules":[{"tool":"run_command","decision":"maybe"}]}"#.write(to: bad, atomically: true, encoding: .utf8)
      let error = #expect(throws: ConfigurationError.self) {
        try AgentLoop.permissions(environment: ["INSPECT_AGENT_PERMISSIONS": bad.path])
      }
      #expect("\(String(describing: error))".contains("bad.json"))
    }
  }

  @Test("a custom hook (the public extension point) refuses calls, and its reason reaches the model")
  func customHook() async throws {
    struct NoProduction: ToolHook {
      func beforeExecute(_ call: ToolInvocation) async throws -> HookVerdict {
        guard call.tool.name == "run_command", let command = call.string("command") else { return .proceed }
        return command.contains("prod") ? .deny("commands against production are not allowed here") : .proceed
      }
    }
    let steps: [[String: Any]] = [
      ["tool_calls": [call("run_command", ["command": "deploy prod"])]],
      ["expect": "not allowed here", "text": "Done."],
    ]
    let (finished, log) = try await runTurn(steps) { loop in loop.hooks = [NoProduction()] }
    #expect(finished.outcome == .succeeded, "\(finished.reason)")
    #expect(log.lifecycle(of: "run_command") == ["queued#1", "failed#1"])
  }

  @Test("long output reaches the model as head and tail with a pointer to the whole output, stored as an artifact")
  func outputLimit() async throws {
    try await TemporaryDirectory.with { data in
      let steps: [[String: Any]] = [
        ["tool_calls": [call("run_command", ["command": "seq 1 20000"])]],
        ["expect": "bytes omitted; the whole output", "text": "Done."],
      ]
      let (finished, log) = try await runTurn(steps) { loop in loop.artifacts = ArtifactStore(dataDirectory: data) }
      #expect(finished.outcome == .succeeded, "\(finished.reason)")
      let result = try #require(log.call("run_command", state: .succeeded))
      #expect(result.result.utf8.count < 20_000)
      #expect(result.artifactID.hasPrefix("art-"))
      let added = log.all.compactMap { if case .artifactAdded(let added) = $0.kind { added.artifact } else { nil } }
      let artifact = try #require(added.first)
      #expect(artifact.id == result.artifactID)
      #expect(artifact.kind == .toolOutput)
      let stored = try String(contentsOf: data.appendingPathComponent(artifact.storagePath), encoding: .utf8)
      #expect(stored.contains("\n19999\n20000"))
      // The artifact is the whole output, middle included (only the model's copy is cut).
      #expect(stored.contains("\n10000\n10001\n"))
      #expect(UInt64(stored.utf8.count) == artifact.sizeBytes)
    }
  }

  @Test("a stop ends a running command and the turn at once: the call and the turn end CANCELLED")
  func stopEndsACommand() async throws {
    let steps: [[String: Any]] = [
      ["tool_calls": [call("run_command", ["command": "sleep 60"])]], ["text": "never reached"],
    ]
    let stopped = Mutex<ContinuousClock.Instant?>(nil)
    let (finished, log) = try await runTurn(steps) { _ in
    } during: { log, _, stop in
      while log.call("run_command", state: .running) == nil { try await Task.sleep(for: .milliseconds(10)) }
      stopped.withLock { $0 = .now }
      stop.request(.with { $0.stoppedBy.displayName = "Grace" })
    }
    let took = ContinuousClock.now - (stopped.withLock { $0 } ?? .now)
    #expect(finished.outcome == .cancelled)
    #expect(finished.reason == "stopped by Grace")
    #expect(log.lifecycle(of: "run_command") == ["queued#1", "running#1", "cancelled#1"])
    // The requirement is 2 s; a generous bound here only catches a stop that waits for the command.
    #expect(took < .seconds(10), "the stop took \(took)")
  }

  @Test("the same call over and over is pointed out, then stops the turn")
  func loops() async throws {
    let same = call("read_file", ["path": "calc.py"])
    let steps: [[String: Any]] = [
      ["tool_calls": [same]], ["tool_calls": [same]], ["tool_calls": [same]],
      ["expect": "identical read_file call in a row", "tool_calls": [same]], ["tool_calls": [same]],
      ["text": "never reached"],
    ]
    let (finished, _) = try await runTurn(steps)
    #expect(finished.outcome == .failed)
    #expect(finished.failedPhase == .budget)
    #expect(finished.reason.contains("repeated the same read_file call 5 times"), "\(finished.reason)")
  }

  @Test("token and cost budgets stop the turn, saying which ran out")
  func budgets() async throws {
    let steps: [[String: Any]] = [
      ["tool_calls": [call("read_file", ["path": "calc.py"])]], ["text": "never reached"],
    ]
    let (tokens, _) = try await runTurn(steps, budgets: .with { $0.maxTokens = 10 })
    #expect(tokens.outcome == .failed && tokens.failedPhase == .budget)
    #expect(tokens.reason.contains("over its budget of 10"), "\(tokens.reason)")
    #expect(tokens.steps == 1)
    let (tree, _) = try await runTurn(steps, budgets: .with { $0.treeTokensRemaining = 5 })
    #expect(tree.reason.contains("session tree's token budget ran out"), "\(tree.reason)")
  }

  @Test(
    "the prompt: instructions, client note and repository context in one system message, then history, then the prompt")
  func promptAssembly() async throws {
    let fixture = try DirectoryFixture(extraFiles: [
      "AGENTS.md": "Always run `python3 -m unittest` before committing.",
      ".inspect/skills/release.md": "To release, bump VERSION.",
      ".inspect/permissions.json": #"{"rules":[{"tool":"write_file","path":"*.py","decision":"deny"}]}"#,
    ])
    defer { Task { await fixture.finish() } }
    try await withOpenAIStandIn([
      .toolCalls([.init(name: "write_file", arguments: #"{"path":"x.py","content":"x"}"#)]), .text("Done."),
    ]) {
      standIn in
      try await withModelRouter(openAI: try OpenAISettings(baseURL: standIn.baseURL, apiKey: "sk", defaultModel: "m")) {
        client, _ in
        let loop = AgentLoop(
          model: client, modelAddress: HostAndPort(host: "127.0.0.1", port: 0), manager: fixture.manager,
          logger: Logger(label: "test"))
        let turn = {
          var turn = fixture.turn(session: "ses-prompt")
          turn.model = "openai:m"
          turn.client = "slack"
          turn.history = .with {
            $0.compactionSummary = "Earlier, Ada asked for a faster average."
            $0.items = [
              .with {
                $0.turnID = "turn-0"
                $0.prompt = .with {
                  $0.text = "make average faster"
                  $0.author.displayName = "Ada"
                }
              }
            ]
          }
          turn.prompts[0].attachments = [
            .with {
              $0.name = "picked.html"
              $0.mediaType = "text/html"
              $0.data = Data("<button id=save>Save</button>".utf8)
            },
            .with {
              $0.name = "screen.png"
              $0.mediaType = "image/png"
              $0.data = Data([0x89, 0x50, 0x4E, 0x47])
            },
          ]
          return turn
        }()
        let finished = await loop.run(turn) { _ in }
        #expect(finished.outcome == .succeeded, "\(finished.reason)")
      }
      let first = try #require(standIn.requests.first)
      let roles = first.messages.map(\.role)
      #expect(roles == ["system", "user", "user", "user"])
      let system = try #require(first.messages.first?.content)
      let order = [
        "You are Inspect", "Slack thread", "Always run `python3 -m unittest`", "Skill: release",
        "To release, bump VERSION",
        "README (excerpt)", "## Files", "calc.py", "## Sandbox", "was made from image",
      ].map { system.range(of: $0)?.lowerBound }
      #expect(order.allSatisfy { $0 != nil }, "\(system)")
      #expect(order.compactMap { $0 } == order.compactMap { $0 }.sorted(), "the parts come in the documented order")
      #expect(first.messages[1].content?.contains("Earlier, Ada asked for a faster average.") == true)
      #expect(first.messages[2].content == "Ada: make average faster")
      let prompt = try #require(first.messages[3].content)
      #expect(prompt.hasPrefix("Ada: Fix the failing test"))
      #expect(prompt.contains("<button id=save>Save</button>"))
      #expect(prompt.contains("[attached image: screen.png]"))
      let images = (first.json["messages"] as? [[String: Any]])?.last?["content"] as? [[String: Any]]
      #expect(images?.contains { $0["type"] as? String == "image_url" } == true)
      #expect(first.toolNames.contains("glob"))
      // The repository's permission policy (read from the image) refused the write.
      let result = standIn.requests[1].messages.last
      #expect(result?.role == "tool")
      #expect(result?.content?.contains("not allowed by the permission policy") == true)
    }
  }

  /// Runs one turn of the demo repository against the OpenAI stand-in (model `openai:m`, with
  /// `routes`), returning how it finished, its events and the requests the stand-in received.
  static func turnAgainstStandIn(
    _ replies: [OpenAIStandIn.Reply], routes: String = "{}"
  ) async throws -> (Inspect_Session_V1_TurnFinished, EventLog, [OpenAIStandIn.ReceivedRequest]) {
    let fixture = try DirectoryFixture()
    defer { Task { await fixture.finish() } }
    let table = try routeTable(routes)
    return try await withOpenAIStandIn(replies) { standIn in
      let (finished, log) = try await withModelRouter(
        openAI: try OpenAISettings(baseURL: standIn.baseURL, apiKey: "sk", defaultModel: "m"), routes: table
      ) { client, _ in
        let loop = AgentLoop(
          model: client, modelAddress: HostAndPort(host: "127.0.0.1", port: 0), manager: fixture.manager,
          logger: Logger(label: "test"))
        var turn = fixture.turn(session: "ses-compact")
        turn.model = "openai:m"
        let log = EventLog()
        let finished = await loop.run(turn) { log.append($0) }
        return (finished, log)
      }
      return (finished, log, standIn.requests)
    }
  }

  @Test("past 80% of the model's window the conversation is summarised, stored as an event, and the turn goes on")
  func compactsOnThreshold() async throws {
    let replies: [OpenAIStandIn.Reply] = [
      .toolCalls([.init(name: "read_file", arguments: #"{"path":"calc.py"}"#)], usage: (300, 20)),
      .toolCalls([.init(name: "read_file", arguments: #"{"path":"test_calc.py"}"#)], usage: (850, 20)),
      .text("SUMMARY: Ada wants the failing test fixed; calc.py and test_calc.py were read."),
      .text("Done."),
    ]
    let (finished, log, requests) = try await Self.turnAgainstStandIn(
      replies, routes: "models:\n  - id: openai:m\n    context_window: 1000")
    #expect(finished.outcome == .succeeded, "\(finished.reason)")
    #expect(requests.count == 4)
    let summarising = requests[2]
    #expect(summarising.messages.first?.content?.hasPrefix("You compact the conversation") == true)
    #expect(summarising.messages.last?.content?.contains("AGENT CALLS read_file") == true)
    #expect(summarising.toolNames.isEmpty)
    let resumed = requests[3]
    #expect(resumed.messages.map(\.role) == ["system", "user", "user"])
    #expect(resumed.messages[1].content?.contains("SUMMARY: Ada wants the failing test fixed") == true)
    #expect(resumed.messages[2].content?.hasPrefix("Ada: Fix the failing test") == true)
    let compactions = log.all.compactMap { if case .compaction(let compaction) = $0.kind { compaction } else { nil } }
    let compaction = try #require(compactions.first)
    #expect(compactions.count == 1)
    #expect(compaction.summaryID.hasPrefix("sum-"))
    #expect(compaction.tokensBefore > 800)
    #expect(compaction.tokensAfter < compaction.tokensBefore)
  }

  @Test("a provider that answers context_too_long makes the agent compact and try once more")
  func compactsOnOverflow() async throws {
    let replies: [OpenAIStandIn.Reply] = [
      .error(
        status: 400, type: "invalid_request_error", code: "context_length_exceeded",
        message: "This model's maximum context length is 8192 tokens"),
      .text("SUMMARY: fix the failing test."), .text("Done."),
    ]
    let (finished, log, requests) = try await Self.turnAgainstStandIn(replies)
    #expect(finished.outcome == .succeeded, "\(finished.reason)")
    #expect(requests.count == 3)
    #expect(requests[2].messages[1].content?.contains("SUMMARY: fix the failing test.") == true)
    #expect(log.all.contains { if case .compaction = $0.kind { true } else { false } })
  }

  @Test("spawn_child_session starts a child of this session as the prompt's author; child_session_status reads it")
  func childSessions() async throws {
    let harness = try await SessionHarness(runner: FakeAgentRunner())
    try await harness.run { sessions, metadata in
      let parent = try await sessions.createSession(.with { $0.repository = "local/demo" }, metadata: metadata).session
      let author = harness.user.id
      let steps: [[String: Any]] = [
        ["tool_calls": [call("spawn_child_session", ["prompt": "the same fix in the docs", "title": "docs"])]],
        [
          "expect": "started child session",
          "tool_calls": [call("child_session_status", ["session_id": parent.id])],
        ],
        ["expect": "is not a child of this session", "text": "Done."],
      ]
      let (finished, log) = try await runTurn(
        steps, configure: { loop in loop.sessions = sessions },
        turnSetup: { turn in
          turn.sessionID = parent.id
          turn.prompts[0].author.userID = author
        })
      #expect(finished.outcome == .succeeded, "\(finished.reason)")
      let children = try await sessions.getSession(.with { $0.sessionID = parent.id }, metadata: metadata).session
        .childSessionIds
      let childID = try #require(children.first)
      #expect(children.count == 1)
      let child = try await sessions.getSession(.with { $0.sessionID = childID }, metadata: metadata).session
      #expect(child.parentSessionID == parent.id)
      #expect(child.title == "docs")
      #expect(child.createdBy.userID == author)
      #expect(log.call("spawn_child_session", state: .succeeded)?.result.contains(childID) == true)

      // The status tool on the real child (its handler alone: the scripted model cannot know the id).
      let fixture = try DirectoryFixture()
      defer { Task { await fixture.finish() } }
      let entry = try await fixture.manager.claim(
        .init(
          repository: fixture.repository, sessionID: parent.id, snapshotID: "", branch: "main", fallbackBranch: "main"))
      var turn = fixture.turn(session: parent.id)
      turn.prompts[0].author.userID = author
      let status = try await BuiltinTools.childSessionStatus.run(
        Data(#"{"session_id":"\#(childID)"}"#.utf8),
        ToolContext(sandbox: entry.instance, turn: turn, toolCallID: "tc-status", emit: { _ in }, sessions: sessions))
      #expect(status.content.contains("session \(childID): docs"), "\(status.content)")
      #expect(status.content.contains("state: "))
    }
  }
}
