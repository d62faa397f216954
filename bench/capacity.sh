#!/usr/bin/env bash
# Concurrent-call capacity: SIPp callers of an IVR, with G.711 RTP both ways, in steps of N calls.
#
#   bench/capacity.sh [--steps 100,250,500,1000,2000] [--ramp 10] [--hold 30] [--capture 5]
#   bench/capacity.sh --external --target 127.0.0.1:5060 --number 1000 [--server-pid PID]
#   bench/capacity.sh --make-prompts DIR      # only write the prompt files (for another server)
#
# Each step starts the release binary afresh (pinned to SERVER_CPU, default 1) with an IVR flow:
# answer, a 10 s menu prompt, digits_receive (one digit), a second 10 s prompt, then echo for
# longer than the call (the reference IVR), and drives it with bench/ivr_uac.xml (SIPp pinned to CLIENT_CPU, default
# 0): N calls ramped in evenly over --ramp seconds, each lasting ramp + hold seconds, so all N are
# up together for --hold seconds. Each caller sends looped speech as PCMU and, 10 s after
# answer, the digit 1 as SIP INFO; the caller always hangs up.
#
# Measured in the full-load window (ramp+2 s .. ramp+hold-1 s after SIPp starts): the server's
# CPU (utime+stime from /proc/PID/stat, % of one core) over its first part; then RTP on the
# wire over its last --capture seconds (at most half the window): tcpdump on lo, filtered on
# the caller's media port, analysed by bench/rtp_stats.py (|dt - 20 ms| per stream, sequence
# gaps); at its end the server's VmRSS, minus the VmRSS before the step, per call. SIPp's
# totals come from its statistics file.
#
# A Markdown table (one row per step) is appended to --out (default bench/capacity-results.md)
# and printed. Runs in its own network namespace when root and not --external (fixed ports);
# otherwise on loopback ports above 62000. Every step is bounded in time; everything started
# here is stopped on exit. Options may also be given as environment variables (upper case);
# SERVER_LOG sets voxflow's --log (default warn), KEEP=1 (--keep) keeps the work directory.
set -euo pipefail

STEPS=${STEPS:-100,250,500,1000,2000}
RAMP=${RAMP:-10}
HOLD=${HOLD:-30}
CAPTURE=${CAPTURE:-5}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
MEDIA_WORKERS=${MEDIA_WORKERS:-1}
EXTERNAL=${EXTERNAL:-0}
TARGET=${TARGET:-}
NUMBER=${NUMBER:-1000}
SERVER_PID=${SERVER_PID:-}
LOCAL_IP=${LOCAL_IP:-127.0.0.1}
IFACE=${IFACE:-lo}
KEEP=${KEEP:-0}
SERVER_LOG=${SERVER_LOG:-warn}
MAKE_PROMPTS=
root=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$root/bench/capacity-results.md}
INFO_AT=10 # seconds after answer; fixed in bench/ivr_uac.xml
args=("$@")

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) STEPS=$2; shift 2 ;;
    --ramp) RAMP=$2; shift 2 ;;
    --hold) HOLD=$2; shift 2 ;;
    --capture) CAPTURE=$2; shift 2 ;;
    --server-cpu) SERVER_CPU=$2; shift 2 ;;
    --client-cpu) CLIENT_CPU=$2; shift 2 ;;
    --media-workers) MEDIA_WORKERS=$2; shift 2 ;;
    --external) EXTERNAL=1; shift ;;
    --target) TARGET=$2; shift 2 ;;
    --number) NUMBER=$2; shift 2 ;;
    --server-pid) SERVER_PID=$2; shift 2 ;;
    --local-ip) LOCAL_IP=$2; shift 2 ;;
    --iface) IFACE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --make-prompts) MAKE_PROMPTS=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option $1" >&2; usage 2 >&2 ;;
  esac
done
for v in RAMP HOLD CAPTURE; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "--${v,,} takes whole seconds" >&2; exit 2; }
done
[[ $STEPS =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "--steps takes N,N,..." >&2; exit 2; }
if [ "$RAMP" -lt 1 ] || [ "$HOLD" -lt 6 ] || [ $((RAMP + HOLD)) -le $((INFO_AT + 2)) ]; then
  echo "need --ramp >= 1, --hold >= 6 and ramp + hold > $((INFO_AT + 2)) s (the digit goes at ${INFO_AT} s)" >&2; exit 2
fi

# Tools; installed when root and missing (Debian packages).
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
if [ -z "$MAKE_PROMPTS" ]; then
  command -v sipp >/dev/null || need+=(sip-tester)
  command -v tcpdump >/dev/null || need+=(tcpdump)
  command -v curl >/dev/null || need+=(curl)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "missing: ${need[*]} (sudo apt-get install ${need[*]})" >&2; exit 2
  fi
fi

# The prompts: synthesised here, never committed. menu.wav and second.wav are 10 s, 8 kHz mono
# 16-bit (Asterisk can play them as they are); caller.ul is raw mu-law for SIPp's rtp_stream.
make_prompts() {
  local dir=$1
  mkdir -p "$dir"
  espeak-ng -v en-us -s 150 -w "$dir/menu.raw.wav" \
    "Thank you for calling the voxflow benchmark line. For sales, press one. \
For support, press two. Or stay on the line."
  espeak-ng -v en-us -s 150 -w "$dir/second.raw.wav" \
    "All of our agents are busy right now. Your call is important to us. \
Please stay on the line for the next free agent."
  espeak-ng -v en-us -s 160 -w "$dir/caller.raw.wav" \
    "Hello, I am calling about my account. One two three four five six seven eight nine."
  # Speech padded with silence to exactly 10 s.
  for p in menu second; do
    sox -V1 "$dir/$p.raw.wav" -r 8000 -c 1 -b 16 -e signed-integer "$dir/$p.wav" pad 0.2 10 trim 0 10
  done
  sox "$dir/caller.raw.wav" -r 8000 -c 1 -t ul "$dir/caller.ul"
  rm -f "$dir"/*.raw.wav
}
if [ -n "$MAKE_PROMPTS" ]; then
  make_prompts "$MAKE_PROMPTS"
  ls -l "$MAKE_PROMPTS"
  exit 0
fi

bin="${VOXFLOW_BIN:-$root/target/release/voxflow}"
if [ "$EXTERNAL" = 1 ]; then
  [ -n "$TARGET" ] || { echo "--external needs --target HOST:PORT" >&2; exit 2; }
  [ -z "$SERVER_PID" ] || [ -r "/proc/$SERVER_PID/stat" ] || { echo "no process $SERVER_PID" >&2; exit 2; }
else
  [ -x "$bin" ] || { echo "build first: cargo build --release -p voxflow" >&2; exit 2; }
fi

# A private network namespace when we can: fixed ports, and only our packets on lo.
if [ "$(id -u)" -eq 0 ] && [ "$EXTERNAL" != 1 ] && [ -z "${VOXFLOW_BENCH_NS:-}" ]; then
  exec env VOXFLOW_BENCH_NS=1 unshare -n -- bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "${args[@]}"
fi
if [ -n "${VOXFLOW_BENCH_NS:-}" ]; then
  HTTP=18080; SIP=5060; SIPP=5070; MEDIA=6000; RTP_LOW=20000; RTP_HIGH=40000
else
  HTTP=62280; SIP=62260; SIPP=62270; MEDIA=62290; RTP_LOW=40000; RTP_HIGH=60000
fi
[ "$EXTERNAL" = 1 ] || TARGET="127.0.0.1:$SIP"

work=$(mktemp -d -t voxflow-capacity.XXXXXX)
server_pid= sipp_pid= dump_pid=
stop_pid() { # PID [seconds]: SIGTERM, then SIGKILL after the grace period
  local pid=$1 grace=${2:-10} i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pid "$dump_pid" 2; stop_pid "$sipp_pid" 5; stop_pid "$server_pid" 10
  if [ "$KEEP" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ulimit -n 65536 2>/dev/null || true
make_prompts "$work/media"
cp "$root/bench/ivr_uac.xml" "$work/media/"

now_ms() { date +%s%3N; }
sleep_until() { # (in the background, so that a signal is handled at once)
  local d=$(( $1 - $(now_ms) ))
  [ "$d" -le 0 ] || { sleep "$((d / 1000)).$(printf %03d $((d % 1000)))" & wait $!; }
}
ticks() { # utime+stime of PID in clock ticks (fields 14 and 15, counted after the comm)
  [ -n "$1" ] && [ -r "/proc/$1/stat" ] || { echo ""; return; }
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
rss_kib() { [ -n "$1" ] && awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo ""; }
current_calls() { # SIPp's CurrentCall from the last line of its statistics file
  [ -s "$work/stat.csv" ] || { echo ""; return; }
  awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "CurrentCall") c = i } END { print $c }' "$work/stat.csv"
}
rtp_rx_drops() { # receive-buffer drops summed over UDP sockets bound in the server's RTP range
  python3 - "$RTP_LOW" "$RTP_HIGH" <<'PY'
import sys
lo, hi = int(sys.argv[1]), int(sys.argv[2])
drops = 0
for table in ("/proc/net/udp", "/proc/net/udp6"):
    try:
        lines = open(table).read().splitlines()[1:]
    except OSError:
        continue
    drops += sum(int(f[-1]) for f in (l.split() for l in lines) if lo <= int(f[1].split(":")[1], 16) <= hi)
print(drops)
PY
}

start_server() { # $1: step; sets server_pid and SERVER_PID
  local data="$work/data-$1" i
  taskset -c "$SERVER_CPU" "$bin" serve --http-listen "127.0.0.1:$HTTP" --sip-listen "127.0.0.1:$SIP" \
    --rtp-ports "$RTP_LOW-$RTP_HIGH" --data-dir "$data" --bootstrap-token bench \
    --media-workers "$MEDIA_WORKERS" --max-flow-executions 1000 --log "$SERVER_LOG" --allow-private-urls \
    --media-dir "$work/media" \
    > "$work/server-$1.out" 2> "$work/server-$1.err" &
  server_pid=$!
  SERVER_PID=$server_pid
  for ((i = 0; i < 300; i++)); do
    grep -q "voxflow ready" "$work/server-$1.out" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q "voxflow ready" "$work/server-$1.out"; then
    echo "voxflow did not start" >&2; cat "$work/server-$1.err" >&2; exit 1
  fi
  # The echo lasts longer than any call.
  local echo_ms=$(( (2 * RAMP + HOLD + 60) * 1000 ))
  local flow
  flow=$(curl -sf -H "Authorization: Bearer bench" -H "Content-Type: application/json" \
    "http://127.0.0.1:$HTTP/v1.0/flows" -d @- <<JSON | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'
{"name": "capacity ivr", "actions": [
  {"type": "answer"},
  {"type": "play", "option": {"stream_urls": ["$work/media/menu.wav"]}},
  {"type": "digits_receive", "option": {"duration": 60000, "length": 1}},
  {"type": "play", "option": {"stream_urls": ["$work/media/second.wav"]}},
  {"type": "echo", "option": {"duration": $echo_ms}},
  {"type": "hangup"}
]}
JSON
  )
  curl -sf -H "Authorization: Bearer bench" -H "Content-Type: application/json" \
    -d "{\"number\": \"$NUMBER\", \"call_flow_id\": \"$flow\"}" "http://127.0.0.1:$HTTP/v1.0/numbers" > /dev/null
}

if [ "$EXTERNAL" = 1 ]; then
  server_name="external $TARGET"
else
  server_name="voxflow $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?')"
fi
clk=$(getconf CLK_TCK)
{
  echo
  echo "\`bench/capacity.sh ${args[*]}\` on $(date -u +%Y-%m-%dT%H:%MZ), $server_name, $(nproc) cores," \
    "server on CPU $SERVER_CPU, SIPp + tcpdump on CPU $CLIENT_CPU, ramp ${RAMP} s, all calls up for ${HOLD} s"
  echo
  echo "| calls | successful | failed | retrans | concurrent in window | server CPU | RSS idle → loaded | RSS/call | server RTP streams | \\|Δt−20 ms\\| p50 / p99 / max | loss | server RTP rx drops | caller RTP streams (p99) | capture drops | SIPp CPU |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
} | tee -a "$OUT"

IFS=, read -r -a steps <<< "$STEPS"
for n in "${steps[@]}"; do
  echo "--- step: $n calls over ${RAMP} s, up together for ${HOLD} s ($TARGET, number $NUMBER)" >&2
  rm -f "$work/stat.csv" "$work/cap.pcap"
  [ "$EXTERNAL" = 1 ] || start_server "$n"
  sleep 1
  idle_rss=$(rss_kib "$SERVER_PID")

  pause_ms=$(( (RAMP + HOLD - INFO_AT) * 1000 ))
  t0=$(now_ms)
  (cd "$work/media" && exec taskset -c "$CLIENT_CPU" sipp -sf ivr_uac.xml "$TARGET" \
    -i "$LOCAL_IP" -p "$SIPP" -mi "$LOCAL_IP" -mp "$MEDIA" -s "$NUMBER" \
    -r "$n" -rp "$((RAMP * 1000))" -m "$n" -l "$n" -d "$pause_ms" -rtp_buffsize 1048576 \
    -nostdin -timeout "$((2 * RAMP + HOLD + 60))s" -trace_stat -stf "$work/stat.csv" -fd 1 \
    -trace_err -error_file "$work/sipp-errors-$n.log" > "$work/sipp-$n.log" 2>&1) &
  sipp_pid=$!

  # The full-load window [w0, w1]: CPU from w0, then the capture in its last part (the capture
  # taps the server's packets as they are sent, which would be charged to its CPU time).
  w0=$((t0 + (RAMP + 2) * 1000)); w1=$((t0 + (RAMP + HOLD - 1) * 1000))
  cap=$(( (w1 - w0) / 2000 )); cap=$(( CAPTURE < cap ? CAPTURE : cap ))
  sleep_until "$w0"
  s_t0=$(ticks "$SERVER_PID"); c_t0=$(ticks "$sipp_pid"); wall0=$(now_ms); calls0=$(current_calls)
  sleep_until $((w1 - cap * 1000 - 500))
  s_t1=$(ticks "$SERVER_PID"); c_t1=$(ticks "$sipp_pid"); wall1=$(now_ms)
  taskset -c "$CLIENT_CPU" timeout -s INT "$cap" tcpdump -i "$IFACE" -n -s 64 -B 32768 -Z root \
    -w "$work/cap.pcap" "udp and port $MEDIA" 2> "$work/tcpdump-$n.err" &
  dump_pid=$!
  sleep_until "$w1"
  calls1=$(current_calls); load_rss=$(rss_kib "$SERVER_PID")
  rx_drops=$([ "$EXTERNAL" = 1 ] && echo "" || rtp_rx_drops)
  wait "$dump_pid" 2>/dev/null || true; dump_pid=
  set +e; wait "$sipp_pid"; sipp_status=$?; set -e; sipp_pid=
  if [ "$EXTERNAL" != 1 ]; then stop_pid "$server_pid" 15; server_pid=; fi

  rtp_json=$(python3 "$root/bench/rtp_stats.py" "$work/cap.pcap" --caller-port "$MEDIA" --json 2>&1) \
    || rtp_json="{\"error\": $(printf %s "$rtp_json" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}"
  cap_drops=$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$work/tcpdump-$n.err")
  N=$n CLK=$clk STATUS=$sipp_status S_T0=$s_t0 S_T1=$s_t1 C_T0=$c_t0 C_T1=$c_t1 WALL0=$wall0 \
  WALL1=$wall1 CALLS0=$calls0 CALLS1=$calls1 IDLE=$idle_rss LOAD=$load_rss RX_DROPS=$rx_drops \
  CAP_DROPS=$cap_drops RTP="$rtp_json" python3 - "$work/stat.csv" <<'PY' | tee -a "$OUT"
import csv, json, os, sys
e = os.environ
try:
    rows = list(csv.reader(open(sys.argv[1]), delimiter=";"))
    head, last = rows[0], rows[-1]
    col = lambda name, row=last: row[head.index(name)]
    attempted, ok, failed = (int(col(c)) for c in ("OutgoingCall(C)", "SuccessfulCall(C)", "FailedCall(C)"))
    retrans = int(col("Retransmissions(C)"))
except (OSError, IndexError, ValueError):
    attempted = ok = failed = retrans = None
num = lambda k: float(e[k]) if e.get(k, "") not in ("", None) else None
n = int(e["N"])
wall = (num("WALL1") - num("WALL0")) / 1000.0

def cpu(a, b):
    if num(a) is None or num(b) is None:
        return "n/a"
    return f"{100.0 * (num(b) - num(a)) / num('CLK') / wall:.0f} %"

idle, load = num("IDLE"), num("LOAD")
rss = f"{idle / 1024:.0f} → {load / 1024:.0f} MiB" if idle and load else "n/a"
per_call = f"{(load - idle) / n:.0f} KiB" if idle and load else "n/a"
r = json.loads(e["RTP"])
if "error" in r:
    sent = jitter = loss = caller = "n/a"
else:
    s, c = r["server->caller"], r["caller->server"]
    sent = f"{s['streams']} ({s['packets_per_s']:.0f} pkt/s)" if s["streams"] else "0"
    jitter = (f"{s['dev_p50_ms']:.2f} / {s['dev_p99_ms']:.2f} / {s['dev_max_ms']:.1f} ms"
              if s["intervals"] else "n/a")
    loss = f"{s['lost']} ({s['loss_pct']:.3f} %)" if s["loss_pct"] is not None else "n/a"
    caller = (f"{c['streams']} ({c['dev_p99_ms']:.2f} ms)" if c["intervals"] else str(c["streams"]))
calls = f"{e['CALLS0'] or '?'} / {e['CALLS1'] or '?'}"
fmt = lambda v: "?" if v is None else f"{v:,}"
status = "" if e["STATUS"] == "0" else f" (sipp exit {e['STATUS']})"
print(f"| {n:,} | {fmt(ok)} of {fmt(attempted)}{status} | {fmt(failed)} | {fmt(retrans)} | {calls} "
      f"| {cpu('S_T0', 'S_T1')} | {rss} | {per_call} | {sent} | {jitter} | {loss} "
      f"| {e['RX_DROPS'] or 'n/a'} | {caller} | {e['CAP_DROPS'] or '?'} | {cpu('C_T0', 'C_T1')} |")
PY
  if [ "$sipp_status" != 0 ] && [ -s "$work/sipp-errors-$n.log" ]; then
    echo "SIPp errors (start of $work/sipp-errors-$n.log; --keep keeps it):" >&2
    head -c 600 "$work/sipp-errors-$n.log" >&2; echo >&2
  fi
done
echo "appended to $OUT" >&2
