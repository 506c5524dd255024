import GRPCCore
import InspectProtos

/// What one subscriber saw of a session's stream.
struct SubscriberReport: Sendable {
  /// The `after_seq` it first subscribed with.
  var after: UInt64
  /// The newest seq it received.
  var lastSeq: UInt64
  var received = 0
  /// Events skipped: a seq more than one past the previous one.
  var gaps = 0
  /// Where the first gap was, for the report.
  var firstGap: String?
  /// Events received again (seq not past the previous one).
  var duplicates = 0
  /// `resync` messages obeyed (each one a reconnect).
  var resyncs = 0
  /// The seq of the `turn_finished` it saw, if any.
  var finishedSeq: UInt64?
  /// Why it stopped early (an RPC error, or the stream ended without reason).
  var failure: String?
  /// Publish → receive, for each `text_delta` stamped by the stand-in.
  var latencies = Samples()

  /// Counts `event` (received at `now`): a duplicate, a gap, a stamped delta's latency, the end
  /// of the turn. `onTurnStarted` is called when it is `turn_started`.
  mutating func record(
    _ event: Inspect_Session_V1_SessionEvent, at now: Int64, latency: Bool = true, onTurnStarted: (() -> Void)? = nil
  ) {
    if event.seq <= lastSeq {
      duplicates += 1
      return
    }
    if event.seq > lastSeq + 1, firstGap == nil {
      firstGap = "after seq \(lastSeq) came seq \(event.seq)"
    }
    gaps += Int(event.seq - lastSeq - 1)
    lastSeq = event.seq
    received += 1
    switch event.kind {
    case .textDelta(let delta):
      if latency, let sent = delta.sentNanoseconds { latencies.append(now - sent) }
    case .turnStarted:
      onTurnStarted?()
    case .turnFinished:
      finishedSeq = event.seq
    default:
      break
    }
  }

  /// Events it should have had but never got, given the session's last seq, plus gaps.
  func lost(through last: UInt64) -> Int {
    gaps + (lastSeq < last ? Int(last - lastSeq) : 0)
  }
}

/// Follows one session with `Subscribe`, checking that every seq is exactly the previous one
/// plus one, and reconnecting after a `resync` as the protocol asks.
struct Subscriber: Sendable {
  enum Until: Sendable {
    case turnFinished
    case seq(UInt64)
  }

  let client: SessionClient
  let sessionID: String
  var recordLatency = true
  /// Called once when the subscriber sees `turn_started` (it is then live).
  var onTurnStarted: (@Sendable () -> Void)?

  func follow(after: UInt64, until stop: Until) async -> SubscriberReport {
    var report = SubscriberReport(after: after, lastSeq: after)
    var cursor = after
    while true {
      let outcome: (report: SubscriberReport, resyncAfter: UInt64?)
      do {
        outcome = try await client.sessions.subscribe(
          .with {
            $0.sessionID = sessionID
            $0.afterSeq = cursor
          }, metadata: client.metadata
        ) { [report] response in
          var report = report
          for try await message in response.messages {
            let now = MonotonicClock.nanoseconds()
            for event in message.events {
              report.record(event, at: now, latency: recordLatency, onTurnStarted: onTurnStarted)
              if isDone(report, stop) { return (report, nil) }
            }
            if message.hasResync {
              report.resyncs += 1
              return (report, message.resync.afterSeq)
            }
          }
          report.failure = "the stream ended at seq \(report.lastSeq) without a resync"
          return (report, nil)
        }
      } catch {
        report.failure = "\(error)"
        return report
      }
      report = outcome.report
      guard let resyncAfter = outcome.resyncAfter else { return report }
      cursor = resyncAfter
    }
  }

  private func isDone(_ report: SubscriberReport, _ stop: Until) -> Bool {
    switch stop {
    case .turnFinished: report.finishedSeq != nil
    case .seq(let last): report.lastSeq >= last
    }
  }
}
