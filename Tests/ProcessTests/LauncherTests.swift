import Foundation
import InspectKit
import InspectTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// `inspect up`, `status` and `down` as a person runs them: real processes on free ports.
@Suite("inspect up, status and down with real processes", .serialized)
struct LauncherTests {
  let inspect = Binaries.path("inspect")

  struct UpState: Decodable {
    struct Process: Decodable {
      var service: String
      var pid: Int32
    }
    var processes: [Process]
  }

  func state(_ directory: URL) throws -> UpState {
    try JSONDecoder().decode(UpState.self, from: Data(contentsOf: directory.appendingPathComponent("run/up.json")))
  }

  func waitUntilGone(_ pids: [Int32], timeout: Duration = .seconds(20)) async throws -> [Int32] {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
      let alive = pids.filter { ChildProcess.isAlive($0) }
      if alive.isEmpty { return [] }
      try await Task.sleep(for: .milliseconds(50))
    }
    return pids.filter { ChildProcess.isAlive($0) }
  }

  @Test("up --detach starts all five SERVING; status agrees; down stops them and leaves no process")
  func detachedLifecycle() async throws {
    try await TemporaryDirectory.with { directory in
      let environment = try freePortEnvironment()
      let up = try await runCommand(
        inspect, ["up", "--detach", "--data-dir", directory.path], environment: environment)
      #expect(up.status == 0, "\(up.output)")
      #expect(up.output.contains("all five services are SERVING"))
      #expect(up.output.contains("API token         insp_"))
      let pids = try state(directory).processes.map(\.pid)
      #expect(pids.count == 5)

      let status = try await runCommand(
        inspect, ["status", "--json", "--data-dir", directory.path], environment: environment)
      #expect(status.status == 0, "\(status.output)")
      let rows = try JSONSerialization.jsonObject(with: Data(status.output.utf8)) as? [[String: Any]] ?? []
      #expect(Set(rows.compactMap { $0["service"] as? String }) == Set(InspectService.allCases.map(\.rawValue)))
      #expect(
        rows.allSatisfy { $0["status"] as? String == "SERVING" && $0["version"] as? String == InspectVersion.current })
      let gatewayRow = rows.first { $0["service"] as? String == "Gateway" }
      #expect(gatewayRow?["grpc"] as? String == "127.0.0.1:\(environment["INSPECT_GATEWAY_GRPC_PORT"]!)")

      let again = try await runCommand(
        inspect, ["up", "--detach", "--data-dir", directory.path], environment: environment)
      #expect(again.status != 0)
      #expect(again.output.contains("already running"))

      let down = try await runCommand(inspect, ["down", "--data-dir", directory.path], environment: environment)
      #expect(down.status == 0, "\(down.output)")
      #expect(try await waitUntilGone(pids).isEmpty)
      #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("run/up.json").path))
      for service in InspectService.allCases {
        let log = try String(
          contentsOf: directory.appendingPathComponent("logs/\(service.shortName).log"), encoding: .utf8)
        #expect(log.contains("listening grpc=127.0.0.1:"), "\(service)")
        #expect(log.contains(": stopped"), "\(service) did not shut down gracefully")
      }

      let afterDown = try await runCommand(
        inspect, ["status", "--data-dir", directory.path], environment: environment)
      #expect(afterDown.status == 1)
      #expect(afterDown.output.contains("DOWN"))
    }
  }

  @Test("foreground up multiplexes the logs and SIGTERM stops every service cleanly")
  func foregroundStopsOnSignal() async throws {
    try await TemporaryDirectory.with { directory in
      let output = directory.appendingPathComponent("up.out")
      let up = try ChildProcess.spawn(
        executable: inspect, arguments: ["up", "--data-dir", directory.appendingPathComponent("data").path],
        environment: try freePortEnvironment(), logFile: output, detachment: .processGroup)
      try await waitFor(output, toContain: "Press Ctrl-C")
      let pids = try state(directory.appendingPathComponent("data")).processes.map(\.pid)
      try await waitFor(output, toContain: "session      | ")
      up.signal(SIGTERM)
      let code = try await waitForExit(up)
      #expect(code == 0)
      #expect(try await waitUntilGone(pids).isEmpty)
      let text = try String(contentsOf: output, encoding: .utf8)
      #expect(text.contains("all services stopped"))
      #expect(text.contains("gateway      | "))
    }
  }

  @Test("when a service dies, foreground up names it, shows its last log lines, stops the rest and exits 1")
  func serviceDeath() async throws {
    try await TemporaryDirectory.with { directory in
      let output = directory.appendingPathComponent("up.out")
      let data = directory.appendingPathComponent("data")
      let up = try ChildProcess.spawn(
        executable: inspect, arguments: ["up", "--data-dir", data.path],
        environment: try freePortEnvironment(), logFile: output, detachment: .processGroup)
      try await waitFor(output, toContain: "Press Ctrl-C")
      let processes = try state(data).processes
      let sandbox = try #require(processes.first { $0.service == "SandboxService" })
      kill(sandbox.pid, SIGKILL)
      let code = try await waitForExit(up)
      #expect(code == 1)
      let text = try String(contentsOf: output, encoding: .utf8)
      #expect(text.contains("SandboxService was killed by signal 9"))
      #expect(text.contains("Last lines of its log"))
      #expect(try await waitUntilGone(processes.map(\.pid)).isEmpty)
      // What a killed SandboxService leaves is cleaned by its next start over the same data
      // directory; this one is thrown away, so its sandboxes' cgroups are removed here.
      await removeSandboxCgroups(in: data)
    }
  }

  @Test("a service that cannot start (its port is taken) is named with its log, and nothing is left running")
  func startupFailure() async throws {
    try await TemporaryDirectory.with { directory in
      var environment = try freePortEnvironment()
      let blocker = try ListeningSocket()
      defer { blocker.close() }
      environment["INSPECT_SESSION_GRPC_PORT"] = String(blocker.port)
      let up = try await runCommand(
        inspect, ["up", "--detach", "--data-dir", directory.path], environment: environment)
      #expect(up.status == 1)
      #expect(up.output.contains("SessionService exited with status"), "\(up.output)")
      #expect(up.output.contains("during start-up"))
      #expect(up.output.lowercased().contains("address already in use"), "\(up.output)")
      #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("run/up.json").path))
      // Services start peers first, so the Gateway, which calls SessionService, never started.
      let logs = try FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent("logs").path)
      #expect(Set(logs) == ["model-router.log", "classifier.log", "sandbox.log", "session.log"])
      let leftovers = try await runCommand("/usr/bin/pgrep", ["-f", directory.path], environment: [:])
      #expect(leftovers.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(leftovers.output)")
    }
  }

  // MARK: - Helpers

  func waitFor(_ file: URL, toContain text: String, timeout: Duration = .seconds(60)) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
      if let content = try? String(contentsOf: file, encoding: .utf8), content.contains(text) { return }
      try await Task.sleep(for: .milliseconds(50))
    }
    let content = (try? String(contentsOf: file, encoding: .utf8)) ?? ""
    Issue.record("\(file.lastPathComponent) never contained '\(text)':\n\(content)")
    throw CancellationError()
  }

  func waitForExit(_ child: ChildProcess, timeout: Duration = .seconds(60)) async throws -> Int32 {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
      if let code = child.exitCodeIfExited() { return code }
      try await Task.sleep(for: .milliseconds(50))
    }
    child.signal(SIGKILL)
    Issue.record("pid \(child.pid) did not exit within \(timeout)")
    return -1
  }
}

/// A TCP socket listening on a free loopback port, to make a port busy.
struct ListeningSocket {
  let fd: Int32
  let port: Int

  init() throws {
    fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let fd = self.fd
    let result = withUnsafeMutablePointer(to: &address) { pointer in
      pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress -> Int32 in
        guard bind(fd, socketAddress, length) == 0, listen(fd, 1) == 0 else { return -1 }
        return getsockname(fd, socketAddress, &length)
      }
    }
    guard result == 0 else { throw ConfigurationError("cannot listen on a free port") }
    port = Int(UInt16(bigEndian: address.sin_port))
  }

  func close() { _ = Glibc.close(fd) }
}

@Suite("Trace context across real processes", .serialized)
struct TraceAcrossProcessesTests {
  @Test("a traceparent sent to the Gateway reaches SessionService's log lines")
  func traceReachesSessionLog() async throws {
    try await TemporaryDirectory.with { directory in
      var environment = try freePortEnvironment()
      environment["INSPECT_LOG_LEVEL"] = "debug"
      let inspect = Binaries.path("inspect")
      let up = try await runCommand(
        inspect, ["up", "--detach", "--data-dir", directory.path], environment: environment)
      #expect(up.status == 0, "\(up.output)")
      let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
      let status: Int
      do {
        let token = try String(contentsOf: directory.appendingPathComponent("dev-token"), encoding: .utf8)
          .trimmingCharacters(in: .whitespacesAndNewlines)
        let http = HTTPTestClient(HostAndPort(host: "127.0.0.1", port: Int(environment["INSPECT_GATEWAY_HTTP_PORT"]!)!))
        status = try await http.get(
          "/v1/me", headers: ["Authorization": "Bearer \(token)", "traceparent": "00-\(traceID)-00f067aa0ba902b7-01"]
        ).status
      } catch {
        _ = try? await runCommand(inspect, ["down", "--data-dir", directory.path], environment: environment)
        throw error
      }
      #expect(status == 200)
      let down = try await runCommand(inspect, ["down", "--data-dir", directory.path], environment: environment)
      #expect(down.status == 0)
      let log = try String(contentsOf: directory.appendingPathComponent("logs/session.log"), encoding: .utf8)
      let line = log.split(separator: "\n").first { $0.contains("inspect.session.v1.UserService/AuthenticateToken") }
      #expect(line?.contains("trace.id=\(traceID)") == true, "\(log)")
    }
  }
}

@Suite("inspect up when a service never becomes ready", .serialized)
struct SlowStartTests {
  /// A binary directory with the real services except SandboxService, which starts but never
  /// listens (a shell script that sleeps).
  func binariesWithHungSandbox(in directory: URL) throws -> URL {
    let bin = directory.appendingPathComponent("bin", isDirectory: true)
    try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
    for service in InspectService.allCases where service != .sandbox {
      try FileManager.default.createSymbolicLink(
        atPath: bin.appendingPathComponent(service.binaryName).path,
        withDestinationPath: Binaries.path(service.binaryName))
    }
    try FileManager.default.createSymbolicLink(
      atPath: bin.appendingPathComponent("inspect").path, withDestinationPath: Binaries.path("inspect"))
    let script = bin.appendingPathComponent("SandboxService")
    try "#!/bin/sh\necho hung sandbox starting\nexec sleep 871\n".write(to: script, atomically: true, encoding: .utf8)
    try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script.path)
    return bin
  }

  @Test("a service that never reports SERVING fails start-up after --timeout, naming it; nothing is left")
  func timeout() async throws {
    try await TemporaryDirectory.with { directory in
      let bin = try binariesWithHungSandbox(in: directory)
      var environment = try freePortEnvironment()
      environment["INSPECT_BIN_DIR"] = bin.path
      let data = directory.appendingPathComponent("data")
      let up = try await runCommand(
        bin.appendingPathComponent("inspect").path, ["up", "--detach", "--timeout", "2", "--data-dir", data.path],
        environment: environment)
      #expect(up.status == 1)
      #expect(up.output.contains("SandboxService did not report SERVING within 2 s"), "\(up.output)")
      #expect(up.output.contains("hung sandbox starting"))
      let leftovers = try await runCommand("/usr/bin/pgrep", ["-f", "sleep 871"], environment: [:])
      #expect(leftovers.output.isEmpty, "\(leftovers.output)")
    }
  }

  @Test("SIGTERM during start-up stops what had started and exits 130")
  func interrupted() async throws {
    try await TemporaryDirectory.with { directory in
      let bin = try binariesWithHungSandbox(in: directory)
      var environment = try freePortEnvironment()
      environment["INSPECT_BIN_DIR"] = bin.path
      let data = directory.appendingPathComponent("data")
      let output = directory.appendingPathComponent("up.out")
      let up = try ChildProcess.spawn(
        executable: bin.appendingPathComponent("inspect").path, arguments: ["up", "--data-dir", data.path],
        environment: environment, logFile: output, detachment: .processGroup)
      // Wait until the hung SandboxService (the third service) is recorded as started.
      let stateFile = data.appendingPathComponent("run/up.json")
      let deadline = ContinuousClock.now + .seconds(30)
      var pids: [Int32] = []
      while pids.count < 3, ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(20))
        pids =
          ((try? Data(contentsOf: stateFile)).flatMap {
            try? JSONDecoder().decode(LauncherTests.UpState.self, from: $0)
          })?
          .processes.map(\.pid) ?? []
      }
      #expect(pids.count == 3)
      up.signal(SIGTERM)
      var code: Int32?
      while code == nil, ContinuousClock.now < deadline {
        code = up.exitCodeIfExited()
        try await Task.sleep(for: .milliseconds(20))
      }
      #expect(code == 130, "\((try? String(contentsOf: output, encoding: .utf8)) ?? "")")
      #expect(pids.allSatisfy { !ChildProcess.isAlive($0) })
      #expect(!FileManager.default.fileExists(atPath: data.appendingPathComponent("run/up.json").path))
    }
  }
}

/// Removes the cgroups that `sandboxes/*/state.json` under `data` name, once empty (a killed
/// SandboxService's reserved launchers exit on their own when its end of their pipe closes).
func removeSandboxCgroups(in data: URL) async {
  let sandboxes = data.appendingPathComponent("sandboxes")
  let names = (try? FileManager.default.contentsOfDirectory(atPath: sandboxes.path)) ?? []
  for name in names {
    guard let json = FileManager.default.contents(atPath: sandboxes.appendingPathComponent("\(name)/state.json").path),
      let state = try? JSONSerialization.jsonObject(with: json) as? [String: Any],
      let cgroup = state["cgroup"] as? [String: Any], let directories = cgroup["directories"] as? [String]
    else { continue }
    for directory in directories {
      let path = directory.hasPrefix("file://") ? URL(string: directory)?.path ?? directory : directory
      for _ in 0..<200 where rmdir(path) != 0 && errno == EBUSY {
        try? await Task.sleep(for: .milliseconds(10))
      }
    }
  }
}
