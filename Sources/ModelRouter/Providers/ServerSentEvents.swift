import AsyncHTTPClient
import NIOCore

/// One server-sent event: its `event:` name (nil when absent) and its `data:` lines joined by
/// newlines.
struct ServerSentEvent: Sendable, Equatable {
  var event: String?
  var data: String
}

/// Decodes a `text/event-stream` body fed in arbitrary pieces (a line may straddle two network
/// reads). Lines end in LF or CRLF; `:` lines are comments; a blank line dispatches the event;
/// fields other than `event` and `data` (`id`, `retry`) are ignored, as providers do not use them.
struct ServerSentEventDecoder {
  /// A line longer than this is a broken stream, not an event worth buffering.
  static let maximumLineLength = 8 << 20

  struct LineTooLong: Error, CustomStringConvertible {
    var description: String { "an event-stream line exceeded \(ServerSentEventDecoder.maximumLineLength) bytes" }
  }

  private var partialLine: [UInt8] = []
  private var eventName: String?
  private var dataLines: [String] = []

  /// Feeds the next bytes and returns the events they complete.
  mutating func feed(_ bytes: some Sequence<UInt8>) throws -> [ServerSentEvent] {
    var events: [ServerSentEvent] = []
    for byte in bytes {
      if byte == UInt8(ascii: "\n") {
        if partialLine.last == UInt8(ascii: "\r") { partialLine.removeLast() }
        if let event = process(line: String(decoding: partialLine, as: UTF8.self)) { events.append(event) }
        partialLine.removeAll(keepingCapacity: true)
      } else {
        partialLine.append(byte)
        if partialLine.count > Self.maximumLineLength { throw LineTooLong() }
      }
    }
    return events
  }

  /// At the end of the body: the last event if the stream omitted its final blank line.
  mutating func finish() -> ServerSentEvent? {
    if !partialLine.isEmpty {
      let line = String(decoding: partialLine, as: UTF8.self)
      partialLine.removeAll()
      if let event = process(line: line) { return event }
    }
    return process(line: "")
  }

  private mutating func process(line: String) -> ServerSentEvent? {
    if line.isEmpty {
      defer {
        eventName = nil
        dataLines = []
      }
      guard !dataLines.isEmpty else { return nil }
      return ServerSentEvent(event: eventName, data: dataLines.joined(separator: "\n"))
    }
    if line.hasPrefix(":") { return nil }
    let field: Substring
    var value: Substring
    if let colon = line.firstIndex(of: ":") {
      field = line[..<colon]
      value = line[line.index(after: colon)...]
      if value.hasPrefix(" ") { value = value.dropFirst() }
    } else {
      field = line[...]
      value = ""
    }
    switch field {
    case "data": dataLines.append(String(value))
    case "event": eventName = String(value)
    default: break
    }
    return nil
  }
}

extension HTTPClientResponse.Body {
  /// Calls `handle` with each event of this `text/event-stream` body, in order, until `handle`
  /// returns false (the provider's end marker) or the body ends. Returns whether `handle` ended
  /// it; a broken connection is UNAVAILABLE naming `source`.
  func forEachEvent(from source: String, _ handle: (ServerSentEvent) async throws -> Bool) async throws -> Bool {
    var decoder = ServerSentEventDecoder()
    var bytes = makeAsyncIterator()
    while true {
      let buffer: ByteBuffer?
      do {
        buffer = try await bytes.next()
      } catch {
        try Task.checkCancellation()
        throw ModelError.unavailable("the stream from \(source) broke: \(error)")
      }
      let events = try buffer.map { try decoder.feed($0.readableBytesView) } ?? (decoder.finish().map { [$0] } ?? [])
      for event in events where try await !handle(event) {
        // The provider's end marker: read what is left (normally nothing), so the response ends
        // cleanly and its connection can serve the next call.
        var left = 64 << 10
        while left > 0, let rest = try? await bytes.next() { left -= rest.readableBytes }
        return true
      }
      if buffer == nil { return false }
    }
  }
}
