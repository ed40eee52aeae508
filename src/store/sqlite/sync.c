/* store/sqlite/sync.c -- CRM sync's durable state: the sources, one checkpoint per
 * source table (schema 6), and the reports of reconciliations kept. */
#include <stdlib.h>
#include <string.h>

#include "sqlite_int.h"

#define SOURCE_COLS                                                                                \
    "id, name, kind, dsn, password, mapping, created_at, updated_at, last_ok_at, last_error,"      \
    " last_error_at, failures, origin"

static const struct sq_def q_add = {
    SQ_SRC_ADD, "INSERT INTO sync_sources(name, kind, dsn, password, mapping, created_at,"
                " updated_at, origin) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)"};
static const struct sq_def q_get = {SQ_SRC_GET,
                                    "SELECT " SOURCE_COLS " FROM sync_sources WHERE name = ?1"};
static const struct sq_def q_list = {SQ_SRCS,
                                     "SELECT " SOURCE_COLS " FROM sync_sources ORDER BY name"};
static const struct sq_def q_del_checkpoints = {
    SQ_SRC_DEL_CHECKPOINTS, "DELETE FROM sync_checkpoints WHERE source_id = ?1"};
static const struct sq_def q_del = {SQ_SRC_DEL, "DELETE FROM sync_sources WHERE id = ?1"};
static const struct sq_def q_failed = {
    SQ_SRC_FAILED, "UPDATE sync_sources SET last_error = ?2, last_error_at = ?3,"
                   " failures = failures + 1 WHERE id = ?1"};
static const struct sq_def q_ok = {
    SQ_SRC_OK, "UPDATE sync_sources SET last_ok_at = ?3, failures = 0 WHERE id = ?1"};
static const struct sq_def q_ckpt_get = {
    SQ_CKPT_GET, "SELECT cursor, key, rows, updated_at, trail FROM sync_checkpoints"
                 " WHERE source_id = ?1 AND tbl = ?2"};
static const struct sq_def q_ckpt_set = {
    SQ_CKPT_SET,
    "INSERT INTO sync_checkpoints(source_id, tbl, cursor, key, rows, updated_at, trail)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(source_id, tbl) DO UPDATE SET"
    " cursor = excluded.cursor, key = excluded.key, rows = rows + excluded.rows,"
    " updated_at = excluded.updated_at, trail = coalesce(excluded.trail, trail)"};
static const struct sq_def q_recon_add = {
    SQ_RECON_ADD, "INSERT INTO sync_reconciliations(source, started_at, finished_at, mismatches,"
                  " repaired, report) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"};
static const struct sq_def q_recon_last = {
    SQ_RECON_LAST, "SELECT max(started_at) FROM sync_reconciliations WHERE source = ?1"};
static const struct sq_def q_recons = {
    SQ_RECONS, "SELECT id, source, started_at, finished_at, mismatches, repaired, report"
               " FROM sync_reconciliations WHERE ?1 = 0 OR id < ?1 ORDER BY id DESC LIMIT ?2"};

/* ---- sources ------------------------------------------------------------------------ */

int store_sync_source_add(struct store *st, const struct store_sync_source *src, int64_t *id,
                          struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_add, e);

    if (rc)
        return rc;
    sq_text(&q, 1, src->name);
    sq_text(&q, 2, src->kind);
    sq_text(&q, 3, src->dsn);
    sq_text(&q, 4, src->password ? src->password : "");
    sq_text(&q, 5, src->mapping);
    sq_i64(&q, 6, clock_now_ms());
    sq_text(&q, 7, src->origin[0] ? src->origin : "api");
    rc = sq_exec_unique(&q, "add a sync source", e);
    if (rc == E_CONFLICT)
        return ERR(e, E_CONFLICT, "a sync source named \"%s\" exists", src->name);
    if (rc == 0 && id)
        *id = sq_last_id(st);
    return rc;
}

static void source_row(sqlite3_stmt *s, struct store_sync_source *out)
{
    memset(out, 0, sizeof *out);
    out->id = sqlite3_column_int64(s, 0);
    snprintf(out->name, sizeof out->name, "%s", sq_col_text(s, 1));
    snprintf(out->kind, sizeof out->kind, "%s", sq_col_text(s, 2));
    out->dsn = sq_col_dup(s, 3);
    out->password = sq_col_dup(s, 4);
    out->mapping = sq_col_dup(s, 5);
    out->created_at = sqlite3_column_int64(s, 6);
    out->updated_at = sqlite3_column_int64(s, 7);
    out->last_ok_at = sqlite3_column_int64(s, 8);
    snprintf(out->last_error, sizeof out->last_error, "%s",
             sq_col_text(s, 9) ? sq_col_text(s, 9) : "");
    out->last_error_at = sqlite3_column_int64(s, 10);
    out->failures = sqlite3_column_int64(s, 11);
    snprintf(out->origin, sizeof out->origin, "%s", sq_col_text(s, 12));
}

int store_sync_source_get(struct store *st, const char *name, struct store_sync_source *out,
                          struct err *e)
{
    struct sq q;
    int rc;

    memset(out, 0, sizeof *out);
    if ((rc = sq_prep(&q, st, &q_get, e)))
        return rc;
    sq_text(&q, 1, name);
    rc = sq_step(&q, "read a sync source", e);
    if (rc > 0) {
        source_row(q.s, out);
        rc = 0;
    } else if (rc == 0) {
        rc =
            ERR(e, E_NOTFOUND, "no sync source named \"%s\" (see 'engage sync source list')", name);
    }
    sq_done(&q);
    return rc;
}

struct source_visit {
    int (*cb)(void *ctx, const struct store_sync_source *s);
    void *ctx;
};

static int row_source(sqlite3_stmt *s, void *ctx)
{
    struct source_visit *v = ctx;
    struct store_sync_source src;
    int stop;

    source_row(s, &src);
    stop = v->cb(v->ctx, &src);
    store_sync_source_release(&src);
    return stop;
}

int store_sync_sources(struct store *st, int (*cb)(void *ctx, const struct store_sync_source *s),
                       void *ctx, struct err *e)
{
    struct source_visit v = {cb, ctx};
    struct sq q;
    int rc = sq_prep(&q, st, &q_list, e);

    return rc ? rc : sq_each(&q, "list sync sources", row_source, &v, NULL, e);
}

int store_sync_source_remove(struct store *st, const char *name, struct err *e)
{
    const struct sq_def *del[] = {&q_del_checkpoints, &q_del};
    struct store_sync_source src;
    struct sq q;
    size_t i;
    int rc = store_sync_source_get(st, name, &src, e);

    for (i = 0; rc == 0 && i < sizeof del / sizeof *del; i++) {
        if ((rc = sq_prep(&q, st, del[i], e)))
            break;
        sq_i64(&q, 1, src.id);
        rc = sq_exec(&q, "remove a sync source", e);
    }
    store_sync_source_release(&src);
    return rc;
}

int store_sync_source_status(struct store *st, int64_t id, const char *error, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, error ? &q_failed : &q_ok, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, id);
    if (error)
        sq_text(&q, 2, error);
    sq_i64(&q, 3, clock_now_ms());
    return sq_exec(&q, "record a sync pass", e);
}

/* ---- checkpoints -------------------------------------------------------------------- */

int store_sync_checkpoint_get(struct store *st, int64_t source_id, const char *tbl,
                              struct store_sync_checkpoint *out, struct err *e)
{
    struct sq q;
    int rc;

    memset(out, 0, sizeof *out);
    if ((rc = sq_prep(&q, st, &q_ckpt_get, e)))
        return rc;
    sq_i64(&q, 1, source_id);
    sq_text(&q, 2, tbl);
    rc = sq_step(&q, "read a sync checkpoint", e);
    if (rc > 0) {
        out->cursor = sq_col_dup(q.s, 0);
        out->key = sq_col_dup(q.s, 1);
        out->rows = sqlite3_column_int64(q.s, 2);
        out->updated_at = sqlite3_column_int64(q.s, 3);
        out->trail = sq_col_dup(q.s, 4);
        rc = 0;
    }
    sq_done(&q);
    return rc;
}

int store_sync_checkpoint_set(struct store *st, int64_t source_id, const char *tbl,
                              const char *cursor, const char *key, const char *trail,
                              int64_t rows_added, struct err *e)
{
    struct sq q;
    int rc;

    if (!sqlite_writing(st))
        return ERR(e, E_INTERNAL, "a checkpoint moves only inside the transaction of its rows");
    if ((rc = sq_prep(&q, st, &q_ckpt_set, e)))
        return rc;
    sq_i64(&q, 1, source_id);
    sq_text(&q, 2, tbl);
    sq_text(&q, 3, cursor);
    sq_text(&q, 4, key);
    sq_i64(&q, 5, rows_added);
    sq_i64(&q, 6, clock_now_ms());
    sq_text(&q, 7, trail);
    return sq_exec(&q, "move a sync checkpoint", e);
}

/* ---- reconciliations ---------------------------------------------------------------- */

int store_sync_reconciliation_add(struct store *st, const char *source, int64_t started_at,
                                  int64_t mismatches, int repaired, const char *report, int64_t *id,
                                  struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_recon_add, e);

    if (rc)
        return rc;
    sq_text(&q, 1, source);
    sq_i64(&q, 2, started_at);
    sq_i64(&q, 3, clock_now_ms());
    sq_i64(&q, 4, mismatches);
    sq_int(&q, 5, repaired);
    sq_text(&q, 6, report);
    rc = sq_exec(&q, "keep a reconciliation", e);
    if (rc == 0 && id)
        *id = sq_last_id(st);
    return rc;
}

int store_sync_reconciliation_last(struct store *st, const char *source, int64_t *started_at,
                                   struct err *e)
{
    struct sq q;
    int rc;

    *started_at = 0;
    if ((rc = sq_prep(&q, st, &q_recon_last, e)))
        return rc;
    sq_text(&q, 1, source);
    /* An aggregate: always one row; NULL (none kept) reads as 0. */
    return sq_ints(&q, started_at, NULL, "read the last reconciliation", e);
}

struct recon_visit {
    store_reconciliation_fn fn;
    void *ctx;
};

static int row_recon(sqlite3_stmt *s, void *ctx)
{
    struct recon_visit *v = ctx;

    return v->fn(v->ctx, sqlite3_column_int64(s, 0), sq_col_text(s, 1), sqlite3_column_int64(s, 2),
                 sqlite3_column_int64(s, 3), sqlite3_column_int64(s, 4), sqlite3_column_int(s, 5),
                 sq_col_text(s, 6));
}

int store_sync_reconciliations(struct store *st, int64_t before, int limit,
                               store_reconciliation_fn fn, void *ctx, struct err *e)
{
    struct recon_visit v = {fn, ctx};
    struct sq q;
    int rc = sq_prep(&q, st, &q_recons, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, before);
    sq_int(&q, 2, limit);
    return sq_each(&q, "list reconciliations", row_recon, &v, NULL, e);
}
