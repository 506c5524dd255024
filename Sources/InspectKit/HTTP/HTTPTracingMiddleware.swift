import GRPCCore
import Hummingbird

/// Continues the caller's W3C trace from the `traceparent` HTTP header (or starts one) for the
/// whole request, so the Gateway's log lines and its calls to internal services carry it.
public struct HTTPTracingMiddleware<Context: RequestContext>: RouterMiddleware {
  public init() {}

  public func handle(
    _ request: Request, context: Context,
    next: (Request, Context) async throws -> Response
  ) async throws -> Response {
    var metadata = Metadata()
    if let header = request.headers[.init("traceparent")!] {
      metadata.addString(header, forKey: TraceMetadata.key)
    }
    return try await TraceMetadata.$current.withValue(TraceMetadata.continuing(from: metadata)) {
      try await next(request, context)
    }
  }
}
