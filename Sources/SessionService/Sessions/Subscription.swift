import InspectProtos
import Synchronization

/// One live subscriber of a session: a bounded queue of event batches between the session,
/// which must never wait for it, and the RPC that sends them.
///
/// When more than `limit` events are waiting, the subscriber is cut off: it gets what is queued,
/// then a `resync` telling it to reconnect after the last event it was given, and its stream ends.
final class Subscription: Sendable {
  enum Item: Sendable {
    case events([Inspect_Session_V1_SessionEvent])
    case resync(afterSeq: UInt64)
  }

  private struct State {
    var waiting = 0
    var lastQueuedSeq: UInt64
    var closed = false
  }

  let stream: AsyncStream<Item>
  private let continuation: AsyncStream<Item>.Continuation
  private let state: Mutex<State>
  let limit: Int

  /// - Parameter after: the last seq this subscriber already has (replayed or asked for).
  init(after: UInt64, limit: Int = 10_000) {
    (stream, continuation) = AsyncStream.makeStream(of: Item.self)
    state = Mutex(State(lastQueuedSeq: after))
    self.limit = limit
  }

  /// Queues events newer than what the subscriber has; cuts it off when it is too far behind.
  /// Returns false once the subscription is closed (the session can forget it).
  @discardableResult
  func offer(_ events: [Inspect_Session_V1_SessionEvent]) -> Bool {
    enum Action {
      case none, send([Inspect_Session_V1_SessionEvent]), cutOff(UInt64)
    }
    let action: Action = state.withLock { state in
      guard !state.closed else { return .none }
      let fresh = events.filter { $0.seq > state.lastQueuedSeq }
      guard let last = fresh.last else { return .send([]) }
      if state.waiting + fresh.count > limit {
        state.closed = true
        return .cutOff(state.lastQueuedSeq)
      }
      state.waiting += fresh.count
      state.lastQueuedSeq = last.seq
      return .send(fresh)
    }
    switch action {
    case .none:
      return false
    case .send(let fresh):
      if !fresh.isEmpty { continuation.yield(.events(fresh)) }
      return true
    case .cutOff(let afterSeq):
      continuation.yield(.resync(afterSeq: afterSeq))
      continuation.finish()
      return false
    }
  }

  /// The sender took `count` events off the queue.
  func consumed(_ count: Int) {
    state.withLock { $0.waiting -= count }
  }

  /// Ends the stream (the session is going away, or the subscriber left).
  func close() {
    state.withLock { $0.closed = true }
    continuation.finish()
  }

  var isClosed: Bool { state.withLock { $0.closed } }
}
