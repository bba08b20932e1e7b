#!/usr/bin/env bash
# Rules vs hand-written: the SMA-cross rule program (strategies/rules/examples/sma-cross.rules)
# against sma-cross mode=flip sizing=equity quantity=1, both sandboxed, on the 1,000,000-bar
# bench file, in one sitting: the two alternate run by run, so machine noise hits both alike.
# Prints the median (and best) of the backtest's own `elapsed_ms` (CSV streaming, engine,
# strategy, metrics) and of the wall time of the whole command, and the ratio of medians. Every
# run must give the same trades_sha256 (the programs trade identically).
#
#   cargo build --release --workspace --bins && tests/benches/rules.sh        # RUNS=7 for more
#
# QTM names the binary (default: the release build in the cargo target dir), QTM_DATA_DIR the
# peer data folder (default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/../.."
target="${CARGO_TARGET_DIR:-target}"
qtm="${QTM:-$target/release/qtm}"
data="${QTM_DATA_DIR:-../shared/data}/bench_1m_1000000.csv"
runs="${RUNS:-5}"
[ -x "$qtm" ] || { echo "no $qtm: cargo build --release --workspace --bins" >&2; exit 2; }
[ -f "$data" ] || { echo "no $data: set QTM_DATA_DIR to the peer data folder" >&2; exit 2; }

sma=$("$qtm" strategy build strategies/sma-cross --target-dir "$target/guests-bench" | tail -n 1)
rules=strategies/rules/examples/sma-cross.rules
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT

# One run: prints "elapsed_ms wall_ms trades_sha256".
one() {
    local t0 t1 json
    t0=$(date +%s%N)
    json=$("$qtm" backtest "$@" --data "$data" --json --cache-dir "$cache")
    t1=$(date +%s%N)
    local ms sha
    ms=$(sed -n 's/.*"elapsed_ms": \([0-9.]*\).*/\1/p' <<<"$json")
    sha=$(sed -n 's/.*"trades_sha256": "\([0-9a-f]*\)".*/\1/p' <<<"$json")
    echo "$ms $(( (t1 - t0) / 1000000 )) $sha"
}

hand=(--strategy "$sma" --param mode=flip --param sizing=equity --param quantity=1)
prog=(--rules "$rules")
# Warm-up: the page cache, and each component compiled once into the cache.
one "${hand[@]}" >/dev/null
one "${prog[@]}" >/dev/null

declare -a he hw re rw
want=""
for i in $(seq "$runs"); do
    read -r ms wall sha < <(one "${hand[@]}")
    he+=("$ms"); hw+=("$wall")
    want=${want:-$sha}
    [ "$sha" = "$want" ] || { echo "hand-written run $i: trades $sha != $want" >&2; exit 1; }
    read -r ms wall sha < <(one "${prog[@]}")
    re+=("$ms"); rw+=("$wall")
    [ "$sha" = "$want" ] || { echo "rules run $i: trades $sha != $want" >&2; exit 1; }
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
best() { printf '%s\n' "$@" | sort -g | head -n 1; }
mh=$(median "${he[@]}"); mr=$(median "${re[@]}")
wh=$(median "${hw[@]}"); wr=$(median "${rw[@]}")
echo "runs: $runs each, alternating; trades_sha256 $want (identical in every run)"
printf '%-34s %12s %10s %12s\n' "" "median ms" "best ms" "median wall"
printf '%-34s %12.0f %10.0f %12s\n' "sma-cross (hand-written, wasm)" "$mh" "$(best "${he[@]}")" "$wh"
printf '%-34s %12.0f %10.0f %12s\n' "sma-cross.rules (rules guest)" "$mr" "$(best "${re[@]}")" "$wr"
awk -v a="$mr" -v b="$mh" -v c="$wr" -v d="$wh" \
    'BEGIN { printf "ratio rules / hand-written: %.2fx (backtest), %.2fx (wall)\n", a / b, c / d }'
