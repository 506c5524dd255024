import Crypto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Hummingbird
import InspectKit
import InspectProtos
import NIOCore

extension GatewayApp {
  /// The SessionService methods the public gRPC port exposes: all of SessionService and
  /// UserService except `AuthenticateToken`, which only the Gateway itself uses.
  static var publicMethods: [MethodDescriptor] {
    Inspect_Session_V1_SessionService.Method.descriptors
      + Inspect_Session_V1_UserService.Method.descriptors.filter {
        $0 != Inspect_Session_V1_UserService.Method.AuthenticateToken.descriptor
      }
  }

  /// RepoClassifier's catalog on the public gRPC port: anyone signed in may list it, only
  /// administrators change it. `Classify` and `RecordChoice` stay internal (SessionService's).
  static var catalogMethods: [MethodDescriptor] {
    [
      Inspect_Classifier_V1_RepoClassifierService.Method.ListRepos.descriptor,
      Inspect_Classifier_V1_RepoClassifierService.Method.UpsertRepo.descriptor,
      Inspect_Classifier_V1_RepoClassifierService.Method.DeleteRepo.descriptor,
    ]
  }

  static var catalogAdminMethods: Set<MethodDescriptor> {
    [
      Inspect_Classifier_V1_RepoClassifierService.Method.UpsertRepo.descriptor,
      Inspect_Classifier_V1_RepoClassifierService.Method.DeleteRepo.descriptor,
    ]
  }

  /// Connects to SessionService and builds the HTTP API and the public gRPC proxy.
  static func build(_ configuration: ServiceConfiguration) async throws -> BuiltService {
    let environment = ProcessInfo.processInfo.environment
    return try await build(
      configuration, webhookSecret: try GitHubWebhookController.secret(environment: environment),
      slackSecret: try SlackController.secret(environment: environment))
  }

  /// Every HTTP route of the Gateway: the admin routes, `/openapi.json`, `/v1/*` behind bearer
  /// authentication (with `/v1/sessions/{id}/ws`'s answer to a request that did not upgrade), signed artifact links, the web client, GitHub webhooks and Slack's requests.
  static func makeRouter(
    host: ServiceHost, sessionClient: GRPCClient<HTTP2ClientTransport.Posix>, authenticator: Authenticator,
    downstream: Downstream, modelClient: GRPCClient<HTTP2ClientTransport.Posix>, modelDownstream: Downstream,
    webhookSecret: SymmetricKey?, slackSecret: SymmetricKey? = nil
  ) -> Router<GatewayRequestContext> {
    let router = host.makeRouter(context: GatewayRequestContext.self)
    let sessions = Inspect_Session_V1_SessionService.Client(wrapping: sessionClient)
    router.get("openapi.json") { _, _ in
      Response(
        status: .ok, headers: [.contentType: "application/json; charset=utf-8"],
        body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
    }
    let webSocket = SessionWebSocket(sessions: sessions, authenticator: authenticator, downstream: downstream)
    let api = router.group("v1")
      .add(middleware: AuthMiddleware(authenticator: authenticator))
      .addRoutes(
        APIController(
          sessions: sessions, users: Inspect_Session_V1_UserService.Client(wrapping: sessionClient),
          downstream: downstream
        ).endpoints
      )
      .get("sessions/:id/ws") { _, context in try await webSocket.upgradeRequired(context: context) }
    TranscriptionController(
      models: Inspect_Model_V1_ModelRouterService.Client(wrapping: modelClient), modelDownstream: modelDownstream,
      sessions: sessions, sessionDownstream: downstream
    ).register(on: api)
    APIController.registerSignedArtifacts(on: router, sessions: sessions, downstream: downstream)
    WebClient.register(on: router)
    GitHubWebhookController(
      secret: webhookSecret,
      webhooks: Inspect_Session_V1_GitHubWebhookService.Client(wrapping: sessionClient), downstream: downstream
    ).register(on: router)
    SlackController(
      secret: slackSecret, slack: Inspect_Session_V1_SlackService.Client(wrapping: sessionClient),
      downstream: downstream
    ).register(on: router)
    ChromeExtensionController(environment: ProcessInfo.processInfo.environment).register(on: router)
    return router
  }

  /// As ``build(_:)``, with the GitHub webhook secret and Slack signing secret given (nil: not
  /// configured).
  static func build(
    _ configuration: ServiceConfiguration, webhookSecret: SymmetricKey?, slackSecret: SymmetricKey? = nil
  ) async throws -> BuiltService {
    let host = ServiceHost(
      configuration: configuration,
      servedServices: [Inspect_Session_V1_SessionService.descriptor, Inspect_Session_V1_UserService.descriptor])
    let sessionAddress = configuration.peers[.session]
    let sessionClient = try GRPCClient.peer(sessionAddress)
    let downstream = Downstream(service: .session, address: sessionAddress)
    let users = Inspect_Session_V1_UserService.Client(wrapping: sessionClient)
    let authenticator = Authenticator(users: users, downstream: downstream)

    // ModelRouter transcribes voice prompts; the Gateway's readiness does not wait for it.
    let modelAddress = configuration.peers[.modelRouter]
    let modelClient = try GRPCClient.peer(modelAddress)
    let router = makeRouter(
      host: host, sessionClient: sessionClient, authenticator: authenticator, downstream: downstream,
      modelClient: modelClient, modelDownstream: Downstream(service: .modelRouter, address: modelAddress),
      webhookSecret: webhookSecret, slackSecret: slackSecret)

    let proxy = ProxyService(
      methods: publicMethods, client: sessionClient, authenticator: authenticator, downstream: downstream)
    // RepoClassifier's catalog, for `inspect catalog …`; the Gateway's readiness does not wait for it.
    let classifierAddress = configuration.peers[.classifier]
    let classifierClient = try GRPCClient.peer(classifierAddress)
    let catalogProxy = ProxyService(
      methods: catalogMethods, client: classifierClient, authenticator: authenticator,
      downstream: Downstream(service: .classifier, address: classifierAddress), adminOnly: catalogAdminMethods)
    let webSocket = SessionWebSocket(
      sessions: Inspect_Session_V1_SessionService.Client(wrapping: sessionClient), authenticator: authenticator,
      downstream: downstream)
    return BuiltService(
      host: host,
      grpcServer: try host.makeGRPCServer(services: [proxy, catalogProxy], trustCallerMetadata: false),
      httpServer: host.makeHTTPServer(router: router, server: webSocket.serverBuilder()),
      dependencies: [
        GRPCClientService(client: sessionClient), GRPCClientService(client: modelClient),
        GRPCClientService(client: classifierClient),
      ])
  }
}
