#!/usr/bin/env bash
# Measures the foundation's numbers for docs/PERFORMANCE.md:
#   - wall time of `inspect up --detach` until all five services are SERVING (RUNS runs, median)
#   - idle resident memory (VmRSS) of each service, 5 s after start-up
# Uses the binaries of `swift build` (debug unless BUILD_CONFIGURATION=release) and loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
configuration=${BUILD_CONFIGURATION:-debug}
bin=${INSPECT_BIN_DIR:-$(swift build -c "$configuration" --show-bin-path)}
runs=${RUNS:-10}

free_port_environment() {
  python3 - <<'PY'
import socket
names = ["GATEWAY_GRPC_PORT", "GATEWAY_HTTP_PORT", "SESSION_GRPC_PORT", "SESSION_ADMIN_PORT",
         "SANDBOX_GRPC_PORT", "SANDBOX_ADMIN_PORT", "MODEL_ROUTER_GRPC_PORT", "MODEL_ROUTER_ADMIN_PORT",
         "CLASSIFIER_GRPC_PORT", "CLASSIFIER_ADMIN_PORT"]
sockets = []
for name in names:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); sockets.append(s)
    print(f"INSPECT_{name}={s.getsockname()[1]}")
PY
}

times=()
for run in $(seq "$runs"); do
  data=$(mktemp -d)
  # shellcheck disable=SC2046
  env $(free_port_environment) bash -c '
    start=$(date +%s%N)
    "$0/inspect" up --detach --data-dir "$1" >/dev/null
    echo $(( ($(date +%s%N) - start) / 1000000 )) > "$1/up-ms"' "$bin" "$data"
  times+=("$(cat "$data/up-ms")")
  if [ "$run" -eq 1 ]; then
    sleep 5
    python3 - "$data" <<'PY'
import json, sys
state = json.load(open(f"{sys.argv[1]}/run/up.json"))
for process in state["processes"]:
    rss = next(line.split()[1] for line in open(f"/proc/{process['pid']}/status") if line.startswith("VmRSS:"))
    print(f"measure idle_rss service={process['service']} rss_mb={int(rss) / 1024:.1f}")
PY
  fi
  "$bin/inspect" down --data-dir "$data" >/dev/null
  rm -rf "$data"
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
median=$(echo "$sorted" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
echo "measure up_to_serving configuration=$configuration runs=$runs median_ms=$median min_ms=$(echo "$sorted" | head -1) max_ms=$(echo "$sorted" | tail -1)"
