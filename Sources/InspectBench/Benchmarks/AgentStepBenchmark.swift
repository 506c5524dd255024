import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos

#if canImport(Glibc)
  import Glibc
#endif

/// `agent.step`: the agent loop's own cost per step. Real ModelRouter and SandboxService
/// processes (local driver) run turns of a scripted model whose every step calls a trivial tool
/// (`read_file` of a small file, alternating line ranges so loop detection stays quiet); the bench
/// opens RunAgent as SessionService does. A step is the time between two `assistant_message`
/// events at the bench; the baseline is the tool's own time in the same run (the `duration` its
/// SUCCEEDED event reports); `added` is a step minus its tool.
struct AgentStepBenchmark: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "agent.step", abstract: "Agent-loop overhead per step beside the tool's own time.")

  @Option(help: "Timed turns.")
  var turns = 4

  @Option(help: "Steps per turn.")
  var steps = 40

  @Option(help: "The services' --log-level.")
  var logLevel = "warning"

  func run() async throws {
    guard getuid() == 0 else { throw BenchError("agent.step runs a real SandboxService, which needs root") }
    let work = FileManager.default.temporaryDirectory.appendingPathComponent("inspect-bench-agent-\(getpid())")
    let data = work.appendingPathComponent("data", isDirectory: true)
    let transcripts = data.appendingPathComponent("transcripts", isDirectory: true)
    try FileManager.default.createDirectory(at: transcripts, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: work) }
    guard
      let source = DemoRepository.source(
        environment: ProcessInfo.processInfo.environment,
        start: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
    else { throw BenchError("cannot find examples/demo-repo (run from the repository)") }
    try DemoRepository.ensureRemote(in: data, from: source)
    try Self.transcript(steps: steps).write(
      to: transcripts.appendingPathComponent("bench.transcript.jsonl"), atomically: true, encoding: .utf8)
    let binaries = try await BinaryDirectory.resolve()
    let router = try await ServiceProcess.start(
      "ModelRouter", binDirectory: binaries, dataDirectory: data,
      environment: ["INSPECT_TRANSCRIPTS_DIR": transcripts.path], logLevel: logLevel)
    let sandbox: ServiceProcess
    do {
      sandbox = try await ServiceProcess.start(
        "SandboxService", binDirectory: binaries, dataDirectory: data,
        environment: ["INSPECT_MODEL_ROUTER_ADDR": router.grpc.description, "INSPECT_SANDBOX_POOL_SIZE": "1"],
        logLevel: logLevel)
    } catch {
      await router.stop()
      throw error
    }
    let (turns, steps) = (self.turns, self.steps)
    do {
      let line = try await withGRPCClient(
        transport: .http2NIOPosix(
          target: .ipv4(host: sandbox.grpc.host, port: sandbox.grpc.port), transportSecurity: .plaintext)
      ) { grpc in
        let client = Inspect_Sandbox_V1_SandboxService.Client(wrapping: grpc)
        _ = try await Self.turn(client, number: 0, steps: steps)
        var (stepTimes, toolTimes, added) = (Samples(), Samples(), Samples())
        for number in 1...turns {
          let measured = try await Self.turn(client, number: number, steps: steps)
          stepTimes.append(contentsOf: measured.steps)
          toolTimes.append(contentsOf: measured.tools)
          added.append(contentsOf: measured.added)
        }
        return String(
          format: "bench agent.step p50_ms=%.3f baseline_p50_ms=%.3f added_p50_ms=%.3f added_p99_ms=%.3f steps=%d",
          stepTimes.p50, toolTimes.p50, added.p50, added.percentileMilliseconds(0.99), stepTimes.count)
      }
      print(line)
    } catch {
      await sandbox.stop()
      await router.stop()
      throw BenchError("\(error)\n\(ServiceProcess.tail(of: sandbox.log))")
    }
    await sandbox.stop()
    await router.stop()
  }

  /// `steps` steps of `read_file calc.py` (line ranges alternating), then an answer.
  static func transcript(steps: Int) -> String {
    var lines: [String] = []
    for step in 0..<steps {
      let start = step % 2 + 1
      lines.append(
        #"{"text": "Step \#(step).", "tool_calls": [{"name": "read_file", "arguments": {"path": "calc.py", "start_line": \#(start), "end_line": \#(start + 1)}}]}"#
      )
    }
    lines.append(#"{"text": "Done."}"#)
    return lines.joined(separator: "\n") + "\n"
  }

  struct Measured {
    var steps = Samples()
    var tools = Samples()
    var added = Samples()
  }

  /// Runs one turn and times its steps.
  static func turn(
    _ client: Inspect_Sandbox_V1_SandboxService.Client<HTTP2ClientTransport.Posix>, number: Int, steps: Int
  ) async throws -> Measured {
    let start = Inspect_Sandbox_V1_RunAgentRequest.with {
      $0.start = .with {
        $0.sessionID = "ses-bench-\(number)"
        $0.turnID = "turn-\(number)"
        $0.repository = .with { $0.fullName = "local/demo" }
        $0.baseBranch = "main"
        $0.sessionBranch = "inspect/ses-bench-\(number)"
        $0.model = "scripted:bench"
        $0.budgets = .with { $0.maxSteps = UInt32(steps + 5) }
        $0.prompts = [.with { $0.text = "Read calc.py again and again." }]
      }
    }
    let clock = ContinuousClock()
    return try await client.runAgent(
      requestProducer: { try await $0.write(start) },
      onResponse: { response in
        var measured = Measured()
        var lastMessage: ContinuousClock.Instant?
        var lastTool: Duration?
        var finished: Inspect_Session_V1_TurnFinished?
        for try await message in response.messages {
          switch message.event.kind {
          case .assistantMessage:
            let now = clock.now
            if let lastMessage, let lastTool {
              measured.steps.append(now - lastMessage)
              measured.tools.append(lastTool)
              measured.added.append(now - lastMessage - lastTool)
            }
            lastMessage = now
            lastTool = nil
          case .toolCall(let call) where call.state == .succeeded:
            lastTool = call.duration.duration
          case .toolCall(let call) where call.state == .failed:
            throw BenchError("tool call \(call.name) failed: \(call.error)")
          case .turnFinished(let end):
            finished = end
          default:
            break
          }
        }
        guard finished?.outcome == .succeeded else {
          throw BenchError("turn \(number) did not succeed: \(finished?.reason ?? "no turn_finished")")
        }
        return measured
      })
  }
}
