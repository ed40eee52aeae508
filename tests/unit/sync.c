/* tests/unit/sync.c -- CRM sync: a row prepared straight from its values (the fast path)
 * is prepared exactly as through a JSON record and ingest_event_prepare(); when the
 * nightly reconciliation of `engage serve` is due; what a source's DSN and password
 * reference may name, from the API and from the CLI (policy.c). */
#include <libpq-fe.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "core/secret.h"
#include "ingest_fixture.h"
#include "rnd_json.h"
#include "sync/sync.h"

static void put_contract(struct fx *f, const char *name, const char *body)
{
    int v;
    cr_assert_eq(store_begin(f->st, &f->e), 0);
    cr_assert_eq(store_contract_put(f->st, name, "event", body, "test", &v, &f->e), 0, "%s",
                 f->e.msg);
    cr_assert_eq(store_commit(f->st, &f->e), 0);
}

/* Rounds of two kinds: values a CRM holds for these columns (the first `valid` of a
 * pool), or anything at all, now and then any JSON value. */
static int valid_round;

static void add_from(struct buf *row, const char *const *pool, size_t n, size_t valid)
{
    if (valid_round) {
        buf_adds(row, pool[rnd((unsigned)valid)]);
    } else if (rnd(8) == 0) {
        json_t *v = rnd_value(0);
        char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        buf_adds(row, t);
        free(t);
        json_decref(v);
    } else {
        buf_adds(row, pool[rnd((unsigned)n)]);
    }
    buf_addc(row, ',');
}
#define ADD(row, a, valid) add_from(row, a, sizeof a / sizeof *a, valid)

static void teardown(struct fx *f, struct buf *row, struct buf *scratch, struct sync_batch *b,
                     struct sync_mapping *m, struct contract_set *cs)
{
    buf_release(row);
    buf_release(scratch);
    sync_batch_release(b);
    sync_mapping_release(m);
    contract_set_free(cs);
    fx_close(f);
}

UTEST(sync, a_row_prepared_from_its_values_is_prepared_as_from_its_record)
{
    static const char *const ids[] = {"1", "42", "\"k-7\"", "\"\"", "1.5", "null", "true"};
    static const char *const cursors[] = {"\"2026-01-01T00:00:00Z\""};
    static const char *const who[] = {"\"c1\"", "\"c2\"", "17",           "\"Ünïcode\"",
                                      "\"\"",   "null",   "\"a\\u0001\"", "1.5"};
    static const char *const dels[] = {"null", "null", "null", "0", "false", "true", "1"};
    static const char *const ats[] = {"\"2026-03-04T05:06:07Z\"",
                                      "\"2026-03-04T05:06:07.5Z\"",
                                      "\"2026-03-04\"",
                                      "\"1969-07-20T20:17:40Z\"",
                                      "\"soon\"",
                                      "null",
                                      "1700000000"};
    static const char *const kinds[] = {"\"typed\"",
                                        "\"typed\"",
                                        "\"strict\"",
                                        "\"order_created\"",
                                        "\"free_form\"",
                                        "\"bad\\u0001\"",
                                        "\"\"",
                                        "null",
                                        "5"};
    static const char *const strs[] = {"\"abc\"", "\"\"", "\"x y\"", "null", "0.1",
                                       "12",      "1.25", "\"ABC\"", "true", "{\"a\":1}"};
    static const char *const nums[] = {"0",     "5",    "2.5",  "\"3.25\"", "\"7\"",
                                       "1e300", "-1",   "-0.5", "\"abc\"",  "\"\"",
                                       "null",  "true", "[1]"};
    static const char *const ints[] = {"3",   "-4",      "2.0",   "\"12\"", "null",
                                       "2.5", "\"1.5\"", "\"x\"", "false",  "9.3e18"};
    static const char *const bools[] = {"true", "false",   "\"true\"", "\"FALSE\"",
                                        "null", "\"yes\"", "1"};
    static const char *const stamps[] = {"\"2026-01-02T03:04:05Z\"",
                                         "\"2026-01-02\"",
                                         "\"2026-01-02T03:04:05+05:30\"",
                                         "\"yesterday\"",
                                         "0",
                                         "null",
                                         "\"\""};
    static const char *const enums[] = {"\"x\"", "\"y\"", "null", "\"z\"", "1"};
    static const char *const mails[] = {"\"a@b.co\"", "null", "\"nope\"", "\"\"", "3"};
    static const char *const currencies[] = {"\"INR\"", "\"inr\"", "\"EURO\"", "null", "7"};
    static const char *const columns[] = {"id",  "u",   "who",  "del", "at",  "kind", "c_s",  "c_n",
                                          "c_i", "c_b", "c_ts", "c_e", "c_m", "c_x",  "c_cur"};
    const char *mapping =
        "{\"tables\":[{\"table\":\"t\",\"into\":\"events\",\"key\":\"id\",\"cursor\":\"u\","
        "\"external_id\":\"who\",\"event\":{\"column\":\"kind\"},\"occurred_at\":\"at\","
        "\"deleted\":\"del\",\"properties\":{\"s\":\"c_s\",\"n\":\"c_n\",\"i\":\"c_i\","
        "\"b\":\"c_b\",\"ts\":\"c_ts\",\"e\":\"c_e\",\"m\":\"c_m\",\"extra\":\"c_x\","
        "\"order_id\":\"c_s\",\"amount\":\"c_n\",\"currency\":\"c_cur\",\"created_at\":\"c_ts\"}}]"
        "}";
    struct sync_mapping m;
    struct errlist errs = {0};
    struct sync_batch b = {0};
    struct contract_set *cs;
    struct buf row, scratch;
    struct fx f;
    struct ingest_ctx cx = {
        .kind = SRC_SYNC, .source = "sync:crm", .owns_rows = 1, .received_at = 1790000000000LL};
    const struct sync_table *t;
    int round, i, fast = 0, general = 0, rejected = 0;

    fx_open(&f);
    put_contract(
        &f, "typed",
        "{\"name\":\"typed\",\"kind\":\"event\",\"properties\":{"
        "\"s\":{\"type\":\"string\",\"pattern\":\"^[a-z ]*$\",\"max_length\":4},"
        "\"n\":{\"type\":\"number\",\"required\":true,\"minimum\":0,\"maximum\":1e10},"
        "\"i\":{\"type\":\"integer\"},\"b\":{\"type\":\"boolean\"},"
        "\"ts\":{\"type\":\"timestamp\"},\"e\":{\"type\":\"string\",\"enum\":[\"x\",\"y\"]},"
        "\"m\":{\"type\":\"string\",\"format\":\"email\"}}}");
    put_contract(&f, "strict",
                 "{\"name\":\"strict\",\"kind\":\"event\",\"additional_properties\":false,"
                 "\"properties\":{\"s\":{\"type\":\"string\"},\"n\":{\"type\":\"number\"},"
                 "\"i\":{\"type\":\"integer\"},\"b\":{\"type\":\"boolean\"},"
                 "\"ts\":{\"type\":\"timestamp\"},\"e\":{\"type\":\"string\"},"
                 "\"m\":{\"type\":\"string\"},\"order_id\":{\"type\":\"string\"},"
                 "\"amount\":{\"type\":\"number\"},\"currency\":{\"type\":\"string\"},"
                 "\"created_at\":{\"type\":\"timestamp\"}}}");
    cr_assert_eq(contract_set_load(f.st, &f.cfg, &cs, &f.e), 0, "%s", f.e.msg);
    cr_assert_eq(sync_mapping_parse(mapping, &m, &errs, &f.e), 0, "%s",
                 errs.n ? errs.items[0].msg : f.e.msg);
    t = &m.tables[0];

    /* A batch as source.c makes it: the columns read and where the mapping's are. */
    b.ncolumns = (int)(sizeof columns / sizeof *columns);
    b.columns = calloc((size_t)b.ncolumns, sizeof *b.columns);
    for (i = 0; i < b.ncolumns; i++)
        b.columns[i] = strdup(columns[i]);
    b.at = (struct sync_columns){.key = 0,
                                 .cursor = 1,
                                 .external_id = 2,
                                 .email = -1,
                                 .consent = -1,
                                 .deleted = 3,
                                 .occurred_at = 4,
                                 .event = 5};
    b.at.mapped = calloc((size_t)t->ncols, sizeof *b.at.mapped);
    for (i = 0; i < t->ncols; i++) {
        int k;
        b.at.mapped[i] = -1;
        for (k = 0; k < b.ncolumns; k++)
            if (strcmp(t->cols[i].column, columns[k]) == 0)
                b.at.mapped[i] = k;
        cr_assert_geq(b.at.mapped[i], 0);
    }
    buf_init(&row);
    buf_init(&scratch);
    for (round = 0; round < 20000; round++) {
        struct sync_row r = {0};
        struct prepared_event p, q;
        struct jt *doc;
        struct jt_error je;
        int pf, pg;

        arena_reset(&b.arena);
        buf_reset(&row);
        valid_round = rnd(3) != 0;
        buf_addc(&row, '[');
        ADD(&row, ids, 3);
        ADD(&row, cursors, 1);
        ADD(&row, who, 4);
        ADD(&row, dels, 5);
        ADD(&row, ats, 4);
        ADD(&row, kinds, 5);
        ADD(&row, strs, 5);
        ADD(&row, nums, 5);
        ADD(&row, ints, 5);
        ADD(&row, bools, 5);
        ADD(&row, stamps, 3);
        ADD(&row, enums, 3);
        ADD(&row, mails, 2);
        ADD(&row, strs, 4);
        ADD(&row, currencies, 1);
        row.p[--row.len] = '\0'; /* the last comma */
        buf_addc(&row, ']');
        cr_assert_eq(jt_parse(&b.arena, row.p, row.len, &doc, &je), 0, "%s: %s", row.p, je.text);
        r.values = doc->u.items;
        /* a number's source text, as source.c keeps it (a key's text) */
        for (i = 0; i < b.ncolumns; i++)
            if (r.values[i].type == JT_INT || r.values[i].type == JT_REAL)
                r.values[i].src = arena_strndup(&b.arena, r.values[i].src, r.values[i].srclen);

        pg = sync_prepare_event("crm", t, &b, &r, cs, &cx, &scratch, 1, &q);
        pf = sync_prepare_event("crm", t, &b, &r, cs, &cx, &scratch, 0, &p);
        cr_assert_eq(pf, pg, "%s", row.p);
        if (!pf)
            continue; /* soft-deleted */
        cr_assert_eq(p.rejected, q.rejected, "%s: %s", row.p, q.rejected ? q.msg : p.msg);
        if (p.in_arena)
            fast++;
        else
            general++;
        if (q.rejected) {
            rejected++;
            cr_assert(!p.in_arena, "%s: a refused row is the general path's", row.p);
            cr_assert_str_eq(p.reason, q.reason, "%s", row.p);
            cr_assert_str_eq(p.field, q.field, "%s", row.p);
        } else {
            cr_assert_str_eq(p.name, q.name, "%s", row.p);
            cr_assert_str_eq(p.event_id, q.event_id, "%s", row.p);
            cr_assert_str_eq(p.props, q.props, "%s", row.p);
            cr_assert_eq(p.occurred_at, q.occurred_at, "%s", row.p);
            cr_assert_eq(p.unvalidated, q.unvalidated, "%s", row.p);
            cr_assert_eq(p.contract_version, q.contract_version, "%s", row.p);
            cr_assert_eq(!p.xid, !q.xid, "%s", row.p);
            cr_assert(!p.xid || strcmp(p.xid, q.xid) == 0, "%s", row.p);
            cr_assert_eq(p.xid_hash, q.xid_hash);
            cr_assert_eq(p.key_hash, q.key_hash);
            if (p.in_arena) { /* a dead letter of it holds the general path's record */
                char *raw = p.raw_fn(p.raw_ctx, &p);
                json_t *back = json_loads(raw, 0, NULL);
                cr_assert(json_equal(back, q.rec), "%s: %s", row.p, raw);
                json_decref(back);
                free(raw);
            }
        }
        prepared_event_release(&p);
        prepared_event_release(&q);
    }
    cr_assert_gt(fast, 2000, "the fast path must take the common case (%d)", fast);
    cr_assert_gt(general, 2000, "and leave the rest (%d)", general);
    cr_assert_gt(rejected, 1000, "refusals are compared too (%d)", rejected);
    teardown(&f, &row, &scratch, &b, &m, cs);
}

/* ---- the nightly reconciliation ---- */

static int64_t at(const char *s)
{
    int64_t ms = 0;
    cr_assert_eq(time_parse_iso(s, strlen(s), &ms), 0, "should parse: %s", s);
    return ms;
}

/* Due at now for the hour, the last run having started at last ("" for none). */
static int due(const char *now, int hour, const char *last)
{
    return sync_reconcile_due(at(now), hour, *last ? at(last) : 0);
}

UTEST(reconcile_due, waits_for_the_hour)
{
    cr_assert_not(due("2026-10-10T02:00:00Z", 3, ""), "started at 02:00: not before 03:00");
    cr_assert_not(due("2026-10-10T02:59:59.999Z", 3, "2026-10-09T03:00:00Z"));
    cr_assert(due("2026-10-10T03:00:00Z", 3, ""), "at the hour itself");
    cr_assert(due("2026-10-10T03:00:00Z", 3, "2026-10-09T03:00:00Z"));
}

UTEST(reconcile_due, once_a_day)
{
    cr_assert(due("2026-10-10T10:00:00Z", 3, "2026-10-09T03:00:00Z"), "yesterday's: at once");
    cr_assert(due("2026-10-10T10:00:00Z", 3, ""), "never run: at once");
    cr_assert_not(due("2026-10-10T10:00:00Z", 3, "2026-10-10T03:05:00Z"), "today's: done");
    cr_assert_not(due("2026-10-10T03:00:01Z", 3, "2026-10-10T03:00:00Z"), "at the mark counts");
    cr_assert_not(due("2026-10-10T23:59:59.999Z", 3, "2026-10-10T03:05:00Z"));
    cr_assert(due("2026-10-10T10:00:00Z", 3, "2026-10-10T02:59:59.999Z"),
              "a run before today's hour is not today's");
    cr_assert_not(due("2026-10-11T02:00:00Z", 3, "2026-10-10T03:05:00Z"), "tomorrow, not yet");
    cr_assert(due("2026-10-11T03:00:00Z", 3, "2026-10-10T03:05:00Z"), "tomorrow at the hour");
    cr_assert(due("2026-10-12T09:00:00Z", 3, "2026-10-09T03:05:00Z"), "days missed: one run");
}

UTEST(reconcile_due, day_edges)
{
    cr_assert(due("2026-10-10T00:00:00Z", 0, "2026-10-09T00:00:00Z"), "hour 0 at midnight");
    cr_assert_not(due("2026-10-09T23:59:59.999Z", 0, "2026-10-09T00:00:00Z"));
    cr_assert(due("2026-10-10T23:00:00Z", 23, "2026-10-09T23:59:59.999Z"));
    cr_assert_not(due("2026-10-11T00:30:00Z", 23, "2026-10-10T23:59:59.999Z"),
                  "past midnight, today's 23:00 has not come");
    cr_assert(due("2024-03-01T05:00:00Z", 5, "2024-02-29T05:00:00Z"), "a leap day");
    cr_assert(due("2027-01-01T03:00:00Z", 3, "2026-12-31T03:00:00Z"), "a new year");
}

UTEST(reconcile_due, off_and_out_of_range)
{
    cr_assert_not(due("2026-10-10T10:00:00Z", -1, ""), "-1: never");
    cr_assert_not(due("2026-10-10T10:00:00Z", -1, "2020-01-01T00:00:00Z"));
    cr_assert_not(due("2026-10-10T23:59:59Z", 24, ""), "no 24th hour");
    cr_assert_not(due("2026-10-10T10:00:00Z", 3, "2026-10-12T03:00:00Z"),
                  "a run from the future (the clock went back): not again today");
}

/* ---- rows read from a real SQLite source: values JSON cannot hold as they are ---- */
#include <sqlite3.h>

static void mkdb(const char *path, const char *sql)
{
    sqlite3 *db;
    char *err = NULL;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, &err), SQLITE_OK, "%s", err ? err : "");
    sqlite3_close(db);
}

/* A SQLite source file made by sql in the fixture's directory, its table t mapped as
 * events of "ev" with props_map, connected and read (up to 100 rows) into b. */
static void read_source(struct fx *f, const char *sql, const char *props_map, struct sync_conn **c,
                        struct sync_mapping *m, struct sync_batch *b)
{
    char path[512], mapping[1024];
    struct store_sync_source src = {0};
    struct errlist errs = {0};

    snprintf(path, sizeof path, "%s/crm.db", f->dir);
    mkdb(path, sql);
    snprintf(mapping, sizeof mapping,
             "{\"tables\":[{\"table\":\"t\",\"into\":\"events\",\"key\":\"id\",\"cursor\":\"u\","
             "\"external_id\":\"who\",\"event\":\"ev\",\"occurred_at\":\"at\",\"properties\":%s}]}",
             props_map);
    cr_assert_eq(sync_mapping_parse(mapping, m, &errs, &f->e), 0);
    snprintf(src.name, sizeof src.name, "crm");
    snprintf(src.kind, sizeof src.kind, "sqlite");
    snprintf(src.origin, sizeof src.origin, "cli"); /* the operator's: any file */
    src.dsn = path;
    cr_assert_eq(sync_connect(&src, &f->cfg, c, &f->e), 0, "%s", f->e.msg);
    cr_assert_eq(sync_read(*c, &m->tables[0], NULL, NULL, 100, b, &f->e), 0, "%s", f->e.msg);
}

/* Reads table t of a SQLite file made by sql and prepares every row both ways: the same
 * outcome, the properties valid JSON; the first row's properties (or its refusal's
 * reason) are expect_props when given. */
static void compare_rows(const char *sql, const char *props_map, const char *contract,
                         const char *expect_props)
{
    struct fx f;
    struct sync_conn *c = NULL;
    struct sync_mapping m;
    struct sync_batch b = {0};
    struct contract_set *cs;
    struct buf scratch;
    struct ingest_ctx cx = {
        .kind = SRC_SYNC, .source = "sync:crm", .owns_rows = 1, .received_at = 1790000000000LL};
    int i;

    fx_open(&f);
    if (contract)
        put_contract(&f, "ev", contract);
    cr_assert_eq(contract_set_load(f.st, &f.cfg, &cs, &f.e), 0);
    read_source(&f, sql, props_map, &c, &m, &b);
    buf_init(&scratch);
    for (i = 0; i < b.n; i++) {
        struct prepared_event p, q;
        sync_prepare_event("crm", &m.tables[0], &b, &b.rows[i], cs, &cx, &scratch, 0, &p);
        sync_prepare_event("crm", &m.tables[0], &b, &b.rows[i], cs, &cx, &scratch, 1, &q);
        cr_assert_eq(p.rejected, q.rejected, "row %d: %s / %s", i, p.msg, q.msg);
        if (!p.rejected) {
            json_t *j = json_loads(p.props, 0, NULL);
            cr_assert_not_null(j, "row %d: the properties are not JSON: %s", i, p.props);
            json_decref(j);
            cr_assert_str_eq(p.props, q.props, "row %d", i);
        }
        if (expect_props && i == 0)
            cr_assert_str_eq(q.rejected ? q.reason : q.props, expect_props);
        prepared_event_release(&p);
        prepared_event_release(&q);
    }
    buf_release(&scratch);
    sync_batch_release(&b);
    sync_disconnect(c);
    sync_mapping_release(&m);
    contract_set_free(cs);
    fx_close(&f);
}

#define ROWS "CREATE TABLE t(id INTEGER, u TEXT, who TEXT, at TEXT, x);"

UTEST(sync_source, infinity_no_contract)
{
    compare_rows(ROWS "INSERT INTO t VALUES(1,'a','c1','2026-01-01T00:00:00Z',1e999);"
                      "INSERT INTO t VALUES(2,'b','c1','2026-01-01T00:00:00Z',-1e999);",
                 "{\"x\":\"x\"}", NULL, "{\"x\":\"Inf\"}");
}

UTEST(sync_source, infinity_typed_number)
{
    compare_rows(
        ROWS "INSERT INTO t VALUES(1,'a','c1','2026-01-01T00:00:00Z',1e999);", "{\"x\":\"x\"}",
        "{\"name\":\"ev\",\"kind\":\"event\",\"properties\":{\"x\":{\"type\":\"number\"}}}",
        "invalid_type");
}

UTEST(sync_source, infinity_typed_integer)
{
    compare_rows(
        ROWS "INSERT INTO t VALUES(1,'a','c1','2026-01-01T00:00:00Z',1e999);", "{\"x\":\"x\"}",
        "{\"name\":\"ev\",\"kind\":\"event\",\"properties\":{\"x\":{\"type\":\"integer\"}}}",
        "invalid_type");
}

UTEST(sync_source, invalid_utf8_no_contract)
{
    compare_rows(ROWS
                 "INSERT INTO t VALUES(1,'a','c1','2026-01-01T00:00:00Z',CAST(x'61ff62' AS TEXT));"
                 "INSERT INTO t VALUES(2,'b','c1','2026-01-01T00:00:00Z',x'00ff');",
                 "{\"x\":\"x\"}", NULL, "{\"x\":\"a?b\"}");
}

UTEST(sync_source, nul_in_text)
{
    compare_rows(ROWS
                 "INSERT INTO t VALUES(1,'a','c1','2026-01-01T00:00:00Z',CAST(x'610062' AS TEXT));",
                 "{\"x\":\"x\"}", NULL, "{\"x\":\"a?b\"}");
}

/* The reader thread reuses the struct sync_batch a row was prepared in (sync_table's
 * `a.b`, zeroed by ahead_start and refilled by sync_read_range) while the storing
 * thread stores its copy (`cur`): a dead letter's record must not come from the former. */
UTEST(sync_source, a_dead_letter_is_made_from_the_stored_batch_not_the_next_one)
{
    struct fx f;
    struct sync_conn *c = NULL;
    struct sync_mapping m;
    struct sync_batch b = {0}, cur;
    struct buf scratch;
    struct prepared_event p;
    struct ingest_ctx cx = {.kind = SRC_SYNC, .source = "sync:crm", .owns_rows = 1};
    char *raw;

    fx_open(&f);
    read_source(&f, ROWS "INSERT INTO t VALUES(1,'a','c1','2026-01-01T00:00:00Z',5);",
                "{\"x\":\"x\"}", &c, &m, &b);
    buf_init(&scratch);
    cr_assert(sync_prepare_event("crm", &m.tables[0], &b, &b.rows[0], NULL, &cx, &scratch, 0, &p));
    cr_assert(p.in_arena);
    cur = b;                       /* run.c: cur = a; */
    memset(&b, 0, sizeof b);       /* run.c: ahead_start(&a, ...) zeroes a.b for the next read */
    raw = p.raw_fn(p.raw_ctx, &p); /* the store refuses it (contact_deleted, unknown_event) */
    cr_assert_not_null(raw, "the dead letter of the row is lost");
    cr_assert_str_eq(raw, "{\"event_id\":\"crm:t:1\",\"event\":\"ev\",\"external_id\":\"c1\","
                          "\"occurred_at\":\"2026-01-01T00:00:00Z\",\"properties\":{\"x\":5}}");
    free(raw);
    prepared_event_release(&p);
    buf_release(&scratch);
    sync_batch_release(&cur);
    sync_disconnect(c);
    sync_mapping_release(&m);
    fx_close(&f);
}

/* Every value of a list against every kind of contract property, both ways. */
UTEST(sync_source, cross_product_values_and_types)
{
    static const char *const vals[] = {"0",
                                       "-0",
                                       "0.0",
                                       "-0.0",
                                       "1",
                                       "1.0",
                                       "2.5",
                                       "1e20",
                                       "-1e20",
                                       "9.2e18",
                                       "9.3e18",
                                       "9223372036854775807",
                                       "-9223372036854775808",
                                       "1e-320",
                                       "0.30000000000000004",
                                       "1.7976931348623157e308",
                                       "true",
                                       "false",
                                       "null",
                                       "[]",
                                       "{}",
                                       "[1,{\"a\":null}]",
                                       "{\"b\":1,\"a\":2,\"a\":3}",
                                       "\"\"",
                                       "\"0\"",
                                       "\"-0\"",
                                       "\"1e400\"",
                                       "\"NaN\"",
                                       "\"Infinity\"",
                                       "\" 5\"",
                                       "\"5 \"",
                                       "\"0x10\"",
                                       "\"+5\"",
                                       "\"1.\"",
                                       "\".5\"",
                                       "\"TRUE\"",
                                       "\"tRuE\"",
                                       "\"2026-01-01\"",
                                       "\"2026-01-01T10:00:00+05:30\"",
                                       "\"2026-01-01T10:00:00.123456Z\"",
                                       "\"2026-01-01 10:00:00\"",
                                       "\"0000-01-01T00:00:00Z\"",
                                       "\"9999-12-31T23:59:59.999Z\"",
                                       "\"10000-01-01T00:00:00Z\"",
                                       "\"\\u00e9\"",
                                       "\"a\\nb\"",
                                       "\"1\"",
                                       "\"2.5\"",
                                       "\"x@y.co\""};
    static const char *const specs[] = {
        "{\"type\":\"string\"}",
        "{\"type\":\"number\"}",
        "{\"type\":\"integer\"}",
        "{\"type\":\"boolean\"}",
        "{\"type\":\"timestamp\"}",
        "{\"type\":\"number\",\"enum\":[1,2.5,0]}",
        "{\"type\":\"integer\",\"enum\":[1,0]}",
        "{\"type\":\"string\",\"enum\":[\"1\",\"2.5\",\"0\",\"-0\"]}",
        "{\"type\":\"boolean\",\"enum\":[false]}",
        "{\"type\":\"timestamp\",\"enum\":[\"2026-01-01T00:00:00Z\"]}",
        "{\"type\":\"number\",\"minimum\":0,\"maximum\":0}",
        "{\"type\":\"string\",\"max_length\":1}"};
    const char *mapping =
        "{\"tables\":[{\"table\":\"t\",\"into\":\"events\",\"key\":\"id\",\"cursor\":\"u\","
        "\"external_id\":\"who\",\"event\":\"ev\",\"occurred_at\":\"at\",\"properties\":{\"x\":"
        "\"x\",\"y\":\"y\"}}]}";
    static const char *const columns[] = {"id", "u", "who", "at", "x", "y"};
    size_t si, vi, wi;
    int diffs = 0, i;

    for (si = 0; si < sizeof specs / sizeof *specs; si++) {
        struct fx f;
        struct contract_set *cs;
        struct sync_mapping m;
        struct errlist errs = {0};
        struct sync_batch b = {0};
        struct buf row, scratch, body;
        struct ingest_ctx cx = {.kind = SRC_SYNC, .source = "sync:crm", .owns_rows = 1};
        const struct sync_table *t;
        fx_open(&f);
        buf_init(&body);
        buf_printf(&body, "{\"name\":\"ev\",\"kind\":\"event\",\"properties\":{\"x\":%s}}",
                   specs[si]);
        put_contract(&f, "ev", body.p);
        buf_release(&body);
        cr_assert_eq(contract_set_load(f.st, &f.cfg, &cs, &f.e), 0);
        cr_assert_eq(sync_mapping_parse(mapping, &m, &errs, &f.e), 0);
        t = &m.tables[0];
        b.ncolumns = 6;
        b.columns = calloc(6, sizeof *b.columns);
        for (i = 0; i < 6; i++)
            b.columns[i] = strdup(columns[i]);
        b.at = (struct sync_columns){.key = 0,
                                     .cursor = 1,
                                     .external_id = 2,
                                     .email = -1,
                                     .consent = -1,
                                     .deleted = -1,
                                     .occurred_at = 3,
                                     .event = -1};
        b.at.mapped = calloc((size_t)t->ncols, sizeof *b.at.mapped);
        for (i = 0; i < t->ncols; i++)
            b.at.mapped[i] = strcmp(t->cols[i].column, "x") == 0 ? 4 : 5;
        buf_init(&row);
        buf_init(&scratch);
        for (vi = 0; vi < sizeof vals / sizeof *vals; vi++)
            for (wi = 0; wi < sizeof vals / sizeof *vals; wi += 7) {
                struct sync_row r = {0};
                struct prepared_event p, q;
                struct jt *doc;
                struct jt_error je;
                arena_reset(&b.arena);
                buf_reset(&row);
                buf_printf(&row, "[1,\"u\",\"c1\",\"2026-01-01T00:00:00Z\",%s,%s]", vals[vi],
                           vals[wi]);
                cr_assert_eq(jt_parse(&b.arena, row.p, row.len, &doc, &je), 0, "%s", row.p);
                r.values = doc->u.items;
                for (i = 0; i < 6; i++)
                    if (r.values[i].type == JT_INT || r.values[i].type == JT_REAL)
                        r.values[i].src =
                            arena_strndup(&b.arena, r.values[i].src, r.values[i].srclen);
                sync_prepare_event("crm", t, &b, &r, cs, &cx, &scratch, 1, &q);
                sync_prepare_event("crm", t, &b, &r, cs, &cx, &scratch, 0, &p);
                if (p.rejected != q.rejected ||
                    (!q.rejected && (strcmp(p.props, q.props) || p.occurred_at != q.occurred_at)) ||
                    (q.rejected && (strcmp(p.reason, q.reason) || strcmp(p.field, q.field)))) {
                    diffs++;
                    cr_log_error("spec %s row %s: fast %s %s / general %s %s", specs[si], row.p,
                                 p.rejected ? p.reason : "ok", p.props ? p.props : "",
                                 q.rejected ? q.reason : "ok", q.props ? q.props : "");
                }
                prepared_event_release(&p);
                prepared_event_release(&q);
            }
        teardown(&f, &row, &scratch, &b, &m, cs);
    }
    cr_expect_eq(diffs, 0);
}

UTEST(sync_mapping, lookback_is_for_events_tables)
{
    struct sync_mapping m;
    struct errlist errs = {0};
    struct err e = {0};
    const char *contacts =
        "{\"tables\":[{\"table\":\"people\",\"into\":\"contacts\",\"key\":\"id\",\"cursor\":\"u\","
        "\"external_id\":\"id\",\"lookback_seconds\":60}]}";
    const char *events =
        "{\"tables\":[{\"table\":\"orders\",\"into\":\"events\",\"key\":\"id\",\"cursor\":\"u\","
        "\"external_id\":\"who\",\"event\":\"order_created\",\"occurred_at\":\"at\","
        "\"lookback_seconds\":60}]}";

    cr_assert_eq(sync_mapping_parse(contacts, &m, &errs, &e), E_INVAL);
    cr_assert_eq(errs.n, 1);
    cr_assert_str_eq(errs.items[0].path, "/tables/0/lookback_seconds");
    cr_assert(strstr(errs.items[0].msg, "events tables only") != NULL, "%s", errs.items[0].msg);
    memset(&errs, 0, sizeof errs);
    cr_assert_eq(sync_mapping_parse(events, &m, &errs, &e), 0);
    cr_assert_eq(m.tables[0].lookback_s, 60);
    sync_mapping_release(&m);
}

/* ---- what a source may name (policy.c) ---- */

/* Every problem of errs as "path: message" lines; errs emptied. */
static const char *problems(struct errlist *errs)
{
    static char out[4096];
    size_t n = 0;
    int i;

    out[0] = '\0';
    for (i = 0; i < errs->n && n < sizeof out; i++)
        n += (size_t)snprintf(out + n, sizeof out - n, "%s: %s\n", errs->items[i].path,
                              errs->items[i].msg);
    memset(errs, 0, sizeof *errs);
    return out;
}

static const char *dsn_problems(const char *dsn, enum sync_origin o, int has_password,
                                const struct config *cfg)
{
    static struct errlist errs;

    memset(&errs, 0, sizeof errs);
    sync_dsn_check(dsn, o, has_password, cfg, "/dsn", &errs);
    return problems(&errs);
}

UTEST(sync_policy, dsn_options_from_the_api_name_nothing_of_this_server)
{
    struct config cfg;
    const char *p;

    config_defaults(&cfg, "/nonexistent");
    unsetenv("PGSSLMODE");
    /* Both forms, fine. */
    cr_assert_str_eq(dsn_problems("host=db.example.com port=5432 dbname=crm user=r sslmode=require",
                                  SYNC_ORIGIN_API, 1, &cfg),
                     "");
    cr_assert_str_eq(dsn_problems("postgresql://r@db.example.com:5432/crm?sslmode=verify-full"
                                  "&connect_timeout=5&application_name=x",
                                  SYNC_ORIGIN_API, 1, &cfg),
                     "");
    cr_assert_str_eq(
        dsn_problems("hostaddr=10.0.0.5 dbname=crm sslmode=require", SYNC_ORIGIN_API, 0, &cfg), "");
    /* Files of this server, each reported, in key=value form... */
    p = dsn_problems("host=db passfile=/etc/passwd sslcert=/a sslkey=/b sslrootcert=/c sslcrl=/d "
                     "sslcrldir=/e service=crm requirepeer=postgres replication=true "
                     "sslmode=require",
                     SYNC_ORIGIN_API, 0, &cfg);
    cr_assert(strstr(p, "/dsn: passfile: names a file on this server: not allowed over the API\n"),
              "%s", p);
    cr_assert(strstr(p, "/dsn: sslcert: names a file"), "%s", p);
    cr_assert(strstr(p, "/dsn: sslkey: names a file"), "%s", p);
    cr_assert(strstr(p, "/dsn: sslrootcert: names a file"), "%s", p);
    cr_assert(strstr(p, "/dsn: sslcrl: names a file"), "%s", p);
    cr_assert(strstr(p, "/dsn: sslcrldir: names a directory"), "%s", p);
    cr_assert(strstr(p, "/dsn: service: reads this server's pg_service.conf"), "%s", p);
    cr_assert(strstr(p, "/dsn: requirepeer: is for unix sockets"), "%s", p);
    cr_assert(strstr(p, "/dsn: replication: "), "%s", p);
    /* ... and as a URI, percent-encoded or not. */
    p = dsn_problems("postgresql://r@db/crm?passfile=%2Fetc%2Fpasswd&sslmode=disable",
                     SYNC_ORIGIN_API, 0, &cfg);
    cr_assert(strstr(p, "/dsn: passfile: names a file"), "%s", p);
    cr_assert(strstr(p, "/dsn: sslmode: is disable: a source added over the API must use TLS"),
              "%s", p);
    /* Unix sockets of this server: a path, an empty host, no host at all. */
    p = dsn_problems("postgresql://%2Fvar%2Frun%2Fpostgresql/crm?sslmode=require", SYNC_ORIGIN_API,
                     0, &cfg);
    cr_assert(strstr(p, "/dsn: host: /var/run/postgresql is a unix socket of this server"), "%s",
              p);
    p = dsn_problems("host=db,/tmp dbname=crm sslmode=require", SYNC_ORIGIN_API, 0, &cfg);
    cr_assert(strstr(p, "/dsn: host: /tmp is a unix socket"), "%s", p);
    p = dsn_problems("dbname=crm sslmode=require", SYNC_ORIGIN_API, 0, &cfg);
    cr_assert(strstr(p, "/dsn: host: is required over the API"), "%s", p);
    p = dsn_problems("host=a,,b dbname=crm sslmode=require", SYNC_ORIGIN_API, 0, &cfg);
    cr_assert(strstr(p, "/dsn: host: is required over the API"), "%s", p);
    cr_assert_str_eq(dsn_problems("host=a,b hostaddr=10.0.0.1,10.0.0.2 sslmode=require",
                                  SYNC_ORIGIN_API, 0, &cfg),
                     "");
    /* sslmode: the default (prefer) and the weak ones, unless allow_insecure_tls. */
    p = dsn_problems("host=db", SYNC_ORIGIN_API, 0, &cfg);
    cr_assert(strstr(p, "/dsn: sslmode: is prefer (the default): a source added over the API must "
                        "use TLS: set sslmode=require (or verify-ca, verify-full), or [sync] "
                        "allow_insecure_tls = true\n"),
              "%s", p);
    cr_assert(strstr(dsn_problems("host=db sslmode=allow", SYNC_ORIGIN_API, 0, &cfg), "is allow"));
    p = dsn_problems("host=db sslmode=sometimes", SYNC_ORIGIN_CLI, 0, &cfg);
    cr_assert(strstr(p, "/dsn: sslmode: \"sometimes\" is none of"), "%s", p);
    cfg.sync_allow_insecure_tls = 1;
    cr_assert_str_eq(dsn_problems("host=db sslmode=disable", SYNC_ORIGIN_API, 1, &cfg), "");
    cfg.sync_allow_insecure_tls = 0;
    /* A password: never in the DSN (both forms), and over TLS only (libpq before 16). */
    p = dsn_problems("postgresql://r:hunter2@db/crm?sslmode=require", SYNC_ORIGIN_CLI, 0, &cfg);
    cr_assert(strstr(p, "/dsn: must not hold the password"), "%s", p);
    cr_assert_null(strstr(p, "hunter2"), "%s", p);
    p = dsn_problems("host=db password=hunter2 sslmode=require", SYNC_ORIGIN_API, 0, &cfg);
    cr_assert(strstr(p, "/dsn: must not hold the password"), "%s", p);
    cr_assert(strstr(dsn_problems("host=db sslpassword=x", SYNC_ORIGIN_CLI, 0, &cfg),
                     "must not hold the password"));
    p = dsn_problems("host=db", SYNC_ORIGIN_CLI, 1, &cfg);
    if (PQlibVersion() < 160000)
        cr_assert(strstr(p, "/dsn: sslmode: is prefer (the default): the password would be sent "
                            "without TLS"),
                  "%s", p);
    /* The operator's freedom: files and sockets of this server, no TLS without a password. */
    cr_assert_str_eq(dsn_problems("host=/var/run/postgresql passfile=/root/.pgpass sslcert=/a "
                                  "service=crm",
                                  SYNC_ORIGIN_CLI, 0, &cfg),
                     "");
    cr_assert_str_eq(dsn_problems("dbname=crm sslmode=disable", SYNC_ORIGIN_CLI, 0, &cfg), "");
    /* Not a connection string. */
    p = dsn_problems("host=db colour=blue", SYNC_ORIGIN_CLI, 0, &cfg);
    cr_assert(strstr(p, "/dsn: not a libpq connection string: invalid connection option "
                        "\"colour\""),
              "%s", p);
    /* sslmode from the environment counts, as libpq takes it from there. */
    setenv("PGSSLMODE", "require", 1);
    cr_assert_eq(sync_dsn_tls("host=db"), SYNC_TLS_REQUIRE);
    cr_assert_str_eq(dsn_problems("host=db", SYNC_ORIGIN_API, 1, &cfg), "");
    setenv("PGSSLMODE", "allow", 1);
    p = dsn_problems("host=db", SYNC_ORIGIN_API, 0, &cfg);
    cr_assert(strstr(p, "/dsn: sslmode: is allow (from PGSSLMODE): a source added over"), "%s", p);
    unsetenv("PGSSLMODE");
    cr_assert_eq(sync_dsn_tls("host=db"), SYNC_TLS_PREFER);
    cr_assert_eq(sync_dsn_tls("host=db sslmode=verify-ca"), SYNC_TLS_VERIFY_CA);
    cr_assert_eq(sync_dsn_tls("host=db colour=blue"), -1);
    config_release(&cfg);
}

static const char *ref_problem(const char *ref, enum sync_origin o, const struct config *cfg)
{
    static struct errlist errs;

    memset(&errs, 0, sizeof errs);
    sync_ref_check(ref, o, cfg, "/password_ref", &errs);
    return problems(&errs);
}

/* The reference made of fmt has a problem holding want for a source of origin o, or none
 * at all when want is "". */
static void ref_says(const struct config *cfg, enum sync_origin o, const char *want,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void ref_says(const struct config *cfg, enum sync_origin o, const char *want,
                     const char *fmt, ...)
{
    char ref[1500];
    const char *p;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(ref, sizeof ref, fmt, ap);
    va_end(ap);
    p = ref_problem(ref, o, cfg);
    if (*want)
        cr_assert(strstr(p, want), "%s: %s", ref, p);
    else
        cr_assert_str_eq(p, "", "%s: %s", ref, p);
}

UTEST(sync_policy, references_from_the_api_stay_where_the_operator_allows)
{
    char *d = test_tmpdir(), dir[600], path[700], link[700];
    const enum sync_origin API = SYNC_ORIGIN_API, CLI = SYNC_ORIGIN_CLI;
    struct config cfg;
    struct err e = {0};
    char *pw = NULL;

    config_defaults(&cfg, d); /* the secrets key: d/secret.key */
    snprintf(dir, sizeof dir, "%s/secrets", d);
    cr_assert_eq(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/sub", dir);
    cr_assert_eq(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/crm.pw", dir);
    write_file(path, "crm-pw\n");
    snprintf(path, sizeof path, "%s/secret.key", d);
    write_file(path, "00\n");
    snprintf(link, sizeof link, "%s/key.pw", dir);
    cr_assert_eq(symlink(path, link), 0);
    snprintf(path, sizeof path, "%s/outside.pw", d);
    write_file(path, "outside\n");
    snprintf(link, sizeof link, "%s/link.pw", dir);
    cr_assert_eq(symlink(path, link), 0);

    /* Nothing allowed while the keys are unset; the operator's freedom. */
    ref_says(&cfg, API,
             "/password_ref: file: references are not allowed over the API: [sync] "
             "secret_dir is not set\n",
             "file:%s/crm.pw", dir);
    ref_says(&cfg, API,
             "/password_ref: env: references are not allowed over the API: [sync] "
             "secret_env_prefix is not set\n",
             "env:ENGAGE_SYNC_PW_CRM");
    ref_says(&cfg, CLI, "", "file:%s/crm.pw", dir);
    ref_says(&cfg, CLI, "", "file:%s/outside.pw", d);
    ref_says(&cfg, CLI, "", "env:HOME");

    snprintf(cfg.sync_secret_dir, sizeof cfg.sync_secret_dir, "%s", dir);
    snprintf(cfg.sync_secret_env_prefix, sizeof cfg.sync_secret_env_prefix, "ENGAGE_SYNC_");
    ref_says(&cfg, API, "", "file:%s/crm.pw", dir);
    ref_says(&cfg, API, "", "env:ENGAGE_SYNC_PW_CRM");
    /* Outside: by name (nothing outside looked at), by `..`, by a symlink. */
    ref_says(&cfg, API, "file:/etc/passwd is outside [sync] secret_dir (", "file:/etc/passwd");
    ref_says(&cfg, API, "is outside [sync] secret_dir", "file:/etc/nonexistent.pw");
    ref_says(&cfg, API, "is outside", "file:/");
    ref_says(&cfg, API, "/../outside.pw: must not go up (..)", "file:%s/../outside.pw", dir);
    ref_says(&cfg, API, "must not go up", "file:%s/sub/..", dir);
    ref_says(&cfg, API, "/outside.pw, outside [sync] secret_dir", "file:%s/link.pw", dir);
    ref_says(&cfg, API, "/link.pw resolves to ", "file:%s/link.pw", dir);
    ref_says(&cfg, API, "/secret.key, outside", "file:%s/key.pw", dir);
    ref_says(&cfg, API, "/sub: not a regular file", "file:%s/sub", dir);
    ref_says(&cfg, API, "/missing.pw: No such file or directory", "file:%s/missing.pw", dir);
    ref_says(&cfg, API, "file:crm.pw: must be an absolute path inside [sync] secret_dir",
             "file:crm.pw");
    /* For nobody: the secrets key, standard input. */
    ref_says(&cfg, CLI, "is the secrets key ([secrets] key_file), not a password",
             "file:%s/secret.key", d);
    ref_says(&cfg, CLI, "would read the standard input", "file:-");
    ref_says(&cfg, API, "would read the standard input", "file:-");
    /* Variables: the prefix, a name, not engage's own, not the secrets key's. */
    ref_says(&cfg, API,
             "/password_ref: env:HOME does not start with [sync] secret_env_prefix "
             "(ENGAGE_SYNC_)\n",
             "env:HOME");
    ref_says(&cfg, API, "does not start", "env:ENGAGE_SYNC_");
    ref_says(&cfg, API, "is a setting of engage, not a password", "env:ENGAGE_SYNC_SECRET_DIR");
    ref_says(&cfg, API, "expected a variable name", "env:ENGAGE_SYNC_A B");
    snprintf(cfg.secrets_key_env, sizeof cfg.secrets_key_env, "ENGAGE_SYNC_KEY");
    ref_says(&cfg, CLI, "holds the secrets key ([secrets] key_env)", "env:ENGAGE_SYNC_KEY");
    ref_says(&cfg, CLI, "must be env:VAR or file:PATH", "sealed");

    /* Read: by its resolved path, checked again; secret_dir itself may be a symlink. */
    snprintf(link, sizeof link, "%s/secrets-link", d);
    cr_assert_eq(symlink(dir, link), 0);
    snprintf(cfg.sync_secret_dir, sizeof cfg.sync_secret_dir, "%s/", link);
    snprintf(path, sizeof path, "file:%s/crm.pw", dir);
    cr_assert_eq(sync_ref_read(path, API, &cfg, &pw, &e), 0, "%s", e.msg);
    cr_assert_str_eq(pw, "crm-pw");
    secret_free(pw);
    cfg.sync_secret_dir[0] = '\0';
    cr_assert_eq(sync_ref_read(path, API, &cfg, &pw, &e), E_INVAL);
    cr_assert(strstr(e.msg, "password_ref: file: references are not allowed over the API"), "%s",
              e.msg);
    cr_assert_null(pw);
    config_release(&cfg);
    free(d);
}
