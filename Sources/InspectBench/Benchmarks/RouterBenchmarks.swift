import ArgumentParser
import AsyncHTTPClient
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import InspectKit
import InspectProtos
import InspectTestSupport
import NIOCore

typealias ModelClient = Inspect_Model_V1_ModelRouterService.Client<HTTP2ClientTransport.Posix>

struct RouterBenchOptions: ParsableArguments {
  @Option(help: "ModelRouter's --log-level.")
  var logLevel = "warning"
}

/// A loopback OpenAI-compatible stand-in answering every request with `reply`, a real ModelRouter
/// process pointed at it (no retries), a gRPC client to the router, and an HTTP client for
/// sending the same request straight to the stand-in.
struct RouterBench: Sendable {
  let router: ModelClient
  let standIn: OpenAIStandIn
  let http: HTTPClient
  let service: ServiceProcess

  static func run(
    _ options: RouterBenchOptions, reply: OpenAIStandIn.Reply, _ body: @Sendable (RouterBench) async throws -> String
  ) async throws {
    let work = FileManager.default.temporaryDirectory.appendingPathComponent("inspect-bench-router-\(getpid())")
    let data = work.appendingPathComponent("data", isDirectory: true)
    try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: work) }
    let binaries = try await BinaryDirectory.resolve()
    let line = try await withOpenAIStandIn([], whenExhausted: reply) { standIn in
      let service = try await ServiceProcess.start(
        "ModelRouter", binDirectory: binaries, dataDirectory: data,
        environment: [
          "OPENAI_BASE_URL": standIn.baseURL, "OPENAI_API_KEY": "sk-bench", "INSPECT_MODEL_MAX_ATTEMPTS": "1",
        ], logLevel: options.logLevel)
      let http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
      do {
        let line = try await withGRPCClient(
          transport: .http2NIOPosix(
            target: .ipv4(host: service.grpc.host, port: service.grpc.port), transportSecurity: .plaintext)
        ) { grpc in
          try await body(
            RouterBench(router: ModelClient(wrapping: grpc), standIn: standIn, http: http, service: service))
        }
        try await http.shutdown()
        await service.stop()
        return line
      } catch {
        try? await http.shutdown()
        await service.stop()
        throw BenchError("\(error)\n\(ServiceProcess.tail(of: service.log))")
      }
    }
    print(line)
  }

  static let request = Inspect_Model_V1_GenerateRequest.with {
    $0.model = "openai:bench"
    $0.task = .code
    $0.messages = [
      .with {
        $0.role = .user
        $0.text = "Say something."
      }
    ]
  }

  /// Through the router: the time to the first text delta, and the text deltas in all.
  func routed(_ request: Inspect_Model_V1_GenerateRequest = request) async throws -> (first: Duration, deltas: Int) {
    let clock = ContinuousClock()
    let started = clock.now
    return try await router.generate(request) { response in
      var first: Duration?
      var deltas = 0
      for try await message in response.messages {
        if case .textDelta = message.kind {
          deltas += 1
          if first == nil { first = clock.now - started }
        }
      }
      return (first ?? clock.now - started, deltas)
    }
  }

  /// Straight to the stand-in: the time to the first body bytes that carry content, and the
  /// content events in all.
  func direct() async throws -> (first: Duration, deltas: Int) {
    var request = HTTPClientRequest(url: "\(standIn.baseURL)/chat/completions")
    request.method = .POST
    request.headers.add(name: "Content-Type", value: "application/json")
    request.body = .bytes(
      ByteBuffer(
        string:
          #"{"model":"bench","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say something."}]}"#
      ))
    let clock = ContinuousClock()
    let started = clock.now
    let response = try await http.execute(request, timeout: .seconds(30))
    var first: Duration?
    var body = ""
    // Content deltas that carry text (the first delta's empty content does not count); the
    // stand-in cuts events across writes, so the whole body so far is searched.
    func contentDeltas(_ text: String) -> Int {
      (text.components(separatedBy: #""content":""#).count - 1)
        - (text.components(separatedBy: #""content":"""#).count - 1)
    }
    for try await buffer in response.body {
      body += String(buffer: buffer)
      if first == nil, contentDeltas(body) > 0 { first = clock.now - started }
    }
    let deltas = contentDeltas(body)
    return (first ?? clock.now - started, deltas)
  }
}

/// `router.ttft`: time to the first token through ModelRouter beside the same request sent straight
/// to the stand-in, alternating, in the same run.
struct RouterTTFTBenchmark: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "router.ttft", abstract: "Time to first token through ModelRouter vs straight to the provider.")

  @Option(help: "Requests each way.")
  var runs = 200

  @OptionGroup var options: RouterBenchOptions

  func run() async throws {
    let runs = self.runs
    try await RouterBench.run(options, reply: .text("Hello from the stand-in model.")) { bench in
      for _ in 0..<20 {
        _ = try await bench.routed()
        _ = try await bench.direct()
      }
      var (routed, direct) = (Samples(), Samples())
      for _ in 0..<runs {
        routed.append(try await bench.routed().first)
        direct.append(try await bench.direct().first)
      }
      return String(
        format: "bench router.ttft p50_ms=%.3f baseline_p50_ms=%.3f added_p50_ms=%.3f p99_ms=%.3f runs=%d", routed.p50,
        direct.p50, routed.p50 - direct.p50, routed.p99, runs)
    }
  }
}

/// `router.throughput`: a long streamed answer through ModelRouter beside straight from the
/// stand-in: text deltas per second, and their ratio.
struct RouterThroughputBenchmark: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "router.throughput", abstract: "Streaming throughput through ModelRouter vs direct.")

  @Option(help: "Words in the answer (each is one streamed chunk).")
  var words = 5_000

  @Option(help: "Streams each way.")
  var runs = 10

  @OptionGroup var options: RouterBenchOptions

  func run() async throws {
    let (words, runs) = (self.words, self.runs)
    let text = (0..<words).map { "w\($0)" }.joined(separator: " ")
    try await RouterBench.run(options, reply: .text(text)) { bench in
      _ = try await bench.routed()
      _ = try await bench.direct()
      var (routedRates, directRates): ([Double], [Double]) = ([], [])
      for _ in 0..<runs {
        let clock = ContinuousClock()
        var started = clock.now
        let routed = try await bench.routed()
        routedRates.append(Double(routed.deltas) / (clock.now - started).seconds)
        started = clock.now
        let direct = try await bench.direct()
        directRates.append(Double(direct.deltas) / (clock.now - started).seconds)
        guard routed.deltas == words, direct.deltas == words else {
          throw BenchError("expected \(words) deltas, routed \(routed.deltas), direct \(direct.deltas)")
        }
      }
      let median = { (values: [Double]) in values.sorted()[values.count / 2] }
      return String(
        format: "bench router.throughput ratio=%.3f routed_tokens_per_s=%.0f direct_tokens_per_s=%.0f runs=%d",
        median(routedRates) / median(directRates), median(routedRates), median(directRates), runs)
    }
  }
}

/// `router.concurrency`: 200 streams at once through ModelRouter; errors, and the router's CPU
/// time per 1,000 streamed tokens.
struct RouterConcurrencyBenchmark: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "router.concurrency", abstract: "Concurrent streams through ModelRouter.")

  @Option(help: "Concurrent streams.")
  var streams = 200

  @Option(help: "Words in each answer.")
  var words = 200

  @OptionGroup var options: RouterBenchOptions

  func run() async throws {
    let (streams, words) = (self.streams, self.words)
    let text = (0..<words).map { "w\($0)" }.joined(separator: " ")
    try await RouterBench.run(options, reply: .text(text)) { bench in
      _ = try await bench.routed()
      let cpuBefore = try CPUTime.seconds(ofProcess: "\(bench.service.child.pid)")
      let clock = ContinuousClock()
      let started = clock.now
      let results = await withTaskGroup(of: Result<Int, any Error>.self) { group in
        for _ in 0..<streams {
          group.addTask {
            do { return .success(try await bench.routed().deltas) } catch { return .failure(error) }
          }
        }
        var results: [Result<Int, any Error>] = []
        for await result in group { results.append(result) }
        return results
      }
      let wall = clock.now - started
      let cpu = try CPUTime.seconds(ofProcess: "\(bench.service.child.pid)") - cpuBefore
      let tokens = results.reduce(0) { $0 + ((try? $1.get()) ?? 0) }
      let errors = results.filter { (try? $0.get()) != words }.count
      if let failure = results.first(where: { (try? $0.get()) == nil }), case .failure(let error) = failure {
        progress("router.concurrency: first error: \(error)")
      }
      return String(
        format: "bench router.concurrency streams=%d errors=%d tokens=%d wall_ms=%.0f cpu_ms_per_1k_tokens=%.2f",
        streams, errors, tokens, wall.milliseconds, cpu * 1000 / (Double(max(tokens, 1)) / 1000))
    }
  }
}
