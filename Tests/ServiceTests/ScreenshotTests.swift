import Foundation
import InspectKit
import InspectProtos
import InspectTestSupport
import Logging
import Synchronization
import Testing

@testable import SandboxService

/// A page with a 100×100 blue square at the top left on a red background.
private let page = """
  <!doctype html><html><body style="margin:0;background:rgb(200,0,0)">
  <div style="width:100px;height:100px;background:rgb(0,0,255)"></div></body></html>
  """

/// Reads the pixel at (x, y) of a PNG (8-bit RGB or RGBA, any filters) with Python's zlib: an
/// independent decoder, so the test checks what the browser drew, not what our code thinks.
private func pixel(_ png: URL, x: Int, y: Int) async throws -> [Int] {
  let script = """
    import sys, zlib, struct
    data = open(sys.argv[1], 'rb').read()
    pos, idat, width, height, kind = 8, b'', 0, 0, 0
    while pos < len(data):
        length, tag = struct.unpack('>I4s', data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if tag == b'IHDR':
            width, height, depth, kind = struct.unpack('>IIBB', body[:10])
        elif tag == b'IDAT':
            idat += body
        pos += 12 + length
    channels = {2: 3, 6: 4}[kind]
    raw, stride, rows, prior = zlib.decompress(idat), width * channels, [], bytearray(width * channels)
    for row in range(height):
        start = row * (stride + 1)
        kind_, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prior[i], prior[i - channels] if i >= channels else 0
            if kind_ == 1: line[i] = (line[i] + a) & 255
            elif kind_ == 2: line[i] = (line[i] + b) & 255
            elif kind_ == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif kind_ == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prior = line
    x, y = int(sys.argv[2]), int(sys.argv[3])
    print(' '.join(str(v) for v in rows[y][x * channels:x * channels + 3]))
    """
  let result = try await runCommand(
    "/usr/bin/env", ["python3", "-c", script, png.path, "\(x)", "\(y)"],
    environment: ProcessInfo.processInfo.environment)
  #expect(result.status == 0, "\(result.output)")
  return result.output.split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
}

/// The screenshot tool on the local driver: Debian's Chromium runs inside the sandbox.
extension SandboxTests {
  @Test("screenshot: a repository page and a page served in the sandbox become PNG artifacts of what was drawn")
  func screenshots() async throws {
    let fixture = try SandboxFixture(extraFiles: ["web/index.html": page])
    let artifacts = try TemporaryDirectory("inspect-artifacts")
    defer { artifacts.remove() }
    try await fixture.withSandbox { sandbox in
      let events = Mutex<[Inspect_Session_V1_SessionEvent]>([])
      let turn = Inspect_Sandbox_V1_StartTurn.with {
        $0.sessionID = "ses-shots"
        $0.turnID = "trn-1"
      }
      let context = ToolContext(
        sandbox: sandbox, turn: turn, toolCallID: "tc-shot", emit: { event in events.withLock { $0.append(event) } },
        artifacts: ArtifactStore(dataDirectory: artifacts.url))
      let tool = BuiltinTools.screenshot

      let output = try await tool.run(Data(#"{"url":"web/index.html","width":640,"height":480}"#.utf8), context)
      #expect(output.artifactID.hasPrefix("art-"))
      #expect(output.content.contains("640×480 pixels"), "\(output.content)")
      let added = try #require(
        events.withLock { $0 }.compactMap {
          if case .artifactAdded(let added) = $0.kind { added.artifact } else { nil }
        }
        .first)
      #expect(added.id == output.artifactID)
      #expect(added.kind == .screenshot)
      #expect(added.mediaType == "image/png")
      #expect(added.toolCallID == "tc-shot")
      let file = artifacts.url.appendingPathComponent(added.storagePath)
      #expect(try Data(contentsOf: file).count == Int(added.sizeBytes))
      #expect(try await pixel(file, x: 50, y: 50) == [0, 0, 255])
      #expect(try await pixel(file, x: 400, y: 300) == [200, 0, 0])

      // A page the agent serves inside the sandbox (its loopback, not the host's).
      let serve = try await sandbox.exec(
        "(python3 -m http.server 8765 --bind 127.0.0.1 >/dev/null 2>&1 &) ; "
          + "for i in $(seq 100); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 8765))' "
          + "2>/dev/null && exit 0; sleep 0.05; done; exit 1",
        timeout: .seconds(20))
      #expect(serve.succeeded, "\(serve.combinedText)")
      let served = try await tool.run(
        Data(#"{"url":"http://127.0.0.1:8765/web/index.html","width":800,"height":600,"wait_ms":0}"#.utf8), context)
      #expect(served.content.contains("800×600 pixels"), "\(served.content)")
      let second = artifacts.url.appendingPathComponent("artifacts/ses-shots/\(served.artifactID)")
      #expect(try await pixel(second, x: 99, y: 99) == [0, 0, 255])
      #expect(try await pixel(second, x: 100, y: 100) == [200, 0, 0])

      // Nothing listens there: the browser's reason reaches the model.
      let refused = await #expect(throws: ToolFailure.self) {
        _ = try await tool.run(Data(#"{"url":"http://127.0.0.1:8766/"}"#.utf8), context)
      }
      #expect(refused?.description.contains("ERR_CONNECTION_REFUSED") == true, "\(String(describing: refused))")
      // Refused before anything starts: other hosts, other schemes, paths out of the workspace.
      for (url, reason) in [
        ("https://example.com/", "has no network"), ("file:///etc/passwd", "only http://127.0.0.1"),
        ("javascript:alert(1)", "only http://127.0.0.1"), ("../../etc/passwd", "cannot be read"),
        ("web/missing.html", "cannot be read"), (#"http://evil.example\\@127.0.0.1/"#, "not a valid URL"),
        ("http://user@127.0.0.1:8765/", "not a valid URL"),
      ] {
        let error = await #expect(throws: ToolFailure.self) {
          _ = try await tool.run(Data(#"{"url":"\#(url)"}"#.utf8), context)
        }
        #expect(error?.description.contains(reason) == true, "\(url): \(String(describing: error))")
      }
      // Two pictures were stored, one per successful call.
      let stored = try FileManager.default.contentsOfDirectory(
        atPath: artifacts.url.appendingPathComponent("artifacts/ses-shots").path)
      #expect(stored.sorted() == [output.artifactID, served.artifactID].sorted())
    }
  }

  @Test("screenshot: without a place for artifacts the tool says so instead of starting a browser")
  func screenshotNeedsArtifacts() async throws {
    let fixture = try SandboxFixture(extraFiles: ["web/index.html": page])
    try await fixture.withSandbox { sandbox in
      let context = ToolContext(sandbox: sandbox, turn: .init(), toolCallID: "tc-shot", emit: { _ in })
      let error = await #expect(throws: ToolFailure.self) {
        _ = try await BuiltinTools.screenshot.run(Data(#"{"url":"web/index.html"}"#.utf8), context)
      }
      #expect(error?.description.contains("keeps no artifacts") == true)
    }
  }
}

@Suite("The screenshot tool's parts")
struct ScreenshotPartsTests {
  @Test("a PNG's size is read from its header; cut or foreign data is not a PNG")
  func pngSize() {
    var png = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13])
    png.append(contentsOf: Array("IHDR".utf8) + [0, 0, 2, 128, 0, 0, 1, 224] + [8, 2, 0, 0, 0] + [1, 2, 3, 4])
    png.append(contentsOf: [0, 0, 0, 0] + Array("IEND".utf8) + [0xAE, 0x42, 0x60, 0x82])
    let size = Screenshot.pngSize(png)
    #expect(size?.width == 640)
    #expect(size?.height == 480)
    #expect(Screenshot.pngSize(png.dropLast(4)) == nil)
    #expect(Screenshot.pngSize(Data("<html>not a picture</html> padded to more than thirty-three bytes".utf8)) == nil)
  }

  @Test("the browser's error lines are kept, its D-Bus noise is not")
  func messages() {
    let stderr = """
      [1:2:ERROR:dbus/bus.cc:405] Failed to connect to the bus
      [3:3:ERROR:headless_command_handler.cc:403] Page load failed: net::ERR_CONNECTION_REFUSED
      """
    #expect(
      Screenshot.messages(stderr)
        == "[3:3:ERROR:headless_command_handler.cc:403] Page load failed: net::ERR_CONNECTION_REFUSED")
    #expect(Screenshot.messages("") == "the browser said nothing")
  }
}
