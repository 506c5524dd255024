import ArgumentParser
import Foundation
import InspectKit

/// `session.scale`: many sessions streaming at once, each with subscribers; every subscriber must
/// get exactly the seqs after the one it subscribed from, and SessionService's resident memory
/// is read before the sessions exist and after they have all finished.
struct ScaleBenchmark: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "session.scale",
    abstract: "Many concurrent sessions with subscribers: loss and SessionService's memory.")

  @Option(help: "Sessions, all streaming at once.")
  var sessions = 500

  @Option(help: "Subscribers per session.")
  var subscribersPerSession = 2

  @Option(help: "text_delta events per turn.")
  var events = 50

  @Option(help: "text_delta events per second in each turn.")
  var rate = 100.0

  @Option(help: "HTTP/2 connections the calls are spread over.")
  var connections = 8

  @Option(help: "Sessions created (and prompted) at once.")
  var parallelism = 16

  @OptionGroup var options: SessionBenchOptions

  func validate() throws {
    guard sessions > 0, subscribersPerSession > 0, events >= 0, rate > 0, connections > 0, parallelism > 0 else {
      throw ValidationError("every count must be positive")
    }
  }

  func run() async throws {
    let (count, perSession, events, rate, parallelism) = (
      sessions, subscribersPerSession, self.events, self.rate, self.parallelism
    )
    let line = try await SessionBench.run(options, connections: connections) { bench in
      let clients = bench.clients
      let before = try bench.service.residentKilobytes()
      let start = Gate()
      bench.controller.setPlan(TurnPlan(gate: start, events: events, rate: rate))
      progress("session.scale: creating \(count) sessions (SessionService RSS \(before / 1024) MB)")
      let created = try await concurrentMap(Array(0..<count), width: parallelism) { index in
        try await clients[index % clients.count].createSession()
      }
      let live = Tally()
      progress("session.scale: \(count * perSession) subscribers, \(events) events at \(Int(rate))/s per session")
      let (reports, elapsed, serviceCPU) = try await withThrowingTaskGroup(
        of: (Int, SubscriberReport).self
      ) { group in
        var next = 0
        for (index, session) in created.enumerated() {
          for _ in 0..<perSession {
            let subscriber = Subscriber(
              client: clients[next % clients.count], sessionID: session.id, recordLatency: false,
              onTurnStarted: { live.increment() })
            next += 1
            group.addTask { (index, await subscriber.follow(after: session.lastSeq, until: .turnFinished)) }
          }
        }
        _ = try await concurrentMap(Array(created.enumerated()), width: parallelism) { index, session in
          try await clients[index % clients.count].sendPrompt(session.id, text: "stream")
        }
        try await live.wait(for: count * perSession, timeout: .seconds(300), what: "subscribers to see turn_started")
        let serviceCPU = try bench.service.cpuSeconds()
        let started = ContinuousClock.now
        start.open()
        var reports = [[SubscriberReport]](repeating: [], count: created.count)
        for try await (index, report) in group { reports[index].append(report) }
        return (reports, ContinuousClock.now - started, try bench.service.cpuSeconds() - serviceCPU)
      }
      // Subscribers have closed their streams; give SessionService a moment to let them go.
      try await Task.sleep(for: .seconds(1))
      let after = try bench.service.residentKilobytes()

      var lost = 0
      var errors = 0
      for (index, sessionReports) in reports.enumerated() {
        // Subscribers read through turn_finished; later events (their own presence going
        // offline) are not theirs to wait for.
        var last = sessionReports.compactMap(\.finishedSeq).max() ?? 0
        if last == 0 { last = try await clients[0].lastSeq(of: created[index].id) }
        for report in sessionReports {
          lost += report.lost(through: last) + report.duplicates
          if let failure = report.failure {
            errors += 1
            if errors <= 5 { progress("a subscriber of \(created[index].id) failed: \(failure)") }
          }
        }
      }
      var line = BenchLine("session.scale")
      line.count("sessions", count)
      line.count("lost", lost)
      line.number("rss_mb", Double(after) / 1024, decimals: 1)
      line.number("per_session_kb", Double(after - before) / Double(count), decimals: 1)
      line.count("subscribers", count * perSession)
      line.count("events", events)
      line.number("rss_before_mb", Double(before) / 1024, decimals: 1)
      line.number("seconds", elapsed.seconds, decimals: 1)
      line.number("service_cpu_s", serviceCPU, decimals: 1)
      line.count("errors", errors)
      return line.text
    }
    StandardOutput.writeLine(line)
  }
}
