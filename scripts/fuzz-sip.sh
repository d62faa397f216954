#!/usr/bin/env bash
# Fuzzes the SIP parser: the cargo-fuzz target `parse_message` of crates/sip/fuzz, for
# ${FUZZ_SECONDS:-60} seconds, starting from the committed seed corpus
# (crates/sip/fuzz/corpus/parse_message). Exits non-zero on a crash; the input is then in
# crates/sip/fuzz/artifacts/parse_message/ (replay it with
# `cargo fuzz run -s none parse_message <file>` in crates/sip/fuzz).
#
# Runs on the stable toolchain: without a sanitizer (FUZZ_SANITIZER=none, the default; the
# sip crate forbids unsafe code, so the checks that matter are panics and assertions) cargo-fuzz
# needs no nightly flag. FUZZ_SANITIZER=address works too, with RUSTC_BOOTSTRAP=1 set here.
# New inputs found go to crates/sip/fuzz/target/corpus/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/../crates/sip/fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
sanitizer="${FUZZ_SANITIZER:-none}"
if [ "$sanitizer" != none ]; then
  export RUSTC_BOOTSTRAP=1
fi
mkdir -p target/corpus/parse_message
exec cargo fuzz run --sanitizer "$sanitizer" parse_message \
  target/corpus/parse_message corpus/parse_message -- \
  -max_total_time="${FUZZ_SECONDS:-60}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
