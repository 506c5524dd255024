import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectGitHub
import InspectKit
import InspectProtos

extension SessionServiceApp {
  /// Opens the index database under `<data-dir>/sessions/`, makes sure a development user and
  /// token exist, and builds the service.
  static func build(_ configuration: ServiceConfiguration) async throws -> BuiltService {
    let host = ServiceHost(
      configuration: configuration,
      servedServices: [
        Inspect_Session_V1_SessionService.descriptor, Inspect_Session_V1_UserService.descriptor,
        Inspect_Session_V1_GitHubWebhookService.descriptor, Inspect_Session_V1_SlackService.descriptor,
      ])
    let index = try IndexDatabase.open(at: SessionPaths(configuration.dataDirectory).index)
    try await DevelopmentCredentials.ensure(in: index, dataDirectory: configuration.dataDirectory, logger: host.logger)
    let secrets = try SecretsStore(
      writer: index.writer,
      key: try SecretsStore.key(
        environment: ProcessInfo.processInfo.environment, directory: SessionPaths(configuration.dataDirectory).root))
    let sandboxAddress = configuration.peers[.sandbox]
    let sandboxClient = try GRPCClient.peer(sandboxAddress)
    let runner = SandboxAgentRunner(
      client: Inspect_Sandbox_V1_SandboxService.Client(wrapping: sandboxClient), address: sandboxAddress,
      secrets: secrets)
    let environment = ProcessInfo.processInfo.environment
    let settings = try SessionSettings(environment: environment)
    let github = try GitHubSettings(environment: environment)
    let modelClient = try GRPCClient.peer(configuration.peers[.modelRouter])
    let gitHubClient = GitHubUserClient(apiBaseURL: github.apiBaseURL)
    let links = ArtifactLinks(secretsKey: secrets.key)
    let pullRequests = PullRequestOpener(
      settings: github, client: gitHubClient, secrets: secrets, index: index,
      drafter: ModelRouterDrafter(
        client: Inspect_Model_V1_ModelRouterService.Client(wrapping: modelClient), model: github.titleModel),
      links: links)
    let registry = SessionRegistry(
      index: index, paths: SessionPaths(configuration.dataDirectory), runner: runner, settings: settings,
      pullRequests: pullRequests, artifactLinks: links, logger: host.logger)
    let webhooks = WebhookProcessor(
      registry: registry, secrets: secrets, settings: github, client: gitHubClient, logger: host.logger)
    let classifierClient = try GRPCClient.peer(configuration.peers[.classifier])
    let slack = SlackProcessor(
      registry: registry, settings: try SlackSettings(environment: environment),
      classifier: RepoClassifierClient(
        client: Inspect_Classifier_V1_RepoClassifierService.Client(wrapping: classifierClient)),
      sessionURL: { [github] in github.sessionURL($0) }, logger: host.logger)
    let grpcServices: [any RegistrableRPCService] = [
      SessionRPCService(registry: registry),
      UserService(database: index, secrets: secrets),
      GitHubWebhookRPCService(processor: webhooks),
      SlackRPCService(processor: slack),
    ]
    return BuiltService(
      host: host,
      // GitHub's webhook deliveries (handed over whole by the Gateway) are up to 25 MB.
      grpcServer: try host.makeGRPCServer(
        services: grpcServices, maxRequestBytes: GitHubWebhookRPCService.maxDeliveryBytes + (64 << 10)),
      httpServer: host.makeHTTPServer(router: host.makeRouter()),
      dependencies: [
        GRPCClientService(client: sandboxClient), GRPCClientService(client: modelClient),
        GRPCClientService(client: classifierClient), registry, webhooks, slack,
      ])
  }
}

/// Where SessionService keeps its files under the data directory (`docs/CONTRACTS.md`).
struct SessionPaths {
  let root: URL
  init(_ dataDirectory: URL) { root = dataDirectory.appendingPathComponent("sessions", isDirectory: true) }
  var index: URL { root.appendingPathComponent("index.sqlite") }
  /// `sessions/<session-id>.sqlite`; ids are validated before they reach a path.
  func file(for sessionID: String) -> URL { root.appendingPathComponent("\(sessionID).sqlite") }
}
