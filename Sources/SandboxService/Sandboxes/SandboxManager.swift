import Foundation
import InspectKit
import Logging
import Synchronization

/// The sandboxes of this SandboxService, whatever driver runs them: who claimed which, what
/// state each is in, the warm pools, sync gating, snapshots and the phase watchdogs. The RPCs
/// and the agent loop use sandboxes only through it (and ``SandboxInstance``).
actor SandboxManager {
  struct Configuration: Sendable {
    /// Sandboxes kept ready per repository once the repository is used (0: no pool).
    var poolSize = 2
    /// The most sandboxes this node runs at once (claimed and warm).
    var maxSandboxes = 256
    /// How long writes and commands wait for a sync before they fail.
    var syncWait: Duration = .seconds(60)
    /// Watchdogs of the phases.
    var provisionTimeout: Duration = .seconds(60)
    var syncTimeout: Duration = .seconds(120)
    var setupTimeout: Duration = .seconds(300)
    /// A command's timeout when its request has none.
    var commandTimeout: Duration = .seconds(600)
    /// How often the images of used repositories are rebuilt (when their default branch moved);
    /// nil: never.
    var imageRebuildInterval: Duration? = .seconds(1800)
    /// READY images kept per repository (besides any a sandbox still uses).
    var imagesKept = 3
    /// How long a sandbox prewarmed for a session waits for its claim.
    var prewarmTTL: Duration = .seconds(300)
    /// Snapshots kept per session (the newest; older ones are deleted as new ones are taken).
    var snapshotsKept = 3

    init() {}

    /// The defaults, changed by `INSPECT_SANDBOX_POOL_SIZE`, `INSPECT_SANDBOX_MAX_SANDBOXES` and
    /// `INSPECT_SANDBOX_SYNC_WAIT_MS` (README); throws when one is set but not a number in range.
    init(environment: [String: String]) throws {
      if let size = try environment.wholeNumber("INSPECT_SANDBOX_POOL_SIZE", in: 0...1000) { poolSize = size }
      if let count = try environment.wholeNumber("INSPECT_SANDBOX_MAX_SANDBOXES", in: 1...100_000) {
        maxSandboxes = count
      }
      if let wait = try environment.wholeNumber("INSPECT_SANDBOX_SYNC_WAIT_MS", in: 1...3_600_000) {
        syncWait = .milliseconds(wait)
      }
      if let seconds = try environment.wholeNumber("INSPECT_SANDBOX_IMAGE_REBUILD_SECONDS", in: 0...604_800) {
        imageRebuildInterval = seconds == 0 ? nil : .seconds(seconds)
      }
      if let kept = try environment.wholeNumber("INSPECT_SANDBOX_IMAGES_KEPT", in: 1...100) { imagesKept = kept }
      if let kept = try environment.wholeNumber("INSPECT_SANDBOX_SNAPSHOTS_KEPT", in: 1...1000) { snapshotsKept = kept }
    }
  }

  let driver: any SandboxDriver
  let configuration: Configuration
  let logger: Logger
  let metrics: SandboxMetrics
  private var entries: [String: SandboxEntry] = [:]
  private var pools: [String: WarmPoolState] = [:]
  /// Sandboxes made ready ahead of time for a session (Prewarm with a session id).
  private var prewarmed: [String: SandboxEntry] = [:]
  private var prewarming: Set<String> = []
  private var refills: [String: Task<Void, Never>] = [:]
  /// The newest image known per repository, and when it was looked up.
  private var images: [String: (image: Image, at: ContinuousClock.Instant)] = [:]
  private var imageRefresh: Task<Void, Never>?
  /// Sandboxes being created or restored for a claim or a prewarm (counted against the limit).
  private var starting = 0
  /// Images that restores in progress are mounting (kept from pruning).
  private var restoringImages: [String: Int] = [:]
  /// Repositories with an image build running.
  private var building: Set<String> = []
  private var rebuilds: Task<Void, Never>?
  /// Ids of sandboxes terminated since the service started (so a second Terminate succeeds and
  /// other calls say FAILED_PRECONDITION rather than NOT_FOUND).
  private var terminated: Set<String> = []

  init(
    driver: any SandboxDriver, configuration: Configuration = Configuration(), logger: Logger,
    metrics: SandboxMetrics = SandboxMetrics()
  ) {
    self.driver = driver
    self.configuration = configuration
    self.logger = logger
    self.metrics = metrics
  }

  private func report(_ key: String) {
    if let pool = pools[key] { metrics.pool(repository: key, ready: pool.ready.count, creating: pool.creating) }
    metrics.live(entries.values.filter { $0.state != .terminated }.count)
  }

  // MARK: - Claiming

  /// What a claim asks for.
  struct Claim: Sendable {
    var repository: RepositoryName
    var sessionID: String
    var snapshotID = ""
    /// Sync to the newest commit of this branch (else `fallbackBranch`, else the default
    /// branch); empty: no sync.
    var branch = ""
    var fallbackBranch = ""
    var limits: SandboxLimits?
  }

  /// A sandbox for a session: a prewarmed restore of its snapshot, a restore, a warm sandbox
  /// from the pool, or a new one from the newest image — then syncing starts in the background
  /// (reads work at once; writes and commands wait for it).
  func claim(_ claim: Claim) async throws -> SandboxEntry {
    let repository = claim.repository
    let entry: SandboxEntry
    if let ready = prewarmed[claim.sessionID], ready.snapshotID == claim.snapshotID,
      ready.instance.repository == repository, claim.limits == nil, ready.instance.isAlive
    {
      // Prewarmed for this session (its snapshot restored, or a warm sandbox set aside).
      prewarmed[claim.sessionID] = nil
      entry = ready
    } else if !claim.snapshotID.isEmpty {
      entry = try await restore(snapshotID: claim.snapshotID, repository: repository, limits: claim.limits)
    } else if claim.limits == nil, let warm = takeWarm(repository) {
      entry = warm
    } else {
      pools[repository.description, default: WarmPoolState(target: configuration.poolSize)].misses += 1
      metrics.missed(repository: repository.description)
      entry = try await create(repository, limits: claim.limits, source: .image)
    }
    entry.claim(sessionID: claim.sessionID)
    entry.instance.claimed(by: claim.sessionID, branch: claim.branch)
    entries[entry.id] = entry
    metrics.claimed(source: entry.source)
    refill(repository)
    refreshImageIfStale(repository)
    report(repository.description)
    if !claim.branch.isEmpty {
      startSync(entry, branch: claim.branch, fallback: claim.fallbackBranch)
    } else {
      entry.gate.finish(commit: entry.instance.image.commit)
    }
    logger.info(
      "claimed a sandbox",
      metadata: [
        "sandbox.id": "\(entry.id)", "session.id": "\(claim.sessionID)", "source": "\(entry.source)",
        "repository": "\(repository)",
      ])
    return entry
  }

  private func takeWarm(_ repository: RepositoryName) -> SandboxEntry? {
    guard var pool = pools[repository.description] else { return nil }
    defer { pools[repository.description] = pool }
    while !pool.ready.isEmpty {
      let entry = pool.ready.removeFirst()
      if entry.instance.isAlive {
        pool.claims += 1
        return entry
      }
      Task { await entry.instance.terminate() }
    }
    return nil
  }

  /// A new sandbox on the repository's newest known image. The image is looked up (a mirror
  /// fetch, perhaps a build) only when none is known or `fresh` asks for it; claims rely on the
  /// sync to bring the workspace to the newest commit, and the pool's fills (and, at most once a
  /// minute, claims) refresh the image in the background.
  private func create(
    _ repository: RepositoryName, limits: SandboxLimits?, source: SandboxEntry.Source, fresh: Bool = false
  ) async throws -> SandboxEntry {
    try checkCapacity()
    let driver = self.driver
    let key = repository.description
    let known = fresh ? nil : images[key]?.image
    starting += 1
    defer { starting -= 1 }
    let instance = try await Watchdog.run(
      .provision, configuration.provisionTimeout, abandoned: { await $0.terminate() }
    ) {
      let image: Image
      if let known { image = known } else { image = try await driver.image(for: repository, branch: "", fallback: "") }
      return try await driver.createSandbox(from: image, repository: repository, limits: limits)
    }
    if known == nil { learned(instance.image, for: key) }
    return SandboxEntry(instance: instance, source: source, limits: limits, driver: driver)
  }

  /// Looks for a newer image in the background when the known one was found over a minute ago.
  private func refreshImageIfStale(_ repository: RepositoryName) {
    let key = repository.description
    guard let known = images[key], ContinuousClock.now - known.at > .seconds(60), imageRefresh == nil else { return }
    images[key]?.at = ContinuousClock.now
    let driver = self.driver
    imageRefresh = Task {
      if let image = try? await driver.image(for: repository, branch: "", fallback: "") {
        self.learned(image, for: key)
      }
      self.imageRefreshed()
    }
  }

  /// Remembers `image` as the repository's newest unless a newer one is known already (builds
  /// and fills finish in any order).
  private func learned(_ image: Image, for key: String) {
    if let known = images[key]?.image, (known.builtAt, known.id) > (image.builtAt, image.id) { return }
    images[key] = (image, ContinuousClock.now)
  }
  private func imageRefreshed() { imageRefresh = nil }

  private func restore(
    snapshotID: String, repository: RepositoryName, limits: SandboxLimits?
  ) async throws
    -> SandboxEntry
  {
    guard Identifier.isValid(snapshotID, kind: .snapshot) else {
      throw SandboxError.invalid("'\(snapshotID)' is not a snapshot id (snp-…)")
    }
    guard let record = driver.snapshotRecord(snapshotID) else {
      throw SandboxError.notFound("snapshot \(snapshotID) does not exist")
    }
    guard record.repository == repository.description else {
      throw SandboxError.preconditionFailed(
        "snapshot \(snapshotID) belongs to \(record.repository), not \(repository)")
    }
    try checkCapacity()
    let driver = self.driver
    starting += 1
    restoringImages[record.imageID, default: 0] += 1
    defer {
      starting -= 1
      restoringImages[record.imageID, default: 1] -= 1
      if restoringImages[record.imageID] == 0 { restoringImages[record.imageID] = nil }
    }
    let instance = try await Watchdog.run(
      .provision, configuration.provisionTimeout, abandoned: { await $0.terminate() }
    ) {
      try await driver.restoreSandbox(from: record, limits: limits)
    }
    let entry = SandboxEntry(instance: instance, source: .snapshot, limits: limits, driver: driver)
    entry.snapshotID = snapshotID
    await runStartScript(entry)
    return entry
  }

  /// Processes do not survive a snapshot: `.inspect/start.sh`, when the repository has one,
  /// starts them again (under the setup watchdog; a failure is logged, the sandbox stays usable).
  private func runStartScript(_ entry: SandboxEntry) async {
    guard (try? entry.instance.readFile(".inspect/start.sh", offset: 0, limit: 1)) != nil else { return }
    do {
      let result = try await entry.instance.run(
        ["/bin/sh", ".inspect/start.sh"], timeout: configuration.setupTimeout)
      if !result.succeeded {
        logger.warning(
          "the repository's start script failed",
          metadata: [
            "sandbox.id": "\(entry.id)", "exit": "\(result.exitCode)", "timed_out": "\(result.timedOut)",
            "output": "\(String(result.combinedText.suffix(500)))",
          ])
      }
    } catch {
      logger.warning(
        "the repository's start script could not run", metadata: ["sandbox.id": "\(entry.id)", "error": "\(error)"])
    }
  }

  private func checkCapacity() throws {
    let count =
      entries.count + prewarmed.count + starting + pools.values.reduce(0) { $0 + $1.ready.count + $1.creating }
    guard count < configuration.maxSandboxes else {
      throw SandboxError.exhausted(
        "this node runs \(count) sandboxes, its limit (INSPECT_SANDBOX_MAX_SANDBOXES is \(configuration.maxSandboxes))")
    }
  }

  private func startSync(_ entry: SandboxEntry, branch: String, fallback: String) {
    let timeout = configuration.syncTimeout
    let logger = self.logger
    entry.gate.begin(branch: branch)
    Task {
      let clock = ContinuousClock()
      let started = clock.now
      do {
        let commit = try await Watchdog.run(.sync, timeout) {
          try await entry.instance.sync(branch: branch, fallback: fallback)
        }
        entry.gate.finish(commit: commit, duration: clock.now - started)
      } catch {
        logger.warning("a sandbox failed to sync", metadata: ["sandbox.id": "\(entry.id)", "error": "\(error)"])
        entry.gate.fail("\(error)")
      }
    }
  }

  // MARK: - Images

  /// Builds an image (one build per repository at a time: ABORTED otherwise). A new READY image
  /// becomes the one new sandboxes use: the warm pool moves to it and old images beyond
  /// `imagesKept` that no sandbox uses are removed.
  func buildImage(
    _ repository: RepositoryName, branch: String, force: Bool,
    progress: @escaping @Sendable (ImageBuildEvent) -> Void
  ) async throws -> (image: Image, unchanged: Bool) {
    let key = repository.description
    guard building.insert(key).inserted else {
      throw SandboxError.aborted("an image of \(repository) is being built already")
    }
    defer { building.remove(key) }
    let result = try await driver.buildImage(repository, branch: branch, force: force, progress: progress)
    // New sandboxes start from the default branch's image; other branches' images are built
    // for whoever asked.
    if result.image.state == .ready, !result.unchanged, branch.isEmpty {
      learned(result.image, for: key)
      retireOlder(than: result.image, in: key)
      refill(repository)
    }
    pruneImages(key)
    return result
  }

  /// Removes READY images of `key` beyond the newest `imagesKept`, and FAILED records beyond as
  /// many, unless a sandbox (claimed, warm or prewarmed) still uses them.
  private func pruneImages(_ key: String) {
    let inUse = Set(list(repository: key, sessionID: "").map(\.instance.image.id))
      .union(images[key].map { [$0.image.id] } ?? []).union(restoringImages.keys)
    let all = driver.images(repository: key)
    let excess =
      all.filter { $0.state == .ready }.dropFirst(configuration.imagesKept)
      + all.filter { $0.state == .failed }.dropFirst(configuration.imagesKept)
    for image in excess where !inUse.contains(image.id) {
      driver.removeImage(image.id)
      logger.info("removed an old image", metadata: ["image.id": "\(image.id)", "repository": "\(key)"])
    }
  }

  /// Rebuilds the images of every repository in use on `imageRebuildInterval` (a build that
  /// finds the default branch where it was keeps the image).
  func startImageRebuilds() {
    guard let interval = configuration.imageRebuildInterval, rebuilds == nil else { return }
    rebuilds = Task {
      while !Task.isCancelled {
        guard (try? await Task.sleep(for: interval)) != nil else { return }
        for key in self.repositoriesInUse() {
          guard let repository = try? RepositoryName(key) else { continue }
          do {
            let (image, unchanged) = try await self.buildImage(repository, branch: "", force: false) { _ in }
            self.logger.info(
              "scheduled image build",
              metadata: [
                "repository": "\(key)", "image.id": "\(image.id)", "state": "\(image.state)",
                "unchanged": "\(unchanged)",
              ])
          } catch {
            self.logger.warning(
              "a scheduled image build failed", metadata: ["repository": "\(key)", "error": "\(error)"])
          }
        }
      }
    }
  }

  private func repositoriesInUse() -> [String] {
    Set(images.keys).union(pools.keys).sorted()
  }

  // MARK: - Warm pools

  /// Makes sure the repository's pool exists and fills it in the background.
  func refill(_ repository: RepositoryName) {
    let key = repository.description
    if pools[key] == nil { pools[key] = WarmPoolState(target: configuration.poolSize) }
    guard refills[key] == nil, let pool = pools[key], pool.ready.count + pool.creating < pool.target else { return }
    // Refilling (a mirror fetch, a sandbox start) waits a moment and runs at a lower priority,
    // so that it does not compete for the CPU with the first command of the sandbox just claimed.
    refills[key] = Task(priority: .utility) {
      try? await Task.sleep(for: .milliseconds(30))
      await self.fill(repository)
    }
  }

  /// Creates warm sandboxes until the pool has its target, on the newest image; sandboxes of an
  /// older image leave the pool.
  private func fill(_ repository: RepositoryName) async {
    let key = repository.description
    defer { refills[key] = nil }
    while let pool = pools[key], pool.ready.count + pool.creating < pool.target {
      pools[key]?.creating += 1
      do {
        try checkCapacity()
        let entry = try await create(repository, limits: nil, source: .warmPool, fresh: true)
        pools[key]?.creating -= 1
        retireOlder(than: entry.instance.image, in: key)
        pools[key]?.imageID = entry.instance.image.id
        pools[key]?.ready.append(entry)
        report(key)
      } catch {
        pools[key]?.creating -= 1
        logger.warning(
          "the warm pool could not create a sandbox", metadata: ["repository": "\(repository)", "error": "\(error)"])
        return
      }
    }
  }

  private func retireOlder(than image: Image, in key: String) {
    guard let pool = pools[key] else { return }
    let (keep, retire) = (
      pool.ready.filter { $0.instance.image.id == image.id }, pool.ready.filter { $0.instance.image.id != image.id }
    )
    guard !retire.isEmpty else { return }
    pools[key]?.ready = keep
    for entry in retire { Task { await entry.instance.terminate() } }
    logger.info("warm pool moved to a new image", metadata: ["repository": "\(key)", "image.id": "\(image.id)"])
  }

  /// Gets a sandbox ready ahead of a prompt: for a session, the restore of its newest snapshot
  /// (or a warm sandbox set aside for it), which its next claim takes; in any case a full pool.
  /// Answers at once; the work happens in the background.
  func prewarm(_ repository: RepositoryName, sessionID: String) {
    refill(repository)
    guard !sessionID.isEmpty, prewarmed[sessionID] == nil, prewarming.insert(sessionID).inserted else { return }
    let snapshot = driver.snapshots(session: sessionID).first.flatMap {
      $0.repository == repository.description ? $0 : nil
    }
    Task {
      do {
        let entry: SandboxEntry
        if let snapshot {
          entry = try await self.restore(snapshotID: snapshot.id, repository: repository, limits: nil)
        } else if let warm = await self.takeWarm(repository) {
          entry = warm
          await self.refill(repository)
        } else {
          entry = try await self.create(repository, limits: nil, source: .image)
        }
        await self.keepPrewarmed(entry, for: sessionID)
      } catch {
        await self.prewarmFailed(sessionID)
        self.logger.warning(
          "prewarming failed",
          metadata: ["session.id": "\(sessionID)", "repository": "\(repository)", "error": "\(error)"])
      }
    }
  }

  private func prewarmFailed(_ sessionID: String) { prewarming.remove(sessionID) }

  /// The sandbox waiting for the session's claim, if one is.
  func prewarmedID(_ sessionID: String) -> String? { prewarmed[sessionID]?.id }
  func isPrewarmed(_ sessionID: String) -> Bool { prewarmed[sessionID] != nil }

  /// Keeps `entry` for the session's claim; unclaimed after `prewarmTTL`, it is terminated.
  private func keepPrewarmed(_ entry: SandboxEntry, for sessionID: String) async {
    prewarming.remove(sessionID)
    if let old = prewarmed.updateValue(entry, forKey: sessionID) { await old.instance.terminate() }
    let ttl = configuration.prewarmTTL
    Task {
      try? await Task.sleep(for: ttl)
      await self.expirePrewarmed(sessionID, id: entry.id)
    }
  }

  private func expirePrewarmed(_ sessionID: String, id: String) async {
    guard let entry = prewarmed[sessionID], entry.id == id else { return }
    prewarmed[sessionID] = nil
    entry.markTerminated()
    await entry.instance.terminate()
    logger.info(
      "a prewarmed sandbox was not claimed in time", metadata: ["session.id": "\(sessionID)", "sandbox.id": "\(id)"])
  }

  func warmPools(_ repository: String) -> [WarmPoolState.Status] {
    pools.filter { repository.isEmpty || $0.key == repository }.sorted { $0.key < $1.key }.map {
      $0.value.status(repository: $0.key)
    }
  }

  // MARK: - Finding, snapshots, termination

  /// The claimed sandbox `id`: NOT_FOUND when unknown, FAILED_PRECONDITION when terminated.
  func entry(_ id: String) throws -> SandboxEntry {
    if terminated.contains(id) { throw SandboxError.preconditionFailed("sandbox \(id) is terminated") }
    guard let entry = entries[id] else { throw SandboxError.notFound("sandbox \(id) does not exist") }
    guard entry.state != .terminated else { throw SandboxError.preconditionFailed("sandbox \(id) is terminated") }
    return entry
  }

  /// Every sandbox (claimed, warm and prewarmed), optionally filtered.
  func list(repository: String, sessionID: String) -> [SandboxEntry] {
    let all = Array(entries.values) + pools.values.flatMap(\.ready) + prewarmed.values
    return all.filter {
      (repository.isEmpty || $0.instance.repository.description == repository)
        && (sessionID.isEmpty || $0.sessionID == sessionID)
    }.sorted { $0.createdAt < $1.createdAt }
  }

  func snapshot(_ id: String) async throws -> SnapshotRecord {
    let entry = try entry(id)
    guard !entry.sessionID.isEmpty else {
      throw SandboxError.preconditionFailed("sandbox \(id) is not claimed by a session")
    }
    let record = try await entry.snapshot()
    pruneSnapshots(of: record.sessionID)
    return record
  }

  /// Deletes a session's snapshots beyond the newest `snapshotsKept`.
  private func pruneSnapshots(of sessionID: String) {
    guard !sessionID.isEmpty else { return }
    for old in driver.snapshots(session: sessionID).dropFirst(configuration.snapshotsKept) {
      driver.removeSnapshot(old.id)
    }
  }

  /// Stops the sandbox and removes it, after a snapshot when asked. Terminating a terminated
  /// sandbox succeeds; an unknown one is NOT_FOUND.
  func terminate(_ id: String, snapshot: Bool) async throws -> SnapshotRecord? {
    if terminated.contains(id) { return nil }
    guard let entry = entries[id] else { throw SandboxError.notFound("sandbox \(id) does not exist") }
    // Gone for every other caller from here on, before the first suspension.
    entries[id] = nil
    terminated.insert(id)
    var record: SnapshotRecord?
    var failure: (any Error)?
    // The writable layer outlives the sandbox's processes: it is saved even when init died.
    if snapshot {
      do { record = try await entry.snapshot() } catch { failure = error }
      if let record { pruneSnapshots(of: record.sessionID) }
    }
    entry.markTerminated()
    await entry.instance.terminate()
    report(entry.instance.repository.description)
    logger.info("terminated a sandbox", metadata: ["sandbox.id": "\(id)", "snapshot.id": "\(record?.id ?? "")"])
    if let failure { throw SandboxError.failed("the snapshot failed (the sandbox was removed): \(failure)") }
    return record
  }

  /// Terminates every sandbox (at shutdown).
  func shutdown() async {
    rebuilds?.cancel()
    for task in refills.values { task.cancel() }
    let all = list(repository: "", sessionID: "")
    pools = [:]
    prewarmed = [:]
    for entry in all {
      entry.markTerminated()
      await entry.instance.terminate()
    }
  }
}

/// One sandbox as the manager tracks it.
final class SandboxEntry: Sendable {
  enum Source: Sendable { case warmPool, image, snapshot }
  enum State: Sendable { case warm, syncing, ready, snapshotting, terminated, failed }

  let instance: any SandboxInstance
  let source: Source
  let limits: SandboxLimits?
  let createdAt = Date()
  let gate = SyncGate()
  private let driver: any SandboxDriver
  private struct Mutable {
    var sessionID = ""
    var snapshotID = ""
    var snapshotting = false
    var terminated = false
  }
  private let mutable = Mutex(Mutable())

  init(instance: any SandboxInstance, source: Source, limits: SandboxLimits?, driver: any SandboxDriver) {
    self.instance = instance
    self.source = source
    self.limits = limits
    self.driver = driver
  }

  var id: String { instance.id }
  var sessionID: String { mutable.withLock { $0.sessionID } }
  var snapshotID: String {
    get { mutable.withLock { $0.snapshotID } }
    set { mutable.withLock { $0.snapshotID = newValue } }
  }

  var state: State {
    let (sessionID, snapshotting, terminated) = mutable.withLock { ($0.sessionID, $0.snapshotting, $0.terminated) }
    if terminated { return .terminated }
    if !instance.isAlive { return .failed }
    if snapshotting { return .snapshotting }
    if sessionID.isEmpty { return .warm }
    switch gate.state {
    case .syncing: return .syncing
    case .failed: return .failed
    case .done: return .ready
    }
  }

  /// The commit the workspace is at (the image's until a sync finished).
  var commit: String { gate.commit ?? instance.image.commit }
  var branch: String { gate.branch }

  func claim(sessionID: String) { mutable.withLock { $0.sessionID = sessionID } }
  func markTerminated() { mutable.withLock { $0.terminated = true } }

  /// Waits until writes and commands may run: the sync finished (bounded wait).
  func writable(within wait: Duration) async throws {
    try await gate.wait(sandboxID: id, within: wait)
  }

  func snapshot() async throws -> SnapshotRecord {
    mutable.withLock { $0.snapshotting = true }
    defer { mutable.withLock { $0.snapshotting = false } }
    return try await driver.snapshot(
      instance, id: Identifier.make(.snapshot), sessionID: sessionID, branch: branch)
  }
}

/// Writes and commands wait here until the sandbox's sync is done; reads never do.
final class SyncGate: Sendable {
  enum Phase: Sendable { case syncing, done, failed(String) }
  private struct State {
    var phase: Phase = .done
    var branch = ""
    var commit: String?
    var duration: Duration?
    var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    var nextWaiter: UInt64 = 0
  }
  private let mutable = Mutex(State())

  var state: Phase { mutable.withLock { $0.phase } }
  var branch: String { mutable.withLock { $0.branch } }
  var commit: String? { mutable.withLock { $0.commit } }
  var duration: Duration? { mutable.withLock { $0.duration } }

  func begin(branch: String) {
    mutable.withLock {
      $0.phase = .syncing
      $0.branch = branch
    }
  }

  func finish(commit: String, duration: Duration? = nil) {
    settle {
      $0.phase = .done
      $0.commit = commit
      $0.duration = duration
    }
  }

  func fail(_ reason: String) { settle { $0.phase = .failed(reason) } }

  private func settle(_ change: (inout State) -> Void) {
    let waiters = mutable.withLock { state in
      change(&state)
      defer { state.waiters = [:] }
      return Array(state.waiters.values)
    }
    for waiter in waiters { waiter.resume() }
  }

  /// Returns once the sync is done; throws when it failed or is still running after `within`.
  func wait(sandboxID: String, within: Duration) async throws {
    if case .syncing = state {
      await withTaskGroup(of: Void.self) { group in
        group.addTask { await self.changed() }
        group.addTask { try? await Task.sleep(for: within) }
        await group.next()
        group.cancelAll()
      }
    }
    switch state {
    case .done: return
    case .failed(let reason):
      throw SandboxError.preconditionFailed("sandbox \(sandboxID) failed in its sync phase: \(reason)")
    case .syncing:
      throw SandboxError.unavailable(
        "sandbox \(sandboxID) is still in its sync phase (to the newest commit of \(branch)) after \(within); try again"
      )
    }
  }

  /// Resumes when the phase leaves `syncing` or the task is cancelled.
  private func changed() async {
    let id = mutable.withLock { state -> UInt64 in
      state.nextWaiter += 1
      return state.nextWaiter
    }
    await withTaskCancellationHandler {
      await withCheckedContinuation { continuation in
        let now = mutable.withLock { state -> Bool in
          if case .syncing = state.phase, !Task.isCancelled {
            state.waiters[id] = continuation
            return false
          }
          return true
        }
        if now { continuation.resume() }
      }
    } onCancel: {
      let waiter = mutable.withLock { $0.waiters.removeValue(forKey: id) }
      waiter?.resume()
    }
  }
}

/// A warm pool's bookkeeping.
struct WarmPoolState: Sendable {
  var target: Int
  var ready: [SandboxEntry] = []
  var creating = 0
  var imageID = ""
  var claims: UInt64 = 0
  var misses: UInt64 = 0

  struct Status: Sendable {
    var repository: String
    var imageID: String
    var target: Int
    var ready: Int
    var creating: Int
    var claims: UInt64
    var misses: UInt64
  }

  func status(repository: String) -> Status {
    Status(
      repository: repository, imageID: imageID, target: target, ready: ready.count, creating: creating,
      claims: claims, misses: misses)
  }
}

/// The phases of getting a sandbox, each with a watchdog.
enum SandboxPhase: String, Sendable {
  case provision, sync, setup, exec
}

/// A phase that failed: which one, and why.
struct PhaseFailure: Error, CustomStringConvertible {
  let phase: SandboxPhase
  let reason: String
  var description: String { "\(phase) phase: \(reason)" }
}

enum Watchdog {
  /// Runs `work`; when it outlives `timeout` it is cancelled and ``PhaseFailure`` is thrown at
  /// once. Whatever it still returns after that is handed to `abandoned` (to free it).
  static func run<T: Sendable>(
    _ phase: SandboxPhase, _ timeout: Duration, abandoned: (@Sendable (T) async -> Void)? = nil,
    _ work: @escaping @Sendable () async throws -> T
  ) async throws -> T {
    let outcome = Mutex<CheckedContinuation<T, any Error>?>(nil)
    let resume = { @Sendable (result: Result<T, any Error>) -> Bool in
      guard let continuation = outcome.withLock({ $0.take() }) else { return false }
      continuation.resume(with: result)
      return true
    }
    let tasks = Mutex<(worker: Task<Void, Never>?, timer: Task<Void, any Error>?)>((nil, nil))
    defer { tasks.withLock { $0.timer }?.cancel() }
    return try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { continuation in
        outcome.withLock { $0 = continuation }
        guard !Task.isCancelled else {
          _ = resume(.failure(CancellationError()))
          return
        }
        let worker = Task {
          let result = await Result(catching: work)
          if !resume(result), case .success(let value) = result { await abandoned?(value) }
        }
        let timer = Task {
          try await Task.sleep(for: timeout)
          if resume(.failure(PhaseFailure(phase: phase, reason: "it did not finish within \(timeout)"))) {
            worker.cancel()
          }
        }
        tasks.withLock { $0 = (worker, timer) }
      }
    } onCancel: {
      tasks.withLock { $0.worker }?.cancel()
      _ = resume(.failure(CancellationError()))
    }
  }
}

extension Result where Failure == any Error {
  init(catching body: () async throws -> Success) async {
    do { self = .success(try await body()) } catch { self = .failure(error) }
  }
}
