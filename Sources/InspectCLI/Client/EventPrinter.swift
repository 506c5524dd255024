import Foundation
import InspectKit
import InspectProtos
import SwiftProtobuf

/// Prints a session's events for a person in a terminal: tokens as they stream, each tool call
/// with its state, command output, pushes, and how the turn ended.
struct EventPrinter {
  private var midLine = false

  mutating func print(_ event: Inspect_Session_V1_SessionEvent) {
    switch event.kind {
    case .promptQueued(let prompt):
      line("» \(prompt.author.displayName): \(prompt.text)")
    case .turnStarted(let turn):
      line("— turn \(turn.turnID) started\(turn.model.isEmpty ? "" : " with \(turn.model)")")
    case .sandboxStatus(let status):
      let timings = status.timings.sorted { $0.key < $1.key }.map { "\($0.key) \(Self.milliseconds($0.value)) ms" }
      line("[sandbox \(Self.name(status.phase))\(timings.isEmpty ? "" : ": " + timings.joined(separator: ", "))]")
    case .textDelta(let delta):
      write(delta.text)
      midLine = !delta.text.hasSuffix("\n")
    case .assistantMessage:
      if midLine { write("\n") }
      midLine = false
    case .toolCall(let call):
      switch call.state {
      case .queued: line("▸ \(call.name) \(call.argumentsJson)")
      case .running: break
      case .succeeded: line("✓ \(call.name): \(call.resultSummary) (\(Self.milliseconds(call.duration)) ms)")
      case .failed: line("✗ \(call.name): \(call.error.split(separator: "\n").first ?? "")")
      case .cancelled: line("✗ \(call.name): cancelled")
      default: break
      }
    case .commandOutput(let output):
      write(
        String(decoding: output.data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
          .map { $0.isEmpty ? "" : "  │ \($0)" }.joined(separator: "\n"))
    case .branchPushed(let pushed):
      line("⇪ pushed \(pushed.branch) at \(pushed.commit.prefix(12)) to \(pushed.remote)")
    case .turnFinished(let finished):
      let phase = finished.outcome == .failed ? " in \(Self.name(finished.failedPhase))" : ""
      line("— turn \(Self.name(finished.outcome))\(phase)\(finished.reason.isEmpty ? "" : ": \(finished.reason)")")
    default:
      break
    }
  }

  private mutating func line(_ text: String) {
    if midLine { write("\n") }
    midLine = false
    write(text + "\n")
  }

  private func write(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
  }

  static func milliseconds(_ duration: SwiftProtobuf.Google_Protobuf_Duration) -> Int64 {
    duration.seconds * 1000 + Int64(duration.nanos / 1_000_000)
  }

  static func name(_ value: some Any) -> String { "\(value)".uppercased() }
}
