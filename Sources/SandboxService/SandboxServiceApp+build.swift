import GRPCCore
import InspectKit
import InspectProtos

extension SandboxServiceApp {
  /// What is missing from this service, named in every `UNIMPLEMENTED` answer.
  static let missing = "this version of Inspect has no images, sandboxes or agent runtime yet"

  /// Builds the service; its RPCs that are not built yet answer `UNIMPLEMENTED`.
  static func build(_ configuration: ServiceConfiguration) async throws -> BuiltService {
    let host = ServiceHost(configuration: configuration, servedServices: [Inspect_Sandbox_V1_SandboxService.descriptor])
    let grpcServices: [any RegistrableRPCService] = [
      UnimplementedService(methods: Inspect_Sandbox_V1_SandboxService.Method.descriptors, missing: missing)
    ]
    return BuiltService(
      host: host,
      grpcServer: try host.makeGRPCServer(services: grpcServices),
      httpServer: host.makeHTTPServer(router: host.makeRouter()))
  }
}
