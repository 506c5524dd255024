import Foundation
import InspectKit

/// Runs a command to completion for a test and returns its exit status and combined output.
public struct CommandResult: Sendable {
  public var status: Int32
  public var output: String
}

public func runCommand(
  _ executable: String, _ arguments: [String], environment: [String: String], timeout: Duration = .seconds(120)
) async throws -> CommandResult {
  let directory = try TemporaryDirectory("inspect-cmd")
  defer { directory.remove() }
  let log = directory.url.appendingPathComponent("output.log")
  let child = try ChildProcess.spawn(
    executable: executable, arguments: arguments, environment: environment, logFile: log, detachment: .processGroup)
  let deadline = ContinuousClock.now + timeout
  while true {
    if let status = child.exitCodeIfExited() {
      return CommandResult(status: status, output: (try? String(contentsOf: log, encoding: .utf8)) ?? "")
    }
    guard ContinuousClock.now < deadline else {
      child.signal(SIGKILL)
      throw ConfigurationError("\(executable) \(arguments.joined(separator: " ")) did not finish within \(timeout)")
    }
    try await Task.sleep(for: .milliseconds(20))
  }
}

/// Environment for a local run on free loopback ports: every `INSPECT_*_PORT` set to a free port.
public func freePortEnvironment(base: [String: String] = ProcessInfo.processInfo.environment) throws -> [String: String]
{
  var environment = base
  for service in InspectService.allCases {
    environment["\(service.environmentPrefix)_GRPC_PORT"] = String(try FreePort.pick())
    environment[service.httpPortVariable] = String(try FreePort.pick())
    environment["\(service.environmentPrefix)_HOST"] = "127.0.0.1"
  }
  return environment
}
