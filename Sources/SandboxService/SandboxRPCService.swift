import Foundation
import GRPCCore
import InspectKit
import InspectProtos
import Logging
import SwiftProtobuf

/// `inspect.sandbox.v1.SandboxService`: images, sandboxes (claim, exec, files, snapshots, warm
/// pools) through `SandboxManager`, whatever driver runs them, and the agent runtime
/// (`RunAgent`).
struct SandboxRPCService: Inspect_Sandbox_V1_SandboxService.SimpleServiceProtocol {
  let agent: AgentLoop
  let manager: SandboxManager

  // MARK: - RunAgent

  /// Runs one turn: the first message must be `StartTurn`; events stream back, the last being
  /// `turn_finished`. A later `StopTurn` ends the turn CANCELLED (its running tool calls too);
  /// the turn also stops when the stream breaks (the caller went away).
  func runAgent(
    request: RPCAsyncSequence<Inspect_Sandbox_V1_RunAgentRequest, any Error>,
    response: RPCWriter<Inspect_Sandbox_V1_RunAgentResponse>, context: ServerContext
  ) async throws {
    let agent = self.agent
    let stop = TurnStop()
    let decisions = TurnDecisions()
    let (starts, startsContinuation) = AsyncThrowingStream.makeStream(of: Inspect_Sandbox_V1_StartTurn.self)
    try await untilRPCCancelled {
      try await withThrowingTaskGroup(of: Void.self) { group in
        // The request stream: the StartTurn, then people's decisions on tool calls and perhaps a
        // stop.
        group.addTask {
          var first = true
          for try await message in request {
            if first, case .start(let start) = message.kind {
              startsContinuation.yield(start)
            } else if case .stop(let request) = message.kind {
              stop.request(request)
            } else if case .decision(let decision) = message.kind {
              decisions.deliver(decision)
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
        let finished = await agent.run(start, stop: stop, decisions: decisions) { event in
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

  // MARK: - Sandboxes

  func createSandbox(
    request: Inspect_Sandbox_V1_CreateSandboxRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_CreateSandboxResponse {
    let repository = try Self.repository(request.repository)
    guard !request.limits.network else {
      throw RPCError(
        code: .unimplemented,
        message: "sandboxes with network access are not implemented yet in this version of Inspect")
    }
    let clock = ContinuousClock()
    let started = clock.now
    let entry = try await mapped {
      try await manager.claim(
        .init(
          repository: repository, sessionID: request.sessionID, snapshotID: request.snapshotID,
          branch: request.branch, limits: request.hasLimits ? SandboxLimits(request.limits) : nil))
    }
    let startup = clock.now - started
    return .with {
      $0.sandbox = proto(entry)
      $0.startup = .init(rounding: startup)
    }
  }

  func listSandboxes(
    request: Inspect_Sandbox_V1_ListSandboxesRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_ListSandboxesResponse {
    let entries = await manager.list(repository: request.repository, sessionID: request.sessionID)
    return .with { $0.sandboxes = entries.map(proto) }
  }

  func terminate(
    request: Inspect_Sandbox_V1_TerminateRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_TerminateResponse {
    let record = try await mapped { try await manager.terminate(request.sandboxID, snapshot: request.snapshot) }
    return .with { if let record { $0.snapshot = Self.proto(record) } }
  }

  func snapshot(
    request: Inspect_Sandbox_V1_SnapshotRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_SnapshotResponse {
    let record = try await mapped { try await manager.snapshot(request.sandboxID) }
    return .with { $0.snapshot = Self.proto(record) }
  }

  func warmPoolStatus(
    request: Inspect_Sandbox_V1_WarmPoolStatusRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_WarmPoolStatusResponse {
    if !request.repository.isEmpty { _ = try Self.repository(request.repository) }
    let pools = await manager.warmPools(request.repository)
    return .with {
      $0.pools = pools.map { pool in
        .with {
          $0.repository = pool.repository
          $0.imageID = pool.imageID
          $0.targetSize = UInt32(pool.target)
          $0.ready = UInt32(pool.ready)
          $0.creating = UInt32(pool.creating)
          $0.claimsTotal = pool.claims
          $0.missesTotal = pool.misses
        }
      }
    }
  }

  func prewarm(
    request: Inspect_Sandbox_V1_PrewarmRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_PrewarmResponse {
    let repository = try Self.repository(request.repository)
    await manager.prewarm(repository, sessionID: request.sessionID)
    return .init()
  }

  func mirrorRepository(
    request: Inspect_Sandbox_V1_MirrorRepositoryRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_MirrorRepositoryResponse {
    let repository = try Self.repository(request.repository)
    do {
      let mirror = try await manager.driver.mirror(repository)
      return .with {
        $0.defaultBranch = mirror.defaultBranch
        $0.headCommit = mirror.headCommit
        $0.branches = UInt32(clamping: mirror.branches)
      }
    } catch let error as SandboxError {
      throw error.rpcError
    }
  }

  func compareBranches(
    request: Inspect_Sandbox_V1_CompareBranchesRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_CompareBranchesResponse {
    let repository = try Self.repository(request.repository)
    do {
      let diff = try await manager.driver.compareBranches(
        repository, base: request.base, head: request.head, maxPatchBytes: Int(request.maxPatchBytes))
      return .with { $0.diff = diff }
    } catch let error as SandboxError {
      throw error.rpcError
    }
  }

  // MARK: - Exec

  /// The first message must be `start`; later ones carry stdin, close it, or deliver a signal.
  /// The command's stdin closes when the request stream ends; the command is killed when the
  /// caller goes away.
  func exec(
    request: RPCAsyncSequence<Inspect_Sandbox_V1_ExecRequest, any Error>,
    response: RPCWriter<Inspect_Sandbox_V1_ExecResponse>, context: ServerContext
  ) async throws {
    let (messages, incoming) = AsyncThrowingStream.makeStream(of: Inspect_Sandbox_V1_ExecRequest.self)
    let manager = self.manager
    try await untilRPCCancelled {
      try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
          do {
            for try await message in request { incoming.yield(message) }
            incoming.finish()
          } catch {
            incoming.finish(throwing: error)
          }
        }
        var received = messages.makeAsyncIterator()
        guard let first = try await received.next(), case .start(let start) = first.kind else {
          throw RPCError(code: .invalidArgument, message: "the first Exec message must be `start`")
        }
        guard !start.argv.isEmpty, !start.argv[0].isEmpty else {
          throw RPCError(code: .invalidArgument, message: "Exec: argv is empty")
        }
        guard !start.tty else {
          throw RPCError(
            code: .unimplemented,
            message: "Exec with a terminal (tty) is not implemented yet in this version of Inspect")
        }
        let entry = try await mapped { try await manager.entry(start.sandboxID) }
        try await mapped { try await entry.writable(within: manager.configuration.syncWait) }
        let command = try mapped {
          try entry.instance.start(
            start.argv, environment: start.env, directory: start.workingDirectory)
        }
        let timeout =
          start.hasTimeout && start.timeout.duration > .zero
          ? start.timeout.duration : manager.configuration.commandTimeout
        let timer = CommandTimer(command, after: timeout)
        defer { timer.cancel() }
        let rest = received
        group.addTask {
          var rest = rest
          while let message = try await rest.next() {
            switch message.kind {
            case .stdin(let data): try? await command.write(data)
            case .closeStdin: try? await command.closeInput()
            case .signal(let signal): command.signal(signal)
            case .start: throw RPCError(code: .invalidArgument, message: "Exec: `start` may only be the first message")
            case .resize, .none: break
            }
          }
          try? await command.closeInput()
        }
        let clock = ContinuousClock()
        let began = clock.now
        try await withTaskCancellationHandler {
          for await event in command.events {
            switch event {
            case .started(let pid): try await response.write(.with { $0.started = .with { $0.pid = pid } })
            case .stdout(let data): try await response.write(.with { $0.stdout = data })
            case .stderr(let data): try await response.write(.with { $0.stderr = data })
            case .exited(let code, let signal):
              try await response.write(
                .with {
                  $0.exit = .with {
                    $0.exitCode = code
                    $0.signal = signal
                    $0.timedOut = timer.fired
                    $0.duration = .init(rounding: clock.now - began)
                  }
                })
            case .failed(let reason):
              // A program that cannot start is the caller's; a sandbox that went away is not.
              throw RPCError(
                code: entry.instance.isAlive ? .invalidArgument : .failedPrecondition,
                message: "Exec: \(start.argv[0]) could not run: \(reason)")
            }
          }
        } onCancel: {
          command.signal(SIGKILL)
        }
        // Nothing more goes to its standard input (a write blocked on a full pipe gives up).
        command.release()
        group.cancelAll()
      }
    }
  }

  // MARK: - Files

  func readFile(
    request: Inspect_Sandbox_V1_ReadFileRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_ReadFileResponse {
    let entry = try await mapped { try await manager.entry(request.sandboxID) }
    let file = try mapped { try entry.instance.readFile(request.path, offset: request.offset, limit: request.limit) }
    return .with {
      $0.content = file.content
      $0.sizeBytes = file.size
      $0.truncated = file.truncated
    }
  }

  func writeFile(
    request: Inspect_Sandbox_V1_WriteFileRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_WriteFileResponse {
    let entry = try await mapped { try await manager.entry(request.sandboxID) }
    try await mapped { try await entry.writable(within: manager.configuration.syncWait) }
    let size = try mapped {
      try entry.instance.writeFile(
        request.path, content: request.content, mode: request.mode == 0 ? nil : request.mode,
        createParents: request.createParents)
    }
    return .with { $0.sizeBytes = size }
  }

  func listFiles(
    request: Inspect_Sandbox_V1_ListFilesRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_ListFilesResponse {
    let entry = try await mapped { try await manager.entry(request.sandboxID) }
    let listing = try mapped {
      try entry.instance.listFiles(request.path, recursive: request.recursive, maxEntries: Int(request.maxEntries))
    }
    return .with {
      $0.truncated = listing.truncated
      $0.entries = listing.entries.map { entry in
        .with {
          $0.path = entry.path
          $0.type =
            switch entry.kind {
            case .file: .file
            case .directory: .directory
            case .symlink: .symlink
            case .other: .other
            }
          $0.sizeBytes = entry.size
          $0.mode = entry.mode
          $0.modifiedAt = .init(date: entry.modified)
        }
      }
    }
  }

  // MARK: - Images

  /// Streams the build's steps and the setup script's output as they happen; the last message
  /// is the result (a FAILED image when the setup failed).
  func buildImage(
    request: Inspect_Sandbox_V1_BuildImageRequest, response: RPCWriter<Inspect_Sandbox_V1_BuildImageResponse>,
    context: ServerContext
  ) async throws {
    let repository = try Self.repository(request.repository)
    guard request.remoteURL.isEmpty else {
      throw RPCError(
        code: .unimplemented,
        message:
          "BuildImage with a remote_url is not implemented yet in this version of Inspect: local/<name> repositories use remotes/<name>.git"
      )
    }
    let (events, continuation) = AsyncStream.makeStream(of: Inspect_Sandbox_V1_BuildImageResponse.self)
    let clock = ContinuousClock()
    let started = clock.now
    let manager = self.manager
    let build = Task {
      defer { continuation.finish() }
      try Task.checkCancellation()
      return try await mapped {
        try await manager.buildImage(repository, branch: request.branch, force: request.force) { event in
          switch event {
          case .step(let step, let message):
            continuation.yield(
              .with {
                $0.progress = .with {
                  $0.step =
                    switch step {
                    case .fetch: .fetch
                    case .checkout: .checkout
                    case .setup: .setup
                    case .finalize: .finalize
                    }
                  $0.message = message
                  $0.elapsed = .init(rounding: clock.now - started)
                }
              })
          case .log(let data): continuation.yield(.with { $0.log = data })
          }
        }
      }
    }
    // The build stops (its setup script is killed) when the caller goes away.
    let (image, unchanged) = try await withTaskCancellationHandler {
      try await withRPCCancellationHandler {
        for await message in events { try await response.write(message) }
        return try await build.value
      } onCancelRPC: {
        build.cancel()
      }
    } onCancel: {
      build.cancel()
    }
    try await response.write(
      .with {
        $0.result = .with {
          $0.image = Self.proto(image)
          $0.unchanged = unchanged
        }
      })
  }

  func listImages(
    request: Inspect_Sandbox_V1_ListImagesRequest, context: ServerContext
  ) async throws -> Inspect_Sandbox_V1_ListImagesResponse {
    if !request.repository.isEmpty { _ = try Self.repository(request.repository) }
    return .with { $0.images = manager.driver.images(repository: request.repository).map(Self.proto) }
  }

  // MARK: - Mapping

  private static func repository(_ text: String) throws -> RepositoryName {
    do {
      return try RepositoryName(text)
    } catch {
      throw RPCError(code: .invalidArgument, message: "\(error)")
    }
  }

  private func proto(_ entry: SandboxEntry) -> Inspect_Sandbox_V1_Sandbox {
    .with {
      $0.id = entry.id
      $0.repository = entry.instance.repository.description
      $0.imageID = entry.instance.image.id
      $0.sessionID = entry.sessionID
      $0.state =
        switch entry.state {
        case .warm: .warm
        case .syncing: .syncing
        case .ready: .ready
        case .snapshotting: .snapshotting
        case .terminated: .terminated
        case .failed: .failed
        }
      $0.source =
        switch entry.source {
        case .warmPool: .warmPool
        case .image: .image
        case .snapshot: .snapshot
        }
      $0.snapshotID = entry.snapshotID
      $0.commit = entry.commit
      $0.branch = entry.branch
      $0.workspacePath = "/workspace"
      $0.createdAt = .init(date: entry.createdAt)
      let limits = entry.limits ?? SandboxLimits()
      $0.limits = .with {
        $0.memoryBytes = limits.memoryBytes
        $0.maxPids = limits.maxPids
        $0.cpuMillis = limits.cpuMillis
        $0.commandTimeout = .init(rounding: manager.configuration.commandTimeout)
      }
      $0.driver = manager.driver.name
      $0.node = manager.driver.node
    }
  }

  static func proto(_ image: Image) -> Inspect_Sandbox_V1_Image {
    .with {
      $0.id = image.id
      $0.repository = image.repository
      $0.branch = image.branch
      $0.commit = image.commit
      $0.state =
        switch image.state {
        case .building: .building
        case .ready: .ready
        case .failed: .failed
        }
      $0.createdAt = .init(date: image.builtAt)
      $0.timings = image.timings.mapValues { .init(rounding: .milliseconds($0)) }
      $0.sizeBytes = image.sizeBytes
      $0.setupRan = image.setupRan
      $0.error = image.error
    }
  }

  static func proto(_ record: SnapshotRecord) -> Inspect_Sandbox_V1_Snapshot {
    .with {
      $0.id = record.id
      $0.sessionID = record.sessionID
      $0.sandboxID = record.sandboxID
      $0.imageID = record.imageID
      $0.repository = record.repository
      $0.commit = record.commit
      $0.branch = record.branch
      $0.createdAt = .init(date: record.createdAt)
      $0.sizeBytes = record.sizeBytes
      $0.duration = .init(rounding: .milliseconds(record.durationMilliseconds))
    }
  }
}

/// Runs `body`, turning the sandbox layer's errors into gRPC statuses (one place for the mapping).
func mapped<T>(_ body: () async throws -> T) async throws -> T {
  do {
    return try await body()
  } catch let error as SandboxError {
    throw error.rpcError
  } catch let failure as PhaseFailure {
    throw RPCError(code: .deadlineExceeded, message: failure.description)
  } catch let error as RPCError {
    throw error
  } catch is CancellationError {
    throw RPCError(code: .cancelled, message: "the call was cancelled")
  } catch {
    throw RPCError(code: .internalError, message: "\(error)")
  }
}

func mapped<T>(_ body: () throws -> T) throws -> T {
  do {
    return try body()
  } catch let error as SandboxError {
    throw error.rpcError
  } catch let error as RPCError {
    throw error
  } catch {
    throw RPCError(code: .internalError, message: "\(error)")
  }
}

extension SandboxError {
  var rpcError: RPCError {
    let code: RPCError.Code =
      switch self {
      case .invalid: .invalidArgument
      case .notFound: .notFound
      case .permissionDenied: .permissionDenied
      case .preconditionFailed: .failedPrecondition
      case .exhausted: .resourceExhausted
      case .unavailable: .unavailable
      case .aborted: .aborted
      case .unsupported: .unimplemented
      case .failed: .internalError
      }
    return RPCError(code: code, message: description)
  }
}

extension SandboxLimits {
  /// The request's limits, the service defaults where they are zero.
  init(_ proto: Inspect_Sandbox_V1_ResourceLimits) {
    let defaults = SandboxLimits()
    self.init(
      memoryBytes: proto.memoryBytes == 0 ? defaults.memoryBytes : proto.memoryBytes,
      maxPids: proto.maxPids == 0 ? defaults.maxPids : proto.maxPids,
      cpuMillis: proto.cpuMillis == 0 ? defaults.cpuMillis : proto.cpuMillis)
  }
}
