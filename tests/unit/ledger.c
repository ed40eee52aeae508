/* tests/unit/ledger.c -- the store's conformance suite for the send half: campaigns,
 * their runs and the send ledger with its leases (promise 3 of store.h), through store.h
 * alone against the backend named by ENGAGE_TEST_STORE (store_loc.h).
 *
 * Times are plain numbers chosen by each test (the store takes `now` from its caller),
 * so a lease runs out when a test says so, never because the machine was slow. */
#include <pthread.h>
#include <stdlib.h>

#include "seed.h"
#include "store_fixture.h"

#define T0 1000000 /* the tests' "now" */
#define LEASE (5 * MIN_MS)

/* ---- fixtures ------------------------------------------------------------------- */

/* n contacts "c<i>" (i from 0), consent cycling through the states, every 7th deleted;
 * their ids into ids (ascending). */
static void add_contacts(struct store *st, int n, int64_t *ids)
{
    struct store_contact c;
    struct err e = {0};
    char buf[64];
    int i;

    begin(st);
    for (i = 0; i < n; i++) {
        store_contact_init(&c);
        snprintf(buf, sizeof buf, "c%d", i);
        c.external_id = strdup(buf);
        snprintf(buf, sizeof buf, "c%d@example.com", i);
        c.email = strdup(buf);
        c.attrs = json_pack("{s:i}", "n", i);
        c.consent = (enum consent_state)(i % CONSENT_STATES);
        c.deleted = i % 7 == 6;
        c.created_at = c.updated_at = T0;
        cr_assert_eq(store_contact_insert(st, &c, &e), 0, "%s", e.msg);
        ids[i] = c.id;
        store_contact_release(&c);
    }
    commit(st);
}

static int64_t add_campaign(struct store *st, const char *name)
{
    struct store_campaign c = {.name = name,
                               .state = "draft",
                               .created_by = "test",
                               .segment_id = 1,
                               .template_id = 1,
                               .created_at = T0,
                               .updated_at = T0};
    struct err e = {0};

    begin(st);
    cr_assert_eq(store_campaign_insert(st, &c, &e), 0, "%s", e.msg);
    commit(st);
    cr_assert_gt(c.id, 0);
    return c.id;
}

static int64_t add_run(struct store *st, int64_t campaign_id, const char *state, int64_t start_at)
{
    struct store_run r = {.campaign_id = campaign_id,
                          .state = state,
                          .provider = "smtp",
                          .segment_id = 1,
                          .template_id = 1,
                          .start_at = start_at,
                          .created_at = T0,
                          .updated_at = T0,
                          .created_by = "test"};
    struct err e = {0};

    begin(st);
    cr_assert_eq(store_run_insert(st, &r, &e), 0, "%s", e.msg);
    commit(st);
    cr_assert_gt(r.id, 0);
    return r.id;
}

/* Ledger rows for ids[0..n) in one transaction; returns how many were new. */
static int64_t create(struct store *st, int64_t run, const int64_t *ids, size_t n, int ledgered)
{
    struct err e = {0};
    int64_t created = -1;

    begin(st);
    cr_assert_eq(
        store_messages_create(st, run, ids, n, n ? ids[n - 1] : 0, ledgered, T0, &created, &e), 0,
        "%s", e.msg);
    commit(st);
    return created;
}

/* What a claim showed: ids (in the order seen) and the first rows whole. */
struct claimed {
    int n;
    int64_t ids[4096];
    int redelivery[4096];
    struct store_msg first[8];
    char email[8][64], xid[8][32], attrs[8][64];
};

static int on_claim(void *ctx, const struct store_msg *m)
{
    struct claimed *c = ctx;

    cr_assert_lt(c->n, 4096);
    cr_assert_eq(m->state, MSG_SENDING);
    if (c->n < 8) {
        c->first[c->n] = *m;
        snprintf(c->email[c->n], sizeof c->email[0], "%s", m->email ? m->email : "(null)");
        snprintf(c->xid[c->n], sizeof c->xid[0], "%s", m->external_id ? m->external_id : "(null)");
        snprintf(c->attrs[c->n], sizeof c->attrs[0], "%s", m->attrs_json ? m->attrs_json : "");
    }
    c->redelivery[c->n] = m->redelivery;
    c->ids[c->n++] = m->id;
    return 0;
}

/* One claim in its own transaction; the result is static (one claim at a time per test
 * thread: the concurrent test has its own). */
static struct claimed *claim(struct store *st, int64_t run, const char *owner, int64_t now,
                             int limit)
{
    static struct claimed c;
    struct err e = {0};

    memset(&c, 0, sizeof c);
    begin(st);
    cr_assert_eq(store_messages_claim(st, run, owner, now, LEASE, limit, on_claim, &c, &e), 0, "%s",
                 e.msg);
    commit(st);
    return &c;
}

/* Completes row id as owner; returns *held. */
static int finish(struct store *st, const char *owner, int64_t id, int state, int64_t next_at,
                  const char *error)
{
    struct store_msg m = {.id = id, .state = state, .next_at = next_at, .last_error = error};
    struct err e = {0};
    int held = -1;

    begin(st);
    cr_assert_eq(store_message_complete(st, owner, &m, T0, &held, &e), 0, "%s", e.msg);
    commit(st);
    return held;
}

static void count(struct store *st, int64_t run, int64_t out[MSG_STATES])
{
    struct err e = {0};
    cr_assert_eq(store_messages_count(st, run, out, &e), 0, "%s", e.msg);
}

struct got_run {
    int n;
    struct store_run r;
    char state[16], reason[64], provider[16];
    int64_t ids[16];
};

static int on_run(void *ctx, const struct store_run *r)
{
    struct got_run *g = ctx;

    cr_assert_lt(g->n, 16);
    g->ids[g->n++] = r->id;
    g->r = *r;
    snprintf(g->state, sizeof g->state, "%s", r->state);
    snprintf(g->reason, sizeof g->reason, "%s", r->reason ? r->reason : "(null)");
    snprintf(g->provider, sizeof g->provider, "%s", r->provider);
    return 0;
}

static struct got_run run_of(struct store *st, int64_t id)
{
    struct got_run g = {0};
    struct err e = {0};

    cr_assert_eq(store_run_get(st, id, on_run, &g, &e), 0, "%s", e.msg);
    cr_assert_eq(g.n, 1);
    return g;
}

/* A listing of ledger rows (ids, states, errors). */
struct listed {
    int n;
    int64_t ids[64], contact[64];
    int state[64], attempts[64];
    char email[64][32], error[64][32];
};

static int on_listed_msg(void *ctx, const struct store_msg *m)
{
    struct listed *l = ctx;

    cr_assert_lt(l->n, 64);
    l->ids[l->n] = m->id;
    l->contact[l->n] = m->contact_id;
    l->state[l->n] = m->state;
    l->attempts[l->n] = m->attempts;
    snprintf(l->email[l->n], sizeof l->email[0], "%s", m->email ? m->email : "(null)");
    snprintf(l->error[l->n], sizeof l->error[0], "%s", m->last_error ? m->last_error : "(null)");
    l->n++;
    return 0;
}

static struct listed list(struct store *st, int64_t run, int state, int64_t after, int limit)
{
    struct listed l = {0};
    struct err e = {0};

    cr_assert_eq(store_messages_list(st, run, state, after, limit, on_listed_msg, &l, &e), 0, "%s",
                 e.msg);
    return l;
}

/* A store with one campaign, one running run and n contacts; what a ledger test needs. */
struct bed {
    char *loc;
    struct store *st;
    int64_t campaign, run;
    int64_t contacts[2048];
};

static void bed_open(struct bed *b, int n)
{
    cr_assert_leq(n, 2048);
    b->loc = test_store_location();
    b->st = open_at(b->loc);
    add_contacts(b->st, n, b->contacts);
    b->campaign = add_campaign(b->st, "spring");
    b->run = add_run(b->st, b->campaign, "running", T0);
}

static void bed_close(struct bed *b)
{
    store_close(b->st);
    free(b->loc);
}

/* ---- campaigns and runs --------------------------------------------------------------- */

struct got_campaign {
    int n;
    int64_t ids[16];
    char name[32], state[16], provider[16];
    struct store_campaign c;
};

static int on_campaign(void *ctx, const struct store_campaign *c)
{
    struct got_campaign *g = ctx;

    cr_assert_lt(g->n, 16);
    g->ids[g->n++] = c->id;
    g->c = *c;
    snprintf(g->name, sizeof g->name, "%s", c->name);
    snprintf(g->state, sizeof g->state, "%s", c->state);
    snprintf(g->provider, sizeof g->provider, "%s", c->provider ? c->provider : "(null)");
    return 0;
}

UTEST(campaigns, names_are_unique_among_live_ones_and_rows_round_trip)
{
    char *loc = test_store_location();
    struct store *st = open_at(loc);
    struct store_campaign c = {.name = "spring", .state = "draft", .created_by = "a"};
    struct got_campaign g = {0};
    struct err e = {0};
    int64_t a = add_campaign(st, "spring"), b = add_campaign(st, "summer");

    begin(st);
    cr_assert_eq(store_campaign_insert(st, &c, &e), E_CONFLICT, "a live campaign has the name");
    cr_assert(strstr(e.msg, "spring"), "%s", e.msg);
    store_rollback(st);

    cr_assert_eq(store_campaign_get(st, a, on_campaign, &g, &e), 0, "%s", e.msg);
    cr_assert_str_eq(g.name, "spring");
    cr_assert_str_eq(g.provider, "(null)", "no provider: the default");
    cr_assert_eq(g.c.segment_id, 1);

    /* Renaming onto another live name clashes; a full rewrite round-trips. */
    c = g.c; /* its strings were SQLite's, valid in the callback only */
    c.created_by = "a";
    c.state = "draft";
    c.provider = NULL;
    c.name = "summer";
    err_clear(&e);
    begin(st);
    cr_assert_eq(store_campaign_update(st, &c, &e), E_CONFLICT);
    store_rollback(st);
    c.name = "spring-2";
    c.provider = "outbox";
    c.state = "scheduled";
    c.throttle_per_second = 50;
    c.scheduled_at = T0 + 5000;
    c.last_run_id = 9;
    c.updated_at = T0 + 1;
    begin(st);
    cr_assert_eq(store_campaign_update(st, &c, &e), 0, "%s", e.msg);
    commit(st);
    memset(&g, 0, sizeof g);
    cr_assert_eq(store_campaign_get(st, a, on_campaign, &g, &e), 0);
    cr_assert_str_eq(g.name, "spring-2");
    cr_assert_str_eq(g.provider, "outbox");
    cr_assert_str_eq(g.state, "scheduled");
    cr_assert_eq(g.c.throttle_per_second, 50);
    cr_assert_eq(g.c.scheduled_at, T0 + 5000);
    cr_assert_eq(g.c.last_run_id, 9);
    cr_assert_eq(g.c.updated_at, T0 + 1);
    cr_assert_eq(g.c.created_at, T0);

    /* Deleted: gone from get and list, and its name is free again. */
    c.deleted = 1;
    begin(st);
    cr_assert_eq(store_campaign_update(st, &c, &e), 0, "%s", e.msg);
    commit(st);
    err_clear(&e);
    cr_assert_eq(store_campaign_get(st, a, on_campaign, &g, &e), E_NOTFOUND);
    cr_assert_eq(store_campaign_get(st, 999, on_campaign, &g, &e), E_NOTFOUND);
    add_campaign(st, "spring-2");
    memset(&g, 0, sizeof g);
    cr_assert_eq(store_campaigns_list(st, 0, 10, on_campaign, &g, &e), 0, "%s", e.msg);
    cr_assert_eq(g.n, 2);
    cr_assert_eq(g.ids[0], b, "by id, the deleted one left out");
    memset(&g, 0, sizeof g);
    cr_assert_eq(store_campaigns_list(st, 0, 1, on_campaign, &g, &e), 0);
    cr_assert_eq(g.n, 1, "the limit");
    memset(&g, 0, sizeof g);
    cr_assert_eq(store_campaigns_list(st, b, 10, on_campaign, &g, &e), 0);
    cr_assert_eq(g.n, 1, "after_id");
    cr_assert_gt(g.ids[0], b);
    store_close(st);
    free(loc);
}

UTEST(runs, update_round_trips_and_lists_go_newest_first)
{
    char *loc = test_store_location();
    struct store *st = open_at(loc);
    int64_t camp = add_campaign(st, "c"), r1 = add_run(st, camp, "completed", T0),
            r2 = add_run(st, camp, "scheduled", T0), r3 = add_run(st, camp, "scheduled", T0);
    struct got_run g = run_of(st, r2);
    struct store_run r = g.r;
    struct err e = {0};

    cr_assert_str_eq(g.state, "scheduled");
    cr_assert_str_eq(g.reason, "(null)");
    r.state = "failed";
    r.reason = "the provider refused us";
    r.provider = "outbox";
    r.template_version = 3;
    r.evaluation_id = 77;
    r.audience = 1234;
    r.cursor = 600;
    r.ledgered = 1;
    r.started_at = T0 + 1;
    r.finished_at = T0 + 2;
    r.updated_at = T0 + 3;
    r.possible_duplicates = 55; /* the store's own: not written */
    begin(st);
    cr_assert_eq(store_run_update(st, &r, &e), 0, "%s", e.msg);
    commit(st);
    g = run_of(st, r2);
    cr_assert_str_eq(g.state, "failed");
    cr_assert_str_eq(g.reason, "the provider refused us");
    cr_assert_str_eq(g.provider, "outbox");
    cr_assert_eq(g.r.template_version, 3);
    cr_assert_eq(g.r.evaluation_id, 77);
    cr_assert_eq(g.r.audience, 1234);
    cr_assert_eq(g.r.cursor, 600);
    cr_assert_eq(g.r.ledgered, 1);
    cr_assert_eq(g.r.started_at, T0 + 1);
    cr_assert_eq(g.r.finished_at, T0 + 2);
    cr_assert_eq(g.r.updated_at, T0 + 3);
    cr_assert_eq(g.r.possible_duplicates, 0, "store_run_update leaves possible_duplicates");
    cr_assert_eq(g.r.campaign_id, camp);

    memset(&g, 0, sizeof g);
    cr_assert_eq(store_runs_list(st, camp, 0, 10, on_run, &g, &e), 0, "%s", e.msg);
    cr_assert_eq(g.n, 3);
    cr_assert(g.ids[0] == r3 && g.ids[1] == r2 && g.ids[2] == r1, "newest first");
    memset(&g, 0, sizeof g);
    cr_assert_eq(store_runs_list(st, camp, r3, 1, on_run, &g, &e), 0);
    cr_assert(g.n == 1 && g.ids[0] == r2, "before_id and limit");
    memset(&g, 0, sizeof g);
    cr_assert_eq(store_runs_list(st, camp + 100, 0, 10, on_run, &g, &e), 0);
    cr_assert_eq(g.n, 0, "another campaign's");
    cr_assert_eq(store_run_get(st, 999, on_run, &g, &e), E_NOTFOUND);
    store_close(st);
    free(loc);
}

UTEST(runs, active_are_running_ones_and_scheduled_ones_that_are_due)
{
    char *loc = test_store_location();
    struct store *st = open_at(loc);
    int64_t camp = add_campaign(st, "c");
    int64_t due = add_run(st, camp, "scheduled", T0),
            later = add_run(st, camp, "scheduled", T0 + 60),
            running = add_run(st, camp, "running", T0 + 99999);
    struct got_run g = {0};
    struct err e = {0};

    add_run(st, camp, "paused", 0);
    add_run(st, camp, "completed", 0);
    add_run(st, camp, "cancelled", 0);
    cr_assert_eq(store_runs_active(st, T0, on_run, &g, &e), 0, "%s", e.msg);
    cr_assert_eq(g.n, 2);
    cr_assert(g.ids[0] == due && g.ids[1] == running, "by id; the later one is not due yet");
    memset(&g, 0, sizeof g);
    cr_assert_eq(store_runs_active(st, T0 + 60, on_run, &g, &e), 0);
    cr_assert_eq(g.n, 3, "start_at <= now is due");
    cr_assert_eq(g.ids[1], later);
    store_close(st);
    free(loc);
}

/* ---- the ledger: names ---------------------------------------------------------------- */

UTEST(ledger, state_names_and_message_ids_round_trip)
{
    char buf[48];
    int64_t run, contact;
    int s;

    for (s = 0; s < MSG_STATES; s++)
        cr_assert_eq(store_msg_state_parse(store_msg_state_name(s)), s);
    cr_assert_str_eq(store_msg_state_name(MSG_DEAD), "dead");
    cr_assert_str_eq(store_msg_state_name(MSG_STATES), "unknown");
    cr_assert_str_eq(store_msg_state_name(-1), "unknown");
    cr_assert_eq(store_msg_state_parse("Sent"), -1);
    cr_assert_eq(store_msg_state_parse(NULL), -1);

    store_message_id(12, INT64_MAX, buf, sizeof buf);
    cr_assert_str_eq(buf, "12.9223372036854775807");
    cr_assert_eq(store_message_id_parse(buf, &run, &contact), 0);
    cr_assert(run == 12 && contact == INT64_MAX);
    static const char *const bad[] = {
        "",     "12",   "12.", ".5",   "1.2.3", "-1.2", "1.-2",
        "01.2", "1.02", "0.1", "1. 2", "1.2x",  "a.b",  "1.9223372036854775808"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(store_message_id_parse(bad[i], &run, &contact), E_INVAL, "'%s'", bad[i]);
    cr_assert_eq(store_message_id_parse(NULL, &run, &contact), E_INVAL);
}

/* ---- the ledger: creating and claiming ----------------------------------------------- */

UTEST(ledger, create_is_idempotent_on_run_and_contact_and_moves_the_cursor)
{
    struct bed b;
    int64_t counts[MSG_STATES];
    struct got_run g;

    bed_open(&b, 20);
    cr_assert_eq(create(b.st, b.run, b.contacts, 10, 0), 10);
    g = run_of(b.st, b.run);
    cr_assert_eq(g.r.cursor, b.contacts[9]);
    cr_assert_eq(g.r.ledgered, 0);
    /* A batch again after a crash: the rows that exist stay as they are. */
    claim(b.st, b.run, "n1:1", T0, 3);
    cr_assert_eq(create(b.st, b.run, b.contacts + 5, 15, 1), 10, "only contacts 10..19 are new");
    g = run_of(b.st, b.run);
    cr_assert_eq(g.r.cursor, b.contacts[19]);
    cr_assert_eq(g.r.ledgered, 1);
    count(b.st, b.run, counts);
    cr_assert_eq(counts[MSG_QUEUED], 17);
    cr_assert_eq(counts[MSG_SENDING], 3, "the claimed rows were left alone");
    /* Another run has rows of its own for the same contacts. */
    cr_assert_eq(create(b.st, add_run(b.st, b.campaign, "running", T0), b.contacts, 20, 1), 20);
    /* An empty batch moves only the cursor. */
    cr_assert_eq(create(b.st, b.run, b.contacts, 0, 1), 0);
    cr_assert_eq(run_of(b.st, b.run).r.cursor, 0);
    bed_close(&b);
}

UTEST(ledger, claim_takes_due_rows_in_id_order_with_their_contact)
{
    struct bed b;
    struct claimed *c;
    int64_t first;
    int i;

    bed_open(&b, 30);
    create(b.st, b.run, b.contacts, 30, 1);
    c = claim(b.st, b.run, "n1:1", T0, 4);
    cr_assert_eq(c->n, 4, "the limit");
    for (i = 1; i < 4; i++)
        cr_assert_gt(c->ids[i], c->ids[i - 1], "in id order");
    first = c->ids[0];
    cr_assert_eq(c->first[0].contact_id, b.contacts[0], "the lowest first");
    cr_assert_eq(c->first[0].run_id, b.run);
    cr_assert_eq(c->first[0].attempts, 1);
    cr_assert_eq(c->first[0].redelivery, 0);
    cr_assert_str_eq(c->email[2], "c2@example.com");
    cr_assert_str_eq(c->xid[2], "c2");
    cr_assert_str_eq(c->attrs[2], "{\"n\":2}");
    cr_assert_eq(c->first[1].consent, CONSENT_UNSUBSCRIBED);
    cr_assert_eq(c->first[3].consent, CONSENT_COMPLAINED);
    cr_assert_eq(c->first[0].contact_deleted, 0);

    /* Retry rows come back only when due; failures and sent rows never. */
    cr_assert_eq(finish(b.st, "n1:1", c->ids[0], MSG_RETRY, T0 + 500, "451 try later"), 1);
    cr_assert_eq(finish(b.st, "n1:1", c->ids[1], MSG_SENT, 0, NULL), 1);
    cr_assert_eq(finish(b.st, "n1:1", c->ids[2], MSG_FAILED, 0, "550 no such user"), 1);
    cr_assert_eq(finish(b.st, "n1:1", c->ids[3], MSG_RETRY, T0 + 100, "421 busy"), 1);
    c = claim(b.st, b.run, "n1:1", T0 + 99, 100);
    cr_assert_eq(c->n, 26, "the queued rows only");
    cr_assert_eq(c->first[2].contact_id, b.contacts[6]);
    cr_assert_eq(c->first[2].contact_deleted, 1, "contact 6 is deleted");
    c = claim(b.st, b.run, "n1:1", T0 + 100, 100);
    cr_assert_eq(c->n, 1, "the retry due at T0 + 100");
    cr_assert_eq(c->first[0].contact_id, b.contacts[3]);
    cr_assert_eq(c->first[0].attempts, 2);
    cr_assert_eq(claim(b.st, b.run, "n1:1", T0 + 499, 100)->n, 0);
    c = claim(b.st, b.run, "n1:1", T0 + 500, 100);
    cr_assert(c->n == 1 && c->ids[0] == first, "the other retry, once due");
    bed_close(&b);
}

UTEST(ledger, a_claim_merges_due_states_lowest_id_first)
{
    struct bed b;
    struct claimed *c;
    int64_t ids[6];
    int i;

    bed_open(&b, 6);
    create(b.st, b.run, b.contacts, 6, 1);
    c = claim(b.st, b.run, "a", T0, 6);
    memcpy(ids, c->ids, sizeof ids);
    /* Row 0 retry due, row 1 queued again (resend), row 2 lease left to run out, row 3
     * sent, rows 4 and 5 retry due. */
    cr_assert_eq(finish(b.st, "a", ids[0], MSG_RETRY, T0 + 10, "x"), 1);
    cr_assert_eq(finish(b.st, "a", ids[1], MSG_QUEUED, 0, NULL), 1);
    cr_assert_eq(finish(b.st, "a", ids[3], MSG_SENT, 0, NULL), 1);
    cr_assert_eq(finish(b.st, "a", ids[4], MSG_RETRY, T0 + 10, "x"), 1);
    cr_assert_eq(finish(b.st, "a", ids[5], MSG_RETRY, T0 + 10, "x"), 1);
    c = claim(b.st, b.run, "b", T0 + LEASE, 4);
    cr_assert_eq(c->n, 4);
    for (i = 0; i < 3; i++)
        cr_assert_eq(c->ids[i], ids[i], "row %d", i);
    cr_assert_eq(c->ids[3], ids[4], "the limit cuts the highest id");
    cr_assert(!c->redelivery[0] && !c->redelivery[1] && c->redelivery[2] && !c->redelivery[3]);
    cr_assert_eq(run_of(b.st, b.run).r.possible_duplicates, 1);
    bed_close(&b);
}

struct racer {
    const char *loc, *owner;
    int64_t run;
    int64_t *seen; /* how many times each row id was claimed, shared: each id written by
                      the one thread that claimed it, read after both joined */
    int64_t max_id, claimed;
};

static int on_race(void *ctx, const struct store_msg *m)
{
    struct racer *r = ctx;

    if (m->id < 1 || m->id > r->max_id)
        return E_INTERNAL;
    __atomic_add_fetch(&r->seen[m->id], 1, __ATOMIC_RELAXED);
    r->claimed++;
    return 0;
}

static void *race(void *arg)
{
    struct racer *r = arg;
    struct store *st = open_with(r->loc, 30000);
    struct err e = {0};
    int64_t before;

    do {
        before = r->claimed;
        cr_assert_eq(store_begin(st, &e), 0, "%s", e.msg);
        cr_assert_eq(store_messages_claim(st, r->run, r->owner, T0, LEASE, 37, on_race, r, &e), 0,
                     "%s", e.msg);
        cr_assert_eq(store_commit(st, &e), 0, "%s", e.msg);
    } while (r->claimed > before);
    store_close(st);
    return NULL;
}

UTEST(ledger, two_connections_claiming_at_once_take_every_row_exactly_once)
{
    struct bed b;
    struct racer r[2];
    pthread_t t[2];
    int64_t *seen, counts[MSG_STATES], max_id = 0;
    struct listed l;
    int i;

    bed_open(&b, 2000);
    create(b.st, b.run, b.contacts, 2000, 1);
    for (i = 0; i < 2000; i += 50) { /* the highest row id, from pages of the ledger */
        l = list(b.st, b.run, -1, max_id, 50);
        cr_assert_eq(l.n, 50);
        max_id = l.ids[49];
    }
    seen = calloc((size_t)max_id + 1, sizeof *seen);
    for (i = 0; i < 2; i++) {
        r[i] = (struct racer){.loc = b.loc,
                              .owner = i ? "n2:1" : "n1:1",
                              .run = b.run,
                              .seen = seen,
                              .max_id = max_id};
        cr_assert_eq(pthread_create(&t[i], NULL, race, &r[i]), 0);
    }
    for (i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(r[0].claimed + r[1].claimed, 2000, "%lld + %lld", (long long)r[0].claimed,
                 (long long)r[1].claimed);
    for (i = 0; i <= max_id; i++)
        cr_assert_leq(seen[i], 1, "row %d claimed %lld times", i, (long long)seen[i]);
    count(b.st, b.run, counts);
    cr_assert_eq(counts[MSG_SENDING], 2000);
    cr_assert_eq(run_of(b.st, b.run).r.possible_duplicates, 0);
    free(seen);
    bed_close(&b);
}

/* ---- leases ------------------------------------------------------------------------ */

UTEST(ledger, a_lease_that_ran_out_is_reclaimed_and_counted_once)
{
    struct bed b;
    struct claimed *c;
    int64_t taken[5];
    int i;

    bed_open(&b, 12);
    create(b.st, b.run, b.contacts, 12, 1);
    c = claim(b.st, b.run, "n1:1", T0, 5);
    memcpy(taken, c->ids, sizeof taken);
    cr_assert_eq(finish(b.st, "n1:1", taken[1], MSG_SENT, 0, NULL), 1);
    /* Before the expiry only the queued rows are due; at it, the four still sending too. */
    c = claim(b.st, b.run, "n2:1", T0 + LEASE - 1, 100);
    cr_assert_eq(c->n, 7);
    for (i = 0; i < 7; i++)
        cr_assert_eq(c->redelivery[i], 0);
    cr_assert_eq(run_of(b.st, b.run).r.possible_duplicates, 0);
    c = claim(b.st, b.run, "n2:1", T0 + LEASE, 100);
    cr_assert_eq(c->n, 4, "the rows whose lease ran out");
    for (i = 0; i < 4; i++) {
        cr_assert_eq(c->redelivery[i], 1);
        cr_assert_eq(c->first[i].attempts, 2);
    }
    cr_assert(c->ids[0] == taken[0] && c->ids[1] == taken[2] && c->ids[3] == taken[4]);
    cr_assert_eq(run_of(b.st, b.run).r.possible_duplicates, 4, "exactly the number reclaimed");
    cr_assert_eq(claim(b.st, b.run, "n3:1", T0 + LEASE, 100)->n, 0, "n2 holds them now");

    /* The first owner comes back: its results are refused and write nothing. */
    cr_assert_eq(finish(b.st, "n1:1", taken[0], MSG_FAILED, 0, "late"), 0);
    cr_assert_eq(list(b.st, b.run, MSG_SENDING, 0, 64).n, 11);
    cr_assert_eq(list(b.st, b.run, MSG_FAILED, 0, 64).n, 0);
    cr_assert_eq(finish(b.st, "n2:1", taken[0], MSG_SENT, 0, NULL), 1, "the new owner's count");
    cr_assert_eq(finish(b.st, "n2:1", taken[0], MSG_SENT, 0, NULL), 0, "once: the lease is gone");
    bed_close(&b);
}

UTEST(ledger, renew_extends_only_the_owners_leases)
{
    struct bed b;
    struct err e = {0};
    struct claimed *c;

    bed_open(&b, 6);
    create(b.st, b.run, b.contacts, 6, 1);
    claim(b.st, b.run, "n1:1", T0, 3);
    claim(b.st, b.run, "n2:1", T0, 3);
    begin(b.st);
    cr_assert_eq(store_messages_renew(b.st, b.run, "n1:1", T0 + 1000, LEASE, &e), 0, "%s", e.msg);
    commit(b.st);
    c = claim(b.st, b.run, "n3:1", T0 + LEASE, 10);
    cr_assert_eq(c->n, 3, "n2's leases ran out; n1's were renewed");
    cr_assert_eq(c->first[0].contact_id, b.contacts[3]);
    cr_assert_eq(claim(b.st, b.run, "n3:1", T0 + 1000 + LEASE - 1, 10)->n, 0);
    c = claim(b.st, b.run, "n3:1", T0 + 1000 + LEASE, 10);
    cr_assert_eq(c->n, 3, "n1's renewed leases ran out in their turn");
    cr_assert_eq(c->first[0].contact_id, b.contacts[0]);
    cr_assert_eq(run_of(b.st, b.run).r.possible_duplicates, 6);
    bed_close(&b);
}

UTEST(ledger, recover_expires_the_leases_of_one_owner_prefix_only)
{
    struct bed b;
    struct err e = {0};
    struct claimed *c;
    int64_t n = -1, other_run;

    bed_open(&b, 9);
    other_run = add_run(b.st, b.campaign, "running", T0);
    create(b.st, b.run, b.contacts, 6, 1);
    create(b.st, other_run, b.contacts + 6, 3, 1);
    claim(b.st, b.run, "node-a:100", T0, 2);
    claim(b.st, b.run, "node-a:101", T0, 2);
    claim(b.st, b.run, "node-ab:7", T0, 2);
    claim(b.st, other_run, "node-a:100", T0, 3);
    begin(b.st);
    cr_assert_eq(store_messages_recover(b.st, "node-a:", T0 + 10, &n, &e), 0, "%s", e.msg);
    commit(b.st);
    cr_assert_eq(n, 7, "four rows of one run and three of the other");
    c = claim(b.st, b.run, "node-a:200", T0 + 10, 10);
    cr_assert_eq(c->n, 4, "node-ab's rows keep their lease");
    for (int i = 0; i < 4; i++)
        cr_assert_eq(c->redelivery[i], 1);
    cr_assert_eq(claim(b.st, other_run, "node-a:200", T0 + 10, 10)->n, 3);
    cr_assert_eq(run_of(b.st, b.run).r.possible_duplicates, 4);
    cr_assert_eq(run_of(b.st, other_run).r.possible_duplicates, 3);
    begin(b.st);
    cr_assert_eq(store_messages_recover(b.st, "node-c:", T0 + 20, &n, &e), 0);
    commit(b.st);
    cr_assert_eq(n, 0);
    bed_close(&b);
}

/* ---- moving, counting, listing ----------------------------------------------------- */

/* Puts the 10 rows of the bed's run into: 2 queued, 1 sending, 2 sent, 2 retry (due at
 * T0 + 300 and + 200), 1 failed, 2 dead ("timeout" and "554 rejected"). Returns the
 * row ids in contact order. */
static void mixed_run(struct bed *b, int64_t ids[10])
{
    static const int to[8] = {MSG_SENT,   MSG_SENT, MSG_RETRY, MSG_RETRY,
                              MSG_FAILED, MSG_DEAD, MSG_DEAD,  -1};
    static const char *const why[8] = {
        NULL, NULL, "451 later", "421 busy", "550 no such user", "timeout", "554 rejected", NULL};
    struct claimed *c;
    int i;

    create(b->st, b->run, b->contacts, 10, 1);
    c = claim(b->st, b->run, "n1:1", T0, 8);
    for (i = 0; i < 8; i++)
        ids[i] = c->ids[i];
    for (i = 0; i < 7; i++)
        cr_assert_eq(finish(b->st, "n1:1", ids[i], to[i], T0 + (i == 2 ? 300 : 200), why[i]), 1);
    ids[8] = list(b->st, b->run, MSG_QUEUED, 0, 2).ids[0];
    ids[9] = list(b->st, b->run, MSG_QUEUED, 0, 2).ids[1];
}

UTEST(ledger, counts_next_due_and_pages)
{
    struct bed b;
    int64_t ids[10], counts[MSG_STATES], at = -1;
    struct err e = {0};
    struct listed l;
    int i;

    bed_open(&b, 10);
    cr_assert_eq(store_messages_next_due(b.st, b.run, &at, &e), 0, "%s", e.msg);
    cr_assert_eq(at, 0, "no retry rows");
    mixed_run(&b, ids);
    count(b.st, b.run, counts);
    cr_assert_eq(counts[MSG_QUEUED], 2);
    cr_assert_eq(counts[MSG_SENDING], 1);
    cr_assert_eq(counts[MSG_SENT], 2);
    cr_assert_eq(counts[MSG_RETRY], 2);
    cr_assert_eq(counts[MSG_FAILED], 1);
    cr_assert_eq(counts[MSG_DEAD], 2);
    cr_assert_eq(counts[MSG_SKIPPED], 0);
    cr_assert_eq(store_messages_count(b.st, b.run + 1, counts, &e), 0);
    for (i = 0; i < MSG_STATES; i++)
        cr_assert_eq(counts[i], 0, "another run has none");
    cr_assert_eq(store_messages_next_due(b.st, b.run, &at, &e), 0);
    cr_assert_eq(at, T0 + 200, "the earliest retry");

    l = list(b.st, b.run, -1, 0, 4);
    cr_assert_eq(l.n, 4);
    for (i = 0; i < 4; i++)
        cr_assert_eq(l.ids[i], ids[i], "every state, by id");
    cr_assert_str_eq(l.email[0], "c0@example.com");
    cr_assert_eq(l.state[2], MSG_RETRY);
    cr_assert_str_eq(l.error[2], "451 later");
    cr_assert_eq(l.attempts[0], 1);
    l = list(b.st, b.run, -1, l.ids[3], 100);
    cr_assert_eq(l.n, 6, "the rest");
    cr_assert_eq(l.ids[5], ids[9]);
    l = list(b.st, b.run, MSG_SENT, 0, 1);
    cr_assert(l.n == 1 && l.ids[0] == ids[0]);
    l = list(b.st, b.run, MSG_SENT, l.ids[0], 1);
    cr_assert(l.n == 1 && l.ids[0] == ids[1], "the next page of one state");
    l = list(b.st, b.run, MSG_SENT, l.ids[0], 1);
    cr_assert_eq(l.n, 0);
    l = list(b.st, b.run, MSG_DEAD, 0, 10);
    cr_assert(l.n == 2 && l.ids[0] == ids[5] && l.ids[1] == ids[6]);
    cr_assert_eq(store_messages_list(b.st, b.run, MSG_STATES, 0, 10, on_listed_msg, &l, &e),
                 E_INVAL);
    bed_close(&b);
}

UTEST(ledger, move_cancels_and_resends)
{
    struct bed b;
    int64_t ids[10], counts[MSG_STATES], n = -1;
    struct err e = {0};
    struct listed l;

    bed_open(&b, 10);
    mixed_run(&b, ids);
    /* Cancel: queued and retry rows are skipped with a reason; sent rows stay. */
    begin(b.st);
    cr_assert_eq(store_messages_move(b.st, b.run, 1u << MSG_QUEUED | 1u << MSG_RETRY, MSG_SKIPPED,
                                     "cancelled", T0 + 1, &n, &e),
                 0, "%s", e.msg);
    commit(b.st);
    cr_assert_eq(n, 4);
    count(b.st, b.run, counts);
    cr_assert_eq(counts[MSG_SKIPPED], 4);
    cr_assert_eq(counts[MSG_SENT], 2);
    cr_assert_eq(counts[MSG_QUEUED] + counts[MSG_RETRY], 0);
    l = list(b.st, b.run, MSG_SKIPPED, 0, 10);
    cr_assert_str_eq(l.error[0], "cancelled");
    cr_assert_eq(l.ids[0], ids[2]);
    cr_assert_eq(l.attempts[0], 1, "attempts kept unless queued");

    /* Resend-failed: failed and dead rows are queued again, attempts 0, errors kept. */
    begin(b.st);
    cr_assert_eq(store_messages_move(b.st, b.run, 1u << MSG_FAILED | 1u << MSG_DEAD, MSG_QUEUED,
                                     NULL, T0 + 2, &n, &e),
                 0, "%s", e.msg);
    commit(b.st);
    cr_assert_eq(n, 3);
    l = list(b.st, b.run, MSG_QUEUED, 0, 10);
    cr_assert_eq(l.n, 3);
    cr_assert_eq(l.attempts[0], 0);
    cr_assert_str_eq(l.error[0], "550 no such user");
    cr_assert_eq(claim(b.st, b.run, "n1:1", T0 + 2, 10)->n, 3, "claimable again");
    begin(b.st);
    cr_assert_eq(store_messages_move(b.st, b.run, 1, MSG_STATES, NULL, T0, &n, &e), E_INVAL);
    store_rollback(b.st);
    bed_close(&b);
}

/* ---- dead letters ------------------------------------------------------------------ */

struct replayed {
    int n;
    int64_t run[8], count[8];
};

static int on_replayed(void *ctx, int64_t run, int64_t n)
{
    struct replayed *r = ctx;

    cr_assert_lt(r->n, 8);
    r->run[r->n] = run;
    r->count[r->n++] = n;
    return 0;
}

UTEST(ledger, dead_rows_are_listed_across_runs_and_replayed)
{
    struct bed b;
    int64_t ids[10], run2, counts[MSG_STATES];
    struct replayed rp = {0};
    struct err e = {0};
    struct listed l = {0};
    struct claimed *c;
    int i;

    bed_open(&b, 10);
    mixed_run(&b, ids);
    run2 = add_run(b.st, b.campaign, "running", T0);
    create(b.st, run2, b.contacts, 3, 1);
    c = claim(b.st, run2, "n1:1", T0, 3);
    for (i = 0; i < 3; i++)
        cr_assert_eq(
            finish(b.st, "n1:1", c->ids[i], MSG_DEAD, 0, i == 1 ? "554 rejected" : "timeout"), 1);

    cr_assert_eq(store_messages_dead(b.st, 0, NULL, 0, 10, on_listed_msg, &l, &e), 0, "%s", e.msg);
    cr_assert_eq(l.n, 5, "every run's");
    for (i = 1; i < 5; i++)
        cr_assert_gt(l.ids[i], l.ids[i - 1]);
    cr_assert_str_eq(l.email[0], "c5@example.com");
    memset(&l, 0, sizeof l);
    cr_assert_eq(store_messages_dead(b.st, 0, NULL, ids[6], 10, on_listed_msg, &l, &e), 0);
    cr_assert_eq(l.n, 3, "after_id");
    memset(&l, 0, sizeof l);
    cr_assert_eq(store_messages_dead(b.st, 0, "554", 0, 1, on_listed_msg, &l, &e), 0);
    cr_assert(l.n == 1 && l.ids[0] == ids[6], "reason and limit");
    memset(&l, 0, sizeof l);
    cr_assert_eq(store_messages_dead(b.st, run2, "timeout", 0, 10, on_listed_msg, &l, &e), 0);
    cr_assert_eq(l.n, 2, "run and reason");
    memset(&l, 0, sizeof l);
    cr_assert_eq(store_messages_dead(b.st, run2 + 5, NULL, 0, 10, on_listed_msg, &l, &e), 0);
    cr_assert_eq(l.n, 0);

    /* Replay "timeout" everywhere: one row of the first run, two of the second. */
    begin(b.st);
    cr_assert_eq(store_messages_replay_dead(b.st, 0, "timeout", T0 + 5, on_replayed, &rp, &e), 0,
                 "%s", e.msg);
    commit(b.st);
    cr_assert_eq(rp.n, 2);
    cr_assert(rp.run[0] == b.run && rp.count[0] == 1);
    cr_assert(rp.run[1] == run2 && rp.count[1] == 2);
    count(b.st, run2, counts);
    cr_assert(counts[MSG_QUEUED] == 2 && counts[MSG_DEAD] == 1);
    l = list(b.st, run2, MSG_QUEUED, 0, 10);
    cr_assert_eq(l.attempts[0], 0);
    /* The rest of one run only. */
    memset(&rp, 0, sizeof rp);
    begin(b.st);
    cr_assert_eq(store_messages_replay_dead(b.st, b.run, NULL, T0 + 6, on_replayed, &rp, &e), 0);
    commit(b.st);
    cr_assert(rp.n == 1 && rp.run[0] == b.run && rp.count[0] == 1);
    count(b.st, b.run, counts);
    cr_assert_eq(counts[MSG_DEAD], 0);
    count(b.st, run2, counts);
    cr_assert_eq(counts[MSG_DEAD], 1, "the other run's is left");
    bed_close(&b);
}

/* ---- a large claim, and random operations against a reference --------------------- */

UTEST(ledger, a_claim_larger_than_a_page_keeps_id_order)
{
    struct bed b;
    struct claimed *c;
    struct err e = {0};
    int i;

    bed_open(&b, 700);
    create(b.st, b.run, b.contacts, 700, 1);
    c = claim(b.st, b.run, "n1:1", T0, 600);
    cr_assert_eq(c->n, 600);
    for (i = 1; i < 600; i++)
        cr_assert_gt(c->ids[i], c->ids[i - 1]);
    cr_assert_eq(claim(b.st, b.run, "n1:1", T0, 600)->n, 100);
    cr_assert_eq(claim(b.st, b.run, "n1:1", T0, 0)->n, 0, "limit 0 claims nothing");
    begin(b.st);
    cr_assert_eq(store_messages_claim(b.st, b.run, "", T0, LEASE, 1, on_claim, c, &e), E_INVAL,
                 "a claim has an owner");
    cr_assert_eq(store_messages_claim(b.st, b.run, "x", T0, 0, 1, on_claim, c, &e), E_INVAL,
                 "and a lease");
    store_rollback(b.st);
    bed_close(&b);
}

/* The reference: what each row of one run must be after the operations so far. */
#define REF_N 120
struct ref_row {
    int64_t id;
    int state, attempts;
    int64_t next_at, lease_until;
    char owner[8];
};
struct ref {
    struct ref_row row[REF_N]; /* by contact index; id 0 until created */
    int64_t dups;
};

static struct ref_row *ref_by_id(struct ref *m, int64_t id)
{
    for (int i = 0; i < REF_N; i++)
        if (m->row[i].id == id)
            return &m->row[i];
    cr_assert_fail("row %lld is not the run's", (long long)id);
    return NULL;
}

static int ref_due(const struct ref_row *r, int64_t now)
{
    return r->id && (r->state == MSG_QUEUED || (r->state == MSG_RETRY && r->next_at <= now) ||
                     (r->state == MSG_SENDING && r->lease_until <= now));
}

/* Creates rows for contacts [lo, hi) (some may exist) and learns the new ids. */
static void ref_create(struct bed *b, struct ref *m, int lo, int hi)
{
    int64_t expect = 0, after = 0;
    struct listed l;
    int i, j;

    for (i = lo; i < hi; i++) {
        expect += m->row[i].id == 0;
        if (m->row[i].id > after)
            after = m->row[i].id;
    }
    for (i = 0; i < REF_N; i++)
        after = m->row[i].id > after ? m->row[i].id : after;
    cr_assert_eq(create(b->st, b->run, b->contacts + lo, (size_t)(hi - lo), 0), expect);
    l = list(b->st, b->run, -1, after, 64);
    cr_assert_eq(l.n, expect, "the new rows follow the old ones");
    for (j = 0; j < l.n; j++) {
        for (i = lo; i < hi && b->contacts[i] != l.contact[j]; i++)
            ;
        cr_assert(i < hi && m->row[i].id == 0, "a new row for contact %lld",
                  (long long)l.contact[j]);
        m->row[i] = (struct ref_row){.id = l.ids[j], .state = MSG_QUEUED};
    }
}

static void ref_claim(struct bed *b, struct ref *m, const char *owner, int64_t now, int limit)
{
    struct claimed *c = claim(b->st, b->run, owner, now, limit);
    struct ref_row *r;
    int i, left = 0;

    cr_assert_leq(c->n, limit);
    for (i = 0; i < c->n; i++) {
        r = ref_by_id(m, c->ids[i]);
        cr_assert(ref_due(r, now), "row %lld was not due", (long long)r->id);
        cr_assert(i == 0 || c->ids[i] > c->ids[i - 1], "id order");
        cr_assert_eq(c->redelivery[i], r->state == MSG_SENDING);
        m->dups += r->state == MSG_SENDING;
        r->state = MSG_SENDING;
        r->attempts++;
        if (i < 8)
            cr_assert_eq(c->first[i].attempts, r->attempts);
        r->next_at = 0;
        r->lease_until = now + LEASE;
        snprintf(r->owner, sizeof r->owner, "%s", owner);
    }
    for (i = 0; i < REF_N; i++)
        left += ref_due(&m->row[i], now);
    cr_assert(c->n == limit || left == 0, "%d rows were due and left behind", left);
}

/* Completes a row (any created row: the owner may not hold it). */
static void ref_complete(struct bed *b, struct ref *m, struct rng *g, const char *owner,
                         int64_t now)
{
    static const int outcome[] = {MSG_SENT, MSG_RETRY,  MSG_FAILED,
                                  MSG_DEAD, MSG_QUEUED, MSG_SKIPPED};
    struct ref_row *r = &m->row[rng_int(g, REF_N)];
    int state = outcome[rng_int(g, 6)], expect;
    int64_t next_at = now + rng_int(g, LEASE);

    if (r->id == 0)
        return;
    expect = r->state == MSG_SENDING && strcmp(r->owner, owner) == 0;
    cr_assert_eq(finish(b->st, owner, r->id, state, next_at, "why"), expect);
    if (!expect)
        return;
    r->state = state;
    r->next_at = state == MSG_RETRY ? next_at : 0;
    r->lease_until = 0;
    r->owner[0] = '\0';
    if (state == MSG_QUEUED)
        r->attempts--; /* released unsent: the claim was no attempt */
}

static void ref_check(struct bed *b, struct ref *m)
{
    int64_t counts[MSG_STATES], want[MSG_STATES] = {0}, next = 0, at = -1;
    struct err e = {0};
    int i;

    for (i = 0; i < REF_N; i++) {
        if (m->row[i].id == 0)
            continue;
        want[m->row[i].state]++;
        if (m->row[i].state == MSG_RETRY && (next == 0 || m->row[i].next_at < next))
            next = m->row[i].next_at;
    }
    count(b->st, b->run, counts);
    for (i = 0; i < MSG_STATES; i++)
        cr_assert_eq(counts[i], want[i], "%s: %lld, expected %lld", store_msg_state_name(i),
                     (long long)counts[i], (long long)want[i]);
    cr_assert_eq(store_messages_next_due(b->st, b->run, &at, &e), 0, "%s", e.msg);
    cr_assert_eq(at, next);
    cr_assert_eq(run_of(b->st, b->run).r.possible_duplicates, m->dups);
}

/* A sending row moves (a cancel) only once its lease ran out: one a live owner holds
 * finishes as it does, one a dead owner left is skipped. */
UTEST(ledger, a_move_takes_a_sending_row_only_once_its_lease_ran_out)
{
    struct bed b;
    int64_t ids[2] = {1, 2}, n = -1, counts[MSG_STATES];
    struct err e = {0};

    bed_open(&b, 2);
    create(b.st, b.run, ids, 2, 1);
    cr_assert_eq(claim(b.st, b.run, "n1:1", T0, 2)->n, 2);
    begin(b.st);
    cr_assert_eq(store_messages_move(b.st, b.run, 1u << MSG_SENDING, MSG_SKIPPED, "cancelled",
                                     T0 + LEASE - 1, &n, &e),
                 0, "%s", e.msg);
    commit(b.st);
    cr_assert_eq(n, 0, "leases held: nothing moves");
    begin(b.st);
    cr_assert_eq(store_messages_move(b.st, b.run, 1u << MSG_SENDING, MSG_SKIPPED, "cancelled",
                                     T0 + LEASE, &n, &e),
                 0, "%s", e.msg);
    commit(b.st);
    cr_assert_eq(n, 2, "leases ran out: both move");
    count(b.st, b.run, counts);
    cr_assert_eq(counts[MSG_SKIPPED], 2);
    cr_assert_eq(counts[MSG_SENDING], 0);
    bed_close(&b);
}

UTEST(ledger, random_operations_agree_with_a_reference)
{
    static const char *const owners[] = {"a:1", "a:2", "b:1"};
    struct rng g = {test_seed() ^ 0x1ed9e7ULL};
    struct ref m;
    struct bed b;
    struct err e = {0};
    int64_t now = T0, n;
    int step, i, lo, created = 0;

    memset(&m, 0, sizeof m);
    bed_open(&b, REF_N);
    for (step = 0; step < 400; step++) {
        const char *owner = owners[rng_int(&g, 3)];
        int op = rng_int(&g, 10);

        now += rng_int(&g, LEASE / 3);
        if (op == 0 && created < REF_N) { /* a batch, overlapping the last one */
            lo = created > 5 ? created - rng_int(&g, 5) : 0;
            created = lo + 1 + rng_int(&g, 30);
            created = created > REF_N ? REF_N : created;
            ref_create(&b, &m, lo, created);
        } else if (op <= 3) {
            ref_claim(&b, &m, owner, now, 1 + rng_int(&g, 12));
        } else if (op <= 7) {
            for (i = rng_int(&g, 8); i >= 0; i--)
                ref_complete(&b, &m, &g, owner, now);
        } else if (op == 8) {
            begin(b.st);
            cr_assert_eq(store_messages_renew(b.st, b.run, owner, now, LEASE, &e), 0, "%s", e.msg);
            commit(b.st);
            for (i = 0; i < REF_N; i++)
                if (m.row[i].state == MSG_SENDING && strcmp(m.row[i].owner, owner) == 0)
                    m.row[i].lease_until = now + LEASE;
        } else {
            int64_t want = 0;
            begin(b.st);
            cr_assert_eq(store_messages_recover(b.st, "a:", now, &n, &e), 0, "%s", e.msg);
            commit(b.st);
            for (i = 0; i < REF_N; i++) {
                struct ref_row *r = &m.row[i];
                if (r->state == MSG_SENDING && strncmp(r->owner, "a:", 2) == 0) {
                    want++;
                    r->lease_until = r->lease_until < now ? r->lease_until : now;
                }
            }
            cr_assert_eq(n, want);
        }
        ref_check(&b, &m);
    }
    bed_close(&b);
}
