/* store/sqlite/imports.c -- the accounting of CSV imports: one row per import, its
 * counts moved on as it goes. */
#include "sqlite_int.h"

static const struct sq_def q_begin = {
    SQ_IMPORT_BEGIN,
    "INSERT INTO imports(kind, file, status, started_at) VALUES(?1,?2,'running',?3)"};
static const struct sq_def q_progress = {
    SQ_IMPORT_PROGRESS, "UPDATE imports SET status=?2, finished_at=?3, read=?4, inserted=?5,"
                        " updated=?6, duplicates=?7, rejected=?8 WHERE id=?1"};
static const struct sq_def q_list = {
    SQ_IMPORTS, "SELECT id, kind, file, status, started_at, finished_at, read, inserted,"
                " updated, duplicates, rejected FROM imports ORDER BY id DESC LIMIT ?1"};

int store_import_begin(struct store *st, const char *kind, const char *file, int64_t at,
                       int64_t *id, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_begin, e);

    if (rc)
        return rc;
    sq_text(&q, 1, kind);
    sq_text(&q, 2, file);
    sq_i64(&q, 3, at);
    rc = sq_exec(&q, "record import", e);
    if (rc == 0)
        *id = sq_last_id(st);
    return rc;
}

int store_import_progress(struct store *st, const struct store_import *im, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_progress, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, im->id);
    sq_text(&q, 2, im->status);
    sq_i64(&q, 3, im->finished_at);
    sq_i64(&q, 4, im->read);
    sq_i64(&q, 5, im->inserted);
    sq_i64(&q, 6, im->updated);
    sq_i64(&q, 7, im->duplicates);
    sq_i64(&q, 8, im->rejected);
    return sq_exec(&q, "update import", e);
}

struct import_visit {
    store_import_fn fn;
    void *ctx;
};

static int row_import(sqlite3_stmt *s, void *ctx)
{
    struct import_visit *v = ctx;
    struct store_import im = {
        .id = sqlite3_column_int64(s, 0),
        .kind = sq_col_text(s, 1),
        .file = sq_col_text(s, 2),
        .status = sq_col_text(s, 3),
        .started_at = sqlite3_column_int64(s, 4),
        .finished_at = sqlite3_column_int64(s, 5),
        .read = sqlite3_column_int64(s, 6),
        .inserted = sqlite3_column_int64(s, 7),
        .updated = sqlite3_column_int64(s, 8),
        .duplicates = sqlite3_column_int64(s, 9),
        .rejected = sqlite3_column_int64(s, 10),
    };

    return v->fn(v->ctx, &im);
}

int store_imports(struct store *st, int limit, store_import_fn fn, void *ctx, struct err *e)
{
    struct import_visit v = {fn, ctx};
    struct sq q;
    int rc = sq_prep(&q, st, &q_list, e);

    if (rc)
        return rc;
    sq_int(&q, 1, limit > 0 ? limit : -1);
    return sq_each(&q, "list imports", row_import, &v, NULL, e);
}
