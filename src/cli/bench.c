/* cli/bench.c -- engage bench gen|segments.
 *
 * DESIGN: gen writes seeded CSV files with the demo generator; segments runs
 * src/bench's harness of the segment engine on a rules folder against the store. */
#include <string.h>

#include "bench/bench.h"
#include "demo/demo.h"
#include "cli.h"

/* engage bench segments --rules DIR [--runs N] */
static int bench_segments_cmd(struct cli *c)
{
    const char *dir = opt(c, "rules"), *v;
    struct store *st;
    struct err e = {0};
    int64_t runs = 20;
    int rc;

    if (dir == NULL)
        return usage_error(c, "bench segments: --rules DIR is required");
    if ((v = opt(c, "runs")) && (parse_i64(v, strlen(v), &runs) || runs < 1 || runs > 10000))
        return usage_error(c, "bench segments: --runs must be an integer from 1 to 10000");
    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    rc = bench_segments(st, &c->cfg, dir, (int)runs, stdout, &e);
    store_close(st);
    return rc ? die("%s", e.msg) : 0;
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
    g.now_ms = clock_now_ms() - clock_now_ms() % DAY_MS;
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
    CLI_SUB("segments", bench_segments_cmd, " rules= runs= ", 0),
    {0},
};

const struct cli_cmd cli_cmd_bench = {
    "bench",
    bench_usage,
    NULL,
    0,
    bench_subs,
    0,
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
