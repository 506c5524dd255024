import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Hummingbird
import InspectKit
import InspectProtos
import Synchronization

/// `POST /v1/transcriptions`: a voice prompt. The body is the recording itself (its media type
/// in `Content-Type`, e.g. `audio/webm;codecs=opus` from a browser's MediaRecorder);
/// ModelRouter's `Transcribe` turns it into text, which the client shows for confirmation
/// before sending it as a prompt. `?sessionId=` charges the call to a session the caller is in;
/// `?language=` is a BCP 47 hint.
struct TranscriptionController {
  let models: Inspect_Model_V1_ModelRouterService.Client<HTTP2ClientTransport.Posix>
  let modelDownstream: Downstream
  let sessions: Inspect_Session_V1_SessionService.Client<HTTP2ClientTransport.Posix>
  let sessionDownstream: Downstream

  /// ModelRouter's limit for one call (OpenAI's upload limit).
  static let maxAudioBytes = 25 << 20
  /// Transcriptions in progress at once (each holds its recording, up to 25 MiB, two or three
  /// times over); more are refused with 429 and `Retry-After`.
  static let maxConcurrent = 4
  private static let inProgress = Mutex(0)

  func register(on routes: RouterGroup<GatewayRequestContext>) {
    routes.post("transcriptions") { request, context in
      try await transcribe(request, context: context)
    }
  }

  func transcribe(_ request: Request, context: GatewayRequestContext) async throws -> Response {
    let user = try context.requireUser()
    var metadata = Metadata()
    metadata.addString(user.id, forKey: InspectCaller.metadataKey)
    let mediaType = request.headers[.contentType] ?? ""
    guard mediaType.lowercased().hasPrefix("audio/") || mediaType.lowercased().hasPrefix("video/webm") else {
      throw APIError(
        .unsupportedMediaType,
        "send the recording itself as the body, with its audio media type in Content-Type (e.g. audio/webm), not "
          + "'\(request.headers[.contentType] ?? "nothing")'")
    }
    let parameters = request.uri.queryParameters
    let sessionID = parameters["sessionId"].map(String.init) ?? ""
    if !sessionID.isEmpty {
      // Usage is charged to the session: only to one the caller may prompt in.
      let session: Inspect_Session_V1_Session
      do {
        session = try await sessions.getSession(
          .with { $0.sessionID = sessionID }, metadata: metadata, options: Downstream.callOptions
        ).session
      } catch {
        throw APIError(sessionDownstream.map(error))
      }
      if session.participants.contains(where: { $0.user.userID == user.id && $0.role == .viewer }) {
        throw APIError(
          .forbidden, code: "PERMISSION_DENIED",
          "a viewer of session \(sessionID) cannot prompt in it, so no transcription is charged to it")
      }
    }
    let admitted = Self.inProgress.withLock { count in
      guard count < Self.maxConcurrent else { return false }
      count += 1
      return true
    }
    guard admitted else {
      throw APIError(
        .tooManyRequests, code: "RESOURCE_EXHAUSTED",
        "\(Self.maxConcurrent) transcriptions are in progress; try again in a moment", headers: [.retryAfter: "1"])
    }
    defer { Self.inProgress.withLock { $0 -= 1 } }
    let audio = try await request.body.collect(upTo: Self.maxAudioBytes)
    guard audio.readableBytes > 0 else {
      throw APIError(.badRequest, "the body is empty: send the recording")
    }
    let transcribed: Inspect_Model_V1_TranscribeResponse
    do {
      var options = Downstream.callOptions
      // Speech to text takes a while for a long recording.
      options.timeout = .seconds(120)
      transcribed = try await models.transcribe(
        .with {
          $0.audio = Data(audio.readableBytesView)
          $0.mediaType = mediaType
          $0.language = parameters["language"].map(String.init) ?? ""
          $0.client = "voice"
          $0.sessionID = sessionID
        }, metadata: metadata, options: options)
    } catch {
      throw APIError(modelDownstream.map(error))
    }
    return Response(
      status: .ok, headers: [.contentType: "application/json; charset=utf-8"],
      body: .init(byteBuffer: ByteBuffer(bytes: try transcribed.jsonUTF8Data())))
  }
}
