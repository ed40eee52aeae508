/* store/sqlite/stmt.c -- the one way the SQLite backend runs a statement.
 *
 * DESIGN: see sqlite_int.h. A fixed statement is prepared once per connection into
 * its slot of store.stmts and reused (bind, step, reset): the hot paths of ingestion
 * cost no prepare. Every SQLite failure becomes an E_* code here, recorded once with
 * the action that failed, so the table files only say what they were doing. */
#include <stdlib.h>
#include <string.h>

#include "sqlite_int.h"

int sq_err(struct store *st, struct err *e, int rc, const char *what)
{
    int code = E_INTERNAL;

    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        code = E_BUSY;
    else if (rc == SQLITE_CONSTRAINT)
        code = E_CONFLICT;
    else if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB)
        code = E_CORRUPT;
    else if (rc == SQLITE_IOERR || rc == SQLITE_FULL || rc == SQLITE_CANTOPEN)
        code = E_IO;
    else if (rc == SQLITE_NOMEM)
        code = E_NOMEM;
    return ERR(e, code, "store: %s: %s", what,
               st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
}

int sq_prep(struct sq *q, struct store *st, const struct sq_def *def, struct err *e)
{
    sqlite3_stmt **slot = &st->stmts[def->id];
    int rc;

    q->st = st;
    q->own = 0;
    q->bind = 0;
    if (*slot == NULL) {
        rc = sqlite3_prepare_v3(st->db, def->sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL);
        if (rc != SQLITE_OK) {
            q->s = NULL;
            return sq_err(st, e, rc, "prepare");
        }
        st->defs[def->id] = def;
    }
    ASSERT(st->defs[def->id] == def); /* two statements given one id */
    q->s = *slot;
    return 0;
}

int sq_prep_sql(struct sq *q, struct store *st, const char *sql, struct err *e)
{
    int rc;

    q->st = st;
    q->own = 1;
    q->bind = 0;
    q->s = NULL;
    rc = sqlite3_prepare_v2(st->db, sql, -1, &q->s, NULL);
    return rc == SQLITE_OK ? 0 : sq_err(st, e, rc, "prepare");
}

void sq_done(struct sq *q)
{
    if (q->s == NULL)
        return;
    if (q->own)
        sqlite3_finalize(q->s);
    else
        sq_reset(q);
    q->s = NULL;
}

void sq_reset(struct sq *q)
{
    sqlite3_reset(q->s);
    sqlite3_clear_bindings(q->s);
    q->bind = 0;
}

int sq_step(struct sq *q, const char *what, struct err *e)
{
    int rc;

    if (q->bind)
        return sq_err(q->st, e, q->bind, what);
    rc = sqlite3_step(q->s);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return sq_err(q->st, e, rc, what);
}

int sq_exec(struct sq *q, const char *what, struct err *e)
{
    int rc = sq_step(q, what, e);

    sq_done(q);
    return rc > 0 ? 0 : rc;
}

int sq_exec_unique(struct sq *q, const char *what, struct err *e)
{
    int rc = q->bind ? q->bind : sqlite3_step(q->s);

    if (rc == SQLITE_CONSTRAINT)
        rc = E_CONFLICT;
    else if (rc == SQLITE_DONE || rc == SQLITE_ROW)
        rc = 0;
    else
        rc = sq_err(q->st, e, rc, what);
    sq_done(q);
    return rc;
}

int sq_each(struct sq *q, const char *what, sq_row_fn row, void *ctx, int *rows, struct err *e)
{
    int rc, n = 0;

    while ((rc = sq_step(q, what, e)) > 0) {
        n++;
        rc = row(q->s, ctx);
        if (rc != 0)
            break; /* the callback's own code */
    }
    sq_done(q);
    if (rows)
        *rows = n;
    return rc;
}

struct count_visit {
    store_count_fn fn;
    void *ctx;
};

static int row_count(sqlite3_stmt *s, void *ctx)
{
    struct count_visit *v = ctx;

    return v->fn(v->ctx, sq_col_text(s, 0), sqlite3_column_int64(s, 1));
}

int sq_counts(struct sq *q, const char *what, store_count_fn fn, void *ctx, struct err *e)
{
    struct count_visit v = {fn, ctx};

    return sq_each(q, what, row_count, &v, NULL, e);
}

int sq_ints(struct sq *q, int64_t *a, int64_t *b, const char *what, struct err *e)
{
    int rc = sq_step(q, what, e);

    *a = rc > 0 ? sqlite3_column_int64(q->s, 0) : 0;
    if (b)
        *b = rc > 0 ? sqlite3_column_int64(q->s, 1) : 0;
    sq_done(q);
    return rc > 0 ? 0 : rc;
}

int sq_script(struct store *st, const char *sql, struct err *e)
{
    char *msg = NULL;
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);

    if (rc != SQLITE_OK) {
        int code = rc == SQLITE_BUSY ? E_BUSY : E_INTERNAL;
        ERR(e, code, "store: %s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return code;
    }
    return 0;
}

void sq_rollback(struct store *st)
{
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

char *sq_col_dup(sqlite3_stmt *s, int i)
{
    const char *v = sq_col_text(s, i);

    return v ? xstrdup(v) : NULL;
}
