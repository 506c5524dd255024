import CSandbox
import Dispatch
import Foundation
import InspectKit
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Runs a host program to completion with a timeout, streaming its output as it comes.
///
/// The program writes to two files that are read as they grow (every 5 ms), and its exit is
/// waited for with a blocking `waitpid` on a dispatch thread, which ends the wait at once: no
/// pipe can hang the reader when a background child keeps it open, and nothing depends on
/// Foundation's `Process` noticing the exit. On timeout its whole process group is killed.
enum ProcessRunner {
  /// The same shape as a command in a sandbox.
  typealias Result = CommandResult

  enum Stream: Sendable, Hashable { case stdout, stderr }

  /// How often output and exit are checked.
  static let pollInterval: Duration = .milliseconds(5)

  /// Runs `executable` with `arguments`; `onOutput` sees each chunk as it arrives.
  static func run(
    _ executable: String, _ arguments: [String], environment: [String: String] = [:],
    timeout: Duration = .seconds(120), onOutput: (@Sendable (Stream, Data) -> Void)? = nil
  ) async throws -> Result {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("inspect-run-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let files = (stdout: directory.appendingPathComponent("stdout"), stderr: directory.appendingPathComponent("stderr"))
    let clock = ContinuousClock()
    let start = clock.now
    let child = try ChildProcess.spawn(
      executable: executable, arguments: arguments, environment: environment, stdout: files.stdout,
      stderr: files.stderr, detachment: .processGroup)
    var readers = (stdout: GrowingFile(files.stdout), stderr: GrowingFile(files.stderr))
    var output = (stdout: OutputBuffer(), stderr: OutputBuffer())
    func drain() {
      while let data = readers.stdout.readNew() {
        output.stdout.append(data)
        onOutput?(.stdout, data)
      }
      while let data = readers.stderr.readNew() {
        output.stderr.append(data)
        onOutput?(.stderr, data)
      }
    }
    var timedOut = false
    let exit = ExitWatch(child.pid)
    var code: Int32
    while true {
      if let status = exit.status {
        code =
          csandbox_exited(status) != 0 ? csandbox_exit_status(status) : 128 + csandbox_term_signal(status)
        break
      }
      drain()
      if clock.now - start > timeout || Task.isCancelled {
        timedOut = true
        kill(-child.pid, SIGKILL)
        kill(child.pid, SIGKILL)
      }
      await exit.wait(upTo: pollInterval)
    }
    // What a background child of the program writes later is not waited for.
    kill(-child.pid, SIGKILL)
    drain()
    if Task.isCancelled { throw CancellationError() }
    return Result(
      exitCode: code, stdout: output.stdout.data, stderr: output.stderr.data, timedOut: timedOut,
      duration: clock.now - start)
  }
}

/// Reads what was appended to a file since the last read.
private struct GrowingFile {
  let url: URL
  var offset: UInt64 = 0
  var handle: FileHandle?

  init(_ url: URL) { self.url = url }

  mutating func readNew() -> Data? {
    if handle == nil { handle = try? FileHandle(forReadingFrom: url) }
    guard let handle else { return nil }
    try? handle.seek(toOffset: offset)
    // At most 1 MiB at a time: a chatty program is streamed, not loaded whole.
    guard let data = try? handle.read(upToCount: 1 << 20), !data.isEmpty else { return nil }
    offset += UInt64(data.count)
    return data
  }
}

/// Waits for a child's exit with a blocking `waitpid` on a dispatch thread; `wait(upTo:)` returns
/// at the exit or after the given time, whichever comes first.
private final class ExitWatch: Sendable {
  private let state = Mutex<(status: Int32?, waiter: CheckedContinuation<Void, Never>?)>((nil, nil))

  init(_ pid: pid_t) {
    DispatchQueue.global().async { [self] in
      var status: Int32 = 0
      while waitpid(pid, &status, 0) < 0, errno == EINTR {}
      let waiter = state.withLock { state in
        state.status = status
        defer { state.waiter = nil }
        return state.waiter
      }
      waiter?.resume()
    }
  }

  var status: Int32? { state.withLock { $0.status } }

  func wait(upTo limit: Duration) async {
    await withCheckedContinuation { continuation in
      let exited = state.withLock { state -> Bool in
        guard state.status == nil else { return true }
        state.waiter = continuation
        return false
      }
      if exited {
        continuation.resume()
        return
      }
      Task { [self] in
        try? await Task.sleep(for: limit)
        let waiter = state.withLock { state in
          defer { state.waiter = nil }
          return state.waiter
        }
        waiter?.resume()
      }
    }
  }
}
