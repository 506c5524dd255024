import ArgumentParser
import Foundation
import InspectKit

#if canImport(Glibc)
  import Glibc
#endif

/// `inspect down`: stops what `inspect up` started from this data directory.
struct DownCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "down",
    abstract: "Stop the services that `inspect up` started.")

  @OptionGroup var dataDirectory: DataDirectoryOption

  func run() async throws {
    let dataDirectory = dataDirectory.url
    guard let state = RunState.load(from: dataDirectory) else {
      StandardOutput.writeLine("inspect: nothing is running from \(dataDirectory.path)")
      return
    }
    // A foreground launcher stops its own services in order when it gets SIGTERM.
    if let launcher = state.launcherPID, launcher != getpid(),
      ProcessIdentity.isRunning(pid: launcher, binary: "inspect")
    {
      kill(launcher, SIGTERM)
      let deadline = ContinuousClock.now + .seconds(30)
      while ChildProcess.isAlive(launcher), ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(50))
      }
    }
    let live = state.liveProcesses
    let order = InspectService.startOrder.reversed()
    let children = order.flatMap { service in
      live.filter { $0.service == service }.map { (service, ChildProcess(pid: $0.pid)) }
    }
    await Supervisor.stop(children)
    RunState.remove(from: dataDirectory)
    StandardOutput.writeLine(
      live.isEmpty
        ? "inspect: no service was running; cleared the run state of \(dataDirectory.path)"
        : "inspect: stopped \(live.map(\.service.rawValue).joined(separator: ", "))")
  }
}
