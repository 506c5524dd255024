import GRPCCore

/// Runs the long-lived part of a streaming RPC so that it stops when gRPC cancels the RPC.
///
/// grpc-swift signals a cancelled RPC (the client went away, the deadline passed, the server is
/// shutting down) through `ServerContext.cancellation`, not by cancelling the handler's task: a
/// handler waiting on a stream of its own would otherwise wait on, and hold a graceful shutdown,
/// forever. Here the operation runs in a task that is cancelled with the RPC; an operation that
/// ends because of that cancellation returns `cancelledValue` (the RPC ends quietly: whoever is
/// still listening may resume).
public func untilRPCCancelled<T: Sendable>(
  cancelledValue: T, _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
  let task = Task { try await operation() }
  do {
    return try await withTaskCancellationHandler {
      try await withRPCCancellationHandler {
        try await task.value
      } onCancelRPC: {
        task.cancel()
      }
    } onCancel: {
      task.cancel()
    }
  } catch is CancellationError {
    return cancelledValue
  }
}

/// ``untilRPCCancelled(cancelledValue:_:)`` for operations that return nothing.
public func untilRPCCancelled(_ operation: @escaping @Sendable () async throws -> Void) async throws {
  try await untilRPCCancelled(cancelledValue: ()) { try await operation() }
}
