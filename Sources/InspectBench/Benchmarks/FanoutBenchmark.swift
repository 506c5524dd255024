import ArgumentParser
import InspectKit

/// `session.fanout`: one session streaming `text_delta` events at a steady rate to many
/// subscribers; latency from the stand-in's send time to each subscriber's receipt, and whether
/// every subscriber got every seq exactly once.
struct FanoutBenchmark: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "session.fanout",
    abstract: "Publish-to-receive latency and loss with many subscribers on one session.")

  @Option(help: "Subscribers, each its own Subscribe stream.")
  var subscribers = 100

  @Option(help: "text_delta events per second sent by the stand-in.")
  var rate = 1000.0

  @Option(help: "How long the stand-in streams, in seconds.")
  var seconds = 30.0

  @Option(help: "HTTP/2 connections the subscribers are spread over.")
  var connections = 4

  @OptionGroup var options: SessionBenchOptions

  func validate() throws {
    guard subscribers > 0, rate > 0, seconds > 0, connections > 0 else {
      throw ValidationError("--subscribers, --rate, --seconds and --connections must be positive")
    }
  }

  func run() async throws {
    let (subscribers, rate, seconds) = (self.subscribers, self.rate, self.seconds)
    let events = Int(rate * seconds)
    let line = try await SessionBench.run(options, connections: connections) { bench in
      let session = try await bench.client.createSession()
      let start = Gate()
      bench.controller.setPlan(TurnPlan(gate: start, events: events, rate: rate))
      let live = Tally()
      progress(
        "session.fanout: \(subscribers) subscribers on \(bench.clients.count) connections, "
          + "\(events) events at \(Int(rate))/s")
      let (reports, elapsed, serviceCPU, benchCPU) = try await withThrowingTaskGroup(
        of: SubscriberReport.self
      ) { group in
        for index in 0..<subscribers {
          let subscriber = Subscriber(
            client: bench.clients[index % bench.clients.count], sessionID: session.id,
            onTurnStarted: { live.increment() })
          group.addTask { await subscriber.follow(after: session.lastSeq, until: .turnFinished) }
        }
        try await bench.client.sendPrompt(session.id, text: "stream")
        // Every subscriber has seen turn_started, so each is live before the first delta.
        try await live.wait(for: subscribers, timeout: .seconds(120), what: "subscribers to see turn_started")
        let (serviceCPU, benchCPU) = (try bench.service.cpuSeconds(), try CPUTime.ownSeconds())
        let started = ContinuousClock.now
        start.open()
        var reports: [SubscriberReport] = []
        for try await report in group { reports.append(report) }
        return (
          reports, ContinuousClock.now - started, try bench.service.cpuSeconds() - serviceCPU,
          try CPUTime.ownSeconds() - benchCPU
        )
      }
      // Subscribers read through turn_finished; later events (their own presence going offline)
      // are not theirs to wait for.
      var last = reports.compactMap(\.finishedSeq).max() ?? 0
      if last == 0 { last = try await bench.client.lastSeq(of: session.id) }
      var latencies = Samples()
      for report in reports { latencies.append(contentsOf: report.latencies) }
      var line = BenchLine("session.fanout")
      line.milliseconds("p50_ms", latencies.p50)
      line.milliseconds("p99_ms", latencies.p99)
      line.count("lost", reports.map { $0.lost(through: last) }.reduce(0, +))
      line.count("dup", reports.map(\.duplicates).reduce(0, +))
      line.count("subscribers", subscribers)
      line.count("events", events)
      line.number("rate", rate, decimals: 0)
      line.number("seconds", seconds, decimals: 0)
      line.count("resyncs", reports.map(\.resyncs).reduce(0, +))
      line.count("errors", reports.filter { $0.failure != nil }.count)
      line.milliseconds("max_ms", latencies.percentileMilliseconds(1))
      // From the first event's due time until every subscriber had the last: above `seconds`
      // when SessionService fell behind the schedule.
      line.number("wall_s", elapsed.seconds, decimals: 1)
      line.number("service_cpu_s", serviceCPU, decimals: 1)
      line.number("bench_cpu_s", benchCPU, decimals: 1)
      for failure in Set(reports.compactMap(\.failure)) { progress("a subscriber failed: \(failure)") }
      for gap in Set(reports.compactMap(\.firstGap)) { progress("a subscriber missed events: \(gap)") }
      let short = reports.filter { $0.lastSeq < last }
      if let first = short.first {
        progress("\(short.count) subscribers stopped short of seq \(last) (one at \(first.lastSeq))")
      }
      return line.text
    }
    StandardOutput.writeLine(line)
  }
}
