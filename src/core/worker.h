/* core/worker.h -- the one way to run a background worker.
 *
 * DESIGN: a worker is one thread running a tick function: first at start, then
 * interval_ms after each tick ends, or at once when woken (worker_wake: a condition
 * variable, so a queue consumer ticks when something was queued). A failing tick logs
 * one line "worker NAME: msg" and the next waits backoff_min_ms, doubled with each
 * failure in a row up to backoff_max_ms; a tick that succeeds resets that. The worker
 * may own a store connection, opened from the set's location before the thread starts
 * and closed after it ends; the tick (and init/fini) get it, no one else. Its health
 * (last run, last success, last error, failures in a row) is kept under its lock and
 * read as a copy, also as metrics for the whole set (worker_set_metrics). Stop lets a
 * running tick finish, then joins; a tick that runs long polls worker_stopping(). */
#ifndef ENGAGE_WORKER_H
#define ENGAGE_WORKER_H

#include "core.h"

struct store;
struct metrics;

enum worker_store {
    WORKER_NO_STORE,   /* the tick gets NULL */
    WORKER_STORE,      /* a connection of its own */
    WORKER_STORE_BULK, /* the same for bulk writes (store_opts.bulk) */
};

/* One more tick after stop was asked (a queue consumer drains what was queued). */
#define WORKER_FINAL_TICK 1u

/* What a worker is: one row of a table, static. */
struct worker_def {
    const char *name; /* log subject, thread name (15 bytes), metrics label */
    /* 0, or a negative E_* with e set: logged, and the next tick waits the backoff. */
    int (*tick)(void *ctx, struct store *st, struct err *e);
    int interval_ms; /* from the end of a tick to the next; 0: only when woken */
    int backoff_min_ms, backoff_max_ms;
    enum worker_store store;
    unsigned flags; /* WORKER_FINAL_TICK */
    /* Optional, on the worker's thread: before the first tick, after the last. */
    void (*init)(void *ctx, struct store *st);
    void (*fini)(void *ctx, struct store *st);
};

struct worker_health {
    int64_t last_run_ms;     /* start of the last tick (clock_now_ms; 0: none yet) */
    int64_t last_success_ms; /* end of the last tick that succeeded (0: none yet) */
    int64_t failures;        /* ticks failed in a row */
    int64_t runs;            /* ticks run */
    char last_error[256];    /* of the last failed tick ("" before any) */
};

/* The workers of a process: where their stores are, and a list of them for metrics.
 * location: the data directory the app's store is opened from (NULL: no worker may
 * ask for a store). Thread-safe. */
struct worker_set;
void worker_set_new(struct worker_set **out, const char *location, int busy_timeout_ms);
void worker_set_free(struct worker_set *ws); /* NULL-safe; its workers must be stopped */
/* Registers engage_worker_* gauges (by worker) in m: the set must outlive m's use. */
void worker_set_metrics(struct worker_set *ws, struct metrics *m);

struct worker;
/* Opens the worker's store (if def asks for one) and starts its thread; the first tick
 * runs at once. *out is set before the thread starts, so a tick may reach the worker
 * through ctx (worker_stopping) from its first run; on failure it is NULL. def and ctx
 * must outlive the worker. ws may be NULL for a worker without a store. Caller owns
 * *out (worker_stop). */
int worker_start(struct worker **out, struct worker_set *ws, const struct worker_def *def,
                 void *ctx, struct err *e);
/* Lets a running tick finish (and a final one, WORKER_FINAL_TICK), joins, closes the
 * store and frees. NULL-safe. */
void worker_stop(struct worker *w);
/* The next tick runs now (or, if one is running, right after it). Cheap when already
 * woken: an atomic exchange. */
void worker_wake(struct worker *w);
/* 1 once stop was asked: a long tick may return early. */
int worker_stopping(const struct worker *w);
void worker_health(struct worker *w, struct worker_health *out);
/* The wait after the n-th failure in a row (n >= 1): backoff_min_ms (1 s if 0) doubled
 * n - 1 times, at most backoff_max_ms (when set). */
int64_t worker_backoff_ms(const struct worker_def *def, int64_t n);
const char *worker_name(const struct worker *w);

#endif
