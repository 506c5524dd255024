import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos

extension SandboxServiceApp {
  /// Builds the service: the local driver under the data directory and the agent runtime, which
  /// calls ModelRouter.
  static func build(_ configuration: ServiceConfiguration) async throws -> BuiltService {
    let host = ServiceHost(configuration: configuration, servedServices: [Inspect_Sandbox_V1_SandboxService.descriptor])
    let modelAddress = configuration.peers[.modelRouter]
    let modelClient = try GRPCClient.peer(modelAddress)
    let driver = LocalDriver(paths: SandboxPaths(configuration.dataDirectory), logger: host.logger)
    let agent = AgentLoop(
      model: Inspect_Model_V1_ModelRouterService.Client(wrapping: modelClient), modelAddress: modelAddress,
      driver: driver, logger: host.logger)
    return BuiltService(
      host: host,
      grpcServer: try host.makeGRPCServer(services: [SandboxRPCService(agent: agent)]),
      httpServer: host.makeHTTPServer(router: host.makeRouter()),
      dependencies: [GRPCClientService(client: modelClient)])
  }
}
