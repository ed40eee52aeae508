/* delivery/conversions.c -- a campaign's conversion goal: a contact event of that name
 * within N days after a message, counted as the message's conversion (delivery.h).
 *
 * DESIGN: a worker follows the events as the audience index does (store_events_since,
 * by seq) from a checkpoint kept in the store (journals, "conversions"), written in the
 * transaction that applied what it covers. An event whose name some campaign's goal
 * names is attributed to the contact's latest message (last touch) of a campaign whose
 * goal it meets: sent no more than within_days before the event and not after it, and
 * delivered (or sent, when its provider reports no deliveries) or clicked, as the goal's
 * "after" says. It becomes a message event of kind converted (source "conversion", its
 * source id the event's id, so a replayed event converts once) carrying the numeric
 * value_property as revenue. Only the first write of an event counts; its later
 * versions (a CRM's rewrite, a merge's move) do not convert again. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../core/map.h"
#include "../core/worker.h"
#include "../ingest/ingest.h"
#include "../store/store.h"
#include "delivery.h"

#define CHECKPOINT "conversions"
#define BATCH 5000    /* events read a transaction */
#define MAX_GOALS 256 /* campaigns with a goal, at most (the rest waits) */
#define RECENT 50     /* a contact's latest messages looked at */

struct goal {
    int64_t campaign_id;
    char event[STORE_MAX_NAME + 1];
    char value_property[STORE_MAX_NAME + 1];
    int within_days, after_clicked;
};

struct conversions {
    const struct send_env *env;
    struct worker *w;
    struct ingest in;
    struct engagement *eng;
    struct goal goals[MAX_GOALS];
    int ngoals;
    struct strmap names; /* event name id -> the index of a goal naming it (any such) */
};

static int keep_goal(void *ctx, const struct store_campaign *c)
{
    struct conversions *v = ctx;
    json_t *j;
    struct goal *g;

    if (c->conversion == NULL || v->ngoals == MAX_GOALS)
        return 0;
    j = json_loads(c->conversion, 0, NULL);
    if (j && json_is_string(json_object_get(j, "event"))) {
        g = &v->goals[v->ngoals++];
        memset(g, 0, sizeof *g);
        g->campaign_id = c->id;
        snprintf(g->event, sizeof g->event, "%s", json_string_value(json_object_get(j, "event")));
        g->within_days = (int)json_integer_value(json_object_get(j, "within_days"));
        if (json_is_string(json_object_get(j, "value_property")))
            snprintf(g->value_property, sizeof g->value_property, "%s",
                     json_string_value(json_object_get(j, "value_property")));
        g->after_clicked = json_is_string(json_object_get(j, "after")) &&
                           strcmp(json_string_value(json_object_get(j, "after")), "clicked") == 0;
    }
    json_decref(j);
    return 0;
}

/* The goals as the campaigns say now, and the event name ids they name. */
static int load_goals(struct conversions *v, struct store *st, struct err *e)
{
    int rc, i;

    v->ngoals = 0;
    strmap_clear(&v->names);
    rc = store_campaigns_list(st, 0, 0, keep_goal, v, e);
    for (i = 0; rc == 0 && i < v->ngoals; i++) {
        int64_t id;
        char key[24];
        rc = store_event_name_id(st, v->goals[i].event, 0, &id, e);
        if (rc == E_NOTFOUND) { /* no such event yet */
            err_clear(e);
            rc = 0;
            continue;
        }
        snprintf(key, sizeof key, "%lld", (long long)id);
        strmap_put(&v->names, key, strlen(key), i);
    }
    return rc;
}

/* ---- attributing one event ---------------------------------------------------------------- */

struct pick {
    const struct conversions *v;
    const char *event;
    int64_t at;
    struct store_msg_engagement best;
    const struct goal *goal;
};

static int consider(void *ctx, const struct store_msg_engagement *m)
{
    struct pick *p = ctx;

    if (p->goal) /* newest first: the first that meets a goal is the last touch */
        return 0;
    for (int i = 0; i < p->v->ngoals; i++) {
        const struct goal *g = &p->v->goals[i];
        int touched = g->after_clicked
                          ? (m->events & (1u << MEV_CLICKED)) != 0
                          : (m->events & (1u << MEV_DELIVERED)) != 0 || m->state == MSG_SENT;
        if (g->campaign_id != m->campaign_id || strcmp(g->event, p->event) != 0 || !touched ||
            m->updated_at > p->at || m->updated_at < p->at - (int64_t)g->within_days * DAY_MS)
            continue;
        p->best = *m;
        p->goal = g;
        return 0;
    }
    return 0;
}

/* The numeric property name of props (JSON text), or 0. */
static double value_of(const char *props, const char *name)
{
    json_t *j, *x;
    double v = 0;

    if (props == NULL || name[0] == '\0')
        return 0;
    j = json_loads(props, 0, NULL);
    x = json_object_get(j, name);
    if (json_is_number(x))
        v = json_number_value(x);
    json_decref(j);
    return v;
}

struct batch {
    struct conversions *v;
    struct store *st;
    int64_t last_seq;
    int n, rc;
    struct err *e;
};

static int on_event(void *ctx, const struct store_event *ev)
{
    struct batch *b = ctx;
    struct conversions *v = b->v;
    struct pick p = {.v = v, .at = ev->occurred_at};
    char key[24];
    int64_t goal;

    b->last_seq = ev->seq;
    b->n++;
    snprintf(key, sizeof key, "%lld", (long long)ev->name_id);
    if (b->rc || ev->prev != 0 || ev->deleted || !strmap_get(&v->names, key, strlen(key), &goal))
        return 0;
    p.event = v->goals[goal].event; /* the event's name, as the goals spell it */
    b->rc = store_messages_of_contact(b->st, ev->contact_id, 0, RECENT, consider, &p, b->e);
    if (b->rc == 0 && p.goal) {
        struct mev m = {.kind = MEV_CONVERTED,
                        .source_id = ev->event_id,
                        .at_ms = ev->occurred_at,
                        .value = value_of(ev->props, p.goal->value_property)};
        enum engagement_outcome out;
        b->rc = engagement_apply_to(v->eng, "conversion", &m, p.best.run_id, p.best.contact_id,
                                    ev->received_at, &out, b->e);
    }
    return 0;
}

static int conv_tick(void *ctx, struct store *st, struct err *e)
{
    struct conversions *v = ctx;
    int64_t seq;
    int rc;

    if (delivery_hold_apply())
        return 0;
    rc = store_journal_applied(st, CHECKPOINT, &seq, e);
    if (rc == E_NOTFOUND) { /* the first start: goals count events from now on */
        int64_t contacts;
        err_clear(e);
        rc = store_change_seqs(st, &contacts, &seq, e);
        if (rc == 0)
            rc = store_begin(st, e);
        if (rc == 0)
            rc = store_finish(st, store_journal_set(st, CHECKPOINT, seq, e), e);
    }
    if (rc == 0)
        rc = load_goals(v, st, e);
    while (rc == 0 && !worker_stopping(v->w)) {
        struct batch b = {.v = v, .st = st, .last_seq = seq, .e = e};
        rc = ingest_begin(&v->in, e);
        if (rc == 0)
            rc = store_events_since(st, seq, BATCH, 1, on_event, &b, e);
        if (rc == 0)
            rc = b.rc;
        if (rc == 0 && b.n)
            rc = store_journal_set(st, CHECKPOINT, b.last_seq, e);
        rc = engagement_finish(v->eng, rc, e);
        if (rc || b.n < BATCH)
            break;
        seq = b.last_seq;
    }
    return rc;
}

static void conv_init(void *ctx, struct store *st)
{
    struct conversions *v = ctx;

    ingest_init(&v->in, st, v->env->cfg);
    v->eng = engagement_new(&v->in);
}

static void conv_fini(void *ctx, struct store *st)
{
    struct conversions *v = ctx;

    (void)st;
    engagement_free(v->eng);
    v->eng = NULL;
    ingest_release(&v->in);
}

static const struct worker_def conv_def = {
    .name = "conversions",
    .tick = conv_tick,
    .interval_ms = 2000, /* events arrive through other writers: looked for this often */
    .backoff_min_ms = 1000,
    .backoff_max_ms = 30000,
    .store = WORKER_STORE,
    .init = conv_init,
    .fini = conv_fini,
};

int conversions_start(struct conversions **out, struct worker_set *ws, const struct send_env *env,
                      struct err *e)
{
    struct conversions *v = xcalloc(1, sizeof *v);
    int rc;

    v->env = env;
    strmap_init(&v->names);
    rc = worker_start(&v->w, ws, &conv_def, v, e);
    if (rc) {
        conversions_stop(v);
        return rc;
    }
    *out = v;
    return 0;
}

void conversions_stop(struct conversions *v)
{
    if (v == NULL)
        return;
    worker_stop(v->w);
    strmap_release(&v->names);
    free(v);
}

void conversions_wake(struct conversions *v)
{
    if (v)
        worker_wake(v->w);
}
