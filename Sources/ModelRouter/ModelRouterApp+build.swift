import GRPCCore
import InspectKit
import InspectProtos

extension ModelRouterApp {
  /// What is missing from this service, named in every `UNIMPLEMENTED` answer.
  static let missing = "this version of Inspect has no model providers or routing yet"

  /// Builds the service; its RPCs that are not built yet answer `UNIMPLEMENTED`.
  static func build(_ configuration: ServiceConfiguration) async throws -> BuiltService {
    let host = ServiceHost(
      configuration: configuration, servedServices: [Inspect_Model_V1_ModelRouterService.descriptor])
    let grpcServices: [any RegistrableRPCService] = [
      UnimplementedService(methods: Inspect_Model_V1_ModelRouterService.Method.descriptors, missing: missing)
    ]
    return BuiltService(
      host: host,
      grpcServer: try host.makeGRPCServer(services: grpcServices),
      httpServer: host.makeHTTPServer(router: host.makeRouter()))
  }
}
