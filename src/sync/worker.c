/* sync/worker.c -- the sync worker of `engage serve`: a pass over every source each
 * [sync] interval_seconds, a failing source retried with backoff, and the lag of every
 * table measured as rows are stored.
 *
 * DESIGN: one thread with its own store connection. Sources are listed at each tick,
 * so one added by the CLI or the API is picked up without a restart. A source that
 * failed waits interval x 2^failures (at most 5 minutes) before its next try; its
 * checkpoints do not move, and its status (sync_sources) holds the error. Lag: for
 * each stored row whose cursor is a timestamp, stored-at minus that timestamp goes into
 * a per-minute histogram of the last hour (128 log-spaced buckets from 1 ms, 4 a power
 * of two: percentiles within 19%), beside the newest cursor seen and the rows stored.
 *
 * Nightly reconciliation: once a UTC day, at or after [sync] reconcile_hour, a source
 * whose pass just succeeded is reconciled (repaired with [sync] reconcile_repair). The
 * store's newest report of the source decides (sync_reconcile_due), so a restart, or an
 * `engage sync reconcile` run after the hour, does not make a second one that day; the
 * worker asks the store only when its own note of that report says a run is due. A
 * reconciliation that fails is tried again after BACKOFF_MAX_MS. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../core/metrics.h"
#include "../core/worker.h"
#include "sync.h"

#define LAG_BUCKETS 128
#define LAG_MINUTES 60
#define MAX_TABLES 256
#define BACKOFF_MAX_MS (300 * 1000)

struct table_stats {
    char source[64], table[128];
    int64_t newest_ms;           /* the newest cursor time stored (0: none yet) */
    int64_t rows;                /* stored since the server started */
    int64_t minute[LAG_MINUTES]; /* which minute (epoch minutes) each slot holds */
    uint32_t lag[LAG_MINUTES][LAG_BUCKETS];
    int64_t rows_minute[LAG_MINUTES];
};

struct source_state {
    char name[64];
    int64_t next_at, failures;
    /* The nightly reconciliation: when the newest known one started (0: none or not yet
     * asked), no try before retry_at, and the mismatches of the last one run here. */
    int64_t reconciled_at, reconcile_retry_at, mismatches;
    int reconciled; /* one was run by this server: mismatches is set */
    int64_t late;   /* rows found by the lookback window since the server started */
};

struct sync_worker {
    struct worker *worker;
    /* mu protects tables, ntables, sources, nsources, reconciliations; a source's
     * reconciled_at and reconcile_retry_at are read and written by the worker alone */
    pthread_mutex_t mu;
    struct store *st; /* the worker's connection, set for the length of a tick */
    const struct config *cfg;
    struct worker_def def; /* its interval is [sync] interval_seconds */
    struct table_stats *tables;
    int ntables;
    struct source_state *sources;
    int nsources;
    int64_t reconciliations; /* nightly reconciliations run since the server started */
};

static int lag_bucket(int64_t ms)
{
    int b;

    if (ms < 1)
        return 0;
    b = (int)(4.0 * log2((double)ms)) + 1;
    return b >= LAG_BUCKETS ? LAG_BUCKETS - 1 : b;
}

static double bucket_upper_ms(int b)
{
    return b == 0 ? 1 : pow(2.0, (double)b / 4.0);
}

static struct table_stats *stats_of(struct sync_worker *w, const char *source, const char *table)
{
    int i;

    for (i = 0; i < w->ntables; i++)
        if (strcmp(w->tables[i].source, source) == 0 && strcmp(w->tables[i].table, table) == 0)
            return &w->tables[i];
    if (w->ntables == MAX_TABLES)
        return NULL;
    w->tables = xrealloc(w->tables, (size_t)(w->ntables + 1) * sizeof *w->tables);
    memset(&w->tables[w->ntables], 0, sizeof *w->tables);
    snprintf(w->tables[w->ntables].source, sizeof w->tables->source, "%s", source);
    snprintf(w->tables[w->ntables].table, sizeof w->tables->table, "%s", table);
    return &w->tables[w->ntables++];
}

struct observe_ctx {
    struct sync_worker *w;
    const char *source;
};

static void on_batch(void *ctx, const struct sync_table *t, const struct sync_batch *b,
                     int64_t stored_at)
{
    struct observe_ctx *o = ctx;
    struct table_stats *ts;
    int64_t minute = stored_at / MIN_MS;
    int i, slot = (int)(minute % LAG_MINUTES);

    pthread_mutex_lock(&o->w->mu);
    ts = stats_of(o->w, o->source, t->table);
    if (ts && ts->minute[slot] != minute) {
        ts->minute[slot] = minute;
        memset(ts->lag[slot], 0, sizeof ts->lag[slot]);
        ts->rows_minute[slot] = 0;
    }
    for (i = 0; ts && i < b->n; i++) {
        const struct jt *v = sync_value(&b->rows[i], b->at.cursor);
        int64_t at;
        ts->rows++;
        ts->rows_minute[slot]++;
        if (v == NULL || v->type != JT_STR || time_parse_iso(v->u.s, v->n, &at))
            continue;
        if (at > ts->newest_ms)
            ts->newest_ms = at;
        ts->lag[slot][lag_bucket(stored_at - at)]++;
    }
    pthread_mutex_unlock(&o->w->mu);
}

static struct source_state *state_of(struct sync_worker *w, const char *name)
{
    int i;

    for (i = 0; i < w->nsources; i++)
        if (strcmp(w->sources[i].name, name) == 0)
            return &w->sources[i];
    w->sources = xrealloc(w->sources, (size_t)(w->nsources + 1) * sizeof *w->sources);
    memset(&w->sources[w->nsources], 0, sizeof *w->sources);
    snprintf(w->sources[w->nsources].name, sizeof w->sources->name, "%s", name);
    return &w->sources[w->nsources++];
}

struct names {
    char (*v)[64];
    int n;
};

static int collect(void *ctx, const struct store_sync_source *s)
{
    struct names *nm = ctx;

    nm->v = xrealloc(nm->v, (size_t)(nm->n + 1) * sizeof *nm->v);
    snprintf(nm->v[nm->n++], 64, "%s", s->name);
    return 0;
}

int sync_reconcile_due(int64_t now_ms, int hour, int64_t last_started_ms)
{
    int64_t day, mark;

    if (hour < 0 || hour > 23)
        return 0;
    day = now_ms >= 0 ? now_ms / DAY_MS : (now_ms - DAY_MS + 1) / DAY_MS;
    mark = day * DAY_MS + hour * HOUR_MS;
    return now_ms >= mark && last_started_ms < mark;
}

/* After a successful pass of a source: its reconciliation, when one is due. */
static void reconcile_nightly(struct sync_worker *w, struct source_state *ss, const char *name)
{
    const struct config *cfg = w->cfg;
    int64_t now = clock_now_ms(), last = 0, mismatches = 0;
    struct err e = {0};
    json_t *rep = NULL;

    if (now < ss->reconcile_retry_at ||
        !sync_reconcile_due(now, cfg->sync_reconcile_hour, ss->reconciled_at))
        return;
    if (worker_stopping(w->worker))
        return;
    /* Due by our note; the store knows of runs since (another server's, the CLI's). */
    if (store_sync_reconciliation_last(w->st, name, &last, &e) == 0) {
        ss->reconciled_at = last;
        if (!sync_reconcile_due(now, cfg->sync_reconcile_hour, last))
            return;
        sync_reconcile(w->st, cfg, name, cfg->sync_reconcile_repair, &rep, &mismatches, &e);
    }
    pthread_mutex_lock(&w->mu);
    if (rep) {
        ss->reconciled_at = now;
        ss->mismatches = mismatches;
        ss->reconciled = 1;
        w->reconciliations++;
    } else {
        ss->reconcile_retry_at = now + BACKOFF_MAX_MS;
    }
    pthread_mutex_unlock(&w->mu);
    if (rep == NULL) {
        log_warn("sync", "source %s: the nightly reconciliation failed (next try in %d s): %s",
                 name, BACKOFF_MAX_MS / 1000, e.msg);
        return;
    }
    log_info("sync", "source %s: nightly reconciliation %lld: %lld mismatches%s", name,
             (long long)json_integer_value(json_object_get(rep, "id")), (long long)mismatches,
             cfg->sync_reconcile_repair && mismatches ? ", repaired" : "");
    json_decref(rep);
}

/* A pass over each source that is due. A source's failure is its own (its backoff,
 * its status); only not being able to list the sources fails the tick. */
static int tick(void *ctx, struct store *st, struct err *te)
{
    struct sync_worker *w = ctx;
    struct names nm = {0};
    struct err e = {0};
    int i;

    w->st = st;
    if (store_sync_sources(w->st, collect, &nm, &e)) {
        free(nm.v);
        return ERR(te, e.code, "cannot list the sync sources: %s", e.msg);
    }
    for (i = 0; i < nm.n; i++) {
        struct observe_ctx o = {w, nm.v[i]};
        struct sync_opts opts = {.on_batch = on_batch, .ctx = &o};
        struct sync_report rep;
        struct source_state *ss;
        int64_t now = clock_now_ms(), interval = (int64_t)w->cfg->sync_interval_s * 1000;
        int due;
        pthread_mutex_lock(&w->mu);
        ss = state_of(w, nm.v[i]);
        due = now >= ss->next_at && !worker_stopping(w->worker);
        pthread_mutex_unlock(&w->mu);
        if (!due)
            continue;
        memset(&e, 0, sizeof e);
        if (sync_pass(w->st, w->cfg, nm.v[i], &opts, &rep, &e)) {
            int64_t wait;
            pthread_mutex_lock(&w->mu);
            ss->failures++;
            wait = interval << (ss->failures < 16 ? ss->failures : 16);
            ss->next_at = now + (wait < BACKOFF_MAX_MS ? wait : BACKOFF_MAX_MS);
            pthread_mutex_unlock(&w->mu);
            log_warn("sync", "source %s failed (%lld in a row; next try in %lld s): %s", nm.v[i],
                     (long long)ss->failures, (long long)((ss->next_at - now) / 1000), e.msg);
        } else {
            pthread_mutex_lock(&w->mu);
            if (ss->failures)
                log_info("sync", "source %s is back after %lld failures", nm.v[i],
                         (long long)ss->failures);
            ss->failures = 0;
            ss->next_at = now + interval;
            pthread_mutex_unlock(&w->mu);
            if (rep.read || rep.late)
                log_info("sync",
                         "source %s: %lld rows: %lld contacts, %lld events, %lld deleted, "
                         "%lld rejected, %lld late",
                         nm.v[i], (long long)rep.read, (long long)rep.contacts,
                         (long long)rep.events, (long long)rep.deleted, (long long)rep.rejected,
                         (long long)rep.late);
            pthread_mutex_lock(&w->mu);
            ss->late += rep.late;
            pthread_mutex_unlock(&w->mu);
            reconcile_nightly(w, ss, nm.v[i]); /* a failing source never gets here */
        }
    }
    free(nm.v);
    return 0;
}

int sync_worker_start(struct sync_worker **out, struct worker_set *ws, const struct config *cfg,
                      struct err *e)
{
    struct sync_worker *w = xcalloc(1, sizeof *w);
    int rc;

    w->cfg = cfg;
    w->def = (struct worker_def){
        .name = "sync-worker",
        .tick = tick,
        .interval_ms = cfg->sync_interval_s * 1000,
        /* Failing to list the sources is retried at the next interval, as before; a
         * failing source has its own backoff (up to BACKOFF_MAX_MS). */
        .backoff_min_ms = cfg->sync_interval_s * 1000,
        .backoff_max_ms = cfg->sync_interval_s * 1000,
        .store = WORKER_STORE,
    };
    pthread_mutex_init(&w->mu, NULL);
    rc = worker_start(&w->worker, ws, &w->def, w, e);
    if (rc) {
        pthread_mutex_destroy(&w->mu);
        free(w);
        w = NULL;
    }
    *out = w;
    return rc;
}

void sync_worker_stop(struct sync_worker *w)
{
    if (w == NULL)
        return;
    worker_stop(w->worker); /* a pass in progress finishes its batch first */
    pthread_mutex_destroy(&w->mu);
    free(w->tables);
    free(w->sources);
    free(w);
}

/* p (0..1) of the last hour's lags of a table, in ms; -1 when there are none. */
static double lag_pct(const struct table_stats *ts, int64_t now_minute, double p)
{
    uint64_t counts[LAG_BUCKETS] = {0}, total = 0, seen = 0;
    int s, b;

    for (s = 0; s < LAG_MINUTES; s++) {
        if (ts->minute[s] <= now_minute - LAG_MINUTES || ts->minute[s] > now_minute)
            continue;
        for (b = 0; b < LAG_BUCKETS; b++) {
            counts[b] += ts->lag[s][b];
            total += ts->lag[s][b];
        }
    }
    if (total == 0)
        return -1;
    for (b = 0; b < LAG_BUCKETS; b++) {
        seen += counts[b];
        if ((double)seen >= p * (double)total)
            return bucket_upper_ms(b);
    }
    return bucket_upper_ms(LAG_BUCKETS - 1);
}

json_t *sync_worker_table_stats(struct sync_worker *w, const char *source, const char *table)
{
    int64_t now = clock_now_ms(), minute = now / MIN_MS, hour_rows = 0;
    struct table_stats *ts = NULL;
    json_t *o;
    int i, s;

    if (w == NULL)
        return json_object();
    pthread_mutex_lock(&w->mu);
    for (i = 0; i < w->ntables && !ts; i++)
        if (strcmp(w->tables[i].source, source) == 0 && strcmp(w->tables[i].table, table) == 0)
            ts = &w->tables[i];
    if (ts == NULL) {
        pthread_mutex_unlock(&w->mu);
        return json_object();
    }
    for (s = 0; s < LAG_MINUTES; s++)
        if (ts->minute[s] > minute - LAG_MINUTES && ts->minute[s] <= minute)
            hour_rows += ts->rows_minute[s];
    /* Figures for people: a rate to 2 decimals (with the hour's count beside it, so one
     * row an hour is not lost as 0.00), times to the millisecond. */
    o = json_pack("{s:I,s:I,s:f}", "rows_since_start", (json_int_t)ts->rows, "rows_last_hour",
                  (json_int_t)hour_rows, "rows_per_second", round((double)hour_rows / 36.0) / 100);
    if (ts->newest_ms) {
        char iso[32];
        time_format_iso(ts->newest_ms, iso);
        json_object_set_new(o, "newest_row_at", json_string(iso));
        json_object_set_new(o, "lag_seconds", json_real((double)(now - ts->newest_ms) / 1000));
    }
    if (lag_pct(ts, minute, 0.5) >= 0) {
        json_object_set_new(o, "lag_p50_ms",
                            json_integer((json_int_t)lround(lag_pct(ts, minute, 0.5))));
        json_object_set_new(o, "lag_p95_ms",
                            json_integer((json_int_t)lround(lag_pct(ts, minute, 0.95))));
    }
    pthread_mutex_unlock(&w->mu);
    return o;
}

/* ---- metrics: computed at scrape time from the tables and sources above ---- */

enum sync_figure { ROWS, LAG, LAG_P95, FAILURES, LATE, MISMATCHES, RECONCILIATIONS };

static void emit_table(struct sync_worker *w, const struct table_stats *ts, int which, int64_t now,
                       struct metric_sink *out)
{
    const char *values[] = {ts->source, ts->table};
    double p95;

    switch (which) {
    case ROWS:
        metric_emit(out, values, (double)ts->rows);
        break;
    case LAG:
        if (ts->newest_ms)
            metric_emit(out, values, (double)(now - ts->newest_ms) / 1000);
        break;
    case LAG_P95:
        p95 = lag_pct(ts, now / MIN_MS, 0.95);
        if (p95 >= 0)
            metric_emit(out, values, p95 / 1000);
        break;
    default:
        break;
    }
}

static void emit_source(const struct source_state *ss, int which, struct metric_sink *out)
{
    const char *values[] = {ss->name};

    if (which == FAILURES)
        metric_emit(out, values, (double)ss->failures);
    else if (which == LATE)
        metric_emit(out, values, (double)ss->late);
    else if (which == MISMATCHES && ss->reconciled)
        metric_emit(out, values, (double)ss->mismatches);
}

static int collect_figure(void *ctx, int which, void *scrape, struct metric_sink *out,
                          struct err *e)
{
    struct sync_worker *w = ctx;
    int64_t now = clock_now_ms();
    int i;

    pthread_mutex_lock(&w->mu);
    if (which == RECONCILIATIONS)
        metric_emit(out, NULL, (double)w->reconciliations);
    for (i = 0; which <= LAG_P95 && i < w->ntables; i++)
        emit_table(w, &w->tables[i], which, now, out);
    for (i = 0; which >= FAILURES && which <= MISMATCHES && i < w->nsources; i++)
        emit_source(&w->sources[i], which, out);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

void sync_worker_metrics(struct sync_worker *w, struct metrics *m)
{
    static const struct metric_def defs[] = {
        {.name = "engage_sync_rows_total",
         .help = "Source rows stored by the sync worker, by table.",
         .type = METRIC_COUNTER,
         .labels = "source,table",
         .collect = collect_figure,
         .which = ROWS},
        {.name = "engage_sync_lag_seconds",
         .help = "Time since the newest source row stored (by its cursor).",
         .type = METRIC_GAUGE,
         .labels = "source,table",
         .decimals = 3,
         .collect = collect_figure,
         .which = LAG},
        {.name = "engage_sync_store_lag_p95_seconds",
         .help = "p95 over the last hour of stored-at minus the row's cursor time.",
         .type = METRIC_GAUGE,
         .labels = "source,table",
         .decimals = 3,
         .collect = collect_figure,
         .which = LAG_P95},
        {.name = "engage_sync_failures",
         .help = "Failed passes in a row, by source.",
         .type = METRIC_GAUGE,
         .labels = "source",
         .collect = collect_figure,
         .which = FAILURES},
        {.name = "engage_sync_late_rows_total",
         .help = "Rows found behind the checkpoint by the lookback window (late commits), by "
                 "source.",
         .type = METRIC_COUNTER,
         .labels = "source",
         .collect = collect_figure,
         .which = LATE},
        {.name = "engage_sync_reconcile_mismatches",
         .help = "Keys missing or extra in the last nightly reconciliation, by source.",
         .type = METRIC_GAUGE,
         .labels = "source",
         .collect = collect_figure,
         .which = MISMATCHES},
        {.name = "engage_sync_reconciliations_total",
         .help = "Nightly reconciliations run since the server started.",
         .type = METRIC_COUNTER,
         .collect = collect_figure,
         .which = RECONCILIATIONS},
    };

    metrics_add_all(m, defs, sizeof defs / sizeof *defs, w);
}
