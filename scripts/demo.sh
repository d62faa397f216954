#!/usr/bin/env bash
# Build and run voxflow with the demo IVR on SQLite in ./data.
# Extra arguments go to `voxflow serve` (e.g. --sip-listen 0.0.0.0:5060).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v espeak-ng >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng
  else
    echo "voxflow needs espeak-ng for text to speech: sudo apt-get install espeak-ng" >&2
    exit 1
  fi
fi
cargo build --release --locked -p voxflow
exec target/release/voxflow serve --demo --data-dir ./data "$@"
