/* tests/unit/store_fixture.h -- what the store's tests share: opening a store, writing
 * and reading events in a few words (store.c, events.c, store_sqlite.c). */
#ifndef ENGAGE_TEST_STORE_FIXTURE_H
#define ENGAGE_TEST_STORE_FIXTURE_H

#include "helpers.h"
#include "store/store.h"
#include "store_loc.h"

/* Opens (and migrates) the store at loc, waiting up to timeout_ms for a writer. */
static inline struct store *open_with(const char *loc, int timeout_ms)
{
    struct store_opts o = {.busy_timeout_ms = timeout_ms, .migrate = 1};
    struct store *st = NULL;
    struct err e = {0};
    cr_assert_eq(store_open(&st, loc, &o, &e), 0, "%s", e.msg);
    return st;
}

static inline struct store *open_at(const char *loc)
{
    return open_with(loc, 5000);
}

static inline int64_t name_id(struct store *st, const char *name)
{
    struct err e = {0};
    int64_t id = 0;
    cr_assert_eq(store_event_name_id(st, name, 1, &id, &e), 0, "%s", e.msg);
    return id;
}

static inline struct store_event ev_of(const char *event_id, int64_t contact, int64_t name,
                                       int64_t at, const char *props)
{
    struct store_event ev = {0};
    ev.event_id = event_id;
    ev.contact_id = contact;
    ev.name_id = name;
    ev.occurred_at = at;
    ev.received_at = 1000;
    ev.source = "csv";
    ev.contract_version = 1;
    ev.props = props;
    return ev;
}

/* Inserts in the open transaction; returns 1 if stored, 0 if a duplicate. */
static inline int put(struct store *st, const char *id, int64_t contact, int64_t name, int64_t at)
{
    struct store_event ev = ev_of(id, contact, name, at, "{\"n\":1}");
    struct err e = {0};
    int inserted = -1;
    cr_assert_eq(store_event_insert(st, &ev, &inserted, &e), 0, "%s", e.msg);
    return inserted;
}

struct got {
    int n;
    struct store_event ev;
    char event_id[64], props[128], source[32], name[32];
};

static inline int grab(void *ctx, const struct store_event *ev)
{
    struct got *g = ctx;
    g->n++;
    g->ev = *ev;
    snprintf(g->event_id, sizeof g->event_id, "%s", ev->event_id ? ev->event_id : "");
    snprintf(g->props, sizeof g->props, "%s", ev->props ? ev->props : "");
    snprintf(g->source, sizeof g->source, "%s", ev->source ? ev->source : "");
    snprintf(g->name, sizeof g->name, "%s", ev->name ? ev->name : "");
    return 0;
}

static inline struct got get(struct store *st, const char *event_id)
{
    struct got g = {0};
    struct err e = {0};
    cr_assert_eq(store_event_get(st, event_id, grab, &g, &e), 0, "%s", e.msg);
    return g;
}

static inline struct store_counts counts(struct store *st)
{
    struct store_counts n;
    struct err e = {0};
    cr_assert_eq(store_counts(st, &n, &e), 0, "%s", e.msg);
    return n;
}

static inline void begin(struct store *st)
{
    struct err e = {0};
    cr_assert_eq(store_begin(st, &e), 0, "%s", e.msg);
}

static inline void commit(struct store *st)
{
    struct err e = {0};
    cr_assert_eq(store_commit(st, &e), 0, "%s", e.msg);
}

struct since {
    int n;
    int64_t id[16], prev[16];
    int deleted[16];
};

static inline int on_version(void *ctx, const struct store_event *ev)
{
    struct since *s = ctx;
    cr_assert_lt(s->n, 16);
    cr_assert_eq(ev->id, ev->seq, "a version is identified by its seq");
    s->id[s->n] = ev->id;
    s->prev[s->n] = ev->prev;
    s->deleted[s->n++] = ev->deleted;
    return 0;
}

struct list {
    int n;
    char ids[8][16];
};

static inline int on_listed(void *ctx, const struct store_event *ev)
{
    struct list *l = ctx;
    cr_assert_lt(l->n, 8);
    snprintf(l->ids[l->n++], sizeof l->ids[0], "%s", ev->event_id);
    return 0;
}

#endif
