import ArgumentParser
import InspectKit

/// The `SandboxService` binary: see `docs/ARCHITECTURE.md` for what it owns.
@main
struct SandboxServiceApp: ServiceCommand {
  static let configuration = CommandConfiguration(
    commandName: "SandboxService",
    abstract: "Inspect's SandboxService service (gRPC on --grpc-port, admin HTTP on --admin-port).")
  static let service = InspectService.sandbox

  @OptionGroup var options: ServiceOptions
}
