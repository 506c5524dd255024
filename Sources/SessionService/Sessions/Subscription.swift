import InspectProtos
import Synchronization

/// One live subscriber of a session: a bounded queue of events between the session, which must
/// never wait for it, and the RPC that sends them. The sender takes everything waiting at once,
/// so a subscriber that is behind gets larger batches rather than more messages.
///
/// When more than `limit` events are waiting, the subscriber is cut off: it gets what is queued,
/// then a `resync` telling it to reconnect after the last event it was given, and its stream ends.
final class Subscription: Sendable {
  enum Item: Sendable {
    case events([Inspect_Session_V1_SessionEvent])
    case resync(afterSeq: UInt64)
  }

  private enum Entry: Sendable {
    case event(Inspect_Session_V1_SessionEvent)
    case resync(UInt64)
  }

  private struct State {
    var lastQueuedSeq: UInt64
    var closed = false
    /// A resync taken off the queue behind events, to be sent after them.
    var heldResync: UInt64?
  }

  private let queue = BatchQueue<Entry>()
  private let state: Mutex<State>
  let limit: Int

  /// - Parameter after: the last seq this subscriber already has (replayed or asked for).
  init(after: UInt64, limit: Int = 10_000) {
    state = Mutex(State(lastQueuedSeq: after))
    self.limit = limit
  }

  /// Queues events newer than what the subscriber has; cuts it off when it is too far behind.
  /// Returns false once the subscription is closed (the session can forget it).
  @discardableResult
  func offer(_ events: [Inspect_Session_V1_SessionEvent]) -> Bool {
    state.withLock { state in
      guard !state.closed else { return false }
      let fresh = events.filter { $0.seq > state.lastQueuedSeq }
      guard let last = fresh.last else { return true }
      if queue.count + fresh.count > limit {
        state.closed = true
        queue.push(.resync(state.lastQueuedSeq))
        queue.finish()
        return false
      }
      state.lastQueuedSeq = last.seq
      queue.push(contentsOf: fresh.map(Entry.event))
      return true
    }
  }

  /// The next response to send: every event waiting (in order), or the resync; nil when the
  /// stream is over.
  func next() async -> Item? {
    if let held = state.withLock({ state in
      defer { state.heldResync = nil }; return state.heldResync
    }) {
      return .resync(afterSeq: held)
    }
    guard let entries = await queue.next() else { return nil }
    var events: [Inspect_Session_V1_SessionEvent] = []
    events.reserveCapacity(entries.count)
    for entry in entries {
      switch entry {
      case .event(let event): events.append(event)
      case .resync(let after):
        // Send what came before it first; the resync is the last entry ever queued.
        if events.isEmpty { return .resync(afterSeq: after) }
        state.withLock { $0.heldResync = after }
      }
    }
    return .events(events)
  }

  /// Ends the stream (the session is going away, or the subscriber left).
  func close() {
    state.withLock { $0.closed = true }
    queue.finish()
  }
}
