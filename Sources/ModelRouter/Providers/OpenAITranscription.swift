import AsyncHTTPClient
import Foundation
import InspectProtos
import MultipartKit
import NIOCore
import NIOHTTP1

/// Speech to text through an OpenAI-compatible `POST <base>/audio/transcriptions` (OpenAI,
/// vLLM, whisper.cpp's server, LocalAI…): the audio goes as a `multipart/form-data` upload
/// (`file`, `model`, `language`, `response_format=verbose_json`), the answer is JSON with `text`
/// and, from `verbose_json`, `language` and `duration` (servers answering plain `json` give only
/// `text`).
struct Transcription: Sendable, Equatable {
  var text: String
  var language: String
  var durationSeconds: Double?

  /// The media types accepted (parameters such as `;codecs=opus` are ignored) and the file name
  /// extension each is sent with, as the endpoint infers the format from the name.
  static let extensions: [String: String] = [
    "audio/webm": "webm", "video/webm": "webm", "audio/ogg": "ogg", "audio/wav": "wav", "audio/x-wav": "wav",
    "audio/wave": "wav", "audio/mpeg": "mp3", "audio/mp3": "mp3", "audio/mp4": "m4a", "audio/m4a": "m4a",
    "audio/x-m4a": "m4a", "audio/flac": "flac", "audio/x-flac": "flac",
  ]

  /// OpenAI's upload limit.
  static let maximumBytes = 25 << 20

  /// The file extension for `mediaType`, or nil when it is not supported.
  static func fileExtension(for mediaType: String) -> String? {
    let base = mediaType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
    return base.flatMap { extensions[$0] }
  }
}

/// The JSON answer (`verbose_json` or `json`).
private struct TranscriptionBody: Decodable {
  var text: String
  var language: String?
  var duration: Double?
}

extension OpenAIProvider {
  /// The transcriptions endpoint.
  var transcriptionsURL: String { settings.baseURL + "/audio/transcriptions" }

  /// Transcribes `audio` (of `mediaType`, already checked by the caller) with `model`.
  func transcribe(audio: Data, mediaType: String, language: String, model: String) async throws -> Transcription {
    let boundary = "inspect-" + UUID().uuidString
    var parts = [
      Self.field("model", model), Self.field("response_format", "verbose_json"),
    ]
    // The endpoint takes ISO 639-1 (`en`); the request's BCP 47 tag (`en-US`) is cut to it.
    let code = language.split(whereSeparator: { $0 == "-" || $0 == "_" }).first.map { $0.lowercased() } ?? ""
    if !code.isEmpty { parts.append(Self.field("language", code)) }
    let name = "audio.\(Transcription.fileExtension(for: mediaType) ?? "bin")"
    parts.append(
      MultipartPart(
        headers: [
          "Content-Disposition": "form-data; name=\"file\"; filename=\"\(name)\"",
          "Content-Type": mediaType.split(separator: ";").first.map(String.init) ?? mediaType,
        ], body: ByteBuffer(bytes: audio)))
    var body = ByteBuffer()
    try MultipartSerializer().serialize(parts: parts, boundary: boundary, into: &body)
    let response = try await http.post(
      transcriptionsURL, headers: settings.apiKey.map { [("Authorization", "Bearer \($0)")] } ?? [],
      contentType: "multipart/form-data; boundary=\(boundary)", accept: "application/json",
      body: Data(body.readableBytesView),
      unreachable:
        "cannot reach the OpenAI-compatible provider at \(settings.baseURL) to transcribe (check OPENAI_BASE_URL and "
        + "that the server is running)"
    ) { status, text in
      if status == 404 || status == 405 {
        return .noProvider(
          "the provider at \(settings.baseURL) has no transcription endpoint (HTTP \(status) for /audio/transcriptions); "
            + "point OPENAI_BASE_URL at a server that transcribes, or name another model", code: .failedPrecondition)
      }
      let detail = try? JSONDecoder().decode(OpenAIErrorBody.self, from: Data(text.utf8)).error
      return classify(status: status, detail: detail, body: text, model: model)
    }
    let data = try await ProviderHTTPClient.collect(response, upTo: Self.completionLimit, from: settings.baseURL)
    guard let answer = try? JSONDecoder().decode(TranscriptionBody.self, from: data) else {
      throw ModelError.unavailable(
        "the provider at \(settings.baseURL) answered the transcription with a body that is not a transcription: "
          + ModelError.quote(String(decoding: data, as: UTF8.self)))
    }
    return Transcription(
      text: answer.text, language: answer.language ?? language, durationSeconds: answer.duration)
  }

  private static func field(_ name: String, _ value: String) -> MultipartPart {
    MultipartPart(headers: ["Content-Disposition": "form-data; name=\"\(name)\""], body: value)
  }
}
