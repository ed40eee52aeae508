/* tests/unit/store.c -- the store's conformance suite, part 1 (events.c is part 2):
 * what store.h promises, checked through store.h alone against the backend named by
 * ENGAGE_TEST_STORE (store_loc.h): migrations, change sequences and their watermark
 * under concurrent writers, first write wins across connections, dead letters, readers
 * beside a writer, the kept sync reconciliations. What only SQLite does is in
 * store_sqlite.c. */
#include <pthread.h>
#include <stdlib.h>

#include "store_fixture.h"

UTEST(store, fresh_store_is_migrated)
{
    char *d = test_store_location();
    struct store *st = open_with(d, 1000);
    struct err e = {0};
    int v, from, to;
    cr_assert_eq(store_schema_version(st, &v, &e), 0);
    cr_assert_eq(v, STORE_SCHEMA_VERSION);
    cr_assert_eq(store_migrate(st, &from, &to, &e), 0);
    cr_assert_eq(from, to, "a second migrate is a no-op");
    store_close(st);
    free(d);
}

UTEST(store, older_schema_needs_migrate_when_not_migrating)
{
    char *d = test_store_location();
    struct store_opts o = {.busy_timeout_ms = 100, .migrate = 0};
    struct store *st = NULL;
    struct err e = {0};
    cr_assert_eq(store_open(&st, d, &o, &e), E_CONFLICT, "an empty store is version 0");
    cr_assert(strstr(e.msg, "engage migrate"), "%s", e.msg);
    free(d);
}

UTEST(store, change_sequences_increase_on_every_change)
{
    char *d = test_store_location();
    struct store *st = open_with(d, 1000);
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
    char *d = test_store_location();
    struct store *st = open_with(d, 1000);
    struct store_rejected r = {.source = "csv",
                               .kind = "event",
                               .reason = "bad_row",
                               .message = "m",
                               .raw = "{}",
                               .fingerprint = "fp1"};
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

UTEST(store, readers_are_not_blocked_by_a_writer)
{
    char *d = test_store_location();
    struct store *a = open_with(d, 1000), *b = open_with(d, 100);
    struct store_counts c;
    struct err e = {0};

    cr_assert_eq(store_begin(a, &e), 0);
    cr_assert_eq(store_counts(b, &c, &e), 0, "WAL: reads go on during a write: %s", e.msg);
    store_rollback(a);
    store_close(a);
    store_close(b);
    free(d);
}

UTEST(store, last_reconciliation_of_a_source)
{
    char *d = test_store_location();
    struct store *st = open_with(d, 1000);
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

/* ---- writers on threads of their own (no cr_assert off the test's thread) ---- */

struct writer {
    const char *loc;
    int index;       /* which writer */
    int64_t contact; /* dup_write: the contact its events name */
    int inserted, failed;
    char msg[256];
};

/* Opens the writer's own connection. */
static int writer_open(struct writer *w, struct store **st, struct err *e)
{
    struct store_opts o = {.busy_timeout_ms = 10000, .migrate = 1};

    return store_open(st, w->loc, &o, e);
}

/* Inserts event eid (name "name") of contact in the open transaction. */
static int writer_event(struct store *st, const char *name, int64_t contact, const char *eid,
                        int *ins, struct err *e)
{
    struct store_event ev = {
        .contact_id = contact, .event_id = eid, .source = "test", .props = "{}"};
    int rc = store_event_name_id(st, name, 1, &ev.name_id, e);

    *ins = 0;
    return rc ? rc : store_event_insert(st, &ev, ins, e);
}

static void *writer_done(struct writer *w, struct store *st, int rc, const struct err *e)
{
    if (rc) {
        w->failed = 1;
        snprintf(w->msg, sizeof w->msg, "%s", e->msg);
    }
    store_close(st);
    return NULL;
}

/* ---- promise 1: changes readable in commit order up to a watermark ---- */

#define WM_WRITERS 2
#define WM_TX 60 /* transactions per writer */
#define WM_PER_TX 5

/* Commits WM_TX transactions of WM_PER_TX contacts and as many events each. */
static void *wm_write(void *arg)
{
    struct writer *w = arg;
    struct store *st = NULL;
    struct err e = {0};
    int t, i, rc = writer_open(w, &st, &e);

    for (t = 0; rc == 0 && t < WM_TX; t++) {
        rc = store_begin(st, &e);
        for (i = 0; rc == 0 && i < WM_PER_TX; i++) {
            struct store_contact c;
            char xid[64], eid[64];
            int ins = 0;
            store_contact_init(&c);
            snprintf(xid, sizeof xid, "w%d-%d-%d", w->index, t, i);
            snprintf(eid, sizeof eid, "ev-%s", xid);
            c.external_id = strdup(xid);
            c.attrs = json_object();
            rc = store_contact_insert(st, &c, &e);
            if (rc == 0)
                rc = writer_event(st, "wm", c.id, eid, &ins, &e);
            if (rc == 0 && ins != 1)
                rc = ERR(&e, E_INTERNAL, "event %s not stored", eid);
            store_contact_release(&c);
        }
        rc = store_finish(st, rc, &e);
    }
    return writer_done(w, st, rc, &e);
}

struct wm_seen {
    int64_t watermark, count;
    int bad; /* a change at or below the watermark, or out of order */
    int64_t bad_seq, bad_at;
};

static void wm_see(struct wm_seen *w, int64_t seq)
{
    if (seq <= w->watermark && !w->bad) {
        w->bad = 1;
        w->bad_seq = seq;
        w->bad_at = w->watermark;
    }
    if (seq > w->watermark)
        w->watermark = seq;
    w->count++;
}

static int wm_contact(void *ctx, const struct store_contact *c)
{
    wm_see(ctx, c->seq);
    return 0;
}

static int wm_event(void *ctx, const struct store_event *ev)
{
    wm_see(ctx, ev->seq);
    return 0;
}

/* Reads what is new since the watermarks, in small pages, as an index catching up. */
static void wm_read(struct store *st, struct wm_seen *c, struct wm_seen *ev)
{
    struct err e = {0};
    int64_t before;

    do {
        before = c->count;
        cr_assert_eq(store_contacts_since(st, c->watermark, 7, wm_contact, c, &e), 0, "%s", e.msg);
    } while (c->count > before);
    do {
        before = ev->count;
        cr_assert_eq(store_events_since(st, ev->watermark, 7, 0, wm_event, ev, &e), 0, "%s", e.msg);
    } while (ev->count > before);
}

UTEST(store, a_readers_watermark_never_goes_back_under_concurrent_writers)
{
    char *loc = test_store_location();
    struct store *rd;
    struct store_opts o = {.busy_timeout_ms = 10000, .migrate = 1};
    struct writer w[WM_WRITERS];
    pthread_t th[WM_WRITERS];
    struct wm_seen c = {0}, ev = {0};
    struct err e = {0};
    int i, rounds = 0;

    cr_assert_eq(store_open(&rd, loc, &o, &e), 0, "%s", e.msg);
    for (i = 0; i < WM_WRITERS; i++) {
        w[i] = (struct writer){.loc = loc, .index = i};
        cr_assert_eq(pthread_create(&th[i], NULL, wm_write, &w[i]), 0);
    }
    /* Read while they write: every change found must be above what was seen before. */
    while (c.count < WM_WRITERS * WM_TX * WM_PER_TX && rounds++ < 100000) {
        usleep(100);
        wm_read(rd, &c, &ev);
        cr_assert_not(c.bad, "contact seq %lld found after the watermark was %lld",
                      (long long)c.bad_seq, (long long)c.bad_at);
        cr_assert_not(ev.bad, "event seq %lld found after the watermark was %lld",
                      (long long)ev.bad_seq, (long long)ev.bad_at);
    }
    for (i = 0; i < WM_WRITERS; i++) {
        cr_assert_eq(pthread_join(th[i], NULL), 0);
        cr_assert_not(w[i].failed, "writer %d: %s", i, w[i].msg);
    }
    wm_read(rd, &c, &ev);
    cr_assert_not(c.bad || ev.bad, "a change appeared below the watermark at the end");
    cr_assert_eq(c.count, WM_WRITERS * WM_TX * WM_PER_TX, "every contact change read once");
    cr_assert_eq(ev.count, WM_WRITERS * WM_TX * WM_PER_TX, "every event change read once");
    store_close(rd);
    free(loc);
}

/* ---- promise 2: first write wins on an event id, across connections and restarts ---- */

#define DUP_IDS 300

/* Writes the same DUP_IDS event ids as the other writer, in batches of 10. */
static void *dup_write(void *arg)
{
    struct writer *w = arg;
    struct store *st = NULL;
    struct err e = {0};
    int i, rc = writer_open(w, &st, &e);

    for (i = 0; rc == 0 && i < DUP_IDS; i++) {
        char eid[32];
        int ins = 0;
        if (i % 10 == 0)
            rc = store_begin(st, &e);
        snprintf(eid, sizeof eid, "dup-%d", i);
        if (rc == 0)
            rc = writer_event(st, "dup", w->contact, eid, &ins, &e);
        w->inserted += rc == 0 && ins;
        if (rc || i % 10 == 9)
            rc = store_finish(st, rc, &e);
    }
    return writer_done(w, st, rc, &e);
}

struct dup_owner {
    int64_t contact[DUP_IDS];
    int n;
};

static int dup_seen(void *ctx, const struct store_event *ev)
{
    struct dup_owner *d = ctx;
    d->contact[d->n++] = ev->contact_id;
    return 0;
}

UTEST(store, first_write_wins_between_two_connections_writing_at_once_and_after_a_restart)
{
    char *loc = test_store_location();
    struct writer w[2] = {{.contact = 1}, {.contact = 2}};
    struct store_opts o = {.busy_timeout_ms = 10000, .migrate = 1};
    struct store *st;
    struct store_counts n;
    pthread_t th[2];
    struct err e = {0};
    int i, ins = -1;

    for (i = 0; i < 2; i++) {
        w[i].loc = loc;
        cr_assert_eq(pthread_create(&th[i], NULL, dup_write, &w[i]), 0);
    }
    for (i = 0; i < 2; i++) {
        cr_assert_eq(pthread_join(th[i], NULL), 0);
        cr_assert_not(w[i].failed, "writer %d: %s", i, w[i].msg);
    }
    cr_assert_eq(w[0].inserted + w[1].inserted, DUP_IDS,
                 "each id stored by exactly one of the two (%d + %d)", w[0].inserted,
                 w[1].inserted);
    /* A new connection (a restarted process) still refuses every id. */
    cr_assert_eq(store_open(&st, loc, &o, &e), 0, "%s", e.msg);
    cr_assert_eq(store_counts(st, &n, &e), 0, "%s", e.msg);
    cr_assert_eq(n.events, DUP_IDS);
    for (i = 0; i < DUP_IDS; i++) {
        struct dup_owner d = {.n = 0};
        char eid[32];
        snprintf(eid, sizeof eid, "dup-%d", i);
        cr_assert_eq(store_event_get(st, eid, dup_seen, &d, &e), 0, "%s", e.msg);
        cr_assert_eq(d.n, 1, "%s is stored once", eid);
        cr_assert(d.contact[0] == 1 || d.contact[0] == 2);
    }
    cr_assert_eq(store_begin(st, &e), 0, "%s", e.msg);
    {
        struct store_event ev = {
            .contact_id = 3, .event_id = "dup-7", .source = "test", .props = "{\"late\":1}"};
        cr_assert_eq(store_event_name_id(st, "dup", 1, &ev.name_id, &e), 0, "%s", e.msg);
        cr_assert_eq(store_event_insert(st, &ev, &ins, &e), 0, "%s", e.msg);
        cr_assert_eq(ins, 0, "a write after the restart is a no-op");
    }
    cr_assert_eq(store_commit(st, &e), 0, "%s", e.msg);
    cr_assert_eq(store_counts(st, &n, &e), 0);
    cr_assert_eq(n.events, DUP_IDS, "nothing added");
    store_close(st);
    free(loc);
}

/* ---- optional capabilities ---- */

static int hint_seen(void *ctx, const struct store_event *ev)
{
    ++*(int *)ctx;
    return ev->contact_id == 5 ? 0 : 1;
}

UTEST(store, the_contract_holds_without_the_speed_hints)
{
    char *loc = test_store_location();
    struct store_opts o = {.busy_timeout_ms = 1000, .migrate = 1};
    struct store *st;
    const struct store_caps *caps;
    struct store_event ev = {.contact_id = 5, .event_id = "h1", .source = "test", .props = "{}"};
    struct err e = {0};
    int ins = -1, n = 0;

    cr_assert_eq(store_open(&st, loc, &o, &e), 0, "%s", e.msg);
    caps = store_caps(st);
    cr_assert_not_null(caps, "every backend answers, if only with no hints");
    cr_assert_eq(store_event_key_hash("h1"), store_event_key_hash("h1"), "a pure function");
    cr_assert_neq(store_event_key_hash("h1"), store_event_key_hash("h2"));
    /* No hint used, key_hash left 0: first write wins all the same. */
    cr_assert_eq(store_begin(st, &e), 0, "%s", e.msg);
    cr_assert_eq(store_event_name_id(st, "hint", 1, &ev.name_id, &e), 0, "%s", e.msg);
    cr_assert_eq(store_event_insert(st, &ev, &ins, &e), 0, "%s", e.msg);
    cr_assert_eq(ins, 1);
    ev.contact_id = 6;
    ev.key_hash = store_event_key_hash("h1"); /* the hint, made ahead */
    cr_assert_eq(store_event_insert(st, &ev, &ins, &e), 0, "%s", e.msg);
    cr_assert_eq(ins, 0, "the same id with its hash filled in");
    cr_assert_eq(store_commit(st, &e), 0, "%s", e.msg);
    cr_assert_eq(store_event_get(st, "h1", hint_seen, &n, &e), 0, "%s", e.msg);
    cr_assert_eq(n, 1);
    store_close(st);
    free(loc);
}
