import CSandbox
import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// The processes of one live sandbox: bubblewrap (our child), the sandbox's init as its pid 1,
/// and the control socket to it. Every command the sandbox runs is a child of that init, inside
/// the sandbox's namespaces and cgroups, so background processes outlive the command that
/// started them, and killing init ends them all.
final class SandboxProcess: Sendable {
  /// Host pid of bubblewrap, which we started and must reap.
  let bwrapPID: Int32
  /// Host pid of the sandbox's pid 1.
  let initPID: Int32
  let connection: InitConnection
  let cgroup: SandboxCgroup
  private let ended = Mutex(false)

  private init(bwrapPID: Int32, initPID: Int32, connection: InitConnection, cgroup: SandboxCgroup) {
    self.bwrapPID = bwrapPID
    self.initPID = initPID
    self.connection = connection
    self.cgroup = cgroup
  }

  /// What bubblewrap mounts: the host's system directories read-only, the sandbox's files at
  /// `/workspace`, the image's metadata read-only at `/inspect`, a private `/tmp`, and init.
  static func arguments(workspace: String, meta: String, initBinary: String) -> [String] {
    [
      "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net", "--new-session", "--as-pid-1",
      "--cap-drop", "ALL", "--hostname", "sandbox", "--info-fd", "4",
      "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
      "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/sbin", "/sbin", "--ro-bind", "/etc", "/etc",
      "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
      "--bind", workspace, "/workspace", "--ro-bind", meta, "/inspect", "--ro-bind", initBinary, "/init",
      "--chdir", "/workspace", "--clearenv", "--setenv", "PATH", SandboxEnvironment.path,
      "/init",
    ]
  }

  /// Turns `launcher` (already in the sandbox's cgroups) into bubblewrap with init as the
  /// sandbox's pid 1. Throws (with bubblewrap's own words from `log`) when it does not come up.
  static func start(
    launcher: SandboxLauncher, workspace: URL, meta: URL, initBinary: URL, cgroup: SandboxCgroup, log: URL,
    label: String, timings: inout [String: Duration]
  ) async throws -> SandboxProcess {
    let clock = ContinuousClock()
    let began = clock.now
    let argv =
      ["/usr/bin/bwrap"] + arguments(workspace: workspace.path, meta: meta.path, initBinary: initBinary.path)
    let sent = launcher.send(argv)
    // bubblewrap writes {"child-pid": N} once the namespaces exist, then closes the pipe.
    let infoText = sent ? await readToEnd(launcher.info) : ""
    if !sent { close(launcher.info) }
    timings["namespaces"] = clock.now - began
    guard let initPID = childPID(in: infoText) else {
      close(launcher.control)
      kill(launcher.pid, SIGKILL)
      _ = await reap(launcher.pid)
      let said = (try? String(contentsOf: log, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
      throw SandboxError.failed("bubblewrap did not start the sandbox\(said.isEmpty ? "" : ": \(said)")")
    }
    return SandboxProcess(
      bwrapPID: launcher.pid, initPID: initPID, connection: InitConnection(socket: launcher.control, label: label),
      cgroup: cgroup)
  }

  /// Runs `argv` in the sandbox with `environment` (added to the sandbox's defaults).
  func start(
    _ argv: [String], environment: [String: String] = [:], directory: String = "/workspace", stdin: Int32? = nil
  ) -> (id: UInt64, events: AsyncStream<CommandEvent>) {
    let devNull = stdin == nil ? open("/dev/null", O_RDONLY | O_CLOEXEC) : -1
    defer { if devNull >= 0 { close(devNull) } }
    return connection.start(
      argv: argv, environment: SandboxEnvironment.defaults.merging(environment) { $1 }, directory: directory,
      stdin: stdin ?? devNull)
  }

  /// Kills every process of the sandbox and reaps bubblewrap. Idempotent.
  func terminate() async {
    guard
      ended.withLock({ ended in
        defer { ended = true }; return !ended
      })
    else { return }
    connection.closeConnection(reason: "the sandbox was terminated")
    kill(initPID, SIGKILL)
    _ = await Self.reap(bwrapPID)
    // The kernel empties the pid namespace once its init is gone; wait for it before the
    // groups are removed (a group with processes cannot be).
    let deadline = ContinuousClock.now + .seconds(5)
    while !cgroup.pids.isEmpty, ContinuousClock.now < deadline {
      for pid in cgroup.pids { kill(pid, SIGKILL) }
      try? await Task.sleep(for: .milliseconds(1))
    }
    cgroup.remove()
  }

  /// Whether init is still running.
  var isAlive: Bool { connection.closedReason == nil && kill(initPID, 0) == 0 }

  // MARK: - Helpers

  private static func childPID(in text: String) -> Int32? {
    guard let data = text.data(using: .utf8),
      let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
      let pid = object["child-pid"] as? Int
    else { return nil }
    return Int32(pid)
  }

  /// Reads `fd` to its end off the cooperative pool, then closes it.
  private static func readToEnd(_ fd: Int32) async -> String {
    await withCheckedContinuation { continuation in
      DispatchQueue.global().async {
        let (data, _) = InitConnection.readAvailable(fd)
        close(fd)
        continuation.resume(returning: String(decoding: data, as: UTF8.self))
      }
    }
  }

  /// Waits for our child `pid` off the cooperative pool; its waitpid status.
  static func reap(_ pid: Int32) async -> Int32 {
    await withCheckedContinuation { continuation in
      DispatchQueue.global().async {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        continuation.resume(returning: status)
      }
    }
  }
}

/// `inspect-sandbox-init --launch` waiting to become a sandbox's bubblewrap: started (and moved
/// into the sandbox's cgroups, which costs milliseconds on cgroup v1) before the sandbox is
/// needed, holding the other ends of the sandbox's control socket (its fd 3) and info pipe (fd 4);
/// it execs whatever argv it reads from fd 5.
struct SandboxLauncher: Sendable {
  let pid: Int32
  /// The host's end of the control socket.
  let control: Int32
  /// The read end of bubblewrap's `--info-fd` pipe.
  let info: Int32
  /// Where bubblewrap's arguments are written.
  let arguments: Int32

  /// Spawns the launcher with its standard output and error appended to `log`.
  static func spawn(initBinary: URL, log: URL) throws -> SandboxLauncher {
    var control: [Int32] = [-1, -1]
    var info: [Int32] = [-1, -1]
    var arguments: [Int32] = [-1, -1]
    guard csandbox_seqpacket_pair(&control) == 0 else {
      throw SandboxError.failed("cannot create the sandbox's control socket: \(String(cString: strerror(errno)))")
    }
    guard csandbox_pipe(&info) == 0, csandbox_pipe(&arguments) == 0 else {
      let reason = String(cString: strerror(errno))
      for fd in control + info + arguments where fd >= 0 { close(fd) }
      throw SandboxError.failed("cannot create a pipe: \(reason)")
    }
    let logFD = open(log.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    let argv = [initBinary.path, "--launch"]
    let cArguments = argv.map { strdup($0) } + [nil]
    let cEnvironment: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/bin:/bin"), nil]
    defer {
      cArguments.forEach { free($0) }
      cEnvironment.forEach { free($0) }
    }
    var pid: pid_t = 0
    let extra: [Int32] = [control[1], info[1], arguments[0]]
    let spawned = csandbox_spawn(initBinary.path, cArguments, cEnvironment, logFD, extra, 3, &pid)
    close(control[1])
    close(info[1])
    close(arguments[0])
    if logFD >= 0 { close(logFD) }
    guard spawned == 0 else {
      close(control[0])
      close(info[0])
      close(arguments[1])
      throw SandboxError.failed("cannot start the sandbox's launcher: \(String(cString: strerror(spawned)))")
    }
    return SandboxLauncher(pid: pid, control: control[0], info: info[0], arguments: arguments[1])
  }

  /// Writes `argv` (NUL-separated) and closes the pipe; false when the launcher is gone.
  func send(_ argv: [String]) -> Bool {
    var bytes: [UInt8] = []
    for argument in argv { bytes += Array(argument.utf8) + [0] }
    defer { close(arguments) }
    var done = 0
    while done < bytes.count {
      let written = bytes.withUnsafeBytes { Glibc.write(arguments, $0.baseAddress! + done, $0.count - done) }
      if written < 0, errno == EINTR { continue }
      guard written > 0 else { return false }
      done += written
    }
    return true
  }

  /// Kills and reaps a launcher that will not be used, closing its descriptors.
  func abandon() async {
    kill(pid, SIGKILL)
    for fd in [control, info, arguments] { close(fd) }
    _ = await SandboxProcess.reap(pid)
  }
}

/// The environment every command in a sandbox starts with.
enum SandboxEnvironment {
  static let path = "/usr/local/bin:/usr/bin:/bin"
  static let defaults: [String: String] = [
    "PATH": path, "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
  ]
}

/// What a finished command did.
struct CommandResult: Sendable {
  var exitCode: Int32
  var stdout: Data
  var stderr: Data
  var timedOut: Bool
  var duration: Duration
  /// Bytes of standard output dropped from its middle (more than the run's output limit).
  var stdoutDropped = 0
  var succeeded: Bool { exitCode == 0 && !timedOut }
  var combinedText: String { String(decoding: stdout + stderr, as: UTF8.self) }
}
