/* tests/unit/metrics.c -- the metrics registry (core/metrics.c): the exact Prometheus
 * text of counters, gauges and histograms with labels and escaping, series hidden
 * until non-zero, collect callbacks and their errors, concurrent increments. */
#include <pthread.h>

#include "core/metrics.h"
#include "helpers.h"

static char *render(struct metrics *m, void *scrape, int want_rc)
{
    struct buf b;
    struct err e = {0};

    buf_init(&b);
    cr_assert_eq(metrics_render(m, &b, scrape, &e), want_rc, "%s", e.msg);
    return buf_take(&b);
}

UTEST(metrics, counters_and_gauges_with_labels_render_exactly)
{
    static const struct metric_def c_def = {.name = "t_requests_total",
                                            .help = "Requests by route and code.",
                                            .type = METRIC_COUNTER,
                                            .labels = "route,code"};
    static const struct metric_def g_def = {
        .name = "t_depth", .help = "Queue depth.", .type = METRIC_GAUGE};
    struct metrics *m;
    struct metric *c, *g;
    char *text;

    metrics_new(&m);
    c = metrics_add(m, &c_def);
    g = metrics_add(m, &g_def);
    metric_add(metric_series(c, (const char *const[]){"a", "200"}), 2);
    metric_add(metric_series(c, (const char *const[]){"b\"q", "500"}), 1);
    metric_add(metric_series(c, (const char *const[]){"a", "200"}), 3); /* the same series */
    metric_set(metric_series(g, NULL), -7);
    cr_assert_eq(metric_value(metric_series(c, (const char *const[]){"a", "200"})), 5);
    text = render(m, NULL, 0);
    cr_assert_str_eq(text, "# HELP t_requests_total Requests by route and code.\n"
                           "# TYPE t_requests_total counter\n"
                           "t_requests_total{route=\"a\",code=\"200\"} 5\n"
                           "t_requests_total{route=\"b\\\"q\",code=\"500\"} 1\n"
                           "# HELP t_depth Queue depth.\n"
                           "# TYPE t_depth gauge\n"
                           "t_depth -7\n");
    free(text);
    metrics_free(m);
}

UTEST(metrics, label_values_and_help_are_escaped)
{
    static const struct metric_def def = {
        .name = "t_esc", .help = "Back\\slash and\nnewline.", .type = METRIC_GAUGE, .labels = "v"};
    struct metrics *m;
    char *text;

    metrics_new(&m);
    metric_set(metric_series(metrics_add(m, &def), (const char *const[]){"a\\b\"c\nd"}), 1);
    text = render(m, NULL, 0);
    cr_assert_str_eq(text, "# HELP t_esc Back\\\\slash and\\nnewline.\n"
                           "# TYPE t_esc gauge\n"
                           "t_esc{v=\"a\\\\b\\\"c\\nd\"} 1\n");
    free(text);
    metrics_free(m);
}

UTEST(metrics, histograms_are_cumulative_with_inf_sum_and_count)
{
    static const double bounds[] = {0.01, 0.1, 1};
    static const struct metric_def def = {.name = "t_seconds",
                                          .help = "Durations.",
                                          .type = METRIC_HISTOGRAM,
                                          .labels = "route",
                                          .buckets = bounds,
                                          .nbuckets = 3};
    struct metric_series *s;
    struct metrics *m;
    char *text;

    metrics_new(&m);
    s = metric_series(metrics_add(m, &def), (const char *const[]){"x"});
    metric_observe(s, 0.005);
    metric_observe(s, 0.01); /* on a bound: that bucket */
    metric_observe(s, 0.5);
    metric_observe(s, 3);
    cr_assert_eq(metric_value(s), 4);
    text = render(m, NULL, 0);
    cr_assert_str_eq(text, "# HELP t_seconds Durations.\n"
                           "# TYPE t_seconds histogram\n"
                           "t_seconds_bucket{route=\"x\",le=\"0.01\"} 2\n"
                           "t_seconds_bucket{route=\"x\",le=\"0.1\"} 2\n"
                           "t_seconds_bucket{route=\"x\",le=\"1\"} 3\n"
                           "t_seconds_bucket{route=\"x\",le=\"+Inf\"} 4\n"
                           "t_seconds_sum{route=\"x\"} 3.515000\n"
                           "t_seconds_count{route=\"x\"} 4\n");
    free(text);
    metrics_free(m);
}

UTEST(metrics, hide_zero_shows_a_series_once_it_moved)
{
    static const double bounds[] = {1};
    static const struct metric_def c_def = {.name = "t_hits_total",
                                            .help = "Hits.",
                                            .type = METRIC_COUNTER,
                                            .labels = "route",
                                            .flags = METRIC_HIDE_ZERO};
    static const struct metric_def h_def = {.name = "t_dur",
                                            .help = "Durations.",
                                            .type = METRIC_HISTOGRAM,
                                            .buckets = bounds,
                                            .nbuckets = 1,
                                            .flags = METRIC_HIDE_ZERO};
    struct metric_series *a, *h;
    struct metrics *m;
    struct metric *c;
    char *text;

    metrics_new(&m);
    c = metrics_add(m, &c_def);
    a = metric_series(c, (const char *const[]){"a"});
    metric_series(c, (const char *const[]){"b"});
    h = metric_series(metrics_add(m, &h_def), NULL);
    text = render(m, NULL, 0);
    cr_assert_str_eq(text, "# HELP t_hits_total Hits.\n# TYPE t_hits_total counter\n"
                           "# HELP t_dur Durations.\n# TYPE t_dur histogram\n");
    free(text);
    metric_add(a, 1);
    metric_observe(h, 2);
    text = render(m, NULL, 0);
    cr_assert_str_eq(text, "# HELP t_hits_total Hits.\n# TYPE t_hits_total counter\n"
                           "t_hits_total{route=\"a\"} 1\n"
                           "# HELP t_dur Durations.\n# TYPE t_dur histogram\n"
                           "t_dur_bucket{le=\"1\"} 0\nt_dur_bucket{le=\"+Inf\"} 1\n"
                           "t_dur_sum 2.000000\nt_dur_count 1\n");
    free(text);
    metrics_free(m);
}

struct source {
    int calls;
    int fail;
};

static int collect_lag(void *ctx, int which, void *scrape, struct metric_sink *out, struct err *e)
{
    struct source *src = ctx;

    src->calls++;
    cr_assert_str_eq(scrape, "the scrape's");
    if (src->fail)
        return ERR(e, E_IO, "cannot read the figures");
    metric_emit(out, (const char *const[]){"s1", "t"}, 1.5);
    metric_emit(out, (const char *const[]){"s2", "t"}, 0.0004);
    return 0;
}

static int collect_rows(void *ctx, int which, void *scrape, struct metric_sink *out, struct err *e)
{
    cr_assert_eq(which, 7, "the def's which");
    metric_emit(out, NULL, 1234567890123.0);
    return 0;
}

UTEST(metrics, collected_families_render_at_scrape_time_and_fail_it)
{
    struct source src = {0};
    const struct metric_def lag = {.name = "t_lag_seconds",
                                   .help = "Lag.",
                                   .type = METRIC_GAUGE,
                                   .labels = "source,table",
                                   .decimals = 3,
                                   .collect = collect_lag,
                                   .ctx = &src};
    const struct metric_def rows = {.name = "t_rows_total",
                                    .help = "Rows.",
                                    .type = METRIC_COUNTER,
                                    .collect = collect_rows,
                                    .which = 7};
    struct metrics *m;
    char *text;

    metrics_new(&m);
    metrics_add(m, &lag);
    metrics_add(m, &rows);
    text = render(m, "the scrape's", 0);
    cr_assert_str_eq(text, "# HELP t_lag_seconds Lag.\n# TYPE t_lag_seconds gauge\n"
                           "t_lag_seconds{source=\"s1\",table=\"t\"} 1.500\n"
                           "t_lag_seconds{source=\"s2\",table=\"t\"} 0.000\n"
                           "# HELP t_rows_total Rows.\n# TYPE t_rows_total counter\n"
                           "t_rows_total 1234567890123\n");
    free(text);
    src.fail = 1;
    text = render(m, "the scrape's", E_IO);
    cr_assert_null(strstr(text, "t_rows_total 1"), "rendering stops at the failure");
    free(text);
    cr_assert_eq(src.calls, 2);
    metrics_free(m);
}

#define THREADS 4
#define ADDS 100000

static void *add_many(void *arg)
{
    int i;

    for (i = 0; i < ADDS; i++) {
        metric_add(arg, 1);
    }
    return NULL;
}

static void *observe_many(void *arg)
{
    int i;

    for (i = 0; i < ADDS; i++)
        metric_observe(arg, (i % 3) * 0.5);
    return NULL;
}

UTEST(metrics, concurrent_increments_add_up)
{
    static const double bounds[] = {0.25, 0.75};
    static const struct metric_def c_def = {
        .name = "t_n_total", .help = "N.", .type = METRIC_COUNTER};
    static const struct metric_def h_def = {
        .name = "t_h", .help = "H.", .type = METRIC_HISTOGRAM, .buckets = bounds, .nbuckets = 2};
    struct metric_series *c, *h;
    pthread_t tids[2 * THREADS];
    struct metrics *m;
    char *text, want[512];
    int i;

    metrics_new(&m);
    c = metric_series(metrics_add(m, &c_def), NULL);
    h = metric_series(metrics_add(m, &h_def), NULL);
    for (i = 0; i < THREADS; i++) {
        cr_assert_eq(pthread_create(&tids[i], NULL, add_many, c), 0);
        cr_assert_eq(pthread_create(&tids[THREADS + i], NULL, observe_many, h), 0);
    }
    for (i = 0; i < 2 * THREADS; i++)
        pthread_join(tids[i], NULL);
    cr_assert_eq(metric_value(c), (int64_t)THREADS * ADDS);
    cr_assert_eq(metric_value(h), (int64_t)THREADS * ADDS);
    text = render(m, NULL, 0);
    /* Of every 3 observations one is 0, one 0.5, one 1.0: ADDS = 3 * 33333 + 1 (a 0). */
    snprintf(want, sizeof want,
             "t_n_total %d\n# HELP t_h H.\n# TYPE t_h histogram\nt_h_bucket{le=\"0.25\"} %d\n"
             "t_h_bucket{le=\"0.75\"} %d\nt_h_bucket{le=\"+Inf\"} %d\nt_h_sum %.6f\n"
             "t_h_count %d\n",
             THREADS * ADDS, THREADS * 33334, THREADS * 66667, THREADS * ADDS,
             THREADS * 33333 * 1.5, THREADS * ADDS);
    cr_assert_not_null(strstr(text, want), "%s", text);
    free(text);
    metrics_free(m);
}
