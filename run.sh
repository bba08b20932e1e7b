#!/usr/bin/env bash
# Sets up a fresh machine and runs the demo: builds qtm and the example strategies, then
# inspects each strategy component. Extra arguments are passed to `qtm`.
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
cargo build --release -p qtm-runtime
qtm=target/release/qtm
if [ $# -gt 0 ]; then exec "$qtm" "$@"; fi
for s in sma-cross rsi-reversion donchian-breakout; do
  component=$("$qtm" strategy build "strategies/$s" --target-dir strategies/target | tail -n 1)
  "$qtm" strategy inspect "$component"
  echo
done
