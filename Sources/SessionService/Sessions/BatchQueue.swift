import Synchronization

/// A queue between producers that must never wait and one consumer that takes everything
/// waiting at once: the consumer's batches grow with its backlog (group commit, fan-out batching).
final class BatchQueue<Element: Sendable>: Sendable {
  private struct State {
    var items: [Element] = []
    var finished = false
    var waiter: CheckedContinuation<[Element]?, Never>?
  }

  private let state = Mutex(State())

  /// Adds elements and returns how many are waiting; once the queue is finished, drops them and
  /// returns nil.
  @discardableResult
  func push(contentsOf elements: some Collection<Element>) -> Int? {
    let (waiter, batch, count): (CheckedContinuation<[Element]?, Never>?, [Element], Int?) = state.withLock { state in
      guard !state.finished else { return (nil, [], nil) }
      guard !elements.isEmpty else { return (nil, [], state.items.count) }
      state.items.append(contentsOf: elements)
      guard let waiter = state.waiter else { return (nil, [], state.items.count) }
      state.waiter = nil
      defer { state.items = [] }
      return (waiter, state.items, 0)
    }
    waiter?.resume(returning: batch)
    return count
  }

  @discardableResult
  func push(_ element: Element) -> Int? { push(contentsOf: CollectionOfOne(element)) }

  /// How many elements wait for the consumer.
  var count: Int { state.withLock { $0.items.count } }

  /// Ends the queue: the consumer still gets what is waiting, then nil.
  func finish() {
    let waiter = state.withLock { state -> CheckedContinuation<[Element]?, Never>? in
      state.finished = true
      defer { state.waiter = nil }
      return state.waiter
    }
    waiter?.resume(returning: nil)
  }

  /// Everything waiting (at least one element), or nil once finished and drained. Cancelling
  /// the consumer finishes the queue.
  func next() async -> [Element]? {
    await withTaskCancellationHandler {
      await withCheckedContinuation { (continuation: CheckedContinuation<[Element]?, Never>) in
        let ready: [Element]?? = state.withLock { state in
          if !state.items.isEmpty {
            defer { state.items = [] }
            return .some(state.items)
          }
          if state.finished || Task.isCancelled { return .some(nil) }
          state.waiter = continuation
          return .none
        }
        if let ready { continuation.resume(returning: ready) }
      }
    } onCancel: {
      finish()
    }
  }
}
