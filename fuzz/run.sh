#!/usr/bin/env bash
# Runs every fuzz target for a fixed time and prints, per target, the executions, the time
# and the crashes found. Usage: fuzz/run.sh [SECONDS_PER_TARGET] (default 180).
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo fuzz passes nightly-only flags to
# rustc (`-Zsanitizer=address`); on a stable toolchain RUSTC_BOOTSTRAP=1 lets it do so.
# A crash leaves its input in fuzz/artifacts/TARGET/: turn it into a regression test next
# to the harness (pp-net/src/fuzzing.rs tests) once fixed. The corpus grows in
# fuzz/corpus/TARGET/ between runs (not committed).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-180}"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "cargo-fuzz is required: cargo install cargo-fuzz" >&2
  exit 1
fi
cargo fuzz build

failed=0
printf '%-16s %14s %10s %8s %s\n' target executions exec/s seconds crashes
for target in frame_decoder handshake task_arguments; do
  mkdir -p "corpus/$target" "artifacts/$target"
  log="$(mktemp)"
  before=$(find "artifacts/$target" -type f | wc -l)
  status=0
  # -rss_limit_mb: an input that makes the code allocate past this is a finding too.
  cargo fuzz run "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -max_len=65536 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
  rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
  after=$(find "artifacts/$target" -type f | wc -l)
  printf '%-16s %14s %10s %8s %s\n' "$target" "$runs" "$rate" "$seconds" "$((after - before))"
  if [ "$status" -ne 0 ]; then
    failed=1
    echo "--- $target failed (exit $status); the end of its log:" >&2
    tail -40 "$log" >&2
  fi
  rm -f "$log"
done
exit "$failed"
