/* ingest/queue.c -- the server's one writer of ingested data.
 *
 * DESIGN: HTTP handlers parse and map what they receive, then queue it as a job and
 * wait. One thread, with its own store connection and ingest session, takes every job
 * queued so far and stores them in one transaction (a group commit: one commit for
 * many requests), then wakes each job with its outcome. A job is answered only after
 * its transaction committed, so a 2xx means stored. Should the shared transaction
 * fail (a store error, not a rejected record), it is rolled back and each job is run
 * again in a transaction of its own, so one bad job cannot fail the others. Small
 * jobs (a single /v1/track) go first: they are stored apart from the big batches that
 * came with them, and a big group being stored commits what it has as soon as one
 * arrives, lets it through, then goes on; a single call waits for a few events, not a
 * few thousand. A big job may so be committed in parts; its answer still waits for
 * the last. A queue
 * already holding `ingest_queue_max` items refuses more (E_BUSY: the caller answers
 * 429 with Retry-After). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../core/metrics.h"
#include "../core/worker.h"
#include "ingest.h"

struct ingest_queue {
    struct worker *writer;
    pthread_mutex_t mu;
    pthread_cond_t done;
    struct ingest_job *head, *tail;
    size_t pending; /* items of jobs queued or being stored, not yet answered */
    size_t max_pending;
    int small_waiting; /* small jobs queued (read by the writer without the lock) */
    int stop;
    struct ingest in; /* the writer's session, on its store connection */
    const struct config *cfg;
    uint64_t commits, yields; /* the writer's; read with __atomic loads */
    pthread_mutex_t cs_mu;    /* cs_mu protects cs, cs_stamp, cs_checked: the contracts
                               * request threads validate with */
    struct contract_set *cs;
    int64_t cs_stamp;
    double cs_checked;      /* clock_mono_ms() of the last look at the stamp (0: look) */
    uint64_t cs_generation; /* bumped by ingest_queue_contracts_changed */
};

static int store_item(struct ingest *in, const struct ingest_job *job, struct ingest_item *it,
                      struct err *e)
{
    struct ingest_ctx cx = {.kind = job->kind,
                            .source = job->source,
                            .origin = job->origin,
                            .line = it->index + 1,
                            .received_at = job->received_at};
    int rc = 0;

    /* Stored again after its transaction was rolled back: what the writer decided then
     * (a rejection by the store, its dead letter) was undone with it. */
    if (it->store_rejected)
        it->rejected = it->store_rejected = 0;
    it->outcome = INGEST_UNCHANGED;
    if (it->rejected) {
        rc = ingest_reject(in, &cx, it->is_contact ? "contact" : "event", it->raw, it->reason,
                           it->field, it->msg, &it->outcome, e);
    } else if (it->contact) {
        rc = ingest_contact(in, &cx, it->contact, &it->outcome, e);
    } else if (it->prepared) {
        rc = ingest_event_store(in, &cx, &it->prep, &it->outcome, e);
    } else if (it->event) {
        rc = ingest_event(in, &cx, it->event, &it->outcome, e);
    }
    if (rc == 0 && it->outcome == INGEST_REJECTED && !it->rejected) {
        it->rejected = it->store_rejected = 1;
        snprintf(it->reason, sizeof it->reason, "%s", in->last_reason);
        snprintf(it->field, sizeof it->field, "%s", in->last_field);
        snprintf(it->msg, sizeof it->msg, "%s", in->last_msg);
    }
    /* The anonymous history joins the user once the user's record is in. */
    if (rc == 0 && it->outcome != INGEST_REJECTED && it->link_anon && it->link_user)
        rc = ingest_link_anonymous(in, &cx, it->link_anon, it->link_user, e);
    return rc;
}

/* Requests of at most this many messages (a single /v1/track, say) are committed in a
 * transaction of their own ahead of the big batches queued with them, and a big group
 * being stored makes way for them: their answer does not wait for thousands of other
 * events to be stored. */
#define SMALL_JOB 20

static void store_group(struct ingest_queue *q, struct ingest_job *list, int yield);

/* Takes the small jobs out of the queue (the big ones stay, in order). */
static struct ingest_job *take_small(struct ingest_queue *q)
{
    struct ingest_job *small = NULL, **st = &small, **pp, *j;

    pthread_mutex_lock(&q->mu);
    q->tail = NULL;
    for (pp = &q->head; (j = *pp);) {
        if (j->n <= SMALL_JOB) {
            *pp = j->next;
            j->next = NULL;
            *st = j;
            st = &j->next;
        } else {
            q->tail = j;
            pp = &j->next;
        }
    }
    __atomic_store_n(&q->small_waiting, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&q->mu);
    return small;
}

/* Stores the items of the list's jobs not stored yet, in one transaction; with yield,
 * commits what it has whenever small jobs arrive, stores those, and goes on in a new
 * transaction (j->done counts each job's committed items). */
static int run_jobs(struct ingest_queue *q, struct ingest_job *list, int yield, struct err *e)
{
    struct ingest_job *j, *k;
    size_t i;
    int rc = ingest_begin(&q->in, e);

    if (rc)
        return rc;
    for (j = list; j; j = j->next) {
        for (i = j->done; i < j->n; i++) {
            rc = store_item(&q->in, j, &j->items[i], e);
            if (rc) {
                ingest_rollback(&q->in);
                return rc;
            }
            if (!yield || !__atomic_load_n(&q->small_waiting, __ATOMIC_RELAXED))
                continue;
            rc = ingest_commit(&q->in, e); /* rolls back itself when it fails */
            if (rc)
                return rc;
            __atomic_add_fetch(&q->yields, 1, __ATOMIC_RELAXED);
            __atomic_add_fetch(&q->commits, 1, __ATOMIC_RELAXED);
            for (k = list; k != j; k = k->next)
                k->done = k->n;
            j->done = i + 1;
            store_group(q, take_small(q), 0);
            rc = ingest_begin(&q->in, e);
            if (rc)
                return rc;
        }
    }
    rc = ingest_commit(&q->in, e);
    if (rc == 0)
        __atomic_add_fetch(&q->commits, 1, __ATOMIC_RELAXED);
    for (j = list; rc == 0 && j; j = j->next)
        j->done = j->n;
    return rc;
}

static void finish(struct ingest_queue *q, struct ingest_job *j, int rc, const struct err *e)
{
    pthread_mutex_lock(&q->mu);
    j->rc = rc;
    if (rc && e)
        j->err = *e;
    j->finished = 1;
    q->pending -= j->n;
    pthread_cond_broadcast(&q->done);
    pthread_mutex_unlock(&q->mu);
}

/* Stores a list of jobs in one transaction and answers them; if that fails, each job
 * alone (from its first uncommitted item). */
static void store_group(struct ingest_queue *q, struct ingest_job *list, int yield)
{
    struct ingest_job *j, *next;
    struct err e = {0};
    int rc;

    if (list == NULL)
        return;
    rc = run_jobs(q, list, yield, &e);
    /* Alone, from each job's first uncommitted item: one job cannot fail the others,
     * and a big job committed in part gets a fresh try at the rest. */
    if (rc && (list->next || list->done)) {
        log_warn("ingest", "a group commit failed (%s); storing its requests one by one", e.msg);
        for (j = list; j; j = next) {
            struct err je = {0};
            next = j->next;
            j->next = NULL;
            rc = run_jobs(q, j, yield, &je);
            finish(q, j, rc, &je);
        }
        return;
    }
    for (j = list; j; j = next) {
        next = j->next;
        finish(q, j, rc, &e);
    }
}

/* Every contact's id in one scan first: the requests to come name contacts by their
 * external ids, and a lookup each at first sight costs more. */
static void writer_init(void *ctx, struct store *st)
{
    struct ingest_queue *q = ctx;

    ingest_init(&q->in, st, q->cfg);
    ingest_preload_contacts(&q->in);
}

static void writer_fini(void *ctx, struct store *st)
{
    struct ingest_queue *q = ctx;

    ingest_release(&q->in);
}

/* Stores everything queued (woken by each job; once more at stop: what was queued is
 * stored first). Failures are the jobs' own: the tick never fails. */
static int writer_tick(void *ctx, struct store *st, struct err *e)
{
    struct ingest_queue *q = ctx;

    for (;;) {
        struct ingest_job *list, *j, *next, *large = NULL, **lt = &large;

        pthread_mutex_lock(&q->mu);
        list = q->head;
        pthread_mutex_unlock(&q->mu);
        if (list == NULL)
            return 0;
        store_group(q, take_small(q), 0);
        pthread_mutex_lock(&q->mu);
        list = q->head;
        q->head = q->tail = NULL;
        pthread_mutex_unlock(&q->mu);
        for (j = list; j; j = next) { /* small ones that came meanwhile go first too */
            next = j->next;
            j->next = NULL;
            if (j->n <= SMALL_JOB) {
                store_group(q, j, 0);
            } else {
                *lt = j;
                lt = &j->next;
            }
        }
        store_group(q, large, 1);
    }
}

static const struct worker_def writer_def = {
    .name = "ingest-writer",
    .tick = writer_tick,
    .interval_ms = 0,           /* woken by each job */
    .store = WORKER_STORE_BULK, /* checkpointed beside its commits, not inside them */
    .flags = WORKER_FINAL_TICK,
    .init = writer_init,
    .fini = writer_fini,
};

static void queue_free(struct ingest_queue *q)
{
    contract_set_free(q->cs);
    pthread_mutex_destroy(&q->cs_mu);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->done);
    free(q);
}

int ingest_queue_start(struct ingest_queue **out, struct worker_set *ws, const struct config *cfg,
                       struct err *e)
{
    struct ingest_queue *q = xcalloc(1, sizeof *q);
    int rc;

    q->cfg = cfg;
    q->max_pending = (size_t)cfg->ingest_queue_max;
    pthread_mutex_init(&q->mu, NULL);
    pthread_mutex_init(&q->cs_mu, NULL);
    pthread_cond_init(&q->done, NULL);
    rc = worker_start(&q->writer, ws, &writer_def, q, e);
    if (rc) {
        queue_free(q);
        q = NULL;
    }
    *out = q;
    return rc;
}

void ingest_queue_stop(struct ingest_queue *q)
{
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_mutex_unlock(&q->mu);
    worker_stop(q->writer); /* its final tick stores what was queued first */
    queue_free(q);
}

int ingest_queue_run(struct ingest_queue *q, struct ingest_job *job, struct err *e)
{
    pthread_mutex_lock(&q->mu);
    if (q->stop) {
        pthread_mutex_unlock(&q->mu);
        return ERR(e, E_BUSY, "the server is stopping");
    }
    if (q->pending && q->pending + job->n > q->max_pending) {
        size_t pending = q->pending; /* read under mu: the message is made after unlocking */
        pthread_mutex_unlock(&q->mu);
        return ERR(e, E_BUSY, "%zu messages are waiting to be stored: retry shortly", pending);
    }
    job->next = NULL;
    job->finished = 0;
    job->done = 0;
    if (q->tail)
        q->tail->next = job;
    else
        q->head = job;
    q->tail = job;
    q->pending += job->n;
    if (job->n <= SMALL_JOB)
        __atomic_store_n(&q->small_waiting, 1, __ATOMIC_RELAXED);
    worker_wake(q->writer);
    while (!job->finished)
        pthread_cond_wait(&q->done, &q->mu);
    pthread_mutex_unlock(&q->mu);
    if (job->rc)
        *e = job->err;
    return job->rc;
}

/* How long the contracts read for validating requests are trusted without a look at
 * the store: that look is a read transaction, which under a busy writer cost a single
 * /v1/track 0.3 ms (p99 1.6 ms) of its ~1 ms. A change made in this process is seen at
 * once (ingest_queue_contracts_changed); one made by another (the CLI) within this. */
#define CONTRACTS_RECHECK_MS 50.0

int ingest_queue_contracts(struct ingest_queue *q, struct store *st, struct contract_set **out,
                           struct err *e)
{
    double now = clock_mono_ms();
    uint64_t generation;
    int64_t stamp;
    int rc;

    *out = NULL;
    if (ingest_queue_contracts_cached(q, out))
        return 0;
    pthread_mutex_lock(&q->cs_mu);
    generation = q->cs_generation;
    pthread_mutex_unlock(&q->cs_mu);
    rc = store_contracts_stamp(st, &stamp, e);
    if (rc)
        return rc;
    pthread_mutex_lock(&q->cs_mu);
    if (q->cs == NULL || stamp != q->cs_stamp) {
        struct contract_set *cs;
        rc = contract_set_load(st, q->cfg, &cs, e);
        if (rc == 0) {
            contract_set_free(q->cs);
            q->cs = cs;
            q->cs_stamp = stamp;
        }
    }
    if (rc == 0) {
        /* A change announced while the stamp was read may not be in what was read:
         * the next call looks again. */
        if (generation == q->cs_generation)
            q->cs_checked = now;
        *out = contract_set_ref(q->cs);
    }
    pthread_mutex_unlock(&q->cs_mu);
    return rc;
}

int ingest_queue_contracts_cached(struct ingest_queue *q, struct contract_set **out)
{
    double now = clock_mono_ms();
    int hit;

    pthread_mutex_lock(&q->cs_mu);
    hit = q->cs && q->cs_checked > 0 && now - q->cs_checked < CONTRACTS_RECHECK_MS;
    if (hit)
        *out = contract_set_ref(q->cs);
    pthread_mutex_unlock(&q->cs_mu);
    return hit;
}

void ingest_queue_contracts_changed(struct ingest_queue *q)
{
    pthread_mutex_lock(&q->cs_mu);
    q->cs_checked = 0;
    q->cs_generation++;
    pthread_mutex_unlock(&q->cs_mu);
}

void ingest_job_prepare(struct ingest_job *job, const struct contract_set *cs)
{
    struct ingest_ctx cx = {.kind = job->kind,
                            .source = job->source,
                            .origin = job->origin,
                            .received_at = job->received_at,
                            .max_value_bytes = job->max_value_bytes};
    size_t i;

    for (i = 0; i < job->n; i++) {
        struct ingest_item *it = &job->items[i];
        if (it->rejected || it->event == NULL)
            continue;
        ingest_event_prepare(cs, &cx, it->event, &it->prep);
        it->prepared = 1;
    }
}

void ingest_queue_stats(struct ingest_queue *q, struct ingest_queue_stats *out)
{
    pthread_mutex_lock(&q->mu);
    out->pending = q->pending;
    pthread_mutex_unlock(&q->mu);
    out->commits = __atomic_load_n(&q->commits, __ATOMIC_RELAXED);
    out->yields = __atomic_load_n(&q->yields, __ATOMIC_RELAXED);
}

enum queue_figure { PENDING, COMMITS, YIELDS };

static int collect(void *ctx, int which, void *scrape, struct metric_sink *out, struct err *e)
{
    struct ingest_queue_stats qs;

    ingest_queue_stats(ctx, &qs);
    metric_emit(out, NULL,
                which == PENDING   ? (double)qs.pending
                : which == COMMITS ? (double)qs.commits
                                   : (double)qs.yields);
    return 0;
}

void ingest_queue_metrics(struct ingest_queue *q, struct metrics *m)
{
    static const struct metric_def defs[] = {
        {.name = "engage_ingest_queue_pending",
         .help = "Messages waiting for the ingest writer.",
         .type = METRIC_GAUGE,
         .collect = collect,
         .which = PENDING},
        {.name = "engage_ingest_commits_total",
         .help = "Transactions committed by the ingest writer.",
         .type = METRIC_COUNTER,
         .collect = collect,
         .which = COMMITS},
        {.name = "engage_ingest_yields_total",
         .help = "Of those, parts of big batches committed early to let single calls through.",
         .type = METRIC_COUNTER,
         .collect = collect,
         .which = YIELDS},
    };

    metrics_add_all(m, defs, sizeof defs / sizeof *defs, q);
}
