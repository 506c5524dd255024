#!/usr/bin/env bash
# Runs the benchmarks named (none: all that exist) and prints `bench NAME key=value …` lines
# (names and keys: docs/CONTRACTS.md). Uses the debug build unless BUILD_CONFIGURATION=release.
# Built so far: e2e.ttft (and `demo`, the demo session's wall time and parts) in
# scripts/bench/e2e.py; session.ack, session.fanout, session.replay, session.scale and
# sandbox.claim, sandbox.create, sandbox.restore, sandbox.snapshot, sandbox.density (root),
# router.ttft, router.throughput, router.concurrency, agent.step (root), gateway.get, gateway.sse_fanout and
# classifier.classify in the `inspect-bench` binary (Sources/InspectBench; run it directly to change its flags, e.g.
# `inspect-bench session.fanout --rate 100`).
set -euo pipefail
cd "$(dirname "$0")/.."
configuration=${BUILD_CONFIGURATION:-debug}
swift build -c "$configuration" >/dev/null 2>&1
bin_path=$(swift build -c "$configuration" --show-bin-path)
# The services under test (INSPECT_BIN_DIR may name other builds of them); the bench itself always
# comes from this build.
export INSPECT_BIN_DIR=${INSPECT_BIN_DIR:-$bin_path}
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(e2e.ttft demo session.ack session.fanout session.replay session.scale sandbox.claim
  sandbox.create sandbox.restore sandbox.snapshot sandbox.density router.ttft router.throughput router.concurrency
  agent.step gateway.get gateway.sse_fanout classifier.classify)
for name in "${names[@]}"; do
  case "$name" in
    e2e.ttft|demo) python3 scripts/bench/e2e.py "$name" ;;
    session.ack|session.fanout|session.replay|session.scale|sandbox.claim|sandbox.create|sandbox.restore|\
      sandbox.snapshot|sandbox.density|router.ttft|router.throughput|router.concurrency|agent.step|gateway.get|gateway.sse_fanout|\
      classifier.classify)
      "$bin_path/inspect-bench" "$name" ;;
    *) echo "bench $name: not built yet (see docs/PERFORMANCE.md)" >&2; exit 2 ;;
  esac
done
