import ArgumentParser
import Foundation
import InspectKit

/// `inspect status`: each service's health, address and version, from the run state of
/// `inspect up` (or, without one, the configured addresses).
struct StatusCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "status",
    abstract: "Show each service's health, address and version. Exits 1 unless all five are SERVING.")

  @OptionGroup var dataDirectory: DataDirectoryOption

  @Flag(help: "Print JSON instead of a table.")
  var json = false

  struct Row: Codable {
    var service: String
    var status: String
    var grpc: String
    var http: String
    var version: String
    var pid: Int32?
  }

  func run() async throws {
    let dataDirectory = dataDirectory.url
    let entries: [(LaunchPlan.Entry, Int32?)]
    if let state = RunState.load(from: dataDirectory) {
      entries = state.processes.map { (LaunchPlan.Entry(service: $0.service, grpc: $0.grpc, http: $0.http), $0.pid) }
    } else {
      let plan = try LaunchPlan.make(dataDirectory: dataDirectory, environment: ProcessInfo.processInfo.environment)
      entries = plan.entries.map { ($0, nil) }
    }
    let rows = await withTaskGroup(of: Row.self) { group in
      for (entry, pid) in entries {
        group.addTask {
          async let status = HealthProbe.grpcStatus(entry.reachableGRPC)
          async let report = HealthProbe.healthz(entry.reachableHTTP)
          let name: String
          switch await status {
          case .serving: name = "SERVING"
          case .notServing: name = "NOT_SERVING"
          case .none: name = "DOWN"
          default: name = "UNKNOWN"
          }
          return Row(
            service: entry.service.rawValue, status: name, grpc: entry.reachableGRPC.description,
            http: entry.reachableHTTP.description, version: await report?.version ?? "-", pid: pid)
        }
      }
      var rows: [Row] = []
      for await row in group { rows.append(row) }
      let order = InspectService.startOrder.map(\.rawValue)
      return rows.sorted { order.firstIndex(of: $0.service)! < order.firstIndex(of: $1.service)! }
    }
    if json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
      StandardOutput.writeLine(String(decoding: try encoder.encode(rows), as: UTF8.self))
    } else {
      let header = Row(service: "SERVICE", status: "STATUS", grpc: "GRPC", http: "HTTP", version: "VERSION", pid: nil)
      for row in [header] + rows {
        let pid = row.service == "SERVICE" ? "PID" : row.pid.map(String.init) ?? "-"
        StandardOutput.writeLine(
          [
            row.service.padded(16), row.status.padded(12), row.grpc.padded(22), row.http.padded(22),
            row.version.padded(9), pid,
          ]
          .joined())
      }
    }
    if rows.contains(where: { $0.status != "SERVING" }) { throw ExitCode(1) }
  }
}

extension String {
  fileprivate func padded(_ width: Int) -> String {
    count >= width ? self + " " : padding(toLength: width, withPad: " ", startingAt: 0)
  }
}
