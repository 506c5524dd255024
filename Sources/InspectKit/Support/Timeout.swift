import Foundation
import Synchronization

/// Runs `body` and returns its result, or throws `timedOut()` once `limit` has passed — at that
/// moment, not when `body` gets round to noticing: `body` is cancelled, but a body that ignores
/// cancellation (a hung server, a blocked read) is left behind rather than waited for.
public func withTimeout<T: Sendable>(
  _ limit: Duration, timedOut: @escaping @Sendable () -> any Error,
  _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
  let outcome = FirstOutcome<T>()
  return try await withTaskCancellationHandler {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
      outcome.set(continuation)
      let work = Task {
        do {
          outcome.finish(.success(try await body()))
        } catch {
          outcome.finish(.failure(error))
        }
      }
      let timer = Task {
        try? await Task.sleep(for: limit)
        guard !Task.isCancelled else { return }
        outcome.finish(.failure(timedOut()))
        work.cancel()
      }
      outcome.onFinish {
        timer.cancel()
        work.cancel()
      }
    }
  } onCancel: {
    outcome.finish(.failure(CancellationError()))
  }
}

/// Resumes a continuation once, with whichever outcome comes first.
private final class FirstOutcome<T: Sendable>: Sendable {
  private struct State {
    var continuation: CheckedContinuation<T, any Error>?
    var early: Result<T, any Error>?
    var done = false
    var cleanup: (@Sendable () -> Void)?
  }

  private let state = Mutex(State())

  func set(_ continuation: CheckedContinuation<T, any Error>) {
    let early = state.withLock { state -> Result<T, any Error>? in
      if let early = state.early {
        state.done = true
        return early
      }
      state.continuation = continuation
      return nil
    }
    if let early { continuation.resume(with: early) }
  }

  func onFinish(_ cleanup: @escaping @Sendable () -> Void) {
    let run = state.withLock { state -> Bool in
      if state.done { return true }
      state.cleanup = cleanup
      return false
    }
    if run { cleanup() }
  }

  func finish(_ result: Result<T, any Error>) {
    let (continuation, cleanup) = state.withLock {
      state -> (CheckedContinuation<T, any Error>?, (@Sendable () -> Void)?) in
      guard !state.done else { return (nil, nil) }
      guard let continuation = state.continuation else {
        if state.early == nil { state.early = result }
        return (nil, nil)
      }
      state.done = true
      state.continuation = nil
      defer { state.cleanup = nil }
      return (continuation, state.cleanup)
    }
    continuation?.resume(with: result)
    cleanup?()
  }
}
