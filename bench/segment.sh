#!/usr/bin/env bash
# bench/segment.sh -- segment evaluation: engage's audience index against plain SQL on
# SQLite (the engage store itself) and PostgreSQL 15 (the same CSVs in typed tables
# with indexes), for the six segments in bench/segments/*.json.
#
#   bench/segment.sh [CONTACTS] [EVENTS]        (defaults: 100000 contacts, 2000000 events)
#
# Generates seeded CSVs (cached in bench/out/), imports them into an engage store
# (cached), runs `engage bench segments` (index load time, memory, median/p95 per
# segment), then times each segment's SQL (bench/segments/sql/) three times on SQLite
# and on a throwaway PostgreSQL cluster, and prints every count so they can be checked
# against engage's. Needs root (PostgreSQL runs as the postgres user). Results go in
# docs/benchmarks.md by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
CONTACTS=${1:-100000}
EVENTS=${2:-2000000}
BIN=${ENGAGE_BIN:-build/engage}
NOW=2026-11-01T00:00:00Z
NOW_MS=$(($(date -u -d "$NOW" +%s) * 1000))
GEN=bench/out/gen-$CONTACTS-$EVENTS
DATA=bench/out/data-seg-$CONTACTS-$EVENTS
PGPORT=${PGPORT:-5439}
PGBIN=/usr/lib/postgresql/15/bin

if [ ! -f "$GEN/events.csv" ]; then
    "$BIN" bench gen --contacts "$CONTACTS" --events "$EVENTS" --seed 42 --out "$GEN" --now "$NOW" >/dev/null
fi
if [ ! -f "$DATA/LOADED" ]; then
    rm -rf "$DATA"
    "$BIN" --data "$DATA" migrate >/dev/null
    "$BIN" --data "$DATA" import contacts "$GEN/contacts.csv" --no-progress >/dev/null
    "$BIN" --data "$DATA" import events "$GEN/events.csv" --no-progress >/dev/null || true
    touch "$DATA/LOADED"
fi

echo "== engage ($CONTACTS contacts, $EVENTS events, now $NOW)"
"$BIN" --data "$DATA" --now "$NOW" bench segments --rules bench/segments --runs 20

# Runs one query three times in one client session; prints its count and the best time
# the client measured (sqlite3 .timer, psql \timing: no process start-up counted).
report() { # name output
    local count best
    count=$(echo "$2" | grep -E '^[0-9]+$' | head -1)
    best=$(echo "$2" | sed -nE 's/^Run Time: real ([0-9.]+).*/\1/p; s/^Time: ([0-9.]+) ms.*/\1 ms/p' |
        awk '{ v = ($2 == "ms") ? $1 : $1 * 1000; if (min == "" || v < min) min = v } END { printf "%.2f", min }')
    printf '%-32s %9s members  best of 3 %10s ms\n' "$1" "$count" "$best"
}

echo "== SQLite (the engage store: events indexed by (contact_id, occurred_at))"
for f in bench/segments/sql/*.sqlite.sql; do
    q=$(sed "s/:NOW/$NOW_MS/g" "$f")
    report "$(basename "$f" .sqlite.sql)" \
        "$(printf '.timer on\n%s\n%s\n%s\n' "$q" "$q" "$q" | sqlite3 -readonly "$DATA/engage.db")"
done

echo "== PostgreSQL 15 (typed tables, indexes on events (contact_id, name, occurred_at) and (name, occurred_at))"
PGD=$(mktemp -d /tmp/engage-bench-pg-XXXXXX)
chown postgres:postgres "$PGD"
trap 'runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGD/data" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$PGD"' EXIT
runuser -u postgres -- "$PGBIN/initdb" -D "$PGD/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGD/data" -l "$PGD/server.log" -w -o \
    "-p $PGPORT -k $PGD -c listen_addresses='' -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c shared_buffers=2GB -c work_mem=256MB -c max_parallel_workers_per_gather=2" \
    start >/dev/null
PSQL=(psql -h "$PGD" -p "$PGPORT" -U postgres -v ON_ERROR_STOP=1 -qAt)
t0=$(date +%s)
"${PSQL[@]}" <<SQL
CREATE TABLE contacts_raw (external_id text, email text, first_name text, last_name text, city text,
  plan text, signup_at timestamptz, ltv float8, email_consent text);
CREATE TABLE events_raw (external_id text, event text, occurred_at timestamptz, event_id text,
  order_id text, amount float8, currency text, created_at timestamptz, call_id text, agent_id text,
  duration_sec int, message_id text, status text, campaign_id text, opened_at timestamptz);
\copy contacts_raw FROM '$GEN/contacts.csv' WITH (FORMAT csv, HEADER true)
\copy events_raw FROM '$GEN/events.csv' WITH (FORMAT csv, HEADER true)
CREATE TABLE contacts AS SELECT row_number() OVER () AS id, * FROM contacts_raw;
CREATE UNIQUE INDEX ON contacts (external_id);
CREATE TABLE events AS SELECT c.id AS contact_id, r.event AS name,
  coalesce(r.occurred_at, r.created_at, r.opened_at) AS occurred_at, r.amount, r.currency, r.status
  FROM events_raw r JOIN contacts c USING (external_id);
CREATE INDEX ON contacts (city);
CREATE INDEX ON events (contact_id, name, occurred_at);
CREATE INDEX ON events (name, occurred_at) INCLUDE (contact_id);
DROP TABLE contacts_raw; DROP TABLE events_raw;
VACUUM ANALYZE;
SQL
echo "  loaded and indexed in $(($(date +%s) - t0)) s"
for f in bench/segments/sql/*.pg.sql; do
    report "$(basename "$f" .pg.sql)" \
        "$(printf '\\timing on\n%s\n%s\n%s\n' "$(cat "$f")" "$(cat "$f")" "$(cat "$f")" |
            "${PSQL[@]}" -v now="$NOW")"
done
