/// The five services of Inspect, with the names, default ports and environment prefixes pinned in
/// `docs/CONTRACTS.md`. Everything that launches, configures or probes a service starts here.
public enum InspectService: String, CaseIterable, Sendable, Codable {
  case gateway = "Gateway"
  case session = "SessionService"
  case sandbox = "SandboxService"
  case modelRouter = "ModelRouter"
  case classifier = "RepoClassifier"

  /// The executable's file name (same as the target).
  public var binaryName: String { rawValue }

  /// The short lower-case name used in logger labels, log file names and CLI output.
  public var shortName: String {
    switch self {
    case .gateway: "gateway"
    case .session: "session"
    case .sandbox: "sandbox"
    case .modelRouter: "model-router"
    case .classifier: "classifier"
    }
  }

  /// The `<SERVICE>` part of `INSPECT_<SERVICE>_HOST/_GRPC_PORT/_ADMIN_PORT`.
  public var environmentPrefix: String {
    switch self {
    case .gateway: "INSPECT_GATEWAY"
    case .session: "INSPECT_SESSION"
    case .sandbox: "INSPECT_SANDBOX"
    case .modelRouter: "INSPECT_MODEL_ROUTER"
    case .classifier: "INSPECT_CLASSIFIER"
    }
  }

  /// The variable other services read to find this one (`INSPECT_SESSION_ADDR`, …); the Gateway
  /// is not a peer of anyone, so it has none.
  public var peerAddressVariable: String? {
    self == .gateway ? nil : "\(environmentPrefix)_ADDR"
  }

  /// The default gRPC port (50050…50054).
  public var defaultGRPCPort: Int {
    switch self {
    case .gateway: 50050
    case .session: 50051
    case .sandbox: 50052
    case .modelRouter: 50053
    case .classifier: 50054
    }
  }

  /// The default HTTP port: the Gateway's public port 8080, the others' admin port 51051…51054.
  public var defaultHTTPPort: Int {
    self == .gateway ? 8080 : defaultGRPCPort + 1000
  }

  /// The environment variable that sets the HTTP port: `_HTTP_PORT` for the Gateway (its public
  /// port), `_ADMIN_PORT` for the others.
  public var httpPortVariable: String {
    self == .gateway ? "\(environmentPrefix)_HTTP_PORT" : "\(environmentPrefix)_ADMIN_PORT"
  }

  /// The word used for the HTTP port in the `listening …` line: `http` or `admin`.
  public var httpPortLabel: String { self == .gateway ? "http" : "admin" }

  /// The logger label, `inspect.<service>`.
  public var loggerLabel: String { "inspect.\(shortName)" }

  /// The order in which `inspect up` starts the services: the ones others call come first.
  public static let startOrder: [InspectService] = [.modelRouter, .classifier, .sandbox, .session, .gateway]
}
