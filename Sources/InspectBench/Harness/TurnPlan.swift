import InspectProtos
import Synchronization

/// What the SandboxService stand-in does with the next turn SessionService starts.
struct TurnPlan: Sendable {
  /// When set, the turn waits for this gate to open before it streams anything (the turn stays
  /// open meanwhile, so later prompts queue). A gate never opened holds the turn until it is
  /// stopped or the connection goes.
  var gate: Gate?
  /// How many `text_delta` events to stream before `turn_finished`.
  var events: Int
  /// Events per second on a drift-free schedule (event i is due at start + i/rate); nil sends
  /// each as soon as SessionService has taken the previous one.
  var rate: Double?

  /// Holds the turn open until `gate` opens, then finishes it at once.
  static func hold(until gate: Gate) -> TurnPlan {
    TurnPlan(gate: gate, events: 0, rate: nil)
  }
}

/// The bench's in-memory control over its SandboxService stand-in: the plan for new turns and
/// what it has seen.
final class StandInController: Sendable {
  private struct State {
    var plan = TurnPlan(gate: nil, events: 0, rate: nil)
    var started = 0
    var finished = 0
  }

  private let state = Mutex(State())

  /// The plan every turn started from now on follows.
  func setPlan(_ plan: TurnPlan) {
    state.withLock { $0.plan = plan }
  }

  /// Called by the stand-in when a `StartTurn` arrives: counts it and returns its plan.
  func turnStarted() -> TurnPlan {
    state.withLock { state in
      state.started += 1
      return state.plan
    }
  }

  func turnFinished() {
    state.withLock { $0.finished += 1 }
  }

  var startedTurns: Int { state.withLock { $0.started } }
  var finishedTurns: Int { state.withLock { $0.finished } }

  /// Polls until `count` turns have started; throws after `timeout`.
  func waitForStartedTurns(_ count: Int, timeout: Duration) async throws {
    let deadline = ContinuousClock.now + timeout
    while startedTurns < count {
      guard ContinuousClock.now < deadline else {
        throw BenchError(
          "the stand-in saw \(startedTurns) of \(count) turns start within \(timeout) (is SessionService calling it?)")
      }
      try await Task.sleep(for: .milliseconds(5))
    }
  }
}

extension Inspect_Session_V1_TextDelta {
  /// The text the stand-in sends: the event's index and its send time (``MonotonicClock``).
  static func stamped(index: Int, nanoseconds: Int64) -> Inspect_Session_V1_TextDelta {
    .with { $0.text = "\(index) \(nanoseconds)" }
  }

  /// The send time written by ``stamped(index:nanoseconds:)``, if this is such a delta.
  var sentNanoseconds: Int64? {
    guard let space = text.firstIndex(of: " ") else { return nil }
    return Int64(text[text.index(after: space)...])
  }
}
