/* store/sync.c -- CRM sync's durable state: the sources and one checkpoint per source
 * table (schema 6). Statements are prepared per call: a sync pass makes a few per
 * batch of thousands of rows. */
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

static int prep(struct store *st, const char *sql, sqlite3_stmt **s, struct err *e)
{
    int rc = sqlite3_prepare_v2(store_sql_db(st), sql, -1, s, NULL);

    return rc == SQLITE_OK ? 0 : store_sql_err(st, e, rc, "prepare a sync statement");
}

static char *col_dup(sqlite3_stmt *s, int i)
{
    const unsigned char *v = sqlite3_column_text(s, i);

    return v ? xstrdup((const char *)v) : NULL;
}

void store_sync_source_release(struct store_sync_source *s)
{
    free(s->dsn);
    free(s->password);
    free(s->mapping);
    memset(s, 0, sizeof *s);
}

int store_sync_source_add(struct store *st, const struct store_sync_source *src, int64_t *id,
                          struct err *e)
{
    sqlite3_stmt *s = NULL;
    int64_t now = clock_now_ms();
    int rc = prep(st,
                  "INSERT INTO sync_sources(name, kind, dsn, password, mapping, created_at,"
                  " updated_at, origin) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
                  &s, e);

    if (rc)
        return rc;
    store_sql_bind_text(s, 1, src->name);
    store_sql_bind_text(s, 2, src->kind);
    store_sql_bind_text(s, 3, src->dsn);
    store_sql_bind_text(s, 4, src->password ? src->password : "");
    store_sql_bind_text(s, 5, src->mapping);
    sqlite3_bind_int64(s, 6, now);
    store_sql_bind_text(s, 7, src->origin[0] ? src->origin : "api");
    rc = sqlite3_step(s);
    if (rc == SQLITE_CONSTRAINT)
        rc = ERR(e, E_CONFLICT, "a sync source named \"%s\" exists", src->name);
    else if (rc != SQLITE_DONE)
        rc = store_sql_err(st, e, rc, "add a sync source");
    else
        rc = 0;
    if (rc == 0 && id)
        *id = sqlite3_last_insert_rowid(store_sql_db(st));
    sqlite3_finalize(s);
    return rc;
}

#define SOURCE_COLS                                                                                \
    "id, name, kind, dsn, password, mapping, created_at, updated_at, last_ok_at, last_error,"      \
    " last_error_at, failures, origin"

static void source_row(sqlite3_stmt *s, struct store_sync_source *out)
{
    memset(out, 0, sizeof *out);
    out->id = sqlite3_column_int64(s, 0);
    snprintf(out->name, sizeof out->name, "%s", (const char *)sqlite3_column_text(s, 1));
    snprintf(out->kind, sizeof out->kind, "%s", (const char *)sqlite3_column_text(s, 2));
    out->dsn = col_dup(s, 3);
    out->password = col_dup(s, 4);
    out->mapping = col_dup(s, 5);
    out->created_at = sqlite3_column_int64(s, 6);
    out->updated_at = sqlite3_column_int64(s, 7);
    out->last_ok_at = sqlite3_column_int64(s, 8);
    snprintf(out->last_error, sizeof out->last_error, "%s",
             sqlite3_column_text(s, 9) ? (const char *)sqlite3_column_text(s, 9) : "");
    out->last_error_at = sqlite3_column_int64(s, 10);
    out->failures = sqlite3_column_int64(s, 11);
    snprintf(out->origin, sizeof out->origin, "%s", (const char *)sqlite3_column_text(s, 12));
}

int store_sync_source_get(struct store *st, const char *name, struct store_sync_source *out,
                          struct err *e)
{
    sqlite3_stmt *s = NULL;
    int rc = prep(st, "SELECT " SOURCE_COLS " FROM sync_sources WHERE name = ?1", &s, e);

    memset(out, 0, sizeof *out);
    if (rc)
        return rc;
    store_sql_bind_text(s, 1, name);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        source_row(s, out);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = ERR(e, E_NOTFOUND, "no sync source named \"%s\" (see 'engage sync source list')",
                 name);
    } else {
        rc = store_sql_err(st, e, rc, "read a sync source");
    }
    sqlite3_finalize(s);
    return rc;
}

int store_sync_sources(struct store *st, int (*cb)(void *ctx, const struct store_sync_source *s),
                       void *ctx, struct err *e)
{
    sqlite3_stmt *s = NULL;
    int rc = prep(st, "SELECT " SOURCE_COLS " FROM sync_sources ORDER BY name", &s, e);

    if (rc)
        return rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_sync_source src;
        int stop;
        source_row(s, &src);
        stop = cb(ctx, &src);
        store_sync_source_release(&src);
        if (stop) {
            sqlite3_finalize(s);
            return stop;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : store_sql_err(st, e, rc, "list sync sources");
    sqlite3_finalize(s);
    return rc;
}

int store_sync_source_remove(struct store *st, const char *name, struct err *e)
{
    struct store_sync_source src;
    sqlite3_stmt *s = NULL;
    int rc = store_sync_source_get(st, name, &src, e);

    if (rc)
        return rc;
    static const char *const sql[] = {"DELETE FROM sync_checkpoints WHERE source_id = ?1",
                                      "DELETE FROM sync_sources WHERE id = ?1"};
    size_t i;

    for (i = 0; rc == 0 && i < sizeof sql / sizeof *sql; i++) {
        if ((rc = prep(st, sql[i], &s, e)))
            break;
        sqlite3_bind_int64(s, 1, src.id);
        rc = sqlite3_step(s);
        rc = rc == SQLITE_DONE ? 0 : store_sql_err(st, e, rc, "remove a sync source");
        sqlite3_finalize(s);
    }
    store_sync_source_release(&src);
    return rc;
}

int store_sync_source_status(struct store *st, int64_t id, const char *error, struct err *e)
{
    sqlite3_stmt *s = NULL;
    int64_t now = clock_now_ms();
    int rc = prep(st,
                  error ? "UPDATE sync_sources SET last_error = ?2, last_error_at = ?3,"
                          " failures = failures + 1 WHERE id = ?1"
                        : "UPDATE sync_sources SET last_ok_at = ?3, failures = 0 WHERE id = ?1",
                  &s, e);

    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, id);
    if (error)
        store_sql_bind_text(s, 2, error);
    sqlite3_bind_int64(s, 3, now);
    rc = sqlite3_step(s);
    rc = rc == SQLITE_DONE ? 0 : store_sql_err(st, e, rc, "record a sync pass");
    sqlite3_finalize(s);
    return rc;
}

void store_sync_checkpoint_release(struct store_sync_checkpoint *c)
{
    free(c->cursor);
    free(c->key);
    free(c->trail);
    memset(c, 0, sizeof *c);
}

int store_sync_checkpoint_get(struct store *st, int64_t source_id, const char *tbl,
                              struct store_sync_checkpoint *out, struct err *e)
{
    sqlite3_stmt *s = NULL;
    int rc = prep(st,
                  "SELECT cursor, key, rows, updated_at, trail FROM sync_checkpoints"
                  " WHERE source_id = ?1 AND tbl = ?2",
                  &s, e);

    memset(out, 0, sizeof *out);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, source_id);
    store_sql_bind_text(s, 2, tbl);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->cursor = col_dup(s, 0);
        out->key = col_dup(s, 1);
        out->rows = sqlite3_column_int64(s, 2);
        out->updated_at = sqlite3_column_int64(s, 3);
        out->trail = col_dup(s, 4);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? 0 : store_sql_err(st, e, rc, "read a sync checkpoint");
    }
    sqlite3_finalize(s);
    return rc;
}

int store_sync_checkpoint_set(struct store *st, int64_t source_id, const char *tbl,
                              const char *cursor, const char *key, const char *trail,
                              int64_t rows_added, struct err *e)
{
    sqlite3_stmt *s = NULL;
    int rc;

    if (!store_sql_writing(st))
        return ERR(e, E_INTERNAL, "a checkpoint moves only inside the transaction of its rows");
    rc = prep(st,
              "INSERT INTO sync_checkpoints(source_id, tbl, cursor, key, rows, updated_at, trail)"
              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(source_id, tbl) DO UPDATE SET"
              " cursor = excluded.cursor, key = excluded.key, rows = rows + excluded.rows,"
              " updated_at = excluded.updated_at, trail = coalesce(excluded.trail, trail)",
              &s, e);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, source_id);
    store_sql_bind_text(s, 2, tbl);
    store_sql_bind_text(s, 3, cursor);
    store_sql_bind_text(s, 4, key);
    sqlite3_bind_int64(s, 5, rows_added);
    sqlite3_bind_int64(s, 6, clock_now_ms());
    store_sql_bind_text(s, 7, trail);
    rc = sqlite3_step(s);
    rc = rc == SQLITE_DONE ? 0 : store_sql_err(st, e, rc, "move a sync checkpoint");
    sqlite3_finalize(s);
    return rc;
}

int store_sync_reconciliation_add(struct store *st, const char *source, int64_t started_at,
                                  int64_t mismatches, int repaired, const char *report,
                                  int64_t *id, struct err *e)
{
    sqlite3_stmt *s = NULL;
    int rc = prep(st,
                  "INSERT INTO sync_reconciliations(source, started_at, finished_at, mismatches,"
                  " repaired, report) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                  &s, e);

    if (rc)
        return rc;
    store_sql_bind_text(s, 1, source);
    sqlite3_bind_int64(s, 2, started_at);
    sqlite3_bind_int64(s, 3, clock_now_ms());
    sqlite3_bind_int64(s, 4, mismatches);
    sqlite3_bind_int(s, 5, repaired);
    store_sql_bind_text(s, 6, report);
    rc = sqlite3_step(s);
    rc = rc == SQLITE_DONE ? 0 : store_sql_err(st, e, rc, "keep a reconciliation");
    if (rc == 0 && id)
        *id = sqlite3_last_insert_rowid(store_sql_db(st));
    sqlite3_finalize(s);
    return rc;
}

int store_sync_reconciliation_last(struct store *st, const char *source, int64_t *started_at,
                                   struct err *e)
{
    sqlite3_stmt *s = NULL;
    int rc = prep(st, "SELECT max(started_at) FROM sync_reconciliations WHERE source = ?1", &s, e);

    *started_at = 0;
    if (rc)
        return rc;
    store_sql_bind_text(s, 1, source);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *started_at = sqlite3_column_int64(s, 0); /* NULL (none kept) reads as 0 */
        rc = 0;
    } else {
        rc = store_sql_err(st, e, rc, "read the last reconciliation");
    }
    sqlite3_finalize(s);
    return rc;
}

int store_sync_reconciliations(struct store *st, int64_t before, int limit,
                               store_reconciliation_fn fn, void *ctx, struct err *e)
{
    sqlite3_stmt *s = NULL;
    int rc = prep(st,
                  "SELECT id, source, started_at, finished_at, mismatches, repaired, report"
                  " FROM sync_reconciliations WHERE ?1 = 0 OR id < ?1 ORDER BY id DESC LIMIT ?2",
                  &s, e);

    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, before);
    sqlite3_bind_int(s, 2, limit);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int stop = fn(ctx, sqlite3_column_int64(s, 0), (const char *)sqlite3_column_text(s, 1),
                      sqlite3_column_int64(s, 2), sqlite3_column_int64(s, 3),
                      sqlite3_column_int64(s, 4), sqlite3_column_int(s, 5),
                      (const char *)sqlite3_column_text(s, 6));
        if (stop) {
            sqlite3_finalize(s);
            return stop;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : store_sql_err(st, e, rc, "list reconciliations");
    sqlite3_finalize(s);
    return rc;
}
