#!/usr/bin/env bash
# Evolution throughput (docs/BENCHMARKS.md, "Evolution"): `qtm evolve` evaluations per second
# for sma-cross's parameters on goog_1d.csv and on 100,000 minute bars, for `--gp` rule programs,
# and backtesting.py 0.6.6's `Backtest.optimize` over an SMA-cross grid on the same training bars
# in the same sitting (the ratio). Every evaluation of qtm is a sandboxed backtest of the
# training period (the first 70 % of the bars); backtesting.py is given the same rows.
#
#   cargo build --release -p qtm-runtime && tests/benches/evolve.sh
#
# PY names a Python with backtesting==0.6.6 (python3 -m venv V && V/bin/pip install
# backtesting==0.6.6 pandas numpy bokeh); without it the peer is skipped. WORKERS (default 2),
# QTM (the binary), QTM_DATA_DIR (the peer data, default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/../.."
target="${CARGO_TARGET_DIR:-target}"
qtm="${QTM:-$target/release/qtm}"
data="${QTM_DATA_DIR:-../shared/data}"
workers="${WORKERS:-2}"
[ -x "$qtm" ] || { echo "no $qtm: cargo build --release -p qtm-runtime" >&2; exit 2; }
[ -f "$data/goog_1d.csv" ] || { echo "no $data/goog_1d.csv: set QTM_DATA_DIR" >&2; exit 2; }
sma=$("$qtm" strategy build strategies/sma-cross --target-dir "$target/guests-bench" | tail -n 1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -n 100001 "$data/bench_1m_1000000.csv" > "$tmp/min_100k.csv"

field() { sed -n "s/^  \"$1\": \([0-9.e+-]*\).*/\1/p" "$tmp/$2"; }
evolve() { # name, args…
    local name=$1; shift
    local t0 t1
    t0=$(date +%s%N)
    "$qtm" evolve "$@" --workers "$workers" --json > "$tmp/$name.json"
    t1=$(date +%s%N)
    printf '%-34s %8s evaluations %10.1f /s (search)  wall %6.1f s\n' "$name" \
        "$(field evaluations "$name.json")" "$(field evaluations_per_sec "$name.json")" \
        "$(echo "($t1 - $t0) / 1000000000" | bc -l)"
}
sma_args=(--strategy "$sma" --param quantity=1 --param sizing=equity --param mode=long_only
    --gene fast=2..60 --gene slow=10..250)
evolve "sma-cross goog_1d (1,503 bars)" "${sma_args[@]}" --data "$data/goog_1d.csv" \
    --population 200 --generations 25 --seed 1
evolve "sma-cross 100k minute (70,000 bars)" "${sma_args[@]}" --data "$tmp/min_100k.csv" \
    --symbol BENCH --population 40 --generations 5 --seed 1
evolve "--gp goog_1d (1,503 bars)" --gp --data "$data/goog_1d.csv" \
    --population 100 --generations 10 --seed 1

if [ -n "${PY:-}" ]; then
    rows=$(( ($(wc -l < "$data/goog_1d.csv") - 1) * 7 / 10 ))
    "$PY" tests/peers/backtesting_py_optimize.py "$data/goog_1d.csv" "$rows" > "$tmp/bt.json"
    ours=$(field evaluations_per_sec "sma-cross goog_1d (1,503 bars).json")
    theirs=$(sed -n 's/.*"evaluations_per_sec": \([0-9.e+-]*\).*/\1/p' "$tmp/bt.json")
    printf '%-34s %8s evaluations %10.1f /s (optimize, %s rows)\n' "backtesting.py optimize" \
        "$(sed -n 's/.*"evaluations": \([0-9]*\).*/\1/p' "$tmp/bt.json")" "$theirs" "$rows"
    printf 'ratio qtm / backtesting.py: %.1f×\n' "$(echo "$ours / $theirs" | bc -l)"
fi
