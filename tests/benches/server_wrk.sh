#!/usr/bin/env bash
# REST throughput and latency with wrk (Debian package `wrk`) against a release build:
# GET /api/strategies and GET /api/market/assets with a bearer token, on this machine.
#   tests/benches/server_wrk.sh            # QTM_WRK_SECS=10 QTM_WRK_CONN=64 QTM_WRK_THREADS=1
#   QTM_WRK_DATABASE_URL=postgres tests/benches/server_wrk.sh   # the same on PostgreSQL
# QTM_WRK_DATABASE_URL: unset, a SQLite file; `postgres`, a throwaway PostgreSQL server started
# from Debian's binaries in the temporary directory (default settings: every commit synced);
# any other value is the database URL to use (it should be empty).
# The server and wrk share the machine's cores, so the numbers are a floor for a separate client.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data}
SECS=${QTM_WRK_SECS:-10}
CONN=${QTM_WRK_CONN:-64}
THREADS=${QTM_WRK_THREADS:-1}
PORT=${QTM_WRK_PORT:-18080}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build --release --workspace --bins
Q="${CARGO_TARGET_DIR:-$PWD/target}/release/qtm"
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
url="sqlite://$tmp/qtm.db"
case "${QTM_WRK_DATABASE_URL:-}" in
  "") ;;
  postgres)
    bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
    pgport=$((PORT + 1))
    # initdb refuses to run as root: then the server runs as the `postgres` system user.
    as=()
    if [ "$(id -u)" -eq 0 ]; then as=(runuser -u postgres --); chown postgres: "$tmp"; fi
    "${as[@]}" "$bin/initdb" -D "$tmp/pg" -U postgres --auth=trust -E UTF8 --no-instructions > /dev/null
    "${as[@]}" "$bin/pg_ctl" -D "$tmp/pg" -l "$tmp/pg/server.log" -w \
      -o "-p $pgport -k $tmp -c listen_addresses=127.0.0.1 -c max_connections=200" start > /dev/null
    cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; "${as[@]}" "$bin/pg_ctl" -D "$tmp/pg" -m fast stop > /dev/null; rm -rf "$tmp"; }
    "$bin/psql" -h 127.0.0.1 -p "$pgport" -U postgres -qc "CREATE DATABASE qtm"
    url="postgres://postgres@127.0.0.1:$pgport/qtm"
    ;;
  *) url=$QTM_WRK_DATABASE_URL ;;
esac
echo "store: ${url%%:*}"
export QTM_DATABASE_URL="$url" QTM_ADMIN_USER=admin QTM_ADMIN_PASSWORD=bench-password-1 \
  QTM_RATE_LIMIT_PER_SEC=0 QTM_LISTEN=127.0.0.1:$PORT QTM_LOG=warn
for f in goog_1d nvda_1d orcl_1d yhoo_1d eurusd_1h btcusd_1mo spy_1m_2011; do
  "$Q" data import "$DATA/$f.csv" > /dev/null
done
"$Q" serve --data-dir "$DATA" > "$tmp/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$PORT"
token=$(curl -sf -X POST "$base/api/auth/login" -H 'content-type: application/json' \
  -d '{"username":"admin","password":"bench-password-1"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
for s in sma-cross rsi-reversion donchian-breakout; do
  w=$("$Q" strategy build "strategies/$s" --target-dir strategies/target | tail -n 1)
  curl -sf -X POST "$base/api/strategies" -H "Authorization: Bearer $token" -F "file=@$w" -F "name=$s" > /dev/null
done
echo "strategies: $(curl -sf "$base/api/strategies" -H "Authorization: Bearer $token" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')," \
  "assets: $(curl -sf "$base/api/market/assets" -H "Authorization: Bearer $token" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d if isinstance(d, list) else d.get("assets", [])))')"
for path in /api/strategies /api/market/assets; do
  echo "== GET $path  (wrk -t$THREADS -c$CONN -d${SECS}s)"
  wrk -t"$THREADS" -c"$CONN" -d"${SECS}s" --latency -H "Authorization: Bearer $token" "$base$path" \
    | grep -E "Requests/sec|Latency|50%|90%|99%|requests in|Non-2xx|Socket errors"
done
