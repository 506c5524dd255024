import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// A child process started with `posix_spawn`, its output appended to a log file. Used by
/// `inspect up` to start the services and by tests to start binaries.
///
/// Foundation's `Process` is avoided: its `waitUntilExit()` polls slowly and it cannot start a
/// child in a new session, which a detached `inspect up` needs so the services outlive it.
public struct ChildProcess: Sendable {
  public let pid: pid_t

  /// A handle on an existing process (one `inspect up` started earlier, say).
  public init(pid: pid_t) {
    self.pid = pid
  }

  /// How the child relates to the launcher's terminal.
  public enum Detachment: Sendable {
    /// Own process group: Ctrl-C in the launcher's terminal does not reach it directly, so the
    /// launcher can stop the services in order.
    case processGroup
    /// Own session: it keeps running after the launcher exits (`inspect up --detach`).
    case session
  }

  /// Starts `executable` with `arguments` and exactly `environment`, standard input from
  /// /dev/null and standard output and error appended to `logFile`.
  public static func spawn(
    executable: String, arguments: [String] = [], environment: [String: String],
    logFile: URL, detachment: Detachment
  ) throws -> ChildProcess {
    try spawn(
      executable: executable, arguments: arguments, environment: environment, stdout: logFile, stderr: nil,
      detachment: detachment)
  }

  /// Like the other `spawn`, with standard output and standard error in separate files (`stderr`
  /// nil: both in `stdout`).
  public static func spawn(
    executable: String, arguments: [String] = [], environment: [String: String],
    stdout: URL, stderr: URL?, detachment: Detachment
  ) throws -> ChildProcess {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, stdout.path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    if let stderr {
      posix_spawn_file_actions_addopen(&actions, 2, stderr.path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    } else {
      posix_spawn_file_actions_adddup2(&actions, 1, 2)
    }
    // Nothing else the launcher has open (sockets, files being written) leaks into the child.
    Self.closeFrom?(&actions, 3)

    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    // POSIX_SPAWN_SETPGROUP (0x02) and glibc's POSIX_SPAWN_SETSID (0x80) are macros Swift
    // does not import.
    let flags: Int16 = detachment == .session ? 0x80 : 0x02
    posix_spawnattr_setflags(&attributes, flags | 0x08 /* POSIX_SPAWN_SETSIGMASK */)
    var emptyMask = sigset_t()
    sigemptyset(&emptyMask)
    posix_spawnattr_setsigmask(&attributes, &emptyMask)
    if detachment == .processGroup { posix_spawnattr_setpgroup(&attributes, 0) }

    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
      argv.forEach { free($0) }
      envp.forEach { free($0) }
    }
    var pid: pid_t = 0
    var result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
    // ETXTBSY: a script just written is still open in a child that another thread is starting
    // (between its fork and its exec); that passes in milliseconds.
    for _ in 0..<50 where result == ETXTBSY {
      usleep(10_000)
      result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
    }
    guard result == 0 else {
      throw ConfigurationError("cannot start \(executable): \(String(cString: strerror(result)))")
    }
    return ChildProcess(pid: pid)
  }

  /// Reaps the child if it has exited and describes how ("exited with status 1", "was killed
  /// by signal 9"); for a process that is not our child, says "exited" once it is gone.
  public func exitStatusIfExited() -> String? {
    var status: Int32 = 0
    let result = waitpid(pid, &status, WNOHANG)
    guard result == pid else { return result == -1 && errno == ECHILD && !isAlive ? "exited" : nil }
    return Self.describe(status)
  }

  /// Reaps our child if it has exited: its exit code, or 128 + the signal that killed it.
  public func exitCodeIfExited() -> Int32? {
    var status: Int32 = 0
    guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
    let signal = status & 0x7f
    return signal == 0 ? (status >> 8) & 0xff : 128 + signal
  }

  /// True while a process with this pid exists (and is not a zombie).
  public var isAlive: Bool { Self.isAlive(pid) }

  public static func isAlive(_ pid: pid_t) -> Bool {
    guard kill(pid, 0) == 0 || errno == EPERM else { return false }
    // A zombie still answers kill(0); /proc tells it apart.
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
      let close = stat.lastIndex(of: ")")
    else { return true }
    let state = stat[stat.index(close, offsetBy: 2)...].first
    return state != "Z" && state != "X"
  }

  public func signal(_ signal: Int32) {
    kill(pid, signal)
  }

  /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34+), which Swift's Glibc module does
  /// not import; looked up once at run time.
  private static let closeFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else {
      return nil
    }
    return unsafeBitCast(
      symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
  }()

  static func describe(_ status: Int32) -> String {
    let signal = status & 0x7f
    if signal == 0 { return "exited with status \((status >> 8) & 0xff)" }
    return "was killed by signal \(signal)"
  }
}

/// Free TCP ports on the loopback interface, for `inspect up` with port 0 and for tests.
///
/// Ports come from 20000–32767, below Linux's ephemeral range (32768–60999), so that an outgoing
/// connection cannot take a port between the moment it is picked and the moment a service binds
/// it; no port is handed out twice by one process.
public enum FreePort {
  private static let handedOut = Mutex<Set<Int>>([])

  /// A port in 20000–32767 that nobody listens on now and that this process has not handed out.
  public static func pick() throws -> Int {
    for _ in 0..<1000 {
      let port = Int.random(in: 20000...32767)
      let fresh = handedOut.withLock { $0.insert(port).inserted }
      if fresh, isBindable(port) { return port }
    }
    throw ConfigurationError("found no free port in 20000-32767 on 127.0.0.1")
  }

  static func isBindable(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &address) { pointer in
      pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
      }
    }
  }
}
