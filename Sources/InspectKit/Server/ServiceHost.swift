import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Hummingbird
import HummingbirdCore
import Logging
import ServiceLifecycle

/// Everything a service binary shares: its health board, metrics, logger, the gRPC server with
/// health and interceptors, the HTTP server with the admin routes. ``BuiltService`` runs them.
public struct ServiceHost: Sendable {
  public let configuration: ServiceConfiguration
  public let health: HealthStatusBoard
  public let metrics: RPCMetrics
  public let logger: Logger
  /// Reports the bound addresses once both servers listen.
  public let listening: ListeningReporter

  /// - Parameter servedServices: the gRPC services this process answers health checks for.
  public init(configuration: ServiceConfiguration, servedServices: [ServiceDescriptor]) {
    self.configuration = configuration
    self.health = HealthStatusBoard(services: servedServices.map(\.fullyQualifiedService))
    self.metrics = RPCMetrics()
    var logger = Logger(label: configuration.service.loggerLabel)
    logger.logLevel = configuration.logLevel
    self.logger = logger
    self.listening = ListeningReporter(service: configuration.service, host: configuration.host, health: health)
  }

  /// A router with the JSON error middleware and the admin routes; the Gateway adds its API.
  public func makeRouter<Context: RequestContext>(context: Context.Type = BasicRequestContext.self) -> Router<Context> {
    let router = Router(context: Context.self)
    router.add(middleware: HTTPTracingMiddleware())
    router.add(middleware: JSONErrorMiddleware())
    router.addRoutes(AdminRoutes(service: configuration.service, health: health, metrics: metrics).endpoints)
    return router
  }

  /// The HTTP server for `router` on the configured host and HTTP port; `server` chooses the
  /// channel (the Gateway's also upgrades to WebSocket).
  public func makeHTTPServer<Context>(router: Router<Context>, server: HTTPServerBuilder = .http1()) -> some Service
  where Context: InitializableFromSource<ApplicationRequestContextSource> {
    let listening = self.listening
    return Application(
      router: router,
      server: server,
      configuration: .init(
        address: .hostname(configuration.host, port: configuration.httpPort),
        serverName: configuration.service.rawValue
      ),
      onServerRunning: { channel in
        await listening.httpBound(port: channel.localAddress?.port ?? 0)
      },
      logger: logger
    )
  }

  /// The gRPC server: `services` plus `grpc.health.v1.Health`, with tracing, metrics and (unless
  /// `trustCallerMetadata` is false, as on the public Gateway) `inspect-user` on every RPC, then
  /// `interceptors`. The stream limit is high: a subscriber holds a stream while it watches.
  ///
  /// Requests up to `maxRequestBytes` are accepted (4 MiB, gRPC's usual limit, unless a service
  /// takes larger ones, such as ModelRouter's audio for `Transcribe`).
  public func makeGRPCServer(
    services: [any RegistrableRPCService],
    interceptors: [ConditionalInterceptor<any ServerInterceptor>] = [],
    trustCallerMetadata: Bool = true,
    maxRequestBytes: Int = 4 << 20
  ) throws -> GRPCServer<HTTP2ServerTransport.Posix> {
    var config = HTTP2ServerTransport.Posix.Config.defaults
    config.http2.maxConcurrentStreams = 4096
    config.rpc.maxRequestPayloadSize = maxRequestBytes
    let transport = HTTP2ServerTransport.Posix(
      address: try Self.bindAddress(host: configuration.host, port: configuration.grpcPort),
      transportSecurity: .plaintext,
      config: config
    )
    var common: [any ServerInterceptor] = [
      ServerTracingInterceptor(), ServerMetricsInterceptor(metrics: metrics, logger: logger),
    ]
    if trustCallerMetadata { common.append(CallerInterceptor()) }
    return GRPCServer(
      transport: transport,
      services: services + [HealthService(board: health)],
      interceptorPipeline: common.map { .apply($0, to: .all) } + interceptors
    )
  }

  static func bindAddress(host: String, port: Int) throws -> GRPCNIOTransportCore.SocketAddress {
    if host.contains(":") { return .ipv6(host: host, port: port) }
    let octets = host.split(separator: ".", omittingEmptySubsequences: false)
    if octets.count == 4, octets.allSatisfy({ UInt8($0) != nil }) { return .ipv4(host: host, port: port) }
    if host == "localhost" { return .ipv4(host: "127.0.0.1", port: port) }
    throw ConfigurationError("--host \(host) must be an IP address to bind (e.g. 127.0.0.1, 0.0.0.0 or ::)")
  }
}

/// A service ready to run: its host, gRPC server, HTTP server and the services it depends on
/// (peer clients, background work). Each binary's `build` returns one; tests run the same.
public struct BuiltService: Sendable {
  public let host: ServiceHost
  let grpcServer: GRPCServer<HTTP2ServerTransport.Posix>
  let httpServer: any Service
  let dependencies: [any Service]

  public init(
    host: ServiceHost, grpcServer: GRPCServer<HTTP2ServerTransport.Posix>, httpServer: any Service,
    dependencies: [any Service] = []
  ) {
    self.host = host
    self.grpcServer = grpcServer
    self.httpServer = httpServer
    self.dependencies = dependencies
  }

  /// The service group: dependencies start first and stop last; on shutdown the gRPC server
  /// drains first (health NOT_SERVING, in-flight RPCs finish), then the HTTP server stops.
  public func makeServiceGroup(handleSignals: Bool = true) -> ServiceGroup {
    let listening = host.listening
    let grpc = GRPCServerService(server: grpcServer, health: host.health) { address in
      await listening.grpcBound(port: address.ipv4?.port ?? address.ipv6?.port ?? 0)
    }
    let services: [any Service] = dependencies + [httpServer, grpc]
    return ServiceGroup(
      configuration: .init(
        services: services.map { .init(service: $0) },
        gracefulShutdownSignals: handleSignals ? [.sigterm, .sigint] : [],
        logger: host.logger
      )
    )
  }

  /// A service none of whose RPCs is built yet: health, admin routes, and `UNIMPLEMENTED` naming
  /// `missing` for every method of `service`.
  public static func unbuilt(
    _ configuration: ServiceConfiguration, service: ServiceDescriptor, methods: [MethodDescriptor], missing: String
  ) throws -> BuiltService {
    let host = ServiceHost(configuration: configuration, servedServices: [service])
    return BuiltService(
      host: host,
      grpcServer: try host.makeGRPCServer(services: [UnimplementedService(methods: methods, missing: missing)]),
      httpServer: host.makeHTTPServer(router: host.makeRouter()))
  }

  /// Runs until SIGTERM/SIGINT, then shuts down gracefully.
  public func run() async throws {
    try await makeServiceGroup().run()
    host.logger.info("stopped")
  }
}

/// Collects the two bound ports; once both are known it marks the service SERVING and prints the
/// `listening grpc=HOST:PORT admin=HOST:PORT` line (`http=` for the Gateway) that launchers read.
public actor ListeningReporter {
  /// The bound addresses of one running service.
  public struct Addresses: Sendable, Equatable {
    public var grpc: HostAndPort
    public var http: HostAndPort
  }

  let service: InspectService
  let host: String
  let health: HealthStatusBoard
  private var grpcPort: Int?
  private var httpPort: Int?
  private var waiters: [CheckedContinuation<Addresses, Never>] = []

  init(service: InspectService, host: String, health: HealthStatusBoard) {
    self.service = service
    self.host = host
    self.health = health
  }

  func grpcBound(port: Int) {
    grpcPort = port
    reportIfReady()
  }

  func httpBound(port: Int) {
    httpPort = port
    reportIfReady()
  }

  /// Waits until both servers listen.
  public func addresses() async -> Addresses {
    if let ready = ready { return ready }
    return await withCheckedContinuation { waiters.append($0) }
  }

  private var ready: Addresses? {
    guard let grpcPort, let httpPort else { return nil }
    return Addresses(grpc: HostAndPort(host: host, port: grpcPort), http: HostAndPort(host: host, port: httpPort))
  }

  private func reportIfReady() {
    guard let ready else { return }
    health.setAll(serving: true)
    let line = "listening grpc=\(ready.grpc) \(service.httpPortLabel)=\(ready.http) version=\(InspectVersion.current)"
    // Printed bare (not through the log handler) so that the line starts with `listening`.
    StandardOutput.writeLine(line)
    for waiter in waiters { waiter.resume(returning: ready) }
    waiters = []
  }
}
