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
}

extension DeliveryHandler {
  func failedForGood(_ delivery: WebhookDeliveryRecord, outcome: String) async {}
}

/// Stored deliveries (GitHub's webhooks, Slack's requests) processed in the background, oldest
/// first, and on start those a previous run left pending; transient failures are tried again
/// with backoff.
final class DeliveryQueue: Sendable {
  /// Transient failures are tried again this many times, after `retryDelay` × 2^(attempt − 1).
  static let maxAttempts = 5

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
    guard try await index.storeDelivery(id: id, event: event, payload: payload) else { return false }
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

  /// Processes every pending delivery that is due, oldest first; returns when the next retry is
  /// due, if one waits.
  @discardableResult
  func processPending(_ handler: some DeliveryHandler) async -> Date? {
    let pending: (due: [WebhookDeliveryRecord], next: Date?)
    do {
      pending = try await index.pendingDeliveries(from: source)
    } catch {
      logger.error("could not read pending deliveries", metadata: ["error": "\(error)"])
      return Date().addingTimeInterval(retryDelay.seconds)
    }
    var next = pending.next
    for delivery in pending.due {
      let (state, outcome): (WebhookDeliveryRecord.State, String)
      do {
        (state, outcome) = try await handler.process(delivery)
      } catch  where handler.isTransient(error) && delivery.attempts + 1 < Self.maxAttempts {
        let attempts = delivery.attempts + 1
        let retryAt = Date().addingTimeInterval(retryDelay.seconds * Double(1 << (attempts - 1)))
        logger.notice(
          "delivery will be tried again",
          metadata: ["delivery": "\(delivery.id)", "attempt": "\(attempts)", "error": "\(error)"])
        try? await index.retryDelivery(
          id: delivery.id, attempts: attempts, notBefore: retryAt,
          outcome: "attempt \(attempts) failed (\(error)); trying again")
        next = min(next ?? retryAt, retryAt)
        continue
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
    }
    return next
  }
}
