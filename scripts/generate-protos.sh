#!/usr/bin/env bash
# Regenerates Sources/InspectProtos from protos/ with protoc and the swift-protobuf and
# grpc-swift-protobuf plugins, then records the hash of every .proto in
# Sources/InspectProtos/PROTOS.sha256 (checked by scripts/check-protos.sh in CI).
#
# Needs: protoc (Debian package protobuf-compiler) and the two plugins, found in
# $PROTOC_PLUGIN_DIR (default /work/plugins/.build/release).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

plugin_dir="${PROTOC_PLUGIN_DIR:-/work/plugins/.build/release}"
out_dir="Sources/InspectProtos"
swift_plugin="$plugin_dir/protoc-gen-swift"
grpc_plugin="$plugin_dir/protoc-gen-grpc-swift-2"

if ! command -v protoc >/dev/null 2>&1; then
  echo "error: protoc not found. Install it with: apt-get install -y protobuf-compiler" >&2
  exit 1
fi

if [[ ! -x "$swift_plugin" || ! -x "$grpc_plugin" ]]; then
  cat >&2 <<MSG
error: protoc plugins not found in $plugin_dir
  (looked for protoc-gen-swift and protoc-gen-grpc-swift-2; set PROTOC_PLUGIN_DIR to use
  another directory).

Build them once (about 3 minutes) in a separate package whose Package.swift depends only on

    .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
    .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", exact: "2.4.1"),

and run, in that package:

    swift build -c release --product protoc-gen-swift
    swift build -c release --product protoc-gen-grpc-swift-2

The binaries end up in <package>/.build/release/.
MSG
  exit 1
fi

mapfile -t protos < <(find protos -name '*.proto' -type f | LC_ALL=C sort)
if [[ ${#protos[@]} -eq 0 ]]; then
  echo "error: no .proto files under protos/" >&2
  exit 1
fi

mkdir -p "$out_dir"
find "$out_dir" -maxdepth 1 -type f \( -name '*.pb.swift' -o -name '*.grpc.swift' \) -delete

protoc \
  --plugin=protoc-gen-swift="$swift_plugin" \
  --plugin=protoc-gen-grpc-swift-2="$grpc_plugin" \
  -I protos \
  --swift_out="$out_dir" \
  --swift_opt=Visibility=Public,FileNaming=PathToUnderscores \
  --grpc-swift-2_out="$out_dir" \
  --grpc-swift-2_opt=Visibility=Public,FileNaming=PathToUnderscores,Server=true,Client=true \
  "${protos[@]}"

# The freshness record: one `sha256sum` line per .proto, in sorted path order.
sha256sum "${protos[@]}" > "$out_dir/PROTOS.sha256"

count_pb=$(find "$out_dir" -maxdepth 1 -name '*.pb.swift' | wc -l)
count_grpc=$(find "$out_dir" -maxdepth 1 -name '*.grpc.swift' | wc -l)
echo "generated $count_pb .pb.swift and $count_grpc .grpc.swift files from ${#protos[@]} protos into $out_dir"
