import CSandbox
import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// What a command in a sandbox does, as it happens.
enum CommandEvent: Sendable, Equatable {
  case started(pid: Int32)
  case stdout(Data)
  case stderr(Data)
  /// It ran and ended: its exit code, or the signal that ended it.
  case exited(code: Int32, signal: Int32)
  /// It never ran (no such program, a bad working directory, the sandbox is gone).
  case failed(String)
}

/// The host's end of the control socket of one sandbox's init (`Sources/SandboxInit/main.c`,
/// which documents the messages).
///
/// Every command gets pipes for its output, read with dispatch sources on one serial queue per
/// sandbox; the exit message is handled on the same queue, so each command's output is drained
/// (without blocking: a background child may hold the pipe open for ever) before its exit is
/// reported.
///
/// `@unchecked Sendable`: the dispatch sources are created under the lock and otherwise only
/// touched on `queue`; everything else mutable is in the `Mutex`.
final class InitConnection: @unchecked Sendable {
  private struct Pending {
    var continuation: AsyncStream<CommandEvent>.Continuation
    var outputs: [DispatchSourceRead]
    var outputFDs: [Int32]
  }

  private struct State {
    var nextID: UInt64 = 1
    var pending: [UInt64: Pending] = [:]
    var closed: String?
  }

  let socket: Int32
  private let queue: DispatchQueue
  private let state = Mutex(State())
  private let socketSource: DispatchSourceRead
  /// Whether the socket is still open; held while sending and while closing it.
  private let sending = Mutex(true)

  /// Takes ownership of `socket` (the host end of the pair).
  init(socket: Int32, label: String) {
    self.socket = socket
    let queue = DispatchQueue(label: "inspect.sandbox.\(label)")
    self.queue = queue
    _ = fcntl(socket, F_SETFL, fcntl(socket, F_GETFL) | O_NONBLOCK)
    socketSource = DispatchSource.makeReadSource(fileDescriptor: socket, queue: queue)
    socketSource.setEventHandler { [weak self] in self?.readReplies() }
    // Closed under the same lock every send holds, so no send reaches a reused descriptor.
    socketSource.setCancelHandler { [weak self] in
      guard let self else {
        close(socket)
        return
      }
      self.sending.withLock { open in
        open = false
        _ = close(socket)
      }
    }
    socketSource.resume()
  }

  /// The reason the connection is closed (init exited, or the sandbox was terminated), if it is.
  var closedReason: String? { state.withLock { $0.closed } }

  /// Starts `argv` in the sandbox. `stdin` is the read end the command gets as standard input
  /// (the caller keeps its write end); the stream ends after `.exited` or `.failed`.
  func start(
    argv: [String], environment: [String: String], directory: String, stdin: Int32
  ) -> (id: UInt64, events: AsyncStream<CommandEvent>) {
    let (events, continuation) = AsyncStream.makeStream(of: CommandEvent.self)
    var out: [Int32] = [-1, -1]
    var err: [Int32] = [-1, -1]
    guard csandbox_pipe(&out) == 0 else {
      continuation.yield(.failed("cannot create a pipe: \(String(cString: strerror(errno)))"))
      continuation.finish()
      return (0, events)
    }
    guard csandbox_pipe(&err) == 0 else {
      let message = String(cString: strerror(errno))
      close(out[0])
      close(out[1])
      continuation.yield(.failed("cannot create a pipe: \(message)"))
      continuation.finish()
      return (0, events)
    }
    let id: UInt64? = state.withLock { state in
      guard state.closed == nil else { return nil }
      let id = state.nextID
      state.nextID += 1
      var pending = Pending(continuation: continuation, outputs: [], outputFDs: [out[0], err[0]])
      for (fd, isError) in [(out[0], false), (err[0], true)] {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        source.setEventHandler { [weak self] in self?.readOutput(id: id, fd: fd, isError: isError, source: source) }
        source.setCancelHandler { close(fd) }
        pending.outputs.append(source)
      }
      state.pending[id] = pending
      return id
    }
    guard let id else {
      for fd in [out[0], out[1], err[0], err[1]] { close(fd) }
      continuation.yield(.failed(closedReason ?? "the sandbox is closed"))
      continuation.finish()
      return (0, events)
    }
    state.withLock { state in state.pending[id]?.outputs.forEach { $0.resume() } }

    var message = Data([UInt8(ascii: "X")])
    message.appendInteger(id)
    message.appendInteger(UInt32(argv.count))
    message.appendInteger(UInt32(environment.count))
    for text in argv + environment.map({ "\($0.key)=\($0.value)" }).sorted() + [directory] {
      message.append(contentsOf: Array(text.utf8.filter { $0 != 0 }))
      message.append(0)
    }
    let fds: [Int32] = [stdin, out[1], err[1]]
    let (sent, sendError) = send(message, fds: fds)
    close(out[1])
    close(err[1])
    if sent < 0 {
      queue.async { [self] in
        finish(id, with: .failed("cannot reach the sandbox's init: \(String(cString: strerror(sendError)))"))
      }
    }
    return (id, events)
  }

  /// Signals the process group of command `id` (no effect once it has exited).
  func signal(_ id: UInt64, _ signal: Int32) {
    var message = Data([UInt8(ascii: "K")])
    message.appendInteger(id)
    message.appendInteger(signal)
    _ = send(message, fds: [])
  }

  /// Sends one message while the socket is open; the result and errno.
  private func send(_ message: Data, fds: [Int32]) -> (Int, Int32) {
    sending.withLock { open in
      guard open else { return (-1, EBADF) }
      let sent = message.withUnsafeBytes { bytes in
        fds.withUnsafeBufferPointer {
          csandbox_send_with_fds(socket, bytes.baseAddress, bytes.count, $0.baseAddress, Int32($0.count))
        }
      }
      return (sent, errno)
    }
  }

  /// Closes the control socket: init exits and takes every process of the sandbox with it.
  /// Commands still running end with `.failed(reason)`.
  func closeConnection(reason: String) {
    queue.sync { self.closeAll(reason) }
  }

  // MARK: - On the queue

  private func readReplies() {
    var buffer = [UInt8](repeating: 0, count: 64)
    while true {
      let count = recv(socket, &buffer, buffer.count, 0)
      if count < 0, errno == EINTR { continue }
      if count < 0, errno == EAGAIN || errno == EWOULDBLOCK { return }
      guard count >= 13 else {
        closeAll("the sandbox's init exited")
        return
      }
      let id = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 1, as: UInt64.self) }
      let value = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 9, as: Int32.self) }
      switch buffer[0] {
      case UInt8(ascii: "S"):
        _ = state.withLock { $0.pending[id]?.continuation.yield(.started(pid: value)) }
      case UInt8(ascii: "F"):
        finish(id, with: .failed(String(cString: strerror(value))))
      case UInt8(ascii: "E"):
        let event: CommandEvent =
          csandbox_exited(value) != 0
          ? .exited(code: csandbox_exit_status(value), signal: 0)
          : .exited(code: 128 + csandbox_term_signal(value), signal: csandbox_term_signal(value))
        finish(id, with: event)
      default:
        break
      }
    }
  }

  private func readOutput(id: UInt64, fd: Int32, isError: Bool, source: DispatchSourceRead) {
    let (data, ended) = Self.readAvailable(fd)
    if !data.isEmpty {
      _ = state.withLock { $0.pending[id]?.continuation.yield(isError ? .stderr(data) : .stdout(data)) }
    }
    if ended { source.cancel() }
  }

  /// Drains the command's pipes, reports `event` and ends its stream.
  private func finish(_ id: UInt64, with event: CommandEvent) {
    guard let pending = state.withLock({ $0.pending.removeValue(forKey: id) }) else { return }
    for (index, source) in pending.outputs.enumerated() where !source.isCancelled {
      let (data, _) = Self.readAvailable(pending.outputFDs[index])
      if !data.isEmpty { pending.continuation.yield(index == 1 ? .stderr(data) : .stdout(data)) }
      source.cancel()
    }
    pending.continuation.yield(event)
    pending.continuation.finish()
  }

  private func closeAll(_ reason: String) {
    let pending: [UInt64: Pending] = state.withLock { state in
      if state.closed == nil { state.closed = reason }
      defer { state.pending = [:] }
      return state.pending
    }
    if !socketSource.isCancelled { socketSource.cancel() }
    for (_, command) in pending {
      for source in command.outputs where !source.isCancelled { source.cancel() }
      command.continuation.yield(.failed(reason))
      command.continuation.finish()
    }
  }

  /// Everything readable now (on a blocking descriptor: everything until the writer closes it),
  /// and whether the writer has closed the pipe.
  static func readAvailable(_ fd: Int32) -> (Data, ended: Bool) {
    var data = Data()
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
      let count = read(fd, &buffer, buffer.count)
      if count > 0 {
        data.append(contentsOf: buffer[0..<count])
        continue
      }
      if count < 0, errno == EINTR { continue }
      return (data, count == 0)
    }
  }
}

extension Data {
  fileprivate mutating func appendInteger<T: FixedWidthInteger>(_ value: T) {
    Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
  }
}
