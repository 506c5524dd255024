import GRPCCore
import InspectKit
import InspectProtos
import Logging

/// `inspect.sandbox.v1.SandboxService`: for now the agent runtime (`RunAgent`) on the local
/// driver; the direct sandbox RPCs (images, exec, files, snapshots, warm pools) answer
/// UNIMPLEMENTED.
struct SandboxRPCService: Inspect_Sandbox_V1_SandboxService.SimpleServiceProtocol {
  let agent: AgentLoop

  /// Runs one turn: the first message must be `StartTurn`; events stream back, the last being
  /// `turn_finished`. A later `StopTurn` ends the turn CANCELLED (its running tool calls too);
  /// the turn also stops when the stream breaks (the caller went away).
  func runAgent(
    request: RPCAsyncSequence<Inspect_Sandbox_V1_RunAgentRequest, any Error>,
    response: RPCWriter<Inspect_Sandbox_V1_RunAgentResponse>, context: ServerContext
  ) async throws {
    let agent = self.agent
    let stop = TurnStop()
    let (starts, startsContinuation) = AsyncThrowingStream.makeStream(of: Inspect_Sandbox_V1_StartTurn.self)
    try await untilRPCCancelled {
      try await withThrowingTaskGroup(of: Void.self) { group in
        // The request stream: the StartTurn, then perhaps a stop (tool decisions come with the
        // permission policy).
        group.addTask {
          var first = true
          for try await message in request {
            if first, case .start(let start) = message.kind {
              startsContinuation.yield(start)
            } else if case .stop(let request) = message.kind {
              stop.request(request)
            }
            if first {
              first = false
              startsContinuation.finish()
            }
          }
          startsContinuation.finish()
        }
        var received = starts.makeAsyncIterator()
        guard let start = try await received.next() else {
          throw RPCError(code: .invalidArgument, message: "the first RunAgent message must be a StartTurn")
        }
        try Self.validate(start)
        let finished = await agent.run(start, stop: stop) { event in
          try await response.write(.with { $0.event = event })
        }
        try await response.write(.with { $0.event = .with { $0.turnFinished = finished } })
        group.cancelAll()
      }
    }
  }

  private static func validate(_ start: Inspect_Sandbox_V1_StartTurn) throws {
    guard !start.sessionID.isEmpty, !start.turnID.isEmpty, !start.sessionBranch.isEmpty else {
      throw RPCError(code: .invalidArgument, message: "StartTurn needs session_id, turn_id and session_branch")
    }
    do {
      _ = try RepositoryName(start.repository.fullName)
    } catch {
      throw RPCError(code: .invalidArgument, message: "StartTurn: \(error)")
    }
  }

  // MARK: - Not built yet

  func buildImage(
    request: Inspect_Sandbox_V1_BuildImageRequest, response: RPCWriter<Inspect_Sandbox_V1_BuildImageResponse>,
    context: ServerContext
  ) async throws { throw Self.missing("BuildImage") }

  func listImages(
    request: Inspect_Sandbox_V1_ListImagesRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_ListImagesResponse { throw Self.missing("ListImages") }

  func createSandbox(
    request: Inspect_Sandbox_V1_CreateSandboxRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_CreateSandboxResponse { throw Self.missing("CreateSandbox") }

  func listSandboxes(
    request: Inspect_Sandbox_V1_ListSandboxesRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_ListSandboxesResponse { throw Self.missing("ListSandboxes") }

  func exec(
    request: RPCAsyncSequence<Inspect_Sandbox_V1_ExecRequest, any Error>,
    response: RPCWriter<Inspect_Sandbox_V1_ExecResponse>, context: ServerContext
  ) async throws { throw Self.missing("Exec") }

  func readFile(
    request: Inspect_Sandbox_V1_ReadFileRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_ReadFileResponse { throw Self.missing("ReadFile") }

  func writeFile(
    request: Inspect_Sandbox_V1_WriteFileRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_WriteFileResponse { throw Self.missing("WriteFile") }

  func listFiles(
    request: Inspect_Sandbox_V1_ListFilesRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_ListFilesResponse { throw Self.missing("ListFiles") }

  func snapshot(
    request: Inspect_Sandbox_V1_SnapshotRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_SnapshotResponse { throw Self.missing("Snapshot") }

  func terminate(
    request: Inspect_Sandbox_V1_TerminateRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_TerminateResponse { throw Self.missing("Terminate") }

  func warmPoolStatus(
    request: Inspect_Sandbox_V1_WarmPoolStatusRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_WarmPoolStatusResponse { throw Self.missing("WarmPoolStatus") }

  func prewarm(
    request: Inspect_Sandbox_V1_PrewarmRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_PrewarmResponse { throw Self.missing("Prewarm") }

  private static func missing(_ method: String) -> RPCError {
    RPCError(
      code: .unimplemented,
      message: "inspect.sandbox.v1.SandboxService/\(method) is not implemented yet in this version of Inspect")
  }
}
