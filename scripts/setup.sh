#!/usr/bin/env bash
# Installs what building and testing Inspect needs on Debian 12, skipping what is already there.
# Safe to run again. Needs root (or sudo) for apt.
set -euo pipefail

apt_packages=(libsqlite3-dev docker-compose curl git bubblewrap python3 tar zstd ripgrep chromium chromium-driver openssl node-react node-react-dom zip)
python_modules=(grpc grpc_tools grpc_health pytest yaml selenium schemathesis websocket slack_sdk)
pip_packages=(grpcio grpcio-tools grpcio-health-checking pytest PyYAML selenium schemathesis websocket-client slack_sdk)

missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]} (apt)"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

need_pip=0
for module in "${python_modules[@]}"; do
  python3 -c "import $module" 2>/dev/null || need_pip=1
done
if [ "$need_pip" -eq 1 ]; then
  echo "setup: installing ${pip_packages[*]} (pip)"
  python3 -m pip install -q "${pip_packages[@]}"
fi

command -v swift >/dev/null || { echo "setup: Swift 6.3 is required (swift not on PATH)" >&2; exit 1; }
echo "setup: ready"
