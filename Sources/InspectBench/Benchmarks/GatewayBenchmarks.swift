import ArgumentParser
import AsyncHTTPClient
import Foundation
import InspectKit
import InspectProtos
import NIOCore
import Synchronization

/// `gateway.get`: `GET /v1/sessions/{id}` through a real Gateway process (bearer token checked,
/// SessionService called over gRPC) against the HTTP floor, `GET /healthz` of the same Gateway,
/// measured in the same run with the same connections and concurrency.
struct GatewayGetBenchmark: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "gateway.get", abstract: "REST GET throughput through the Gateway beside its /healthz floor.")

  @Option(help: "Concurrent requests (each on its own keep-alive connection).")
  var concurrency = 16

  @Option(help: "Seconds each of the two measurements lasts.")
  var seconds = 10.0

  @OptionGroup var options: SessionBenchOptions

  func validate() throws {
    guard concurrency > 0, seconds > 0 else { throw ValidationError("--concurrency and --seconds must be positive") }
  }

  func run() async throws {
    let (concurrency, seconds, logLevel) = (self.concurrency, self.seconds, options.logLevel)
    let line = try await SessionBench.run(options) { bench in
      let session = try await bench.client.createSession()
      let (gateway, http, token) = try await startGateway(in: bench, logLevel: logLevel)
      var configuration = HTTPClient.Configuration()
      configuration.connectionPool = .init(
        idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: concurrency)
      let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
      defer { _ = client.shutdown() }
      let base = "http://\(http)"
      progress(
        "gateway.get: \(concurrency) concurrent requests, \(Int(seconds)) s each, /healthz then /v1/sessions/{id}")
      let floor = try await Load.run(
        client: client, url: "\(base)/healthz", headers: [:], concurrency: concurrency, seconds: seconds)
      let get = try await Load.run(
        client: client, url: "\(base)/v1/sessions/\(session.id)", headers: ["Authorization": "Bearer \(token)"],
        concurrency: concurrency, seconds: seconds)
      var line = BenchLine("gateway.get")
      line.number("rps", get.rps, decimals: 0)
      line.number("baseline_rps", floor.rps, decimals: 0)
      line.number("ratio", floor.rps > 0 ? get.rps / floor.rps : 0)
      line.milliseconds("p50_ms", get.latencies.p50)
      line.milliseconds("p99_ms", get.latencies.p99)
      line.milliseconds("baseline_p50_ms", floor.latencies.p50)
      line.count("errors", get.errors + floor.errors)
      line.count("concurrency", concurrency)
      line.number("seconds", seconds, decimals: 0)
      await gateway.stop()
      return line.text
    }
    StandardOutput.writeLine(line)
  }
}

/// A Gateway process in front of the bench's SessionService, its HTTP address and the
/// development token.
func startGateway(
  in bench: SessionBench, logLevel: String
) async throws -> (gateway: ServiceProcess, http: HostAndPort, token: String) {
  let gateway = try await ServiceProcess.start(
    "Gateway", binDirectory: try await BinaryDirectory.resolve(), dataDirectory: bench.service.dataDirectory,
    environment: ["INSPECT_SESSION_ADDR": bench.service.grpc.description], logLevel: logLevel)
  guard let http = gateway.http else {
    await gateway.stop()
    throw BenchError("the Gateway printed no http= address")
  }
  let token = try String(
    contentsOf: bench.service.dataDirectory.appendingPathComponent("dev-token"), encoding: .utf8
  ).trimmingCharacters(in: .whitespacesAndNewlines)
  return (gateway, http, token)
}

/// A closed-loop HTTP load: `concurrency` loops, each sending the next request when the last one
/// answered, for `seconds`.
enum Load {
  struct Result: Sendable {
    var rps: Double
    var latencies: Samples
    var errors: Int
  }

  static func run(
    client: HTTPClient, url: String, headers: [String: String], concurrency: Int, seconds: Double
  ) async throws -> Result {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    let started = ContinuousClock.now
    let parts = try await withThrowingTaskGroup(of: (Samples, Int, Int).self) { group in
      for _ in 0..<concurrency {
        group.addTask {
          var samples = Samples()
          var (count, errors) = (0, 0)
          while ContinuousClock.now < deadline {
            var request = HTTPClientRequest(url: url)
            for (name, value) in headers { request.headers.add(name: name, value: value) }
            let begin = ContinuousClock.now
            do {
              let response = try await client.execute(request, timeout: .seconds(10))
              _ = try await response.body.collect(upTo: 1 << 20)
              if response.status == .ok { count += 1 } else { errors += 1 }
            } catch {
              errors += 1
            }
            samples.append(ContinuousClock.now - begin)
          }
          return (samples, count, errors)
        }
      }
      var all: [(Samples, Int, Int)] = []
      for try await part in group { all.append(part) }
      return all
    }
    let elapsed = (ContinuousClock.now - started).seconds
    var latencies = Samples()
    for part in parts { latencies.append(contentsOf: part.0) }
    let ok = parts.map(\.1).reduce(0, +)
    return Result(rps: Double(ok) / elapsed, latencies: latencies, errors: parts.map(\.2).reduce(0, +))
  }
}

/// `gateway.sse_fanout`: one session streaming stamped `text_delta` events to many SSE
/// connections through a real Gateway; latency from the stand-in's send time to each
/// connection's receipt, and whether every connection got every seq exactly once
/// (`session.fanout` measures the same through gRPC `Subscribe`, without the Gateway.)
struct GatewaySSEFanoutBenchmark: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "gateway.sse_fanout", abstract: "SSE fan-out through the Gateway to many connections on one session.")

  @Option(help: "SSE connections, each its own HTTP/1.1 connection to the Gateway.")
  var connections = 1000

  @Option(help: "text_delta events per second sent by the stand-in.")
  var rate = 50.0

  @Option(help: "How long the stand-in streams, in seconds.")
  var seconds = 10.0

  @OptionGroup var options: SessionBenchOptions

  func validate() throws {
    guard connections > 0, rate > 0, seconds > 0 else {
      throw ValidationError("--connections, --rate and --seconds must be positive")
    }
  }

  func run() async throws {
    let (connections, rate, seconds, logLevel) = (self.connections, self.rate, self.seconds, options.logLevel)
    let events = Int(rate * seconds)
    let line = try await SessionBench.run(options) { bench in
      let (gateway, http, token) = try await startGateway(in: bench, logLevel: logLevel)
      var configuration = HTTPClient.Configuration()
      configuration.connectionPool = .init(
        idleTimeout: .seconds(120), concurrentHTTP1ConnectionsPerHostSoftLimit: connections)
      let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
      let session = try await bench.client.createSession()
      let start = Gate()
      bench.controller.setPlan(TurnPlan(gate: start, events: events, rate: rate))
      let live = Tally()
      progress("gateway.sse_fanout: \(connections) SSE connections, \(events) events at \(Int(rate))/s")
      let url = "http://\(http)/v1/sessions/\(session.id)/events?after_seq=\(session.lastSeq)"
      let reports = try await withThrowingTaskGroup(of: SubscriberReport.self) { group in
        for _ in 0..<connections {
          group.addTask {
            await SSESubscriber(client: client, url: url, token: token, after: session.lastSeq) { live.increment() }
              .follow()
          }
        }
        try await live.wait(for: connections, timeout: .seconds(120), what: "SSE connections to be open")
        try await bench.client.sendPrompt(session.id, text: "stream")
        // Let every connection see turn_started before the first delta.
        try await Task.sleep(for: .milliseconds(500))
        start.open()
        var reports: [SubscriberReport] = []
        for try await report in group { reports.append(report) }
        return reports
      }
      try? await client.shutdown()
      await gateway.stop()
      let last = reports.compactMap(\.finishedSeq).max() ?? 0
      var latencies = Samples()
      for report in reports { latencies.append(contentsOf: report.latencies) }
      var line = BenchLine("gateway.sse_fanout")
      line.count("connections", connections)
      line.milliseconds("p99_ms", latencies.p99)
      line.count("lost", reports.map { $0.lost(through: last) }.reduce(0, +))
      line.milliseconds("p50_ms", latencies.p50)
      line.count("dup", reports.map(\.duplicates).reduce(0, +))
      line.count("events", events)
      line.number("rate", rate, decimals: 0)
      line.count("errors", reports.filter { $0.failure != nil }.count)
      for failure in Set(reports.compactMap(\.failure)).prefix(3) { progress("a connection failed: \(failure)") }
      return line.text
    }
    StandardOutput.writeLine(line)
  }
}

/// Follows one session over SSE through the Gateway, checking every seq is the previous one
/// plus one, until `turn_finished`.
struct SSESubscriber: Sendable {
  let client: HTTPClient
  let url: String
  let token: String
  let after: UInt64
  /// Called once the response headers arrived (the connection is live).
  let onOpen: @Sendable () -> Void

  func follow() async -> SubscriberReport {
    var report = SubscriberReport(after: after, lastSeq: after)
    var request = HTTPClientRequest(url: url)
    request.headers.add(name: "Authorization", value: "Bearer \(token)")
    request.headers.add(name: "Accept", value: "text/event-stream")
    do {
      let response = try await client.execute(request, timeout: .seconds(600))
      guard response.status == .ok else {
        report.failure = "HTTP \(response.status.code)"
        return report
      }
      onOpen()
      var buffer = [UInt8]()
      for try await chunk in response.body {
        buffer.append(contentsOf: chunk.readableBytesView)
        while let end = Self.frameEnd(in: buffer) {
          let frame = buffer[..<end]
          buffer.removeSubrange(..<(end + 2))
          let now = MonotonicClock.nanoseconds()
          guard let event = Self.event(in: frame) else { continue }
          report.record(event, at: now)
          if report.finishedSeq != nil { return report }
        }
      }
      report.failure = "the stream ended at seq \(report.lastSeq)"
    } catch {
      report.failure = "\(error)"
    }
    return report
  }

  /// The index of the blank line ending the first frame (`\n\n`), if one is complete.
  static func frameEnd(in buffer: [UInt8]) -> Int? {
    guard buffer.count >= 2 else { return nil }
    for index in 0..<(buffer.count - 1) where buffer[index] == 10 && buffer[index + 1] == 10 { return index }
    return nil
  }

  static func event(in frame: ArraySlice<UInt8>) -> Inspect_Session_V1_SessionEvent? {
    let text = String(decoding: frame, as: UTF8.self)
    guard let data = text.split(separator: "\n").first(where: { $0.hasPrefix("data: ") }) else { return nil }
    return try? Inspect_Session_V1_SessionEvent(jsonString: String(data.dropFirst("data: ".count)))
  }
}
