import ArgumentParser
import Foundation
import InspectKit
import Synchronization
import UnixSignals

#if canImport(Glibc)
  import Glibc
#endif

/// `inspect up`: starts the five services on this machine, waits until each reports SERVING,
/// prints where to reach them and a development API token, then either returns (`--detach`) or
/// stays in the foreground showing every service's log until Ctrl-C/SIGTERM stops them all.
struct UpCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "up",
    abstract: "Start the five services and wait until they are all serving.")

  @Flag(help: "Leave the services running in the background and return once they serve.")
  var detach = false

  @OptionGroup var dataDirectory: DataDirectoryOption

  @Option(help: "Seconds to wait for every service to report SERVING.")
  var timeout: Double = 60

  func run() async throws {
    let dataDirectory = dataDirectory.url
    let environment = ProcessInfo.processInfo.environment
    if let state = RunState.load(from: dataDirectory) {
      let live = state.liveProcesses
      guard live.isEmpty else {
        throw ValidationError(
          "Inspect is already running from \(dataDirectory.path) (pids \(live.map { String($0.pid) }.joined(separator: ", "))); "
            + "stop it with `inspect down --data-dir \(dataDirectory.path)` first")
      }
      RunState.remove(from: dataDirectory)
    }
    let binaries = try BinaryLocator(environment: environment)
    let plan = try LaunchPlan.make(dataDirectory: dataDirectory, environment: environment)
    try FileManager.default.createDirectory(
      at: dataDirectory.appendingPathComponent("logs", isDirectory: true), withIntermediateDirectories: true)
    try installExamples(dataDirectory: dataDirectory, binaries: binaries, environment: environment)

    // Ctrl-C or SIGTERM from now on stops whatever has started (the services sit in their own
    // process group, so the terminal's signal reaches only this launcher).
    let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
    let clock = ContinuousClock()
    let started = clock.now
    let launched = Launched()
    let startup: Result<Void, any Error> = await withTaskGroup(of: Result<Void, any Error>?.self) { group in
      group.addTask {
        for await signal in signals { return .failure(Interrupted(signal: "\(signal)")) }
        return nil
      }
      group.addTask {
        do {
          try await startServices(plan: plan, binaries: binaries, environment: environment, into: launched)
          return .success(())
        } catch {
          return .failure(error)
        }
      }
      let first = await group.next() ?? nil
      group.cancelAll()
      return first ?? .success(())
    }
    let running = launched.services
    if case .failure(let error) = startup {
      // Nothing is left half-started: stop what did start.
      StandardError.write((error as? StartupFailure)?.report ?? "inspect: \(error)\n")
      await Supervisor.stop(running.reversed().map { ($0.entry.service, $0.child) })
      RunState.remove(from: dataDirectory)
      throw ExitCode(error is Interrupted ? 130 : 1)
    }
    let elapsed = clock.now - started
    printSummary(plan: plan, dataDirectory: dataDirectory, elapsed: elapsed)

    if detach { return }
    let outcome = await Supervisor(running: running).superviseInForeground()
    await Supervisor.stop(running.reversed().map { ($0.entry.service, $0.child) })
    RunState.remove(from: dataDirectory)
    switch outcome {
    case .signalled:
      StandardOutput.writeLine("inspect: all services stopped")
    case .died(let service, let how, let lastLines):
      StandardError.write(
        "inspect: \(service.rawValue) \(how); stopped the others. Last lines of its log:\n\(lastLines)\n")
      throw ExitCode(1)
    }
  }

  /// Creates `remotes/demo.git` (registered as `local/demo`) from `examples/demo-repo` when it
  /// is missing, and copies the example transcripts to `<data-dir>/transcripts/`.
  private func installExamples(dataDirectory: URL, binaries: BinaryLocator, environment: [String: String]) throws {
    guard let source = DemoRepository.source(environment: environment, start: binaries.directory) else {
      StandardError.write(
        "inspect: examples/demo-repo not found (set INSPECT_EXAMPLES_DIR); local/demo is not set up\n")
      return
    }
    if try DemoRepository.ensureRemote(in: dataDirectory, from: source) {
      StandardOutput.writeLine("inspect: created \(DemoRepository.remote(in: dataDirectory).path) (local/demo)")
    }
    let examples = source.deletingLastPathComponent()
    let transcripts = dataDirectory.appendingPathComponent("transcripts", isDirectory: true)
    try FileManager.default.createDirectory(at: transcripts, withIntermediateDirectories: true)
    for file in try FileManager.default.contentsOfDirectory(atPath: examples.path)
    where file.hasSuffix(".transcript.jsonl") {
      let target = transcripts.appendingPathComponent(file)
      try? FileManager.default.removeItem(at: target)
      try FileManager.default.copyItem(at: examples.appendingPathComponent(file), to: target)
    }
  }

  /// Starts the services one by one, each once the ones it calls are SERVING, so that no
  /// service's first connection to a peer fails and backs off. Records each in `launched` (and
  /// the run state file) as it starts, so a failure or a signal can stop exactly those.
  private func startServices(
    plan: LaunchPlan, binaries: BinaryLocator, environment: [String: String], into launched: Launched
  ) async throws {
    let logs = plan.dataDirectory.appendingPathComponent("logs", isDirectory: true)
    let deadline = ContinuousClock.now + .seconds(timeout)
    for entry in plan.entries {
      let log = logs.appendingPathComponent("\(entry.service.shortName).log")
      let offset = (try? FileManager.default.attributesOfItem(atPath: log.path)[.size] as? Int) ?? 0
      let child = try ChildProcess.spawn(
        executable: binaries.path(of: entry.service),
        environment: plan.environment(for: entry, inheriting: environment),
        logFile: log, detachment: detach ? .session : .processGroup)
      let service = RunningService(entry: entry, child: child, log: log, logOffset: offset)
      try launched.add(service, launcherPID: detach ? nil : getpid(), saveTo: plan.dataDirectory)
      try await waitUntilServing(service, deadline: deadline)
    }
  }

  /// Waits for the service's `listening` line, then for gRPC health SERVING; fails at once when
  /// it exits, naming it and showing the end of its log.
  private func waitUntilServing(_ service: RunningService, deadline: ContinuousClock.Instant) async throws {
    while true {
      if let how = service.child.exitStatusIfExited() {
        throw StartupFailure(service: service, how: how)
      }
      if service.hasLogged("listening grpc="),
        await HealthProbe.grpcStatus(service.entry.reachableGRPC, timeout: .seconds(1)) == .serving
      {
        return
      }
      guard ContinuousClock.now < deadline else {
        throw StartupFailure(service: service, how: "did not report SERVING within \(Int(timeout)) s")
      }
      try await Task.sleep(for: .milliseconds(10))
    }
  }

  private func printSummary(plan: LaunchPlan, dataDirectory: URL, elapsed: Duration) {
    let token = (try? String(contentsOf: dataDirectory.appendingPathComponent("dev-token"), encoding: .utf8))?
      .trimmingCharacters(in: .whitespacesAndNewlines)
    let gateway = plan[.gateway]!
    let milliseconds = elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
    var lines = [
      "Inspect \(InspectVersion.current) is up: all five services are SERVING (\(milliseconds) ms).",
      "  web and REST API  http://\(gateway.reachableHTTP)/",
      "  gRPC API          \(gateway.reachableGRPC)",
      "  API token         \(token ?? "(none: \(dataDirectory.path)/dev-token is missing)")",
      "  data              \(dataDirectory.path)",
      "  logs              \(dataDirectory.path)/logs/",
    ]
    lines.append(
      detach
        ? "Stop it with: inspect down --data-dir \(dataDirectory.path)"
        : "Press Ctrl-C to stop every service.")
    StandardOutput.writeLine(lines.joined(separator: "\n"))
  }
}

/// The services started so far and the run state that records them.
final class Launched: Sendable {
  private let contents = Mutex<(services: [RunningService], state: RunState?)>(([], nil))

  var services: [RunningService] { contents.withLock { $0.services } }
  func add(_ service: RunningService, launcherPID: Int32?, saveTo dataDirectory: URL) throws {
    let state = contents.withLock { contents in
      contents.services.append(service)
      var state = contents.state ?? RunState(launcherPID: launcherPID, startedAt: Date(), processes: [])
      state.processes.append(
        .init(
          service: service.entry.service, pid: service.child.pid, grpc: service.entry.grpc,
          http: service.entry.http, log: service.log.path))
      contents.state = state
      return state
    }
    try state.save(to: dataDirectory)
  }
}

/// Start-up was interrupted by a signal.
struct Interrupted: Error, CustomStringConvertible {
  let signal: String
  var description: String { "interrupted by \(signal) during start-up; stopped what had started" }
}

/// A started service process and its log file.
struct RunningService: Sendable {
  let entry: LaunchPlan.Entry
  let child: ChildProcess
  let log: URL
  /// Where this run's part of the log starts (the file is appended to across runs).
  let logOffset: Int

  func logTail(lines count: Int = 20) -> String {
    let text = LogFile.read(log, from: logOffset)
    return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(count).joined(separator: "\n")
  }

  func hasLogged(_ marker: String) -> Bool {
    LogFile.read(log, from: logOffset).contains(marker)
  }
}

/// A service that failed to start, with the end of its log.
struct StartupFailure: Error {
  let service: RunningService
  let how: String

  var report: String {
    "inspect: \(service.entry.service.rawValue) \(how) during start-up. Last lines of \(service.log.path):\n"
      + service.logTail() + "\n"
  }
}

enum LogFile {
  static func read(_ url: URL, from offset: Int) -> String {
    guard let handle = try? FileHandle(forReadingFrom: url) else { return "" }
    defer { try? handle.close() }
    try? handle.seek(toOffset: UInt64(offset))
    return String(decoding: (try? handle.readToEnd()) ?? Data(), as: UTF8.self)
  }
}

/// Finds the service binaries: `$INSPECT_BIN_DIR`, else the directory of the running `inspect`.
struct BinaryLocator {
  let directory: URL

  init(environment: [String: String]) throws {
    if let configured = environment["INSPECT_BIN_DIR"], !configured.isEmpty {
      directory = URL(fileURLWithPath: configured, isDirectory: true)
    } else {
      let executable =
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        ?? CommandLine.arguments[0]
      directory = URL(fileURLWithPath: executable).deletingLastPathComponent()
    }
    for service in InspectService.allCases where !FileManager.default.isExecutableFile(atPath: path(of: service)) {
      throw ValidationError(
        "cannot find the \(service.binaryName) binary in \(directory.path): build with `swift build` "
          + "or point INSPECT_BIN_DIR at the directory that holds the five service binaries")
    }
  }

  func path(of service: InspectService) -> String {
    directory.appendingPathComponent(service.binaryName).path
  }
}
