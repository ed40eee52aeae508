/* campaign/dispatcher.c -- the send worker inside `engage serve`.
 *
 * DESIGN: one coordinator (a core/worker.c worker with its own store connection) does
 * every store write; a pool of sender threads does the slow part (render, MIME, the
 * provider's round trips) on rows the coordinator has already claimed. The coordinator
 * loops while any run has work:
 *   - starts due runs: freezes the audience (an evaluation of the segment, trigger
 *     "campaign", whose snapshot the run keeps), compiles the template version current
 *     at that moment, and moves the run to running -- or ends it at once with the reason
 *     (failed evaluation, empty audience, deleted template, missing provider);
 *   - writes the ledger from the snapshot in contact order, LEDGER_BATCH rows a
 *     transaction, moving the run's persisted cursor in the same transaction;
 *   - claims due rows under a lease (store.h promise 3), a window sized to what the
 *     throttles let out in a few seconds, re-checks consent and the address (rows that
 *     may not be sent are completed as skipped in the claim's transaction) and queues
 *     the rest for the senders;
 *   - records the senders' outcomes in batches (one transaction each), with the
 *     retry schedule (exponential backoff, full jitter, [retry] keys), dead after
 *     max_attempts, and a hard bounce's consent change in the same transaction;
 *   - renews its leases, and ends a run whose ledger is complete with nothing queued,
 *     in flight or waiting to retry.
 * Crash rule: a row is `sending` (leased, committed) before a sender touches it, and
 * becomes sent only after the provider accepted it. After a kill the rows left sending
 * are claimed again (at least once) and counted in the run's possible_duplicates; at
 * most the claim window of each run can be in that state. At start the rows leased by
 * this host's earlier processes are taken back at once: the data directory's lock
 * (DATA/dispatcher.lock, flock) says no other dispatcher of this host is alive.
 * Pause and cancel stop claiming; claimed rows not yet handed to a sender go back to
 * queued (pause) or become skipped (cancel). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <roaring/roaring.h>
#include <sodium.h>

#include "../consent/consent.h"
#include "../core/map.h"
#include "../core/metrics.h"
#include "../core/worker.h"
#include "../ingest/ingest.h"
#include "../provider/provider.h"
#include "../segment/segment.h"
#include "../store/store.h"
#include "campaign.h"
#include "campaign_int.h"

#define LEDGER_BATCH 5000
#define CLAIM_MAX 256          /* rows claimed in one transaction */
#define LEASE_MS (2 * MIN_MS)  /* longer than any send's timeout */
#define RENEW_MS (20 * SEC_MS) /* leases renewed this often */
#define REFRESH_MS 250         /* runs re-read this often (the CLI changes them too) */
#define MAX_SENDERS 32
#define WINDOW_SECONDS 2     /* a throttled run claims what it may send in this long */
#define SENDER_AHEAD 32      /* rows claimed ahead per provider connection */
#define SENDER_BATCH_MAX 256 /* messages a sender sends at once (provider_send_batch) */
#define RECORD_BATCH 64      /* senders wake the coordinator once this many are done */
#define LOOP_WAIT_MS 5       /* else it looks again after this long */

enum { OUT_SENT, OUT_RETRY, OUT_FAILED, OUT_DEAD, OUT_SKIPPED, OUT_RELEASED, OUT_N };
static const char *const out_names[OUT_N] = {"sent", "retry",   "failed",
                                             "dead", "skipped", "released"};

struct run_ctx {
    struct run_ctx *next;
    int64_t id;
    const struct provider *p;
    int pidx; /* the provider's index in the set */
    struct message_template *mt;
    roaring_bitmap_t *members; /* the snapshot, while ledger rows are still to be written */
    int64_t cursor;
    int ledgered;
    struct throttle bucket; /* the campaign's throttle_per_second */
    int throttle;
    int window;   /* rows claimed ahead */
    int inflight; /* claimed, outcome not yet recorded */
    int drained;  /* the last claim found nothing */
    int state;    /* RUN_* below, as last read */
    int seen;     /* found by the last refresh */
};
enum { RUN_RUNNING, RUN_PAUSED, RUN_CANCELLED, RUN_GONE };

struct item {
    struct item *next;
    struct run_ctx *run;
    int64_t id, run_id, contact_id;
    int attempts, redelivery;
    char *email, *external_id, *attrs_json;
    /* the outcome */
    int out;
    int hard_bounce;
    int64_t next_at;
    char error[320];
    char queue_id[128];
};

struct dispatcher {
    const struct send_env *env;
    struct worker *w;
    pthread_t senders[MAX_SENDERS];
    int nsenders;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    struct item *todo, **todo_tail, *done;
    int ntodo, ndone, stop;
    struct throttle *pbuckets; /* one per provider: rate_per_second */
    size_t *pbatch;            /* one per provider: messages a sender sends at once */
    size_t *pconns;            /* one per provider: connections of a sender's own */
    struct run_ctx *runs;
    int recovered;
    int64_t last_refresh, last_renew;
    _Atomic int woken;
    char owner[160], prefix[128];
    int lock_fd;
    struct metric_series *outcomes[OUT_N], *possible_dups;
    /* the outcomes' transactions: an ingest session on the worker's connection (a hard
     * bounce is a message event, with its contact event), made on first use */
    struct ingest in;
    struct engagement *eng;
};

static int64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void item_free(struct item *it)
{
    if (it == NULL)
        return;
    free(it->email);
    free(it->external_id);
    free(it->attrs_json);
    free(it);
}

/* ---- runs ---------------------------------------------------------------------------- */

static struct run_ctx *run_find(struct dispatcher *d, int64_t id)
{
    struct run_ctx *r;

    for (r = d->runs; r; r = r->next)
        if (r->id == id)
            return r;
    return NULL;
}

static void run_free(struct run_ctx *r)
{
    if (r == NULL)
        return;
    message_template_free(r->mt);
    if (r->members)
        roaring_bitmap_free(r->members);
    free(r);
}

struct tv_copy {
    int found;
    struct store_template t;
    struct message_template *mt;
    struct errlist errs;
    struct err e;
};

static int compile_version(void *ctx, const struct store_template *t)
{
    struct tv_copy *k = ctx;

    k->found = 1;
    k->t.version = t->version;
    return message_template_compile(t, &k->mt, &k->errs, &k->e) == 0 ? 0 : 0;
}

static int keep_version(void *ctx, const struct store_template *t)
{
    struct tv_copy *k = ctx;

    k->found = 1;
    k->t.version = t->version;
    return 0;
}

/* Moves a run from state `from` to `to` with its reason, in one transaction; ended runs
 * get their finish time. A run that left `from` meanwhile (a cancel, a pause, an edit
 * through the API) is left as it is now: 0, and the next refresh sees what it is. */
static int run_move(struct store *st, const struct store_run *r0, const char *from, const char *to,
                    const char *reason, struct err *e)
{
    struct store_run r = *r0;
    int rc;

    log_info("dispatch", "run %lld %s%s%s", (long long)r.id, to, reason ? ": " : "",
             reason ? reason : "");
    if (strcmp(to, "paused") && strcmp(to, "running")) {
        r.finished_at = send_clock_ms();
        if (r.started_at == 0)
            r.started_at = r.finished_at;
    }
    rc = store_begin(st, e);
    if (rc == 0)
        rc = run_transition(st, &r, from, to, reason, send_clock_ms(), e);
    rc = store_finish(st, rc, e);
    if (rc == E_CONFLICT) {
        log_info("dispatch", "run %lld changed meanwhile: %s", (long long)r.id, e->msg);
        err_clear(e);
        rc = 0;
    }
    return rc;
}

static int run_end(struct store *st, const struct store_run *r0, const char *state,
                   const char *reason, struct err *e)
{
    return run_move(st, r0, "scheduled", state, reason, e);
}

/* Starts a due run: freezes its audience and fixes its template version. */
static int run_start(struct dispatcher *d, struct store *st, const struct store_run *r0,
                     struct err *e)
{
    const struct send_env *env = d->env;
    const struct provider *p = provider_find(env->providers, r0->provider);
    struct store_run r = *r0;
    struct tv_copy tv = {0};
    json_t *ev = NULL;
    char reason[512];
    int rc;

    if (p == NULL) {
        snprintf(reason, sizeof reason, "the provider '%s' is not configured", r.provider);
        return run_end(st, &r, "failed", reason, e);
    }
    if (p->needs_public_url && !env->public_url_set)
        return run_end(st, &r, "failed",
                       "[server] public_url is not set: links in the message would not reach "
                       "the recipients",
                       e);
    rc = store_template_get(st, r.template_id, keep_version, &tv, e);
    if (rc == E_NOTFOUND) {
        err_clear(e);
        return run_end(st, &r, "failed", "the template was deleted", e);
    }
    if (rc)
        return rc;
    rc = segment_evaluate(env->segments, st, r.segment_id, "campaign", NULL, NULL, &ev, e);
    if (rc == E_BUSY) { /* the audience index is loading: the next tick tries again */
        err_clear(e);
        return 0;
    }
    if (rc == E_NOTFOUND) {
        err_clear(e);
        return run_end(st, &r, "failed", "the segment was deleted", e);
    }
    if (rc)
        return rc;
    r.evaluation_id = json_integer_value(json_object_get(ev, "id"));
    if (strcmp(json_string_value(json_object_get(ev, "status")), "succeeded")) {
        snprintf(reason, sizeof reason, "the segment's evaluation %lld %s: %s",
                 (long long)r.evaluation_id, json_string_value(json_object_get(ev, "status")),
                 json_string_value(json_object_get(ev, "error"))
                     ? json_string_value(json_object_get(ev, "error"))
                     : "no reason given");
        json_decref(ev);
        return run_end(st, &r, "failed", reason, e);
    }
    r.audience = json_integer_value(json_object_get(ev, "member_count"));
    json_decref(ev);
    r.template_version = tv.t.version;
    r.started_at = send_clock_ms();
    if (r.audience == 0) {
        snprintf(reason, sizeof reason, "the segment had no members (evaluation %lld)",
                 (long long)r.evaluation_id);
        r.ledgered = 1;
        return run_end(st, &r, "completed", reason, e);
    }
    log_info("dispatch", "run %lld starts: %lld recipients (evaluation %lld), template %lld v%d",
             (long long)r.id, (long long)r.audience, (long long)r.evaluation_id,
             (long long)r.template_id, r.template_version);
    return run_move(st, &r, "scheduled", "running", NULL, e);
}

/* Builds what the dispatcher holds for a running run: provider, template, snapshot. */
static int run_load(struct dispatcher *d, struct store *st, const struct store_run *r,
                    struct run_ctx **out, struct err *e)
{
    const struct provider *p = provider_find(d->env->providers, r->provider);
    struct run_ctx *x;
    struct tv_copy tv = {0};
    void *blob = NULL;
    size_t len = 0, i;
    int rc;
    double rate;

    *out = NULL;
    if (p == NULL) {
        char reason[300];
        snprintf(reason, sizeof reason, "the provider '%s' is not configured", r->provider);
        /* Paused, not failed: configuring the provider again and resuming goes on. */
        return run_move(st, r, "running", "paused", reason, e);
    }
    rc = store_template_version_get(st, r->template_id, r->template_version, compile_version, &tv,
                                    e);
    if (rc == 0 && tv.mt == NULL) {
        char reason[400];
        snprintf(reason, sizeof reason, "template %lld version %d does not compile: %s: %s",
                 (long long)r->template_id, r->template_version,
                 tv.errs.n ? tv.errs.items[0].path : "",
                 tv.errs.n ? tv.errs.items[0].msg : tv.e.msg);
        return run_move(st, r, "running", "paused", reason, e); /* it sent already: no draft */
    }
    if (rc == 0 && tv.mt && message_template_track(tv.mt, r->track_opens, r->track_clicks, e)) {
        /* the rewritten source compiled before without the links: a bug, not the user's */
        message_template_free(tv.mt);
        return e->code;
    }
    if (rc)
        return rc;
    x = xcalloc(1, sizeof *x);
    x->id = r->id;
    x->p = p;
    for (i = 0; i < provider_count(d->env->providers); i++)
        if (provider_at(d->env->providers, i) == p)
            x->pidx = (int)i;
    x->mt = tv.mt;
    x->cursor = r->cursor;
    x->ledgered = r->ledgered;
    x->throttle = r->throttle_per_second;
    throttle_init(&x->bucket, x->throttle, 0, mono_ns());
    rate = x->throttle ? x->throttle : 0;
    if (p->rate_per_second && (rate == 0 || p->rate_per_second < rate))
        rate = p->rate_per_second;
    /* Enough to keep every sender busy between two of the coordinator's rounds, no more:
     * the window bounds what a crash can leave `sending` (possible_duplicates). */
    x->window = p->max_connections * SENDER_AHEAD;
    if (rate > 0 && rate * WINDOW_SECONDS < x->window)
        x->window = (int)(rate * WINDOW_SECONDS);
    if (x->window < 1)
        x->window = 1;
    if (x->window > CLAIM_MAX * 2)
        x->window = CLAIM_MAX * 2;
    if (!r->ledgered) {
        rc = store_snapshot_get(st, r->evaluation_id, &blob, &len, e);
        if (rc == 0) {
            x->members = roaring_bitmap_portable_deserialize_safe(blob, len);
            if (x->members == NULL)
                rc = ERR(e, E_CORRUPT, "the snapshot of evaluation %lld does not decode",
                         (long long)r->evaluation_id);
        }
        free(blob);
        if (rc) {
            run_free(x);
            return rc;
        }
    }
    *out = x;
    return 0;
}

static int state_code(const char *s)
{
    return strcmp(s, "running") == 0     ? RUN_RUNNING
           : strcmp(s, "paused") == 0    ? RUN_PAUSED
           : strcmp(s, "cancelled") == 0 ? RUN_CANCELLED
                                         : RUN_GONE;
}

static int keep_state(void *ctx, const struct store_run *r)
{
    *(int *)ctx = state_code(r->state);
    return 0;
}

/* Inside the caller's transaction: 0 if run x is still running as stored now, else 1
 * (x->state updated: a pause or cancel committed since the last refresh must stop
 * everything after it, not 250 ms later). */
static int run_stopped(struct dispatcher *d, struct store *st, struct run_ctx *x, int *rc,
                       struct err *e)
{
    int state = RUN_GONE;

    *rc = store_run_get(st, x->id, keep_state, &state, e);
    if (*rc == E_NOTFOUND) {
        err_clear(e);
        *rc = 0;
    }
    if (*rc || state == RUN_RUNNING)
        return *rc != 0;
    pthread_mutex_lock(&d->mu);
    x->state = state;
    pthread_mutex_unlock(&d->mu);
    return 1;
}

/* Writes the next LEDGER_BATCH rows of a run from its snapshot. */
static int ledger_step(struct dispatcher *d, struct store *st, struct run_ctx *x, struct err *e)
{
    int64_t ids[LEDGER_BATCH], created = 0, cursor = x->cursor;
    roaring_uint32_iterator_t *it;
    size_t n = 0;
    int more, rc;

    it = roaring_create_iterator(x->members);
    if (cursor > 0)
        roaring_move_uint32_iterator_equalorlarger(it, (uint32_t)cursor + 1);
    while (it->has_value && n < LEDGER_BATCH) {
        ids[n++] = it->current_value;
        roaring_advance_uint32_iterator(it);
    }
    more = it->has_value;
    roaring_free_uint32_iterator(it);
    if (n)
        cursor = ids[n - 1];
    rc = store_begin(st, e);
    if (rc == 0 && run_stopped(d, st, x, &rc, e)) {
        store_rollback(st);
        return rc;
    }
    if (rc == 0)
        rc = store_messages_create(st, x->id, ids, n, cursor, !more, send_clock_ms(), &created, e);
    rc = store_finish(st, rc, e);
    if (rc)
        return rc;
    x->cursor = cursor;
    x->ledgered = !more;
    x->drained = 0;
    if (x->ledgered) {
        roaring_bitmap_free(x->members);
        x->members = NULL;
    }
    return 0;
}

/* ---- claiming ------------------------------------------------------------------------ */

struct claim_ctx {
    struct dispatcher *d;
    struct run_ctx *x;
    struct item *head, **tail;
    struct item *skipped;
    int n, dups;
};

static int claimed(void *ctx, const struct store_msg *m)
{
    struct claim_ctx *c = ctx;
    struct item *it = xcalloc(1, sizeof *it);
    const char *why = NULL;

    it->run = c->x;
    it->id = m->id;
    it->run_id = m->run_id;
    it->contact_id = m->contact_id;
    it->attempts = m->attempts;
    it->redelivery = m->redelivery;
    c->dups += m->redelivery;
    c->n++;
    if (m->contact_deleted)
        why = "contact deleted";
    else if (!consent_allows_send(m->consent)) {
        snprintf(it->error, sizeof it->error, "not subscribed: %s", consent_name(m->consent));
        why = it->error;
    } else if (m->email == NULL || m->email[0] == '\0')
        why = "no email address";
    else if (!message_address_plausible(m->email, strlen(m->email)))
        why = "invalid email address";
    if (why) {
        it->out = OUT_SKIPPED;
        if (why != it->error)
            snprintf(it->error, sizeof it->error, "%s", why);
        it->next = c->skipped;
        c->skipped = it;
        return 0;
    }
    it->email = xstrdup(m->email);
    it->external_id = m->external_id ? xstrdup(m->external_id) : NULL;
    it->attrs_json = m->attrs_json ? xstrdup(m->attrs_json) : NULL;
    *c->tail = it;
    c->tail = &it->next;
    return 0;
}

static int complete_one(struct dispatcher *d, struct store *st, const struct item *it, int64_t now,
                        struct err *e);

/* Claims up to the run's window; skipped rows are completed in the same transaction. */
static int claim_step(struct dispatcher *d, struct store *st, struct run_ctx *x, struct err *e)
{
    struct claim_ctx c = {d, x, NULL, &c.head, NULL, 0, 0};
    int64_t now = send_clock_ms();
    int want = x->window - x->inflight, rc;
    struct item *it;

    if (want <= 0)
        return 0;
    if (want > CLAIM_MAX)
        want = CLAIM_MAX;
    rc = store_begin(st, e);
    if (rc == 0 && run_stopped(d, st, x, &rc, e)) {
        store_rollback(st);
        return rc;
    }
    if (rc == 0)
        rc = store_messages_claim(st, x->id, d->owner, now, LEASE_MS, want, claimed, &c, e);
    for (it = c.skipped; rc == 0 && it; it = it->next)
        rc = complete_one(d, st, it, now, e);
    rc = store_finish(st, rc, e);
    while (c.skipped) {
        it = c.skipped;
        c.skipped = it->next;
        if (rc == 0)
            metric_add(d->outcomes[OUT_SKIPPED], 1);
        item_free(it);
    }
    if (rc) { /* nothing was claimed after all: the rows stay as they were */
        while (c.head) {
            it = c.head;
            c.head = it->next;
            item_free(it);
        }
        return rc;
    }
    if (c.dups) {
        metric_add(d->possible_dups, (uint64_t)c.dups);
        log_warn("dispatch",
                 "run %lld: %d rows left sending by a process that stopped are sent "
                 "again (counted in possible_duplicates)",
                 (long long)x->id, c.dups);
    }
    x->drained = c.n == 0;
    if (c.head) {
        int n = 0;
        for (it = c.head; it; it = it->next)
            n++;
        pthread_mutex_lock(&d->mu);
        *d->todo_tail = c.head;
        d->todo_tail = c.tail;
        d->ntodo += n;
        x->inflight += n;
        pthread_cond_broadcast(&d->work_cv);
        pthread_mutex_unlock(&d->mu);
    }
    return 0;
}

/* ---- outcomes ------------------------------------------------------------------------ */

/* A hard bounce at send: a message event like a provider's bounce (docs/analytics.md),
 * so the contact's consent becomes bounced (sticky), with its history row, and the run
 * counts it. */
static int bounce_event(struct dispatcher *d, const struct item *it, int64_t now, struct err *e)
{
    char source_id[48];
    struct mev ev = {.kind = MEV_BOUNCED_HARD,
                     .source_id = source_id,
                     .email = it->email,
                     .at_ms = now,
                     .reason = it->error};
    enum engagement_outcome out;

    store_message_id(it->run_id, it->contact_id, source_id, sizeof source_id);
    return engagement_apply_to(d->eng, "smtp", &ev, it->run_id, it->contact_id, now, &out, e);
}

static int complete_one(struct dispatcher *d, struct store *st, const struct item *it, int64_t now,
                        struct err *e)
{
    static const int states[OUT_N] = {MSG_SENT, MSG_RETRY,   MSG_FAILED,
                                      MSG_DEAD, MSG_SKIPPED, MSG_QUEUED};
    struct store_msg m = {0};
    int held = 0, rc;

    m.id = it->id;
    m.run_id = it->run_id;
    m.contact_id = it->contact_id;
    m.state = states[it->out];
    m.next_at = it->out == OUT_RETRY ? it->next_at : 0;
    m.last_error = it->out == OUT_SENT || it->out == OUT_RELEASED ? NULL : it->error;
    m.provider_message_id = it->queue_id[0] ? it->queue_id : NULL;
    rc = store_message_complete(st, d->owner, &m, now, &held, e);
    if (rc == 0 && !held)
        log_warn("dispatch",
                 "message %lld of run %lld: the lease was taken over; its outcome "
                 "(%s) is not recorded",
                 (long long)it->id, (long long)it->run_id, out_names[it->out]);
    if (rc == 0 && held && it->out == OUT_FAILED && it->hard_bounce)
        rc = bounce_event(d, it, now, e);
    return rc;
}

/* The run logs of a batch of outcomes: its retries, failures and dead letters grouped by
 * run, outcome and error, one row a group (a batch is at most a few hundred). */
static int log_outcomes(struct store *st, struct item *list, int64_t now, struct err *e)
{
    struct item *it, *jt;
    int rc = 0;

    for (it = list; rc == 0 && it; it = it->next) {
        int64_t n = 0;
        if (it->out != OUT_RETRY && it->out != OUT_FAILED && it->out != OUT_DEAD)
            continue;
        for (jt = list; jt != it; jt = jt->next) /* counted with an earlier one */
            if (jt->run_id == it->run_id && jt->out == it->out && strcmp(jt->error, it->error) == 0)
                break;
        if (jt != it)
            continue;
        for (jt = it; jt; jt = jt->next)
            n +=
                jt->run_id == it->run_id && jt->out == it->out && strcmp(jt->error, it->error) == 0;
        rc = store_run_log_add(st, it->run_id, now, out_names[it->out], it->error, n, e);
    }
    return rc;
}

/* Records every outcome the senders left, in one transaction. */
static int record_step(struct dispatcher *d, struct store *st, struct err *e)
{
    struct item *list, *it;
    int64_t now = send_clock_ms();
    int rc = 0;

    pthread_mutex_lock(&d->mu);
    list = d->done;
    d->done = NULL;
    d->ndone = 0;
    pthread_mutex_unlock(&d->mu);
    if (list == NULL)
        return 0;
    if (d->eng == NULL) {
        ingest_init(&d->in, st, d->env->cfg);
        d->eng = engagement_new(&d->in);
    }
    rc = ingest_begin(&d->in, e);
    if (rc == 0)
        rc = log_outcomes(st, list, now, e);
    for (it = list; rc == 0 && it; it = it->next) {
        /* a cancelled run retries nothing: what would wait for a retry is skipped */
        if (it->out == OUT_RETRY && run_stopped(d, st, it->run, &rc, e) &&
            it->run->state == RUN_CANCELLED) {
            it->out = OUT_SKIPPED;
            snprintf(it->error, sizeof it->error, "run cancelled");
        }
        if (rc == 0)
            rc = complete_one(d, st, it, now, e);
    }
    rc = engagement_finish(d->eng, rc, e);
    if (rc) { /* put them back: the next step records them (their leases still hold) */
        int n = 1;
        pthread_mutex_lock(&d->mu);
        for (it = list; it->next; it = it->next)
            n++;
        it->next = d->done;
        d->done = list;
        d->ndone += n;
        pthread_mutex_unlock(&d->mu);
        return rc;
    }
    while (list) {
        it = list;
        list = it->next;
        metric_add(d->outcomes[it->out], 1);
        it->run->inflight--;
        if (it->out == OUT_RETRY || it->out == OUT_RELEASED)
            it->run->drained = 0;
        item_free(it);
    }
    return 0;
}

/* Takes the queued items of runs that stopped running out of the senders' way: back to
 * queued (paused) or skipped (cancelled); they are recorded by the next record_step. */
static void withdraw(struct dispatcher *d)
{
    struct item **pp, *it;

    pthread_mutex_lock(&d->mu);
    for (pp = &d->todo; (it = *pp) != NULL;) {
        if (it->run->state == RUN_RUNNING && !d->stop) {
            pp = &it->next;
            continue;
        }
        *pp = it->next;
        d->ntodo--;
        it->out = it->run->state == RUN_CANCELLED ? OUT_SKIPPED : OUT_RELEASED;
        snprintf(it->error, sizeof it->error, "%s",
                 it->run->state == RUN_CANCELLED ? "run cancelled" : "");
        it->next = d->done;
        d->done = it;
        d->ndone++;
    }
    d->todo_tail = &d->todo;
    for (it = d->todo; it; it = it->next)
        d->todo_tail = &it->next;
    pthread_mutex_unlock(&d->mu);
}

/* ---- the senders --------------------------------------------------------------------- */

/* What a sender holds for one message of its batch. */
struct slot {
    struct item *it;
    struct message_rendered rd;
    struct buf mime, unsub;
    char mid[48];
    const char *mail_from;
};

static void slot_release(struct slot *sl)
{
    message_rendered_release(&sl->rd);
    buf_release(&sl->mime);
    buf_release(&sl->unsub);
}

/* Renders the slot's item and builds its MIME text: 0, or -1 with the item failed. */
static int prepare(struct dispatcher *d, struct slot *sl)
{
    struct item *it = sl->it;
    struct run_ctx *x = it->run;
    struct message_contact mc = {0};
    json_t *attrs = NULL;
    struct err e = {0};
    int rc;

    store_message_id(it->run_id, it->contact_id, sl->mid, sizeof sl->mid);
    buf_reset(&sl->unsub);
    token_unsubscribe_url(d->env, it->run_id, it->contact_id, &sl->unsub);
    if (it->attrs_json)
        attrs = json_loads(it->attrs_json, 0, NULL);
    mc.external_id = it->external_id;
    mc.email = it->email;
    mc.attrs = attrs;
    mc.unsubscribe_url = sl->unsub.p;
    mc.env = d->env;
    mc.run_id = it->run_id;
    mc.contact_id = it->contact_id;
    rc = message_render(x->mt, &mc, &sl->rd, &e);
    if (rc == 0) {
        buf_reset(&sl->mime);
        rc = message_mime(x->mt, &sl->rd, x->p, it->email, sl->mid, sl->unsub.p, send_clock_ms(),
                          &sl->mime, &sl->mail_from, &e);
    }
    json_decref(attrs);
    if (rc) {
        it->out = OUT_FAILED;
        snprintf(it->error, sizeof it->error, "the message could not be built: %s", e.msg);
        return -1;
    }
    return 0;
}

/* The item's outcome from the provider's answer: sent, failed, or retry (dead once
 * [retry] max_attempts is reached) at a time drawn with full jitter. */
static void outcome(struct dispatcher *d, struct item *it, const struct provider_result *res)
{
    const struct config *cfg = d->env->cfg;

    snprintf(it->queue_id, sizeof it->queue_id, "%s", res->queue_id);
    /* the reply as the server wrote it ("451 4.3.0 try again"), or the error */
    snprintf(it->error, sizeof it->error, "%s", res->text);
    if (res->outcome == PROVIDER_SENT) {
        it->out = OUT_SENT;
    } else if (res->outcome == PROVIDER_FAILED) {
        it->out = OUT_FAILED;
        it->hard_bounce = res->hard_bounce;
    } else if (it->attempts >= cfg->retry_max_attempts) {
        it->out = OUT_DEAD;
    } else {
        /* Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]. */
        int64_t cap = (int64_t)cfg->retry_max_delay_s * 1000;
        int64_t t = (int64_t)cfg->retry_base_delay_s * 1000;
        int k;
        for (k = 1; k < it->attempts && t < cap; k++)
            t *= 2;
        if (t > cap)
            t = cap;
        it->out = OUT_RETRY;
        it->next_at = send_clock_ms() + (t > 0 ? (int64_t)randombytes_uniform((uint32_t)t + 1) : 0);
    }
}

/* Sends the prepared slots[0..n) (one provider) as one batch, and sets each outcome. */
static void send_slots(struct dispatcher *d, struct slot *slots, size_t n,
                       struct provider_conn **conn)
{
    struct provider_message pm[SENDER_BATCH_MAX];
    struct provider_result res[SENDER_BATCH_MAX];
    const struct provider *p = slots[0].it->run->p;
    struct err e = {0};
    size_t i;

    memset(res, 0, n * sizeof *res);
    if (*conn == NULL && provider_open(p, d->pconns[slots[0].it->run->pidx], conn, &e)) {
        for (i = 0; i < n; i++) {
            res[i].outcome = PROVIDER_RETRY;
            snprintf(res[i].text, sizeof res[i].text, "%s", e.msg);
        }
    } else {
        for (i = 0; i < n; i++) {
            pm[i].mail_from = slots[i].mail_from;
            pm[i].rcpt_to = slots[i].it->email;
            pm[i].data = slots[i].mime.p;
            pm[i].len = slots[i].mime.len;
            pm[i].message_id = slots[i].mid;
        }
        /* a lost connection is the provider's to open again (provider.h): the others
         * of *conn stay open */
        provider_send_batch(*conn, pm, n, res);
    }
    for (i = 0; i < n; i++)
        outcome(d, slots[i].it, &res[i]);
}

/* Waits for both throttles (the run's and its provider's): RUN_RUNNING when the message
 * may go, else the run's state when it stopped running first (RUN_PAUSED at a stop). */
static int throttle_wait(struct dispatcher *d, struct run_ctx *x)
{
    for (;;) {
        int64_t w;
        pthread_mutex_lock(&d->mu);
        if (d->stop || x->state != RUN_RUNNING) {
            int s = d->stop ? RUN_PAUSED : x->state;
            pthread_mutex_unlock(&d->mu);
            return s;
        }
        w = throttle_take(&x->bucket, mono_ns());
        if (w == 0) {
            w = throttle_take(&d->pbuckets[x->pidx], mono_ns());
            if (w)
                x->bucket.tokens += 1; /* give the run's token back */
        }
        pthread_mutex_unlock(&d->mu);
        if (w == 0)
            return RUN_RUNNING;
        if (w > 50 * 1000000L)
            w = 50 * 1000000L;
        {
            struct timespec ts = {0, (long)w};
            nanosleep(&ts, NULL);
        }
    }
}

/* Takes the next item, and after it the ones queued behind it for the same provider, as
 * many as that provider's batch; 0 once stop was asked. */
static size_t take_batch(struct dispatcher *d, struct item **out)
{
    size_t n = 0, max;
    int pidx;

    pthread_mutex_lock(&d->mu);
    while (d->todo == NULL && !d->stop)
        pthread_cond_wait(&d->work_cv, &d->mu);
    if (!d->stop) {
        pidx = d->todo->run->pidx;
        max = d->pbatch[pidx];
        while (d->todo && n < max && d->todo->run->pidx == pidx) {
            out[n++] = d->todo;
            d->todo = d->todo->next;
            d->ntodo--;
        }
        if (d->todo == NULL)
            d->todo_tail = &d->todo;
    }
    pthread_mutex_unlock(&d->mu);
    return n;
}

static void *sender_main(void *arg)
{
    struct dispatcher *d = arg;
    size_t np = provider_count(d->env->providers), i, n, k;
    struct provider_conn **conns = xcalloc(np ? np : 1, sizeof *conns);
    struct slot slots[SENDER_BATCH_MAX];
    struct item *batch[SENDER_BATCH_MAX];

    memset(slots, 0, sizeof slots);
    while ((n = take_batch(d, batch)) > 0) {
        /* render each (waiting for the throttles first), then send the ready ones at once */
        for (i = k = 0; i < n; i++) {
            struct item *it = batch[i];
            int state = throttle_wait(d, it->run);
            if (state != RUN_RUNNING) {
                it->out = state == RUN_CANCELLED ? OUT_SKIPPED : OUT_RELEASED;
                snprintf(it->error, sizeof it->error, "%s",
                         state == RUN_CANCELLED ? "run cancelled" : "");
                continue;
            }
            slots[k].it = it;
            if (prepare(d, &slots[k]) == 0)
                k++; /* else the slot (and its buffers) serves the next item */
        }
        if (k)
            send_slots(d, slots, k, &conns[slots[0].it->run->pidx]);
        pthread_mutex_lock(&d->mu);
        for (i = 0; i < n; i++) {
            batch[i]->next = d->done;
            d->done = batch[i];
            d->ndone++;
        }
        if (d->ndone >= RECORD_BATCH || d->todo == NULL)
            pthread_cond_signal(&d->done_cv);
        pthread_mutex_unlock(&d->mu);
    }
    for (i = 0; i < np; i++)
        provider_close(conns[i]);
    free(conns);
    for (i = 0; i < SENDER_BATCH_MAX; i++)
        slot_release(&slots[i]);
    return NULL;
}

/* ---- the coordinator ----------------------------------------------------------------- */

struct active_ctx {
    struct dispatcher *d;
    struct store *st;
    struct store_run *due; /* scheduled runs to start (copied ids) */
    int64_t due_ids[64];
    int ndue;
    int64_t running_ids[256];
    int nrunning;
};

static int collect_active(void *ctx, const struct store_run *r)
{
    struct active_ctx *a = ctx;

    if (strcmp(r->state, "scheduled") == 0) {
        if (a->ndue < 64)
            a->due_ids[a->ndue++] = r->id;
    } else if (a->nrunning < 256)
        a->running_ids[a->nrunning++] = r->id;
    return 0;
}

/* Whether an error starting or loading a run is that run's own (its snapshot, template
 * or segment gone or broken), to end or pause it with, rather than the store's (retried
 * with the tick's backoff). */
static int run_own_fault(int rc)
{
    return rc == E_CORRUPT || rc == E_NOTFOUND || rc == E_INVAL || rc == E_TOOBIG;
}

/* Re-reads the runs: starts due ones, loads new running ones, notes changed states. */
static int refresh(struct dispatcher *d, struct store *st, struct err *e)
{
    struct active_ctx a = {d, st, NULL, {0}, 0, {0}, 0};
    struct run_ctx *x, **pp;
    int i, rc;

    rc = store_runs_active(st, send_clock_ms(), collect_active, &a, e);
    if (rc)
        return rc;
    for (i = 0; i < a.ndue && !worker_stopping(d->w); i++) {
        struct run_copy h = {0};
        rc = store_run_get(st, a.due_ids[i], run_copy_keep, &h, e);
        if (rc == 0 && strcmp(h.r.state, "scheduled") == 0) {
            rc = run_start(d, st, &h.r, e);
            if (rc && run_own_fault(rc)) { /* this run's: it ends, the others go on */
                char reason[300];
                snprintf(reason, sizeof reason, "it could not start: %s", e->msg);
                err_clear(e);
                rc = run_end(st, &h.r, "failed", reason, e);
            }
        }
        run_copy_release(&h);
        if (rc)
            return rc;
    }
    if (a.ndue) { /* the ones that started are running now */
        a.nrunning = 0;
        a.ndue = 0;
        rc = store_runs_active(st, send_clock_ms(), collect_active, &a, e);
        if (rc)
            return rc;
    }
    for (x = d->runs; x; x = x->next)
        x->seen = 0;
    for (i = 0; i < a.nrunning; i++) {
        x = run_find(d, a.running_ids[i]);
        if (x == NULL) {
            struct run_copy h = {0};
            rc = store_run_get(st, a.running_ids[i], run_copy_keep, &h, e);
            if (rc == 0) {
                rc = run_load(d, st, &h.r, &x, e);
                if (rc && run_own_fault(rc)) { /* it sent already: paused, with why */
                    char reason[300];
                    snprintf(reason, sizeof reason, "it could not go on: %s", e->msg);
                    err_clear(e);
                    rc = run_move(st, &h.r, "running", "paused", reason, e);
                }
            }
            run_copy_release(&h);
            if (rc)
                return rc;
            if (x == NULL)
                continue;
            x->next = d->runs;
            d->runs = x;
        }
        x->seen = 1;
        pthread_mutex_lock(&d->mu);
        x->state = RUN_RUNNING;
        pthread_mutex_unlock(&d->mu);
    }
    /* Runs no longer running: paused, cancelled, or ended. */
    for (x = d->runs; x; x = x->next) {
        struct run_copy h = {0};
        int s;
        if (x->seen)
            continue;
        rc = store_run_get(st, x->id, run_copy_keep, &h, e);
        if (rc == E_NOTFOUND) {
            err_clear(e);
            rc = 0;
        }
        s = h.state ? state_code(h.r.state) : RUN_GONE;
        run_copy_release(&h);
        if (rc)
            return rc;
        pthread_mutex_lock(&d->mu);
        x->state = s;
        pthread_mutex_unlock(&d->mu);
    }
    withdraw(d);
    /* Forget runs that stopped and have nothing in flight. */
    for (pp = &d->runs; (x = *pp) != NULL;) {
        if (x->state != RUN_RUNNING && x->inflight == 0) {
            *pp = x->next;
            run_free(x);
        } else
            pp = &x->next;
    }
    return 0;
}

/* A running run whose ledger is complete and that has nothing left: completed. */
static int maybe_complete(struct dispatcher *d, struct store *st, struct run_ctx *x, struct err *e)
{
    int64_t counts[MSG_STATES] = {0};
    struct run_copy h = {0};
    int rc;

    int64_t retry_at = 0;

    if (!x->ledgered || x->inflight || !x->drained || x->state != RUN_RUNNING)
        return 0;
    rc = store_messages_next_due(st, x->id, &retry_at, e);
    if (rc || retry_at) /* rows wait to be retried: not done (and cheap to tell) */
        return rc;
    rc = store_begin(st, e);
    if (rc == 0)
        rc = store_messages_count(st, x->id, counts, e);
    if (rc == 0 && counts[MSG_QUEUED] + counts[MSG_SENDING] + counts[MSG_RETRY] == 0) {
        rc = store_run_get(st, x->id, run_copy_keep, &h, e);
        if (rc == 0 && strcmp(h.r.state, "running") == 0) {
            h.r.finished_at = send_clock_ms();
            rc = run_transition(st, &h.r, "running", "completed", NULL, h.r.finished_at, e);
            if (rc == 0) {
                log_info("dispatch",
                         "run %lld completed: %lld sent, %lld failed, %lld dead, %lld skipped",
                         (long long)x->id, (long long)counts[MSG_SENT],
                         (long long)counts[MSG_FAILED], (long long)counts[MSG_DEAD],
                         (long long)counts[MSG_SKIPPED]);
                x->state = RUN_GONE;
            }
        }
    }
    rc = store_finish(st, rc, e);
    run_copy_release(&h);
    return rc;
}

static int renew_step(struct dispatcher *d, struct store *st, struct err *e)
{
    struct run_ctx *x;
    int64_t now = send_clock_ms();
    int rc;

    if (now - d->last_renew < RENEW_MS)
        return 0;
    d->last_renew = now;
    rc = store_begin(st, e);
    for (x = d->runs; rc == 0 && x; x = x->next)
        if (x->inflight)
            rc = store_messages_renew(st, x->id, d->owner, now, LEASE_MS, e);
    return store_finish(st, rc, e);
}

static int has_work(struct dispatcher *d)
{
    struct run_ctx *x;

    for (x = d->runs; x; x = x->next)
        if (x->inflight || (x->state == RUN_RUNNING && (!x->ledgered || !x->drained)))
            return 1;
    return 0;
}

static int dispatch_tick(void *ctx, struct store *st, struct err *e)
{
    struct dispatcher *d = ctx;
    struct run_ctx *x;
    int rc = 0;

    if (!d->recovered) {
        int64_t n = 0;
        rc = store_begin(st, e);
        if (rc == 0)
            rc = store_messages_recover(st, d->prefix, send_clock_ms(), &n, e);
        rc = store_finish(st, rc, e);
        if (rc)
            return rc;
        if (n)
            log_warn("dispatch",
                     "%lld messages were being sent when this host's last server "
                     "stopped: they are sent again (at least once)",
                     (long long)n);
        d->recovered = 1;
    }
    d->last_refresh = 0;
    for (;;) {
        int64_t now = send_clock_ms();
        if (worker_stopping(d->w))
            break;
        if (atomic_exchange(&d->woken, 0) || now - d->last_refresh >= REFRESH_MS) {
            rc = refresh(d, st, e);
            if (rc)
                break;
            d->last_refresh = now;
        }
        for (x = d->runs; rc == 0 && x; x = x->next) {
            if (x->state != RUN_RUNNING)
                continue;
            if (!x->ledgered && x->inflight < x->window)
                rc = ledger_step(d, st, x, e);
            if (rc == 0)
                rc = claim_step(d, st, x, e);
        }
        if (rc == 0)
            rc = record_step(d, st, e);
        if (rc == 0)
            rc = renew_step(d, st, e);
        for (x = d->runs; rc == 0 && x; x = x->next)
            rc = maybe_complete(d, st, x, e);
        if (rc || !has_work(d))
            break;
        pthread_mutex_lock(&d->mu);
        if (d->ndone < RECORD_BATCH) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += LOOP_WAIT_MS * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&d->done_cv, &d->mu, &ts);
        }
        pthread_mutex_unlock(&d->mu);
    }
    return rc;
}

/* On the worker's thread after its last tick: the senders have stopped; what they did
 * not send goes back to queued, what they did is recorded. */
static void dispatch_fini(void *ctx, struct store *st)
{
    struct dispatcher *d = ctx;
    struct err e = {0};
    int i;

    pthread_mutex_lock(&d->mu);
    d->stop = 1;
    pthread_cond_broadcast(&d->work_cv);
    pthread_mutex_unlock(&d->mu);
    for (i = 0; i < d->nsenders; i++)
        pthread_join(d->senders[i], NULL);
    d->nsenders = 0;
    withdraw(d);
    if (record_step(d, st, &e))
        log_warn("dispatch",
                 "the last outcomes could not be recorded (%s): their rows are sent "
                 "again after the restart",
                 e.msg);
    if (d->eng) { /* its session is on the worker's store, closed after this */
        engagement_free(d->eng);
        ingest_release(&d->in);
        d->eng = NULL;
    }
}

static const struct worker_def dispatcher_def = {
    .name = "dispatcher",
    .tick = dispatch_tick,
    .interval_ms = 1000,
    .backoff_min_ms = 1000,
    .backoff_max_ms = 30000,
    .store = WORKER_STORE,
    .fini = dispatch_fini,
};

/* ---- start and stop ------------------------------------------------------------------ */

static int lock_data_dir(struct dispatcher *d, struct err *e)
{
    char path[1200];

    snprintf(path, sizeof path, "%s/dispatcher.lock", d->env->cfg->data_dir);
    d->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (d->lock_fd < 0)
        return ERR(e, E_IO, "%s: %s", path, strerror(errno));
    if (flock(d->lock_fd, LOCK_EX | LOCK_NB)) {
        close(d->lock_fd);
        d->lock_fd = -1;
        return ERR(e, E_CONFLICT,
                   "another engage serve sends from %s (it holds %s): one server per data "
                   "directory",
                   d->env->cfg->data_dir, path);
    }
    return 0;
}

int dispatcher_start(struct dispatcher **out, struct worker_set *ws, const struct send_env *env,
                     struct metrics *m, struct err *e)
{
    static const struct metric_def defs[] = {
        {"engage_send_messages_total",
         "Ledger rows the dispatcher finished, by outcome (released: back to queued at a "
         "pause or stop)",
         METRIC_COUNTER, "outcome", 0, NULL, 0, 0, NULL, NULL, 0},
        {"engage_send_possible_duplicates_total",
         "Rows claimed again after a lease ran out or a restart: maybe sent twice", METRIC_COUNTER,
         NULL, 0, NULL, 0, 0, NULL, NULL, 0},
    };
    struct dispatcher *d = xcalloc(1, sizeof *d);
    char host[64] = "host";
    size_t np = provider_count(env->providers), i;
    int rc, n;

    d->env = env;
    d->lock_fd = -1;
    d->todo_tail = &d->todo;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->work_cv, NULL);
    pthread_cond_init(&d->done_cv, NULL);
    gethostname(host, sizeof host - 1);
    snprintf(d->prefix, sizeof d->prefix, "%s/", host);
    snprintf(d->owner, sizeof d->owner, "%s/%ld.%lld", host, (long)getpid(),
             (long long)send_clock_ms());
    rc = lock_data_dir(d, e);
    if (rc)
        goto fail;
    if (m) {
        struct metric *f = metrics_add(m, &defs[0]);
        for (i = 0; i < OUT_N; i++) {
            const char *v[1] = {out_names[i]};
            d->outcomes[i] = metric_series(f, v);
        }
        d->possible_dups = metric_series(metrics_add(m, &defs[1]), NULL);
    } else {
        /* a private registry keeps the hot path free of NULL checks */
        rc = ERR(e, E_INVAL, "the dispatcher needs a metrics registry");
        goto fail;
    }
    d->pbuckets = xcalloc(np ? np : 1, sizeof *d->pbuckets);
    d->pbatch = xcalloc(np ? np : 1, sizeof *d->pbatch);
    d->pconns = xcalloc(np ? np : 1, sizeof *d->pconns);
    /* Threads: a provider that takes batches gets two (one renders while the other waits
     * on the network), each with half its max_connections; one that does not gets one
     * per connection. The threads are as many as the provider that needs most, and each
     * holds its share of every provider's connections (at least one). */
    n = 1;
    for (i = 0; i < np; i++) {
        const struct provider *p = provider_at(env->providers, i);
        size_t conns = p->max_connections > 0 ? (size_t)p->max_connections : 1;
        int t = provider_batch_max(p, 1) > 1 ? (conns > 1 ? 2 : 1) : (int)conns;
        throttle_init(&d->pbuckets[i], p->rate_per_second, 0, mono_ns());
        if (t > n)
            n = t;
    }
    if (n > MAX_SENDERS)
        n = MAX_SENDERS;
    for (i = 0; i < np; i++) {
        const struct provider *p = provider_at(env->providers, i);
        size_t conns = p->max_connections > 0 ? (size_t)p->max_connections : 1;
        d->pconns[i] = conns / (size_t)n > 0 ? conns / (size_t)n : 1;
        d->pbatch[i] = provider_batch_max(p, d->pconns[i]);
        if (d->pbatch[i] > SENDER_BATCH_MAX)
            d->pbatch[i] = SENDER_BATCH_MAX;
    }
    for (d->nsenders = 0; d->nsenders < n; d->nsenders++)
        if (pthread_create(&d->senders[d->nsenders], NULL, sender_main, d)) {
            rc = ERR(e, E_INTERNAL, "cannot start the sender threads");
            goto fail;
        }
    rc = worker_start(&d->w, ws, &dispatcher_def, d, e);
    if (rc)
        goto fail;
    *out = d;
    return 0;
fail:
    pthread_mutex_lock(&d->mu);
    d->stop = 1;
    pthread_cond_broadcast(&d->work_cv);
    pthread_mutex_unlock(&d->mu);
    for (n = 0; n < d->nsenders; n++)
        pthread_join(d->senders[n], NULL);
    d->nsenders = 0;
    dispatcher_stop(d);
    *out = NULL;
    return rc;
}

void dispatcher_wake(struct dispatcher *d)
{
    if (d == NULL)
        return;
    atomic_store(&d->woken, 1);
    worker_wake(d->w);
}

void dispatcher_stop(struct dispatcher *d)
{
    struct run_ctx *x;

    if (d == NULL)
        return;
    worker_stop(d->w); /* its fini stops the senders and records their outcomes */
    while (d->runs) {
        x = d->runs;
        d->runs = x->next;
        run_free(x);
    }
    while (d->todo) {
        struct item *it = d->todo;
        d->todo = it->next;
        item_free(it);
    }
    while (d->done) {
        struct item *it = d->done;
        d->done = it->next;
        item_free(it);
    }
    if (d->lock_fd >= 0)
        close(d->lock_fd);
    free(d->pbuckets);
    free(d->pbatch);
    free(d->pconns);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->work_cv);
    pthread_cond_destroy(&d->done_cv);
    free(d);
}
