import Foundation
import InspectKit

extension BuiltinTools {
  /// Most files a listing walks for `glob` and the built-in search.
  static let walkLimit = 20_000
  /// Files larger than this are skipped by the built-in search.
  static let searchFileLimit: UInt64 = 1 << 20

  static let glob = Tool(
    name: "glob",
    description:
      "List the files whose path matches a glob pattern (`*` within a directory, `**` across directories, `?`, "
      + "`[abc]`), e.g. `**/*.swift` or `Sources/*/main.py`.",
    schema: """
      {"type":"object","properties":{"pattern":{"type":"string","minLength":1},\
      "path":{"type":"string","description":"Directory to search under; default the repository root"}},\
      "required":["pattern"],"additionalProperties":false}
      """,
    access: .read
  ) { data, context in
    struct Arguments: Decodable {
      let pattern: String
      let path: String?
    }
    let arguments = try decode(Arguments.self, data, tool: "glob")
    let matcher: GlobPattern
    do {
      matcher = try GlobPattern(arguments.pattern)
    } catch {
      throw ToolFailure("glob: \(error)")
    }
    let listing = try context.sandbox.listFiles(arguments.path ?? "", recursive: true, maxEntries: walkLimit)
    let matches = listing.entries.filter { $0.kind == .file && matcher.matches($0.path) }.map(\.path)
    let shown = matches.prefix(1000)
    var content = shown.joined(separator: "\n")
    if matches.count > shown.count { content += "\n… and \(matches.count - shown.count) more" }
    if listing.truncated { content += "\n(the listing stopped at \(walkLimit) entries; narrow the path)" }
    return ToolOutput(
      content: matches.isEmpty ? "no file matches \(arguments.pattern)" : content,
      summary: "\(matches.count) files match \(arguments.pattern)")
  }

  static let search = searchTool(ripgrep: true)

  /// `search`; with `ripgrep` false it never looks for `rg` (tests compare both engines).
  static func searchTool(ripgrep useRipgrep: Bool) -> Tool {
    Tool(
      name: "search",
      description:
        "Search file contents for a regular expression; answers `path:line:text` lines. Uses ripgrep when the sandbox "
        + "has it, else a built-in search (files up to 1 MiB, binary files skipped).",
      schema: """
        {"type":"object","properties":{"pattern":{"type":"string","minLength":1},\
        "path":{"type":"string","description":"File or directory to search; default the repository root"},\
        "glob":{"type":"string","description":"Only files whose path matches this glob"},\
        "case_insensitive":{"type":"boolean"},"max_results":{"type":"integer","minimum":1,"maximum":2000}},\
        "required":["pattern"],"additionalProperties":false}
        """,
      access: .read, timeout: .seconds(60)
    ) { data, context in
      let arguments = try decode(SearchArguments.self, data, tool: "search")
      let limit = arguments.maxResults ?? 200
      let expression: NSRegularExpression
      do {
        expression = try NSRegularExpression(
          pattern: arguments.pattern, options: arguments.caseInsensitive == true ? [.caseInsensitive] : [])
      } catch {
        throw ToolFailure("search: '\(arguments.pattern)' is not a valid regular expression")
      }
      let filter: GlobPattern?
      do {
        filter = try arguments.glob.map { try GlobPattern($0) }
      } catch {
        throw ToolFailure("search: \(error)")
      }
      let engine: String
      var hits: [String]
      if useRipgrep, let found = try await ripgrep(arguments, limit: limit, context: context) {
        (engine, hits) = ("ripgrep", found)
      } else {
        engine = "built-in search"
        hits = []
        let listing = try context.sandbox.listFiles(arguments.path ?? "", recursive: true, maxEntries: walkLimit)
        let files =
          listing.entries.isEmpty && arguments.path != nil
          ? [arguments.path!] : listing.entries.filter { $0.kind == .file && $0.size <= searchFileLimit }.map(\.path)
        scan: for path in files where filter?.matches(path) ?? true {
          guard let file = try? context.sandbox.readFile(path, offset: 0, limit: searchFileLimit),
            !file.content.prefix(8000).contains(0)
          else { continue }
          let text = String(decoding: file.content, as: UTF8.self)
          for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(line)
            if expression.firstMatch(in: line, range: NSRange(line.startIndex..., in: line)) != nil {
              hits.append("\(path):\(number + 1):\(line.prefix(300))")
              if hits.count >= limit { break scan }
            }
          }
        }
      }
      let content = hits.isEmpty ? "no match for \(arguments.pattern)" : hits.joined(separator: "\n")
      return ToolOutput(
        content: content + (hits.count >= limit ? "\n(stopped at \(limit) results)" : ""),
        summary: "\(hits.count) matches for \(arguments.pattern) (\(engine))")
    }
  }

  /// Runs `rg` in the sandbox when it is installed there; nil when it is not.
  private static func ripgrep(_ arguments: SearchArguments, limit: Int, context: ToolContext) async throws -> [String]?
  {
    let probe = try await context.sandbox.exec("command -v rg", timeout: .seconds(10)) { _, _ in }
    guard probe.succeeded else { return nil }
    var command = ["rg", "--line-number", "--no-heading", "--color", "never", "--max-columns", "300"]
    if arguments.caseInsensitive == true { command.append("--ignore-case") }
    if let glob = arguments.glob { command += ["--glob", glob] }
    command += ["-e", arguments.pattern, "--", arguments.path ?? "."]
    let result = try await context.sandbox.exec(
      command.map(shellQuoted).joined(separator: " ") + " | head -n \(limit)", timeout: .seconds(60)
    ) { _, _ in }
    let lines = String(decoding: result.stdout, as: UTF8.self).split(separator: "\n").map(String.init)
    return lines.map { $0.hasPrefix("./") ? String($0.dropFirst(2)) : $0 }
  }

  static let gitDiff = Tool(
    name: "git_diff",
    description: "Show what changed in the repository since the sandbox's commit (new files included), as a diff.",
    schema: #"{"type":"object","properties":{},"additionalProperties":false}"#,
    access: .read
  ) { _, context in
    let diff = try await context.sandbox.diff()
    return ToolOutput(
      content: diff.isEmpty ? "no changes" : diff,
      summary: diff.isEmpty ? "no changes" : "\(diff.split(separator: "\n").count) lines of diff")
  }
}

/// The arguments of `search`.
private struct SearchArguments: Decodable {
  let pattern: String
  let path: String?
  let glob: String?
  let caseInsensitive: Bool?
  let maxResults: Int?
  enum CodingKeys: String, CodingKey {
    case pattern, path, glob
    case caseInsensitive = "case_insensitive"
    case maxResults = "max_results"
  }
}

/// `text` quoted for the POSIX shell.
func shellQuoted(_ text: String) -> String {
  "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
