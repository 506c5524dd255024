import SwiftProtobuf

extension Google_Protobuf_Duration {
  /// A Swift `Duration` as protobuf's, to the nanosecond (truncated below it).
  public init(rounding duration: Duration) {
    let (seconds, attoseconds) = duration.components
    self.init(seconds: seconds, nanos: Int32(attoseconds / 1_000_000_000))
  }
}
