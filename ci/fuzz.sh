#!/usr/bin/env bash
# Runs every fuzz target (glass-fuzz list) for N inputs each, default 10
# million: the figure for a reliability note. Not part of CI, which runs
# 10,000 inputs per target inside `cargo test` (fuzz/src/lib.rs).
#
#   ci/fuzz.sh                 # 10 million inputs per target
#   ci/fuzz.sh 1000000 udp rtmp
#   SEED=7 ci/fuzz.sh
#
# Built in the `fuzz` profile: optimised, with overflow checks and debug
# assertions on. Crashing inputs land in target/fuzz-crashes/, the summary
# in target/fuzz-report.json; the exit code is 1 if any target panicked.
set -euo pipefail
cd "$(dirname "$0")/.."
inputs=${1:-10000000}
shift || true
cargo build --profile fuzz -p glass-fuzz --locked
exec target/fuzz/glass-fuzz run "$@" \
  --inputs "$inputs" \
  --seed "${SEED:-1}" \
  --keep-going \
  --crashes target/fuzz-crashes \
  --json target/fuzz-report.json
