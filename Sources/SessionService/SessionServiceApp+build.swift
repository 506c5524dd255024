import Foundation
import GRPCCore
import InspectKit
import InspectProtos

extension SessionServiceApp {
  /// Opens the index database under `<data-dir>/sessions/`, makes sure a development user and
  /// token exist, and builds the service.
  static func build(_ configuration: ServiceConfiguration) async throws -> BuiltService {
    let host = ServiceHost(
      configuration: configuration,
      servedServices: [Inspect_Session_V1_SessionService.descriptor, Inspect_Session_V1_UserService.descriptor])
    let index = try IndexDatabase.open(at: SessionPaths(configuration.dataDirectory).index)
    try await DevelopmentCredentials.ensure(in: index, dataDirectory: configuration.dataDirectory, logger: host.logger)
    let grpcServices: [any RegistrableRPCService] = [
      UnimplementedService(
        methods: Inspect_Session_V1_SessionService.Method.descriptors,
        missing: "this version of Inspect stores no sessions yet"),
      UserService(database: index),
    ]
    return BuiltService(
      host: host,
      grpcServer: try host.makeGRPCServer(services: grpcServices),
      httpServer: host.makeHTTPServer(router: host.makeRouter()))
  }
}

/// Where SessionService keeps its files under the data directory (`docs/CONTRACTS.md`).
struct SessionPaths {
  let root: URL
  init(_ dataDirectory: URL) { root = dataDirectory.appendingPathComponent("sessions", isDirectory: true) }
  var index: URL { root.appendingPathComponent("index.sqlite") }
}
