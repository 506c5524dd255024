import Foundation
import NIOHTTP1

/// When a failed model call is tried again: up to `maxAttempts` in all, for errors that can
/// pass (``ModelError/retryable``), waiting what the provider asked (`retry-after-ms`,
/// `retry-after`) or else an exponential backoff with jitter. A call that already streamed
/// something to its caller is never retried (the caller would see it twice).
struct ModelRetryPolicy: Sendable {
  var maxAttempts = 3
  /// The first backoff; each later one doubles, up to `maxDelay`.
  var baseDelay: Duration = .milliseconds(500)
  var maxDelay: Duration = .seconds(20)
  /// A provider asking for a longer wait than this is not waited for: the error goes back.
  var longestWait: Duration = .seconds(60)

  static let `default` = ModelRetryPolicy()
  /// No retries (the first failure is the answer).
  static let none = ModelRetryPolicy(maxAttempts: 1)

  /// How long to wait before attempt `attempt + 1`, or nil when the call should not be tried
  /// again.
  func delay(after attempt: Int, error: ModelError) -> Duration? {
    guard error.retryable, attempt < maxAttempts else { return nil }
    if let asked = error.retryAfter { return asked <= longestWait ? asked : nil }
    let exponential = baseDelay * (1 << min(attempt - 1, 20))
    let capped = min(exponential, maxDelay)
    // Full jitter between half and all of the backoff, so callers that failed together spread out.
    return capped * Double.random(in: 0.5...1.0)
  }

  /// The wait a response asks for: `retry-after-ms` (milliseconds), else `retry-after` (seconds or
  /// an HTTP date).
  static func retryAfter(_ headers: HTTPHeaders, now: Date = Date()) -> Duration? {
    if let text = headers.first(name: "retry-after-ms"), let milliseconds = Double(text), milliseconds >= 0 {
      return .milliseconds(Int64(milliseconds))
    }
    guard let text = headers.first(name: "retry-after")?.trimmingCharacters(in: .whitespaces) else { return nil }
    if let seconds = Double(text), seconds >= 0 { return .milliseconds(Int64(seconds * 1000)) }
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "GMT")
    formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
    guard let date = formatter.date(from: text) else { return nil }
    return .milliseconds(Int64(max(0, date.timeIntervalSince(now)) * 1000))
  }
}
