import Crypto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Hummingbird
import InspectKit
import InspectProtos

extension GatewayApp {
  /// The SessionService methods the public gRPC port exposes: all of SessionService and
  /// UserService except `AuthenticateToken`, which only the Gateway itself uses.
  static var publicMethods: [MethodDescriptor] {
    Inspect_Session_V1_SessionService.Method.descriptors
      + Inspect_Session_V1_UserService.Method.descriptors.filter {
        $0 != Inspect_Session_V1_UserService.Method.AuthenticateToken.descriptor
      }
  }

  /// Connects to SessionService and builds the HTTP API and the public gRPC proxy.
  static func build(_ configuration: ServiceConfiguration) async throws -> BuiltService {
    try await build(
      configuration,
      webhookSecret: try GitHubWebhookController.secret(environment: ProcessInfo.processInfo.environment))
  }

  /// As ``build(_:)``, with the GitHub webhook secret given (nil: webhooks are not configured).
  static func build(_ configuration: ServiceConfiguration, webhookSecret: SymmetricKey?) async throws -> BuiltService {
    let host = ServiceHost(
      configuration: configuration,
      servedServices: [Inspect_Session_V1_SessionService.descriptor, Inspect_Session_V1_UserService.descriptor])
    let sessionAddress = configuration.peers[.session]
    let sessionClient = try GRPCClient.peer(sessionAddress)
    let downstream = Downstream(service: .session, address: sessionAddress)
    let users = Inspect_Session_V1_UserService.Client(wrapping: sessionClient)
    let authenticator = Authenticator(users: users, downstream: downstream)

    let router = host.makeRouter(context: GatewayRequestContext.self)
    router.group("v1")
      .add(middleware: AuthMiddleware(authenticator: authenticator))
      .addRoutes(
        APIController(
          sessions: Inspect_Session_V1_SessionService.Client(wrapping: sessionClient), users: users,
          downstream: downstream
        ).endpoints)

    APIController.registerSignedArtifacts(
      on: router, sessions: Inspect_Session_V1_SessionService.Client(wrapping: sessionClient), downstream: downstream)
    GitHubWebhookController(
      secret: webhookSecret,
      webhooks: Inspect_Session_V1_GitHubWebhookService.Client(wrapping: sessionClient), downstream: downstream
    ).register(on: router)

    let proxy = ProxyService(
      methods: publicMethods, client: sessionClient, authenticator: authenticator, downstream: downstream)
    return BuiltService(
      host: host,
      grpcServer: try host.makeGRPCServer(services: [proxy], trustCallerMetadata: false),
      httpServer: host.makeHTTPServer(router: router),
      dependencies: [GRPCClientService(client: sessionClient)])
  }
}
