import Foundation
import Hummingbird

/// The admin endpoints every service serves (the Gateway on its public HTTP port):
/// `/healthz` (the process is up: name and version), `/readyz` (200 only while SERVING, 503
/// while starting or draining) and `/metrics` (Prometheus text).
public struct AdminRoutes<Context: RequestContext>: Sendable {
  let service: InspectService
  let health: HealthStatusBoard
  let metrics: RPCMetrics

  public init(service: InspectService, health: HealthStatusBoard, metrics: RPCMetrics) {
    self.service = service
    self.health = health
    self.metrics = metrics
  }

  public var endpoints: RouteCollection<Context> {
    let routes = RouteCollection(context: Context.self)
    routes.get("healthz") { _, _ in
      try Self.json(HealthReport(service: service.rawValue, version: InspectVersion.current, status: "ok"))
    }
    routes.get("readyz") { _, _ in
      let serving = health.isServing
      return try Self.json(
        HealthReport(
          service: service.rawValue, version: InspectVersion.current,
          status: serving ? "serving" : "not_serving"),
        status: serving ? .ok : .serviceUnavailable)
    }
    routes.get("metrics") { _, _ in
      Response(
        status: .ok,
        headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
        body: .init(byteBuffer: ByteBuffer(string: metrics.render())))
    }
    return routes
  }

  static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
    let data = try JSONEncoder().encode(value)
    return Response(
      status: status, headers: [.contentType: "application/json; charset=utf-8"],
      body: .init(byteBuffer: ByteBuffer(bytes: data)))
  }
}

/// What `/healthz` and `/readyz` answer.
public struct HealthReport: Codable, Sendable {
  public var service: String
  public var version: String
  /// `ok` (healthz), `serving` or `not_serving` (readyz).
  public var status: String
}
