import Foundation
import Synchronization

/// Sandboxes-to-be whose slow part is done: an id, its directory, its cgroups with default
/// limits, and a ``SandboxLauncher`` already moved into them. On cgroup v1 the first write to a
/// group's `cgroup.procs` takes 2–15 ms here (one per hierarchy); a reserve keeps that off the
/// path of creating a sandbox, cold or for the warm pool. Taken ones are replaced in the
/// background.
final class LaunchReserve: Sendable {
  struct Slot: Sendable {
    var id: String
    var directory: URL
    var cgroup: SandboxCgroup
    var launcher: SandboxLauncher
  }

  private let size: Int
  private let make: @Sendable () throws -> Slot
  private let state = Mutex<(slots: [Slot], filling: Task<Void, Never>?, closed: Bool)>(([], nil, false))

  /// Keeps `size` slots made by `make` (0: none; every take makes one).
  init(size: Int, make: @escaping @Sendable () throws -> Slot) {
    self.size = size
    self.make = make
  }

  /// A ready slot, or one made now when none is ready; refills in the background.
  func take() throws -> Slot {
    let ready = state.withLock { $0.slots.isEmpty ? nil : $0.slots.removeFirst() }
    refill()
    return try ready ?? make()
  }

  /// Starts filling unless full, filling or closed.
  func refill() {
    state.withLock { state in
      guard !state.closed, state.filling == nil, state.slots.count < size else { return }
      state.filling = Task.detached(priority: .utility) { [self] in
        while true {
          let needed = self.state.withLock { !$0.closed && $0.slots.count < size }
          guard needed, let slot = try? make() else { break }
          let kept = self.state.withLock { state -> Bool in
            guard !state.closed else { return false }
            state.slots.append(slot)
            return true
          }
          if !kept { await Self.discard(slot) }
        }
        self.state.withLock { $0.filling = nil }
      }
    }
  }

  /// Frees every slot, after waiting for a fill in progress (so nothing is made after it
  /// returns); later takes make their own.
  func close() async {
    let (slots, filling) = state.withLock { state in
      state.closed = true
      defer { state.slots = [] }
      return (state.slots, state.filling)
    }
    await filling?.value
    for slot in slots { await Self.discard(slot) }
  }

  static func discard(_ slot: Slot) async {
    await slot.launcher.abandon()
    slot.cgroup.remove()
    try? FileManager.default.removeItem(at: slot.directory)
  }
}
