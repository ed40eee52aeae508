/* tests/unit/store.c -- migrations, sequences, dead letters, backup, concurrency, the kept
 * sync reconciliations. */
#include <sqlite3.h>
#include <stdlib.h>

#include "helpers.h"
#include "store/store.h"

static struct store *open_at(const char *dir, int timeout_ms)
{
    struct store_opts o = {.busy_timeout_ms = timeout_ms, .migrate = 1};
    struct store *st = NULL;
    struct err e = {0};
    cr_assert_eq(store_open(&st, dir, &o, &e), 0, "%s", e.msg);
    return st;
}

static void set_user_version(const char *dir, int v)
{
    char path[512], sql[64];
    sqlite3 *db;
    snprintf(path, sizeof path, "%s/engage.db", dir);
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

UTEST(store, fresh_store_is_migrated)
{
    char *d = test_tmpdir();
    struct store *st = open_at(d, 1000);
    struct err e = {0};
    int v, from, to;
    cr_assert_eq(store_schema_version(st, &v, &e), 0);
    cr_assert_eq(v, STORE_SCHEMA_VERSION);
    cr_assert_eq(store_migrate(st, &from, &to, &e), 0);
    cr_assert_eq(from, to, "a second migrate is a no-op");
    store_close(st);
    free(d);
}

UTEST(store, newer_schema_is_refused)
{
    char *d = test_tmpdir();
    struct store_opts o = {.busy_timeout_ms = 100, .migrate = 1};
    struct store *st = open_at(d, 1000);
    struct err e = {0};
    store_close(st);
    set_user_version(d, STORE_SCHEMA_VERSION + 5);
    st = NULL;
    cr_assert_eq(store_open(&st, d, &o, &e), E_CONFLICT);
    cr_assert(strstr(e.msg, "newer than this binary"), "%s", e.msg);
    cr_assert_null(st);
    free(d);
}

UTEST(store, older_schema_needs_migrate_when_not_migrating)
{
    char *d = test_tmpdir();
    struct store_opts o = {.busy_timeout_ms = 100, .migrate = 0};
    struct store *st = NULL;
    struct err e = {0};
    cr_assert_eq(store_open(&st, d, &o, &e), E_CONFLICT, "an empty store is version 0");
    cr_assert(strstr(e.msg, "engage migrate"), "%s", e.msg);
    free(d);
}

UTEST(store, change_sequences_increase_on_every_change)
{
    char *d = test_tmpdir();
    struct store *st = open_at(d, 1000);
    struct store_contact c;
    struct err e = {0};
    int64_t s1, s2, name_id;
    struct store_event ev = {0};
    int ins;

    store_contact_init(&c);
    c.external_id = strdup("x1");
    c.attrs = json_object();
    cr_assert_eq(store_begin(st, &e), 0);
    cr_assert_eq(store_contact_insert(st, &c, &e), 0, "%s", e.msg);
    s1 = c.seq;
    cr_assert_eq(store_contact_update(st, &c, &e), 0);
    s2 = c.seq;
    cr_assert_gt(s2, s1);
    cr_assert_eq(store_event_name_id(st, "signup", 1, &name_id, &e), 0);
    ev.contact_id = c.id;
    ev.name_id = name_id;
    ev.event_id = "e1";
    ev.source = "test";
    ev.props = "{}";
    cr_assert_eq(store_event_insert(st, &ev, &ins, &e), 0);
    cr_assert_eq(ins, 1);
    cr_assert_eq(store_event_insert(st, &ev, &ins, &e), 0);
    cr_assert_eq(ins, 0, "the same event_id is stored once");
    cr_assert_eq(store_commit(st, &e), 0);
    /* A later transaction continues after the committed maximum. */
    cr_assert_eq(store_begin(st, &e), 0);
    cr_assert_eq(store_contact_update(st, &c, &e), 0);
    cr_assert_gt(c.seq, s2);
    store_rollback(st);
    store_contact_release(&c);
    store_close(st);
    free(d);
}

static int count_rows(void *ctx, const struct store_rejected *r)
{
    (void)r;
    ++*(int *)ctx;
    return 0;
}

UTEST(store, pending_dead_letters_are_kept_once)
{
    char *d = test_tmpdir();
    struct store *st = open_at(d, 1000);
    struct store_rejected r = {.source = "csv", .kind = "event", .reason = "bad_row",
                               .message = "m", .raw = "{}", .fingerprint = "fp1"};
    struct store_rejected_filter f = {.status = "pending"};
    struct err e = {0};
    int64_t id1, id2;
    int n = 0;

    cr_assert_eq(store_rejected_add(st, &r, &id1, &e), 0);
    cr_assert_eq(store_rejected_add(st, &r, &id2, &e), 0);
    cr_assert_gt(id1, 0);
    cr_assert_eq(id2, 0, "same fingerprint while pending: not added");
    cr_assert_eq(store_rejected_list(st, &f, count_rows, &n, &e), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(store_rejected_update(st, id1, "replayed", NULL, NULL, NULL, 1, &e), 0);
    cr_assert_eq(store_rejected_add(st, &r, &id2, &e), 0);
    cr_assert_gt(id2, id1, "once replayed, the same payload can be rejected again");
    store_close(st);
    free(d);
}

UTEST(store, second_writer_waits_then_reports_busy)
{
    char *d = test_tmpdir();
    struct store *a = open_at(d, 1000), *b = open_at(d, 200);
    struct err e = {0};

    cr_assert_eq(store_begin(a, &e), 0);
    cr_assert_eq(store_begin(b, &e), E_BUSY, "%s", e.msg);
    store_rollback(a);
    err_clear(&e);
    cr_assert_eq(store_begin(b, &e), 0, "free once the first writer is done: %s", e.msg);
    store_rollback(b);
    store_close(a);
    store_close(b);
    free(d);
}

UTEST(store, readers_are_not_blocked_by_a_writer)
{
    char *d = test_tmpdir();
    struct store *a = open_at(d, 1000), *b = open_at(d, 100);
    struct store_counts c;
    struct err e = {0};

    cr_assert_eq(store_begin(a, &e), 0);
    cr_assert_eq(store_counts(b, &c, &e), 0, "WAL: reads go on during a write: %s", e.msg);
    store_rollback(a);
    store_close(a);
    store_close(b);
    free(d);
}

UTEST(store, online_backup_copies_everything)
{
    char *d = test_tmpdir();
    struct store *st = open_at(d, 1000), *copy;
    struct store_contact c;
    struct err e = {0};
    char dest[512], dest_dir[512];

    store_contact_init(&c);
    c.external_id = strdup("b1");
    c.attrs = json_pack("{s:s}", "city", "Pune");
    cr_assert_eq(store_begin(st, &e), 0);
    cr_assert_eq(store_contact_insert(st, &c, &e), 0);
    cr_assert_eq(store_commit(st, &e), 0);
    store_contact_release(&c);
    snprintf(dest_dir, sizeof dest_dir, "%s/copy", d);
    cr_assert_eq(dir_ensure(dest_dir, &e), 0);
    snprintf(dest, sizeof dest, "%s/engage.db", dest_dir);
    cr_assert_eq(store_backup(st, dest, &e), 0, "%s", e.msg);
    cr_assert_eq(store_backup(st, dest, &e), E_CONFLICT, "never overwrites");
    copy = open_at(dest_dir, 1000);
    cr_assert_eq(store_contact_get_by_xid(copy, "b1", &c, &e), 0);
    cr_assert_str_eq(json_string_value(json_object_get(c.attrs, "city")), "Pune");
    store_contact_release(&c);
    store_close(copy);
    store_close(st);
    free(d);
}

UTEST(store, last_reconciliation_of_a_source)
{
    char *d = test_tmpdir();
    struct store *st = open_at(d, 1000);
    struct err e = {0};
    int64_t last = -1;
    cr_assert_eq(store_sync_reconciliation_last(st, "crm", &last, &e), 0, "%s", e.msg);
    cr_assert_eq(last, 0, "none kept");
    cr_assert_eq(store_sync_reconciliation_add(st, "crm", 2000, 1, 0, "{}", NULL, &e), 0);
    cr_assert_eq(store_sync_reconciliation_add(st, "crm", 5000, 0, 1, "{}", NULL, &e), 0);
    cr_assert_eq(store_sync_reconciliation_add(st, "crm", 3000, 0, 0, "{}", NULL, &e), 0);
    cr_assert_eq(store_sync_reconciliation_add(st, "books", 9000, 0, 0, "{}", NULL, &e), 0);
    cr_assert_eq(store_sync_reconciliation_last(st, "crm", &last, &e), 0, "%s", e.msg);
    cr_assert_eq(last, 5000, "the newest start of that source");
    cr_assert_eq(store_sync_reconciliation_last(st, "crm' OR '1'='1", &last, &e), 0);
    cr_assert_eq(last, 0, "the name is bound, not spliced");
    store_close(st);
    free(d);
}
