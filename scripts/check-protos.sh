#!/usr/bin/env bash
# Fails when the generated code in Sources/InspectProtos is stale: a .proto under protos/ was
# changed, added or removed since scripts/generate-protos.sh last ran, or a generated file is
# missing. Needs only bash and coreutils (CI has no protoc plugins).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

out_dir="Sources/InspectProtos"
record="$out_dir/PROTOS.sha256"
fix="run scripts/generate-protos.sh and commit the result"

if [[ ! -f "$record" ]]; then
  echo "check-protos: $record is missing; $fix" >&2
  exit 1
fi

# Every .proto under protos/, in the same (C locale) order as scripts/generate-protos.sh.
shopt -s globstar nullglob
proto_glob=(protos/**/*.proto)
shopt -u globstar nullglob
protos=()
if [[ ${#proto_glob[@]} -gt 0 ]]; then
  mapfile -t protos < <(printf '%s\n' "${proto_glob[@]}" | LC_ALL=C sort)
fi
if [[ ${#protos[@]} -eq 0 ]]; then
  echo "check-protos: no .proto files under protos/" >&2
  exit 1
fi

current="$(sha256sum "${protos[@]}")"
recorded="$(cat "$record")"
problems=()

# Compare path by path so that the message names the proto.
declare -A want=() have=()
while read -r hash path; do
  if [[ -n "${path:-}" ]]; then
    want["$path"]="$hash"
  fi
done <<<"$recorded"
while read -r hash path; do
  if [[ -n "${path:-}" ]]; then
    have["$path"]="$hash"
  fi
done <<<"$current"

for path in "${!have[@]}"; do
  if [[ -z "${want[$path]+x}" ]]; then
    problems+=("added:   $path")
  elif [[ "${want[$path]}" != "${have[$path]}" ]]; then
    problems+=("changed: $path")
  fi
done
for path in "${!want[@]}"; do
  if [[ -z "${have[$path]+x}" ]]; then
    problems+=("removed: $path")
  fi
done

# Whether a .proto declares a service (a line starting with `service Name`).
declares_service() {
  local line
  while IFS= read -r line || [[ -n "$line" ]]; do
    if [[ "$line" =~ ^[[:space:]]*service[[:space:]]+[A-Za-z_] ]]; then
      return 0
    fi
  done <"$1"
  return 1
}

# Every proto must have its generated files: <path with / as _>.pb.swift, and .grpc.swift
# when it declares a service.
for path in "${protos[@]}"; do
  base="${path#protos/}"
  base="${base%.proto}"
  base="${base//\//_}"
  if [[ ! -f "$out_dir/$base.pb.swift" ]]; then
    problems+=("missing: $out_dir/$base.pb.swift (from $path)")
  fi
  if declares_service "$path" && [[ ! -f "$out_dir/$base.grpc.swift" ]]; then
    problems+=("missing: $out_dir/$base.grpc.swift (from $path)")
  fi
done

# And no generated file may outlive its proto.
for file in "$out_dir"/*.pb.swift "$out_dir"/*.grpc.swift; do
  [[ -e "$file" ]] || continue
  name="${file##*/}"
  name="${name%.pb.swift}"
  name="${name%.grpc.swift}"
  found=0
  for path in "${protos[@]}"; do
    base="${path#protos/}"
    base="${base%.proto}"
    if [[ "${base//\//_}" == "$name" ]]; then
      found=1
      break
    fi
  done
  if [[ $found -eq 0 ]]; then
    problems+=("orphan:  $file (its .proto is gone)")
  fi
done

if [[ "$current" != "$recorded" && ${#problems[@]} -eq 0 ]]; then
  problems+=("$record is not in the expected format")
fi

if [[ ${#problems[@]} -gt 0 ]]; then
  echo "check-protos: generated code in $out_dir is stale:" >&2
  printf '  %s\n' "${problems[@]}" | LC_ALL=C sort >&2
  echo "check-protos: $fix" >&2
  exit 1
fi

echo "check-protos: ${#protos[@]} protos match $record"
