import InspectProtos
import Synchronization

/// The serving status of one process, per gRPC service name (`""` is the whole server), shared by
/// the `grpc.health.v1.Health` service, `/readyz` and the shutdown path.
///
/// Everything starts NOT_SERVING; the service host marks it SERVING once both ports are bound,
/// and ``drain()`` turns it back to NOT_SERVING and ends every `Watch` stream so that a graceful
/// shutdown is never held up by a health watcher.
public final class HealthStatusBoard: Sendable {
  public typealias Status = Grpc_Health_V1_HealthCheckResponse.ServingStatus

  private struct Watcher {
    var service: String
    var continuation: AsyncStream<Status>.Continuation
  }

  private struct State {
    var statuses: [String: Status]
    var watchers: [Int: Watcher] = [:]
    var nextWatcherID = 0
    var draining = false
    /// Watch RPCs that have not returned yet (still counted after a drain).
    var openStreams = 0
  }

  private let state: Mutex<State>

  /// Creates a board that knows the server (`""`) and `services`, all NOT_SERVING.
  public init(services: [String]) {
    var statuses: [String: Status] = ["": .notServing]
    for service in services { statuses[service] = .notServing }
    state = Mutex(State(statuses: statuses))
  }

  /// The status of `service`, or nil when this server does not know it.
  public func status(of service: String) -> Status? {
    state.withLock { $0.statuses[service] }
  }

  /// True when the whole server is SERVING.
  public var isServing: Bool { status(of: "") == .serving }

  /// Marks every known service SERVING or NOT_SERVING (ignored once draining).
  public func setAll(serving: Bool) {
    update { statuses in
      for key in statuses.keys { statuses[key] = serving ? .serving : .notServing }
    }
  }

  /// Sets one service's status (ignored once draining); an unknown name becomes known.
  public func set(_ service: String, serving: Bool) {
    update { $0[service] = serving ? .serving : .notServing }
  }

  /// A stream of `service`'s status: the current one at once, then each change. Unknown services
  /// report SERVICE_UNKNOWN (and change if they become known). Only the newest status is kept
  /// for a slow reader. The stream ends when the server drains.
  public func watch(_ service: String) -> AsyncStream<Status> {
    let (stream, continuation) = AsyncStream.makeStream(of: Status.self, bufferingPolicy: .bufferingNewest(1))
    let id: Int? = state.withLock { state in
      continuation.yield(state.statuses[service] ?? .serviceUnknown)
      guard !state.draining else { return nil }
      let id = state.nextWatcherID
      state.nextWatcherID += 1
      state.watchers[id] = Watcher(service: service, continuation: continuation)
      return id
    }
    guard let id else {
      continuation.finish()
      return stream
    }
    continuation.onTermination = { [weak self] _ in
      self?.state.withLock { _ = $0.watchers.removeValue(forKey: id) }
    }
    return stream
  }

  /// Marks everything NOT_SERVING for good and ends every watch stream.
  public func drain() {
    let watchers: [Watcher] = state.withLock { state in
      state.draining = true
      for key in state.statuses.keys { state.statuses[key] = .notServing }
      defer { state.watchers = [:] }
      return Array(state.watchers.values)
    }
    for watcher in watchers {
      watcher.continuation.yield(.notServing)
      watcher.continuation.finish()
    }
  }

  /// Runs a Watch RPC's body, counted as open until it returns, so that ``waitForWatchersToFinish``
  /// waits until its last status is written (a stream's termination handler runs as soon as it
  /// is finished, before its reader has taken the last status).
  public func whileWatching<T>(_ body: () async throws -> T) async rethrows -> T {
    state.withLock { $0.openStreams += 1 }
    defer { state.withLock { $0.openStreams -= 1 } }
    return try await body()
  }

  /// After ``drain()``: waits (at most `timeout`) until every watcher has read its last status,
  /// so that stopping the server does not cut a Watch off before its NOT_SERVING is sent.
  public func waitForWatchersToFinish(timeout: Duration) async {
    let deadline = ContinuousClock.now + timeout
    while state.withLock({ $0.openStreams > 0 }), ContinuousClock.now < deadline {
      try? await Task.sleep(for: .milliseconds(5))
    }
  }

  private func update(_ change: (inout [String: Status]) -> Void) {
    let notifications: [(AsyncStream<Status>.Continuation, Status)] = state.withLock { state in
      guard !state.draining else { return [] }
      let before = state.statuses
      change(&state.statuses)
      return state.watchers.values.compactMap { watcher in
        let now = state.statuses[watcher.service]
        guard let now, now != before[watcher.service] else { return nil }
        return (watcher.continuation, now)
      }
    }
    for (continuation, status) in notifications { continuation.yield(status) }
  }
}
