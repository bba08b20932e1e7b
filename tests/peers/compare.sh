#!/usr/bin/env bash
# Compares `qtm backtest` with backtesting.py 0.6.6 on the engine issue's sma-cross
# configurations (goog_1d and eurusd_1h; flip and long_only; commission 0 and 0.001; all-in
# sizing; next-open fills, and --fill close against trade_on_close=True). Not part of CI: it needs PyPI.
#   python3 -m venv /tmp/peers && /tmp/peers/bin/pip install backtesting==0.6.6 pandas numpy bokeh
#   cargo build --release -p qtm-runtime && tests/peers/compare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-/tmp/peers/bin/python}
Q=target/release/qtm
DATA=${DATA:-../shared/data}
W=$($Q strategy build strategies/sma-cross --target-dir strategies/target | tail -n 1)
tmp=$(mktemp -d)
for fill in next-open close; do for f in goog_1d eurusd_1h; do for mode in flip long_only; do for c in 0 0.001; do
  $Q backtest --strategy "$W" --data "$DATA/$f.csv" --param fast=10 --param slow=30 --param mode=$mode \
    --param sizing=equity --param quantity=1 --cash 10000 --commission $c --fill $fill --json --trades-out "$tmp/q.csv" > "$tmp/q.json"
  "$PY" tests/peers/backtesting_py_sma.py "$DATA/$f.csv" $mode $c $fill > "$tmp/b.json"
  "$PY" - "$f $mode $c $fill" "$tmp" <<'PY'
import json, csv, sys
d = sys.argv[2]
q = json.load(open(f"{d}/q.json")); b = json.load(open(f"{d}/b.json"))
rows = list(csv.DictReader(open(f"{d}/q.csv")))
qt = [[int(r["entry_ts"]), int(r["exit_ts"]) if r["exit_ts"] else None, float(r["entry_price"]),
       float(r["exit_price"]) if r["exit_price"] else None, int(float(r["quantity"])), float(r["pnl"])] for r in rows]
closed_q = [t for t in qt if t[1] is not None]; closed_b = [t for t in b["trades"] if t[1] is not None]
same = len(closed_q) == len(closed_b) and all(
    a[:5] == c[:5] and abs(a[5] - c[5]) <= 1e-6 * max(1, abs(c[5])) for a, c in zip(closed_q, closed_b))
rel = abs(q["final_equity"] - b["equity"]) / b["equity"]
print(f"{sys.argv[1]:<24} closed trades qtm={len(closed_q)} backtesting.py={len(closed_b)} identical={same} "
      f"final equity qtm={q['final_equity']:.6f} backtesting.py={b['equity']:.6f} rel={rel:.1e}")
sys.exit(0 if same and rel < 1e-6 else 1)
PY
done; done; done; done
