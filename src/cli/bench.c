/* cli/bench.c -- engage bench gen|segments.
 *
 * DESIGN: gen writes seeded CSV files with the demo generator; segments times the
 * segment engine on a rules folder against the store. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "demo/demo.h"
#include "cli.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

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

/* engage bench segments --rules DIR [--runs N]: loads the audience index once, then
 * evaluates every .json file of DIR N times; prints load time, memory and timings. */
static int bench_segments(struct cli *c)
{
    const char *dir = opt(c, "rules"), *v;
    struct segment_limits lim;
    struct audience_index *ix;
    struct audience_stats ixs;
    struct store *st;
    struct err e = {0};
    struct dirent **names = NULL;
    long rss0 = rss_kb();
    int64_t runs = 20, now = clock_now_ms(); /* one instant for every run: same windows */
    int n, i, rc;

    if (dir == NULL)
        return usage_error(c, "bench segments: --rules DIR is required");
    if ((v = opt(c, "runs")) && (parse_i64(v, strlen(v), &runs) || runs < 1 || runs > 10000))
        return usage_error(c, "bench segments: --runs must be an integer from 1 to 10000");
    n = scandir(dir, &names, NULL, alphasort);
    if (n < 0)
        return die("%s: %s", dir, strerror(errno));
    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        goto out;
    rc = load_index(c, st, &ix, &lim, &e);
    if (rc) {
        audience_index_free(ix);
        store_close(st);
        rc = die("bench segments: %s", e.msg);
        goto out;
    }
    audience_index_stats(ix, &ixs);
    printf("index: %lld contacts, %lld events, %.1f MB (%.1f bytes/event), loaded in %.0f ms, "
           "RSS +%.0f MB\n",
           (long long)ixs.members, (long long)ixs.events, (double)ixs.bytes / 1048576.0,
           ixs.events ? (double)ixs.bytes / (double)ixs.events : 0.0, ixs.load_ms,
           (double)(rss_kb() - rss0) / 1024.0);
    for (i = 0; i < n && rc == 0; i++) {
        struct segment_plan *plan = NULL;
        struct errlist errs = {0};
        char path[2048];
        json_error_t je;
        json_t *rules;
        double *t, first_ms = 0;
        int64_t count = 0, k;
        size_t len = strlen(names[i]->d_name);

        if (len < 6 || strcmp(names[i]->d_name + len - 5, ".json") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        rules = json_load_file(path, 0, &je);
        if (rules == NULL) {
            rc = die("%s:%d: %s", path, je.line, (json_error_tidy(&je), je.text));
            break;
        }
        {
            double t0 = (double)clock_now_ms();
            rc = segment_compile(ix, st, audience_index_contracts(ix), rules, &lim, &plan, &errs,
                                 &e);
            first_ms = (double)clock_now_ms() - t0; /* includes loading property columns */
        }
        json_decref(rules);
        if (rc) {
            rc = die("%s: %s %s", path, e.msg, errs.n ? errs.items[0].msg : "");
            break;
        }
        t = xcalloc((size_t)runs, sizeof *t);
        for (k = 0; k < runs && rc == 0; k++) {
            struct segment_result res = {0};
            rc = segment_eval(ix, plan, now, &lim, &res, &e);
            t[k] = res.took_ms;
            count = res.count;
            segment_result_release(&res);
        }
        if (rc == 0) {
            qsort(t, (size_t)runs, sizeof *t, cmp_double);
            printf("%-32s %9lld members  median %8.2f ms  p95 %8.2f ms  min %8.2f ms  (compile %.0f ms)\n",
                   names[i]->d_name, (long long)count, t[runs / 2],
                   t[(size_t)((double)runs * 0.95) < (size_t)runs ? (size_t)((double)runs * 0.95)
                                                                : (size_t)runs - 1],
                   t[0], first_ms);
        } else
            rc = die("%s: %s", path, e.msg);
        free(t);
        segment_plan_free(plan);
    }
    if (rc == 0) { /* with the columns the segments loaded on first use */
        audience_index_stats(ix, &ixs);
        printf("index after the segments: %.1f MB (columns loaded for them included)\n",
               (double)ixs.bytes / 1048576.0);
    }
    audience_index_free(ix);
    store_close(st);
out:
    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* engage bench gen --contacts N [--events M] [--seed S] --out DIR */
static int bench_gen(struct cli *c)
{
    struct gen_opts g = {.seed = 42};
    struct err e = {0};
    const char *v;

    if ((v = opt(c, "contacts")) == NULL || parse_i64(v, strlen(v), &g.contacts) || g.contacts < 1)
        return usage_error(c, "bench gen: --contacts must be a positive integer");
    if ((v = opt(c, "events")) && (parse_i64(v, strlen(v), &g.events) || g.events < 0))
        return usage_error(c, "bench gen: --events must be a non-negative integer");
    if ((v = opt(c, "seed")) && parse_i64(v, strlen(v), (int64_t *)&g.seed))
        return usage_error(c, "bench gen: --seed must be an integer");
    if ((g.out_dir = opt(c, "out")) == NULL)
        return usage_error(c, "bench gen: --out DIR is required");
    /* Events fall in the 400 days before today (UTC midnight, or --now's day): the same
     * seed and sizes give the same files all day. */
    g.now_ms = clock_now_ms() - clock_now_ms() % 86400000;
    if (demo_generate(&g, &e))
        return die("%s", e.msg);
    if (!c->json)
        printf("wrote %s/contacts.csv and %s/events.csv\n", g.out_dir, g.out_dir);
    return 0;
}


static int bench_usage(struct cli *c)
{
    return usage_error(c, "bench: expected 'gen' or 'segments'");
}

static const struct cli_cmd bench_subs[] = {
    CLI_SUB("gen", bench_gen, " contacts= events= seed= out= ", 0),
    CLI_SUB("segments", bench_segments, " rules= runs= ", 0),
    {0},
};

const struct cli_cmd cli_cmd_bench = {
    "bench", bench_usage, NULL, 0, bench_subs, 0,
    "  bench gen             write seeded contacts/events CSVs of any size\n",
    "usage: engage bench gen --contacts N [--events M] [--seed S] --out DIR\n"
    "       engage bench segments --rules DIR [--runs N]\n\n"
    "gen writes DIR/contacts.csv and DIR/events.csv shaped like the demo CRM. The\n"
    "same seed, sizes and day (UTC, or --now) give identical files. Events default\n"
    "to 12 per contact and fall in the 400 days before that day.\n"
    "segments loads the audience index once, evaluates every DIR/*.json N times\n"
    "(default 20) at the clock's now, and prints the index's load time and size and\n"
    "each segment's member count and median, p95 and fastest evaluation time.\n",
};
