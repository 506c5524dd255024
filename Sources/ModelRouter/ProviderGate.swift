import InspectProtos
import Logging
import Prometheus

/// Admission to one provider (OpenAI, Anthropic): at most `maxConcurrent` calls at once, at most
/// `tokensPerMinute` tokens a minute, and a circuit breaker. Every attempt of a model call passes
/// through ``admit(tokens:)`` and ends with ``release(_:_:usedTokens:)``.
///
/// - Calls that cannot start yet wait in arrival order. A waiting call ends as soon as its caller
///   goes away: the gRPC client's deadline or cancellation cancels the handler, which leaves the
///   queue at once (nothing was sent upstream). A call whose slot came free just after its caller
///   went away hands the slot on.
/// - Tokens are a bucket refilled continuously at `tokensPerMinute / 60` a second, holding at most
///   a minute's worth. A call takes its estimate (``TokenEstimate`` of the prompt plus its
///   `max_output_tokens`) before it starts and is charged what its usage says when it ends, so the
///   bucket can go into debt after a call that used more than estimated.
/// - The breaker opens after `breakerFailures` outages in a row (``ModelError/countsAsOutage``:
///   unreachable, 5xx, overloaded; not rate limits or rejected requests). While open, calls fail
///   at once UNAVAILABLE naming the provider and when it will be tried again, so routes fall back
///   to the next model without waiting. After `breakerCooldown` one trial call goes through
///   (half-open): an answer closes the breaker, another outage opens it again.
actor ProviderGate {
  struct Limits: Sendable, Equatable {
    var maxConcurrent: Int?
    var tokensPerMinute: Int?
    var breakerFailures = 5
    var breakerCooldown: Duration = .seconds(30)
  }

  /// How an admitted call ended.
  enum Outcome: Sendable {
    case succeeded
    case failed(ModelError)
    /// The caller went away (cancellation, deadline): says nothing about the provider.
    case abandoned
  }

  /// An admitted call: what it took from the bucket, and whether it is the breaker's trial.
  struct Permit: Sendable {
    fileprivate let tokens: Int
    fileprivate let trial: Bool
  }

  private enum Breaker {
    case closed(failures: Int)
    case open(until: ContinuousClock.Instant)
    /// The trial call is running.
    case halfOpen
  }

  private struct Waiter {
    let id: Int
    let tokens: Int
    let continuation: CheckedContinuation<Void, any Error>
  }

  let provider: String
  let limits: Limits
  private let logger: Logger
  private let metrics: ModelRouterMetrics?
  /// The time (a parameter so tests can move it).
  private let now: @Sendable () -> ContinuousClock.Instant
  private var running = 0
  private var bucket: Double
  private var refilledAt: ContinuousClock.Instant
  private var waiters: [Waiter] = []
  private var nextWaiterID = 0
  private var wakeup: Task<Void, Never>?
  /// When the pending wakeup fires, and for which waiter.
  private var wakeupAt: (instant: ContinuousClock.Instant, waiter: Int)?
  private var breaker = Breaker.closed(failures: 0)
  private var lastOutage = ""

  init(
    provider: String, limits: Limits, logger: Logger, metrics: ModelRouterMetrics? = nil,
    now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }
  ) {
    self.provider = provider
    self.limits = limits
    self.logger = logger
    self.metrics = metrics
    self.now = now
    bucket = Double(limits.tokensPerMinute ?? 0)
    refilledAt = now()
  }

  /// Waits until the call may start (a concurrency slot and `tokens` in the bucket, after the
  /// calls already waiting). Throws at once when the breaker is open, and `CancellationError`
  /// when the caller goes away while waiting.
  func admit(tokens requested: Int) async throws -> Permit {
    let trial = try passBreaker()
    // A call larger than a minute's worth would never start; it waits for a full bucket.
    let tokens = min(max(0, requested), limits.tokensPerMinute ?? 0)
    // The breaker's trial goes at once, ahead of the queue and over the limits: calls waiting
    // behind a provider that hangs must not keep it from being tested.
    if trial || (waiters.isEmpty && canStart(tokens)) {
      start(tokens)
      return Permit(tokens: tokens, trial: trial)
    }
    let id = nextWaiterID
    nextWaiterID += 1
    do {
      try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
          waiters.append(Waiter(id: id, tokens: tokens, continuation: continuation))
          report()
          scheduleWakeup()
        }
      } onCancel: {
        Task { await self.leave(id) }
      }
    } catch {
      if trial { breaker = .open(until: now()) }
      throw error
    }
    // Started by `pump` after its caller went away but before the cancellation's `leave` ran:
    // the slot and the tokens go to the next call, and nothing is sent upstream.
    if Task.isCancelled {
      release(Permit(tokens: tokens, trial: trial), .abandoned, usedTokens: 0)
      throw CancellationError()
    }
    return Permit(tokens: tokens, trial: trial)
  }

  /// Ends an admitted call: frees its slot, charges what it used (input + output tokens, when its
  /// usage is known) and updates the breaker.
  func release(_ permit: Permit, _ outcome: Outcome, usedTokens: Int?) {
    running -= 1
    if limits.tokensPerMinute != nil, let usedTokens { bucket -= Double(usedTokens - permit.tokens) }
    switch outcome {
    case .failed(let error) where error.countsAsOutage:
      lastOutage = error.message
      if permit.trial {
        open(after: "its trial call failed")
      } else if case .closed(let failures) = breaker {
        if failures + 1 >= limits.breakerFailures {
          open(after: "\(failures + 1) outages in a row")
        } else {
          breaker = .closed(failures: failures + 1)
        }
      }
    case .succeeded, .failed:
      // The provider answered (an answer, or a refusal that is not an outage). While open, only
      // the trial call decides; an older call answering late does not close the breaker.
      if permit.trial {
        breaker = .closed(failures: 0)
        logger.notice("circuit closed", metadata: ["model.provider": "\(provider)"])
        metrics?.circuit(provider: provider, open: false)
      } else if case .closed = breaker {
        breaker = .closed(failures: 0)
      }
    case .abandoned:
      // The trial's caller went away: the next call is the trial.
      if permit.trial { breaker = .open(until: now()) }
    }
    pump()
  }

  // MARK: - The breaker

  /// Calls waiting to start.
  var waiting: Int { waiters.count }

  /// Whether calls fail at once now (open, or half-open with its trial running).
  var isOpen: Bool {
    if case .closed = breaker { return false }
    if case .open(let until) = breaker, now() >= until { return false }
    return true
  }

  /// Throws while the breaker is open; true when this call is the trial after the cooldown.
  private func passBreaker() throws -> Bool {
    switch breaker {
    case .closed:
      return false
    case .open(let until) where now() >= until:
      breaker = .halfOpen
      return true
    case .open(let until):
      let seconds = Double((until - now()).components.seconds) + 1
      throw ModelError.circuitOpen(
        "the circuit for provider \(provider) is open after repeated outages (last: \(lastOutage)); calls to it fail "
          + "at once for another \(Int(seconds)) s, then one trial call is let through")
    case .halfOpen:
      throw ModelError.circuitOpen(
        "the circuit for provider \(provider) is open after repeated outages (last: \(lastOutage)); a trial call is "
          + "in flight and decides whether it closes")
    }
  }

  private func open(after reason: String) {
    breaker = .open(until: now() + limits.breakerCooldown)
    // Calls still waiting would go to a provider that is down: they fail now, so their routes
    // fall back at once.
    let waiting = waiters
    waiters = []
    for waiter in waiting {
      waiter.continuation.resume(
        throwing: ModelError.circuitOpen(
          "the circuit for provider \(provider) opened while this call waited (last outage: \(lastOutage))"))
    }
    logger.warning(
      "circuit opened",
      metadata: [
        "model.provider": "\(provider)", "reason": "\(reason)", "model.error": "\(lastOutage)",
        "cooldown_ms": "\(limits.breakerCooldown.milliseconds)",
      ])
    metrics?.circuit(provider: provider, open: true)
  }

  // MARK: - Slots and tokens

  private func refill() {
    guard let perMinute = limits.tokensPerMinute else { return }
    let instant = now()
    let elapsed = instant - refilledAt
    refilledAt = instant
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    bucket = min(Double(perMinute), bucket + seconds * Double(perMinute) / 60)
  }

  private func canStart(_ tokens: Int) -> Bool {
    if let most = limits.maxConcurrent, running >= most { return false }
    guard limits.tokensPerMinute != nil else { return true }
    refill()
    return bucket >= Double(tokens)
  }

  private func start(_ tokens: Int) {
    running += 1
    if limits.tokensPerMinute != nil { bucket -= Double(tokens) }
    report()
  }

  /// Starts waiting calls, oldest first, while they fit.
  private func pump() {
    while let first = waiters.first, canStart(first.tokens) {
      waiters.removeFirst()
      start(first.tokens)
      first.continuation.resume()
    }
    report()
    scheduleWakeup()
  }

  /// When the oldest waiting call waits for tokens (not a slot), wakes up when they have refilled.
  /// A pending wakeup for the same call that fires no later is kept (new arrivals do not push it
  /// back).
  private func scheduleWakeup() {
    guard let first = waiters.first, let perMinute = limits.tokensPerMinute,
      limits.maxConcurrent.map({ running < $0 }) ?? true
    else {
      wakeup?.cancel()
      (wakeup, wakeupAt) = (nil, nil)
      return
    }
    refill()
    let missing = Double(first.tokens) - bucket
    guard missing > 0 else {
      pump()
      return
    }
    let delay = Duration.milliseconds(Int64((missing * 60_000 / Double(perMinute)).rounded(.up)) + 1)
    let fireAt = now() + delay
    if let pending = wakeupAt, pending.waiter == first.id, pending.instant <= fireAt { return }
    wakeup?.cancel()
    wakeupAt = (fireAt, first.id)
    wakeup = Task {
      try? await Task.sleep(for: delay)
      guard !Task.isCancelled else { return }
      self.wokeUp()
    }
  }

  private func wokeUp() {
    (wakeup, wakeupAt) = (nil, nil)
    pump()
  }

  private func leave(_ id: Int) {
    guard let index = waiters.firstIndex(where: { $0.id == id }) else { return }
    let waiter = waiters.remove(at: index)
    waiter.continuation.resume(throwing: CancellationError())
    pump()
  }

  private func report() {
    metrics?.gate(provider: provider, running: running, waiting: waiters.count)
  }
}

/// ModelRouter's metrics on `/metrics`, beside the RPC counters every service has.
struct ModelRouterMetrics: Sendable {
  let registry: PrometheusCollectorRegistry

  /// `inspect_model_circuit_open{provider}`: 1 while the provider's breaker is open.
  func circuit(provider: String, open: Bool) {
    registry.makeGauge(name: "inspect_model_circuit_open", labels: [("provider", provider)]).set(Double(open ? 1 : 0))
  }

  /// `inspect_model_calls_running{provider}` and `inspect_model_calls_waiting{provider}`.
  func gate(provider: String, running: Int, waiting: Int) {
    registry.makeGauge(name: "inspect_model_calls_running", labels: [("provider", provider)]).set(Double(running))
    registry.makeGauge(name: "inspect_model_calls_waiting", labels: [("provider", provider)]).set(Double(waiting))
  }

  /// `inspect_model_tokens_total{model, direction}` and `inspect_model_cost_usd_total{model}`.
  func usage(model: String, _ usage: Inspect_Model_V1_Usage) {
    registry.makeCounter(name: "inspect_model_tokens_total", labels: [("model", model), ("direction", "input")])
      .increment(by: Int64(usage.inputTokens))
    registry.makeCounter(name: "inspect_model_tokens_total", labels: [("model", model), ("direction", "output")])
      .increment(by: Int64(usage.outputTokens))
    registry.makeCounter(name: "inspect_model_cost_usd_total", labels: [("model", model)])
      .increment(by: usage.costUsd)
  }
}
