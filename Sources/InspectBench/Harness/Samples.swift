import Foundation
import InspectKit

#if canImport(Glibc)
  import Glibc
#endif

/// Durations measured by a benchmark, in nanoseconds, and their percentiles in milliseconds.
struct Samples: Sendable {
  private(set) var nanoseconds: [Int64] = []

  init(_ nanoseconds: [Int64] = []) {
    self.nanoseconds = nanoseconds
  }

  var count: Int { nanoseconds.count }

  mutating func append(_ value: Int64) {
    nanoseconds.append(value)
  }

  mutating func append(_ duration: Duration) {
    nanoseconds.append(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
  }

  mutating func append(contentsOf other: Samples) {
    nanoseconds.append(contentsOf: other.nanoseconds)
  }

  /// The value below which `fraction` of the samples lie (nearest rank), in milliseconds; 0 when
  /// there are none.
  func percentileMilliseconds(_ fraction: Double) -> Double {
    guard !nanoseconds.isEmpty else { return 0 }
    let ordered = nanoseconds.sorted()
    let rank = Int((fraction * Double(ordered.count - 1)).rounded())
    return Double(ordered[min(ordered.count - 1, max(0, rank))]) / 1_000_000
  }

  var p50: Double { percentileMilliseconds(0.5) }
  var p99: Double { percentileMilliseconds(0.99) }
}

/// Times one operation with the monotonic clock.
func measure<T>(_ samples: inout Samples, _ operation: () async throws -> T) async rethrows -> T {
  let start = ContinuousClock.now
  let result = try await operation()
  samples.append(ContinuousClock.now - start)
  return result
}

/// `CLOCK_MONOTONIC` in nanoseconds: the stand-in writes it into the events it sends, and the
/// subscribers in the same process subtract it from their own reading on arrival.
enum MonotonicClock {
  static func nanoseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
  }
}

/// The one line a benchmark prints: `bench NAME key=value …`, keys in the order given
/// (`docs/CONTRACTS.md` pins the first ones of each benchmark).
struct BenchLine {
  let name: String
  private var pairs: [(String, String)] = []

  init(_ name: String) {
    self.name = name
  }

  /// A value in milliseconds (two decimals).
  mutating func milliseconds(_ key: String, _ value: Double) {
    pairs.append((key, String(format: "%.2f", value)))
  }

  mutating func number(_ key: String, _ value: Double, decimals: Int = 2) {
    pairs.append((key, String(format: "%.\(decimals)f", value)))
  }

  mutating func count(_ key: String, _ value: Int) {
    pairs.append((key, String(value)))
  }

  var text: String {
    (["bench", name] + pairs.map { "\($0.0)=\($0.1)" }).joined(separator: " ")
  }
}
