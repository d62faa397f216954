#!/usr/bin/env bash
# The one test command: installs what the tests need (when missing), then runs every test:
# formatting, lints, the core-crate dependency rule, unit/simulated-time tests, and the
# end-to-end tests of the release binary against real SIP clients on loopback.
# Usage: scripts/test.sh            (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
log_dir="$root/target/test-logs"
mkdir -p "$log_dir"

step() { printf '\n==> %s\n' "$*"; }

step "installing test dependencies (only what is missing)"
bash scripts/install-test-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "core crates depend on no async runtime, HTTP or database crate"
bash scripts/check-core-deps.sh

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --release --locked -- -D warnings

step "a throwaway PostgreSQL server (the store conformance suite runs on SQLite and on it)"
pg_env=$(bash scripts/pg-test.sh start)  # an assignment: a failed start stops the run
eval "$pg_env"
trap 'bash scripts/pg-test.sh stop "$VOXFLOW_TEST_POSTGRES_DIR" >/dev/null 2>&1 || true' EXIT

step "unit and simulated-time tests"
# Release profile: the e2e step below reuses the same build of every dependency.
cargo test --workspace --release --locked 2>&1 | tee "$log_dir/cargo-test.log"

step "fuzzing the SIP parser (bounded: \${FUZZ_SECONDS:-30} s; crashes fail the run)"
FUZZ_SECONDS=${FUZZ_SECONDS:-30} bash scripts/fuzz-sip.sh > "$log_dir/fuzz.log" 2>&1 || {
  tail -n 40 "$log_dir/fuzz.log"; echo "fuzzing found a crash: see $log_dir/fuzz.log" >&2; exit 1; }
grep -E '^Done [0-9]+ runs|stat::number_of_executed_units' "$log_dir/fuzz.log" | tail -n 2 || true

step "building the release binary"
cargo build --release --locked -p voxflow

# Each suite below prints "N passed, M failed" as its last line; a suite that exits non-zero
# without such a line counts as one failure.
suite_passed=0
suite_failed=0
suite_status=0
run_suite() { # name, command...
  local name=$1; shift
  set +e
  "$@" 2>&1 | tee "$log_dir/$name.log"
  local status=${PIPESTATUS[0]}
  set -e
  local line passed failed
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log_dir/$name.log" | tail -n 1 || true)
  passed=$(echo "${line:-0 passed, 0 failed}" | awk '{print $1+0}')
  failed=$(echo "${line:-0 passed, 0 failed}" | awk '{print $3+0}')
  if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
  suite_passed=$((suite_passed + passed))
  suite_failed=$((suite_failed + failed))
  [ "$status" -eq 0 ] || suite_status=1
}

step "end-to-end tests (release binary, real SIP clients, loopback)"
run_suite e2e "$root/.venv/bin/python" tests/e2e/run_e2e.py --binary "$root/target/release/voxflow"

step "SIP conformance: the siphon-sipp scenarios against the release binary"
run_suite conformance "$root/.venv/bin/python" tests/conformance/run_siphon.py --binary "$root/target/release/voxflow"

unit_passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log_dir/cargo-test.log" | awk '{s+=$4} END {print s+0}')
unit_failed=$(grep -Eo '[0-9]+ failed;' "$log_dir/cargo-test.log" | awk '{s+=$1} END {print s+0}')
echo
echo "total: $((unit_passed + suite_passed)) passed, $((unit_failed + suite_failed)) failed"
[ "$suite_status" -eq 0 ] && [ "$unit_failed" -eq 0 ]
