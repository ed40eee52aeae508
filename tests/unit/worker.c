/* tests/unit/worker.c -- background workers (core/worker.c): the first tick at start,
 * wake, backoff after failures and its reset, health, a final tick, stop while a tick
 * runs, a worker's own store, health as metrics. Waits are "eventually, within 10 s";
 * nothing asserts how long something took. */
#include <pthread.h>
#include <stdatomic.h>

#include "core/metrics.h"
#include "core/worker.h"
#include "helpers.h"
#include "store/store.h"

/* Polls cond every millisecond for up to 10 s. */
#define EVENTUALLY(cond)                                                                           \
    do {                                                                                           \
        int tries_ = 0;                                                                            \
        while (!(cond) && tries_++ < 10000)                                                        \
            usleep(1000);                                                                          \
        cr_assert(cond, "not within 10 s: %s", #cond);                                             \
    } while (0)

struct counter {
    _Atomic int ticks;
    _Atomic int fail_first; /* this many ticks fail */
    _Atomic int saw_store;
};

static int count_tick(void *ctx, struct store *st, struct err *e)
{
    struct counter *c = ctx;
    int n = atomic_fetch_add(&c->ticks, 1) + 1;

    if (st) {
        struct err pe = {0};
        atomic_store(&c->saw_store, store_ping(st, &pe) == 0 ? 1 : -1);
    }
    if (n <= atomic_load(&c->fail_first))
        return ERR(e, E_IO, "boom %d", n);
    return 0;
}

static int64_t health_of(struct worker *w, struct worker_health *h)
{
    worker_health(w, h);
    return h->runs;
}

UTEST(worker, the_first_tick_runs_at_start_and_wake_runs_the_next)
{
    static const struct worker_def def = {.name = "t-wake", .tick = count_tick};
    struct counter c = {0};
    struct worker_health h;
    struct worker *w;
    struct err e = {0};

    cr_assert_eq(worker_start(&w, NULL, &def, &c, &e), 0, "%s", e.msg);
    cr_assert_str_eq(worker_name(w), "t-wake");
    EVENTUALLY(atomic_load(&c.ticks) == 1);
    worker_wake(w);
    EVENTUALLY(atomic_load(&c.ticks) == 2);
    worker_wake(w);
    worker_wake(w); /* one pending wake: the second costs nothing, runs at most one more */
    EVENTUALLY(atomic_load(&c.ticks) >= 3);
    EVENTUALLY(health_of(w, &h) == atomic_load(&c.ticks));
    cr_assert_gt(h.last_run_ms, 0);
    cr_assert_geq(h.last_success_ms, h.last_run_ms);
    cr_assert_eq(h.failures, 0);
    cr_assert_str_eq(h.last_error, "");
    cr_assert_eq(worker_stopping(w), 0);
    worker_stop(w);
    cr_assert_leq(atomic_load(&c.ticks), 4, "no tick without a wake (interval 0)");
}

UTEST(worker, an_interval_runs_ticks_without_wakes)
{
    static const struct worker_def def = {
        .name = "t-interval", .tick = count_tick, .interval_ms = 1};
    struct counter c = {0};
    struct worker *w;
    struct err e = {0};

    cr_assert_eq(worker_start(&w, NULL, &def, &c, &e), 0, "%s", e.msg);
    EVENTUALLY(atomic_load(&c.ticks) >= 5);
    worker_stop(w);
}

UTEST(worker, failures_back_off_and_a_success_resets_them)
{
    static const struct worker_def def = {.name = "t-fail",
                                          .tick = count_tick,
                                          .interval_ms = 1,
                                          .backoff_min_ms = 1,
                                          .backoff_max_ms = 4};
    struct counter c = {.fail_first = 3};
    struct worker_health h;
    struct worker *w;
    struct err e = {0};

    cr_assert_eq(worker_start(&w, NULL, &def, &c, &e), 0, "%s", e.msg);
    EVENTUALLY(health_of(w, &h) >= 3 && h.runs == atomic_load(&c.ticks) &&
               (h.runs > 3 || h.failures == 3));
    if (h.runs == 3) { /* caught between the third failure and the success */
        cr_assert_eq(h.failures, 3);
        cr_assert_str_eq(h.last_error, "boom 3");
        cr_assert_eq(h.last_success_ms, 0, "never succeeded yet");
    }
    EVENTUALLY(health_of(w, &h) >= 4 && h.failures == 0);
    cr_assert_gt(h.last_success_ms, 0);
    cr_assert_str_eq(h.last_error, "boom 3", "the last error stays for people to read");
    worker_stop(w);
}

UTEST(worker, the_backoff_doubles_up_to_its_cap)
{
    const struct worker_def def = {.name = "t", .backoff_min_ms = 100, .backoff_max_ms = 1000};
    const struct worker_def uncapped = {.name = "t", .backoff_min_ms = 0};

    cr_assert_eq(worker_backoff_ms(&def, 1), 100);
    cr_assert_eq(worker_backoff_ms(&def, 2), 200);
    cr_assert_eq(worker_backoff_ms(&def, 3), 400);
    cr_assert_eq(worker_backoff_ms(&def, 4), 800);
    cr_assert_eq(worker_backoff_ms(&def, 5), 1000);
    cr_assert_eq(worker_backoff_ms(&def, 500), 1000);
    cr_assert_eq(worker_backoff_ms(&uncapped, 1), 1000, "1 s without a minimum");
    cr_assert_eq(worker_backoff_ms(&uncapped, 3), 4000);
    cr_assert_gt(worker_backoff_ms(&uncapped, 1000), 0, "no overflow");
}

struct self_ref {
    struct worker *w; /* set by worker_start */
    _Atomic int saw_self;
};

static int self_tick(void *ctx, struct store *st, struct err *e)
{
    struct self_ref *r = ctx;

    atomic_store(&r->saw_self, r->w != NULL && worker_stopping(r->w) == 0 ? 1 : -1);
    return 0;
}

UTEST(worker, the_first_tick_can_reach_its_worker_through_ctx)
{
    static const struct worker_def def = {.name = "t-self", .tick = self_tick};
    struct self_ref r = {0};
    struct err e = {0};

    cr_assert_eq(worker_start(&r.w, NULL, &def, &r, &e), 0, "%s", e.msg);
    EVENTUALLY(atomic_load(&r.saw_self) != 0);
    cr_assert_eq(atomic_load(&r.saw_self), 1);
    worker_stop(r.w);
}

struct blocker {
    _Atomic int entered, release, finished, ticks;
};

static int block_tick(void *ctx, struct store *st, struct err *e)
{
    struct blocker *b = ctx;

    if (atomic_fetch_add(&b->ticks, 1) > 0)
        return 0;
    atomic_store(&b->entered, 1);
    while (!atomic_load(&b->release))
        usleep(1000);
    atomic_store(&b->finished, 1);
    return 0;
}

struct stopper {
    struct worker *w;
    _Atomic int done;
};

static void *stop_it(void *arg)
{
    struct stopper *s = arg;

    worker_stop(s->w);
    atomic_store(&s->done, 1);
    return NULL;
}

UTEST(worker, stop_lets_a_running_tick_finish_then_joins)
{
    static const struct worker_def def = {
        .name = "t-block", .tick = block_tick, .interval_ms = 60000};
    struct blocker b = {0};
    struct stopper s = {0};
    struct err e = {0};
    pthread_t tid;

    cr_assert_eq(worker_start(&s.w, NULL, &def, &b, &e), 0, "%s", e.msg);
    EVENTUALLY(atomic_load(&b.entered));
    cr_assert_eq(pthread_create(&tid, NULL, stop_it, &s), 0);
    EVENTUALLY(worker_stopping(s.w));
    cr_assert_eq(atomic_load(&s.done), 0, "stop waits for the tick");
    cr_assert_eq(atomic_load(&b.finished), 0);
    atomic_store(&b.release, 1);
    pthread_join(tid, NULL);
    cr_assert_eq(atomic_load(&s.done), 1);
    cr_assert_eq(atomic_load(&b.finished), 1, "the tick ran to its end");
    cr_assert_eq(atomic_load(&b.ticks), 1, "no tick after stop");
}

UTEST(worker, a_final_tick_runs_at_stop)
{
    static const struct worker_def def = {
        .name = "t-drain", .tick = count_tick, .flags = WORKER_FINAL_TICK};
    struct counter c = {0};
    struct worker *w;
    struct err e = {0};

    cr_assert_eq(worker_start(&w, NULL, &def, &c, &e), 0, "%s", e.msg);
    EVENTUALLY(atomic_load(&c.ticks) == 1);
    worker_stop(w);
    cr_assert_eq(atomic_load(&c.ticks), 2);
}

static void open_store_at(const char *dir)
{
    struct store_opts o = {.migrate = 1};
    struct store *st;
    struct err e = {0};

    cr_assert_eq(store_open(&st, dir, &o, &e), 0, "%s", e.msg);
    store_close(st);
}

UTEST(worker, a_worker_gets_its_own_store_and_its_health_is_a_metric)
{
    static const struct worker_def ok = {
        .name = "t-store", .tick = count_tick, .store = WORKER_STORE};
    static const struct worker_def bad = {
        .name = "t-bad", .tick = count_tick, .interval_ms = 1, .backoff_min_ms = 60000};
    struct counter c1 = {0}, c2 = {.fail_first = 1000};
    struct worker_set *ws;
    struct worker *w1, *w2;
    struct metrics *m;
    struct err e = {0};
    struct buf text;
    char *dir = test_tmpdir();

    open_store_at(dir);
    worker_set_new(&ws, dir, 1000);
    metrics_new(&m);
    worker_set_metrics(ws, m);
    cr_assert_eq(worker_start(&w1, ws, &ok, &c1, &e), 0, "%s", e.msg);
    cr_assert_eq(worker_start(&w2, ws, &bad, &c2, &e), 0, "%s", e.msg);
    EVENTUALLY(atomic_load(&c1.saw_store) != 0);
    cr_assert_eq(atomic_load(&c1.saw_store), 1, "a connection that answers");
    EVENTUALLY(atomic_load(&c2.ticks) == 1);
    {
        struct worker_health h;
        EVENTUALLY(health_of(w2, &h) == 1 && h.failures == 1);
        EVENTUALLY(health_of(w1, &h) == 1 && h.last_success_ms > 0);
    }
    buf_init(&text);
    cr_assert_eq(metrics_render(m, &text, NULL, &e), 0);
    cr_assert_not_null(strstr(text.p, "# TYPE engage_worker_failures gauge\n"
                                      "engage_worker_failures{worker=\"t-store\"} 0\n"
                                      "engage_worker_failures{worker=\"t-bad\"} 1\n"),
                       "%s", text.p);
    cr_assert_not_null(strstr(text.p, "engage_worker_last_success_seconds{worker=\"t-store\"} "));
    cr_assert_null(strstr(text.p, "engage_worker_last_success_seconds{worker=\"t-bad\"}"),
                   "no success yet: no sample");
    cr_assert_not_null(strstr(text.p, "engage_worker_last_run_seconds{worker=\"t-bad\"} "));
    buf_release(&text);
    worker_stop(w2);
    worker_stop(w1);
    buf_init(&text);
    cr_assert_eq(metrics_render(m, &text, NULL, &e), 0);
    cr_assert_null(strstr(text.p, "worker=\""), "stopped workers leave the list");
    buf_release(&text);
    metrics_free(m);
    worker_set_free(ws);
    free(dir);
}

UTEST(worker, a_store_that_cannot_open_fails_the_start)
{
    static const struct worker_def def = {
        .name = "t-nostore", .tick = count_tick, .store = WORKER_STORE};
    struct counter c = {0};
    struct worker_set *ws;
    struct worker *w = (struct worker *)&c;
    struct err e = {0};

    worker_set_new(&ws, "/nonexistent/engage-unit", 1000);
    cr_assert_neq(worker_start(&w, ws, &def, &c, &e), 0);
    cr_assert_null(w);
    cr_assert_eq(atomic_load(&c.ticks), 0);
    worker_set_free(ws);
}
