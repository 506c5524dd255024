import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos

/// Options every SessionService benchmark takes.
struct SessionBenchOptions: ParsableArguments {
  @Option(help: "SessionService's --log-level.")
  var logLevel = "info"

  @Flag(help: "Keep the temporary directory (data directory and SessionService's log) afterwards.")
  var keep = false
}

/// Everything a SessionService benchmark runs against: the SandboxService stand-in (served by
/// this process), a real SessionService process with a fresh data directory calling it, and
/// authenticated client connections to that process.
struct SessionBench: Sendable {
  let controller: StandInController
  let service: SessionServiceProcess
  /// One per connection, each acting for the development user.
  let clients: [SessionClient]
  /// The temporary directory holding the data directory and the service's output.
  let workDirectory: URL

  var client: SessionClient { clients[0] }

  /// Starts the stand-in and SessionService, opens `connections` connections, runs `body`, then
  /// stops everything and removes the temporary directory. On failure, the end of
  /// SessionService's log goes to standard error.
  static func run<T: Sendable>(
    _ options: SessionBenchOptions, connections: Int = 1, _ body: @Sendable (SessionBench) async throws -> T
  ) async throws -> T {
    let binDirectory = try await BinaryDirectory.resolve()
    let workDirectory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "inspect-bench-\(UUID().uuidString.prefix(8).lowercased())", isDirectory: true)
    let dataDirectory = workDirectory.appendingPathComponent("data", isDirectory: true)
    try FileManager.default.createDirectory(at: dataDirectory, withIntermediateDirectories: true)
    defer {
      if options.keep {
        StandardError.write("inspect-bench: kept \(workDirectory.path)\n")
      } else {
        try? FileManager.default.removeItem(at: workDirectory)
      }
    }
    let controller = StandInController()
    var serverConfig = HTTP2ServerTransport.Posix.Config.defaults
    serverConfig.http2.maxConcurrentStreams = 4096
    let server = GRPCServer(
      transport: HTTP2ServerTransport.Posix(
        address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext, config: serverConfig),
      services: [SandboxStandIn(controller: controller)])
    return try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await server.serve() }
      defer { server.beginGracefulShutdown() }
      guard let port = try await server.listeningAddress?.ipv4?.port else {
        throw BenchError("the SandboxService stand-in did not bind to 127.0.0.1")
      }
      let service = try await SessionServiceProcess.start(
        binDirectory: binDirectory, dataDirectory: dataDirectory,
        sandbox: HostAndPort(host: "127.0.0.1", port: port), logLevel: options.logLevel)
      let result: T
      do {
        result = try await withSessionClients(count: connections, address: service.grpc) { connections in
          let token = try String(contentsOf: dataDirectory.appendingPathComponent("dev-token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
          var clients: [SessionClient] = []
          for connection in connections {
            var client = SessionClient(grpc: connection, metadata: [:])
            try await client.authenticate(token: token)
            clients.append(client)
          }
          let bench = SessionBench(
            controller: controller, service: service, clients: clients, workDirectory: workDirectory)
          return try await body(bench)
        }
      } catch {
        StandardError.write(
          "inspect-bench: failed: \(error)\nLast lines of SessionService's log (\(service.log.path)):\n"
            + SessionServiceProcess.tail(of: service.log) + "\n")
        await service.stop()
        throw error
      }
      await service.stop()
      server.beginGracefulShutdown()
      try await group.waitForAll()
      return result
    }
  }
}

/// Runs `operation` for each of `items` with at most `width` running at once; results in order.
func concurrentMap<Item: Sendable, Result: Sendable>(
  _ items: [Item], width: Int, _ operation: @escaping @Sendable (Item) async throws -> Result
) async throws -> [Result] {
  try await withThrowingTaskGroup(of: (Int, Result).self) { group in
    var results = [Result?](repeating: nil, count: items.count)
    var next = 0
    while next < min(width, items.count) {
      let (index, item) = (next, items[next])
      group.addTask { (index, try await operation(item)) }
      next += 1
    }
    while let (index, result) = try await group.next() {
      results[index] = result
      if next < items.count {
        let (index, item) = (next, items[next])
        group.addTask { (index, try await operation(item)) }
        next += 1
      }
    }
    return results.map { $0! }
  }
}
