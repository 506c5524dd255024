import ArgumentParser
import InspectKit

/// The `RepoClassifier` binary: see `docs/ARCHITECTURE.md` for what it owns.
@main
struct RepoClassifierApp: ServiceCommand {
  static let configuration = CommandConfiguration(
    commandName: "RepoClassifier",
    abstract: "Inspect's RepoClassifier service (gRPC on --grpc-port, admin HTTP on --admin-port).")
  static let service = InspectService.classifier

  @OptionGroup var options: ServiceOptions
}
