/* tests/unit/csv.c -- every CSV error class with file, line and field; re-import. */
#include <sys/resource.h>

#include "ingest_fixture.h"

static int import(struct fx *f, enum import_kind k, const char *text, struct import_report *rep)
{
    char path[512];
    struct import_opts o = {.kind = k, .path = path, .batch_rows = 2};
    snprintf(path, sizeof path, "%s/in.csv", f->dir);
    write_file(path, text);
    err_clear(&f->e);
    return import_csv(&f->in, &o, rep, &f->e);
}

static void expect_fatal(const char *text, enum import_kind k, const char *fragment,
                         const char *field)
{
    struct fx f;
    struct import_report rep;
    fx_open(&f);
    cr_assert_neq(import(&f, k, text, &rep), 0, "should fail: %s", fragment);
    cr_assert(strstr(f.e.msg, "in.csv:"), "names the file: %s", f.e.msg);
    cr_assert(strstr(f.e.msg, fragment), "'%s' in '%s'", fragment, f.e.msg);
    if (field)
        cr_assert_str_eq(f.e.field, field);
    import_report_release(&rep);
    fx_close(&f);
}

UTEST(csv, file_level_errors)
{
    expect_fatal("", IMPORT_CONTACTS, "in.csv:1: the file is empty", "header");
    expect_fatal("email,city\na@b.c,X\n", IMPORT_CONTACTS,
                 "in.csv:1: column \"external_id\" is required", "external_id");
    expect_fatal("external_id,occurred_at\nc1,x\n", IMPORT_EVENTS,
                 "in.csv:1: column \"event\" is required", "event");
    expect_fatal("occurred_at\n2026-01-01\n", IMPORT_EVENTS,
                 "in.csv:1: columns \"external_id\" and \"event\" are required", "external_id");
    expect_fatal("External_ID,city\nc1,Pune\n", IMPORT_CONTACTS,
                 "(found \"External_ID\": names are case-sensitive)", "external_id");
    expect_fatal("external_id;city\nc1;Pune\n", IMPORT_CONTACTS, "separated by ';'", "external_id");
    expect_fatal("external_id,city,city\nc1,a,b\n", IMPORT_CONTACTS,
                 "in.csv:1: column \"city\" appears twice", "city");
    expect_fatal("external_id,,city\n", IMPORT_CONTACTS, "in.csv:1: column 2 has an empty name",
                 NULL);
    expect_fatal("external_id,city\nc1,ok\nc2,\"bro\"ken\"\n", IMPORT_CONTACTS, "in.csv:3:", NULL);
    expect_fatal("external_id,city\nc1,\"never closed\n", IMPORT_CONTACTS,
                 "in.csv:2: a quoted field is not closed by the end of the file", NULL);
}

static int64_t first_line(struct import_report *rep, const char *reason)
{
    json_t *r = json_object_get(rep->rejected_by_reason, reason);
    cr_assert_not_null(r, "no rejection with reason %s", reason);
    return json_integer_value(json_array_get(json_object_get(r, "lines"), 0));
}

UTEST(csv, row_errors_name_line_and_field)
{
    struct fx f;
    struct import_report rep;
    json_t *ex;
    fx_open(&f);
    cr_assert_eq(import(&f, IMPORT_EVENTS,
                        "external_id,event,occurred_at,order_id,amount,currency,created_at\n"
                        "c1,order_created,,o1,10,INR,2026-01-01T00:00:00Z\n"
                        "c1,order_created,,\"o2\nwith a newline\",10,INR,2026-01-01T00:00:00Z\n"
                        "c1,order_created,,o3,ten,INR,2026-01-01T00:00:00Z\n"
                        "\n"
                        "c1,order_created,,o4,10,INR\n"
                        "c1,order_created,,o5,10,INR,\n"
                        ",order_created,,o6,10,INR,2026-01-01T00:00:00Z\n",
                        &rep),
                 0, "%s", f.e.msg);
    cr_assert_eq(rep.stats.inserted, 2);
    cr_assert_eq(rep.stats.rejected, 4);
    cr_assert_eq(first_line(&rep, "invalid_type"), 5,
                 "after a quoted newline, physical lines count");
    ex = json_array_get(
        json_object_get(json_object_get(rep.rejected_by_reason, "invalid_type"), "examples"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(ex, "field")), "amount");
    cr_assert_eq(first_line(&rep, "bad_row"), 7, "blank line 6 is skipped, not miscounted");
    cr_assert_eq(first_line(&rep, "missing_field"), 8);
    import_report_release(&rep);
    fx_close(&f);
}

UTEST(csv, reimport_changes_nothing)
{
    struct fx f;
    struct import_report rep;
    struct store_counts a, b;
    const char *contacts = "\xEF\xBB\xBFplan,external_id,email,ltv,email_consent\n"
                           "pro,c1,c1@x.io,10,\n"
                           "free,c2,c2@x.io,,unsubscribed\n"
                           "basic,c3,c3@x.io,3.5,\n";
    const char *events = "occurred_at,event,external_id,note\n"
                         "2026-01-01T00:00:00Z,visit,c1,hello\n"
                         "2026-01-02T00:00:00Z,visit,c1,\n"
                         "2026-01-02T00:00:00Z,visit,c2,\"a, quoted \"\"note\"\"\"\n";
    fx_open(&f);
    cr_assert_eq(import(&f, IMPORT_CONTACTS, contacts, &rep), 0, "%s", f.e.msg);
    cr_assert_eq(rep.stats.inserted, 3);
    import_report_release(&rep);
    cr_assert_eq(import(&f, IMPORT_EVENTS, events, &rep), 0, "%s", f.e.msg);
    cr_assert_eq(rep.stats.inserted, 3);
    import_report_release(&rep);
    cr_assert_eq(store_counts(f.st, &a, &f.e), 0);

    cr_assert_eq(import(&f, IMPORT_CONTACTS, contacts, &rep), 0);
    cr_assert_eq(rep.stats.inserted + rep.stats.updated, 0);
    cr_assert_eq(rep.stats.duplicates, 3);
    import_report_release(&rep);
    cr_assert_eq(import(&f, IMPORT_EVENTS, events, &rep), 0);
    cr_assert_eq(rep.stats.inserted, 0);
    cr_assert_eq(rep.stats.duplicates, 3);
    import_report_release(&rep);
    cr_assert_eq(store_counts(f.st, &b, &f.e), 0);
    cr_assert_eq(a.contact_seq, b.contact_seq, "no contact changed");
    cr_assert_eq(a.event_seq, b.event_seq, "no event changed");
    cr_assert_eq(a.events, b.events);
    fx_close(&f);
}

UTEST(csv, rejected_rows_are_kept_once_across_reimports)
{
    struct fx f;
    struct import_report rep;
    struct store_counts n;
    const char *text = "external_id,email\nc1,bad-email\n";
    fx_open(&f);
    cr_assert_eq(import(&f, IMPORT_CONTACTS, text, &rep), 0);
    import_report_release(&rep);
    cr_assert_eq(import(&f, IMPORT_CONTACTS, text, &rep), 0);
    cr_assert_eq(rep.stats.rejected, 1, "reported again");
    import_report_release(&rep);
    cr_assert_eq(store_counts(f.st, &n, &f.e), 0);
    cr_assert_eq(n.rejected_pending, 1, "but stored once");
    fx_close(&f);
}

/* The one letter of the store (these tests make one), copied out. */
struct letter {
    char reason[32], field[160], message[256], origin[512];
    char *raw;
    int truncated;
    int64_t raw_bytes;
    int n;
};

static int grab_letter(void *ctx, const struct store_rejected *r)
{
    struct letter *l = ctx;
    if (l->n++ == 0) {
        snprintf(l->reason, sizeof l->reason, "%s", r->reason);
        snprintf(l->field, sizeof l->field, "%s", r->field);
        snprintf(l->message, sizeof l->message, "%s", r->message);
        snprintf(l->origin, sizeof l->origin, "%s", r->origin);
        l->raw = strdup(r->raw);
        l->truncated = r->truncated;
        l->raw_bytes = r->raw_bytes;
    }
    return 0;
}

static void get_letter(struct fx *f, struct letter *l)
{
    struct store_rejected_filter flt = {0};
    memset(l, 0, sizeof *l);
    cr_assert_eq(store_rejected_list(f->st, &flt, grab_letter, l, &f->e), 0, "%s", f->e.msg);
}

/* A file of head, then a quoted cell of nbytes 'x' (a newline every 1000), then tail;
 * written in pieces, so that the test itself never holds the cell. */
static void write_big(struct fx *f, const char *head, size_t nbytes, const char *tail, char *path,
                      size_t pathcap)
{
    char block[4000];
    FILE *fp;
    size_t i, done = 0;
    snprintf(path, pathcap, "%s/in.csv", f->dir);
    for (i = 0; i < sizeof block; i++)
        block[i] = i % 1000 == 999 ? '\n' : 'x';
    fp = fopen(path, "wb");
    cr_assert_not_null(fp);
    fputs(head, fp);
    fputc('"', fp);
    while (done < nbytes) {
        size_t k = nbytes - done < sizeof block ? nbytes - done : sizeof block;
        fwrite(block, 1, k, fp);
        done += k;
    }
    fputc('"', fp);
    fputs(tail, fp);
    fclose(fp);
}

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* An oversized cell used to stop the import (rc E_TOOBIG): the batch rolled back, the
 * rest never read, the row not kept. Now the row is a truncated dead letter naming its
 * line, column and the cap, and every other row is stored. */
UTEST(csv, an_oversized_cell_is_a_dead_letter_and_the_import_goes_on)
{
    static const enum import_kind kinds[] = {IMPORT_CONTACTS, IMPORT_EVENTS};
    size_t k;
    for (k = 0; k < 2; k++) {
        struct fx f;
        struct import_report rep;
        struct import_opts o = {.kind = kinds[k], .batch_rows = 2};
        struct letter l;
        char path[512];
        const char *head = kinds[k] == IMPORT_CONTACTS
                               ? "external_id,city,bio\nc1,Pune,a\nc2,Goa,b\nc3,Delhi,"
                               : "external_id,event,occurred_at,bio\nc1,visit,2026-01-01,a\n"
                                 "c2,visit,2026-01-01,b\nc3,visit,2026-01-01,";
        const char *tail = kinds[k] == IMPORT_CONTACTS
                               ? "\nc4,Kochi,d\nc5,Agra,e\nc6,\"bad\"x\",f\n"
                               : "\nc4,visit,2026-01-01,d\nc5,visit,2026-01-01,e\n"
                                 "c6,visit,notatime,f\n";
        fx_open(&f);
        write_big(&f, head, 3 << 20, tail, path, sizeof path);
        o.path = path;
        if (kinds[k] == IMPORT_CONTACTS) { /* a malformed row after it: the error names its line */
            cr_assert_eq(import_csv(&f.in, &o, &rep, &f.e), E_INVAL);
            cr_assert(strstr(f.e.msg, "in.csv:3152: malformed quoting"),
                      "lines inside the dropped cell are counted: %s", f.e.msg);
            import_report_release(&rep);
            cr_assert_eq(fx_sql_int(&f, "SELECT count(*) FROM contacts"), 3,
                         "c1, c2, c4 (c3 is a letter); c5's batch is rolled back");
            fx_close(&f);
            fx_open(&f);
            head = "external_id,city,bio\nc1,Pune,a\nc2,Goa,b\nc3,Delhi,";
            write_big(&f, head, 3 << 20, "\nc4,Kochi,d\nc5,Agra,e\nc6,Agra,f\n", path, sizeof path);
        }
        cr_assert_eq(import_csv(&f.in, &o, &rep, &f.e), 0, "%s", f.e.msg);
        cr_assert_eq(rep.stats.read, 6);
        cr_assert_eq(rep.stats.inserted, kinds[k] == IMPORT_CONTACTS ? 5 : 4);
        cr_assert_eq(rep.stats.rejected, kinds[k] == IMPORT_CONTACTS ? 1 : 2);
        cr_assert_eq(first_line(&rep, "value_too_large"), 4);
        import_report_release(&rep);
        cr_assert_eq(fx_sql_int(&f, "SELECT read FROM imports ORDER BY id DESC LIMIT 1"), 6);
        cr_assert_eq(fx_sql_int(&f, "SELECT inserted FROM imports ORDER BY id DESC LIMIT 1"),
                     kinds[k] == IMPORT_CONTACTS ? 5 : 4, "import status tells what is stored");
        get_letter(&f, &l);
        cr_assert_str_eq(l.reason, "value_too_large");
        cr_assert_str_eq(l.field, "bio");
        cr_assert_str_eq(l.message,
                         "value of 3145728 bytes exceeds [ingest] max_value_bytes (1048576)");
        cr_assert(strstr(l.origin, "in.csv:4"), "%s", l.origin);
        cr_assert(l.truncated);
        cr_assert_geq(l.raw_bytes, 3 << 20);
        cr_assert_leq(strlen(l.raw), STORE_REJECTED_MAX_RAW);
        cr_assert(strstr(l.raw, "\"external_id\":\"c3\""), "the ids are kept: %.200s", l.raw);
        cr_assert(strstr(l.raw, "\"bio\":\"xxx"), "the cell's head: %.200s", l.raw);
        cr_assert_lt(strlen(l.raw), 4096 + 200, "a head, not 64 KiB of x");
        free(l.raw);
        fx_close(&f);
    }
}

/* The reader never holds an oversized cell: a 48 MB one costs what a small one does. */
UTEST(csv, an_oversized_cell_is_never_held_whole)
{
    struct fx f;
    struct import_report rep;
    struct import_opts o = {.kind = IMPORT_CONTACTS, .batch_rows = 100};
    char path[512];
    long before;
    fx_open(&f);
    write_big(&f, "external_id,bio\nc0,a\nc1,", 48 << 20, "\nc2,b\n", path, sizeof path);
    o.path = path;
    before = max_rss_kb();
    cr_assert_eq(import_csv(&f.in, &o, &rep, &f.e), 0, "%s", f.e.msg);
    cr_assert_eq(rep.stats.inserted, 2);
    cr_assert_eq(rep.stats.rejected, 1);
    import_report_release(&rep);
    cr_assert_lt(max_rss_kb() - before, 24 * 1024, "peak grew by %ld KB", max_rss_kb() - before);
    fx_close(&f);
}

/* A row whose cells pass [ingest] max_row_bytes, none of them too long on its own. */
UTEST(csv, a_long_row_is_a_dead_letter)
{
    struct fx f;
    struct import_report rep;
    struct letter l;
    struct buf b;
    int i, j;
    fx_open(&f);
    f.cfg.max_row_bytes = 4096;
    buf_init(&b);
    buf_adds(&b, "external_id,a,b,c,d,e,f,g,h\nc1,x,y,z,,,,,\nc2");
    for (i = 0; i < 8; i++) {
        buf_addc(&b, ',');
        for (j = 0; j < 1000; j++)
            buf_addc(&b, (char)('a' + i));
    }
    buf_adds(&b, "\nc3,x,y,z,,,,,\n");
    cr_assert_eq(import(&f, IMPORT_CONTACTS, b.p, &rep), 0, "%s", f.e.msg);
    cr_assert_eq(rep.stats.inserted, 2);
    cr_assert_eq(rep.stats.rejected, 1);
    cr_assert_eq(first_line(&rep, "row_too_large"), 3);
    import_report_release(&rep);
    get_letter(&f, &l);
    cr_assert_str_eq(l.field, "");
    cr_assert_str_eq(l.message, "row of 8002 bytes exceeds [ingest] max_row_bytes (4096)");
    cr_assert(l.truncated);
    cr_assert_eq(l.raw_bytes, 8002);
    cr_assert(strstr(l.raw, "\"a\":\"aaa"), "the cells before the cap are kept: %.100s", l.raw);
    cr_assert_null(strstr(l.raw, "\"h\":"), "those after it are not: %.100s", l.raw);
    free(l.raw);
    /* The header is a row like the others; past a cap it stops the import. */
    cr_assert_eq(import(&f, IMPORT_CONTACTS,
                        b.p + strlen("external_id,a,b,c,d,e,f,g,h\nc1,x,y,z,,,,,\n"), &rep),
                 E_TOOBIG);
    cr_assert(
        strstr(f.e.msg, "in.csv:1: the header row is longer than [ingest] max_row_bytes (4096)"),
        "%s", f.e.msg);
    import_report_release(&rep);
    buf_release(&b);
    fx_close(&f);
}

/* A fatal error stops the import: the batch in flight is rolled back, and the import's
 * row counts only what the committed batches stored (it counted the lost rows). */
UTEST(csv, a_failed_import_reports_what_was_stored)
{
    struct fx f;
    struct import_report rep;
    fx_open(&f);
    cr_assert_eq(
        import(&f, IMPORT_CONTACTS, "external_id,city\nc1,a\nc2,b\nc3,c\nc4,\"d\"x\n", &rep),
        E_INVAL);
    cr_assert_eq(rep.stats.inserted, 2);
    import_report_release(&rep);
    cr_assert_eq(fx_sql_int(&f, "SELECT count(*) FROM contacts"), 2);
    cr_assert_eq(fx_sql_int(&f, "SELECT inserted FROM imports ORDER BY id DESC LIMIT 1"), 2);
    cr_assert_eq(fx_sql_int(&f, "SELECT read FROM imports ORDER BY id DESC LIMIT 1"), 2);
    cr_assert_eq(import(&f, IMPORT_EVENTS,
                        "external_id,event,occurred_at\nc1,v,2026-01-01\n"
                        "c1,w,2026-01-01\nc1,x,2026-01-01\nc1,\"y\"z,2026-01-01\n",
                        &rep),
                 E_INVAL);
    import_report_release(&rep);
    cr_assert_eq(fx_sql_int(&f, "SELECT inserted FROM imports ORDER BY id DESC LIMIT 1"),
                 fx_sql_int(&f, "SELECT live FROM event_totals"));
    fx_close(&f);
}

/* The CSV fast path and the JSON path (HTTP, replay) must agree: same key for an
 * event without event_id, same typed properties. */
struct got {
    char *props;
    int version;
};

static int grab(void *ctx, const struct store_event *ev)
{
    struct got *g = ctx;
    g->props = strdup(ev->props);
    g->version = ev->contract_version;
    return 0;
}

UTEST(csv, fast_path_agrees_with_the_json_path)
{
    struct fx f;
    struct import_report rep;
    const char *rows[][4] = {
        /* event, occurred_at, note (undeclared), amount */
        {"order_created", "", "Zoë ✓ \"quoted\"", "12.50"},
        {"page_viewed", "2026-02-01T10:00:00+05:30", "42", "7"},
        {"page_viewed", "2026-02-01", "true", "2026-01-01"},
        {"page_viewed", "2026-02-02", "0123", "-1e3"},
    };
    char text[2048];
    size_t i;

    fx_open(&f);
    snprintf(text, sizeof text,
             "external_id,event,occurred_at,note,amount,currency,order_id,created_at\n");
    for (i = 0; i < 4; i++) {
        size_t n = strlen(text);
        snprintf(text + n, sizeof text - n,
                 "c%zu,%s,%s,\"%s\",%s,INR,o%zu,2026-01-0%zuT00:00:00Z\n", i, rows[i][0],
                 rows[i][1], i == 0 ? "Zoë ✓ \"\"quoted\"\"" : rows[i][2], rows[i][3], i, i + 1);
    }
    cr_assert_eq(import(&f, IMPORT_EVENTS, text, &rep), 0, "%s", f.e.msg);
    cr_assert_eq(rep.stats.inserted, 4);
    import_report_release(&rep);
    for (i = 0; i < 4; i++) {
        struct prepared_event p;
        struct ingest_ctx cx = {
            .kind = SRC_CSV, .source = "csv", .text_mode = 1, .received_at = clock_now_ms()};
        char xid[8], oid[8], cat[32];
        struct got g = {0};
        json_t *props, *rec, *a, *b;
        snprintf(xid, sizeof xid, "c%zu", i);
        snprintf(oid, sizeof oid, "o%zu", i);
        snprintf(cat, sizeof cat, "2026-01-0%zuT00:00:00Z", i + 1);
        props = json_pack("{s:s,s:s,s:s,s:s,s:s}", "note", rows[i][2], "amount", rows[i][3],
                          "currency", "INR", "order_id", oid, "created_at", cat);
        rec = json_pack("{s:s,s:s,s:o}", "external_id", xid, "event", rows[i][0], "properties",
                        props);
        if (*rows[i][1])
            json_object_set_new(rec, "occurred_at", json_string(rows[i][1]));
        cr_assert_eq(store_begin(f.st, &f.e), 0);
        {
            struct contract_set *cs;
            cr_assert_eq(contract_set_load(f.st, &f.cfg, &cs, &f.e), 0);
            ingest_event_prepare(cs, &cx, rec, &p);
            contract_set_free(cs);
        }
        store_rollback(f.st);
        cr_assert_not(p.rejected, "row %zu: %s %s", i, p.field, p.msg);
        cr_assert_eq(store_event_get(f.st, p.event_id, grab, &g, &f.e), 0);
        cr_assert_not_null(g.props, "row %zu: the JSON path derives the key the import stored", i);
        a = json_loads(g.props, 0, NULL);
        b = json_loads(p.props, 0, NULL);
        cr_assert(json_equal(a, b) || (json_number_value(json_object_get(a, "amount")) ==
                                       json_number_value(json_object_get(b, "amount"))),
                  "row %zu: %s vs %s", i, g.props, p.props);
        cr_assert_str_eq(json_string_value(json_object_get(a, "note"))
                             ? json_string_value(json_object_get(a, "note"))
                             : "",
                         json_string_value(json_object_get(b, "note"))
                             ? json_string_value(json_object_get(b, "note"))
                             : "");
        json_decref(a);
        json_decref(b);
        free(g.props);
        prepared_event_release(&p);
        json_decref(rec);
    }
    fx_close(&f);
}

UTEST(csv, invalid_utf8_is_rejected_not_dropped)
{
    struct fx f;
    struct import_report rep;
    fx_open(&f);
    cr_assert_eq(import(&f, IMPORT_CONTACTS, "external_id,city\nc1,M\xfcnchen\nc2,Pune\n", &rep), 0,
                 "%s", f.e.msg);
    cr_assert_eq(rep.stats.inserted, 1);
    cr_assert_eq(rep.stats.rejected, 1);
    cr_assert_not_null(json_object_get(rep.rejected_by_reason, "invalid_encoding"));
    import_report_release(&rep);
    cr_assert_eq(import(&f, IMPORT_EVENTS,
                        "external_id,event,occurred_at,note\nc1,visit,2026-01-01,caf\xe9\n", &rep),
                 0);
    cr_assert_eq(rep.stats.rejected, 1);
    cr_assert_not_null(json_object_get(rep.rejected_by_reason, "invalid_encoding"));
    import_report_release(&rep);
    cr_assert_neq(import(&f, IMPORT_CONTACTS, "external_id,ci\xfft\n", &rep), 0);
    cr_assert(strstr(f.e.msg, "in.csv:1: the name of column 2 is not valid UTF-8"), "%s", f.e.msg);
    import_report_release(&rep);
    fx_close(&f);
}

UTEST(csv, timestamps_at_the_edge_of_the_range_are_rejected_cleanly)
{
    struct fx f;
    struct import_report rep;
    fx_open(&f);
    cr_assert_eq(import(&f, IMPORT_EVENTS,
                        "external_id,event,occurred_at,order_id,amount,currency,created_at\n"
                        "c1,order_created,,o1,1,INR,9999-12-31T23:59:59-23:59\n"
                        "c1,order_created,,o2,1,INR,9999-12-31T23:59:59Z\n",
                        &rep),
                 0, "%s", f.e.msg);
    cr_assert_eq(rep.stats.rejected, 1, "year 10000 after the offset: rejected, not a crash");
    cr_assert_eq(rep.stats.inserted, 1);
    import_report_release(&rep);
    fx_close(&f);
}

UTEST(csv, nul_bytes_and_control_characters_are_rejected_not_cut)
{
    struct fx f;
    struct import_report rep;
    char text[] =
        "external_id,event,occurred_at,note\nc1,visit,2026-01-01,a_b\nc1,sign\001up,2026-01-01,x\n";
    char path[512];
    struct import_opts o = {.kind = IMPORT_EVENTS, .path = path, .batch_rows = 10};
    FILE *fp;

    fx_open(&f);
    text[strlen("external_id,event,occurred_at,note\nc1,visit,2026-01-01,a")] = '\0';
    snprintf(path, sizeof path, "%s/nul.csv", f.dir);
    fp = fopen(path, "wb");
    fwrite(text, 1, sizeof text - 1, fp);
    fclose(fp);
    cr_assert_eq(import_csv(&f.in, &o, &rep, &f.e), 0, "%s", f.e.msg);
    cr_assert_eq(rep.stats.inserted, 0);
    cr_assert_eq(rep.stats.rejected, 2);
    cr_assert_not_null(json_object_get(rep.rejected_by_reason, "invalid_encoding"), "the NUL row");
    cr_assert_not_null(json_object_get(rep.rejected_by_reason, "invalid_name"), "the \\x01 name");
    import_report_release(&rep);
    fx_close(&f);
}

UTEST(csv, fast_path_reports_the_same_reason_as_the_json_path)
{
    struct fx f;
    struct import_report rep;
    int v;
    fx_open(&f);
    cr_assert_eq(store_begin(f.st, &f.e), 0);
    cr_assert_eq(
        store_contract_put(f.st, "strict_ev", "event",
                           "{\"name\":\"strict_ev\",\"additional_properties\":false,"
                           "\"properties\":{\"amount\":{\"type\":\"number\",\"required\":true},"
                           "\"currency\":{\"type\":\"string\",\"required\":true}}}",
                           "test", &v, &f.e),
        0);
    cr_assert_eq(store_commit(f.st, &f.e), 0);
    /* No currency column, a bad amount, an undeclared column: the JSON path walks the
     * contract in order, so it stops at amount. */
    cr_assert_eq(import(&f, IMPORT_EVENTS,
                        "external_id,event,occurred_at,aaa,amount\n"
                        "c1,strict_ev,2026-01-01,x,abc\n",
                        &rep),
                 0);
    cr_assert_not_null(json_object_get(rep.rejected_by_reason, "invalid_type"),
                       "amount first, as contract_apply does");
    import_report_release(&rep);
    cr_assert_eq(import(&f, IMPORT_EVENTS,
                        "external_id,event,occurred_at,aaa,amount,currency\n"
                        "c1,strict_ev,2026-01-01,x,5,INR\n",
                        &rep),
                 0);
    cr_assert_not_null(json_object_get(rep.rejected_by_reason, "undeclared_field"));
    import_report_release(&rep);
    fx_close(&f);
}

UTEST(csv, thousands_of_event_names_in_one_file_all_import)
{
    struct fx f;
    struct import_report rep;
    struct buf b;
    int i;
    fx_open(&f);
    buf_init(&b);
    buf_adds(&b, "external_id,event,occurred_at,n\n");
    for (i = 0; i < 4200; i++)
        buf_printf(&b, "c1,ev%d,2026-01-01,%d\n", i, i);
    cr_assert_eq(import(&f, IMPORT_EVENTS, b.p, &rep), 0, "%s", f.e.msg);
    cr_assert_eq(rep.stats.inserted, 4200,
                 "past the fast path's plan cap the JSON path takes over");
    import_report_release(&rep);
    buf_release(&b);
    fx_close(&f);
}

static const char *attr(struct fx *f, const char *xid, const char *name, char *out, size_t cap)
{
    struct store_contact c;
    json_t *v;
    store_contact_init(&c);
    cr_assert_eq(store_contact_get_by_xid(f->st, xid, &c, &f->e), 0, "%s: %s", xid, f->e.msg);
    v = json_object_get(c.attrs, name);
    if (v == NULL)
        out = NULL;
    else if (json_is_string(v))
        snprintf(out, cap, "%s", json_string_value(v));
    else
        snprintf(out, cap, "(%s)", json_is_number(v) ? "number" : "other");
    store_contact_release(&c);
    return out;
}

/* RFC 4180: spaces are part of a field, quoted or not; libcsv's default dropped them
 * around unquoted cells, so "Pune " was stored as "Pune" and a cell of spaces vanished. */
UTEST(csv, spaces_are_kept_exactly)
{
    struct fx f;
    struct import_report rep;
    char v[64];
    fx_open(&f);
    cr_assert_eq(import(&f, IMPORT_CONTACTS,
                        "external_id,city,note\n"
                        "c1,Pune ,\"  quoted  \"\n"
                        "c2,   ,\"\t\"\n"
                        "c3, Goa,x\n",
                        &rep),
                 0, "%s", f.e.msg);
    cr_assert_eq(rep.stats.inserted, 3);
    import_report_release(&rep);
    cr_assert_str_eq(attr(&f, "c1", "city", v, sizeof v), "Pune ", "a trailing space, unquoted");
    cr_assert_str_eq(attr(&f, "c1", "note", v, sizeof v), "  quoted  ", "quoted");
    cr_assert_str_eq(attr(&f, "c2", "city", v, sizeof v), "   ", "a cell of spaces is not absent");
    cr_assert_str_eq(attr(&f, "c2", "note", v, sizeof v), "\t");
    cr_assert_str_eq(attr(&f, "c3", "city", v, sizeof v), " Goa", "a leading space");
    fx_close(&f);
}

/* A number, integer, boolean or timestamp is read without the blanks around it (they
 * mean nothing there); a cell of blanks in such a column is refused, not absent. */
UTEST(csv, typed_cells_are_read_without_the_blanks_around_them)
{
    struct fx f;
    struct import_report rep;
    json_t *ex;
    char v[64];
    fx_open(&f);
    cr_assert_eq(import(&f, IMPORT_CONTACTS, "external_id,ltv,seen\nc1, 12.5 ,\t7\n", &rep), 0,
                 "%s", f.e.msg);
    cr_assert_eq(rep.stats.inserted, 1);
    import_report_release(&rep);
    cr_assert_str_eq(attr(&f, "c1", "ltv", v, sizeof v), "(number)", "declared number");
    cr_assert_str_eq(attr(&f, "c1", "seen", v, sizeof v), "(number)", "inferred number");
    cr_assert_eq(import(&f, IMPORT_CONTACTS, "external_id,ltv\nc2,   \n", &rep), 0, "%s", f.e.msg);
    cr_assert_eq(rep.stats.rejected, 1);
    ex = json_array_get(
        json_object_get(json_object_get(rep.rejected_by_reason, "invalid_type"), "examples"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(ex, "field")), "ltv");
    cr_assert(strstr(json_string_value(json_object_get(ex, "message")), "got \"   \""), "%s",
              json_string_value(json_object_get(ex, "message")));
    import_report_release(&rep);
    /* Events: a typed property and occurred_at, through the CSV fast path. */
    cr_assert_eq(import(&f, IMPORT_EVENTS,
                        "external_id,event,occurred_at,order_id,amount,currency,created_at\n"
                        "c1,order_created,,o1, 12.5 ,INR, 2026-01-01T00:00:00Z\n"
                        "c1,visit, 2026-01-02 ,,,,\n"
                        "c1,order_created,,o2,   ,INR,2026-01-01T00:00:00Z\n",
                        &rep),
                 0, "%s", f.e.msg);
    cr_assert_eq(rep.stats.inserted, 2);
    cr_assert_eq(rep.stats.rejected, 1, "a blank amount");
    cr_assert_not_null(json_object_get(rep.rejected_by_reason, "invalid_type"));
    import_report_release(&rep);
    fx_close(&f);
}

UTEST(csv, header_names_with_spaces_around_them_are_refused)
{
    expect_fatal("external_id, city\nc1,Pune\n", IMPORT_CONTACTS,
                 "in.csv:1: the name of column 2, \" city\", has spaces around it", " city");
    expect_fatal("external_id,\"email \"\nc1,a@x.io\n", IMPORT_CONTACTS,
                 "the name of column 2, \"email \", has spaces around it", "email ");
    /* Text after a closing quote, spaces included, is malformed (RFC 4180). */
    expect_fatal("external_id,city\nc1,\"Pune\" \n", IMPORT_CONTACTS, "in.csv:2: malformed quoting",
                 NULL);
}
