import Foundation
import InspectKit
import InspectTestSupport
import Testing

@Suite("The end-to-end session with an OpenAI-compatible model", .serialized)
struct OpenAIEndToEndTests {
  typealias Call = OpenAIStandIn.ToolCall

  @Test(
    "inspect run against a loopback Chat Completions server: tool arguments in fragments, results sent back, branch pushed"
  )
  func openAICompatibleRun() async throws {
    let replies: [OpenAIStandIn.Reply] = [
      .toolCalls(
        [Call(name: "run_command", arguments: #"{"command":"python3 -m unittest"}"#)], text: "Running the tests."),
      .toolCalls([
        Call(
          name: "edit_file",
          arguments:
            #"{"path":"calc.py","old_text":"    return sum(numbers) / len(numbers)\n","new_text":"    if not numbers:\n        return 0\n    return sum(numbers) / len(numbers)\n"}"#
        )
      ]),
      .toolCalls([Call(name: "run_command", arguments: #"{"command":"python3 -m unittest"}"#)]),
      .toolCalls([Call(name: "git_commit_and_push", arguments: #"{"message":"Average of nothing is 0"}"#)]),
      .text("Fixed and pushed."),
    ]
    try await withOpenAIStandIn(replies) { standIn in
      try await TemporaryDirectory.with { directory in
        var environment = try freePortEnvironment()
        environment["OPENAI_BASE_URL"] = standIn.baseURL
        environment["OPENAI_API_KEY"] = "sk-test"
        let inspect = Binaries.path("inspect")
        let up = try await runCommand(
          inspect, ["up", "--detach", "--data-dir", directory.path], environment: environment)
        #expect(up.status == 0, "\(up.output)")
        let run = try await runCommand(
          inspect,
          [
            "run", "--data-dir", directory.path, "--repo", "local/demo", "--model", "openai:stand-in",
            "Fix the failing test",
          ],
          environment: environment)
        _ = try await runCommand(inspect, ["down", "--data-dir", directory.path], environment: environment)
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("⇪ pushed inspect/ses-0-"))
        #expect(run.output.contains("turn SUCCEEDED"))

        let requests = standIn.requests
        #expect(requests.count == 5)
        #expect(requests.first?.authorization == "Bearer sk-test")
        #expect(requests.first?.toolNames.contains("run_command") == true)
        // Each tool result reached the model in the next request.
        let firstResult = requests[1].messages.last { $0.role == "tool" }
        #expect(firstResult?.content?.contains("FAILED (errors=1)") == true)
        let secondTests = requests[3].messages.last { $0.role == "tool" }
        #expect(secondTests?.content?.contains("OK") == true)
      }
    }
  }
}
