import ArgumentParser
import InspectKit

/// `session.ack`: how long `SendPrompt` takes to acknowledge a prompt (stored durably, queued),
/// against the floor of what it must do — one `synchronous=FULL` insert plus one unary RPC —
/// measured in the same run, interleaved in blocks so that noise hits both alike.
struct AckBenchmark: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "session.ack",
    abstract: "SendPrompt latency against a durable insert plus an empty RPC.")

  @Option(help: "Prompts to time (after the warm-up).")
  var prompts = 2000

  @Option(help: "Calls of each kind discarded first.")
  var warmup = 100

  @Option(help: "Calls of one kind in a row before switching to the next kind.")
  var block = 100

  @OptionGroup var options: SessionBenchOptions

  func run() async throws {
    let (prompts, warmup, block) = (self.prompts, self.warmup, self.block)
    let line = try await SessionBench.run(options) { bench in
      let client = bench.client
      // The first prompt starts a turn the stand-in never finishes, so every later prompt only
      // queues (a prompt is never injected into a running turn). The process is stopped with
      // the turn still held.
      bench.controller.setPlan(.hold(until: Gate()))
      let session = try await client.createSession()
      try await client.sendPrompt(session.id, text: "hold the turn open")
      try await bench.controller.waitForStartedTurns(1, timeout: .seconds(30))
      let floor = try DurableInsertFloor(at: bench.workDirectory.appendingPathComponent("data/bench-floor.sqlite"))
      guard try await floor.synchronousMode() == 2 else {
        throw BenchError("the floor database is not synchronous=FULL")
      }

      var ack = Samples()
      var insert = Samples()
      var check = Samples()
      var ackBlocks: [Samples] = []
      let total = warmup + prompts
      var done = 0
      progress("session.ack: \(total) SendPrompt, inserts and Health/Check each, interleaved in blocks of \(block)")
      while done < total {
        let count = min(block, total - done)
        var blockAck = Samples()
        for index in done..<(done + count) {
          try await measure(&blockAck) { try await client.sendPrompt(session.id, text: "prompt \(index)") }
        }
        var blockInsert = Samples()
        for index in done..<(done + count) {
          try await measure(&blockInsert) { try await floor.insert("row \(index)") }
        }
        var blockCheck = Samples()
        for _ in 0..<count {
          try await measure(&blockCheck) { try await client.checkHealth() }
        }
        // The warm-up is the first `warmup` calls of each kind.
        let skip = max(0, warmup - done)
        if skip < count {
          let kept = { (samples: Samples) in Samples(Array(samples.nanoseconds.dropFirst(skip))) }
          ack.append(contentsOf: kept(blockAck))
          insert.append(contentsOf: kept(blockInsert))
          check.append(contentsOf: kept(blockCheck))
          ackBlocks.append(kept(blockAck))
        }
        done += count
      }

      let baseline = insert.p50 + check.p50
      var line = BenchLine("session.ack")
      line.milliseconds("p50_ms", ack.p50)
      line.milliseconds("p99_ms", ack.p99)
      line.milliseconds("baseline_p50_ms", baseline)
      line.number("ratio", baseline > 0 ? ack.p50 / baseline : 0)
      line.milliseconds("insert_p50_ms", insert.p50)
      line.milliseconds("rpc_p50_ms", check.p50)
      line.count("n", ack.count)
      // The queue grows by one prompt per call: the first and last blocks show whether the
      // cost of a prompt depends on how many wait before it.
      line.milliseconds("first_block_p50_ms", ackBlocks.first?.p50 ?? 0)
      line.milliseconds("last_block_p50_ms", ackBlocks.last?.p50 ?? 0)
      return line.text
    }
    StandardOutput.writeLine(line)
  }
}
