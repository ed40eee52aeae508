/* core/metrics.h -- counters, gauges and histograms, rendered once as Prometheus text.
 *
 * DESIGN: a registry (struct metrics, owned by the app and passed down) holds metric
 * families in the order they were registered, and /metrics renders them in that order:
 * HELP and TYPE, then the samples. A family is registered by the module that owns the
 * figure, from one struct metric_def, and its samples come one of two ways:
 *   - kept here: metric_series() gives a series for a tuple of label values (made once,
 *     at start-up; keep the pointer), bumped with atomics from hot paths;
 *   - computed at scrape time: the def's collect callback emits (label values, value)
 *     pairs (figures that live elsewhere: a store count, a queue's length).
 * Label values are escaped when rendered (\\, \", \n). Thread-safe: registering,
 * making series and rendering take the registry's lock; metric_add/set/observe take
 * none. A family lives as long as its registry. */
#ifndef ENGAGE_METRICS_H
#define ENGAGE_METRICS_H

#include "core.h"

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

/* Kept series are shown once non-zero (histograms: once observed): a route's counters
 * appear when it has been called. */
#define METRIC_HIDE_ZERO 1u

struct metric_sink;

struct metric_def {
    const char *name, *help; /* must outlive the registry (string literals) */
    enum metric_type type;
    const char *labels;    /* label names, comma-separated ("route,code"); NULL: none */
    int decimals;          /* digits after the point for values (0: integers) */
    const double *buckets; /* histograms: upper bounds, ascending (+Inf is added) */
    int nbuckets;
    unsigned flags; /* METRIC_HIDE_ZERO */
    /* Counters and gauges computed at scrape time: emits the family's samples with
     * metric_emit. which is the def's (one callback serves several families); scrape
     * is what metrics_render was given (the server passes the request's store
     * connection). A non-zero return fails the whole scrape. */
    int (*collect)(void *ctx, int which, void *scrape, struct metric_sink *out, struct err *e);
    void *ctx;
    int which;
};

struct metrics;
struct metric;
struct metric_series;

void metrics_new(struct metrics **out);
void metrics_free(struct metrics *m); /* NULL-safe; every family and series with it */

/* Registers a family (def is copied; its strings are not). A bad or repeated name is a
 * bug (ASSERT). Returns the family, owned by the registry. */
struct metric *metrics_add(struct metrics *m, const struct metric_def *def);
/* Registers n defs, each with ctx as its collect callback's: a module's table. */
void metrics_add_all(struct metrics *m, const struct metric_def *defs, size_t n, void *ctx);

/* The kept series of f for values (one per label name; NULL when f has no labels),
 * made on first use. Owned by the registry; keep the pointer for hot paths. */
struct metric_series *metric_series(struct metric *f, const char *const *values);
void metric_add(struct metric_series *s, uint64_t n); /* counters */
void metric_set(struct metric_series *s, int64_t v);  /* gauges */
/* Histograms: v >= 0 goes into the first bucket whose bound is at least v; the sum is
 * kept in millionths (rendered with 6 decimals). */
void metric_observe(struct metric_series *s, double v);
/* A kept counter's or gauge's value, or a histogram's count. */
int64_t metric_value(const struct metric_series *s);

/* From a collect callback: one sample of the family being rendered. */
void metric_emit(struct metric_sink *out, const char *const *values, double v);
/* The same for a family with one label, shaped as a (ctx, key, count) callback such
 * as the store's count listings take: out is the struct metric_sink. Returns 0. */
int metric_emit_count(void *out, const char *value, int64_t count);

/* Appends every family, in registration order, as Prometheus text (format 0.0.4).
 * On a collect error out holds a partial text and rc is returned. */
int metrics_render(struct metrics *m, struct buf *out, void *scrape, struct err *e);

#endif
