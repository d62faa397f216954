#!/usr/bin/env bash
# The sans-IO core crates must not depend on an async runtime, HTTP or database crate.
set -euo pipefail
cd "$(dirname "$0")/.."
bad='^(tokio|tokio-[a-z-]+|sqlx|sqlx-[a-z-]+|axum|axum-[a-z-]+|reqwest|hyper|hyper-[a-z-]+|mio) '
status=0
for crate in voxflow-sip voxflow-sdp voxflow-media voxflow-flow; do
  found=$(cargo tree -p "$crate" -e normal,build --prefix none --locked | grep -E "$bad" | sort -u || true)
  if [ -n "$found" ]; then
    echo "core crate $crate depends on:" >&2
    echo "$found" >&2
    status=1
  else
    echo "ok: $crate"
  fi
done
exit $status
