#!/usr/bin/env bash
# bench/http.sh [SECONDS] [CLIENTS] [BATCH] [RATE] -- the tracking API under load, end to end.
#
# A fresh store with the 1M contacts of bench/out/gen-1000000-20000000 when it exists
# (else an empty one), an ingest key, `engage serve` on a free port, then
# build/http-load (bench/http-load.c): CLIENTS (2) clients posting /v1/batch of BATCH
# (500) events, as fast as answered or paced to RATE events/s in all, and one more
# timing single /v1/track calls, for SECONDS (20); then the server's own request-time
# histogram. Results go in docs/benchmarks.md by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
CLIENTS=${2:-2}
BATCH=${3:-500}
RATE=${4:-0}
BIN=${ENGAGE_BIN:-build/engage}
DATA=bench/out/data-http
rm -rf "$DATA"
"$BIN" --data "$DATA" migrate >/dev/null
if [ -f bench/out/gen-1000000-20000000/contacts.csv ]; then
    "$BIN" --data "$DATA" import contacts bench/out/gen-1000000-20000000/contacts.csv --no-progress >/dev/null
fi
KEY=$("$BIN" --data "$DATA" apikey create --role ingest --name bench --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).key))')
"$BIN" --data "$DATA" serve --listen 127.0.0.1:0 >"$DATA/serve.out" 2>"$DATA/serve.log" &
PID=$!
trap "kill $PID 2>/dev/null; wait $PID 2>/dev/null || true" EXIT
for _ in $(seq 200); do
    URL=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$DATA/serve.out" | head -1)
    [ -n "$URL" ] && curl -sf "$URL/readyz" >/dev/null && break
    sleep 0.1
done
sync
"$(dirname "$BIN")/http-load" "$URL" "$KEY" "$SECS" "$CLIENTS" "$BATCH" "$RATE"
# The server's own view: its request-duration histogram for the tracking routes.
curl -sf "$URL/metrics" | grep 'engage_http_request_duration_seconds_bucket{route="tracking"' || true
# Every accepted event stored once (batch events + single tracks, all with new ids).
command -v sqlite3 >/dev/null && echo "stored: $(sqlite3 "$DATA/engage.db" 'SELECT live FROM event_totals') events"
