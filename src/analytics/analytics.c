/* analytics/analytics.c -- funnels, time series, the overview and the queues
 * (analytics.h; the figures' definitions: docs/analytics.md). */
#include <stdlib.h>
#include <string.h>

#include "../campaign/campaign.h"
#include "../store/store.h"
#include "analytics.h"
#include "tz.h"

/* ---- the figures ----------------------------------------------------------------------- */

/* What a funnel or a bucket holds. */
enum fig {
    F_SENT,
    F_DELIVERED,
    F_OPENED_UNIQUE,
    F_OPENED_TOTAL,
    F_OPENED_MACHINE,
    F_CLICKED_UNIQUE,
    F_CLICKED_TOTAL,
    F_BOUNCED_HARD,
    F_BOUNCED_SOFT,
    F_COMPLAINED,
    F_UNSUBSCRIBED,
    F_DEFERRED,
    F_DROPPED,
    F_FAILED,
    F_SKIPPED,
    F_DEAD,
    F_CONVERSIONS,
    F_N
};
static const char *const fig_names[F_N] = {
    "sent",           "delivered",     "opened_unique", "opened_total", "opened_machine",
    "clicked_unique", "clicked_total", "bounced_hard",  "bounced_soft", "complained",
    "unsubscribed",   "deferred",      "dropped",       "failed",       "skipped",
    "dead",           "conversions"};

struct figs {
    int64_t n[F_N];
    double revenue;
};

/* The figure a stored metric adds to, or -1. */
static int fig_of(int metric)
{
    switch (metric) {
    case STAT_SENT:
        return F_SENT;
    case STAT_FAILED:
        return F_FAILED;
    case STAT_DEAD:
        return F_DEAD;
    case STAT_SKIPPED:
        return F_SKIPPED;
    case STAT_KIND + MEV_DELIVERED:
        return F_DELIVERED;
    case STAT_KIND + MEV_DEFERRED:
        return F_DEFERRED;
    case STAT_KIND + MEV_DROPPED:
        return F_DROPPED;
    case STAT_KIND + MEV_BOUNCED_HARD:
        return F_BOUNCED_HARD;
    case STAT_KIND + MEV_BOUNCED_SOFT:
        return F_BOUNCED_SOFT;
    case STAT_KIND + MEV_COMPLAINED:
        return F_COMPLAINED;
    case STAT_KIND + MEV_UNSUBSCRIBED:
        return F_UNSUBSCRIBED;
    case STAT_KIND + MEV_OPENED:
        return F_OPENED_UNIQUE;
    case STAT_KIND + MEV_CLICKED:
        return F_CLICKED_UNIQUE;
    case STAT_KIND + MEV_CONVERTED:
        return F_CONVERSIONS;
    case STAT_OPENS:
        return F_OPENED_TOTAL;
    case STAT_CLICKS:
        return F_CLICKED_TOTAL;
    case STAT_OPENS_MACHINE:
        return F_OPENED_MACHINE;
    default:
        return -1;
    }
}

static void figs_add(struct figs *f, int metric, int64_t n, double x)
{
    int k = fig_of(metric);

    if (k < 0)
        return;
    f->n[k] += n;
    if (k == F_CONVERSIONS)
        f->revenue += x;
}

static json_t *counts_json(const struct figs *f)
{
    json_t *o = json_object();

    for (int k = 0; k < F_N; k++)
        json_object_set_new(o, fig_names[k], json_integer(f->n[k]));
    json_object_set_new(o, "revenue", json_real(f->revenue));
    return o;
}

static json_t *ratio(int64_t a, int64_t b)
{
    return b > 0 ? json_real((double)a / (double)b) : json_null();
}

/* Rates against delivered, or against sent when no delivery was reported (a provider
 * without delivery events): docs/analytics.md. */
static json_t *rates_json(const struct figs *f, const char **base_name)
{
    int64_t sent = f->n[F_SENT], base = f->n[F_DELIVERED] > 0 ? f->n[F_DELIVERED] : sent;

    *base_name = f->n[F_DELIVERED] > 0 ? "delivered" : "sent";
    return json_pack(
        "{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "delivery", ratio(f->n[F_DELIVERED], sent), "open",
        ratio(f->n[F_OPENED_UNIQUE], base), "click", ratio(f->n[F_CLICKED_UNIQUE], base),
        "click_to_open", ratio(f->n[F_CLICKED_UNIQUE], f->n[F_OPENED_UNIQUE]), "bounce",
        ratio(f->n[F_BOUNCED_HARD] + f->n[F_BOUNCED_SOFT], sent), "complaint",
        ratio(f->n[F_COMPLAINED], base), "unsubscribe", ratio(f->n[F_UNSUBSCRIBED], base),
        "conversion", ratio(f->n[F_CONVERSIONS], base));
}

static json_t *funnel_json(const struct figs *f)
{
    const char *base;
    json_t *rates = rates_json(f, &base);

    return json_pack("{s:o,s:o,s:s}", "counts", counts_json(f), "rates", rates, "rate_base", base);
}

/* ---- funnels ---------------------------------------------------------------------------- */

static int add_stat(void *ctx, int metric, int64_t n, double x)
{
    struct figs *f = ctx;

    /* the send outcomes' totals are the ledger's counts, not these */
    if (metric > STAT_SKIPPED)
        figs_add(f, metric, n, x);
    return 0;
}

/* Adds run's figures to f. */
static int run_figs(struct store *st, int64_t run_id, struct figs *f, struct err *e)
{
    int64_t counts[MSG_STATES] = {0};
    int rc = store_messages_count(st, run_id, counts, e);

    if (rc)
        return rc;
    f->n[F_SENT] += counts[MSG_SENT];
    f->n[F_FAILED] += counts[MSG_FAILED];
    f->n[F_DEAD] += counts[MSG_DEAD];
    f->n[F_SKIPPED] += counts[MSG_SKIPPED];
    return store_stats_of_run(st, run_id, add_stat, f, e);
}

struct run_row {
    int64_t id, campaign_id, started_at, created_at;
};
struct run_rows {
    struct run_row *v;
    size_t n, cap;
};

static int keep_run(void *ctx, const struct store_run *r)
{
    struct run_rows *l = ctx;

    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = (struct run_row){r->id, r->campaign_id, r->started_at, r->created_at};
    return 0;
}

static int no_campaign(void *ctx, const struct store_campaign *c)
{
    (void)ctx;
    (void)c;
    return 0;
}

/* Every run of a live campaign (E_NOTFOUND "no such campaign"). */
static int campaign_runs(struct store *st, int64_t campaign_id, struct run_rows *l, struct err *e)
{
    int rc = store_campaign_get(st, campaign_id, no_campaign, NULL, e);

    if (rc == E_NOTFOUND) {
        err_clear(e);
        return ERR(e, E_NOTFOUND, "no such campaign");
    }
    return rc ? rc : store_runs_list(st, campaign_id, 0, 0, keep_run, l, e);
}

static int one_run(struct store *st, int64_t run_id, struct run_rows *l, struct err *e)
{
    int rc = store_run_get(st, run_id, keep_run, l, e);

    if (rc == E_NOTFOUND) {
        err_clear(e);
        return ERR(e, E_NOTFOUND, "no such campaign run");
    }
    return rc;
}

static int funnel_of(struct store *st, const struct run_rows *l, json_t **out, struct err *e)
{
    struct figs f = {0};
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = run_figs(st, l->v[i].id, &f, e);
    *out = rc ? NULL : funnel_json(&f);
    return rc;
}

int analytics_run_funnel(struct store *st, int64_t run_id, json_t **out, struct err *e)
{
    struct run_rows l = {0};
    int rc = one_run(st, run_id, &l, e);

    *out = NULL;
    if (rc == 0)
        rc = funnel_of(st, &l, out, e);
    free(l.v);
    return rc;
}

int analytics_campaign_funnel(struct store *st, int64_t campaign_id, json_t **out, struct err *e)
{
    struct run_rows l = {0};
    int rc = campaign_runs(st, campaign_id, &l, e);

    *out = NULL;
    if (rc == 0)
        rc = funnel_of(st, &l, out, e);
    free(l.v);
    return rc;
}

/* ---- time series ------------------------------------------------------------------------ */

struct series {
    struct tz *z;
    enum tz_unit unit;
    int64_t *starts; /* bucket starts, ascending; starts[n] is the range's end */
    struct figs *b;
    size_t n;
};

static int parse_unit(const char *s, enum tz_unit *u, struct err *e)
{
    if (s == NULL || strcmp(s, "hour") == 0)
        *u = TZ_HOUR;
    else if (strcmp(s, "minute") == 0)
        *u = TZ_MINUTE;
    else if (strcmp(s, "day") == 0)
        *u = TZ_DAY;
    else
        return ERRF(e, E_INVAL, "bucket", "bucket must be minute, hour or day");
    return 0;
}

static int parse_time(const char *s, const char *field, int64_t dflt, int64_t *out, struct err *e)
{
    if (s == NULL || *s == '\0') {
        *out = dflt;
        return 0;
    }
    if (time_parse_iso(s, strlen(s), out))
        return ERRF(e, E_INVAL, field, "%s must be an ISO-8601 time (2026-12-01T00:00:00Z)", field);
    return 0;
}

/* The buckets of [from, to) in q's zone and unit. */
static int series_init(struct series *s, const struct analytics_range *q, int64_t dflt_from,
                       struct err *e)
{
    int64_t from, to, t;
    size_t cap = 0;
    int rc;

    memset(s, 0, sizeof *s);
    if ((rc = parse_unit(q->bucket, &s->unit, e)) ||
        (rc = parse_time(q->from, "from", dflt_from, &from, e)) ||
        (rc = parse_time(q->to, "to", clock_now_ms(), &to, e)))
        return rc;
    if (to <= from)
        return ERRF(e, E_INVAL, "to", "to must be after from");
    rc = tz_open(q->tz, &s->z, e);
    if (rc) {
        snprintf(e->field, sizeof e->field, "tz");
        return rc;
    }
    for (t = tz_floor(s->z, from, s->unit); t < to; t = tz_next(s->z, t, s->unit)) {
        if (s->n >= ANALYTICS_MAX_BUCKETS) {
            tz_free(s->z);
            free(s->starts);
            memset(s, 0, sizeof *s);
            return ERRF(e, E_INVAL, "bucket",
                        "the range holds more than %d buckets: take a larger bucket or a "
                        "shorter range",
                        ANALYTICS_MAX_BUCKETS);
        }
        if (s->n + 2 > cap) {
            cap = cap ? cap * 2 : 64;
            s->starts = xrealloc(s->starts, cap * sizeof *s->starts);
        }
        s->starts[s->n++] = t;
    }
    if (s->starts == NULL)
        s->starts = xmalloc(2 * sizeof *s->starts);
    s->starts[s->n] = t;
    s->b = xcalloc(s->n ? s->n : 1, sizeof *s->b);
    return 0;
}

static void series_release(struct series *s)
{
    tz_free(s->z);
    free(s->starts);
    free(s->b);
}

/* The bucket holding instant t, or -1 outside the range. */
static long bucket_of(const struct series *s, int64_t t)
{
    size_t lo = 0, hi = s->n;

    if (s->n == 0 || t < s->starts[0] || t >= s->starts[s->n])
        return -1;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (s->starts[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return (long)lo;
}

static int add_minute(void *ctx, int64_t run_id, int64_t minute, int metric, int64_t n, double x)
{
    struct series *s = ctx;
    long b = bucket_of(s, minute * 60000);

    (void)run_id;
    if (b >= 0)
        figs_add(&s->b[b], metric, n, x);
    return 0;
}

/* The minute rows of runs (nruns 0: all) over the series' range. */
static int series_fill(struct store *st, struct series *s, const int64_t *runs, size_t nruns,
                       struct err *e)
{
    /* a minute row belongs to the bucket its first instant is in; minutes of zones with
     * odd offsets still start on whole UTC minutes */
    int64_t from = s->n ? s->starts[0] / 60000 : 0,
            to = s->n ? (s->starts[s->n] + 59999) / 60000 : 0;

    return store_stats_minutes(st, runs, nruns, from, to, add_minute, s, e);
}

static json_t *series_json(struct series *s, const struct analytics_range *q, const char *key)
{
    static const int keys[] = {F_SENT,           F_DELIVERED,     F_OPENED_UNIQUE, F_OPENED_TOTAL,
                               F_CLICKED_UNIQUE, F_CLICKED_TOTAL, F_BOUNCED_HARD,  F_BOUNCED_SOFT,
                               F_COMPLAINED,     F_UNSUBSCRIBED,  F_FAILED,        F_CONVERSIONS};
    json_t *arr = json_array();
    char label[40], from[40], to[40];
    size_t i, k;

    for (i = 0; i < s->n; i++) {
        json_t *o = json_object();
        tz_label(s->z, s->starts[i], label);
        json_object_set_new(o, "t", json_string(label));
        for (k = 0; k < sizeof keys / sizeof *keys; k++)
            json_object_set_new(o, fig_names[keys[k]], json_integer(s->b[i].n[keys[k]]));
        json_object_set_new(o, "revenue", json_real(s->b[i].revenue));
        json_array_append_new(arr, o);
    }
    tz_label(s->z, s->n ? s->starts[0] : 0, from);
    tz_label(s->z, s->n ? s->starts[s->n] : 0, to);
    return json_pack("{s:s,s:s,s:s,s:s,s:o}", "bucket",
                     s->unit == TZ_MINUTE ? "minute"
                     : s->unit == TZ_HOUR ? "hour"
                                          : "day",
                     "tz", q->tz && *q->tz ? q->tz : "UTC", "from", from, "to", to, key, arr);
}

static int timeseries_of(struct store *st, const struct run_rows *l,
                         const struct analytics_range *q, json_t **out, struct err *e)
{
    struct series s;
    int64_t first = 0, *ids = xcalloc(l->n ? l->n : 1, sizeof *ids);
    size_t i;
    int rc;

    for (i = 0; i < l->n; i++) {
        int64_t at = l->v[i].started_at ? l->v[i].started_at : l->v[i].created_at;
        ids[i] = l->v[i].id;
        if (first == 0 || at < first)
            first = at;
    }
    rc = series_init(&s, q, first ? first : clock_now_ms() - DAY_MS, e);
    if (rc == 0) {
        rc = l->n ? series_fill(st, &s, ids, l->n, e) : 0;
        *out = rc ? NULL : series_json(&s, q, "series");
        series_release(&s);
    }
    free(ids);
    return rc;
}

int analytics_run_timeseries(struct store *st, int64_t run_id, const struct analytics_range *q,
                             json_t **out, struct err *e)
{
    struct run_rows l = {0};
    int rc = one_run(st, run_id, &l, e);

    *out = NULL;
    if (rc == 0)
        rc = timeseries_of(st, &l, q, out, e);
    free(l.v);
    return rc;
}

int analytics_campaign_timeseries(struct store *st, int64_t campaign_id,
                                  const struct analytics_range *q, json_t **out, struct err *e)
{
    struct run_rows l = {0};
    int rc = campaign_runs(st, campaign_id, &l, e);

    *out = NULL;
    if (rc == 0)
        rc = timeseries_of(st, &l, q, out, e);
    free(l.v);
    return rc;
}

/* ---- the overview ----------------------------------------------------------------------- */

struct per_run {
    int64_t run_id;
    struct figs f;
};
struct overview_ctx {
    struct series *s;
    struct figs total;
    struct per_run *runs;
    size_t nruns, cap;
};

static int overview_minute(void *ctx, int64_t run_id, int64_t minute, int metric, int64_t n,
                           double x)
{
    struct overview_ctx *o = ctx;
    long b = bucket_of(o->s, minute * 60000);
    size_t i;

    if (b < 0 || run_id == 0)
        return 0;
    figs_add(&o->s->b[b], metric, n, x);
    figs_add(&o->total, metric, n, x);
    for (i = 0; i < o->nruns && o->runs[i].run_id != run_id; i++)
        ;
    if (i == o->nruns) {
        if (o->nruns == o->cap) {
            o->cap = o->cap ? o->cap * 2 : 16;
            o->runs = xrealloc(o->runs, o->cap * sizeof *o->runs);
        }
        memset(&o->runs[o->nruns], 0, sizeof o->runs[o->nruns]);
        o->runs[o->nruns++].run_id = run_id;
    }
    figs_add(&o->runs[i].f, metric, n, x);
    return 0;
}

struct camp_fig {
    int64_t id;
    char name[130];
    struct figs f;
};

static int keep_name(void *ctx, const struct store_campaign *c)
{
    struct camp_fig *k = ctx;

    snprintf(k->name, sizeof k->name, "%s", c->name);
    return 0;
}

static int by_sent(const void *a, const void *b)
{
    const struct camp_fig *x = a, *y = b;

    return x->f.n[F_SENT] < y->f.n[F_SENT] ? 1 : x->f.n[F_SENT] > y->f.n[F_SENT] ? -1 : 0;
}

int analytics_overview(struct store *st, const struct analytics_range *q, json_t **out,
                       struct err *e)
{
    struct analytics_range dq = *q;
    struct overview_ctx o = {0};
    struct series s;
    struct camp_fig *camps = NULL;
    size_t ncamps = 0, i, j;
    const char *base;
    json_t *top, *res;
    int rc;

    *out = NULL;
    dq.bucket = "day";
    rc = series_init(&s, &dq, clock_now_ms() - 30 * DAY_MS, e);
    if (rc)
        return rc;
    o.s = &s;
    rc = store_stats_minutes(st, NULL, 0, s.starts[0] / 60000, (s.starts[s.n] + 59999) / 60000,
                             overview_minute, &o, e);
    /* runs to campaigns */
    for (i = 0; rc == 0 && i < o.nruns; i++) {
        struct run_rows l = {0};
        if (store_run_get(st, o.runs[i].run_id, keep_run, &l, e) != 0 || l.n == 0) {
            err_clear(e);
            free(l.v);
            continue;
        }
        for (j = 0; j < ncamps && camps[j].id != l.v[0].campaign_id; j++)
            ;
        if (j == ncamps) {
            camps = xrealloc(camps, (ncamps + 1) * sizeof *camps);
            memset(&camps[ncamps], 0, sizeof camps[ncamps]);
            camps[ncamps].id = l.v[0].campaign_id;
            if (store_campaign_get(st, camps[ncamps].id, keep_name, &camps[ncamps], e))
                err_clear(e); /* deleted since: shown by id */
            ncamps++;
        }
        for (int k = 0; k < F_N; k++)
            camps[j].f.n[k] += o.runs[i].f.n[k];
        camps[j].f.revenue += o.runs[i].f.revenue;
        free(l.v);
    }
    if (rc == 0) {
        if (ncamps) /* qsort takes no NULL, even for nothing */
            qsort(camps, ncamps, sizeof *camps, by_sent);
        top = json_array();
        for (i = 0; i < ncamps && i < 10; i++)
            json_array_append_new(
                top, json_pack("{s:I,s:s?,s:I,s:I,s:I,s:o}", "id", (json_int_t)camps[i].id, "name",
                               camps[i].name[0] ? camps[i].name : NULL, "sent",
                               (json_int_t)camps[i].f.n[F_SENT], "opened_unique",
                               (json_int_t)camps[i].f.n[F_OPENED_UNIQUE], "clicked_unique",
                               (json_int_t)camps[i].f.n[F_CLICKED_UNIQUE], "rates",
                               rates_json(&camps[i].f, &base)));
        res = series_json(&s, &dq, "daily");
        json_object_del(res, "bucket");
        json_object_set_new(res, "totals", counts_json(&o.total));
        json_object_set_new(res, "rates", rates_json(&o.total, &base));
        json_object_set_new(res, "rate_base", json_string(base));
        json_object_set_new(res, "top_campaigns", top);
        *out = res;
    }
    free(camps);
    free(o.runs);
    series_release(&s);
    return rc;
}

/* ---- the queues --------------------------------------------------------------------------- */

static int unknown_events(void *ctx, int metric, int64_t n, double x)
{
    (void)x;
    if (metric == STAT_EVENTS_UNKNOWN)
        *(int64_t *)ctx += n;
    return 0;
}

int analytics_queues(struct store *st, json_t **out, struct err *e)
{
    static const char *const names[MSG_STATES] = {"queued", "sending", "sent",   "retry",
                                                  "failed", "dead",    "skipped"};
    struct store_queues q;
    int64_t now = clock_now_ms(), unknown = 0;
    json_t *ledger;
    int i, rc = store_queues(st, &q, e);

    *out = NULL;
    if (rc == 0)
        rc = store_stats_of_run(st, 0, unknown_events, &unknown, e);
    if (rc)
        return rc;
    ledger = json_object();
    for (i = 0; i < MSG_STATES; i++)
        json_object_set_new(ledger, names[i], json_integer(q.ledger[i]));
    *out = json_pack(
        "{s:o,s:I,s:I,s:o,s:I,s:{s:I,s:I,s:I},s:I}", "ledger", ledger, "oldest_queued_seconds",
        (json_int_t)(q.oldest_queued_at ? (now - q.oldest_queued_at) / 1000 : 0), "retry_backlog",
        (json_int_t)q.retry, "next_retry_at", json_iso_or_null(q.next_retry_at), "dead_letters",
        (json_int_t)q.ledger[MSG_DEAD], "webhook_inbox", "pending", (json_int_t)q.inbox_pending,
        "oldest_pending_seconds",
        (json_int_t)(q.inbox_oldest_at ? (now - q.inbox_oldest_at) / 1000 : 0), "failed",
        (json_int_t)q.inbox_failed, "unknown_message_events", (json_int_t)unknown);
    return 0;
}
