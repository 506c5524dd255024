import Foundation
import GRPCCore
import Hummingbird
import NIOCore

/// Every HTTP error Inspect answers, with the body pinned in `docs/CONTRACTS.md`:
/// `{"error": {"code": "NOT_FOUND", "message": "…"}}`, where `code` is the gRPC code name.
public struct APIError: HTTPResponseError, CustomStringConvertible {
  public var status: HTTPResponse.Status
  public var code: String
  public var message: String
  public var headers: HTTPFields

  public init(_ status: HTTPResponse.Status, code: String? = nil, _ message: String, headers: HTTPFields = [:]) {
    self.status = status
    self.code = code ?? Self.codeName(for: status)
    self.message = message
    self.headers = headers
  }

  /// The HTTP form of a gRPC error from a downstream service (the one place that maps codes).
  public init(_ error: RPCError) {
    self.init(Self.status(for: error.code), code: RPCMetrics.statusName(error.code), error.message)
  }

  public var description: String { "\(status.code) \(code): \(message)" }

  /// The JSON body: `{"error": {"code": …, "message": …}}`.
  struct Body: Codable {
    struct Inner: Codable {
      var code: String
      var message: String
    }
    var error: Inner
  }

  public func response(from request: Request, context: some RequestContext) throws -> Response {
    let data = try JSONEncoder().encode(Body(error: .init(code: code, message: message)))
    var headers = self.headers
    headers[.contentType] = "application/json; charset=utf-8"
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
  }

  /// The HTTP status for a gRPC code.
  public static func status(for code: RPCError.Code) -> HTTPResponse.Status {
    switch code {
    case .invalidArgument, .outOfRange: .badRequest
    case .unauthenticated: .unauthorized
    case .permissionDenied: .forbidden
    case .notFound: .notFound
    case .alreadyExists, .aborted: .conflict
    case .failedPrecondition: .preconditionFailed
    case .resourceExhausted: .tooManyRequests
    case .unimplemented: .notImplemented
    case .unavailable: .serviceUnavailable
    case .deadlineExceeded: .gatewayTimeout
    case .cancelled: .init(code: 499, reasonPhrase: "Client Closed Request")
    default: .internalServerError
    }
  }

  /// The gRPC code name closest to an HTTP status (for errors raised by the HTTP layer itself).
  public static func codeName(for status: HTTPResponse.Status) -> String {
    switch status.code {
    case 400, 405, 415: "INVALID_ARGUMENT"
    case 401: "UNAUTHENTICATED"
    case 403: "PERMISSION_DENIED"
    case 404: "NOT_FOUND"
    case 409: "ALREADY_EXISTS"
    case 412: "FAILED_PRECONDITION"
    case 413, 429: "RESOURCE_EXHAUSTED"
    case 501: "UNIMPLEMENTED"
    case 503: "UNAVAILABLE"
    case 504: "DEADLINE_EXCEEDED"
    default: "INTERNAL"
    }
  }
}

/// Turns every error a route throws, and Hummingbird's own (no such route, body too large), into
/// the JSON error body of ``APIError``, so clients never have to parse two shapes.
public struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
  public init() {}

  public func handle(
    _ request: Request, context: Context,
    next: (Request, Context) async throws -> Response
  ) async throws -> Response {
    do {
      return try await next(request, context)
    } catch let error as APIError {
      throw error
    } catch let error as HTTPError {
      let message: String
      switch error.status {
      case .notFound: message = "no route for \(request.method) \(request.uri.path)"
      default: message = error.body ?? error.status.reasonPhrase
      }
      throw APIError(error.status, message, headers: error.headers)
    } catch let error as RPCError {
      throw APIError(error)
    } catch let error as NIOTooManyBytesError {
      throw APIError(.contentTooLarge, "the body is larger than \(error.maxBytes.map { "\($0) bytes" } ?? "allowed")")
    } catch {
      context.logger.error("request failed", metadata: ["error": "\(error)", "http.path": "\(request.uri.path)"])
      throw APIError(.internalServerError, "internal error: \(error)")
    }
  }
}
