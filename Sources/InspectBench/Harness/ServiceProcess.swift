import Foundation
import InspectKit
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// The SessionService the session benchmarks run.
typealias SessionServiceProcess = ServiceProcess

/// A real service process (`SessionService`, `SandboxService`) on loopback with its own data
/// directory, started with ``ChildProcess`` and found through the `listening grpc=HOST:PORT …`
/// line it prints.
struct ServiceProcess: Sendable {
  let child: ChildProcess
  let grpc: HostAndPort
  /// The HTTP port from the `listening` line (`http=`, or `admin=`).
  var http: HostAndPort? = nil
  let dataDirectory: URL
  /// Its standard error (the log).
  let log: URL

  /// Starts `<binDirectory>/SessionService` on free ports with `dataDirectory`, calling the
  /// SandboxService at `sandbox`; returns once it prints its `listening` line.
  static func start(
    binDirectory: URL, dataDirectory: URL, sandbox: HostAndPort, logLevel: String,
    timeout: Duration = .seconds(60)
  ) async throws -> ServiceProcess {
    try await start(
      "SessionService", binDirectory: binDirectory, dataDirectory: dataDirectory,
      environment: ["INSPECT_SANDBOX_ADDR": sandbox.description], logLevel: logLevel, timeout: timeout)
  }

  /// Starts `<binDirectory>/<service>` on free ports with `dataDirectory` and `environment`
  /// (added to this process's, without its `INSPECT_*` and `OPENAI_*` variables); returns once
  /// it prints its `listening` line.
  static func start(
    _ service: String, binDirectory: URL, dataDirectory: URL, environment extra: [String: String],
    logLevel: String, timeout: Duration = .seconds(60)
  ) async throws -> ServiceProcess {
    let folder = dataDirectory.deletingLastPathComponent()
    let output = folder.appendingPathComponent("\(service).out")
    let log = folder.appendingPathComponent("\(service).log")
    var environment = ProcessInfo.processInfo.environment.filter {
      !$0.key.hasPrefix("INSPECT_") && !$0.key.hasPrefix("OPENAI_")
    }
    environment.merge(extra) { $1 }
    let child = try ChildProcess.spawn(
      executable: binDirectory.appendingPathComponent(service).path,
      arguments: [
        "--data-dir", dataDirectory.path, "--host", "127.0.0.1", "--grpc-port", "0", "--admin-port", "0",
        "--log-level", logLevel,
      ],
      environment: environment, stdout: output, stderr: log, detachment: .processGroup)
    ChildGuard.watch(child.pid)
    let deadline = ContinuousClock.now + timeout
    while true {
      if let how = child.exitStatusIfExited() {
        throw BenchError("\(service) \(how) during start-up:\n\(tail(of: log))")
      }
      if let address = listeningAddress(in: output) {
        return ServiceProcess(
          child: child, grpc: address,
          http: listeningAddress(in: output, field: "http=")
            ?? listeningAddress(in: output, field: "admin="), dataDirectory: dataDirectory, log: log)
      }
      guard ContinuousClock.now < deadline else {
        child.signal(SIGKILL)
        throw BenchError("\(service) did not print its listening line within \(timeout):\n\(tail(of: log))")
      }
      try await Task.sleep(for: .milliseconds(10))
    }
  }

  /// `grpc=HOST:PORT` (or another field's address) from the `listening` line, once it is there.
  private static func listeningAddress(in output: URL, field name: String = "grpc=") -> HostAndPort? {
    guard let text = try? String(contentsOf: output, encoding: .utf8),
      let line = text.split(separator: "\n").first(where: { $0.hasPrefix("listening ") }),
      let field = line.split(separator: " ").first(where: { $0.hasPrefix(name) })
    else { return nil }
    return HostAndPort(String(field.dropFirst(name.count)))
  }

  /// The last lines of `file`, for error messages.
  static func tail(of file: URL, lines: Int = 20) -> String {
    let text = (try? String(contentsOf: file, encoding: .utf8)) ?? ""
    return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
  }

  /// Its resident memory (`VmRSS` in `/proc/<pid>/status`), in kB.
  func residentKilobytes() throws -> Int {
    let status = try String(contentsOfFile: "/proc/\(child.pid)/status", encoding: .utf8)
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
      let value = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap({ Int($0) })
    else { throw BenchError("no VmRSS in /proc/\(child.pid)/status") }
    return value
  }

  /// CPU time (user + system) it has used so far, in seconds.
  func cpuSeconds() throws -> Double {
    try CPUTime.seconds(ofProcess: "\(child.pid)")
  }

  /// SIGTERM, up to `grace` to exit, then SIGKILL; reaps it.
  func stop(grace: Duration = .seconds(5)) async {
    child.signal(SIGTERM)
    let deadline = ContinuousClock.now + grace
    while child.exitStatusIfExited() == nil, child.isAlive, ContinuousClock.now < deadline {
      try? await Task.sleep(for: .milliseconds(20))
    }
    if child.isAlive {
      child.signal(SIGKILL)
      while child.exitStatusIfExited() == nil, child.isAlive {
        try? await Task.sleep(for: .milliseconds(20))
      }
    }
    ChildGuard.forget()
  }
}

/// CPU time of a process from `/proc/<pid>/stat` (fields 14 and 15: user and system ticks).
enum CPUTime {
  static func seconds(ofProcess pid: String) throws -> Double {
    let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
    // The command name (field 2) may hold spaces; the fields after it start past its ')'.
    guard let close = stat.lastIndex(of: ")") else { throw BenchError("cannot read /proc/\(pid)/stat") }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else {
      throw BenchError("cannot read the CPU times in /proc/\(pid)/stat")
    }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
  }

  /// This bench process's own CPU time.
  static func ownSeconds() throws -> Double {
    try seconds(ofProcess: "self")
  }
}

/// Kills the SessionService the bench started when the bench itself is interrupted: the child
/// runs in its own process group, so Ctrl-C in the terminal does not reach it.
enum ChildGuard {
  private static let pid = Atomic<Int32>(0)

  static func watch(_ child: Int32) {
    pid.store(child, ordering: .sequentiallyConsistent)
    for signal in [SIGINT, SIGTERM] {
      _ = Glibc.signal(signal) { received in
        let child = ChildGuard.pid.load(ordering: .sequentiallyConsistent)
        if child > 0 { kill(child, SIGKILL) }
        _exit(128 + received)
      }
    }
  }

  static func forget() {
    pid.store(0, ordering: .sequentiallyConsistent)
  }
}

/// Where the service binaries are: `$INSPECT_BIN_DIR`; else the directory of this binary when
/// `SessionService` is beside it (a `swift build` puts every product there); else what
/// `swift build --show-bin-path` prints.
enum BinaryDirectory {
  static func resolve() async throws -> URL {
    let environment = ProcessInfo.processInfo.environment
    if let configured = environment["INSPECT_BIN_DIR"], !configured.isEmpty {
      return URL(fileURLWithPath: configured, isDirectory: true)
    }
    let executable =
      (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    let own = URL(fileURLWithPath: executable).deletingLastPathComponent()
    if FileManager.default.isExecutableFile(atPath: own.appendingPathComponent("SessionService").path) { return own }
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("inspect-bench-bin-\(getpid())")
    defer { try? FileManager.default.removeItem(at: output) }
    let swift = try ChildProcess.spawn(
      executable: "/usr/bin/env", arguments: ["swift", "build", "--show-bin-path"], environment: environment,
      stdout: output, stderr: nil, detachment: .processGroup)
    var code = swift.exitCodeIfExited()
    while code == nil {
      try await Task.sleep(for: .milliseconds(50))
      code = swift.exitCodeIfExited()
    }
    let path =
      ((try? String(contentsOf: output, encoding: .utf8)) ?? "")
      .split(separator: "\n").last.map(String.init) ?? ""
    guard code == 0, !path.isEmpty else {
      throw BenchError("cannot find SessionService: set INSPECT_BIN_DIR (swift build --show-bin-path failed)")
    }
    return URL(fileURLWithPath: path, isDirectory: true)
  }
}
