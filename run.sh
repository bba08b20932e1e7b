#!/usr/bin/env bash
# Sets up a fresh machine and runs the demo: builds qtm and the example strategies, inspects
# sma-cross, then backtests it on the bundled SPY minute data and writes an HTML report.
# With arguments, runs `qtm <args>` from the release build instead.
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
cargo build --release -p qtm-runtime
qtm=target/release/qtm
if [ $# -gt 0 ]; then exec "$qtm" "$@"; fi
mkdir -p out
for s in sma-cross rsi-reversion donchian-breakout; do
  "$qtm" strategy build "strategies/$s" --target-dir strategies/target | tail -n 1 > "out/$s.path"
done
sma=$(cat out/sma-cross.path)
"$qtm" strategy inspect "$sma"
echo
"$qtm" backtest --strategy "$sma" --data data/spy_1m_2011.csv \
  --param fast=10 --param slow=30 --param mode=flip --param sizing=equity --param quantity=1 \
  --cash 10000 --commission 0.0005 --cache-dir out/cache \
  --trades-out out/trades.csv --equity-out out/equity.csv --report out/report.html
echo
echo "report: out/report.html   trades: out/trades.csv   equity: out/equity.csv"
