import Foundation
import Logging
import Synchronization
import Testing

@testable import SessionService

/// SessionService's queue of stored deliveries (Slack's requests, GitHub's webhooks), over a real
/// SQLite index: what one thread waits on must not hold up another, and a thread's own
/// deliveries keep their order.
@Suite("DeliveryQueue: threads at the same time, each in order; retries and failures")
struct DeliveryQueueTests {
  /// A handler whose deliveries are keyed by their `event` (a thread), recording what happened.
  final class Recorder: DeliveryHandler {
    let log = Mutex<[String]>([])
    let attempts = Mutex<[String: Int]>([:])
    let failed = Mutex<[String]>([])
    /// What `process` does with a delivery (after recording that it started).
    let act: @Sendable (WebhookDeliveryRecord, Recorder) async throws -> Void

    init(_ act: @escaping @Sendable (WebhookDeliveryRecord, Recorder) async throws -> Void = { _, _ in }) {
      self.act = act
    }

    struct Busy: Error { var retryAfter: TimeInterval? }
    struct Broken: Error {}

    func record(_ line: String) { log.withLock { $0.append(line) } }
    func saw(_ line: String) -> Bool { log.withLock { $0.contains(line) } }

    func process(_ delivery: WebhookDeliveryRecord) async throws -> (WebhookDeliveryRecord.State, String) {
      attempts.withLock { $0[delivery.id, default: 0] += 1 }
      record("start \(delivery.id)")
      try await act(delivery, self)
      record("end \(delivery.id)")
      return (.done, "processed")
    }

    func isTransient(_ error: any Error) -> Bool { error is Busy }
    func retryAfter(_ error: any Error) -> TimeInterval? { (error as? Busy)?.retryAfter }
    func serialKey(_ delivery: WebhookDeliveryRecord) -> String? { delivery.event }
    func failedForGood(_ delivery: WebhookDeliveryRecord, outcome: String) async {
      failed.withLock { $0.append(delivery.id) }
    }
  }

  func queue() throws -> DeliveryQueue {
    DeliveryQueue(
      index: try IndexDatabase.inMemory(), source: .slack, retryDelay: .milliseconds(50),
      logger: Logger(label: "deliveries") { _ in SwiftLogNoOpLogHandler() })
  }

  /// Stores `(id, thread)` pairs, oldest first.
  func store(_ deliveries: [(String, String)], in queue: DeliveryQueue) async throws {
    for (id, thread) in deliveries {
      #expect(try await queue.store(id: id, event: thread, payload: Data("{}".utf8), act: true, ignoredBecause: ""))
      try await Task.sleep(for: .milliseconds(5))
    }
  }

  @Test("a thread that waits does not hold up another; the same thread's deliveries run one after the other")
  func threadsAtTheSameTime() async throws {
    let queue = try queue()
    try await store([("slack:a1", "A"), ("slack:b1", "B"), ("slack:a2", "A")], in: queue)
    let recorder = Recorder { delivery, recorder in
      // a1 waits until b1, of another thread, has run; were they processed one at a time, b1
      // could never start and a1 would give up.
      guard delivery.id == "slack:a1" else { return }
      let clock = ContinuousClock()
      let deadline = clock.now + .seconds(10)
      while !recorder.saw("end slack:b1") {
        guard clock.now < deadline else {
          recorder.record("a1 gave up waiting for b1")
          return
        }
        try await Task.sleep(for: .milliseconds(5))
      }
    }
    let next = await queue.processPending(recorder)
    #expect(next == nil)
    let log = recorder.log.withLock { $0 }
    #expect(!log.contains("a1 gave up waiting for b1"), "\(log)")
    // Thread A in order: a2 starts only after a1 ended.
    let (a1End, a2Start) = (log.firstIndex(of: "end slack:a1"), log.firstIndex(of: "start slack:a2"))
    #expect(a1End != nil && a2Start != nil && a1End! < a2Start!, "\(log)")
    for id in ["slack:a1", "slack:b1", "slack:a2"] {
      #expect(try await queue.index.delivery(id: id)?.state == .done, "\(id)")
    }
  }

  @Test("a busy peer is tried again no sooner than it asked; a broken one fails for good, said once")
  func retriesAndFailures() async throws {
    let queue = try queue()
    try await store([("slack:busy", "A"), ("slack:broken", "B")], in: queue)
    let recorder = Recorder { delivery, recorder in
      switch delivery.id {
      case "slack:busy" where recorder.attempts.withLock({ $0[delivery.id] }) == 1:
        throw Recorder.Busy(retryAfter: 0.5)
      case "slack:broken": throw Recorder.Broken()
      default: return
      }
    }
    let started = Date()
    let next = try #require(await queue.processPending(recorder))
    // Retry-After (0.5 s) outweighs the backoff (50 ms).
    let busy = try #require(try await queue.index.delivery(id: "slack:busy"))
    let notBefore = try #require(busy.notBefore)
    // (The index keeps dates to the millisecond.)
    #expect(busy.state == .pending && notBefore.timeIntervalSince(started) >= 0.499)
    #expect(abs(next.timeIntervalSince(notBefore)) < 0.002)
    #expect(try await queue.index.delivery(id: "slack:broken")?.state == .failed)
    #expect(recorder.failed.withLock { $0 } == ["slack:broken"])
    // Not due before then (asked as of just before, so that a slow machine cannot make it due).
    let early = try await queue.index.pendingDeliveries(from: .slack, now: notBefore.addingTimeInterval(-0.01))
    #expect(early.due.isEmpty && early.next == notBefore)
    try await Task.sleep(for: .milliseconds(max(0, Int(notBefore.timeIntervalSinceNow * 1000)) + 20))
    #expect(await queue.processPending(recorder) == nil)
    #expect(try await queue.index.delivery(id: "slack:busy")?.state == .done)
    #expect(recorder.attempts.withLock { $0 } == ["slack:busy": 2, "slack:broken": 1])
    #expect(recorder.failed.withLock { $0 } == ["slack:broken"])
  }
}
