/* core/worker.c -- background workers (worker.h).
 *
 * DESIGN: one thread a worker, sleeping on a condition variable on the monotonic clock
 * (a wall clock stepped back does not stall a worker). A wake is a flag and a signal:
 * the flag is set before the lock is taken, and the thread checks it under the lock
 * before it sleeps, so no wake is lost; a wake while one is pending costs an atomic
 * exchange only (the ingest writer is woken by every tracking request). The thread
 * clears the flag before each tick, so a wake during a tick makes another.
 *
 * This is the one file in core/ that reaches the store, and only through store.h's
 * open and close: a worker's connection is the worker's. */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../store/store.h"
#include "metrics.h"

struct worker {
    const struct worker_def *def;
    void *ctx;
    struct worker_set *set;
    struct worker *next_in_set; /* the set's mu protects it */
    struct store *st;
    pthread_t tid;
    pthread_mutex_t mu; /* protects health; the sleep's lock */
    pthread_cond_t cv;
    _Atomic int stop, woken;
    struct worker_health health;
};

struct worker_set {
    char *location;
    int busy_timeout_ms;
    pthread_mutex_t mu; /* protects first */
    struct worker *first;
};

/* ---- the set -------------------------------------------------------------------------- */

void worker_set_new(struct worker_set **out, const char *location, int busy_timeout_ms)
{
    struct worker_set *ws = xcalloc(1, sizeof *ws);

    ws->location = location ? xstrdup(location) : NULL;
    ws->busy_timeout_ms = busy_timeout_ms;
    pthread_mutex_init(&ws->mu, NULL);
    *out = ws;
}

void worker_set_free(struct worker_set *ws)
{
    if (ws == NULL)
        return;
    ASSERT(ws->first == NULL);
    pthread_mutex_destroy(&ws->mu);
    free(ws->location);
    free(ws);
}

static void set_add(struct worker_set *ws, struct worker *w)
{
    struct worker **pp;

    if (ws == NULL)
        return;
    pthread_mutex_lock(&ws->mu);
    for (pp = &ws->first; *pp; pp = &(*pp)->next_in_set)
        ; /* in start order: the metrics list them so */
    *pp = w;
    pthread_mutex_unlock(&ws->mu);
}

static void set_remove(struct worker_set *ws, struct worker *w)
{
    struct worker **pp;

    if (ws == NULL)
        return;
    pthread_mutex_lock(&ws->mu);
    for (pp = &ws->first; *pp && *pp != w; pp = &(*pp)->next_in_set)
        ;
    if (*pp)
        *pp = w->next_in_set;
    pthread_mutex_unlock(&ws->mu);
}

enum health_figure { LAST_RUN, LAST_SUCCESS, FAILURES };

static double figure_of(const struct worker_health *h, int which)
{
    switch (which) {
    case LAST_RUN:
        return (double)h->last_run_ms / 1000;
    case LAST_SUCCESS:
        return (double)h->last_success_ms / 1000;
    case FAILURES:
        return (double)h->failures;
    }
    return 0;
}

static int collect(void *ctx, int which, void *scrape, struct metric_sink *out, struct err *e)
{
    struct worker_set *ws = ctx;
    struct worker_health h;
    struct worker *w;

    pthread_mutex_lock(&ws->mu);
    for (w = ws->first; w; w = w->next_in_set) {
        const char *values[] = {w->def->name};
        worker_health(w, &h);
        if (which != FAILURES && figure_of(&h, which) == 0)
            continue; /* not yet: no sample rather than 1970 */
        metric_emit(out, values, figure_of(&h, which));
    }
    pthread_mutex_unlock(&ws->mu);
    return 0;
}

void worker_set_metrics(struct worker_set *ws, struct metrics *m)
{
    static const struct metric_def defs[] = {
        {.name = "engage_worker_last_run_seconds",
         .help = "When the worker's last tick started (Unix time), by worker.",
         .type = METRIC_GAUGE,
         .labels = "worker",
         .decimals = 3,
         .collect = collect,
         .which = LAST_RUN},
        {.name = "engage_worker_last_success_seconds",
         .help = "When the worker's last successful tick ended (Unix time), by worker.",
         .type = METRIC_GAUGE,
         .labels = "worker",
         .decimals = 3,
         .collect = collect,
         .which = LAST_SUCCESS},
        {.name = "engage_worker_failures",
         .help = "Ticks failed in a row, by worker (0: the last one succeeded).",
         .type = METRIC_GAUGE,
         .labels = "worker",
         .collect = collect,
         .which = FAILURES},
    };

    metrics_add_all(m, defs, sizeof defs / sizeof *defs, ws);
}

/* ---- one worker ------------------------------------------------------------------------- */

/* Runs one tick and records it; returns the wait before the next (ms; -1: until woken). */
static int64_t run_tick(struct worker *w)
{
    const struct worker_def *d = w->def;
    struct err e = {0};
    int64_t started = clock_now_ms(), failures;
    int rc;

    pthread_mutex_lock(&w->mu);
    w->health.last_run_ms = started;
    w->health.runs++;
    pthread_mutex_unlock(&w->mu);
    rc = d->tick(w->ctx, w->st, &e);
    pthread_mutex_lock(&w->mu);
    if (rc == 0) {
        w->health.last_success_ms = clock_now_ms();
        w->health.failures = 0;
    } else {
        w->health.failures++;
        snprintf(w->health.last_error, sizeof w->health.last_error, "%s",
                 e.msg[0] ? e.msg : err_code_name(rc));
    }
    failures = w->health.failures;
    pthread_mutex_unlock(&w->mu);
    if (rc == 0)
        return d->interval_ms > 0 ? d->interval_ms : -1;
    log_warn("worker", "worker %s: %s", d->name, e.msg[0] ? e.msg : err_code_name(rc));
    return worker_backoff_ms(d, failures);
}

int64_t worker_backoff_ms(const struct worker_def *def, int64_t n)
{
    int64_t wait = def->backoff_min_ms > 0 ? def->backoff_min_ms : 1000;

    while (--n > 0 && wait < (int64_t)1 << 40 &&
           (def->backoff_max_ms <= 0 || wait < def->backoff_max_ms))
        wait *= 2;
    return def->backoff_max_ms > 0 && wait > def->backoff_max_ms ? def->backoff_max_ms : wait;
}

/* Sleeps until woken, stopped or wait_ms passed (wait_ms < 0: no timeout). */
static void sleep_until_due(struct worker *w, int64_t wait_ms)
{
    struct timespec until;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(wait_ms / 1000);
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    while (!atomic_load(&w->stop) && !atomic_load(&w->woken)) {
        if (wait_ms < 0)
            pthread_cond_wait(&w->cv, &w->mu);
        else if (pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&w->mu);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const struct worker_def *d = w->def;

    if (d->init)
        d->init(w->ctx, w->st);
    while (!atomic_load(&w->stop)) {
        int64_t wait;
        atomic_store(&w->woken, 0);
        wait = run_tick(w);
        sleep_until_due(w, wait);
    }
    if (d->flags & WORKER_FINAL_TICK)
        run_tick(w);
    if (d->fini)
        d->fini(w->ctx, w->st);
    return NULL;
}

static void worker_free(struct worker *w)
{
    store_close(w->st);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

int worker_start(struct worker **out, struct worker_set *ws, const struct worker_def *def,
                 void *ctx, struct err *e)
{
    struct worker *w = xcalloc(1, sizeof *w);
    pthread_condattr_t ca;
    int rc = 0;

    w->def = def;
    w->ctx = ctx;
    w->set = ws;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (def->store != WORKER_NO_STORE) {
        struct store_opts so = {.bulk = def->store == WORKER_STORE_BULK};
        ASSERT(ws && ws->location);
        so.busy_timeout_ms = ws->busy_timeout_ms;
        rc = store_open(&w->st, ws->location, &so, e);
        if (rc)
            goto out;
    }
    /* Set before the thread starts: the tick may reach the worker through its ctx
     * (worker_stopping) from its first run, and out is often inside ctx. */
    *out = w;
    if (pthread_create(&w->tid, NULL, worker_main, w) != 0) {
        rc = ERR(e, E_INTERNAL, "cannot start the %s thread", def->name);
        goto out;
    }
    pthread_setname_np(w->tid, def->name); /* longer than 15 bytes: left unnamed */
    set_add(ws, w);
out:
    if (rc) {
        worker_free(w);
        *out = NULL;
    }
    return rc;
}

void worker_stop(struct worker *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    atomic_store(&w->stop, 1);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->tid, NULL);
    set_remove(w->set, w);
    worker_free(w);
}

void worker_wake(struct worker *w)
{
    if (atomic_exchange(&w->woken, 1))
        return; /* a wake is pending: the thread will see it before it sleeps */
    pthread_mutex_lock(&w->mu);
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int worker_stopping(const struct worker *w)
{
    return atomic_load(&w->stop);
}

void worker_health(struct worker *w, struct worker_health *out)
{
    pthread_mutex_lock(&w->mu);
    *out = w->health;
    pthread_mutex_unlock(&w->mu);
}

const char *worker_name(const struct worker *w)
{
    return w->def->name;
}
