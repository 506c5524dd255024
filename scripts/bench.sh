#!/usr/bin/env bash
# Runs the benchmarks named (none: all that exist) and prints `bench NAME key=value …` lines
# (names and keys: docs/CONTRACTS.md). Uses the debug build unless BUILD_CONFIGURATION=release.
# Built so far: e2e.ttft (and `demo`, the demo session's wall time and parts).
set -euo pipefail
cd "$(dirname "$0")/.."
configuration=${BUILD_CONFIGURATION:-debug}
swift build -c "$configuration" >/dev/null 2>&1
export INSPECT_BIN_DIR=${INSPECT_BIN_DIR:-$(swift build -c "$configuration" --show-bin-path)}
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(e2e.ttft demo)
for name in "${names[@]}"; do
  case "$name" in
    e2e.ttft|demo) python3 scripts/bench/e2e.py "$name" ;;
    *) echo "bench $name: not built yet (see docs/PERFORMANCE.md)" >&2; exit 2 ;;
  esac
done
