/* tests/unit/engagement_store.c -- the store's conformance suite for engagement (schema
 * 12): message events stored once per (source, source id), the ledger row's kind bits,
 * counters per run and minute, the journals' checkpoints, and the webhook inbox claimed
 * under leases (promise 3 of store.h), through store.h alone against the backend named by
 * ENGAGE_TEST_STORE (store_loc.h). Times are numbers the tests choose. */
#include <stdlib.h>

#include "store_fixture.h"

#define T0 1000000

static struct store *fresh(char **loc)
{
    *loc = test_store_location();
    return open_at(*loc);
}

static void done(struct store *st, char *loc)
{
    store_close(st);
    free(loc);
}

static int count_mev(void *ctx, const struct store_mevent *ev)
{
    (void)ev;
    ++*(int *)ctx;
    return 0;
}

UTEST(mevents, a_source_id_is_stored_once_and_none_means_every_hit)
{
    char *loc;
    struct store *st = fresh(&loc);
    struct err e = {0};
    struct store_mevent ev = {.source = "webhook:sg",
                              .source_id = "e1",
                              .kind = 1,
                              .run_id = 7,
                              .contact_id = 3,
                              .message_row = 11,
                              .at = T0,
                              .received_at = T0};
    int inserted = -1, n = 0;

    begin(st);
    cr_assert_eq(store_mevent_insert(st, &ev, &inserted, &e), 0, "%s", e.msg);
    cr_assert_eq(inserted, 1);
    cr_assert_gt(ev.id, 0);
    cr_assert_eq(store_mevent_insert(st, &ev, &inserted, &e), 0, "%s", e.msg);
    cr_assert_eq(inserted, 0, "the same source and id: nothing");
    ev.source = "webhook:other"; /* the same id from another source is another event */
    cr_assert_eq(store_mevent_insert(st, &ev, &inserted, &e), 0, "%s", e.msg);
    cr_assert_eq(inserted, 1);
    ev.source = "tracking";
    ev.source_id = NULL; /* hits: each one */
    cr_assert_eq(store_mevent_insert(st, &ev, &inserted, &e), 0, "%s", e.msg);
    cr_assert_eq(store_mevent_insert(st, &ev, &inserted, &e), 0, "%s", e.msg);
    cr_assert_eq(inserted, 1);
    ev.run_id = 0; /* an unknown message */
    ev.source_id = "u1";
    cr_assert_eq(store_mevent_insert(st, &ev, &inserted, &e), 0, "%s", e.msg);
    commit(st);
    cr_assert_eq(store_mevents_list(st, 7, 0, 0, 100, count_mev, &n, &e), 0, "%s", e.msg);
    cr_assert_eq(n, 4);
    n = 0;
    cr_assert_eq(store_mevents_list(st, 0, 0, 0, 100, count_mev, &n, &e), 0, "%s", e.msg);
    cr_assert_eq(n, 1, "the unknown ones apart");
    done(st, loc);
}

struct stat_sum {
    int64_t n[64];
    double x[64];
};

static int sum_stat(void *ctx, int metric, int64_t n, double x)
{
    struct stat_sum *s = ctx;

    s->n[metric] += n;
    s->x[metric] += x;
    return 0;
}

static int sum_minute(void *ctx, int64_t run_id, int64_t minute, int metric, int64_t n, double x)
{
    struct stat_sum *s = ctx;

    (void)run_id;
    (void)x;
    s->n[metric] += n * (minute == 100 ? 1 : 1000);
    return 0;
}

UTEST(stats, counters_add_per_run_and_per_minute)
{
    char *loc;
    struct store *st = fresh(&loc);
    struct err e = {0};
    struct stat_sum a = {0}, m = {0};
    int64_t runs[1] = {5};

    begin(st);
    cr_assert_eq(store_stat_add(st, 5, 11, 2, 0, &e), 0, "%s", e.msg);
    cr_assert_eq(store_stat_add(st, 5, 11, 3, 0, &e), 0, "%s", e.msg);
    cr_assert_eq(store_stat_add(st, 5, 20, 1, 99.5, &e), 0, "%s", e.msg);
    cr_assert_eq(store_stat_add(st, 6, 11, 7, 0, &e), 0, "%s", e.msg);
    cr_assert_eq(store_stat_minute_add(st, 5, 11, 100, 4, 0, &e), 0, "%s", e.msg);
    cr_assert_eq(store_stat_minute_add(st, 5, 11, 100, 1, 0, &e), 0, "%s", e.msg);
    cr_assert_eq(store_stat_minute_add(st, 5, 11, 200, 1, 0, &e), 0, "%s", e.msg);
    commit(st);
    cr_assert_eq(store_stats_of_run(st, 5, sum_stat, &a, &e), 0, "%s", e.msg);
    cr_assert_eq(a.n[11], 5);
    cr_assert_eq(a.n[20], 1);
    cr_assert_float_eq(a.x[20], 99.5, 1e-9);
    cr_assert_eq(store_stats_minutes(st, runs, 1, 100, 201, sum_minute, &m, &e), 0, "%s", e.msg);
    cr_assert_eq(m.n[11], 5 + 1000, "minute 100 holds 5, minute 200 holds 1");
    memset(&m, 0, sizeof m);
    cr_assert_eq(store_stats_minutes(st, runs, 1, 100, 200, sum_minute, &m, &e), 0, "%s", e.msg);
    cr_assert_eq(m.n[11], 5, "[from, to): minute 200 is out");
    done(st, loc);
}

UTEST(journals, a_checkpoint_is_absent_then_kept)
{
    char *loc;
    struct store *st = fresh(&loc);
    struct err e = {0};
    int64_t v = -1;

    cr_assert_eq(store_journal_applied(st, "tracking", &v, &e), E_NOTFOUND);
    cr_assert_eq(v, 0);
    begin(st);
    cr_assert_eq(store_journal_set(st, "tracking", 4096, &e), 0, "%s", e.msg);
    cr_assert_eq(store_journal_set(st, "conversions", 7, &e), 0, "%s", e.msg);
    cr_assert_eq(store_journal_set(st, "tracking", 8192, &e), 0, "%s", e.msg);
    commit(st);
    cr_assert_eq(store_journal_applied(st, "tracking", &v, &e), 0, "%s", e.msg);
    cr_assert_eq(v, 8192);
    cr_assert_eq(store_journal_applied(st, "conversions", &v, &e), 0, "%s", e.msg);
    cr_assert_eq(v, 7);
    done(st, loc);
}

struct claimed {
    int64_t ids[16];
    char bodies[16][32];
    int n;
};

static int keep_claim(void *ctx, const struct store_inbox *b)
{
    struct claimed *c = ctx;

    c->ids[c->n] = b->id;
    snprintf(c->bodies[c->n], sizeof c->bodies[c->n], "%.*s", (int)b->len, b->body);
    c->n++;
    return 0;
}

UTEST(inbox, bodies_are_claimed_under_leases_and_finished_by_their_owner_only)
{
    char *loc;
    struct store *st = fresh(&loc);
    struct err e = {0};
    struct claimed a = {0}, b = {0}, c = {0};
    int64_t id1, id2, id3, pending, oldest, failed, n;
    int held;

    begin(st);
    cr_assert_eq(store_inbox_insert(st, "mg", "tok-1", "one", 3, T0, &id1, &e), 0, "%s", e.msg);
    cr_assert_eq(store_inbox_insert(st, "mg", "tok-1", "again", 5, T0, &id2, &e), E_CONFLICT,
                 "a replay key twice");
    err_clear(&e);
    cr_assert_eq(store_inbox_insert(st, "sg", "tok-1", "two", 3, T0 + 1, &id2, &e), 0, "%s", e.msg);
    cr_assert_eq(store_inbox_insert(st, "sg", NULL, "three", 5, T0 + 2, &id3, &e), 0, "%s", e.msg);
    commit(st);
    cr_assert_eq(store_inbox_stats(st, &pending, &oldest, &failed, &e), 0, "%s", e.msg);
    cr_assert_eq(pending, 3);
    cr_assert_eq(oldest, T0);
    /* owner A takes two, oldest first; B takes the third; none is taken twice */
    begin(st);
    cr_assert_eq(store_inbox_claim(st, "A", T0 + 10, 1000, 2, keep_claim, &a, &e), 0, "%s", e.msg);
    cr_assert_eq(store_inbox_claim(st, "B", T0 + 10, 1000, 8, keep_claim, &b, &e), 0, "%s", e.msg);
    commit(st);
    cr_assert_eq(a.n, 2);
    cr_assert_eq(a.ids[0], id1);
    cr_assert_str_eq(a.bodies[0], "one");
    cr_assert_eq(b.n, 1);
    cr_assert_eq(b.ids[0], id3);
    /* A finishes one; B cannot finish A's other */
    begin(st);
    cr_assert_eq(store_inbox_finish(st, id1, "A", INBOX_DONE, 12, NULL, T0 + 20, &held, &e), 0);
    cr_assert_eq(held, 1);
    cr_assert_eq(store_inbox_finish(st, id2, "B", INBOX_DONE, 1, NULL, T0 + 20, &held, &e), 0);
    cr_assert_eq(held, 0, "not B's");
    commit(st);
    /* A dies: its lease runs out and C takes the body again; A's late outcome is refused */
    begin(st);
    cr_assert_eq(store_inbox_claim(st, "C", T0 + 500, 1000, 8, keep_claim, &c, &e), 0);
    cr_assert_eq(c.n, 0, "leases still hold");
    cr_assert_eq(store_inbox_claim(st, "C", T0 + 2000, 1000, 8, keep_claim, &c, &e), 0);
    cr_assert_eq(c.n, 2, "A's and B's leases ran out");
    cr_assert_eq(store_inbox_finish(st, id2, "A", INBOX_DONE, 1, NULL, T0 + 2001, &held, &e), 0);
    cr_assert_eq(held, 0, "reclaimed: A's outcome is not written");
    cr_assert_eq(
        store_inbox_finish(st, id2, "C", INBOX_FAILED, 0, "not JSON", T0 + 2001, &held, &e), 0);
    cr_assert_eq(held, 1);
    cr_assert_eq(store_inbox_finish(st, id3, "C", INBOX_DONE, 2, NULL, T0 + 2001, &held, &e), 0);
    commit(st);
    cr_assert_eq(store_inbox_stats(st, &pending, &oldest, &failed, &e), 0);
    cr_assert_eq(pending, 0);
    cr_assert_eq(failed, 1);
    /* a failed body goes back to pending; done ones are pruned by age */
    begin(st);
    cr_assert_eq(store_inbox_retry(st, id2, &n, &e), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(store_inbox_prune(st, T0 + 2001, &n, &e), 0);
    cr_assert_eq(n, 1, "only the body done at T0 + 20");
    commit(st);
    cr_assert_eq(store_inbox_stats(st, &pending, &oldest, &failed, &e), 0);
    cr_assert_eq(pending, 1);
    cr_assert_eq(failed, 0);
    done(st, loc);
}
