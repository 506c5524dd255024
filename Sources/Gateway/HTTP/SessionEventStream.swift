import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Hummingbird
import InspectKit
import InspectProtos
import ServiceLifecycle
import Synchronization

/// `GET /v1/sessions/{id}/events`: a session's events as Server-Sent Events.
///
/// Each event is a frame `id: <seq>`, `event: <kind>`, `data: <event as JSON>`; a `: ping`
/// comment keeps idle connections open. A client resumes with `Last-Event-ID` (or
/// `?after_seq=`) and gets every later event exactly once. When SessionService cuts the Gateway's
/// subscription off with a resync (it fell behind), the Gateway subscribes again from there.
struct SessionEventStream {
  let sessions: Inspect_Session_V1_SessionService.Client<HTTP2ClientTransport.Posix>
  let downstream: Downstream
  var pingInterval: Duration = .seconds(15)

  /// What is written next: the events of one `SubscribeResponse` (one write for all of them),
  /// or a keep-alive comment.
  enum Frame: Sendable {
    case events(sessionID: String, [Inspect_Session_V1_SessionEvent])
    case ping

    var text: String {
      switch self {
      case .events(let sessionID, let events):
        events.map { FrameCache.shared.frame(for: $0, sessionID: sessionID) }.joined()
      case .ping:
        ": ping\n\n"
      }
    }
  }

  func response(request: Request, context: GatewayRequestContext) async throws -> Response {
    let user = try context.requireUser()
    let id = try context.parameters.require("id")
    let after = try Self.resumePoint(request)
    let metadata: Metadata = {
      var metadata = Metadata()
      metadata.addString(user.id, forKey: InspectCaller.metadataKey)
      return metadata
    }()
    // A missing session is a 404 now, not an empty stream later.
    do {
      _ = try await sessions.getSession(
        .with { $0.sessionID = id }, metadata: metadata, options: Downstream.callOptions)
    } catch {
      throw APIError(downstream.map(error))
    }
    let (sessions, downstream, pingInterval) = (self.sessions, self.downstream, self.pingInterval)
    return Response(
      status: .ok,
      headers: [.contentType: "text/event-stream", .cacheControl: "no-cache", .init("X-Accel-Buffering")!: "no"],
      body: ResponseBody { writer in
        let (frames, continuation) = AsyncThrowingStream.makeStream(of: Frame.self)
        try await withThrowingTaskGroup(of: Void.self) { group in
          group.addTask {
            do {
              try await Self.follow(sessions: sessions, id: id, after: after, metadata: metadata) { events in
                continuation.yield(.events(sessionID: id, events))
              }
              continuation.finish()
            } catch {
              continuation.finish(throwing: downstream.map(error))
            }
          }
          group.addTask {
            while true {
              try await Task.sleep(for: pingInterval)
              continuation.yield(.ping)
            }
          }
          do {
            for try await frame in frames.cancelOnGracefulShutdown() {
              try await writer.write(ByteBuffer(string: frame.text))
            }
          } catch {
            // The stream broke after the headers went out: say why in a comment and end.
            let reason = "\(error)".replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ")
            try? await writer.write(ByteBuffer(string: ": error \(reason)\n\n"))
          }
          group.cancelAll()
        }
        try await writer.finish(nil)
      })
  }

  /// Follows session `id`'s events after `after` until the stream ends, giving each batch to
  /// `deliver`. SessionService cuts off a subscriber that falls behind with a resync; this
  /// subscribes again from there, so the client never notices. Shared by SSE and the WebSocket.
  static func follow(
    sessions: Inspect_Session_V1_SessionService.Client<HTTP2ClientTransport.Posix>, id: String, after: UInt64,
    metadata: Metadata, deliver: @escaping @Sendable ([Inspect_Session_V1_SessionEvent]) async throws -> Void
  ) async throws {
    var resumeAfter: UInt64? = after
    while let cursor = resumeAfter {
      resumeAfter = try await sessions.subscribe(
        .with {
          $0.sessionID = id
          $0.afterSeq = cursor
        }, metadata: metadata
      ) { response -> UInt64? in
        for try await message in response.messages {
          if !message.events.isEmpty { try await deliver(message.events) }
          if message.hasResync { return message.resync.afterSeq }
        }
        return nil
      }
    }
  }

  /// The seq to resume after: `Last-Event-ID`, else `?after_seq=`, else 0.
  static func resumePoint(_ request: Request) throws -> UInt64 {
    let text = request.headers[.init("Last-Event-ID")!] ?? request.uri.queryParameters["after_seq"].map(String.init)
    guard let text, !text.isEmpty else { return 0 }
    guard let value = UInt64(text) else {
      throw APIError(.badRequest, "Last-Event-ID or after_seq must be a sequence number, not '\(text)'")
    }
    return value
  }
}

/// The SSE frames of recent events, shared by every connection following the same session (SSE
/// and WebSocket): each
/// event is encoded to JSON once, not once per watcher. Bounded by entries and by bytes: the
/// oldest go first, and a frame larger than a sixteenth of the byte budget is not kept.
final class FrameCache: Sendable {
  static let shared = FrameCache(capacity: 8192, maxBytes: 32 << 20)

  private struct State {
    var frames: [String: String] = [:]
    /// Keys, oldest at `start` (the entries before it are gone).
    var order: [String] = []
    var start = 0
    var bytes = 0
  }

  private let capacity: Int
  private let maxBytes: Int
  private let state = Mutex(State())

  init(capacity: Int, maxBytes: Int) {
    self.capacity = capacity
    self.maxBytes = maxBytes
  }

  /// Entries and bytes held (for tests and metrics).
  var held: (entries: Int, bytes: Int) { state.withLock { ($0.frames.count, $0.bytes) } }

  /// The event as JSON: the `data` of its SSE frame (WebSocket messages carry the same).
  func json(for event: Inspect_Session_V1_SessionEvent, sessionID: String) -> Substring {
    let frame = frame(for: event, sessionID: sessionID)
    // The frame is `id: …\nevent: …\ndata: <json>\n\n`; the JSON has no line breaks.
    guard let data = frame.range(of: "\ndata: "), frame.hasSuffix("\n\n") else { return "{}" }
    return frame[data.upperBound..<frame.index(frame.endIndex, offsetBy: -2)]
  }

  func frame(for event: Inspect_Session_V1_SessionEvent, sessionID: String) -> String {
    let key = "\(sessionID)/\(event.seq)"
    if let cached = state.withLock({ $0.frames[key] }) { return cached }
    let json = (try? event.jsonString()) ?? "{}"
    let frame = "id: \(event.seq)\nevent: \(event.kindName)\ndata: \(json)\n\n"
    let size = frame.utf8.count
    guard size <= maxBytes / 16 else { return frame }
    state.withLock { state in
      guard state.frames[key] == nil else { return }
      // The oldest entries go until the new one fits both bounds.
      while state.start < state.order.count,
        state.order.count - state.start >= capacity || state.bytes + size > maxBytes
      {
        let oldest = state.order[state.start]
        state.start += 1
        state.bytes -= state.frames.removeValue(forKey: oldest)?.utf8.count ?? 0
      }
      if state.start >= capacity {
        state.order.removeFirst(state.start)
        state.start = 0
      }
      state.order.append(key)
      state.frames[key] = frame
      state.bytes += size
    }
    return frame
  }
}
