import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import HTTPTypes
import Hummingbird
import InspectKit
import InspectProtos
import SwiftProtobuf

/// The REST API under `/v1` (JSON bodies in the protobuf JSON mapping), forwarded to
/// SessionService with the caller's identity in `inspect-user`.
struct APIController {
  let sessions: Inspect_Session_V1_SessionService.Client<HTTP2ClientTransport.Posix>
  let users: Inspect_Session_V1_UserService.Client<HTTP2ClientTransport.Posix>
  let downstream: Downstream

  var endpoints: RouteCollection<GatewayRequestContext> {
    let routes = RouteCollection(context: GatewayRequestContext.self)
    routes.get("me") { _, context in
      let user = try context.requireUser()
      return try await forward(context) { metadata in
        try await users.getUser(.with { $0.userID = user.id }, metadata: metadata, options: Downstream.callOptions).user
      }
    }
    routes.post("sessions") { request, context in
      let body = try await Self.decode(Inspect_Session_V1_CreateSessionRequest.self, from: request, context: context)
      return try await forward(context) { metadata in
        try await sessions.createSession(body, metadata: metadata, options: Downstream.callOptions)
      }
    }
    routes.get("sessions") { request, context in
      let parameters = request.uri.queryParameters
      var query = Inspect_Session_V1_ListSessionsRequest()
      query.pageToken = parameters["pageToken"].map(String.init) ?? ""
      query.pageSize = parameters["pageSize"].flatMap { UInt32(String($0)) } ?? 0
      query.repository = parameters["repository"].map(String.init) ?? ""
      query.parentSessionID = parameters["parentSessionId"].map(String.init) ?? ""
      query.externalKey = parameters["externalKey"].map(String.init) ?? ""
      return try await forward(context) { metadata in
        try await sessions.listSessions(query, metadata: metadata, options: Downstream.callOptions)
      }
    }
    routes.get("sessions/:id") { _, context in
      let id = try context.parameters.require("id")
      return try await forward(context) { metadata in
        try await sessions.getSession(.with { $0.sessionID = id }, metadata: metadata, options: Downstream.callOptions)
      }
    }
    routes.post("sessions/:id/prompts") { request, context in
      var body = try await Self.decode(Inspect_Session_V1_SendPromptRequest.self, from: request, context: context)
      body.sessionID = try context.parameters.require("id")
      return try await forward(context) { metadata in
        try await sessions.sendPrompt(body, metadata: metadata, options: Downstream.callOptions)
      }
    }
    routes.patch("sessions/:id/prompts/:prompt") { request, context in
      var body = try await Self.decode(Inspect_Session_V1_EditQueuedPromptRequest.self, from: request, context: context)
      body.sessionID = try context.parameters.require("id")
      body.promptID = try context.parameters.require("prompt")
      return try await forward(context) { metadata in
        try await sessions.editQueuedPrompt(body, metadata: metadata, options: Downstream.callOptions)
      }
    }
    routes.delete("sessions/:id/prompts/:prompt") { _, context in
      let body = Inspect_Session_V1_CancelQueuedPromptRequest.with {
        $0.sessionID = (try? context.parameters.require("id")) ?? ""
        $0.promptID = (try? context.parameters.require("prompt")) ?? ""
      }
      return try await forward(context) { metadata in
        try await sessions.cancelQueuedPrompt(body, metadata: metadata, options: Downstream.callOptions)
      }
    }
    routes.post("sessions/:id/stop") { request, context in
      var body = try await Self.decode(Inspect_Session_V1_StopSessionRequest.self, from: request, context: context)
      body.sessionID = try context.parameters.require("id")
      return try await forward(context) { metadata in
        try await sessions.stopSession(body, metadata: metadata, options: Downstream.callOptions)
      }
    }
    routes.post("sessions/:id/participants") { request, context in
      var body = try await Self.decode(Inspect_Session_V1_AddParticipantRequest.self, from: request, context: context)
      body.sessionID = try context.parameters.require("id")
      return try await forward(context) { metadata in
        try await sessions.addParticipant(body, metadata: metadata, options: Downstream.callOptions)
      }
    }
    routes.delete("sessions/:id/participants/:user") { _, context in
      let body = Inspect_Session_V1_RemoveParticipantRequest.with {
        $0.sessionID = (try? context.parameters.require("id")) ?? ""
        $0.userID = (try? context.parameters.require("user")) ?? ""
      }
      return try await forward(context) { metadata in
        try await sessions.removeParticipant(body, metadata: metadata, options: Downstream.callOptions)
      }
    }
    routes.post("sessions/:id/presence") { request, context in
      var body = try await Self.decode(Inspect_Session_V1_UpdatePresenceRequest.self, from: request, context: context)
      body.sessionID = try context.parameters.require("id")
      return try await forward(context) { metadata in
        try await sessions.updatePresence(body, metadata: metadata, options: Downstream.callOptions)
      }
    }
    routes.get("stats") { request, context in
      var query = Inspect_Session_V1_GetStatsRequest()
      query.repository = request.uri.queryParameters["repository"].map(String.init) ?? ""
      if let text = request.uri.queryParameters["windowSeconds"] {
        guard let seconds = Int64(String(text)) else {
          throw APIError(.badRequest, "windowSeconds '\(text)' is not a whole number of seconds")
        }
        query.activeWindow = .with { $0.seconds = seconds }
      }
      return try await forward(context) { metadata in
        try await sessions.getStats(query, metadata: metadata, options: Downstream.callOptions)
      }
    }
    routes.get("sessions/:id/artifacts") { request, context in
      let parameters = request.uri.queryParameters
      var query = Inspect_Session_V1_ListArtifactsRequest()
      query.sessionID = try context.parameters.require("id")
      query.turnID = parameters["turnId"].map(String.init) ?? ""
      query.pageToken = parameters["pageToken"].map(String.init) ?? ""
      if let text = parameters["pageSize"] {
        guard let size = UInt32(String(text)) else {
          throw APIError(.badRequest, "pageSize '\(text)' is not a whole number")
        }
        query.pageSize = size
      }
      return try await forward(context) { metadata in
        try await sessions.listArtifacts(query, metadata: metadata, options: Downstream.callOptions)
      }
    }
    routes.get("sessions/:id/diff") { request, context in
      var query = Inspect_Session_V1_GetDiffRequest()
      query.sessionID = try context.parameters.require("id")
      if let text = request.uri.queryParameters["maxPatchBytes"] {
        guard let size = UInt32(String(text)) else {
          throw APIError(.badRequest, "maxPatchBytes '\(text)' is not a whole number of bytes")
        }
        query.maxPatchBytes = size
      }
      return try await forward(context) { metadata in
        var options = Downstream.callOptions
        // Comparing fetches the repository's mirror first.
        options.timeout = .seconds(120)
        return try await sessions.getDiff(query, metadata: metadata, options: options)
      }
    }
    routes.post("sessions/:id/tool-calls/:toolCall/decision") { request, context in
      var body = try await Self.decode(Inspect_Session_V1_DecideToolCallRequest.self, from: request, context: context)
      body.sessionID = try context.parameters.require("id")
      body.toolCallID = try context.parameters.require("toolCall")
      return try await forward(context) { metadata in
        try await sessions.decideToolCall(body, metadata: metadata, options: Downstream.callOptions)
      }
    }
    routes.post("prewarm") { request, context in
      let body = try await Self.decode(Inspect_Session_V1_PrewarmRequest.self, from: request, context: context)
      return try await forward(context) { metadata in
        try await sessions.prewarm(body, metadata: metadata, options: Downstream.callOptions)
      }
    }
    routes.get("repositories") { _, context in
      try await forward(context) { metadata in
        try await sessions.listRepositories(.init(), metadata: metadata, options: Downstream.callOptions)
      }
    }
    routes.post("repositories") { request, context in
      let body = try await Self.decode(
        Inspect_Session_V1_RegisterRepositoryRequest.self, from: request, context: context)
      return try await forward(context) { metadata in
        // Fetching a new mirror can take longer than the Gateway's usual bound.
        var options = Downstream.callOptions
        options.timeout = .seconds(300)
        return try await sessions.registerRepository(body, metadata: metadata, options: options)
      }
    }
    routes.get("sessions/:id/artifacts/:artifact/content") { _, context in
      let user = try context.requireUser()
      let request = Inspect_Session_V1_GetArtifactRequest.with {
        $0.sessionID = (try? context.parameters.require("id")) ?? ""
        $0.artifactID = (try? context.parameters.require("artifact")) ?? ""
      }
      var metadata = Metadata()
      metadata.addString(user.id, forKey: InspectCaller.metadataKey)
      return try await Self.artifact(request, metadata: metadata, sessions: sessions, downstream: downstream)
    }
    routes.get("sessions/:id/events") { request, context in
      try await SessionEventStream(sessions: sessions, downstream: downstream).response(
        request: request, context: context)
    }
    return routes
  }

  /// Calls SessionService as the authenticated user and answers with the reply as JSON.
  private func forward(
    _ context: GatewayRequestContext,
    _ call: (Metadata) async throws -> some SwiftProtobuf.Message
  ) async throws -> Response {
    let user = try context.requireUser()
    let reply: any SwiftProtobuf.Message
    do {
      var metadata = Metadata()
      metadata.addString(user.id, forKey: InspectCaller.metadataKey)
      reply = try await call(metadata)
    } catch {
      throw APIError(downstream.map(error))
    }
    return Response(
      status: .ok, headers: [.contentType: "application/json; charset=utf-8"],
      body: .init(byteBuffer: ByteBuffer(bytes: try reply.jsonUTF8Data())))
  }

  /// An artifact's content as its own media type (never as the Gateway's active content).
  static func artifact(
    _ request: Inspect_Session_V1_GetArtifactRequest, metadata: Metadata,
    sessions: Inspect_Session_V1_SessionService.Client<HTTP2ClientTransport.Posix>, downstream: Downstream
  ) async throws -> Response {
    let got: Inspect_Session_V1_GetArtifactResponse
    do {
      got = try await sessions.getArtifact(request, metadata: metadata, options: Downstream.callOptions)
    } catch {
      throw APIError(downstream.map(error))
    }
    var headers: HTTPFields = [
      .contentType: got.artifact.mediaType.isEmpty ? "application/octet-stream" : got.artifact.mediaType
    ]
    headers[.contentDisposition] = "inline; filename=\"\(got.artifact.name.filter { $0 != "\"" && !$0.isNewline })\""
    headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
    // An HTML artifact must not run scripts as the Gateway's origin.
    headers[HTTPField.Name("Content-Security-Policy")!] =
      "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: got.content)))
  }

  /// The first number in a JSON document that does not fit 32 bits, if any.
  static func numberBeyond32Bits(in bytes: [UInt8]) -> String? {
    guard let document = try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]) else {
      return nil
    }
    func find(_ value: Any) -> String? {
      switch value {
      case let object as [String: Any]: return object.values.lazy.compactMap(find).first
      case let array as [Any]: return array.lazy.compactMap(find).first
      case let number as NSNumber:
        // (true and false are 1 and 0 here, well inside.)
        let double = number.doubleValue
        return double.rounded() == double && (double < Double(Int32.min) || double > Double(Int32.max))
          ? number.stringValue : nil
      default: return nil
      }
    }
    return find(document)
  }

  /// `GET /artifacts/{session}/{artifact}?expires=…&signature=…`: a signed link (as in pull
  /// request bodies), served without a bearer token; SessionService checks the signature.
  static func registerSignedArtifacts(
    on router: Router<GatewayRequestContext>,
    sessions: Inspect_Session_V1_SessionService.Client<HTTP2ClientTransport.Posix>, downstream: Downstream
  ) {
    router.get("artifacts/:session/:artifact") { request, context in
      guard let signature = request.uri.queryParameters.get("signature"), !signature.isEmpty,
        let expires = request.uri.queryParameters.get("expires").flatMap({ Int64($0) })
      else {
        throw APIError(.unauthorized, "an artifact link needs its expires and signature parameters")
      }
      let artifactRequest = Inspect_Session_V1_GetArtifactRequest.with {
        $0.sessionID = (try? context.parameters.require("session")) ?? ""
        $0.artifactID = (try? context.parameters.require("artifact")) ?? ""
        $0.linkExpires = expires
        $0.linkSignature = signature
      }
      return try await artifact(artifactRequest, metadata: [:], sessions: sessions, downstream: downstream)
    }
  }

  /// Decodes a JSON body in the protobuf JSON mapping; unknown fields and bad JSON are a 400 that
  /// says what was wrong.
  static func decode<M: SwiftProtobuf.Message>(
    _ type: M.Type, from request: Request, context: GatewayRequestContext
  ) async throws -> M {
    let buffer = try await request.body.collect(upTo: context.maxUploadSize)
    guard buffer.readableBytes > 0 else { return M() }
    let bytes = Array(buffer.readableBytesView)
    // SwiftProtobuf's JSON decoder takes an enum number beyond 32 bits, and its binary encoder
    // then traps on the message: such numbers are refused before they get that far (no field
    // of a REST body is a 64-bit number).
    if let outOfRange = Self.numberBeyond32Bits(in: bytes) {
      throw APIError(
        .badRequest, "the number \(outOfRange) in the body is out of range (the fields hold 32-bit numbers)")
    }
    do {
      return try M(jsonUTF8Bytes: bytes)
    } catch {
      throw APIError(.badRequest, "the body is not a valid \(M.protoMessageName) in JSON: \(error)")
    }
  }
}
