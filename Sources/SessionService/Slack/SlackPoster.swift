import Foundation
import InspectKit
import Logging

/// Writes to Slack channels at Slack's pace: calls that write to one channel (`chat.postMessage`,
/// `chat.update`) go one at a time, at least `interval` apart (about one a second per channel is
/// what Slack allows), and a 429 holds the channel for its `Retry-After`. An update waiting for
/// its turn is replaced by a newer update of the same message, so a busy turn costs at most one
/// `chat.update` a second however many events it has. Channels do not wait for each other.
actor SlackPoster {
  private enum Operation {
    case post(
      thread: String?, text: String, blocks: [JSONValue], reply: CheckedContinuation<String, any Error>)
    case update(ts: String, text: String, blocks: [JSONValue])

    var updatedTs: String? {
      if case .update(let ts, _, _) = self { ts } else { nil }
    }
  }

  /// How often one operation is tried when Slack rate-limits it or cannot be reached.
  static let maxAttempts = 5

  let client: SlackWebClient
  let interval: Duration
  let logger: Logger
  private var queues: [String: [Operation]] = [:]
  private var draining: Set<String> = []
  private var nextAllowed: [String: ContinuousClock.Instant] = [:]

  init(client: SlackWebClient, interval: Duration, logger: Logger) {
    self.client = client
    self.interval = interval
    self.logger = logger
  }

  /// Posts a message (in `thread` when given); its `ts`. Throws what Slack answered when it
  /// refused (or could not be reached after ``maxAttempts``).
  func post(channel: String, thread: String?, text: String, blocks: [JSONValue] = []) async throws -> String {
    try await withCheckedThrowingContinuation { reply in
      enqueue(channel, .post(thread: thread, text: text, blocks: blocks, reply: reply))
    }
  }

  /// Replaces the message `ts` (soon: it waits for the channel's turn, and a newer update of the
  /// same message replaces this one while it waits). Failures are logged.
  func update(channel: String, ts: String, text: String, blocks: [JSONValue] = []) {
    var queue = queues[channel, default: []]
    if let index = queue.firstIndex(where: { $0.updatedTs == ts }) {
      queue[index] = .update(ts: ts, text: text, blocks: blocks)
      queues[channel] = queue
      return
    }
    enqueue(channel, .update(ts: ts, text: text, blocks: blocks))
  }

  private func enqueue(_ channel: String, _ operation: Operation) {
    queues[channel, default: []].append(operation)
    guard !draining.contains(channel) else { return }
    draining.insert(channel)
    Task { await self.drain(channel) }
  }

  private func drain(_ channel: String) async {
    while var queue = queues[channel], !queue.isEmpty {
      let operation = queue.removeFirst()
      queues[channel] = queue
      await perform(operation, in: channel)
    }
    queues[channel] = nil
    draining.remove(channel)
  }

  private func perform(_ operation: Operation, in channel: String) async {
    var attempt = 0
    while true {
      attempt += 1
      if let next = nextAllowed[channel], next > .now { try? await Task.sleep(until: next) }
      // A newer update of the same message arrived while this one waited: send that instead.
      if let ts = operation.updatedTs, queues[channel, default: []].contains(where: { $0.updatedTs == ts }) { return }
      do {
        switch operation {
        case .post(let thread, let text, let blocks, let reply):
          var arguments: [String: JSONValue] = ["channel": .string(channel), "text": .string(text)]
          if !blocks.isEmpty { arguments["blocks"] = .array(blocks) }
          if let thread { arguments["thread_ts"] = .string(thread) }
          let answer = try await client.call("chat.postMessage", arguments)
          nextAllowed[channel] = .now + interval
          reply.resume(returning: answer["ts"]?.stringValue ?? "")
        case .update(let ts, let text, let blocks):
          var arguments: [String: JSONValue] = ["channel": .string(channel), "ts": .string(ts), "text": .string(text)]
          if !blocks.isEmpty { arguments["blocks"] = .array(blocks) }
          _ = try await client.call("chat.update", arguments)
          nextAllowed[channel] = .now + interval
        }
        return
      } catch SlackError.rateLimited(let seconds, let method) where attempt < Self.maxAttempts {
        logger.notice(
          "Slack rate-limited a call", metadata: ["slack.method": "\(method)", "retry_after": "\(seconds)"])
        nextAllowed[channel] = .now + .seconds(seconds)
      } catch SlackError.unavailable(let message) where attempt < Self.maxAttempts && operation.updatedTs != nil {
        // Only updates are sent again: they are idempotent, while a post that timed out may have
        // been posted, and a second would show twice.
        logger.warning("Slack could not be reached", metadata: ["error": "\(message)"])
        nextAllowed[channel] = .now + interval * attempt
      } catch {
        nextAllowed[channel] = .now + interval
        switch operation {
        case .post(_, _, _, let reply): reply.resume(throwing: error)
        case .update(let ts, _, _):
          logger.warning("a Slack message could not be updated", metadata: ["slack.ts": "\(ts)", "error": "\(error)"])
        }
        return
      }
    }
  }
}
