/* core/metrics.c -- the metrics registry and its Prometheus text (metrics.h).
 *
 * DESIGN: families on a list in registration order, each with its kept series on a
 * list in creation order. A series renders its label pairs once, when it is made
 * (name="value",... escaped), so a scrape only copies them; its figures are atomics
 * (relaxed: a scrape may see one increment and not the next, never a torn value).
 * A histogram keeps a count per bucket (not cumulative, so an observation is two
 * increments: its bucket and the sum) and adds them up when rendered. */
#include "metrics.h"

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABELS 8

struct metric_series {
    struct metric_series *next;
    char *pairs;            /* route="x",code="200" (escaped); "" without labels */
    _Atomic uint64_t count; /* a counter's value */
    _Atomic int64_t gauge;
    _Atomic uint64_t sum_micro;
    _Atomic uint64_t *buckets; /* histograms: nbuckets + 1 (the last is +Inf) */
    const double *bounds;      /* the family's */
    int nbuckets;
    enum metric_type type;
};

struct metric {
    struct metric *next;
    struct metric_def def;
    struct metrics *reg;
    const char *label[MAX_LABELS];
    char *label_names; /* the copy label[] points into */
    int nlabels;
    struct metric_series *first, *last;
};

struct metrics {
    pthread_mutex_t mu; /* protects the family list and every family's series list */
    struct metric *first, *last;
};

struct metric_sink {
    struct buf *out;
    const struct metric *f;
};

void metrics_new(struct metrics **out)
{
    struct metrics *m = xcalloc(1, sizeof *m);

    pthread_mutex_init(&m->mu, NULL);
    *out = m;
}

void metrics_free(struct metrics *m)
{
    struct metric *f, *fnext;
    struct metric_series *s, *snext;

    if (m == NULL)
        return;
    for (f = m->first; f; f = fnext) {
        fnext = f->next;
        for (s = f->first; s; s = snext) {
            snext = s->next;
            free(s->pairs);
            free((void *)s->buckets);
            free(s);
        }
        free(f->label_names);
        free(f);
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static int name_valid(const char *s)
{
    if (s == NULL || !(isalpha((unsigned char)*s) || *s == '_' || *s == ':'))
        return 0;
    for (s++; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == ':'))
            return 0;
    return 1;
}

struct metric *metrics_add(struct metrics *m, const struct metric_def *def)
{
    struct metric *f = xcalloc(1, sizeof *f), *g;
    char *p;

    ASSERT(name_valid(def->name) && def->help);
    ASSERT(def->type != METRIC_HISTOGRAM || (def->buckets && def->nbuckets > 0 && !def->collect));
    f->def = *def;
    f->reg = m;
    if (def->labels && def->labels[0]) {
        f->label_names = xstrdup(def->labels);
        for (p = f->label_names; p;) {
            char *comma = strchr(p, ',');
            ASSERT(f->nlabels < MAX_LABELS);
            if (comma)
                *comma++ = '\0';
            ASSERT(name_valid(p) && strcmp(p, "le") != 0);
            f->label[f->nlabels++] = p;
            p = comma;
        }
    }
    pthread_mutex_lock(&m->mu);
    for (g = m->first; g; g = g->next)
        ASSERT(strcmp(g->def.name, def->name) != 0);
    if (m->last)
        m->last->next = f;
    else
        m->first = f;
    m->last = f;
    pthread_mutex_unlock(&m->mu);
    return f;
}

void metrics_add_all(struct metrics *m, const struct metric_def *defs, size_t n, void *ctx)
{
    size_t i;

    for (i = 0; i < n; i++) {
        struct metric_def d = defs[i];
        d.ctx = ctx;
        metrics_add(m, &d);
    }
}

/* Appends name="value",... for f's labels, the values escaped. */
static void add_pairs(struct buf *b, const struct metric *f, const char *const *values)
{
    int i;

    for (i = 0; i < f->nlabels; i++) {
        const char *v = values[i] ? values[i] : "";
        if (i)
            buf_addc(b, ',');
        buf_adds(b, f->label[i]);
        buf_adds(b, "=\"");
        for (; *v; v++) {
            if (*v == '\\' || *v == '"')
                buf_addc(b, '\\');
            if (*v == '\n')
                buf_adds(b, "\\n");
            else
                buf_addc(b, *v);
        }
        buf_addc(b, '"');
    }
}

struct metric_series *metric_series(struct metric *f, const char *const *values)
{
    struct metric_series *s;
    struct buf pairs;

    ASSERT(f->def.collect == NULL && (values != NULL || f->nlabels == 0));
    buf_init(&pairs);
    buf_adds(&pairs, "");
    add_pairs(&pairs, f, values);
    pthread_mutex_lock(&f->reg->mu);
    for (s = f->first; s; s = s->next)
        if (strcmp(s->pairs, pairs.p) == 0)
            break;
    if (s == NULL) {
        s = xcalloc(1, sizeof *s);
        s->pairs = buf_take(&pairs);
        s->type = f->def.type;
        if (f->def.type == METRIC_HISTOGRAM) {
            s->buckets = xcalloc((size_t)f->def.nbuckets + 1, sizeof *s->buckets);
            s->bounds = f->def.buckets;
            s->nbuckets = f->def.nbuckets;
        }
        if (f->last)
            f->last->next = s;
        else
            f->first = s;
        f->last = s;
    }
    pthread_mutex_unlock(&f->reg->mu);
    buf_release(&pairs);
    return s;
}

void metric_add(struct metric_series *s, uint64_t n)
{
    if (s) /* NULL: a module started without a registry (tests) */
        atomic_fetch_add_explicit(&s->count, n, memory_order_relaxed);
}

void metric_set(struct metric_series *s, int64_t v)
{
    atomic_store_explicit(&s->gauge, v, memory_order_relaxed);
}

void metric_observe(struct metric_series *s, double v)
{
    int k;

    for (k = 0; k < s->nbuckets && v > s->bounds[k]; k++)
        ;
    atomic_fetch_add_explicit(&s->buckets[k], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sum_micro, (uint64_t)(v * 1e6), memory_order_relaxed);
}

int64_t metric_value(const struct metric_series *s)
{
    uint64_t n = 0;
    int k;

    if (s->type == METRIC_GAUGE)
        return atomic_load_explicit(&s->gauge, memory_order_relaxed);
    if (s->type == METRIC_COUNTER)
        return (int64_t)atomic_load_explicit(&s->count, memory_order_relaxed);
    for (k = 0; k <= s->nbuckets; k++)
        n += atomic_load_explicit(&s->buckets[k], memory_order_relaxed);
    return (int64_t)n;
}

/* ---- rendering ------------------------------------------------------------------------ */

static void add_number(struct buf *b, int decimals, double v)
{
    if (decimals > 0)
        buf_printf(b, " %.*f\n", decimals, v);
    else
        buf_printf(b, " %lld\n", (long long)v);
}

void metric_emit(struct metric_sink *out, const char *const *values, double v)
{
    const struct metric *f = out->f;

    buf_adds(out->out, f->def.name);
    if (f->nlabels) {
        buf_addc(out->out, '{');
        add_pairs(out->out, f, values);
        buf_addc(out->out, '}');
    }
    add_number(out->out, f->def.decimals, v);
}

int metric_emit_count(void *out, const char *value, int64_t count)
{
    const char *values[] = {value};

    metric_emit(out, values, (double)count);
    return 0;
}

static void add_help(struct buf *b, const struct metric *f)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    const char *h;

    buf_printf(b, "# HELP %s ", f->def.name);
    for (h = f->def.help; *h; h++) {
        if (*h == '\\')
            buf_adds(b, "\\\\");
        else if (*h == '\n')
            buf_adds(b, "\\n");
        else
            buf_addc(b, *h);
    }
    buf_printf(b, "\n# TYPE %s %s\n", f->def.name, types[f->def.type]);
}

/* name{pairs} or name{pairs,extra} or name{extra} or name. */
static void add_name(struct buf *b, const char *name, const char *suffix, const char *pairs,
                     const char *extra)
{
    buf_adds(b, name);
    buf_adds(b, suffix);
    if (pairs[0] || extra) {
        buf_addc(b, '{');
        buf_adds(b, pairs);
        if (pairs[0] && extra)
            buf_addc(b, ',');
        if (extra)
            buf_adds(b, extra);
        buf_addc(b, '}');
    }
}

static void add_histogram(struct buf *b, const struct metric *f, struct metric_series *s)
{
    uint64_t cum = 0;
    char le[48];
    int k;

    for (k = 0; k <= f->def.nbuckets; k++) {
        cum += atomic_load_explicit(&s->buckets[k], memory_order_relaxed);
        if (k < f->def.nbuckets)
            snprintf(le, sizeof le, "le=\"%g\"", f->def.buckets[k]);
        else
            snprintf(le, sizeof le, "le=\"+Inf\"");
        add_name(b, f->def.name, "_bucket", s->pairs, le);
        buf_printf(b, " %llu\n", (unsigned long long)cum);
    }
    add_name(b, f->def.name, "_sum", s->pairs, NULL);
    buf_printf(b, " %.6f\n",
               (double)atomic_load_explicit(&s->sum_micro, memory_order_relaxed) / 1e6);
    /* The count is the buckets' total, so the two always agree within a scrape. */
    add_name(b, f->def.name, "_count", s->pairs, NULL);
    buf_printf(b, " %llu\n", (unsigned long long)cum);
}

static int hidden(const struct metric *f, struct metric_series *s)
{
    int k;

    if (!(f->def.flags & METRIC_HIDE_ZERO))
        return 0;
    if (f->def.type == METRIC_GAUGE)
        return atomic_load_explicit(&s->gauge, memory_order_relaxed) == 0;
    if (f->def.type == METRIC_COUNTER)
        return atomic_load_explicit(&s->count, memory_order_relaxed) == 0;
    for (k = 0; k <= f->def.nbuckets; k++)
        if (atomic_load_explicit(&s->buckets[k], memory_order_relaxed))
            return 0;
    return 1;
}

int metrics_render(struct metrics *m, struct buf *out, void *scrape, struct err *e)
{
    struct metric_series *s;
    struct metric *f;
    int rc = 0;

    /* The lock guards the lists, not the callbacks: a collect callback may wait (for the
     * audience index while it loads, for a store count), and scrapes should not queue
     * behind it. Families are never removed before metrics_free, so f stays valid. */
    pthread_mutex_lock(&m->mu);
    for (f = m->first; f && rc == 0;) {
        add_help(out, f);
        for (s = f->first; s; s = s->next) {
            if (hidden(f, s))
                continue;
            if (f->def.type == METRIC_HISTOGRAM) {
                add_histogram(out, f, s);
                continue;
            }
            add_name(out, f->def.name, "", s->pairs, NULL);
            if (f->def.type == METRIC_GAUGE)
                buf_printf(out, " %lld\n",
                           (long long)atomic_load_explicit(&s->gauge, memory_order_relaxed));
            else
                buf_printf(
                    out, " %llu\n",
                    (unsigned long long)atomic_load_explicit(&s->count, memory_order_relaxed));
        }
        if (f->def.collect) {
            struct metric_sink sink = {out, f};
            pthread_mutex_unlock(&m->mu);
            rc = f->def.collect(f->def.ctx, f->def.which, scrape, &sink, e);
            pthread_mutex_lock(&m->mu);
        }
        f = f->next;
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}
