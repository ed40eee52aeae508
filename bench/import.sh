#!/usr/bin/env bash
# bench/import.sh -- CSV import throughput and memory, end to end.
#
#   bench/import.sh [EVENTS] [CONTACTS]        (defaults: 20000000 events, 1000000 contacts)
#
# Generates seeded CSVs with `engage bench gen` (cached in bench/out/), imports the
# contacts, then the events, into a fresh data directory, and prints rows/s and the
# peak resident memory of each import. Results go in docs/benchmarks.md by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-20000000}
CONTACTS=${2:-1000000}
BIN=${ENGAGE_BIN:-build/engage}
OUT=bench/out/gen-$CONTACTS-$EVENTS
DATA=bench/out/data-import

command -v /usr/bin/time >/dev/null || { echo "bench: needs GNU time (apt-get install time)" >&2; exit 1; }
if [ ! -f "$OUT/events.csv" ]; then
    echo "generating $CONTACTS contacts, $EVENTS events into $OUT" >&2
    /usr/bin/time -f "  generated in %e s" "$BIN" bench gen --contacts "$CONTACTS" --events "$EVENTS" \
        --seed 42 --out "$OUT" --now 2026-11-01T00:00:00Z >/dev/null
fi
ls -l "$OUT"/*.csv | awk '{printf "  %s: %.1f MB\n", $9, $5 / 1e6}'
rm -rf "$DATA"
"$BIN" --data "$DATA" migrate >/dev/null
for kind in contacts events; do
    sync  # the previous phase's dirty pages are written before the clock starts
    /usr/bin/time -f "%M" -o "$DATA/rss" "$BIN" --data "$DATA" import "$kind" "$OUT/$kind.csv" \
        --json --no-progress >"$DATA/report.json"
    node -e '
        const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
        const rss = Number(require("fs").readFileSync(process.argv[2], "utf8").trim());
        console.log(`${process.argv[3].padEnd(8)} ${String(r.read).padStart(10)} rows  ` +
          `${r.seconds.toFixed(1).padStart(7)} s  ${Math.round(r.read / r.seconds).toLocaleString("en").padStart(9)} rows/s  ` +
          `peak RSS ${(rss / 1024).toFixed(0)} MB  (inserted ${r.inserted}, rejected ${r.rejected})`);
    ' "$DATA/report.json" "$DATA/rss" "$kind"
done
du -sh "$DATA" | awk '{print "  store size: " $1}'
