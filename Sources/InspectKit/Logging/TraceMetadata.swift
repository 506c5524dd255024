import GRPCCore
import Logging
import W3CTraceContext

/// W3C trace context for the current task: set from the `traceparent` gRPC metadata of an
/// incoming call (or started afresh), copied into every outgoing call and into log metadata.
public enum TraceMetadata {
  /// The gRPC metadata key (and HTTP header) that carries the trace context.
  public static let key = "traceparent"

  /// The trace context of the RPC this task serves, if any.
  @TaskLocal public static var current: TraceContext?

  /// Puts `trace.id` and `span.id` of ``current`` into every log line.
  public static let provider = Logger.MetadataProvider {
    guard let context = current else { return [:] }
    return ["trace.id": "\(context.traceID)", "span.id": "\(context.spanID)"]
  }

  /// The context to use for a call that arrived with `metadata`: the caller's trace with a new
  /// span id, or a new sampled trace when the header is missing or malformed.
  public static func continuing(from metadata: Metadata) -> TraceContext {
    if let header = metadata[stringValues: key].first(where: { !$0.isEmpty }),
      let parent = try? TraceContext(traceParentHeaderValue: header)
    {
      return TraceContext(traceID: parent.traceID, spanID: .random(), flags: parent.flags, state: parent.state)
    }
    return TraceContext(traceID: .random(), spanID: .random(), flags: .sampled, state: TraceState())
  }
}
