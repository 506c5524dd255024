import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos

/// Runs one turn of the agent and streams its events back. SessionService's seam to
/// SandboxService (tests substitute their own).
protocol AgentRunner: Sendable {
  /// Runs the turn; calls `onEvent` for each event in order (not `turn_finished`) and returns
  /// how the turn finished. `controls` carries later requests to the agent (`StopTurn`, tool
  /// decisions) until the turn ends. Throws ``TurnFailure`` when the turn could not run or broke
  /// off, and stops when its task is cancelled.
  func run(
    start: Inspect_Sandbox_V1_StartTurn,
    controls: AsyncStream<Inspect_Sandbox_V1_RunAgentRequest>,
    onEvent: @escaping @Sendable (Inspect_Session_V1_SessionEvent) -> Void
  ) async throws -> Inspect_Session_V1_TurnFinished

  /// Asks for a sandbox of `repository` to be made ready ahead of a prompt (for `sessionID`,
  /// when given). Throws `RPCError` (UNAVAILABLE naming SandboxService when it is down).
  func prewarm(repository: String, sessionID: String) async throws

  /// Fetches the repository's mirror in SandboxService (cloning it the first time). Throws
  /// `RPCError` (NOT_FOUND when it cannot be fetched; UNAVAILABLE naming SandboxService when it
  /// is down).
  func mirror(repository: String) async throws -> Inspect_Sandbox_V1_MirrorRepositoryResponse

  /// What `head` adds since it left `base` in the repository's mirror (SandboxService fetches it
  /// first). Throws `RPCError` (NOT_FOUND for a missing repository or base; UNAVAILABLE naming
  /// SandboxService when it is down).
  func compareBranches(
    repository: String, base: String, head: String, maxPatchBytes: UInt32
  ) async throws -> Inspect_Common_V1_BranchDiff
}

extension AgentRunner {
  func mirror(repository: String) async throws -> Inspect_Sandbox_V1_MirrorRepositoryResponse {
    throw RPCError(code: .unimplemented, message: "this agent runner keeps no repository mirrors")
  }

  func compareBranches(
    repository: String, base: String, head: String, maxPatchBytes: UInt32
  ) async throws -> Inspect_Common_V1_BranchDiff {
    throw RPCError(code: .unimplemented, message: "this agent runner keeps no repository mirrors")
  }
}

/// Runs turns in SandboxService through the bidirectional `RunAgent` stream.
struct SandboxAgentRunner: AgentRunner {
  let client: Inspect_Sandbox_V1_SandboxService.Client<HTTP2ClientTransport.Posix>
  let address: HostAndPort
  /// The integration credentials of the turn's repository are added to the StartTurn here, on
  /// the way out: they are never stored with the session or its events.
  var secrets: SecretsStore?

  func run(
    start: Inspect_Sandbox_V1_StartTurn,
    controls: AsyncStream<Inspect_Sandbox_V1_RunAgentRequest>,
    onEvent: @escaping @Sendable (Inspect_Session_V1_SessionEvent) -> Void
  ) async throws -> Inspect_Session_V1_TurnFinished {
    var start = start
    if let secrets { start.credentials = try await secrets.credentials(repository: start.repository.fullName) }
    // The request side stays open for the whole turn: later control messages (stop, tool
    // decisions) travel on it. It closes when the response side ends.
    let (requests, requestsContinuation) = AsyncStream.makeStream(of: Inspect_Sandbox_V1_RunAgentRequest.self)
    let forwarding = Task {
      for await control in controls { requestsContinuation.yield(control) }
    }
    defer {
      forwarding.cancel()
      requestsContinuation.finish()
    }
    var options = CallOptions.defaults
    options.waitForReady = false
    let finished: Inspect_Session_V1_TurnFinished?
    do {
      finished = try await client.runAgent(
        request: StreamingClientRequest { [start] writer in
          try await writer.write(.with { $0.start = start })
          for await request in requests { try await writer.write(request) }
        },
        options: options
      ) { response in
        defer { requestsContinuation.finish() }
        for try await message in response.messages {
          if case .turnFinished(let finished) = message.event.kind { return finished }
          onEvent(message.event)
        }
        return nil
      }
    } catch let error as RPCError {
      throw Self.failure(for: error, address: address)
    }
    guard let finished else {
      throw TurnFailure(
        phase: .connection, reason: "SandboxService ended the agent's stream without finishing the turn")
    }
    return finished
  }

  func prewarm(repository: String, sessionID: String) async throws {
    var options = CallOptions.defaults
    options.waitForReady = false
    options.timeout = .seconds(5)
    do {
      _ = try await client.prewarm(
        .with {
          $0.repository = repository
          $0.sessionID = sessionID
        }, options: options)
    } catch let error as RPCError where [.unavailable, .deadlineExceeded].contains(error.code) {
      throw RPCError(code: .unavailable, message: "SandboxService is unavailable at \(address): \(error.message)")
    } catch let error as RPCError {
      // Without the downstream call's metadata (its response headers are not ours to send).
      throw RPCError(code: error.code, message: error.message)
    }
  }

  func mirror(repository: String) async throws -> Inspect_Sandbox_V1_MirrorRepositoryResponse {
    var options = CallOptions.defaults
    options.waitForReady = false
    options.timeout = .seconds(300)
    do {
      return try await client.mirrorRepository(.with { $0.repository = repository }, options: options)
    } catch let error as RPCError {
      // Passed on without the downstream call's metadata (its response headers are not ours to
      // send as trailers).
      throw RPCError(
        code: error.code,
        message: error.code == .unavailable ? "SandboxService (\(address)): \(error.message)" : error.message)
    }
  }

  func compareBranches(
    repository: String, base: String, head: String, maxPatchBytes: UInt32
  ) async throws -> Inspect_Common_V1_BranchDiff {
    var options = CallOptions.defaults
    options.waitForReady = false
    options.timeout = .seconds(120)
    do {
      return try await client.compareBranches(
        .with {
          $0.repository = repository
          $0.base = base
          $0.head = head
          $0.maxPatchBytes = maxPatchBytes
        }, options: options
      ).diff
    } catch let error as RPCError {
      // Passed on without the downstream call's metadata, as for mirrors.
      throw RPCError(
        code: error.code == .deadlineExceeded ? .unavailable : error.code,
        message: [.unavailable, .deadlineExceeded].contains(error.code)
          ? "SandboxService (\(address)): \(error.message)" : error.message)
    }
  }

  static func failure(for error: RPCError, address: HostAndPort) -> TurnFailure {
    switch error.code {
    case .unavailable, .deadlineExceeded:
      TurnFailure(phase: .connection, reason: "SandboxService is unavailable at \(address): \(error.message)")
    case .unimplemented:
      TurnFailure(phase: .sandbox, reason: "SandboxService cannot run the agent: \(error.message)")
    default:
      TurnFailure(
        phase: .sandbox,
        reason: "SandboxService failed the turn (\(RPCMetrics.statusName(error.code))): \(error.message)")
    }
  }
}
