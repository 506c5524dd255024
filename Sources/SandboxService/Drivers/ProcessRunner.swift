import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Runs a host program to completion with a timeout, streaming its output as it comes.
///
/// Foundation's `Process` with a termination handler (never `waitUntilExit()`, which polls
/// slowly); output is read until the process has exited and its pipes are drained.
enum ProcessRunner {
  struct Result: Sendable {
    var exitCode: Int32
    var stdout: Data
    var stderr: Data
    var timedOut: Bool
    var duration: Duration
    var succeeded: Bool { exitCode == 0 && !timedOut }
    var combinedText: String { String(decoding: stdout + stderr, as: UTF8.self) }
  }

  enum Stream: Sendable, Hashable { case stdout, stderr }

  /// Runs `executable` with `arguments`; `onOutput` sees each chunk as it arrives.
  static func run(
    _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
    directory: URL? = nil, timeout: Duration = .seconds(120),
    onOutput: (@Sendable (Stream, Data) -> Void)? = nil
  ) async throws -> Result {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    if let directory { process.currentDirectoryURL = directory }
    let stdoutPipe = Pipe()
    let stderrPipe = Pipe()
    process.standardOutput = stdoutPipe
    process.standardError = stderrPipe
    process.standardInput = FileHandle.nullDevice
    let collected = Collected()
    for (pipe, stream) in [(stdoutPipe, Stream.stdout), (stderrPipe, Stream.stderr)] {
      pipe.fileHandleForReading.readabilityHandler = { handle in
        let data = handle.availableData
        guard !data.isEmpty else {
          handle.readabilityHandler = nil
          collected.closed(stream)
          return
        }
        collected.append(data, to: stream)
        onOutput?(stream, data)
      }
    }
    let clock = ContinuousClock()
    let start = clock.now
    let exited = AsyncStream<Int32>.makeStream()
    process.terminationHandler = { exited.continuation.yield($0.terminationStatus) }
    try process.run()
    var timedOut = false
    let code: Int32 = try await withThrowingTaskGroup(of: Int32?.self) { group in
      group.addTask {
        for await code in exited.stream { return code }
        return nil
      }
      group.addTask {
        try await Task.sleep(for: timeout)
        return nil
      }
      defer { group.cancelAll() }
      while let next = try await group.next() {
        if let code = next { return code }
        break
      }
      // Timed out (or cancelled): kill the process group's leader and wait for its status.
      timedOut = true
      kill(process.processIdentifier, SIGKILL)
      for await code in exited.stream { return code }
      return -1
    }
    // Drain what the pipes still hold (a background child may keep them open: do not wait for it).
    await collected.waitForClose(timeout: .milliseconds(500))
    for pipe in [stdoutPipe, stderrPipe] { pipe.fileHandleForReading.readabilityHandler = nil }
    let (stdout, stderr) = collected.contents
    return Result(exitCode: code, stdout: stdout, stderr: stderr, timedOut: timedOut, duration: clock.now - start)
  }
}

/// Output gathered from a process's two pipes.
private final class Collected: Sendable {
  private struct State {
    var stdout = Data()
    var stderr = Data()
    var open: Set<ProcessRunner.Stream> = [.stdout, .stderr]
  }
  private let state = Mutex(State())

  func append(_ data: Data, to stream: ProcessRunner.Stream) {
    state.withLock {
      if stream == .stdout { $0.stdout.append(data) } else { $0.stderr.append(data) }
    }
  }

  func closed(_ stream: ProcessRunner.Stream) {
    _ = state.withLock { $0.open.remove(stream) }
  }

  var contents: (Data, Data) { state.withLock { ($0.stdout, $0.stderr) } }

  func waitForClose(timeout: Duration) async {
    let deadline = ContinuousClock.now + timeout
    while state.withLock({ !$0.open.isEmpty }), ContinuousClock.now < deadline {
      try? await Task.sleep(for: .milliseconds(5))
    }
  }
}
