import Foundation
import InspectKit

#if canImport(Glibc)
  import Glibc
#endif

/// Runs a host program to completion with a timeout, streaming its output as it comes.
///
/// The program writes to two files that are read as they grow, and its exit is polled with
/// `waitpid`: no pipe can hang the reader when a background child keeps it open, and nothing
/// depends on Foundation's `Process` noticing the exit. On timeout its whole process group is
/// killed.
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
    var output = (stdout: Data(), stderr: Data())
    func drain() {
      if let data = readers.stdout.readNew() {
        output.stdout.append(data)
        onOutput?(.stdout, data)
      }
      if let data = readers.stderr.readNew() {
        output.stderr.append(data)
        onOutput?(.stderr, data)
      }
    }
    var timedOut = false
    var code: Int32
    while true {
      if let exited = child.exitCodeIfExited() {
        code = exited
        break
      }
      drain()
      if clock.now - start > timeout || Task.isCancelled {
        timedOut = true
        kill(-child.pid, SIGKILL)
        kill(child.pid, SIGKILL)
      }
      try? await Task.sleep(for: pollInterval)
    }
    // What a background child of the program writes later is not waited for.
    kill(-child.pid, SIGKILL)
    drain()
    if Task.isCancelled { throw CancellationError() }
    return Result(
      exitCode: code, stdout: output.stdout, stderr: output.stderr, timedOut: timedOut, duration: clock.now - start)
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
    guard let data = try? handle.readToEnd(), !data.isEmpty else { return nil }
    offset += UInt64(data.count)
    return data
  }
}
