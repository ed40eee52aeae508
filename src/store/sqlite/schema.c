/* store/sqlite/schema.c -- the SQLite schema: its version (PRAGMA user_version) and the
 * migrations, applied in order. Entry i of sqlite_migrations holds the SQL that takes
 * the schema from version i to i+1; migrate_step() does what a migration needs
 * done in C. Never edit a shipped entry: add a new one and bump STORE_SCHEMA_VERSION. */
#include <stdio.h>

#include "sqlite_int.h"

const char *const sqlite_migrations[STORE_SCHEMA_VERSION] = {
    /* 0 -> 1: contacts, events, contracts, dead letters, keys, audit */
    "CREATE TABLE contacts ("
    "  id INTEGER PRIMARY KEY," /* dense; rows are never deleted */
    "  external_id TEXT UNIQUE,"
    "  email TEXT,"
    "  attrs TEXT NOT NULL DEFAULT '{}',"
    "  consent INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  deleted INTEGER NOT NULL DEFAULT 0,"
    "  merged_into INTEGER NOT NULL DEFAULT 0);"
    "CREATE UNIQUE INDEX contacts_seq ON contacts(seq);"
    "CREATE TABLE anonymous_ids ("
    "  anonymous_id TEXT PRIMARY KEY,"
    "  contact_id INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE consent_changes ("
    "  id INTEGER PRIMARY KEY,"
    "  contact_id INTEGER NOT NULL,"
    "  at INTEGER NOT NULL,"
    "  from_state INTEGER NOT NULL,"
    "  to_state INTEGER NOT NULL,"
    "  source TEXT NOT NULL,"
    "  reason TEXT);"
    "CREATE INDEX consent_changes_contact ON consent_changes(contact_id, id);"
    "CREATE TABLE attributes ("
    "  name TEXT PRIMARY KEY,"
    "  type TEXT NOT NULL,"
    "  origin TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE event_names ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE);"
    "CREATE TABLE events ("
    "  id INTEGER PRIMARY KEY,"
    "  event_id TEXT NOT NULL UNIQUE,"
    "  contact_id INTEGER NOT NULL,"
    "  name_id INTEGER NOT NULL,"
    "  occurred_at INTEGER NOT NULL,"
    "  received_at INTEGER NOT NULL,"
    "  source TEXT NOT NULL,"
    "  contract_version INTEGER NOT NULL DEFAULT 0,"
    "  props TEXT NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  deleted INTEGER NOT NULL DEFAULT 0);"
    "CREATE UNIQUE INDEX events_seq ON events(seq);"
    "CREATE INDEX events_contact ON events(contact_id, occurred_at);"
    "CREATE TABLE contracts ("
    "  name TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  body TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  created_by TEXT NOT NULL,"
    "  PRIMARY KEY (name, version)) WITHOUT ROWID;"
    "CREATE TABLE rejected ("
    "  id INTEGER PRIMARY KEY,"
    "  created_at INTEGER NOT NULL,"
    "  source TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  reason TEXT NOT NULL,"
    "  field TEXT NOT NULL DEFAULT '',"
    "  message TEXT NOT NULL,"
    "  origin TEXT NOT NULL DEFAULT '',"
    "  raw TEXT NOT NULL,"
    "  fingerprint TEXT NOT NULL,"
    "  status TEXT NOT NULL DEFAULT 'pending',"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  resolved_at INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX rejected_status ON rejected(status, id);"
    "CREATE INDEX rejected_fingerprint ON rejected(fingerprint);"
    "CREATE TABLE apikeys ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  role TEXT NOT NULL,"
    "  prefix TEXT NOT NULL,"
    "  hash BLOB NOT NULL UNIQUE,"
    "  created_at INTEGER NOT NULL,"
    "  revoked_at INTEGER NOT NULL DEFAULT 0,"
    "  last_used_at INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE audit ("
    "  id INTEGER PRIMARY KEY,"
    "  at INTEGER NOT NULL,"
    "  actor TEXT NOT NULL,"
    "  action TEXT NOT NULL,"
    "  entity TEXT NOT NULL,"
    "  entity_id TEXT NOT NULL DEFAULT '',"
    "  before TEXT,"
    "  after TEXT,"
    "  request_id TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE imports ("
    "  id INTEGER PRIMARY KEY,"
    "  kind TEXT NOT NULL,"
    "  file TEXT NOT NULL,"
    "  status TEXT NOT NULL,"
    "  started_at INTEGER NOT NULL,"
    "  finished_at INTEGER NOT NULL DEFAULT 0,"
    "  read INTEGER NOT NULL DEFAULT 0,"
    "  inserted INTEGER NOT NULL DEFAULT 0,"
    "  updated INTEGER NOT NULL DEFAULT 0,"
    "  duplicates INTEGER NOT NULL DEFAULT 0,"
    "  rejected INTEGER NOT NULL DEFAULT 0);",
    /* 1 -> 2: saved segments, their versions, evaluations and membership snapshots */
    "CREATE TABLE segments ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  description TEXT NOT NULL DEFAULT '',"
    "  version INTEGER NOT NULL,"                    /* the current version of the rules */
    "  schedule_minutes INTEGER NOT NULL DEFAULT 0," /* 0 = on demand only */
    "  next_run_at INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  created_by TEXT NOT NULL,"
    "  deleted INTEGER NOT NULL DEFAULT 0);"
    "CREATE UNIQUE INDEX segments_name ON segments(name) WHERE deleted = 0;"
    "CREATE INDEX segments_due ON segments(next_run_at) WHERE schedule_minutes > 0 AND deleted = 0;"
    "CREATE TABLE segment_versions ("
    "  segment_id INTEGER NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  rules TEXT NOT NULL,"
    "  plan TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  created_by TEXT NOT NULL,"
    "  PRIMARY KEY (segment_id, version)) WITHOUT ROWID;"
    "CREATE TABLE segment_evaluations ("
    "  id INTEGER PRIMARY KEY,"
    "  segment_id INTEGER NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  trigger TEXT NOT NULL,"  /* api, schedule, campaign */
    "  status TEXT NOT NULL,"   /* running, succeeded, failed, timed_out */
    "  as_of INTEGER NOT NULL," /* the evaluation's now */
    "  started_at INTEGER NOT NULL,"
    "  finished_at INTEGER NOT NULL DEFAULT 0,"
    "  member_count INTEGER NOT NULL DEFAULT 0,"
    "  took_ms REAL NOT NULL DEFAULT 0,"
    "  error TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX segment_evaluations_segment ON segment_evaluations(segment_id, id);"
    "CREATE TABLE segment_snapshots ("
    "  evaluation_id INTEGER PRIMARY KEY,"
    "  format TEXT NOT NULL," /* roaring-portable */
    "  members BLOB NOT NULL);",
    /* 2 -> 3: no per-contact index on events (it made every import batch rewrite random
     * leaves: 9 KB written per event at 20M). Per-contact reads scan, or come from the
     * audience index; the events of anonymous contacts, which merges move, keep a
     * partial index that a merge empties. */
    "DROP INDEX events_contact;"
    "ALTER TABLE events ADD COLUMN anon INTEGER NOT NULL DEFAULT 0;"
    "UPDATE events SET anon = 1 WHERE contact_id IN"
    "  (SELECT id FROM contacts WHERE external_id IS NULL AND deleted = 0);"
    "CREATE INDEX events_anon ON events(contact_id) WHERE anon = 1;",
    /* 3 -> 4: events in blocks (sqlite/events.c): one row per transaction's versions,
     * records and texts apart. store_migrate() moves the old rows over, then drops
     * the events table. */
    "CREATE TABLE event_blocks ("
    "  id INTEGER PRIMARY KEY,"                                /* the seq of its first version */
    "  n INTEGER NOT NULL,"                                    /* versions: seqs id .. id + n - 1 */
    "  cols BLOB NOT NULL,"                                    /* n records of 56 bytes */
    "  texts BLOB NOT NULL);"                                  /* event ids, properties, sources */
    "CREATE TABLE event_superseded (seq INTEGER PRIMARY KEY);" /* versions replaced */
    "CREATE TABLE event_anon (" /* current versions, anonymous contacts */
    "  contact_id INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  PRIMARY KEY (contact_id, seq)) WITHOUT ROWID;"
    "CREATE TABLE event_totals ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  live INTEGER NOT NULL,"
    "  unvalidated INTEGER NOT NULL);"
    "INSERT INTO event_totals VALUES (1, 0, 0);",
    /* 4 -> 5: contacts found by email (the contacts API's ?email=) */
    "CREATE INDEX contacts_email ON contacts(email) WHERE email IS NOT NULL;",
    /* 5 -> 6: CRM sync (src/sync/): sources, and one checkpoint per source table,
     * moved in the transaction that stores the rows it covers. */
    "CREATE TABLE sync_sources ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  kind TEXT NOT NULL,"                /* postgres | sqlite */
    "  dsn TEXT NOT NULL,"                 /* libpq conninfo without password, or a file */
    "  password TEXT NOT NULL DEFAULT ''," /* env:VAR, file:PATH or sealed sb1:... */
    "  mapping TEXT NOT NULL,"             /* JSON (docs/sync.md) */
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  last_ok_at INTEGER NOT NULL DEFAULT 0,"
    "  last_error TEXT NOT NULL DEFAULT '',"
    "  last_error_at INTEGER NOT NULL DEFAULT 0,"
    "  failures INTEGER NOT NULL DEFAULT 0);" /* in a row, since the last success */
    "CREATE TABLE sync_checkpoints ("
    "  source_id INTEGER NOT NULL,"
    "  tbl TEXT NOT NULL,"
    "  cursor TEXT,"                     /* JSON value of the last row's cursor */
    "  key TEXT,"                        /* and of its key */
    "  rows INTEGER NOT NULL DEFAULT 0," /* rows stored through it, ever */
    "  updated_at INTEGER NOT NULL,"
    "  PRIMARY KEY (source_id, tbl)) WITHOUT ROWID;",
    /* 6 -> 7: CRM sync reconciliations: their reports, kept. */
    "CREATE TABLE sync_reconciliations ("
    "  id INTEGER PRIMARY KEY,"
    "  source TEXT NOT NULL,"
    "  started_at INTEGER NOT NULL,"
    "  finished_at INTEGER NOT NULL,"
    "  mismatches INTEGER NOT NULL," /* keys missing + extra, all tables */
    "  repaired INTEGER NOT NULL,"
    "  report TEXT NOT NULL);", /* JSON (docs/sync.md) */
    /* 7 -> 8: where each sync checkpoint stood lately (a lookback window's start). */
    "ALTER TABLE sync_checkpoints ADD COLUMN trail TEXT;", /* [[at_ms, cursor, key], …] */
    /* 8 -> 9: who added each sync source: 'cli' (the operator) or 'api' (an admin key),
     * which decides what its password reference and DSN may name (docs/sync.md). A
     * source added before is what its latest sync_source.add audit record says, and
     * 'api' without one: the stricter rules. */
    "ALTER TABLE sync_sources ADD COLUMN origin TEXT NOT NULL DEFAULT 'api';"
    "UPDATE sync_sources SET origin = 'cli' WHERE (SELECT actor FROM audit"
    "  WHERE action = 'sync_source.add' AND entity = 'sync_source'"
    "  AND entity_id = sync_sources.name ORDER BY id DESC LIMIT 1) LIKE 'cli:%';",
    /* 9 -> 10: a dead letter keeps the first STORE_REJECTED_MAX_RAW bytes of its record;
     * truncated says it was cut (it can never be replayed), raw_bytes the whole size.
     * store_migrate() cuts the letters kept whole before, in C. */
    "ALTER TABLE rejected ADD COLUMN truncated INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE rejected ADD COLUMN raw_bytes INTEGER NOT NULL DEFAULT 0;"
    "UPDATE rejected SET raw_bytes = length(CAST(raw AS BLOB));",
    /* 10 -> 11: the send half (docs/campaigns.md): templates and their versions,
     * campaigns, runs, and the send ledger (one row per recipient per run). */
    "CREATE TABLE templates ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  version INTEGER NOT NULL," /* the current version */
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  created_by TEXT NOT NULL,"
    "  deleted INTEGER NOT NULL DEFAULT 0);"
    "CREATE UNIQUE INDEX templates_name ON templates(name) WHERE deleted = 0;"
    "CREATE TABLE template_versions ("
    "  template_id INTEGER NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  subject TEXT NOT NULL,"
    "  html TEXT NOT NULL,"
    "  text TEXT," /* NULL: derived from html */
    "  from_email TEXT NOT NULL,"
    "  from_name TEXT,"
    "  reply_to TEXT,"
    "  created_at INTEGER NOT NULL,"
    "  created_by TEXT NOT NULL,"
    "  PRIMARY KEY (template_id, version)) WITHOUT ROWID;"
    "CREATE TABLE campaigns ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  segment_id INTEGER NOT NULL,"
    "  template_id INTEGER NOT NULL,"
    "  provider TEXT," /* NULL: the default provider */
    "  throttle_per_second INTEGER NOT NULL DEFAULT 0,"
    "  scheduled_at INTEGER NOT NULL DEFAULT 0,"
    "  state TEXT NOT NULL," /* draft scheduled running paused completed cancelled */
    "  last_run_id INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  created_by TEXT NOT NULL,"
    "  deleted INTEGER NOT NULL DEFAULT 0);"
    "CREATE UNIQUE INDEX campaigns_name ON campaigns(name) WHERE deleted = 0;"
    "CREATE TABLE campaign_runs ("
    "  id INTEGER PRIMARY KEY,"
    "  campaign_id INTEGER NOT NULL,"
    "  state TEXT NOT NULL," /* scheduled running paused completed cancelled failed */
    "  reason TEXT,"
    "  provider TEXT NOT NULL,"
    "  segment_id INTEGER NOT NULL,"
    "  template_id INTEGER NOT NULL,"
    "  template_version INTEGER NOT NULL DEFAULT 0,"
    "  throttle_per_second INTEGER NOT NULL DEFAULT 0,"
    "  evaluation_id INTEGER NOT NULL DEFAULT 0,"
    "  audience INTEGER NOT NULL DEFAULT 0,"
    "  cursor INTEGER NOT NULL DEFAULT 0,"   /* ledger rows exist up to this contact id */
    "  ledgered INTEGER NOT NULL DEFAULT 0," /* every member has its row */
    "  possible_duplicates INTEGER NOT NULL DEFAULT 0,"
    "  start_at INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  started_at INTEGER NOT NULL DEFAULT 0,"
    "  finished_at INTEGER NOT NULL DEFAULT 0,"
    "  updated_at INTEGER NOT NULL,"
    "  created_by TEXT NOT NULL);"
    "CREATE INDEX campaign_runs_campaign ON campaign_runs(campaign_id, id);"
    "CREATE INDEX campaign_runs_active ON campaign_runs(state, start_at)"
    "  WHERE state IN ('scheduled', 'running');"
    "CREATE TABLE messages ("
    "  id INTEGER PRIMARY KEY,"
    "  run_id INTEGER NOT NULL,"
    "  contact_id INTEGER NOT NULL,"
    "  state INTEGER NOT NULL," /* enum store_msg_state */
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  next_at INTEGER NOT NULL DEFAULT 0,"
    "  lease_owner TEXT,"
    "  lease_until INTEGER NOT NULL DEFAULT 0,"
    "  last_error TEXT,"
    "  provider_message_id TEXT,"
    "  updated_at INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX messages_run_contact ON messages(run_id, contact_id);"
    /* (run_id, state) is in id order within a state (the rowid ends every entry): a
     * claim takes the lowest queued ids and a page of one state seeks, with no sort;
     * the retry rows and the dead ones have small indexes of their own (ledger.c). */
    "CREATE INDEX messages_run_state ON messages(run_id, state);"
    "CREATE INDEX messages_retry ON messages(run_id, next_at) WHERE state = 3;"
    "CREATE INDEX messages_dead ON messages(state) WHERE state = 5;"
    /* Each run's rows by state, kept by triggers as rows come and change state, so a
     * run's counts are a read of seven rows, not a walk of a million index entries
     * (store_messages_count; a run's API answer and the dispatcher's end check). */
    "CREATE TABLE run_counts ("
    "  run_id INTEGER NOT NULL,"
    "  state INTEGER NOT NULL,"
    "  n INTEGER NOT NULL,"
    "  PRIMARY KEY (run_id, state)) WITHOUT ROWID;"
    "CREATE TRIGGER messages_count_insert AFTER INSERT ON messages BEGIN"
    "  INSERT INTO run_counts(run_id, state, n) VALUES (new.run_id, new.state, 1)"
    "    ON CONFLICT(run_id, state) DO UPDATE SET n = n + 1;"
    " END;"
    "CREATE TRIGGER messages_count_update AFTER UPDATE OF state ON messages"
    " WHEN old.state != new.state BEGIN"
    "  UPDATE run_counts SET n = n - 1 WHERE run_id = old.run_id AND state = old.state;"
    "  INSERT INTO run_counts(run_id, state, n) VALUES (new.run_id, new.state, 1)"
    "    ON CONFLICT(run_id, state) DO UPDATE SET n = n + 1;"
    " END;",
    /* 11 -> 12: engagement. What happened to each message after the provider took it
     * (message_events, one row per event, unique on its source's id), the kinds each
     * ledger row has seen (messages.events, a bit per kind), counters per run and per
     * minute kept as events arrive, the webhook inbox, and the campaigns' tracking and
     * conversion settings. */
    "ALTER TABLE messages ADD COLUMN events INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX messages_provider_id ON messages(provider_message_id)"
    "  WHERE provider_message_id IS NOT NULL;"
    "CREATE INDEX messages_contact ON messages(contact_id, id);"
    "ALTER TABLE campaigns ADD COLUMN track_opens INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE campaigns ADD COLUMN track_clicks INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE campaigns ADD COLUMN conversion TEXT;" /* JSON, or NULL: none */
    "ALTER TABLE campaign_runs ADD COLUMN track_opens INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE campaign_runs ADD COLUMN track_clicks INTEGER NOT NULL DEFAULT 1;"
    "CREATE TABLE message_events ("
    "  id INTEGER PRIMARY KEY,"
    "  source TEXT NOT NULL,"  /* "tracking", "unsubscribe", "smtp", "webhook:NAME" */
    "  source_id TEXT,"        /* the source's id of the event (NULL: none, never a duplicate) */
    "  kind INTEGER NOT NULL," /* enum mev_kind */
    "  run_id INTEGER,"        /* NULL: the message is not known */
    "  contact_id INTEGER,"
    "  message_row INTEGER," /* the ledger row */
    "  queue_id TEXT,"
    "  email TEXT,"
    "  at INTEGER NOT NULL,"
    "  received_at INTEGER NOT NULL,"
    "  reason TEXT,"
    "  url TEXT,"
    "  user_agent TEXT,"
    "  machine INTEGER NOT NULL DEFAULT 0,"
    "  value REAL);" /* a conversion's revenue */
    "CREATE UNIQUE INDEX message_events_source ON message_events(source, source_id)"
    "  WHERE source_id IS NOT NULL;"
    "CREATE INDEX message_events_run ON message_events(run_id, kind, id) WHERE run_id IS NOT NULL;"
    "CREATE INDEX message_events_unknown ON message_events(id) WHERE run_id IS NULL;"
    /* Counters (enum run_stat in campaign.h): per run, and per run and minute (the Unix minute
     * of the event) for time series; x sums a value (revenue). */
    "CREATE TABLE run_stats ("
    "  run_id INTEGER NOT NULL,"
    "  metric INTEGER NOT NULL,"
    "  n INTEGER NOT NULL,"
    "  x REAL NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (run_id, metric)) WITHOUT ROWID;"
    "CREATE TABLE run_minutes ("
    "  run_id INTEGER NOT NULL,"
    "  minute INTEGER NOT NULL,"
    "  metric INTEGER NOT NULL,"
    "  n INTEGER NOT NULL,"
    "  x REAL NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (run_id, minute, metric)) WITHOUT ROWID;"
    "CREATE INDEX run_minutes_minute ON run_minutes(minute);"
    /* A row's send outcome lands in its minute as it happens: sent 1, failed 2, dead 3,
     * skipped 4 (enum run_stat). */
    "CREATE TRIGGER messages_minute AFTER UPDATE OF state ON messages"
    " WHEN old.state != new.state AND new.state IN (2, 4, 5, 6) BEGIN"
    "  INSERT INTO run_minutes(run_id, minute, metric, n)"
    "    VALUES (new.run_id, new.updated_at / 60000,"
    "            CASE new.state WHEN 2 THEN 1 WHEN 4 THEN 2 WHEN 5 THEN 3 ELSE 4 END, 1)"
    "    ON CONFLICT(run_id, minute, metric) DO UPDATE SET n = n + 1;"
    " END;"
    /* Webhook bodies, stored as received (verified) before they are answered, then
     * processed by the inbox worker under a lease: state 0 pending, 1 done, 2 failed. */
    "CREATE TABLE webhook_inbox ("
    "  id INTEGER PRIMARY KEY,"
    "  hook TEXT NOT NULL,"
    "  dedupe TEXT," /* a replay key (Mailgun's token), unique per hook */
    "  body BLOB NOT NULL,"
    "  received_at INTEGER NOT NULL,"
    "  state INTEGER NOT NULL DEFAULT 0,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  lease_owner TEXT,"
    "  lease_until INTEGER NOT NULL DEFAULT 0,"
    "  events INTEGER NOT NULL DEFAULT 0,"
    "  error TEXT,"
    "  done_at INTEGER NOT NULL DEFAULT 0);"
    "CREATE UNIQUE INDEX webhook_inbox_dedupe ON webhook_inbox(hook, dedupe)"
    "  WHERE dedupe IS NOT NULL;"
    "CREATE INDEX webhook_inbox_pending ON webhook_inbox(id) WHERE state = 0;"
    "CREATE INDEX webhook_inbox_failed ON webhook_inbox(id) WHERE state = 2;"
    "CREATE INDEX webhook_inbox_done ON webhook_inbox(done_at) WHERE state = 1;"
    /* What happened to a run, in order: its state changes, and its messages' retries,
     * failures and dead letters grouped by error within a batch of outcomes. */
    "CREATE TABLE run_log ("
    "  id INTEGER PRIMARY KEY,"
    "  run_id INTEGER NOT NULL,"
    "  at INTEGER NOT NULL,"
    "  kind TEXT NOT NULL," /* state, retry, failed, dead */
    "  detail TEXT,"
    "  count INTEGER NOT NULL DEFAULT 1);"
    "CREATE INDEX run_log_run ON run_log(run_id, id);"
    /* How far each journal file of this node has been applied (delivery/tracker.c). */
    "CREATE TABLE journals ("
    "  name TEXT PRIMARY KEY,"
    "  applied INTEGER NOT NULL) WITHOUT ROWID;",
};

static const struct sq_def q_user_version = {SQ_USER_VERSION, "PRAGMA user_version"};

int store_schema_version(struct store *st, int *out, struct err *e)
{
    int64_t v;
    struct sq q;
    int rc = sq_prep(&q, st, &q_user_version, e);

    if (rc == 0)
        rc = sq_step(&q, "read schema version", e);
    if (rc == 0) /* no row */
        rc = sq_err(st, e, SQLITE_DONE, "read schema version");
    if (rc > 0) {
        v = sqlite3_column_int64(q.s, 0);
        *out = (int)v;
        rc = 0;
    }
    sq_done(&q);
    return rc;
}

/* The C part of the migration from version v (after its SQL), if it has one. */
static int migrate_step(struct store *st, int v, struct err *e)
{
    int rc = 0;

    if (v == 9)
        rc = rejected_cut_old(st, e); /* 9 -> 10: letters kept whole before are cut */
    if (v == 3) {
        /* 3 -> 4 moves the old events table's rows into blocks, in C. */
        st->in_tx = st->writing = 1;
        rc = events_migrate_blocks(st, e);
        st->in_tx = st->writing = 0;
        if (rc == 0)
            rc = sq_script(st, "DROP TABLE events", e);
    }
    return rc;
}

int store_migrate(struct store *st, int *from, int *to, struct err *e)
{
    int v, rc;
    char sql[64];

    rc = sq_script(st, "BEGIN IMMEDIATE", e);
    if (rc)
        return rc;
    rc = store_schema_version(st, &v, e);
    if (rc)
        goto fail;
    if (from)
        *from = v;
    if (v > STORE_SCHEMA_VERSION) {
        rc = ERR(e, E_CONFLICT,
                 "store: '%s' has schema version %d, newer than this binary's %d: upgrade engage "
                 "before using this data directory",
                 st->path, v, STORE_SCHEMA_VERSION);
        goto fail;
    }
    for (; v < STORE_SCHEMA_VERSION; v++) {
        rc = sq_script(st, sqlite_migrations[v], e);
        if (rc == 0)
            rc = migrate_step(st, v, e);
        if (rc)
            goto fail;
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
        rc = sq_script(st, sql, e);
        if (rc)
            goto fail;
    }
    rc = sq_script(st, "COMMIT", e);
    if (rc)
        goto fail;
    if (to)
        *to = v;
    return 0;
fail:
    sq_rollback(st);
    return rc;
}
