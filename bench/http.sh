#!/usr/bin/env bash
# bench/http.sh [SECONDS] [CLIENTS] [BATCH] -- the tracking API under load, end to end.
#
# A fresh store with the 1M contacts of bench/out/gen-1000000-20000000 when it exists
# (else an empty one), an ingest key, `engage serve` on a free port, then
# bench/http-load.mjs: CLIENTS (2) clients posting /v1/batch of BATCH (500) events and
# one more timing single /v1/track calls, for SECONDS (20). Results go in
# docs/benchmarks.md by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
CLIENTS=${2:-2}
BATCH=${3:-500}
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
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 200); do
    URL=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$DATA/serve.out" | head -1)
    [ -n "$URL" ] && curl -sf "$URL/readyz" >/dev/null && break
    sleep 0.1
done
sync
node bench/http-load.mjs "$URL" "$KEY" "$SECS" "$CLIENTS" "$BATCH"
# Every accepted event stored once (batch events + single tracks, all with new ids).
command -v sqlite3 >/dev/null && echo "stored: $(sqlite3 "$DATA/engage.db" 'SELECT live FROM event_totals') events"
