#!/usr/bin/env bash
# Call setup rate: SIPp's built-in UAC (INVITE → 100/180 → 200 → ACK → BYE → 200, no RTP sent by
# SIPp) against the release binary, on a number bound to a flow that answers and waits.
#
#   bench/cps.sh [RATE] [CALLS]          defaults: 1000 calls/s, 30000 calls
#   SERVER_CPU=1 CLIENT_CPU=0 bench/cps.sh 1500 45000
#
# Runs inside its own network namespace when root (fixed ports, nothing leaks), else on
# loopback ports above 62000. Prints SIPp's totals and the server's CPU time and peak RSS.
set -euo pipefail
RATE=${1:-1000}
CALLS=${2:-30000}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/target/release/voxflow"
[ -x "$bin" ] || { echo "build first: cargo build --release -p voxflow" >&2; exit 2; }

if [ "$(id -u)" -eq 0 ] && [ -z "${VOXFLOW_BENCH_NS:-}" ]; then
  exec env VOXFLOW_BENCH_NS=1 unshare -n -- bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi
if [ -n "${VOXFLOW_BENCH_NS:-}" ]; then
  HTTP=18080; SIP=5060; SIPP=5070; RTP_LOW=20000; RTP_HIGH=40000
else
  HTTP=62180; SIP=62160; SIPP=62170; RTP_LOW=40000; RTP_HIGH=60000
fi

work=$(mktemp -d -t voxflow-cps.XXXXXX)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$(pgrep -P "$server_pid")" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

ulimit -n 65536 2>/dev/null || true
mkfifo "$work/out.fifo"
taskset -c "$SERVER_CPU" /usr/bin/time -v -o "$work/time.txt" "$bin" serve \
  --http-listen "127.0.0.1:$HTTP" --sip-listen "127.0.0.1:$SIP" --rtp-ports "$RTP_LOW-$RTP_HIGH" \
  --data-dir "$work/data" --bootstrap-token bench --media-workers 1 --log warn \
  > "$work/out.fifo" 2> "$work/err.log" &
server_pid=$!
# The first line voxflow prints is "voxflow ready ..." (no token line: the token is given).
exec 3< "$work/out.fifo"
if ! IFS= read -r -t 30 ready <&3 || [[ "$ready" != *"voxflow ready"* ]]; then
  echo "voxflow did not start: ${ready:-}" >&2; cat "$work/err.log" >&2; exit 1
fi
cat <&3 > "$work/out.log" &

api() { curl -sf -H "Authorization: Bearer bench" -H "Content-Type: application/json" "$@"; }
flow=$(api -d '{"name":"cps","actions":[{"type":"answer"},{"type":"sleep","option":{"duration":60000}}]}' \
  "http://127.0.0.1:$HTTP/v1.0/flows" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
api -d "{\"number\":\"1000\",\"call_flow_id\":\"$flow\"}" "http://127.0.0.1:$HTTP/v1.0/numbers" > /dev/null

echo "voxflow CPS bench: rate $RATE/s, $CALLS calls, server on CPU $SERVER_CPU, SIPp on CPU $CLIENT_CPU"
set +e
taskset -c "$CLIENT_CPU" sipp -sn uac "127.0.0.1:$SIP" -i 127.0.0.1 -p "$SIPP" -s 1000 \
  -r "$RATE" -m "$CALLS" -l $((RATE * 4)) -d 0 -nostdin -timeout $((CALLS / RATE + 60))s \
  -trace_stat -stf "$work/stat.csv" -fd 1 > "$work/sipp.log" 2>&1
status=$?
set -e
# SIGTERM to voxflow itself (the child of `time`), so `time` reports on it.
kill "$(pgrep -P "$server_pid")"; wait "$server_pid" 2>/dev/null || true; server_pid=

# The last line of SIPp's statistics file holds the cumulative counters.
python3 - "$work/stat.csv" "$status" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=';'))
head, last = rows[0], rows[-1]
col = lambda name: last[head.index(name)]
elapsed = col("ElapsedTime(C)")
h, m, s = elapsed.split(":")
secs = int(h) * 3600 + int(m) * 60 + float(s.split(":")[0])
ok, failed = int(col("SuccessfulCall(C)")), int(col("FailedCall(C)"))
print(f"sipp exit {sys.argv[2]}: {ok} successful, {failed} failed calls in {secs:.1f} s "
      f"({ok / secs:.0f} calls/s achieved)")
PY
grep -E "User time|System time|Maximum resident" "$work/time.txt" | sed 's/^\s*/server: /'
