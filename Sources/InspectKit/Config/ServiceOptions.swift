import ArgumentParser
import Foundation
import Logging

/// The command-line flags every service binary takes. Each flag falls back to its environment
/// variable (`INSPECT_<SERVICE>_HOST`, `_GRPC_PORT`, `_ADMIN_PORT` or `_HTTP_PORT`,
/// `INSPECT_DATA_DIR`, `INSPECT_LOG_LEVEL`) and then to the default of `docs/CONTRACTS.md`.
public struct ServiceOptions: ParsableArguments, Sendable {
  @Option(help: "Address to bind (default 127.0.0.1; containers use 0.0.0.0).")
  public var host: String?

  @Option(name: .customLong("grpc-port"), help: "gRPC (HTTP/2) port; 0 picks a free port.")
  public var grpcPort: Int?

  @Option(
    name: [.customLong("admin-port"), .customLong("http-port")],
    help: "Admin HTTP port (the Gateway: its public HTTP port); 0 picks a free port.")
  public var httpPort: Int?

  @Option(name: .customLong("data-dir"), help: "Data directory (default ~/.local/share/inspect).")
  public var dataDirectory: String?

  @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
  public var logLevel: String?

  public init() {}

  /// Combines flags, environment and defaults into the configuration of `service`.
  public func resolve(
    for service: InspectService,
    environment: [String: String] = ProcessInfo.processInfo.environment
  ) throws -> ServiceConfiguration {
    try ServiceConfiguration.resolve(
      for: service, environment: environment, host: host, grpcPort: grpcPort, httpPort: httpPort,
      dataDirectory: dataDirectory, logLevel: logLevel)
  }
}

/// A service's resolved configuration: where it listens, where its data lives, where its peers are.
public struct ServiceConfiguration: Sendable {
  public var service: InspectService
  public var host: String
  public var grpcPort: Int
  public var httpPort: Int
  public var dataDirectory: URL
  public var logLevel: Logger.Level
  public var peers: PeerAddresses

  public init(
    service: InspectService,
    host: String = "127.0.0.1",
    grpcPort: Int = 0,
    httpPort: Int = 0,
    dataDirectory: URL,
    logLevel: Logger.Level = .info,
    peers: PeerAddresses = PeerAddresses()
  ) {
    self.service = service
    self.host = host
    self.grpcPort = grpcPort
    self.httpPort = httpPort
    self.dataDirectory = dataDirectory
    self.logLevel = logLevel
    self.peers = peers
  }

  /// Combines flags (nil when not given), environment and defaults into the configuration of
  /// `service`.
  public static func resolve(
    for service: InspectService,
    environment: [String: String],
    host: String? = nil,
    grpcPort: Int? = nil,
    httpPort: Int? = nil,
    dataDirectory: String? = nil,
    logLevel: String? = nil
  ) throws -> ServiceConfiguration {
    let prefix = service.environmentPrefix
    func port(_ flag: Int?, _ variable: String, _ fallback: Int) throws -> Int {
      if let flag { return try validatePort(flag, source: "flag") }
      guard let text = environment[variable], !text.isEmpty else { return fallback }
      guard let value = Int(text) else {
        throw ConfigurationError("\(variable)=\(text) is not a port number")
      }
      return try validatePort(value, source: variable)
    }
    let levelText = logLevel ?? environment["INSPECT_LOG_LEVEL"] ?? "info"
    guard let level = Logger.Level(rawValue: levelText.lowercased()) else {
      throw ConfigurationError(
        "log level '\(levelText)' is unknown; use trace, debug, info, notice, warning, error or critical")
    }
    return ServiceConfiguration(
      service: service,
      host: host ?? environment["\(prefix)_HOST"] ?? "127.0.0.1",
      grpcPort: try port(grpcPort, "\(prefix)_GRPC_PORT", service.defaultGRPCPort),
      httpPort: try port(httpPort, service.httpPortVariable, service.defaultHTTPPort),
      dataDirectory: Self.dataDirectory(flag: dataDirectory, environment: environment),
      logLevel: level,
      peers: try PeerAddresses(environment: environment)
    )
  }

  /// `--data-dir`, else `INSPECT_DATA_DIR`, else `~/.local/share/inspect`.
  public static func dataDirectory(flag: String?, environment: [String: String]) -> URL {
    if let path = flag ?? environment["INSPECT_DATA_DIR"], !path.isEmpty {
      return URL(fileURLWithPath: path, isDirectory: true).standardizedFileURL
    }
    let home = environment["HOME"] ?? NSHomeDirectory()
    return URL(fileURLWithPath: home, isDirectory: true)
      .appendingPathComponent(".local/share/inspect", isDirectory: true)
  }

  static func validatePort(_ value: Int, source: String) throws -> Int {
    guard (0...65535).contains(value) else {
      throw ConfigurationError("port \(value) from \(source) is outside 0…65535")
    }
    return value
  }
}

/// Where each peer service listens, from `INSPECT_<SERVICE>_ADDR` (`host:port`), defaulting to
/// the local default ports. Nothing assumes localhost: any host name or address works.
public struct PeerAddresses: Sendable, Equatable {
  public var addresses: [InspectService: HostAndPort]

  public init(addresses: [InspectService: HostAndPort] = [:]) {
    self.addresses = addresses
  }

  public init(environment: [String: String]) throws {
    var addresses: [InspectService: HostAndPort] = [:]
    for service in InspectService.allCases {
      guard let variable = service.peerAddressVariable else { continue }
      if let text = environment[variable], !text.isEmpty {
        guard let parsed = HostAndPort(text) else {
          throw ConfigurationError("\(variable)=\(text) is not host:port (e.g. 127.0.0.1:50051)")
        }
        addresses[service] = parsed
      }
    }
    self.addresses = addresses
  }

  /// The address of `service`: configured, else `127.0.0.1:<default gRPC port>`.
  public subscript(service: InspectService) -> HostAndPort {
    addresses[service] ?? HostAndPort(host: "127.0.0.1", port: service.defaultGRPCPort)
  }
}

/// A `host:port` pair; IPv6 literals are written `[::1]:50051`.
public struct HostAndPort: Sendable, Hashable, Codable, CustomStringConvertible {
  public var host: String
  public var port: Int

  public init(host: String, port: Int) {
    self.host = host
    self.port = port
  }

  /// Parses `host:port` or `[v6]:port`; nil when malformed.
  public init?(_ text: String) {
    let hostPart: Substring
    let portPart: Substring
    if text.hasPrefix("[") {
      guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":")
      else { return nil }
      hostPart = text[text.index(after: text.startIndex)..<close]
      portPart = text[text.index(close, offsetBy: 2)...]
    } else {
      guard let colon = text.lastIndex(of: ":") else { return nil }
      hostPart = text[..<colon]
      portPart = text[text.index(after: colon)...]
    }
    guard !hostPart.isEmpty, let port = Int(portPart), (1...65535).contains(port) else { return nil }
    self.init(host: String(hostPart), port: port)
  }

  public var description: String {
    host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
  }
}

/// A configuration value that cannot be used; the message says which and why.
public struct ConfigurationError: Error, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}
