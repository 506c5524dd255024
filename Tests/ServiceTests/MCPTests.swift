import Foundation
import InspectKit
import InspectProtos
import InspectTestSupport
import Logging
import Testing

@testable import SandboxService

/// A minimal MCP server over stdio (newline-delimited JSON-RPC), in Python, with one tool.
private let server = #"""
  import json, sys
  for line in sys.stdin:
      line = line.strip()
      if not line:
          continue
      message = json.loads(line)
      method, ident = message.get("method"), message.get("id")
      if ident is None:
          continue  # notifications
      if method == "initialize":
          result = {"protocolVersion": message["params"]["protocolVersion"], "capabilities": {"tools": {}},
                    "serverInfo": {"name": "demo", "version": "1"}}
      elif method == "tools/list":
          result = {"tools": [{"name": "shout", "description": "Upper-cases text",
                               "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}},
                                               "required": ["text"]}}]}
      elif method == "tools/call":
          text = message["params"].get("arguments", {}).get("text", "")
          result = {"content": [{"type": "text", "text": text.upper() + " from " + open("/inspect/nonce").read().strip()[:4]}],
                    "isError": text == "fail"}
      else:
          print(json.dumps({"jsonrpc": "2.0", "id": ident, "error": {"code": -32601, "message": method}}), flush=True)
          continue
      print(json.dumps({"jsonrpc": "2.0", "id": ident, "result": result}), flush=True)
  """#

/// MCP servers a repository configures: they run in its sandbox, their tools join the registry.
/// Part of the serialized local-driver suite: starting sandboxes beside its crash-recovery test
/// would give that test mounts in other namespaces to trip over.
extension SandboxTests {
  @Test(
    "a stdio server starts inside the sandbox, its tools are listed, called and registered; a broken one is left out")
  func stdioServer() async throws {
    let fixture = try SandboxFixture(extraFiles: [
      "tools/mcp_server.py": server,
      ".inspect/mcp.json":
        #"{"servers": {"demo": {"command": ["python3", "tools/mcp_server.py"]}, "broken": {"command": ["false"]}}}"#,
    ])
    try await fixture.withSandbox { sandbox in
      let configuration = try #require(try MCPConfiguration.read(from: sandbox))
      #expect(configuration.servers.keys.sorted() == ["broken", "demo"])
      // The broken server exits at once; the SDK notices only at the start timeout, kept short here.
      let connections = await MCPConnections.connect(
        configuration, sandbox: sandbox, logger: Logger(label: "test"), startTimeout: .seconds(3))
      #expect(connections.tools.map(\.name) == ["mcp_demo_shout"])
      let registry = try ToolRegistry(BuiltinTools.all + connections.tools)
      let tool = try #require(registry.tool(named: "mcp_demo_shout"))
      #expect(tool.writes)
      guard case .failure = registry.arguments(of: tool, for: #"{"text": 3}"#) else {
        Issue.record("the server's schema was not applied")
        return
      }
      let context = ToolContext(
        sandbox: sandbox, turn: .init(), toolCallID: "tc-mcp", emit: { _ in })
      let output = try await tool.run(Data(#"{"text":"hello"}"#.utf8), context)
      // The server read /inspect/nonce, the image's nonce: it ran inside the sandbox.
      #expect(output.content == "HELLO from \(sandbox.image.nonce.prefix(4))")
      await #expect(throws: ToolFailure.self) { _ = try await tool.run(Data(#"{"text":"fail"}"#.utf8), context) }
      await connections.close()
    }
  }

  @Test("MCP: a configuration that is not valid JSON is an error naming the file")
  func badConfiguration() async throws {
    let fixture = try SandboxFixture(extraFiles: [".inspect/mcp.json": "{servers"])
    try await fixture.withSandbox { sandbox in
      let error = #expect(throws: ToolFailure.self) { _ = try MCPConfiguration.read(from: sandbox) }
      #expect(error?.description.contains(".inspect/mcp.json") == true)
    }
  }
}

extension SandboxTests {
  @Test("a whole turn on the local driver: an MCP tool and a screenshot called by the model, results back to it")
  func mcpAndScreenshotInATurn() async throws {
    let fixture = try SandboxFixture(extraFiles: [
      "tools/mcp_server.py": server,
      ".inspect/mcp.json": #"{"servers": {"demo": {"command": ["python3", "tools/mcp_server.py"]}}}"#,
      "web/index.html": "<!doctype html><body style='background:#0a0'>ok</body>",
    ])
    let artifacts = try TemporaryDirectory("inspect-artifacts")
    defer { artifacts.remove() }
    let steps: [[String: Any]] = [
      ["tool_calls": [call("mcp_demo_shout", ["text": "hello"])]],
      [
        "expect": "HELLO from ",
        "tool_calls": [call("screenshot", ["url": "web/index.html", "width": 400, "height": 300])],
      ],
      ["expect": "400×300 pixels", "tool_calls": [call("mcp_demo_shout", ["text": "fail"])]],
      ["expect": "FAIL from ", "text": "Done."],
    ]
    let manager = SandboxManager(driver: fixture.driver, logger: Logger(label: "test"))
    try await withModelRouter(transcripts: ["steps": transcript(steps)]) { client, _ in
      var loop = AgentLoop(
        model: client, modelAddress: HostAndPort(host: "127.0.0.1", port: 0), manager: manager,
        logger: Logger(label: "test"))
      loop.artifacts = ArtifactStore(dataDirectory: artifacts.url)
      let turn = Inspect_Sandbox_V1_StartTurn.with {
        $0.sessionID = "ses-mcp-turn"
        $0.turnID = "trn-1"
        $0.repository = .with { $0.fullName = "local/demo" }
        $0.baseBranch = "main"
        $0.sessionBranch = "inspect/ses-mcp-turn"
        $0.model = "scripted:steps"
        $0.prompts = [.with { $0.text = "Shout and take a picture" }]
      }
      let log = EventLog()
      let finished = await loop.run(turn) { log.append($0) }
      #expect(finished.outcome == .succeeded, "\(finished.reason)")
      let shout = log.toolCalls.filter { $0.name == "mcp_demo_shout" && $0.state == .succeeded }
      #expect(shout.count == 1)
      #expect(shout.first?.result.hasPrefix("HELLO from ") == true)
      // The server's isError answer is a failed call whose text the model read.
      #expect(
        log.toolCalls.contains { $0.name == "mcp_demo_shout" && $0.state == .failed && $0.error.contains("FAIL") })
      let picture = try #require(log.toolCalls.first { $0.name == "screenshot" && $0.state == .succeeded })
      let added = log.all.compactMap { if case .artifactAdded(let added) = $0.kind { added.artifact } else { nil } }
      #expect(added.map(\.id) == [picture.artifactID])
      #expect(added.first?.kind == .screenshot)
      #expect(added.first?.sessionID == "ses-mcp-turn")
    }
    await manager.shutdown()
    await fixture.driver.reserve.close()
    fixture.directory.remove()
  }
}
