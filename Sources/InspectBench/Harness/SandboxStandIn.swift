import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos

/// `inspect.sandbox.v1.SandboxService` as the benchmarks need it: `RunAgent` plays the plan the
/// ``StandInController`` holds (hold the turn, stream timestamped `text_delta` events, finish);
/// every other method answers UNIMPLEMENTED.
struct SandboxStandIn: Inspect_Sandbox_V1_SandboxService.SimpleServiceProtocol {
  let controller: StandInController

  /// What ended one of the turn's two tasks.
  private enum Ending: Sendable {
    case finished, stopped, requestClosed
  }

  func runAgent(
    request: RPCAsyncSequence<Inspect_Sandbox_V1_RunAgentRequest, any Error>,
    response: RPCWriter<Inspect_Sandbox_V1_RunAgentResponse>, context: ServerContext
  ) async throws {
    let controller = self.controller
    // Ends when SessionService goes away (gRPC cancels the RPC, not this task).
    try await untilRPCCancelled {
      let (starts, startsContinuation) = AsyncStream.makeStream(of: Inspect_Sandbox_V1_StartTurn.self)
      defer { controller.turnFinished() }
      try await withThrowingTaskGroup(of: Ending.self) { group in
        // The request side stays open for the whole turn; a StopTurn may arrive on it. It closes
        // once SessionService has read `turn_finished`.
        group.addTask {
          defer { startsContinuation.finish() }
          for try await message in request {
            switch message.kind {
            case .start(let start): startsContinuation.yield(start)
            case .stop: return .stopped
            default: continue
            }
          }
          return .requestClosed
        }
        group.addTask {
          var iterator = starts.makeAsyncIterator()
          guard await iterator.next() != nil else {
            throw RPCError(code: .invalidArgument, message: "the first RunAgent message must be a StartTurn")
          }
          try await Self.play(controller.turnStarted(), to: response)
          try await response.write(Self.finished(.succeeded))
          return .finished
        }
        while let next = try await group.next() {
          switch next {
          case .requestClosed:
            continue
          case .finished:
            group.cancelAll()
            return
          case .stopped:
            // Stop the plan, then end the turn CANCELLED unless it finished meanwhile.
            group.cancelAll()
            var finished = false
            do {
              while let rest = try await group.next() { finished = finished || rest == .finished }
            } catch {}
            if !finished { try await response.write(Self.finished(.cancelled)) }
            return
          }
        }
      }
    }
  }

  private static func finished(_ outcome: Inspect_Session_V1_TurnOutcome) -> Inspect_Sandbox_V1_RunAgentResponse {
    .with {
      $0.event = .with {
        $0.turnFinished = .with {
          $0.outcome = outcome
          if outcome == .cancelled { $0.reason = "stopped" }
        }
      }
    }
  }

  /// Streams the plan's `text_delta` events after its gate opens.
  private static func play(_ plan: TurnPlan, to response: RPCWriter<Inspect_Sandbox_V1_RunAgentResponse>) async throws {
    if let gate = plan.gate { await gate.wait() }
    try Task.checkCancellation()
    let clock = ContinuousClock()
    let start = clock.now
    let startNanoseconds = MonotonicClock.nanoseconds()
    for index in 0..<plan.events {
      let stamp: Int64
      if let rate = plan.rate {
        // Stamped with the time it was due, not when it went out: if SessionService holds the
        // stand-in back, that wait counts in the latency (no coordinated omission).
        let offset = Double(index) / rate
        try await clock.sleep(until: start + .nanoseconds(Int64(offset * 1e9)))
        stamp = startNanoseconds + Int64(offset * 1e9)
      } else {
        stamp = MonotonicClock.nanoseconds()
      }
      try await response.write(.with { $0.event = .with { $0.textDelta = .stamped(index: index, nanoseconds: stamp) } })
    }
  }

  // MARK: - Not part of the stand-in

  func buildImage(
    request: Inspect_Sandbox_V1_BuildImageRequest, response: RPCWriter<Inspect_Sandbox_V1_BuildImageResponse>,
    context: ServerContext
  ) async throws { throw Self.unimplemented("BuildImage") }

  func listImages(
    request: Inspect_Sandbox_V1_ListImagesRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_ListImagesResponse { throw Self.unimplemented("ListImages") }

  func createSandbox(
    request: Inspect_Sandbox_V1_CreateSandboxRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_CreateSandboxResponse { throw Self.unimplemented("CreateSandbox") }

  func listSandboxes(
    request: Inspect_Sandbox_V1_ListSandboxesRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_ListSandboxesResponse { throw Self.unimplemented("ListSandboxes") }

  func exec(
    request: RPCAsyncSequence<Inspect_Sandbox_V1_ExecRequest, any Error>,
    response: RPCWriter<Inspect_Sandbox_V1_ExecResponse>, context: ServerContext
  ) async throws { throw Self.unimplemented("Exec") }

  func readFile(
    request: Inspect_Sandbox_V1_ReadFileRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_ReadFileResponse { throw Self.unimplemented("ReadFile") }

  func writeFile(
    request: Inspect_Sandbox_V1_WriteFileRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_WriteFileResponse { throw Self.unimplemented("WriteFile") }

  func listFiles(
    request: Inspect_Sandbox_V1_ListFilesRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_ListFilesResponse { throw Self.unimplemented("ListFiles") }

  func snapshot(
    request: Inspect_Sandbox_V1_SnapshotRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_SnapshotResponse { throw Self.unimplemented("Snapshot") }

  func terminate(
    request: Inspect_Sandbox_V1_TerminateRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_TerminateResponse { throw Self.unimplemented("Terminate") }

  func warmPoolStatus(
    request: Inspect_Sandbox_V1_WarmPoolStatusRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_WarmPoolStatusResponse { throw Self.unimplemented("WarmPoolStatus") }

  func prewarm(
    request: Inspect_Sandbox_V1_PrewarmRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_PrewarmResponse { throw Self.unimplemented("Prewarm") }

  func mirrorRepository(
    request: Inspect_Sandbox_V1_MirrorRepositoryRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_MirrorRepositoryResponse { throw Self.unimplemented("MirrorRepository") }

  func compareBranches(
    request: Inspect_Sandbox_V1_CompareBranchesRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_CompareBranchesResponse { throw Self.unimplemented("CompareBranches") }

  private static func unimplemented(_ method: String) -> RPCError {
    RPCError(
      code: .unimplemented,
      message: "inspect.sandbox.v1.SandboxService/\(method) is not part of the benchmark's stand-in (only RunAgent is)")
  }
}
