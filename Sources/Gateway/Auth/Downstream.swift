import GRPCCore
import InspectKit

/// The one place that turns a failed call to an internal service into what the Gateway's callers
/// see: a dead or unreachable service becomes `UNAVAILABLE` naming the service and its address
/// (HTTP 503); every other status passes through with its message.
struct Downstream: Sendable {
  let service: InspectService
  let address: HostAndPort

  /// Calls within the Gateway give up after this long and report the service as unavailable.
  static let timeout: Duration = .seconds(10)

  /// Options for calls to internal services: fail fast when the service is down, never hang.
  static var callOptions: CallOptions {
    var options = CallOptions.defaults
    options.timeout = timeout
    options.waitForReady = false
    return options
  }

  func map(_ error: any Error) -> RPCError {
    if error is CancellationError {
      return RPCError(code: .cancelled, message: "the call to \(service.rawValue) was cancelled")
    }
    guard let error = error as? RPCError else {
      return RPCError(code: .internalError, message: "calling \(service.rawValue) failed: \(error)")
    }
    switch error.code {
    case .unavailable, .deadlineExceeded:
      return RPCError(
        code: .unavailable,
        message: "\(service.rawValue) is unavailable at \(address): \(error.message)",
        metadata: error.metadata)
    default:
      return error
    }
  }
}
