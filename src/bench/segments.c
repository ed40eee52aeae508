/* bench/segments.c -- the segment engine's benchmark (engage bench segments).
 *
 * DESIGN: the index is loaded once, as the server loads it; each rules file is then
 * compiled (the first compile also loads the property columns it needs, so its time
 * is shown apart) and evaluated N times at one instant, so that every run sees the
 * same windows. Times are sorted to report the median, p95 and the fastest. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../segment/segment.h"
#include "bench.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* The process's resident set, from /proc (0 where there is none). */
static long rss_kb(void)
{
    char line[256];
    long kb = 0;
    FILE *f = fopen("/proc/self/status", "r");

    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

/* One rules file: compiled, evaluated runs times at now, its line printed. */
static int bench_one(struct audience_index *ix, struct store *st, const struct segment_limits *lim,
                     const char *dir, const char *file, int runs, int64_t now, FILE *out,
                     struct err *e)
{
    struct segment_plan *plan = NULL;
    struct errlist errs = {0};
    struct err ie = {0};
    char path[2048];
    json_error_t je;
    json_t *rules;
    double *t = NULL, t0, first_ms;
    int64_t count = 0;
    int k, rc;

    snprintf(path, sizeof path, "%s/%s", dir, file);
    rules = json_load_file(path, 0, &je);
    if (rules == NULL)
        return ERR(e, E_INVAL, "%s:%d: %s", path, je.line, (json_error_tidy(&je), je.text));
    t0 = (double)clock_now_ms();
    rc = segment_compile(ix, st, audience_index_contracts(ix), rules, lim, &plan, &errs, &ie);
    first_ms = (double)clock_now_ms() - t0; /* includes loading property columns */
    json_decref(rules);
    if (rc) {
        rc = ERR(e, rc, "%s: %s %s", path, ie.msg, errs.n ? errs.items[0].msg : "");
        goto out;
    }
    t = xcalloc((size_t)runs, sizeof *t);
    for (k = 0; k < runs && rc == 0; k++) {
        struct segment_result res = {0};
        rc = segment_eval(ix, plan, now, lim, &res, &ie);
        t[k] = res.took_ms;
        count = res.count;
        segment_result_release(&res);
    }
    if (rc) {
        rc = ERR(e, rc, "%s: %s", path, ie.msg);
        goto out;
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    fprintf(out,
            "%-32s %9lld members  median %8.2f ms  p95 %8.2f ms  min %8.2f ms  (compile %.0f ms)\n",
            file, (long long)count, t[runs / 2],
            t[(int)((double)runs * 0.95) < runs ? (int)((double)runs * 0.95) : runs - 1], t[0],
            first_ms);
out:
    free(t);
    segment_plan_free(plan);
    return rc;
}

int bench_segments(struct store *st, const struct config *cfg, const char *dir, int runs, FILE *out,
                   struct err *e)
{
    struct segment_limits lim;
    struct audience_index *ix = NULL;
    struct audience_stats ixs;
    struct dirent **names = NULL;
    struct err ie = {0};
    long rss0 = rss_kb();
    int64_t now = clock_now_ms(); /* one instant for every run: same windows */
    int n, i, rc;

    n = scandir(dir, &names, NULL, alphasort);
    if (n < 0)
        return ERR(e, E_IO, "%s: %s", dir, strerror(errno));
    segment_limits_from_config(cfg, &lim);
    audience_index_new(&ix);
    rc = audience_index_catch_up(ix, st, &ie);
    if (rc) {
        rc = ERR(e, rc, "bench segments: %s", ie.msg);
        goto out;
    }
    audience_index_stats(ix, &ixs);
    fprintf(out,
            "index: %lld contacts, %lld events, %.1f MB (%.1f bytes/event), loaded in %.0f ms, "
            "RSS +%.0f MB\n",
            (long long)ixs.members, (long long)ixs.events, (double)ixs.bytes / 1048576.0,
            ixs.events ? (double)ixs.bytes / (double)ixs.events : 0.0, ixs.load_ms,
            (double)(rss_kb() - rss0) / 1024.0);
    for (i = 0; i < n && rc == 0; i++) {
        size_t len = strlen(names[i]->d_name);
        if (len >= 6 && strcmp(names[i]->d_name + len - 5, ".json") == 0)
            rc = bench_one(ix, st, &lim, dir, names[i]->d_name, runs, now, out, e);
    }
    if (rc == 0) { /* with the columns the segments loaded on first use */
        audience_index_stats(ix, &ixs);
        fprintf(out, "index after the segments: %.1f MB (columns loaded for them included)\n",
                (double)ixs.bytes / 1048576.0);
    }
out:
    audience_index_free(ix);
    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}
