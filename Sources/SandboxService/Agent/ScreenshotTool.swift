import Foundation
import InspectKit
import InspectProtos

extension BuiltinTools {
  /// Takes a PNG of a page with the headless Chromium of the sandbox's image: a page the agent
  /// serves inside the sandbox (`http://127.0.0.1:PORT/…`; the sandbox has no other network) or a
  /// file of the repository. The browser runs inside the sandbox like any command; its PNG comes
  /// back on standard output and is stored as a `screenshot` artifact of the session.
  static let screenshot = Tool(
    name: "screenshot",
    description:
      "Take a PNG screenshot of a web page with headless Chromium inside the sandbox: a page you serve in the "
      + "sandbox (start a server with run_command first, e.g. http://127.0.0.1:8000/) or an HTML file of the "
      + "repository (a path relative to its root). The picture is stored as an artifact the session's people see.",
    schema: """
      {"type":"object","properties":{\
      "url":{"type":"string","minLength":1,"description":"http://127.0.0.1:PORT/… (or localhost) or a repository path"},\
      "width":{"type":"integer","minimum":320,"maximum":3840,"description":"Viewport width in pixels, default 1280"},\
      "height":{"type":"integer","minimum":240,"maximum":4320,"description":"Viewport height in pixels, default 800"},\
      "wait_ms":{"type":"integer","minimum":0,"maximum":30000,"description":"Time the page's scripts get before the picture, default 500"}},\
      "required":["url"],"additionalProperties":false}
      """,
    timeout: .seconds(90)
  ) { data, context in
    struct Arguments: Decodable {
      let url: String
      let width: Int?
      let height: Int?
      let waitMilliseconds: Int?
      enum CodingKeys: String, CodingKey {
        case url, width, height
        case waitMilliseconds = "wait_ms"
      }
    }
    let arguments = try decode(Arguments.self, data, tool: "screenshot")
    let target = try Screenshot.target(arguments.url, in: context.sandbox)
    guard let artifacts = context.artifacts else {
      throw ToolFailure("screenshot: this agent keeps no artifacts, so a screenshot could not be stored")
    }
    let (width, height) = (arguments.width ?? 1280, arguments.height ?? 800)
    let result = try await context.sandbox.run(
      [
        "/bin/sh", "-c", Screenshot.script, "screenshot", target.url, "\(width),\(height)",
        "\(arguments.waitMilliseconds ?? 500)", target.isPath ? "path" : "url",
      ],
      environment: ["HOME": "/tmp"], timeout: Screenshot.timeout, outputLimit: Screenshot.sizeLimit * 2)
    let messages = Screenshot.messages(String(decoding: result.stderr, as: UTF8.self))
    guard result.succeeded else {
      if result.timedOut { throw ToolFailure("screenshot: the browser did not finish within \(Screenshot.timeout)") }
      if result.exitCode == Screenshot.noBrowser {
        throw ToolFailure(
          "screenshot: the sandbox's image has no Chromium (looked for \(Screenshot.browsers.joined(separator: ", "))); "
            + "install Debian's chromium package where the image is built")
      }
      throw ToolFailure("screenshot: \(arguments.url) could not be captured: \(messages)")
    }
    guard result.stdoutDropped == 0, result.stdout.count <= Screenshot.sizeLimit else {
      throw ToolFailure("screenshot: the picture is larger than \(Screenshot.sizeLimit) bytes; use a smaller viewport")
    }
    guard let size = Screenshot.pngSize(result.stdout) else {
      throw ToolFailure("screenshot: the browser did not produce a PNG of \(arguments.url): \(messages)")
    }
    let artifact = try artifacts.store(
      result.stdout, name: "screenshot-\(context.toolCallID).png", mediaType: "image/png", kind: .screenshot,
      session: context.turn.sessionID, turn: context.turn.turnID, toolCall: context.toolCallID)
    try await context.emit(.with { $0.artifactAdded = .with { $0.artifact = artifact } })
    return ToolOutput(
      content:
        "screenshot of \(arguments.url) (\(size.width)×\(size.height) pixels, \(result.stdout.count) bytes) "
        + "stored as artifact \(artifact.id); the session's people can see it",
      summary: "screenshot of \(arguments.url)", artifactID: artifact.id)
  }
}

/// The parts of the screenshot tool.
enum Screenshot {
  /// Browser commands looked for in the sandbox, in order.
  static let browsers = ["chromium", "chromium-browser", "google-chrome", "chrome", "headless_shell"]
  /// The exit code of the script when no browser is found.
  static let noBrowser: Int32 = 127
  static let timeout = Duration.seconds(60)
  static let sizeLimit = 16 << 20

  /// Finds the browser, takes the picture into a private temporary directory and writes it to
  /// standard output. `$1` is the URL (a path of the workspace, the working directory, when `$4` is
  /// `path`), `$2` the window size, `$3` the virtual-time budget. The browser's own output goes to
  /// standard error; a page that fails to load leaves no file.
  static let script = """
    set -u
    browser=""
    for name in \(browsers.joined(separator: " ")); do
      if command -v "$name" >/dev/null 2>&1; then browser=$(command -v "$name"); break; fi
    done
    [ -n "$browser" ] || { echo "no browser" >&2; exit \(noBrowser); }
    url="$1"
    [ "$4" = path ] && url="file://$PWD/$1"
    # A budget of 0 would make the browser wait forever.
    budget=""
    [ "$3" -gt 0 ] && budget="--virtual-time-budget=$3"
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
    "$browser" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run --hide-scrollbars \\
      --disable-crash-reporter --user-data-dir="$dir/profile" --window-size="$2" $budget \\
      --screenshot="$dir/shot.png" "$url" </dev/null >&2 || exit $?
    [ -s "$dir/shot.png" ] || exit 3
    cat "$dir/shot.png"
    """

  /// What the browser opens for `argument`: a loopback http(s) URL as given, or a repository path
  /// (which must exist inside the workspace), percent-encoded, for a `file://` URL of it.
  static func target(_ argument: String, in sandbox: any SandboxInstance) throws -> (url: String, isPath: Bool) {
    let lowered = argument.lowercased()
    if lowered.hasPrefix("http://") || lowered.hasPrefix("https://") {
      // What the browser opens is rebuilt from the parsed parts, so that text the parser and
      // the browser read differently (`\\`, user info, spaces) cannot point it elsewhere.
      guard
        !argument.contains("\\"),
        !argument.unicodeScalars.contains(where: {
          CharacterSet.whitespacesAndNewlines.contains($0) || CharacterSet.controlCharacters.contains($0)
        }),
        let components = URLComponents(string: argument), components.user == nil, components.password == nil,
        let host = components.host?.lowercased(), let url = components.string
      else {
        throw ToolFailure("screenshot: '\(argument)' is not a valid URL (no user info, spaces or backslashes)")
      }
      guard ["127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0"].contains(host) else {
        throw ToolFailure(
          "screenshot: the sandbox has no network, so '\(host)' cannot be reached; serve the page inside the "
            + "sandbox and use http://127.0.0.1:PORT/")
      }
      return (url, false)
    }
    if lowered.contains("://") || lowered.hasPrefix("file:") || lowered.hasPrefix("javascript:")
      || lowered.hasPrefix("data:")
    {
      throw ToolFailure(
        "screenshot: only http://127.0.0.1:PORT/… (or localhost) and repository paths can be captured, not '\(argument)'"
      )
    }
    // The same confinement as the file tools: relative, inside the workspace, existing.
    do {
      _ = try sandbox.readFile(argument, offset: 0, limit: 1)
    } catch {
      throw ToolFailure("screenshot: \(argument) cannot be read: \(error)")
    }
    let escaped = argument.split(separator: "/").filter { $0 != "." }.map {
      String($0).addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(["/"])) ?? String($0)
    }
    return (escaped.joined(separator: "/"), true)
  }

  /// The width and height in a PNG's header, or nil when `data` is not a whole PNG.
  static func pngSize(_ data: Data) -> (width: Int, height: Int)? {
    let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    let end: [UInt8] = [0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82]
    let bytes = [UInt8](data)
    guard bytes.count >= 33, Array(bytes[0..<8]) == signature, Array(bytes[12..<16]) == Array("IHDR".utf8),
      Array(bytes.suffix(8)) == end
    else { return nil }
    func integer(_ at: Int) -> Int { bytes[at..<(at + 4)].reduce(0) { $0 << 8 | Int($1) } }
    return (integer(16), integer(20))
  }

  /// The browser's error lines (without its D-Bus noise), for the model.
  static func messages(_ stderr: String) -> String {
    let lines = stderr.split(separator: "\n").filter { !$0.contains("dbus") && !$0.isEmpty }
    let errors = lines.filter { $0.contains("ERROR") || $0.contains("failed") }
    let chosen = (errors.isEmpty ? lines : errors).suffix(5)
    return chosen.isEmpty ? "the browser said nothing" : chosen.joined(separator: "\n")
  }
}
