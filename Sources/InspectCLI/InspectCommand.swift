import ArgumentParser
import Foundation
import InspectKit

/// `inspect`: runs Inspect on this machine (`up`, `down`, `status`) and, as features land, is a
/// client of its API.
@main
struct InspectCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "inspect",
    abstract: "Inspect, a hosted background coding agent: run it locally and talk to it.",
    version: InspectVersion.current,
    subcommands: [
      UpCommand.self, DownCommand.self, StatusCommand.self, RunCommand.self, FollowCommand.self, DemoCommand.self,
      SessionsCommand.self, PromptCommand.self, StopCommand.self, JoinCommand.self, ReposCommand.self,
      SecretsCommand.self, CatalogCommand.self, AdminCommand.self,
    ]
  )
}

/// The `--data-dir` flag shared by the launcher commands.
struct DataDirectoryOption: ParsableArguments {
  @Option(name: .customLong("data-dir"), help: "Data directory (default $INSPECT_DATA_DIR or ~/.local/share/inspect).")
  var path: String?

  var url: URL { ServiceConfiguration.dataDirectory(flag: path, environment: ProcessInfo.processInfo.environment) }
}
