import AsyncHTTPClient
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

extension TimeAmount {
  fileprivate init(_ duration: Duration) {
    let (seconds, attoseconds) = duration.components
    self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
  }
}
