/* tests/unit/ingest_fixture.h -- a store with the shipped contracts and an ingest session. */
#ifndef ENGAGE_INGEST_FIXTURE_H
#define ENGAGE_INGEST_FIXTURE_H

#include <sqlite3.h>

#include "helpers.h"
#include "ingest/ingest.h"

struct fx {
    char *dir;
    struct config cfg;
    struct store *st;
    struct ingest in;
    struct err e;
};

static inline void fx_open(struct fx *f)
{
    struct store_opts o = {.busy_timeout_ms = 2000, .migrate = 1};
    memset(f, 0, sizeof *f);
    f->dir = test_tmpdir();
    config_defaults(&f->cfg, f->dir);
    cr_assert_eq(store_open(&f->st, f->dir, &o, &f->e), 0, "%s", f->e.msg);
    cr_assert_eq(contracts_seed(f->st, NULL, &f->e), 0, "%s", f->e.msg);
    ingest_init(&f->in, f->st, &f->cfg);
}

static inline void fx_close(struct fx *f)
{
    ingest_release(&f->in);
    store_close(f->st);
    config_release(&f->cfg);
    free(f->dir);
}

/* Runs one record through ingest in its own transaction. */
static inline enum ingest_outcome fx_ingest(struct fx *f, enum source_kind k, int is_event,
                                            const char *json)
{
    struct ingest_ctx cx = {.kind = k,
                            .source = k == SRC_CSV   ? "csv"
                                      : k == SRC_SDK ? "sdk"
                                                     : "api",
                            .origin = "test",
                            .text_mode = k == SRC_CSV,
                            .received_at = clock_now_ms()};
    enum ingest_outcome o;
    json_error_t je;
    json_t *rec = json_loads(json, 0, &je);
    cr_assert_not_null(rec, "bad test JSON: %s", je.text);
    cr_assert_eq(ingest_begin(&f->in, &f->e), 0, "%s", f->e.msg);
    if (is_event)
        cr_assert_eq(ingest_event(&f->in, &cx, rec, &o, &f->e), 0, "%s", f->e.msg);
    else
        cr_assert_eq(ingest_contact(&f->in, &cx, rec, &o, &f->e), 0, "%s", f->e.msg);
    cr_assert_eq(ingest_commit(&f->in, &f->e), 0, "%s", f->e.msg);
    json_decref(rec);
    return o;
}

/* One integer read from the fixture's store by a second connection. */
static inline long long fx_sql_int(struct fx *f, const char *sql)
{
    char path[512];
    sqlite3 *db;
    sqlite3_stmt *s;
    long long v;
    snprintf(path, sizeof path, "%s/engage.db", f->dir);
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
    v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

#endif
