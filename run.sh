#!/usr/bin/env bash
# Fresh machine, one command: adds the wasm target, builds qtm and the example strategies,
# imports the bundled SPY minute data into ./qtm.db, and starts the server (`qtm serve`,
# embedded SQLite, migrations applied on start). It prints where to log in; the first start
# creates the admin from QTM_ADMIN_USER / QTM_ADMIN_PASSWORD or prints a generated password.
#
#   ./run.sh           the server (QTM_LISTEN, QTM_DATABASE_URL, … as in docs/server.md);
#                      ./run.sh serve [qtm serve flags], e.g. --database-url postgres://user:pass@host/db
#   ./run.sh demo      the backtest demo: sma-cross on the bundled data → out/report.html
#   ./run.sh <args>    `qtm <args>` from the release build
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
# `--workspace --bins` (just the `qtm` binary) resolves features as `./test.sh` does, so the
# two share one build.
cargo build --release --workspace --bins
# Where cargo put it, also when CARGO_TARGET_DIR (or a config's target-dir) moves the build.
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
qtm="$target_dir/release/qtm"

build_strategies() {
  mkdir -p out
  for s in sma-cross rsi-reversion donchian-breakout; do
    "$qtm" strategy build "strategies/$s" --target-dir strategies/target | tail -n 1 > "out/$s.path"
  done
  echo "example strategies (upload with POST /api/strategies):"
  cat out/*.path
}

case "${1:-serve}" in
  serve)
    [ $# -gt 0 ] && shift
    # The bundled data goes into the database the server will use (`--database-url` as
    # given to `./run.sh serve`, else QTM_DATABASE_URL, else ./qtm.db).
    url="${QTM_DATABASE_URL:-sqlite://qtm.db}"
    prev=""
    for a in "$@"; do
      case "$a" in --database-url=*) url="${a#--database-url=}" ;; esac
      [ "$prev" = "--database-url" ] && url="$a"
      prev="$a"
    done
    build_strategies
    "$qtm" data import data/spy_1m_2011.csv --symbol SPY --asset-class index \
      --database-url "$url"
    exec "$qtm" serve --data-dir data "$@"
    ;;
  demo)
    build_strategies
    sma=$(cat out/sma-cross.path)
    "$qtm" strategy inspect "$sma"
    echo
    "$qtm" backtest --strategy "$sma" --data data/spy_1m_2011.csv \
      --param fast=60 --param slow=390 --param mode=long_only --param sizing=equity --param quantity=1 \
      --cash 10000 --commission 0.0001 \
      --trades-out out/trades.csv --equity-out out/equity.csv --report out/report.html
    echo
    echo "report: out/report.html   trades: out/trades.csv   equity: out/equity.csv"
    ;;
  *)
    exec "$qtm" "$@"
    ;;
esac
