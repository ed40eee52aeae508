/* delivery/tracker.c -- our own tracking: the open pixel, the click redirect and the
 * one-click unsubscribe, each stored as a message event before it is answered.
 *
 * DESIGN: a hit is verified on the request's thread (the token's HMAC: a forged or
 * altered one is 404 and costs no write), then queued for one writer thread with its
 * own store connection and ingest session, which stores every hit queued so far in one
 * transaction (a group commit) through engagement_apply_to and wakes each request with
 * its outcome: a 2xx means stored. A click redirects only to the link of that index in
 * the message its run renders (the run's template version, tracked as the dispatcher
 * tracks it, kept compiled in a small cache), never to a URL from the request. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../consent/consent.h"
#include "../core/metrics.h"
#include "../core/worker.h"
#include "../ingest/ingest.h"
#include "../store/store.h"
#include "delivery.h"

/* Runs whose tracked template is kept compiled for clicks. */
#define LINK_CACHE 32

struct hit {
    struct mev ev;
    int64_t run_id, contact_id;
    int64_t received_at;
    int fallback_consent; /* an unsubscribe of a message with no ledger row (a test send):
                           * the consent still changes */
    /* the writer's answer */
    int done, rc;
    enum engagement_outcome out;
    struct err err;
    struct hit *next;
};

struct cached_run {
    int64_t run_id;
    struct message_template *mt;
    uint64_t used;
};

struct tracker {
    const struct send_env *env;
    struct worker *writer;
    pthread_mutex_t mu; /* mu protects head, tail and each queued hit's answer */
    pthread_cond_t done;
    struct hit *head, **tail;
    struct ingest in; /* the writer's */
    struct engagement *eng;
    pthread_mutex_t cache_mu; /* cache_mu protects cache, clock */
    struct cached_run cache[LINK_CACHE];
    uint64_t clock;
    struct metric_series *hits[3], *failures;
};

/* ---- the writer --------------------------------------------------------------------- */

static int store_hits(struct tracker *t, struct hit *list, struct err *e)
{
    struct hit *h;
    int rc = ingest_begin(&t->in, e);

    for (h = list; rc == 0 && h; h = h->next) {
        rc =
            engagement_apply_to(t->eng, h->ev.kind == MEV_UNSUBSCRIBED ? "unsubscribe" : "tracking",
                                &h->ev, h->run_id, h->contact_id, h->received_at, &h->out, e);
        if (rc == 0 && h->out == ENGAGEMENT_UNKNOWN && h->fallback_consent) {
            char reason[96];
            int changed;
            snprintf(reason, sizeof reason, "unsubscribe link of campaign run %lld",
                     (long long)h->run_id);
            rc = engagement_consent(t->in.st, h->contact_id, CONSENT_UNSUBSCRIBED, "recipient",
                                    reason, h->received_at, &changed, e);
        }
    }
    return engagement_finish(t->eng, rc, e);
}

static void answer(struct tracker *t, struct hit *list, int rc, const struct err *e)
{
    struct hit *h, *next;

    pthread_mutex_lock(&t->mu);
    for (h = list; h; h = next) {
        next = h->next;
        h->rc = rc;
        if (rc)
            h->err = *e;
        h->done = 1;
    }
    pthread_cond_broadcast(&t->done);
    pthread_mutex_unlock(&t->mu);
}

static int writer_tick(void *ctx, struct store *st, struct err *e)
{
    struct tracker *t = ctx;

    (void)st;
    for (;;) {
        struct hit *list;
        struct err he = {0};
        int rc;

        pthread_mutex_lock(&t->mu);
        list = t->head;
        t->head = NULL;
        t->tail = &t->head;
        pthread_mutex_unlock(&t->mu);
        if (list == NULL)
            return 0;
        rc = store_hits(t, list, &he);
        if (rc) {
            /* one at a time, so one hit that cannot be stored fails alone */
            struct hit *h = list, *next;
            while (h) {
                next = h->next;
                h->next = NULL;
                err_clear(&he);
                rc = store_hits(t, h, &he);
                answer(t, h, rc, &he);
                h = next;
            }
        } else {
            answer(t, list, 0, &he);
        }
    }
    (void)e;
}

static void writer_init(void *ctx, struct store *st)
{
    struct tracker *t = ctx;

    ingest_init(&t->in, st, t->env->cfg);
    t->eng = engagement_new(&t->in);
}

static void writer_fini(void *ctx, struct store *st)
{
    struct tracker *t = ctx;

    (void)st;
    engagement_free(t->eng);
    t->eng = NULL;
    ingest_release(&t->in);
}

static const struct worker_def writer_def = {
    .name = "track-writer",
    .tick = writer_tick,
    .interval_ms = 0, /* woken by each hit */
    .backoff_min_ms = 100,
    .backoff_max_ms = 1000,
    .store = WORKER_STORE,
    .flags = WORKER_FINAL_TICK,
    .init = writer_init,
    .fini = writer_fini,
};

/* Queues h and waits for the writer's answer. */
static int record(struct tracker *t, struct hit *h, struct err *e)
{
    h->received_at = clock_now_ms();
    pthread_mutex_lock(&t->mu);
    *t->tail = h;
    t->tail = &h->next;
    pthread_mutex_unlock(&t->mu);
    worker_wake(t->writer);
    pthread_mutex_lock(&t->mu);
    while (!h->done)
        pthread_cond_wait(&t->done, &t->mu);
    pthread_mutex_unlock(&t->mu);
    if (h->rc) {
        *e = h->err;
        metric_add(t->failures, 1);
    }
    return h->rc;
}

/* ---- start, stop ---------------------------------------------------------------------- */

int tracker_start(struct tracker **out, struct worker_set *ws, const struct send_env *env,
                  struct metrics *m, struct err *e)
{
    struct tracker *t = xcalloc(1, sizeof *t);
    static const char *const kinds[3] = {"open", "click", "unsubscribe"};
    int rc, i;

    t->env = env;
    t->tail = &t->head;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->done, NULL);
    pthread_mutex_init(&t->cache_mu, NULL);
    if (m) {
        static const struct metric_def defs[] = {
            {.name = "engage_tracking_hits_total",
             .help = "Opens, clicks and unsubscribes from our own links, stored.",
             .type = METRIC_COUNTER,
             .labels = "kind"},
            {.name = "engage_tracking_failures_total",
             .help = "Tracking hits that could not be stored.",
             .type = METRIC_COUNTER},
        };
        struct metric *f = metrics_add(m, &defs[0]);
        for (i = 0; i < 3; i++)
            t->hits[i] = metric_series(f, &kinds[i]);
        t->failures = metric_series(metrics_add(m, &defs[1]), NULL);
    }
    rc = worker_start(&t->writer, ws, &writer_def, t, e);
    if (rc) {
        tracker_stop(t);
        return rc;
    }
    *out = t;
    return 0;
}

void tracker_stop(struct tracker *t)
{
    if (t == NULL)
        return;
    worker_stop(t->writer);
    for (int i = 0; i < LINK_CACHE; i++)
        message_template_free(t->cache[i].mt);
    pthread_mutex_destroy(&t->cache_mu);
    pthread_cond_destroy(&t->done);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* ---- the hits -------------------------------------------------------------------------- */

/* The token's fields when it is of kind want; else E_NOTFOUND. */
static int check(const struct tracker *t, const char *token, char want, int64_t *run_id,
                 int64_t *contact_id, int *link, struct err *e)
{
    char kind;

    if (token_check(t->env->token_key, token, &kind, run_id, contact_id, link) || kind != want)
        return ERR(e, E_NOTFOUND, "this link is not valid");
    return 0;
}

/* Apple Mail Privacy Protection fetches every image through a proxy whose User-Agent is
 * exactly this, whether or not the recipient opened the message. */
static int machine_agent(const char *ua)
{
    return ua && strcmp(ua, "Mozilla/5.0") == 0;
}

int tracker_open(struct tracker *t, const char *token, const char *user_agent, struct err *e)
{
    struct hit h = {0};
    int link, rc = check(t, token, 'o', &h.run_id, &h.contact_id, &link, e);

    if (rc)
        return rc;
    h.ev.kind = MEV_OPENED;
    h.ev.user_agent = user_agent;
    h.ev.machine = machine_agent(user_agent);
    rc = record(t, &h, e);
    if (rc == 0)
        metric_add(t->hits[0], 1);
    return rc;
}

struct run_fields {
    int64_t template_id;
    int version, opens, clicks;
};

static int keep_run(void *ctx, const struct store_run *r)
{
    struct run_fields *f = ctx;

    f->template_id = r->template_id;
    f->version = r->template_version;
    f->opens = r->track_opens;
    f->clicks = r->track_clicks;
    return 0;
}

struct tv {
    struct message_template *mt;
    struct errlist errs;
    struct err e;
};

static int compile_tv(void *ctx, const struct store_template *st)
{
    struct tv *v = ctx;

    message_template_compile(st, &v->mt, &v->errs, &v->e);
    return 0;
}

/* The run's template version compiled and tracked as the dispatcher rendered it. */
static int load_run_template(struct store *st, int64_t run_id, struct message_template **out,
                             struct err *e)
{
    struct run_fields f = {0};
    struct tv v = {0};
    int rc = store_run_get(st, run_id, keep_run, &f, e);

    if (rc == 0 && f.version == 0)
        rc = ERR(e, E_NOTFOUND, "run %lld never started", (long long)run_id);
    if (rc == 0)
        rc = store_template_version_get(st, f.template_id, f.version, compile_tv, &v, e);
    if (rc == 0 && v.mt == NULL)
        rc = ERR(e, E_NOTFOUND, "the run's template does not compile any more");
    if (rc == 0)
        rc = message_template_track(v.mt, f.opens, f.clicks, e);
    if (rc) {
        message_template_free(v.mt);
        return rc;
    }
    *out = v.mt;
    return 0;
}

/* The URL of link `link` of run's messages for c: from the cached template, loaded on
 * first use (the least recently used entry makes room). The link is rendered under the
 * cache's lock, so an entry is never freed while in use. */
static int link_url(struct tracker *t, struct store *st, int64_t run_id, int link,
                    const struct message_contact *c, struct buf *url, struct err *e)
{
    struct message_template *mt = NULL;
    struct cached_run *slot = NULL;
    int i, rc;

    for (int pass = 0; pass < 2; pass++) {
        pthread_mutex_lock(&t->cache_mu);
        for (i = 0; i < LINK_CACHE && slot == NULL; i++)
            if (t->cache[i].mt && t->cache[i].run_id == run_id)
                slot = &t->cache[i];
        if (slot == NULL && mt) { /* loaded: take the oldest slot */
            slot = &t->cache[0];
            for (i = 1; i < LINK_CACHE; i++)
                if (t->cache[i].used < slot->used)
                    slot = &t->cache[i];
            message_template_free(slot->mt);
            slot->mt = mt;
            slot->run_id = run_id;
            mt = NULL;
        }
        if (slot) {
            slot->used = ++t->clock;
            rc = message_link_url(slot->mt, (size_t)link, c, url, e);
            pthread_mutex_unlock(&t->cache_mu);
            message_template_free(mt); /* another request loaded it meanwhile */
            return rc;
        }
        pthread_mutex_unlock(&t->cache_mu);
        rc = load_run_template(st, run_id, &mt, e);
        if (rc)
            return rc;
    }
    message_template_free(mt);
    return ERR(e, E_INTERNAL, "link cache");
}

int tracker_click(struct tracker *t, struct store *st, const char *token, const char *user_agent,
                  struct buf *url, int *recorded, struct err *e)
{
    struct hit h = {0};
    struct store_contact c;
    struct message_contact mc = {0};
    int link, rc = check(t, token, 'c', &h.run_id, &h.contact_id, &link, e);

    *recorded = 0;
    if (rc)
        return rc;
    store_contact_init(&c);
    /* the contact's values, for a link written with {{ }} tokens */
    if (store_contact_get(st, h.contact_id, &c, e) == 0) {
        mc.external_id = c.external_id;
        mc.email = c.email;
        mc.attrs = c.attrs;
    }
    err_clear(e);
    rc = link_url(t, st, h.run_id, link, &mc, url, e);
    store_contact_release(&c);
    if (rc == E_INVAL || rc == E_NOTFOUND) {
        err_clear(e);
        return ERR(e, E_NOTFOUND, "this link is not valid");
    }
    if (rc)
        return rc;
    h.ev.kind = MEV_CLICKED;
    h.ev.url = url->p;
    h.ev.user_agent = user_agent;
    if (record(t, &h, e) == 0) {
        *recorded = 1;
        metric_add(t->hits[1], 1);
    }
    return 0; /* the redirect is answered even when the click could not be stored */
}

int tracker_unsubscribe(struct tracker *t, struct store *st, const char *token, int apply,
                        struct unsubscribe_view *v, struct err *e)
{
    struct hit h = {0};
    char source_id[48];
    int link, rc = check(t, token, 'u', &h.run_id, &h.contact_id, &link, e);

    if (rc) {
        err_clear(e);
        return ERR(e, E_NOTFOUND, "this unsubscribe link is not valid");
    }
    if (apply) {
        store_message_id(h.run_id, h.contact_id, source_id, sizeof source_id);
        h.ev.kind = MEV_UNSUBSCRIBED;
        h.ev.source_id = source_id; /* one per message: a second POST changes nothing */
        h.fallback_consent = 1;
        rc = record(t, &h, e);
        if (rc)
            return rc;
        metric_add(t->hits[2], 1);
    }
    return unsubscribe_view(st, t->env, token, v, e);
}
