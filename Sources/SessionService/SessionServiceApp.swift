import ArgumentParser
import InspectKit

/// The `SessionService` binary: sessions, their event logs and fan-out, users and tokens.
@main
struct SessionServiceApp: ServiceCommand {
  static let configuration = CommandConfiguration(
    commandName: "SessionService",
    abstract: "Inspect's SessionService (gRPC on --grpc-port, admin HTTP on --admin-port).")
  static let service = InspectService.session

  @OptionGroup var options: ServiceOptions
}
