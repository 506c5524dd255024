import ArgumentParser
import InspectKit

/// `session.replay`: a fresh `Subscribe(after_seq: 0)` on a finished session of 10,000 events,
/// timed until its last event arrives (the catch-up a reconnecting client pays).
struct ReplayBenchmark: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "session.replay",
    abstract: "Time to replay a whole session's event log to a new subscriber.")

  @Option(help: "text_delta events the stand-in streams into the session (as fast as it takes them).")
  var events = 10_000

  @Option(help: "Replays to time.")
  var runs = 20

  @OptionGroup var options: SessionBenchOptions

  func run() async throws {
    let (events, runs) = (self.events, self.runs)
    let line = try await SessionBench.run(options) { bench in
      let client = bench.client
      let session = try await client.createSession()
      bench.controller.setPlan(TurnPlan(gate: nil, events: events, rate: nil))
      progress("session.replay: filling a session with \(events) events")
      let fillStart = ContinuousClock.now
      try await client.sendPrompt(session.id, text: "fill")
      let fill = await Subscriber(client: client, sessionID: session.id, recordLatency: false)
        .follow(after: session.lastSeq, until: .turnFinished)
      let fillTime = ContinuousClock.now - fillStart
      guard let last = fill.finishedSeq, fill.failure == nil else {
        throw BenchError("the filling turn did not finish: \(fill.failure ?? "no turn_finished")")
      }
      progress("session.replay: \(last) events stored in \(fillTime); \(runs) replays")

      var replay = Samples()
      for run in 0..<runs {
        let report = await measure(&replay) {
          await Subscriber(client: client, sessionID: session.id, recordLatency: false).follow(
            after: 0, until: .seq(last))
        }
        guard report.failure == nil, report.received == Int(last), report.gaps == 0, report.duplicates == 0 else {
          throw BenchError(
            "replay \(run) got \(report.received) of \(last) events (gaps \(report.gaps), duplicates "
              + "\(report.duplicates)): \(report.failure ?? "")")
        }
      }
      var line = BenchLine("session.replay")
      line.milliseconds("p50_ms", replay.p50)
      line.count("events", Int(last))
      line.milliseconds("p99_ms", replay.p99)
      line.count("runs", runs)
      // How fast SessionService stored the stand-in's events, one at a time.
      line.number("fill_events_per_s", Double(last) / fillTime.seconds, decimals: 0)
      return line.text
    }
    StandardOutput.writeLine(line)
  }
}
