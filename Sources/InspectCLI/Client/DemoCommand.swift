import ArgumentParser
import Foundation
import InspectKit
import InspectProtos

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
    let (session, finished) = try await RunCommand.runSession(
      client: client, repo: DemoRepository.name, model: model, prompt: Self.prompt)
    guard finished?.outcome == .succeeded else { throw ExitCode(1) }
    let remote = DemoRepository.remote(in: client.dataDirectory.url).path
    StandardOutput.writeLine(
      """

      The fix is on \(session.branch) in \(remote):
        git clone --branch \(session.branch) \(remote) demo && cd demo && python3 -m unittest
      """)
  }
}
