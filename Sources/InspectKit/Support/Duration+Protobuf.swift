import SwiftProtobuf

extension Google_Protobuf_Duration {
  /// A Swift `Duration` as protobuf's, to the nanosecond (truncated below it).
  public init(rounding duration: Duration) {
    let (seconds, attoseconds) = duration.components
    self.init(seconds: seconds, nanos: Int32(attoseconds / 1_000_000_000))
  }
}

extension Duration {
  /// The duration in seconds, as a floating-point number.
  public var seconds: Double {
    Double(components.seconds) + Double(components.attoseconds) / 1e18
  }

  /// The duration in milliseconds, as a floating-point number.
  public var milliseconds: Double { seconds * 1000 }
}

extension Google_Protobuf_Duration {
  /// Protobuf's duration as a Swift `Duration`.
  public var duration: Duration { .seconds(seconds) + .nanoseconds(Int64(nanos)) }
}
