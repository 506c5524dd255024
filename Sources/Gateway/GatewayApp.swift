import ArgumentParser
import InspectKit

/// The `Gateway` binary: the only public ingress (REST, SSE, WebSocket, webhooks, web UI on
/// `--http-port`; the public gRPC API on `--grpc-port`).
@main
struct GatewayApp: ServiceCommand {
  static let configuration = CommandConfiguration(
    commandName: "Gateway",
    abstract: "Inspect's Gateway (public gRPC on --grpc-port, REST/SSE/web UI on --http-port).")
  static let service = InspectService.gateway

  @OptionGroup var options: ServiceOptions
}
