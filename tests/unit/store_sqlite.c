/* tests/unit/store_sqlite.c -- what only the SQLite backend does: its location strings
 * and files (modes, WAL, backups), its schema versions and the migrations of old
 * files, its single writer, damaged event blocks. The promises every backend keeps are
 * in store.c and events.c. */
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "store/sqlite/sqlite_int.h"
#include "store_fixture.h"

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

UTEST(store, newer_schema_is_refused)
{
    char *d = test_tmpdir();
    struct store_opts o = {.busy_timeout_ms = 100, .migrate = 1};
    struct store *st = open_with(d, 1000);
    struct err e = {0};
    store_close(st);
    set_user_version(d, STORE_SCHEMA_VERSION + 5);
    st = NULL;
    cr_assert_eq(store_open(&st, d, &o, &e), E_CONFLICT);
    cr_assert(strstr(e.msg, "newer than this binary"), "%s", e.msg);
    cr_assert_null(st);
    free(d);
}

UTEST(store, second_writer_waits_then_reports_busy)
{
    char *d = test_tmpdir();
    struct store *a = open_with(d, 1000), *b = open_with(d, 200);
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

UTEST(store, online_backup_copies_everything)
{
    char *d = test_tmpdir();
    struct store *st = open_with(d, 1000), *copy;
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
    copy = open_with(dest_dir, 1000);
    cr_assert_eq(store_contact_get_by_xid(copy, "b1", &c, &e), 0);
    cr_assert_str_eq(json_string_value(json_object_get(c.attrs, "city")), "Pune");
    store_contact_release(&c);
    store_close(copy);
    store_close(st);
    free(d);
}

static void sql_exec(const char *dir, const char *sql)
{
    char path[512];
    sqlite3 *db;
    char *msg = NULL;
    snprintf(path, sizeof path, "%s/engage.db", dir);
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, &msg), SQLITE_OK, "%s: %s", sql, msg);
    sqlite3_close(db);
}

UTEST(events, a_damaged_block_is_an_error_not_a_crash)
{
    char *d = test_tmpdir();
    struct store *st = open_at(d);
    struct err e = {0};
    struct since s = {0};
    int64_t nm;

    begin(st);
    nm = name_id(st, "order");
    put(st, "a", 1, nm, 10);
    commit(st);
    store_close(st);
    sql_exec(d, "UPDATE event_blocks SET cols = x'0102'");
    st = open_at(d);
    cr_assert_eq(store_events_since(st, 0, 0, 0, on_version, &s, &e), E_CORRUPT);
    cr_assert_str_eq(e.msg, "store: event block 1 is damaged");
    err_clear(&e);
    cr_assert_eq(store_event_get(st, "a", grab, &(struct got){0}, &e), E_CORRUPT);
    store_close(st);
    free(d);
}

/* A store at schema 3 (events as rows) is moved into blocks by the migration. */
UTEST(events, the_v3_migration_moves_rows_into_blocks)
{
    char *d = test_tmpdir();
    struct store *st;
    struct got g;
    struct list l = {0};
    struct err e = {0};
    int i;

    {
        char path[512];
        sqlite3 *db;
        snprintf(path, sizeof path, "%s/engage.db", d);
        cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
        for (i = 0; i < 3; i++)
            cr_assert_eq(sqlite3_exec(db, sqlite_migrations[i], NULL, NULL, NULL), SQLITE_OK);
        cr_assert_eq(
            sqlite3_exec(
                db,
                "PRAGMA user_version = 3;"
                "INSERT INTO contacts(id, external_id, attrs, consent, created_at, updated_at, seq)"
                " VALUES (1, 'c1', '{}', 0, 1, 1, 1), (2, NULL, '{}', 0, 1, 1, 2);"
                "INSERT INTO event_names(id, name) VALUES (1, 'order');"
                "INSERT INTO events(event_id, contact_id, name_id, occurred_at, received_at, "
                "source,"
                " contract_version, props, seq, deleted, anon) VALUES"
                " ('e1', 1, 1, 100, 5, 'csv', 1, '{\"a\":1}', 3, 0, 0),"
                " ('e2', 2, 1, 200, 5, 'sdk', 0, '{}', 9, 0, 1),"
                " ('e3', 1, 1, 300, 5, 'sync:crm', 2, '{}', 12, 1, 0);",
                NULL, NULL, NULL),
            SQLITE_OK, "%s", sqlite3_errmsg(db));
        sqlite3_close(db);
    }
    st = open_at(d);
    g = get(st, "e1");
    cr_assert_eq(g.n, 1);
    cr_assert_eq(g.ev.seq, 1, "seqs renumbered from 1, in the old seq order");
    cr_assert_str_eq(g.props, "{\"a\":1}");
    cr_assert(get(st, "e3").ev.deleted, "a deleted row stays deleted");
    cr_assert_eq(counts(st).events, 2);
    cr_assert_eq(counts(st).events_unvalidated, 1);
    begin(st);
    {
        int64_t moved = 0;
        cr_assert_eq(store_events_move(st, 2, 1, &moved, &e), 0, "%s", e.msg);
        cr_assert_eq(moved, 1, "the anonymous row is still listed for a merge");
        cr_assert_eq(put(st, "e3", 1, 1, 0), 0, "a deleted event keeps its id");
    }
    commit(st);
    cr_assert_eq(store_events_live(st, 0, on_listed, &l, &e), 0);
    cr_assert_eq(l.n, 2);
    store_close(st);
    free(d);
}

/* A store at schema 10 (the latest before the send half) gains its tables, and the
 * ledger works on its contacts. */
static int grab_msg(void *ctx, const struct store_msg *m)
{
    struct store_msg *out = ctx;
    *out = *m; /* the ids only are read after the callback */
    return 0;
}

UTEST(store, the_v11_and_v12_migrations_add_the_send_and_engagement_tables)
{
    char *d = test_tmpdir(), path[512];
    struct store_campaign c = {.name = "c", .state = "draft", .created_by = "t"};
    struct store_run r = {.state = "running", .provider = "smtp", .created_by = "t"};
    struct store_msg got = {0};
    struct store *st = open_with(d, 1000);
    struct err e = {0};
    int64_t contact = 1, n = 0;
    sqlite3 *db;
    int v;

    store_close(st);
    snprintf(path, sizeof path, "%s/engage.db", d);
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(
        sqlite3_exec(db,
                     "DROP TABLE templates; DROP TABLE template_versions;"
                     " DROP TABLE campaigns; DROP TABLE campaign_runs;"
                     " DROP TABLE messages; DROP TABLE run_counts;"
                     " DROP TABLE message_events; DROP TABLE run_stats;"
                     " DROP TABLE run_minutes; DROP TABLE webhook_inbox; DROP TABLE journals;"
                     " DROP TABLE run_log;"
                     " PRAGMA user_version = 10;"
                     "INSERT INTO contacts(id, external_id, email, attrs, consent,"
                     " created_at, updated_at, seq) VALUES"
                     " (1, 'c1', 'c1@example.com', '{}', 0, 1, 1, 1);",
                     NULL, NULL, NULL),
        SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
    st = open_with(d, 1000);
    cr_assert_eq(store_schema_version(st, &v, &e), 0);
    cr_assert_eq(v, STORE_SCHEMA_VERSION);
    begin(st);
    cr_assert_eq(store_campaign_insert(st, &c, &e), 0, "%s", e.msg);
    r.campaign_id = c.id;
    cr_assert_eq(store_run_insert(st, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(store_messages_create(st, r.id, &contact, 1, 1, 1, 5, &n, &e), 0, "%s", e.msg);
    cr_assert_eq(n, 1);
    cr_assert_eq(store_messages_claim(st, r.id, "o", 5, 1000, 10, grab_msg, &got, &e), 0, "%s",
                 e.msg);
    commit(st);
    cr_assert_eq(got.contact_id, 1);
    store_close(st);
    free(d);
}

/* ---- locations, files, capabilities ---- */

UTEST(sqlite, a_bare_path_and_sqlite_dir_open_the_same_store)
{
    char *d = test_tmpdir(), loc[600];
    struct store *a = open_with(d, 1000), *b;
    struct store_contact c;
    struct err e = {0};

    store_contact_init(&c);
    c.external_id = strdup("same");
    c.attrs = json_object();
    cr_assert_eq(store_begin(a, &e), 0);
    cr_assert_eq(store_contact_insert(a, &c, &e), 0, "%s", e.msg);
    cr_assert_eq(store_commit(a, &e), 0);
    store_contact_release(&c);
    snprintf(loc, sizeof loc, "sqlite:%s", d);
    b = open_with(loc, 1000);
    cr_assert_eq(store_contact_get_by_xid(b, "same", &c, &e), 0, "%s", e.msg);
    store_contact_release(&c);
    store_close(a);
    store_close(b);
    free(d);
}

UTEST(sqlite, locations_it_cannot_serve_are_refused_by_name)
{
    static const char *const bad[] = {"postgresql://db.example/engage", "postgres://u@h/x",
                                      "mysql://h/x", "sqlite:", ""};
    struct store_opts o = {.busy_timeout_ms = 100, .migrate = 1};
    enum store_kind kind;
    const char *where;
    struct err e = {0};
    size_t i;

    for (i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct store *st = (struct store *)1;
        err_clear(&e);
        cr_assert_eq(store_open(&st, bad[i], &o, &e), E_INVAL, "'%s'", bad[i]);
        cr_assert_null(st);
        if (bad[i][0])
            cr_assert(strstr(e.msg, bad[i]), "the message names the location: %s", e.msg);
    }
    err_clear(&e);
    cr_assert_eq(store_open(&(struct store *){NULL}, "postgresql://h/db", &o, &e), E_INVAL);
    cr_assert(strstr(e.msg, "PostgreSQL backend is not built yet"), "%s", e.msg);
    cr_assert_eq(store_location_parse("postgres://h/db", &kind, &where, &e), 0);
    cr_assert_eq(kind, STORE_PG);
    cr_assert_eq(store_location_parse("sqlite:/var/x", &kind, &where, &e), 0);
    cr_assert_eq(kind, STORE_SQLITE);
    cr_assert_str_eq(where, "/var/x");
    cr_assert_eq(store_location_parse("./engage-data", &kind, &where, &e), 0);
    cr_assert_str_eq(where, "./engage-data", "a bare path is a SQLite directory");
    cr_assert_eq(store_location_parse("/tmp/a:b", &kind, &where, &e), 0);
    cr_assert_str_eq(where, "/tmp/a:b", "a colon inside a path is no scheme");
    cr_assert_eq(store_location_parse("backup:2024", &kind, &where, &e), 0, "%s", e.msg);
    cr_assert_eq(kind, STORE_SQLITE);
    cr_assert_str_eq(where, "backup:2024", "a word and a colon, without //, is a directory");
    cr_assert_eq(store_location_parse("d:1", &kind, &where, &e), 0);
    cr_assert_str_eq(where, "d:1");
}

UTEST(sqlite, a_location_says_whether_it_holds_a_store)
{
    char *d = test_tmpdir(), loc[600];
    struct err e = {0};
    int exists = -1;

    snprintf(loc, sizeof loc, "sqlite:%s", d);
    cr_assert_eq(store_exists(loc, &exists, &e), 0, "%s", e.msg);
    cr_assert_eq(exists, 0, "an empty directory");
    store_close(open_with(d, 100));
    cr_assert_eq(store_exists(loc, &exists, &e), 0, "%s", e.msg);
    cr_assert_eq(exists, 1);
    cr_assert_eq(store_exists(d, &exists, &e), 0, "%s", e.msg);
    cr_assert_eq(exists, 1, "the bare path too");
    cr_assert_eq(store_exists("postgres://h/db", &exists, &e), E_INVAL);
    free(d);
}

UTEST(sqlite, a_pool_opens_by_location_too)
{
    char *d = test_tmpdir(), loc[600];
    struct store_opts o = {.busy_timeout_ms = 100, .migrate = 1};
    struct store_pool *p = NULL;
    struct err e = {0};

    snprintf(loc, sizeof loc, "sqlite:%s", d);
    cr_assert_eq(store_pool_new(&p, loc, 2, &o, &e), 0, "%s", e.msg);
    cr_assert_eq(store_ping(store_pool_get(p), &e), 0, "%s", e.msg);
    store_pool_free(p);
    cr_assert_eq(store_pool_new(&p, "postgresql://h/db", 2, &o, &e), E_INVAL);
    free(d);
}

UTEST(sqlite, the_directory_and_files_are_private)
{
    char *d = test_tmpdir(), path[600];
    struct store *st;
    struct stat sb;

    cr_assert_eq(chmod(d, 0755), 0);
    st = open_with(d, 1000);
    cr_assert_eq(stat(d, &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0700, "the directory is made 0700");
    snprintf(path, sizeof path, "%s/engage.db", d);
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0600);
    snprintf(path, sizeof path, "%s/engage.db-wal", d);
    cr_assert_eq(stat(path, &sb), 0, "WAL mode");
    cr_assert_eq(sb.st_mode & 0777, 0600);
    store_close(st);
    free(d);
}

UTEST(sqlite, offers_every_speed_hint)
{
    char *d = test_tmpdir();
    struct store *st = open_with(d, 1000);
    const struct store_caps *caps = store_caps(st);

    cr_assert(caps->event_key_hash);
    cr_assert_not_null(caps->events_reserve);
    cr_assert_not_null(caps->event_prefetch);
    caps->events_reserve(st, 1000);
    caps->event_prefetch(st, store_event_key_hash("x"));
    store_close(st);
    free(d);
}
