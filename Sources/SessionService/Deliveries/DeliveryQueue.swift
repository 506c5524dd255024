import Foundation
import GRPCCore
import InspectKit
import Logging
import ServiceLifecycle

/// Acts on what a ``DeliveryQueue`` stored.
protocol DeliveryHandler: Sendable {
  /// Acts on one stored delivery; the state and outcome are recorded. A thrown error that
  /// ``isTransient(_:)`` is tried again later; any other is recorded as failed.
  func process(_ delivery: WebhookDeliveryRecord) async throws -> (WebhookDeliveryRecord.State, String)
  /// Failures worth trying again: a peer unreachable, busy or rate limited.
  func isTransient(_ error: any Error) -> Bool
  /// Called once when a delivery failed for good, so that people can be told.
  func failedForGood(_ delivery: WebhookDeliveryRecord, outcome: String) async
  /// Deliveries with the same key are processed one after the other, in order; different keys
  /// at the same time. nil: the handler's common key (one at a time with all others without).
  func serialKey(_ delivery: WebhookDeliveryRecord) -> String?
  /// How long the failure asks to wait before trying again (a rate limit's `Retry-After`).
  func retryAfter(_ error: any Error) -> TimeInterval?
}

extension DeliveryHandler {
  func failedForGood(_ delivery: WebhookDeliveryRecord, outcome: String) async {}
  func serialKey(_ delivery: WebhookDeliveryRecord) -> String? { nil }
  func retryAfter(_ error: any Error) -> TimeInterval? { nil }
}

/// Stored deliveries (GitHub's webhooks, Slack's requests) processed in the background, oldest
/// first, and on start those a previous run left pending; transient failures are tried again
/// with backoff. Deliveries of different ``DeliveryHandler/serialKey(_:)`` run at the same time
/// (at most ``maxConcurrent`` keys), so one slow thread does not hold up another.
final class DeliveryQueue: Sendable {
  /// Transient failures are tried again this many times, after `retryDelay` × 2^(attempt − 1).
  static let maxAttempts = 5
  /// Keys processed at the same time, at most.
  static let maxConcurrent = 16

  let index: IndexDatabase
  let source: DeliverySource
  let retryDelay: Duration
  let logger: Logger
  private let wakeUps: AsyncStream<Void>
  private let wake: AsyncStream<Void>.Continuation

  init(index: IndexDatabase, source: DeliverySource, retryDelay: Duration, logger: Logger) {
    self.index = index
    self.source = source
    self.retryDelay = retryDelay
    self.logger = logger
    (wakeUps, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
  }

  /// Stores a delivery (false when its id was seen before) and, when `act`, wakes the loop;
  /// otherwise records it as ignored with `ignoredBecause`.
  func store(id: String, event: String, payload: Data, act: Bool, ignoredBecause: String) async throws -> Bool {
    guard try await index.storeDelivery(id: id, event: event, payload: payload, repeatFailed: source == .github)
    else { return false }
    if act {
      wake.yield()
    } else {
      try await index.finishDelivery(id: id, state: .ignored, outcome: ignoredBecause)
    }
    return true
  }

  /// Processes deliveries until the service shuts down.
  func run(_ handler: some DeliveryHandler) async {
    await withGracefulShutdownHandler {
      var timer: Task<Void, Never>?
      // Wakes the loop when the next retry is due.
      func arm(_ date: Date?) {
        timer?.cancel()
        guard let date else { return }
        let wake = self.wake
        timer = Task {
          try? await Task.sleep(for: .milliseconds(max(1, Int(date.timeIntervalSinceNow * 1000))))
          if !Task.isCancelled { wake.yield() }
        }
      }
      arm(await processPending(handler))
      for await _ in wakeUps { arm(await processPending(handler)) }
      timer?.cancel()
    } onGracefulShutdown: {
      self.wake.finish()
    }
  }

  /// Processes every pending delivery that is due, oldest first per key; returns when the next
  /// retry is due, if one waits.
  @discardableResult
  func processPending(_ handler: some DeliveryHandler) async -> Date? {
    let pending: (due: [WebhookDeliveryRecord], next: Date?)
    do {
      pending = try await index.pendingDeliveries(from: source)
    } catch {
      logger.error("could not read pending deliveries", metadata: ["error": "\(error)"])
      return Date().addingTimeInterval(retryDelay.seconds)
    }
    var groups: [String: [WebhookDeliveryRecord]] = [:]
    var order: [String] = []
    for delivery in pending.due {
      let key = handler.serialKey(delivery) ?? ""
      if groups[key] == nil { order.append(key) }
      groups[key, default: []].append(delivery)
    }
    var next = pending.next
    for batch in stride(from: 0, to: order.count, by: Self.maxConcurrent) {
      let keys = order[batch..<min(batch + Self.maxConcurrent, order.count)]
      let retries = await withTaskGroup(of: Date?.self) { group in
        for key in keys {
          let deliveries = groups[key] ?? []
          group.addTask {
            var next: Date?
            for delivery in deliveries {
              if let retryAt = await self.process(delivery, with: handler) { next = min(next ?? retryAt, retryAt) }
            }
            return next
          }
        }
        var earliest: Date?
        for await retryAt in group { if let retryAt { earliest = min(earliest ?? retryAt, retryAt) } }
        return earliest
      }
      if let retries { next = min(next ?? retries, retries) }
    }
    return next
  }

  /// Processes one delivery and records its outcome; when it is to be tried again, when.
  private func process(_ delivery: WebhookDeliveryRecord, with handler: some DeliveryHandler) async -> Date? {
    let (state, outcome): (WebhookDeliveryRecord.State, String)
    do {
      (state, outcome) = try await handler.process(delivery)
    } catch  where handler.isTransient(error) && delivery.attempts + 1 < Self.maxAttempts {
      let attempts = delivery.attempts + 1
      let backoff = retryDelay.seconds * Double(1 << (attempts - 1))
      let retryAt = Date().addingTimeInterval(max(backoff, handler.retryAfter(error) ?? 0))
      logger.notice(
        "delivery will be tried again",
        metadata: ["delivery": "\(delivery.id)", "attempt": "\(attempts)", "error": "\(error)"])
      try? await index.retryDelivery(
        id: delivery.id, attempts: attempts, notBefore: retryAt,
        outcome: "attempt \(attempts) failed (\(error)); trying again")
      return retryAt
    } catch {
      (state, outcome) = (.failed, "\(error)")
    }
    logger.info(
      "delivery processed",
      metadata: ["delivery": "\(delivery.id)", "event": "\(delivery.event)", "outcome": "\(state): \(outcome)"])
    if state == .failed { await handler.failedForGood(delivery, outcome: outcome) }
    do {
      try await index.finishDelivery(id: delivery.id, state: state, outcome: outcome)
    } catch {
      logger.error("could not record a delivery's outcome", metadata: ["error": "\(error)"])
    }
    return nil
  }
}
