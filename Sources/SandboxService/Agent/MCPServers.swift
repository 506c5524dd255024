import Foundation
import InspectKit
import InspectProtos
import Logging
import MCP

/// MCP servers a repository configures in `.inspect/mcp.json`, connected over stdio for the
/// length of a turn; their tools join the turn's registry as `mcp_<server>_<tool>`.
///
/// ```json
/// {"servers": {"docs": {"command": ["python3", "tools/docs_mcp.py"], "env": {"DOCS_DIR": "docs"}}}}
/// ```
///
/// The servers are the repository's own code, so they run inside the sandbox (like any command
/// the agent runs), started from the workspace; the client side (modelcontextprotocol/swift-sdk)
/// runs here and speaks JSON-RPC over the process's standard input and output. Their tools count
/// as writing tools (their effects are unknown), so they wait for the sync and go through the
/// permission policy. A server that does not start or initialize within ``startTimeout`` is left
/// out (logged), and the turn goes on without it.
struct MCPConfiguration: Decodable, Sendable, Equatable {
  struct Server: Decodable, Sendable, Equatable {
    var command: [String]
    var env: [String: String]?
  }

  var servers: [String: Server] = [:]

  static let file = ".inspect/mcp.json"
  static let startTimeout: Duration = .seconds(15)

  /// The repository's configuration, read from the image; nil when it has none. A file that is
  /// not a valid configuration is an error naming it.
  static func read(from sandbox: any SandboxInstance) throws -> MCPConfiguration? {
    guard let file = try? sandbox.readFile(Self.file, offset: 0, limit: 1 << 20) else { return nil }
    do {
      let configuration = try JSONDecoder().decode(MCPConfiguration.self, from: file.content)
      for (name, server) in configuration.servers where server.command.isEmpty || name.isEmpty {
        throw ToolFailure("server '\(name)' has no command")
      }
      return configuration
    } catch {
      throw ToolFailure("\(Self.file) is not a valid MCP configuration: \(error)")
    }
  }
}

/// The connected MCP servers of one turn.
final class MCPConnections: Sendable {
  private let clients: [(name: String, client: Client, transport: SandboxStdioTransport)]
  let tools: [Tool]

  private init(clients: [(String, Client, SandboxStdioTransport)], tools: [Tool]) {
    self.clients = clients.map { (name: $0.0, client: $0.1, transport: $0.2) }
    self.tools = tools
  }

  static let none = MCPConnections(clients: [], tools: [])

  /// Starts and initializes every configured server, and lists its tools.
  static func connect(
    _ configuration: MCPConfiguration, sandbox: any SandboxInstance, logger: Logger,
    startTimeout: Duration = MCPConfiguration.startTimeout
  ) async -> MCPConnections {
    var clients: [(String, Client, SandboxStdioTransport)] = []
    var tools: [Tool] = []
    for (name, server) in configuration.servers.sorted(by: { $0.key < $1.key }) {
      let transport = SandboxStdioTransport(sandbox: sandbox, server: server, logger: logger)
      let client = Client(name: "inspect", version: "1")
      do {
        let listed = try await withTimeout(
          startTimeout, timedOut: { ToolFailure("it did not start within \(startTimeout)") }
        ) {
          try await client.connect(transport: transport)
          return try await client.listTools().tools
        }
        clients.append((name, client, transport))
        for tool in listed { tools.append(Self.tool(tool, server: name, client: client)) }
        logger.info("MCP server connected", metadata: ["mcp.server": "\(name)", "mcp.tools": "\(listed.count)"])
      } catch {
        logger.warning("MCP server left out", metadata: ["mcp.server": "\(name)", "error": "\(error)"])
        await transport.disconnect()
      }
    }
    return MCPConnections(clients: clients, tools: tools)
  }

  /// Stops every server.
  func close() async {
    for (_, client, transport) in clients {
      await client.disconnect()
      await transport.disconnect()
    }
  }

  /// `mcp_<server>_<tool>`, cut to the providers' 64 characters of `[a-zA-Z0-9_-]`.
  static func name(server: String, tool: String) -> String {
    let raw = "mcp_\(server)_\(tool)"
    let cleaned = String(raw.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") ? $0 : "_" })
    return String(cleaned.prefix(64))
  }

  private static func tool(_ tool: MCP.Tool, server: String, client: Client) -> Tool {
    let schema =
      (try? JSONEncoder().encode(tool.inputSchema)).map { String(decoding: $0, as: UTF8.self) } ?? #"{"type":"object"}"#
    let name = Self.name(server: server, tool: tool.name)
    return Tool(
      name: name, description: "\(tool.description ?? tool.name) (MCP server \(server))", schema: schema,
      access: .write, timeout: .seconds(120)
    ) { data, _ in
      let arguments =
        (try? JSONDecoder().decode([String: Value].self, from: data.isEmpty ? Data("{}".utf8) : data)) ?? [:]
      let (content, isError) = try await client.callTool(name: tool.name, arguments: arguments)
      let text = content.map { item -> String in
        switch item {
        case .text(let text, _, _): return text
        default: return "[\(item) content]"
        }
      }.joined(separator: "\n")
      if isError == true { throw ToolFailure("\(name): \(text)") }
      return ToolOutput(content: text, summary: "\(server).\(tool.name)")
    }
  }
}

/// MCP's stdio transport over a process inside the sandbox: messages are lines of JSON on the
/// process's standard input and output.
actor SandboxStdioTransport: Transport {
  nonisolated let logger: Logger
  private let sandbox: any SandboxInstance
  private let server: MCPConfiguration.Server
  private var command: RunningCommand?
  private let messages: AsyncThrowingStream<Data, any Error>
  private let continuation: AsyncThrowingStream<Data, any Error>.Continuation
  private var reader: Task<Void, Never>?

  init(sandbox: any SandboxInstance, server: MCPConfiguration.Server, logger: Logger) {
    self.sandbox = sandbox
    self.server = server
    self.logger = logger
    (messages, continuation) = AsyncThrowingStream.makeStream(of: Data.self)
  }

  func connect() async throws {
    let command = try sandbox.start(server.command, environment: server.env ?? [:], directory: "")
    self.command = command
    let continuation = self.continuation
    reader = Task {
      var pending = Data()
      for await event in command.events {
        switch event {
        case .stdout(let data):
          pending.append(data)
          while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
            let line = pending[pending.startIndex..<newline]
            pending = Data(pending[(newline + 1)...])
            if !line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) {
              continuation.yield(Data(line))
            }
          }
        case .stderr, .started:
          break
        case .exited(let code, let signal):
          continuation.finish(throwing: ToolFailure("the MCP server exited (code \(code), signal \(signal))"))
          return
        case .failed(let reason):
          continuation.finish(throwing: ToolFailure("the MCP server did not start: \(reason)"))
          return
        }
      }
      continuation.finish()
    }
  }

  func disconnect() async {
    reader?.cancel()
    command?.signal(SIGTERM)
    command?.release()
    command = nil
    continuation.finish()
  }

  func send(_ data: Data) async throws {
    guard let command else { throw ToolFailure("the MCP server is not running") }
    var line = data
    line.append(UInt8(ascii: "\n"))
    try await command.write(line)
  }

  nonisolated func receive() -> AsyncThrowingStream<Data, any Error> { messages }
}
