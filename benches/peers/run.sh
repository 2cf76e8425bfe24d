#!/usr/bin/env bash
# pp side by side with its peers: rayon, the serial program, ppft (PP's maintained fork),
# Python's ProcessPoolExecutor, Dask distributed and Ray, on the same workloads in one run.
#
#   benches/peers/run.sh                       # full run: 5 runs per cell, about 13-16 min
#   PEERS_RUNS=1 PEERS_QUICK=1 benches/peers/run.sh   # a short check of the whole path
#
# It sets up what it needs by itself: a Python virtual environment (default
# $CARGO_TARGET_DIR/peers-venv, or target/peers-venv; PEERS_VENV to choose) with ppft,
# dask[distributed] and ray from PyPI, and our side in release (the `peers` bench and
# `ppserver`). A peer that cannot be installed or started is reported as skipped, with the
# reason. Every server listens on 127.0.0.1 only and is stopped at the end, also on error.
# Output: the Markdown table on stdout and in $OUT/table.md, every measurement in
# $OUT/results.jsonl, every process's log in $OUT/logs (OUT: target/peers by default).
# Knobs (environment): see BENCHMARKS.md, "Against the peers".
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET" in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
VENV=${PEERS_VENV:-$TARGET/peers-venv}
OUT=${PEERS_OUT:-$TARGET/peers}
PYTHON=${PEERS_PYTHON:-python3}
PIP_TIMEOUT=${PEERS_PIP_TIMEOUT:-1200}
TOTAL_TIMEOUT=${PEERS_TOTAL_TIMEOUT:-10800}

say() { printf '[peers %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

command -v "$PYTHON" >/dev/null || { say "needs $PYTHON (3.8 or later) to drive the run"; exit 2; }
command -v cargo >/dev/null || { say "needs cargo"; exit 2; }

rm -rf "$OUT"
mkdir -p "$OUT/logs"
FAILURES=$OUT/setup-failures.txt
: >"$FAILURES"

DRIVER_PID=
cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    if [ -n "$DRIVER_PID" ] && kill -0 "$DRIVER_PID" 2>/dev/null; then
        kill -TERM "$DRIVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$DRIVER_PID" 2>/dev/null || break; sleep 0.2; done
    fi
    # The servers the driver started (each leads its own process group).
    if [ -f "$OUT/server.pids" ]; then
        while read -r pid; do
            [ -n "$pid" ] || continue
            kill -TERM -- "-$pid" 2>/dev/null || true
        done <"$OUT/server.pids"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# 1. The Python peers, in a virtual environment.
VENV_PY=
if [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV" >"$OUT/logs/venv.log" 2>&1; then
    VENV_PY=$VENV/bin/python
    # package to install, module that shows it works
    for spec in "ppft:ppft" "dask[distributed]:dask.distributed" "ray:ray"; do
        package=${spec%%:*} module=${spec##*:}
        name=${package%%[*}
        if "$VENV_PY" -c "import $module" >/dev/null 2>&1; then
            continue
        fi
        say "installing $package into $VENV"
        if ! timeout "$PIP_TIMEOUT" "$VENV_PY" -m pip install --disable-pip-version-check -q \
            "$package" >"$OUT/logs/pip-$name.log" 2>&1; then
            reason=$(grep -v '^\s*$' "$OUT/logs/pip-$name.log" | tail -n 1 | cut -c1-200)
            echo "$name $reason" >>"$FAILURES"
            say "could not install $package: $reason"
        fi
    done
else
    say "could not create a virtual environment in $VENV (see $OUT/logs/venv.log): Python peers skipped"
fi

# 2. Our side, in release.
say "building the peers bench and ppserver (release)"
cargo build --release --bench peers --bin ppserver --message-format=json-render-diagnostics \
    >"$OUT/logs/cargo.json" 2>"$OUT/logs/cargo.log" || { tail -n 30 "$OUT/logs/cargo.log" >&2; exit 1; }
read -r PEERS_BIN PPSERVER_BIN < <("$PYTHON" - "$OUT/logs/cargo.json" <<'EOF'
import json, sys
exe = {}
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        exe[(m["target"]["name"], m["target"]["kind"][0])] = m["executable"]
print(exe[("peers", "bench")], exe[("ppserver", "bin")])
EOF
)

# 3. The run.
say "running (log of each process in $OUT/logs)"
timeout --signal=TERM "$TOTAL_TIMEOUT" "$PYTHON" -B "$ROOT/benches/peers/bench.py" \
    --peers-bin "$PEERS_BIN" --ppserver "$PPSERVER_BIN" --venv-python "$VENV_PY" \
    --setup-failures "$FAILURES" --out "$OUT" &
DRIVER_PID=$!
set +e
wait "$DRIVER_PID"
status=$?
set -e
DRIVER_PID=
say "table in $OUT/table.md, measurements in $OUT/results.jsonl"
exit "$status"
