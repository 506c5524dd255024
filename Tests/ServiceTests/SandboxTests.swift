import Foundation
import InspectKit
import InspectProtos
import InspectTestSupport
import Logging
import Testing

@testable import SandboxService

/// A data directory with the demo repository's remote, and a local driver over it.
struct SandboxFixture {
  let directory: TemporaryDirectory
  let driver: LocalDriver
  let repository = try! RepositoryName("local/demo")

  init() throws {
    directory = try TemporaryDirectory("inspect-sandbox")
    let source = try #require(DemoRepository.source(environment: [:], start: URL(fileURLWithPath: #filePath)))
    try DemoRepository.ensureRemote(in: directory.url, from: source)
    driver = LocalDriver(paths: SandboxPaths(directory.url), logger: Logger(label: "test"))
  }

  func withSandbox<T>(limits: SandboxLimits? = nil, _ body: (Sandbox) async throws -> T) async throws -> T {
    let image = try await driver.image(for: repository, branch: "inspect/none", fallback: "main")
    let sandbox = try await driver.createSandbox(from: image, repository: repository, limits: limits)
    let result: Result<T, any Error>
    do {
      result = .success(try await body(sandbox))
    } catch {
      result = .failure(error)
    }
    await driver.terminate(sandbox)
    directory.remove()
    return try result.get()
  }
}

@Suite("Sandboxes on the local driver: isolation, files, commands and git", .serialized)
struct SandboxTests {
  @Test("inside a sandbox only lo exists, pid 1 is not the host's init, and writes stay out of the image")
  func isolation() async throws {
    let fixture = try SandboxFixture()
    try await fixture.withSandbox { sandbox in
      let interfaces = try await fixture.driver.exec(
        sandbox, command: "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '", timeout: .seconds(10))
      #expect(String(decoding: interfaces.stdout, as: UTF8.self).split(separator: "\n") == ["lo"])
      let init1 = try await fixture.driver.exec(
        sandbox, command: "tr '\\0' ' ' < /proc/1/cmdline", timeout: .seconds(10))
      let hostInit = (try? String(contentsOfFile: "/proc/1/cmdline", encoding: .utf8)) ?? ""
      #expect(!String(decoding: init1.stdout, as: UTF8.self).isEmpty)
      #expect(String(decoding: init1.stdout, as: UTF8.self) != hostInit.replacingOccurrences(of: "\0", with: " "))
      let write = try await fixture.driver.exec(
        sandbox, command: "echo scratch > made-in-sandbox.txt", timeout: .seconds(10))
      #expect(write.succeeded)
      let imageFile = fixture.driver.paths.image(sandbox.image.id).appendingPathComponent(
        "workspace/made-in-sandbox.txt")
      #expect(!FileManager.default.fileExists(atPath: imageFile.path))
      #expect(FileManager.default.fileExists(atPath: sandbox.merged.appendingPathComponent("made-in-sandbox.txt").path))
      let nonce = try await fixture.driver.exec(sandbox, command: "cat /inspect/nonce", timeout: .seconds(10))
      #expect(
        String(decoding: nonce.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
          == sandbox.image.nonce)
      let remount = try await fixture.driver.exec(
        sandbox, command: "mount -o remount,rw /inspect", timeout: .seconds(10))
      #expect(!remount.succeeded)
      let network = try await fixture.driver.exec(
        sandbox, command: "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 9), 1)'",
        timeout: .seconds(10))
      #expect(!network.succeeded)
    }
  }

  @Test("the demo's tests fail in a fresh sandbox, and a command that outlives its timeout is killed")
  func commands() async throws {
    let fixture = try SandboxFixture()
    try await fixture.withSandbox { sandbox in
      let tests = try await fixture.driver.exec(sandbox, command: "python3 -m unittest", timeout: .seconds(60))
      #expect(tests.exitCode == 1)
      #expect(tests.combinedText.contains("FAILED (errors=1)"))
      let slow = try await fixture.driver.exec(sandbox, command: "sleep 30", timeout: .milliseconds(300))
      #expect(slow.timedOut)
      #expect(slow.duration < .seconds(5))
    }
  }

  @Test("file tools stay inside the workspace: absolute paths, .. and symlinks out are refused")
  func confinement() async throws {
    let fixture = try SandboxFixture()
    try await fixture.withSandbox { sandbox in
      let workspace = Workspace(sandbox)
      #expect(throws: ToolFailure.self) { try workspace.resolve("/etc/passwd") }
      #expect(throws: ToolFailure.self) { try workspace.resolve("../../etc/passwd") }
      #expect(throws: ToolFailure.self) { try workspace.resolve("a/../../x") }
      _ = try await fixture.driver.exec(sandbox, command: "ln -s /etc escape", timeout: .seconds(10))
      #expect(throws: ToolFailure.self) { try workspace.resolve("escape/passwd") }
      #expect(try workspace.resolve("calc.py").lastPathComponent == "calc.py")
      #expect(try workspace.resolve("new/dir/file.txt").path.hasSuffix("merged/new/dir/file.txt"))
    }
  }

  @Test("commit and push: the session branch in the remote has the change, by the prompt's author")
  func commitAndPush() async throws {
    let fixture = try SandboxFixture()
    try await fixture.withSandbox { sandbox in
      let calc = sandbox.merged.appendingPathComponent("calc.py")
      let fixed = try String(contentsOf: calc, encoding: .utf8)
        .replacingOccurrences(
          of: "    return sum(numbers) / len(numbers)", with: "    return sum(numbers) / len(numbers) if numbers else 0"
        )
      try fixed.write(to: calc, atomically: true, encoding: .utf8)
      let pushed = try await fixture.driver.commitAndPush(
        sandbox, repository: fixture.repository, branch: "inspect/ses-0-test", message: "Average of nothing is 0",
        author: ("Ada", "ada@example.com"), committer: ("Inspect", "bot@inspect.local"))
      let result = try #require(pushed)
      let remote = DemoRepository.remote(in: fixture.directory.url).path
      let log = try await Git.run([
        "--git-dir", remote, "log", "-1", "--format=%an <%ae> | %cn | %s", "inspect/ses-0-test",
      ])
      #expect(log == "Ada <ada@example.com> | Inspect | Average of nothing is 0")
      #expect(try await Git.run(["--git-dir", remote, "rev-parse", "inspect/ses-0-test"]) == result.commit)
      let nothing = try await fixture.driver.commitAndPush(
        sandbox, repository: fixture.repository, branch: "inspect/ses-0-test", message: "again",
        author: ("Ada", "ada@example.com"), committer: ("Inspect", "bot@inspect.local"))
      #expect(nothing == nil)
    }
  }

  @Test("a background process outlives the command that started it, and that command still returns at once")
  func backgroundProcess() async throws {
    let fixture = try SandboxFixture()
    try await fixture.withSandbox { sandbox in
      // The loop keeps the command's output pipe open; the command must end anyway.
      let start = try await fixture.driver.exec(
        sandbox, command: "(while true; do date +%s%N > /tmp/tick; sleep 0.05; done) & echo started",
        timeout: .seconds(10))
      #expect(start.succeeded)
      #expect(start.duration < .seconds(2))
      #expect(String(decoding: start.stdout, as: UTF8.self).contains("started"))
      let ticks = try await fixture.driver.exec(
        sandbox, command: "cat /tmp/tick; sleep 0.3; cat /tmp/tick", timeout: .seconds(10))
      let values = String(decoding: ticks.stdout, as: UTF8.self).split(separator: "\n")
      #expect(values.count == 2)
      #expect(values.first != values.last)
    }
  }

  @Test("terminating a sandbox kills its whole process tree, unmounts it and removes its cgroups")
  func terminateCleansUp() async throws {
    let fixture = try SandboxFixture()
    let image = try await fixture.driver.image(for: fixture.repository, branch: "inspect/none", fallback: "main")
    let sandbox = try await fixture.driver.createSandbox(from: image, repository: fixture.repository)
    _ = try await fixture.driver.exec(sandbox, command: "sleep 300 & sleep 301 & echo ok", timeout: .seconds(10))
    let members = sandbox.process.cgroup.pids
    if case .none = fixture.driver.cgroups {
      Issue.record("this machine should have cgroups for sandboxes: \(fixture.driver.cgroups)")
    } else {
      // init and the two sleeps.
      #expect(members.count >= 3)
      #expect(members.contains(sandbox.process.initPID))
    }
    await fixture.driver.terminate(sandbox)
    #expect(!ChildProcess.isAlive(sandbox.process.initPID))
    for pid in members { #expect(!ChildProcess.isAlive(pid)) }
    let mounts = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
    #expect(!mounts.contains(sandbox.merged.path))
    for directory in sandbox.process.cgroup.directories {
      #expect(!FileManager.default.fileExists(atPath: directory.path))
    }
    #expect(!FileManager.default.fileExists(atPath: sandbox.directory.path))
    fixture.directory.remove()
  }

  @Test("a fork bomb stops at the sandbox's pids limit and the host stays healthy")
  func forkBomb() async throws {
    let fixture = try SandboxFixture()
    try await fixture.withSandbox(limits: SandboxLimits(memoryBytes: 256 << 20, maxPids: 64, cpuMillis: 1000)) {
      sandbox in
      let bomb = try await fixture.driver.exec(
        sandbox, command: "bomb() { bomb | bomb & }; bomb; sleep 1; ls /proc | grep -c '^[0-9]'",
        timeout: .seconds(10))
      let counted =
        Int(
          String(decoding: bomb.stdout, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? "") ?? 0
      #expect(counted <= 64, "processes seen inside: \(counted)")
      #expect(sandbox.process.cgroup.pids.count <= 64)
      // The host can still start processes.
      let host = try await Git.run(["--version"])
      #expect(host.hasPrefix("git version"))
    }
  }

  @Test("allocating past the memory limit kills the allocation, not the host")
  func memoryLimit() async throws {
    let fixture = try SandboxFixture()
    try await fixture.withSandbox(limits: SandboxLimits(memoryBytes: 64 << 20, maxPids: 64, cpuMillis: 1000)) {
      sandbox in
      let hog = try await fixture.driver.exec(
        sandbox, command: "python3 -c 'x = bytearray(512 * 1024 * 1024); print(len(x))'", timeout: .seconds(30))
      #expect(!hog.succeeded)
      #expect(!String(decoding: hog.stdout, as: UTF8.self).contains("536870912"))
      // The sandbox itself survives and runs the next command.
      let next = try await fixture.driver.exec(sandbox, command: "echo alive", timeout: .seconds(10))
      #expect(String(decoding: next.stdout, as: UTF8.self) == "alive\n")
    }
  }

  @Test("a program that does not exist fails to start with the reason; the sandbox runs the next one")
  func missingProgram() async throws {
    let fixture = try SandboxFixture()
    try await fixture.withSandbox { sandbox in
      await #expect(throws: SandboxError.self) {
        try await sandbox.process.run(["/no/such/program"], timeout: .seconds(5))
      }
      let (_, events) = sandbox.process.start(["/no/such/program"])
      var failure: String?
      for await event in events { if case .failed(let reason) = event { failure = reason } }
      #expect(failure == "No such file or directory")
      let next = try await fixture.driver.exec(sandbox, command: "echo $((6 * 7))", timeout: .seconds(10))
      #expect(String(decoding: next.stdout, as: UTF8.self) == "42\n")
    }
  }

  @Test("when a sandbox's init dies, running commands end with the reason instead of hanging")
  func initDies() async throws {
    let fixture = try SandboxFixture()
    try await fixture.withSandbox { sandbox in
      let (_, events) = sandbox.process.start(["/bin/sh", "-c", "sleep 300"])
      kill(sandbox.process.initPID, SIGKILL)
      var last: CommandEvent?
      for await event in events { last = event }
      guard case .failed(let reason) = last else {
        Issue.record("expected .failed, got \(String(describing: last))")
        return
      }
      #expect(reason.contains("init exited"))
      #expect(!sandbox.process.isAlive)
    }
  }
}
