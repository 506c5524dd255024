import Synchronization

/// A one-way barrier: tasks wait until it opens (or they are cancelled); once open it stays open.
final class Gate: Sendable {
  private struct State {
    var open = false
    var nextID = 0
    var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    /// Waiters cancelled before they parked.
    var cancelled: Set<Int> = []
  }

  private let state = Mutex(State())

  var isOpen: Bool { state.withLock { $0.open } }

  func open() {
    let waiters = state.withLock { state in
      state.open = true
      defer { state.waiters = [:] }
      return Array(state.waiters.values)
    }
    for waiter in waiters { waiter.resume() }
  }

  /// Returns once the gate is open, or at once when the task is cancelled.
  func wait() async {
    let id = state.withLock { state in
      state.nextID += 1
      return state.nextID
    }
    await withTaskCancellationHandler {
      await withCheckedContinuation { continuation in
        let resumeNow = state.withLock { state in
          if state.open || state.cancelled.remove(id) != nil { return true }
          state.waiters[id] = continuation
          return false
        }
        if resumeNow { continuation.resume() }
      }
    } onCancel: {
      let waiter = state.withLock { state in
        guard let waiter = state.waiters.removeValue(forKey: id) else {
          state.cancelled.insert(id)
          return CheckedContinuation<Void, Never>?.none
        }
        return waiter
      }
      waiter?.resume()
    }
  }
}

/// A counter shared by tasks, with a way to wait until it reaches a value.
final class Tally: Sendable {
  private let value = Mutex(0)

  func increment(by amount: Int = 1) {
    value.withLock { $0 += amount }
  }

  var current: Int { value.withLock { $0 } }

  /// Polls every 5 ms until the count reaches `target`; throws `BenchError` after `timeout`.
  func wait(for target: Int, timeout: Duration, what: String) async throws {
    let deadline = ContinuousClock.now + timeout
    while current < target {
      guard ContinuousClock.now < deadline else {
        throw BenchError("timed out after \(timeout) waiting for \(what) (\(current) of \(target))")
      }
      try await Task.sleep(for: .milliseconds(5))
    }
  }
}

/// A benchmark could not run; the message says what went wrong.
struct BenchError: Error, CustomStringConvertible {
  let description: String

  init(_ description: String) {
    self.description = description
  }
}
