import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos

extension SandboxServiceApp {
  /// Builds the service: the local driver under the data directory, the sandbox manager (warm
  /// pools, sync gating, snapshots) over it, and the agent runtime, which calls ModelRouter.
  static func build(_ configuration: ServiceConfiguration) async throws -> BuiltService {
    // A write to a pipe whose reader is gone (a command's closed stdin) must fail with EPIPE,
    // not end the service.
    signal(SIGPIPE, SIG_IGN)
    let host = ServiceHost(configuration: configuration, servedServices: [Inspect_Sandbox_V1_SandboxService.descriptor])
    let modelAddress = configuration.peers[.modelRouter]
    let modelClient = try GRPCClient.peer(modelAddress)
    // Child sessions are created through SessionService, which starts after this service: the
    // client connects when a tool first calls it.
    let sessionClient = try GRPCClient.peer(configuration.peers[.session])
    let github = try await GitHubRemotes.fromEnvironment(ProcessInfo.processInfo.environment)
    let driver = {
      var driver = LocalDriver(paths: SandboxPaths(configuration.dataDirectory), logger: host.logger)
      driver.github = github
      return driver
    }()
    host.logger.info(
      "sandbox isolation", metadata: ["cgroups": "\(driver.cgroups)", "limits": "\(driver.cgroups.enforced)"])
    let recovered = await driver.recover()
    if !recovered.isEmpty {
      host.logger.notice("recovered after a crash", metadata: ["report": "\(recovered)"])
    }
    driver.reserve.refill()
    let metrics = SandboxMetrics(host.metrics.registry)
    metrics.cgroups(version: driver.cgroups.versionLabel)
    let manager = SandboxManager(
      driver: driver, configuration: try .init(environment: ProcessInfo.processInfo.environment), logger: host.logger,
      metrics: metrics)
    await manager.startImageRebuilds()
    var agent = AgentLoop(
      model: Inspect_Model_V1_ModelRouterService.Client(wrapping: modelClient), modelAddress: modelAddress,
      manager: manager, logger: host.logger)
    agent.artifacts = ArtifactStore(dataDirectory: configuration.dataDirectory)
    agent.sessions = Inspect_Session_V1_SessionService.Client(wrapping: sessionClient)
    agent.permissions = try AgentLoop.permissions(environment: ProcessInfo.processInfo.environment)
    agent.compaction = try CompactionSettings(environment: ProcessInfo.processInfo.environment)
    return BuiltService(
      host: host,
      // `StartTurn` carries the new prompts' attachments whole (SessionService sends at most
      // `PromptAttachments.maxTurnBytes` of them) besides the history.
      grpcServer: try host.makeGRPCServer(
        services: [SandboxRPCService(agent: agent, manager: manager)], maxRequestBytes: 32 << 20),
      httpServer: host.makeHTTPServer(router: host.makeRouter()),
      dependencies: [
        GRPCClientService(client: modelClient),
        GRPCClientService(client: sessionClient),
        ShutdownAction {
          await manager.shutdown()
          await driver.reserve.close()
        },
      ])
  }
}
