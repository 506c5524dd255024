import AsyncHTTPClient
import Foundation
import NIOCore
import ServiceLifecycle
import Synchronization

/// The HTTP client the providers share, owned by the service group: created on first use (so a
/// service that is built but never run holds none) and shut down when the group stops, after the
/// gRPC server has drained.
final class ProviderHTTPClient: Service, Sendable {
  private enum State {
    case idle
    case running(HTTPClient)
    case stopped
  }

  private let state = Mutex(State.idle)
  private let configuration: HTTPClient.Configuration

  /// - Parameters:
  ///   - connectTimeout: how long to keep trying to connect (a refused connection is retried
  ///     until then).
  ///   - readTimeout: the longest silence allowed while a response streams.
  init(connectTimeout: Duration = .seconds(10), readTimeout: Duration = .seconds(300)) {
    configuration = HTTPClient.Configuration(
      redirectConfiguration: .disallow,
      timeout: .init(connect: TimeAmount(connectTimeout), read: TimeAmount(readTimeout)))
  }

  /// The client; UNAVAILABLE once the service is stopping.
  func client() throws -> HTTPClient {
    try state.withLock { state in
      switch state {
      case .running(let client):
        return client
      case .idle:
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        state = .running(client)
        return client
      case .stopped:
        throw ModelError.unavailable("ModelRouter is shutting down; retry against another instance")
      }
    }
  }

  func run() async throws {
    try? await gracefulShutdown()
    let client = state.withLock { state -> HTTPClient? in
      defer { state = .stopped }
      if case .running(let client) = state { return client }
      return nil
    }
    try await client?.shutdown()
  }
}

extension ProviderHTTPClient {
  /// How long to wait for the response head; the body then streams for as long as the model
  /// writes (the caller's cancellation or deadline ends it).
  static let headTimeout: TimeAmount = .seconds(300)
  /// An error body longer than this is cut; it only feeds the error message.
  static let errorBodyLimit = 1 << 20

  /// POSTs `body` (JSON, answered as an event stream) with `headers` and returns the streaming
  /// body of a 200. A connection failure is UNAVAILABLE with `unreachable`; any other status
  /// goes to `failure` with its (cut) body, and the error gets the wait the response asked for.
  func postEventStream(
    _ url: String, headers: [(String, String)], body: Data, unreachable: String,
    failure: (_ status: Int, _ body: String) -> ModelError
  ) async throws -> HTTPClientResponse.Body {
    try await post(
      url, headers: headers, contentType: "application/json", accept: "text/event-stream", body: body,
      unreachable: unreachable, failure: failure
    ).body
  }

  /// POSTs `body` and returns a 200 response with its head; errors as ``postEventStream``.
  func post(
    _ url: String, headers: [(String, String)], contentType: String, accept: String, body: Data,
    unreachable: String, failure: (_ status: Int, _ body: String) -> ModelError
  ) async throws -> HTTPClientResponse {
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.headers.add(name: "Content-Type", value: contentType)
    request.headers.add(name: "Accept", value: accept)
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    request.body = .bytes(ByteBuffer(bytes: body))
    let response: HTTPClientResponse
    do {
      response = try await client().execute(request, timeout: Self.headTimeout)
    } catch let error as ModelError {
      throw error
    } catch {
      try Task.checkCancellation()
      throw ModelError.unavailable("\(unreachable): \(error)")
    }
    guard response.status == .ok else {
      let text = (try? await response.body.collect(upTo: Self.errorBodyLimit)).map { String(buffer: $0) } ?? ""
      throw failure(Int(response.status.code), text).waiting(ModelRetryPolicy.retryAfter(response.headers))
    }
    return response
  }

  /// A whole (non-streamed) response body of at most `limit` bytes; UNAVAILABLE naming `source`
  /// when the connection breaks or the body is larger.
  static func collect(_ response: HTTPClientResponse, upTo limit: Int, from source: String) async throws -> Data {
    do {
      let buffer = try await response.body.collect(upTo: limit)
      return Data(buffer.readableBytesView)
    } catch {
      try Task.checkCancellation()
      throw ModelError.unavailable("the response from \(source) could not be read (at most \(limit) bytes): \(error)")
    }
  }
}

extension TimeAmount {
  fileprivate init(_ duration: Duration) {
    let (seconds, attoseconds) = duration.components
    self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
  }
}
