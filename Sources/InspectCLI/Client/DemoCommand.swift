import ArgumentParser
import Foundation
import InspectKit

/// `inspect demo`: the main job in one command — a session on `local/demo` with the scripted
/// model: the tests fail, the agent edits the file, the tests pass, the branch is pushed.
struct DemoCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "demo", abstract: "Run the demo session end to end (scripted model, local/demo).")

  @OptionGroup var client: ClientOptions

  @Option(help: "The model to run the demo with.")
  var model = "scripted:demo"

  static let prompt = "The test test_average_of_nothing_is_zero fails. Make average([]) return 0 and push the fix."

  func run() async throws {
    var run = try RunCommand.parse(
      ["--repo", DemoRepository.name, "--model", model, Self.prompt] + client.forwardedArguments)
    try await run.run()
    let remote = DemoRepository.remote(in: client.dataDirectory.url).path
    StandardOutput.writeLine(
      """

      The fix is on the session's branch in \(remote):
        git clone --branch <the branch above> \(remote) demo && cd demo && python3 -m unittest
      """)
  }
}

extension ClientOptions {
  /// The flags that rebuild these options in another command.
  var forwardedArguments: [String] {
    var arguments: [String] = []
    if let path = dataDirectory.path { arguments += ["--data-dir", path] }
    if let gateway { arguments += ["--gateway", gateway] }
    if let token { arguments += ["--token", token] }
    return arguments
  }
}
