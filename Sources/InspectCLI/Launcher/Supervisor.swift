import Foundation
import InspectKit
import UnixSignals

#if canImport(Glibc)
  import Glibc
#endif

/// Watches the services of a foreground `inspect up`: copies each log line to the terminal with
/// the service's name in front, and returns when a signal arrives or a service dies.
struct Supervisor {
  let running: [RunningService]

  enum Outcome: Sendable {
    case signalled
    case died(InspectService, how: String, lastLines: String)
  }

  func superviseInForeground() async -> Outcome {
    let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
    return await withTaskGroup(of: Outcome?.self) { group in
      group.addTask {
        for await _ in signals { return .signalled }
        return nil
      }
      group.addTask { await self.watchChildren() }
      group.addTask {
        await self.multiplexLogs()
        return nil
      }
      var outcome: Outcome = .signalled
      while let next = await group.next() {
        if let next {
          outcome = next
          break
        }
      }
      group.cancelAll()
      return outcome
    }
  }

  private func watchChildren() async -> Outcome? {
    while !Task.isCancelled {
      for service in running {
        if let how = service.child.exitStatusIfExited() {
          return .died(service.entry.service, how: how, lastLines: service.logTail())
        }
      }
      try? await Task.sleep(for: .milliseconds(200))
    }
    return nil
  }

  /// Prints new log lines of every service, prefixed with its name, until cancelled.
  private func multiplexLogs() async {
    let width = InspectService.allCases.map(\.shortName.count).max() ?? 0
    var offsets = running.map(\.logOffset)
    var partial = Array(repeating: "", count: running.count)
    while !Task.isCancelled {
      for (index, service) in running.enumerated() {
        let text = LogFile.read(service.log, from: offsets[index])
        guard !text.isEmpty else { continue }
        offsets[index] += text.utf8.count
        let combined = partial[index] + text
        var lines = combined.split(separator: "\n", omittingEmptySubsequences: false)
        partial[index] = String(lines.removeLast())
        let name = service.entry.service.shortName.padding(toLength: width, withPad: " ", startingAt: 0)
        for line in lines { StandardOutput.writeLine("\(name) | \(line)") }
      }
      try? await Task.sleep(for: .milliseconds(100))
    }
  }

  /// Stops the processes one after the other, in the order given (the Gateway first, so nothing
  /// new comes in while the rest drain): SIGTERM, up to `grace` to exit, then SIGKILL.
  static func stop(_ children: [(InspectService, ChildProcess)], grace: Duration = .seconds(15)) async {
    for (service, child) in children {
      child.signal(SIGTERM)
      let deadline = ContinuousClock.now + grace
      while child.exitStatusIfExited() == nil, child.isAlive, ContinuousClock.now < deadline {
        try? await Task.sleep(for: .milliseconds(20))
      }
      if child.isAlive {
        StandardError.write(
          "inspect: \(service.rawValue) (pid \(child.pid)) did not stop within \(grace); killing it\n")
        child.signal(SIGKILL)
        while child.exitStatusIfExited() == nil, child.isAlive {
          try? await Task.sleep(for: .milliseconds(20))
        }
      }
    }
  }
}
