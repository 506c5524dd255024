import ArgumentParser
import InspectKit

/// The `ModelRouter` binary: see `docs/ARCHITECTURE.md` for what it owns.
@main
struct ModelRouterApp: ServiceCommand {
  static let configuration = CommandConfiguration(
    commandName: "ModelRouter",
    abstract: "Inspect's ModelRouter service (gRPC on --grpc-port, admin HTTP on --admin-port).")
  static let service = InspectService.modelRouter

  @OptionGroup var options: ServiceOptions
}
