/* sync/sync.h -- CRM sync: rows of the CRM's own database (PostgreSQL or SQLite) become
 * contacts and events, incrementally, one checkpoint per source table (docs/sync.md).
 *
 * A source is a connection (kind, DSN, a password reference) and a mapping: per table,
 * which rows become contacts or events and how their columns map. A pass reads each
 * table in (cursor, key) order after its checkpoint, in batches; each batch is stored
 * through the ingest module (contracts, sticky opt-outs, the dead-letter store) and the
 * checkpoint moves in the same transaction. Event ids are "<source>:<table>:<key>": a
 * row read twice is stored once, a changed row updates its event, a soft-deleted row
 * deletes it. */
#ifndef ENGAGE_SYNC_H
#define ENGAGE_SYNC_H

#include <jansson.h>

#include <limits.h>

#include "../core/config.h"
#include "../core/jtree.h"
#include "../core/map.h"
#include "../store/store.h"

enum sync_into { SYNC_CONTACTS, SYNC_EVENTS };

#define SYNC_MAX_LOOKBACK_S 86400

struct sync_column_map {
    char name[128];   /* the attribute or property */
    char column[128]; /* the source column */
};

struct sync_table {
    char table[128]; /* as the source names it ("schema.table" in PostgreSQL) */
    enum sync_into into;
    char key[128], cursor[128], external_id[128];
    char email[128], consent[128];      /* contacts; "" when not mapped */
    char event[129], event_column[128]; /* events: a constant name, or a column */
    char occurred_at[128];              /* events */
    char deleted[128];                  /* "" when rows are never soft-deleted */
    int lookback_s;                     /* rows read again behind the checkpoint: those
                                         * after where it stood this long ago (0: none) */
    struct sync_column_map *cols;       /* attributes or properties */
    int ncols;
};

struct sync_mapping {
    struct sync_table *tables;
    int ntables;
};

/* Parses and checks a mapping (JSON text). Every problem goes to errs (a JSON pointer
 * and a sentence); E_INVAL if there is any. */
int sync_mapping_parse(const char *text, struct sync_mapping *out, struct errlist *errs,
                       struct err *e);
void sync_mapping_release(struct sync_mapping *m);

/* ---- sources (source.c) ---- */

struct sync_conn;
/* Connects to the source (its password resolved from its reference), its DSN and
 * reference checked again for its origin (policy.c). A password goes only over TLS
 * unless [sync] allow_insecure_tls: a source that would send one otherwise, or that
 * reaches authentication unencrypted while libpq holds one of its own (PGPASSWORD, a
 * password file), is refused before the password is sent (E_INVAL). */
int sync_connect(const struct store_sync_source *src, const struct config *cfg,
                 struct sync_conn **out, struct err *e);
void sync_disconnect(struct sync_conn *c);

/* A batch of rows of one table, everything in the batch's arena: each row's values (one
 * per column, in the order of columns; a value's src is the source's own text of it),
 * its cursor and key as the source compares them (JSON text, for the checkpoint), and
 * whether every transaction that could still commit a row before it is over
 * (PostgreSQL: its writer's xid is below the snapshot's xmin; always 1 for SQLite).
 * Values: numbers, booleans, text; timestamps as ISO-8601 UTC text; json parsed. */
struct sync_row {
    struct jt *values;
    const char *cursor, *key;
    int settled;
};
/* Where the mapping's columns are among the columns read (-1: not mapped). */
struct sync_columns {
    int key, cursor, external_id, email, consent, deleted, occurred_at, event;
    int *mapped; /* per sync_table.cols */
};
struct sync_batch {
    struct sync_row *rows;
    int n;
    char **columns; /* the columns read, in order */
    int ncolumns;
    struct sync_columns at;
    struct arena arena;
};
void sync_batch_release(struct sync_batch *b);
/* The value of the column at index i of a row (sync_columns), NULL for -1. */
static inline const struct jt *sync_value(const struct sync_row *r, int i)
{
    return i >= 0 ? &r->values[i] : NULL;
}
/* A row's key as its event id ends: text as it is, a number as the source wrote it; NULL
 * for anything else. */
const char *sync_key_text(const struct jt *v);
/* An id (external_id) as text: a non-empty string, or an integer in decimal (into buf). */
const char *sync_id_text(const struct jt *v, char *buf, size_t n);
/* A soft-delete column says deleted when it holds anything but null, false or 0. */
int sync_is_deleted(const struct jt *v);
/* Up to limit rows after (cursor, key) (both NULL: from the first; key NULL: from the
 * cursor value on, inclusive), in that order. out->arena is used as it is: zeroed, or
 * the arena of a batch done with (arena_reset), whose chunks are reused. */
int sync_read(struct sync_conn *c, const struct sync_table *t, const char *cursor, const char *key,
              int limit, struct sync_batch *out, struct err *e);
/* The rows a read from cursor value since on (inclusive; NULL: all) would give: a
 * backfill's progress. */
int sync_count(struct sync_conn *c, const struct sync_table *t, const char *since, int64_t *out,
               struct err *e);
/* The same, up to (until_cursor, until_key) included when until_cursor is set (with a
 * start after (cursor, key)): the rows behind a checkpoint, read again. */
struct sync_range {
    const char *cursor, *key, *until_cursor, *until_key;
};
int sync_read_range(struct sync_conn *c, const struct sync_table *t, const struct sync_range *rg,
                    int limit, struct sync_batch *out, struct err *e);

/* ---- passes (run.c) ---- */

struct sync_report {
    int64_t read, contacts, events, deleted, rejected, unchanged;
    int64_t reread, late; /* rows read again behind the checkpoint (lookback), and those of
                           * them that changed something: late commits */
    int tables;
};
struct sync_opts {
    int batch;         /* rows a transaction (default 5000) */
    const char *table; /* only this table (NULL: all) */
    /* A backfill: every row again (from since on: a JSON value compared with the
     * cursor, NULL for all), the live checkpoints neither read nor moved. */
    int backfill;
    const char *since;
    int progress; /* a running count on stderr */
    /* Told of each batch once it is committed (stored_at: the commit's time). */
    void (*on_batch)(void *ctx, const struct sync_table *t, const struct sync_batch *b,
                     int64_t stored_at);
    void *ctx;
};
/* One pass over a source: every table from its checkpoint to the end. The source's
 * status (last success or error) is recorded. */
int sync_pass(struct store *st, const struct config *cfg, const char *source,
              const struct sync_opts *o, struct sync_report *rep, struct err *e);

/* A row of an events table as a prepared event (ingest.h), made by the thread that
 * reads ahead: 0 for a soft-deleted row (nothing prepared). A row whose event has no
 * contract, or whose contract takes it, is typed straight from its values (its strings
 * in the batch's arena); any other, and every row when general is set (the tests
 * compare both ways), through a JSON record and ingest_event_prepare(). */
struct ingest_ctx;
struct prepared_event;
struct contract_set;
int sync_prepare_event(const char *source, const struct sync_table *t, struct sync_batch *b,
                       const struct sync_row *r, const struct contract_set *cs,
                       const struct ingest_ctx *cx, struct buf *scratch, int general,
                       struct prepared_event *p);

/* ---- what a source may name (policy.c) ---- */

/* Who added a source: an admin key over HTTP, or the operator (stored as "api"/"cli").
 * The stricter one is 0: a spec that does not say is the API's. */
enum sync_origin { SYNC_ORIGIN_API, SYNC_ORIGIN_CLI };
/* A stored source's origin; anything but "cli" is the API's (the stricter rules). */
enum sync_origin sync_origin_of(const struct store_sync_source *s);

/* libpq's sslmode as a level: disable, allow, prefer, require, verify-ca, verify-full. */
enum {
    SYNC_TLS_DISABLE,
    SYNC_TLS_ALLOW,
    SYNC_TLS_PREFER,
    SYNC_TLS_REQUIRE,
    SYNC_TLS_VERIFY_CA,
    SYNC_TLS_VERIFY_FULL
};
/* The sslmode a connection with this DSN would use (its own, else PGSSLMODE, else
 * prefer); -1 for a DSN that does not parse or an unknown mode. */
int sync_dsn_tls(const char *dsn);
/* Whether a password may be given only with sslmode require or stronger: unless [sync]
 * allow_insecure_tls, with a libpq older than 16 (which cannot refuse a server's
 * request for it in clear text by itself, require_auth). */
int sync_password_needs_tls(const struct config *cfg);
/* The problems of a PostgreSQL DSN (key=value or postgresql:// URI), each into errs at
 * the pointer at: it must parse and hold no password; with has_password, and a libpq
 * older than 16, sslmode require or stronger. From the API also: only options that
 * name nothing of this server (no passfile, sslcert, sslkey, sslrootcert, sslcrl,
 * sslcrldir, service…: an allow-list), a TCP host, and sslmode require or stronger.
 * [sync] allow_insecure_tls lifts both sslmode rules. */
void sync_dsn_check(const char *dsn, enum sync_origin origin, int has_password,
                    const struct config *cfg, const char *at, struct errlist *errs);
/* The problem with a password reference, env:VAR or file:PATH, into errs at the pointer
 * at. Never the secrets key's variable or file, nor file:- (standard input). From the
 * API: a file must resolve (symlinks followed) to a regular file inside [sync]
 * secret_dir, a variable start with [sync] secret_env_prefix (and not be a setting of
 * engage); either is refused while its key is unset. */
void sync_ref_check(const char *ref, enum sync_origin origin, const struct config *cfg,
                    const char *at, struct errlist *errs);
/* The file a SQLite source's DSN names, into out: the operator's (CLI) as named; from the
 * API, a regular file inside [sync] sqlite_dir (as a file: reference inside secret_dir:
 * no URI, no `..`, resolved with symlinks followed), never in engage's data directory.
 * 0, or -1 with msg saying why. */
int sync_sqlite_path(const char *dsn, enum sync_origin origin, const struct config *cfg,
                     char out[PATH_MAX], char *msg, size_t cap);
/* Checks ref as sync_ref_check does, then reads it (a file: by its resolved path).
 * Caller frees with secret_free. */
int sync_ref_read(const char *ref, enum sync_origin origin, const struct config *cfg, char **out,
                  struct err *e);

/* ---- sources (sources.c) ---- */

struct sync_source_spec {
    const char *name, *kind, *dsn;
    const char *password_ref; /* env:VAR or file:PATH, or NULL */
    const char *password;     /* or the password itself, stored sealed; or NULL */
    const char *mapping;      /* JSON text */
    enum sync_origin origin;  /* what the references and the DSN may name */
};
/* Checks everything (each problem into errs with its JSON pointer: E_INVAL), then adds
 * the source with its audit record (sync_source.add) in one transaction. E_CONFLICT
 * for a name taken. */
int sync_source_create(struct store *st, const struct config *cfg,
                       const struct sync_source_spec *spec, const char *actor, const char *req_id,
                       struct errlist *errs, struct err *e);
/* Removes it and its checkpoints, audited (sync_source.remove); what it stored stays. */
int sync_source_delete(struct store *st, const char *name, const char *actor, const char *req_id,
                       struct err *e);
/* As the CLI and the API show it: the password only as its reference (env:VAR,
 * file:PATH, "sealed" or "none"), and its origin ("cli" or "api"). Caller owns it. */
json_t *sync_source_json(const struct store_sync_source *s);
/* Calls fn with each source's name, in the store's order, or with only's alone
 * (E_NOTFOUND when there is none of that name). The names are read first: no statement
 * is open while fn runs (a pass or a reconciliation writes). fn returns 0 to go on or
 * < 0 to stop with that error. */
int sync_sources_each(struct store *st, const char *only, int (*fn)(void *ctx, const char *name),
                      void *ctx, struct err *e);
/* Every source as sync_source_json shows it: *items (caller owns). */
int sync_sources_list_json(struct store *st, json_t **items, struct err *e);
/* One source as sync_source_json shows it: *out (caller owns); E_NOTFOUND for none. */
int sync_source_get_json(struct store *st, const char *name, json_t **out, struct err *e);
/* Connects to the source and reads one row of each mapped table through the mapping's
 * own query, which checks the table and its columns: fn gets each table with NULL and
 * the rows read (0 or 1), or with why it failed, and returns 0 to go on or < 0 to stop
 * with that error. A table that fails is not an error; an unknown source, a mapping
 * that does not parse or a connection that fails is. */
int sync_source_check(struct store *st, const struct config *cfg, const char *name,
                      int (*fn)(void *ctx, const char *table, const char *error, int rows),
                      void *ctx, struct err *e);
struct sync_worker;
/* Each source's health: its summary (no mapping, DSN or password), a status (ok, failing,
 * never_run) and per mapped table the worker's figures (worker may be NULL), the rows
 * read and when the checkpoint last moved. *items (caller owns). */
int sync_health_json(struct store *st, struct sync_worker *worker, json_t **items, struct err *e);

/* ---- reconciliation (reconcile.c) ---- */

/* The source's events tables against what was stored from them, by day of occurred_at:
 * counts, key checksums, and the keys missing and extra on days that differ (first 20
 * of each). With repair, extra events are deleted and the tables read again (missing
 * rows stored). The report is kept and returned (caller owns *report, with its "id"). */
int sync_reconcile(struct store *st, const struct config *cfg, const char *source, int repair,
                   json_t **report, int64_t *mismatches, struct err *e);
/* Whether the nightly reconciliation is due at now_ms: hour (UTC, 0-23; -1: never) has
 * come today and the last one (last_started_ms; 0: none) started before it did. */
int sync_reconcile_due(int64_t now_ms, int hour, int64_t last_started_ms);
/* A page of the kept reports, newest first (before: an id, 0 for the newest), each
 * {id, source, started_at, finished_at, mismatches, repaired, tables}: *items (caller
 * owns), *last_id the last report's id. */
int sync_reconciliations_json(struct store *st, int64_t before, int limit, json_t **items,
                              int64_t *last_id, struct err *e);

/* ---- the worker of `engage serve` (worker.c) ---- */

struct sync_worker;
/* A worker of ws (core/worker.h) with its own store connection: a pass over every
 * source each [sync] interval_seconds; a failing source waits interval x 2^failures (at
 * most 5 min). Once a UTC day from [sync] reconcile_hour on, each source is reconciled
 * after a successful pass (sync_reconcile_due decides). */
struct worker_set;
struct metrics;
int sync_worker_start(struct sync_worker **out, struct worker_set *ws, const struct config *cfg,
                      struct err *e);
void sync_worker_stop(struct sync_worker *w); /* NULL-safe */
/* A table's figures since the server started: rows_since_start, rows_per_second (last
 * hour), newest_row_at and lag_seconds (now minus it), lag_p50_ms and lag_p95_ms (stored
 * at minus the row's cursor, last hour). {} when nothing was stored yet. */
json_t *sync_worker_table_stats(struct sync_worker *w, const char *source, const char *table);
/* Registers the engage_sync_* figures (rows, lag, failures, reconciliations) in m; w
 * must outlive m's use. */
void sync_worker_metrics(struct sync_worker *w, struct metrics *m);

#endif
