import Foundation
import InspectKit

/// Where each service of a local run listens, and the environment each one is started with.
/// Ports come from the same variables the services read (`INSPECT_SESSION_GRPC_PORT`, …), with
/// the defaults of `docs/CONTRACTS.md`; a port of 0 is replaced by a free one, so every peer
/// address is known before anything starts.
struct LaunchPlan: Codable, Sendable {
  struct Entry: Codable, Sendable {
    var service: InspectService
    var grpc: HostAndPort
    var http: HostAndPort
    /// The address peers and probes use (a wildcard bind address is reached over loopback).
    var reachableGRPC: HostAndPort {
      HostAndPort(host: Self.reachable(grpc.host), port: grpc.port)
    }
    var reachableHTTP: HostAndPort {
      HostAndPort(host: Self.reachable(http.host), port: http.port)
    }
    static func reachable(_ host: String) -> String {
      host == "0.0.0.0" ? "127.0.0.1" : host == "::" ? "::1" : host
    }
  }

  var dataDirectory: URL
  var entries: [Entry]

  static func make(dataDirectory: URL, environment: [String: String]) throws -> LaunchPlan {
    var entries: [Entry] = []
    for service in InspectService.startOrder {
      var configuration = try ServiceConfiguration.resolve(for: service, environment: environment)
      if configuration.grpcPort == 0 { configuration.grpcPort = try FreePort.pick() }
      if configuration.httpPort == 0 { configuration.httpPort = try FreePort.pick() }
      entries.append(
        Entry(
          service: service,
          grpc: HostAndPort(host: configuration.host, port: configuration.grpcPort),
          http: HostAndPort(host: configuration.host, port: configuration.httpPort)))
    }
    return LaunchPlan(dataDirectory: dataDirectory, entries: entries)
  }

  subscript(service: InspectService) -> Entry? { entries.first { $0.service == service } }

  /// The environment of `entry`'s process: the launcher's own, plus its data directory, its own
  /// addresses and every peer's address.
  func environment(for entry: Entry, inheriting base: [String: String]) -> [String: String] {
    var environment = base
    environment["INSPECT_DATA_DIR"] = dataDirectory.path
    let prefix = entry.service.environmentPrefix
    environment["\(prefix)_HOST"] = entry.grpc.host
    environment["\(prefix)_GRPC_PORT"] = "\(entry.grpc.port)"
    environment[entry.service.httpPortVariable] = "\(entry.http.port)"
    for peer in entries {
      if let variable = peer.service.peerAddressVariable { environment[variable] = peer.reachableGRPC.description }
    }
    return environment
  }
}

/// `<data-dir>/run/up.json`: what `inspect up` started, for `inspect down` and `inspect status`.
struct RunState: Codable, Sendable {
  struct Process: Codable, Sendable {
    var service: InspectService
    var pid: Int32
    var grpc: HostAndPort
    var http: HostAndPort
    var log: String
  }

  /// The foreground launcher's pid (nil when detached).
  var launcherPID: Int32?
  var startedAt: Date
  var processes: [Process]

  static func file(in dataDirectory: URL) -> URL {
    dataDirectory.appendingPathComponent("run/up.json")
  }

  static func load(from dataDirectory: URL) -> RunState? {
    guard let data = try? Data(contentsOf: file(in: dataDirectory)) else { return nil }
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    return try? decoder.decode(RunState.self, from: data)
  }

  func save(to dataDirectory: URL) throws {
    let url = Self.file(in: dataDirectory)
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    let encoder = JSONEncoder()
    encoder.dateEncodingStrategy = .iso8601
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try encoder.encode(self).write(to: url, options: .atomic)
  }

  static func remove(from dataDirectory: URL) {
    try? FileManager.default.removeItem(at: file(in: dataDirectory))
  }

  /// The processes that are still running our binaries (a pid reused by another program after a
  /// crash is not ours and is never signalled).
  var liveProcesses: [Process] {
    processes.filter { ProcessIdentity.isRunning(pid: $0.pid, binary: $0.service.binaryName) }
  }
}

/// Tells whether a pid still runs a given binary, from `/proc/<pid>/cmdline`.
enum ProcessIdentity {
  static func isRunning(pid: Int32, binary: String) -> Bool {
    guard ChildProcess.isAlive(pid),
      let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
      let first = data.split(separator: 0).first
    else { return false }
    return String(decoding: first, as: UTF8.self).hasSuffix("/" + binary)
      || String(decoding: first, as: UTF8.self) == binary
  }
}
