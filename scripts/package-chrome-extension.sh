#!/usr/bin/env bash
# Builds the Chrome extension for installing or rolling out:
#
#   scripts/package-chrome-extension.sh [--out DIR] [--key KEY.pem] [--update-url URL]
#
# - Always: DIR/inspect-chrome-<version>.zip (the extension's files; load it unpacked, or upload
#   it to the Chrome Web Store: without --key the development "key" is left out of its manifest,
#   as the store requires).
# - With --key (an unencrypted RSA private key, e.g. `openssl genrsa -out inspect-extension.pem
#   2048`; keep it: every update must be signed with it) and --update-url (the Gateway's
#   https://<gateway>/chrome/updates.xml): the manifest's "key" becomes that key's public half
#   (so the extension id follows the key) and its "update_url" the URL, and chromium packs
#   DIR/inspect.crx; DIR/extension.json records the id and version. Point the Gateway's
#   INSPECT_CHROME_EXTENSION_DIR at DIR to serve the update manifest and the .crx for managed
#   rollout (see README, "Chrome extension").
#
# DIR defaults to dist/chrome. Needs zip, python3, and for --key openssl and chromium.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/dist/chrome"
key=""
update_url=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --key) key="$2"; shift 2 ;;
    --update-url) update_url="$2"; shift 2 ;;
    *) echo "usage: $0 [--out DIR] [--key KEY.pem] [--update-url URL]" >&2; exit 2 ;;
  esac
done
if [ -n "$update_url" ] && [ -z "$key" ]; then
  echo "error: --update-url needs --key (a self-hosted extension must be signed)" >&2
  exit 2
fi
if [ -n "$key" ] && [ -z "$update_url" ]; then
  # Chrome checks the manifest's update_url after the first install: without it, browsers that
  # installed the .crx through policy would never see a new version.
  echo "error: --key needs --update-url (https://<gateway>/chrome/updates.xml)" >&2
  exit 2
fi

mkdir -p "$out"
out="$(cd "$out" && pwd)"
stage="$(mktemp -d)"
# Chromium's helper processes can outlive the packing and still write to its profile: stop them
# first, and never let the clean-up change the script's exit status.
cleanup() {
  local status=$?
  pkill -f -- "--user-data-dir=$stage/profile" 2>/dev/null || true
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    rm -rf "$stage" 2>/dev/null && break
    sleep 0.5
  done
  exit "$status"
}
trap cleanup EXIT
mkdir "$stage/inspect"
cp "$root"/clients/chrome/{manifest.json,background.js,capture.js,picker.js,react-bridge.js,panel.html,panel.css,panel.js} "$stage/inspect/"

public_key=""
if [ -n "$key" ]; then
  [ -r "$key" ] || { echo "error: cannot read the key $key" >&2; exit 1; }
  public_key="$(openssl rsa -in "$key" -passin pass: -pubout -outform DER 2>/dev/null \
    | python3 -c 'import base64, sys; print(base64.b64encode(sys.stdin.buffer.read()).decode())')"
  [ -n "$public_key" ] || { echo "error: $key is not an RSA private key" >&2; exit 1; }
fi

# The manifest, with the key's public half and the update URL when given; prints id and version.
read -r id version < <(python3 - "$stage/inspect/manifest.json" "$public_key" "$update_url" <<'PY'
import base64, hashlib, json, sys
path, public_key, update_url = sys.argv[1:4]
manifest = json.load(open(path))
# The id comes from the key: the signing key's, else the development key of clients/chrome.
digest = hashlib.sha256(base64.b64decode(public_key or manifest["key"])).hexdigest()[:32]
if public_key:
    manifest["key"] = public_key
else:
    # A store upload must not carry a key (the store assigns its own).
    del manifest["key"]
if update_url:
    manifest["update_url"] = update_url
json.dump(manifest, open(path, "w"), indent=2)
print("".join(chr(ord("a") + int(c, 16)) for c in digest), manifest["version"])
PY
)

zip_file="$out/inspect-chrome-$version.zip"
rm -f "$zip_file"
(cd "$stage/inspect" && zip -qr "$zip_file" .)
echo "package: $zip_file (extension id $id, version $version)"

if [ -n "$key" ]; then
  chromium --headless=new --no-sandbox --user-data-dir="$stage/profile" --pack-extension="$stage/inspect" \
    --pack-extension-key="$key" >/dev/null 2>&1 || true
  # Wait for its helpers (crash handler, utility processes) to go.
  for _ in $(seq 1 20); do
    pgrep -f -- "--user-data-dir=$stage/profile" >/dev/null || break
    sleep 0.25
  done
  [ -s "$stage/inspect.crx" ] || { echo "error: chromium did not pack $stage/inspect" >&2; exit 1; }
  mv "$stage/inspect.crx" "$out/inspect.crx"
  printf '{"id": "%s", "version": "%s"}\n' "$id" "$version" > "$out/extension.json"
  echo "package: $out/inspect.crx and $out/extension.json (serve them with INSPECT_CHROME_EXTENSION_DIR=$out)"
fi
