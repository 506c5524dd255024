import Foundation
import GRPCCore
import Logging
import Prometheus

/// The Prometheus registry of one service and the RPC metrics every service records:
/// `rpc_server_requests_total{rpc_method, rpc_grpc_status_code}` and
/// `rpc_server_duration_seconds{rpc_method}` (OpenTelemetry's `rpc.server.duration`).
public final class RPCMetrics: Sendable {
  /// The registry `/metrics` renders; services register their own metrics here too.
  public let registry: PrometheusCollectorRegistry

  static let durationBuckets: [Duration] = [
    .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
    .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
    .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
  ]

  public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
    self.registry = registry
  }

  /// Records one finished RPC.
  public func record(method: MethodDescriptor, code: RPCError.Code?, duration: Duration) {
    let name = method.fullyQualifiedMethod
    registry.makeCounter(
      name: "rpc_server_requests_total",
      labels: [("rpc_method", name), ("rpc_grpc_status_code", Self.statusName(code))],
      help: "RPCs served, by method and final gRPC status."
    ).increment()
    registry.makeDurationHistogram(
      name: "rpc_server_duration_seconds",
      labels: [("rpc_method", name)],
      buckets: Self.durationBuckets,
      help: "Time from the start of an RPC to its final status."
    ).record(duration)
  }

  /// The Prometheus text exposition of everything in the registry.
  public func render() -> String {
    registry.emitToString()
  }

  /// The canonical upper-case name of a gRPC status (`OK` when `code` is nil).
  public static func statusName(_ code: RPCError.Code?) -> String {
    guard let code else { return "OK" }
    let names = [
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
      "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
      "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
    ]
    return names.indices.contains(code.rawValue) ? names[code.rawValue] : "UNKNOWN"
  }
}

/// Records every RPC of a server in ``RPCMetrics`` — its final status (also for streams, when
/// they end) and its duration — and logs it (`debug`; `error` for INTERNAL and UNKNOWN, which
/// are bugs). The log line carries the RPC's `trace.id`.
public struct ServerMetricsInterceptor: ServerInterceptor {
  let metrics: RPCMetrics
  let logger: Logger?

  public init(metrics: RPCMetrics, logger: Logger? = nil) {
    self.metrics = metrics
    self.logger = logger
  }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let clock = ContinuousClock()
    let start = clock.now
    let method = context.descriptor
    let (metrics, logger) = (self.metrics, self.logger)
    @Sendable func finish(_ code: RPCError.Code?, _ message: String = "") {
      let duration = clock.now - start
      metrics.record(method: method, code: code, duration: duration)
      guard let logger else { return }
      let level: Logger.Level = code == .internalError || code == .unknown ? .error : .debug
      logger.log(
        level: level, "rpc finished",
        metadata: [
          "rpc.method": "\(method.fullyQualifiedMethod)", "rpc.status": "\(RPCMetrics.statusName(code))",
          "rpc.duration_ms":
            "\(Double(duration.components.attoseconds) / 1e15 + Double(duration.components.seconds) * 1000)",
          "rpc.message": "\(message)",
        ])
    }
    let response: StreamingServerResponse<Output>
    do {
      response = try await next(request, context)
    } catch {
      finish(Self.code(of: error), "\(error)")
      throw error
    }
    switch response.accepted {
    case .failure(let error):
      finish(error.code, error.message)
      return response
    case .success(var contents):
      let producer = contents.producer
      contents.producer = { writer in
        do {
          let trailers = try await producer(writer)
          finish(nil)
          return trailers
        } catch {
          finish(Self.code(of: error), "\(error)")
          throw error
        }
      }
      return StreamingServerResponse(accepted: .success(contents))
    }
  }

  /// The status the executor will send for `error` (anything not an RPC error is `UNKNOWN`).
  static func code(of error: any Error) -> RPCError.Code {
    if let error = error as? RPCError { return error.code }
    if let error = error as? any RPCErrorConvertible { return error.rpcErrorCode }
    return .unknown
  }
}
