/* cli/bench.c -- engage bench gen|segments.
 *
 * DESIGN: gen writes seeded CSV files with the demo generator; segments runs
 * src/bench's harness of the segment engine on a rules folder against the store. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "campaign/campaign.h"
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

/* engage bench tokens --run R --kind open|click --contacts FIRST-LAST [--link N]: the
 * paths of our tracking links for those messages, one a line (the load generator of
 * bench/engagement.mjs reads them). Signed with this data directory's key. */
static int bench_tokens(struct cli *c)
{
    const char *kind = opt(c, "kind"), *range = opt(c, "contacts"), *v;
    int64_t run = 0, first = 0, last = 0, link = 0, id;
    struct send_env env;
    struct err e = {0};
    char t[TOKEN_MAX];
    char k;

    if ((v = opt(c, "run")) == NULL || parse_i64(v, strlen(v), &run) || run < 1)
        return usage_error(c, "bench tokens: --run must be a run id");
    if (kind == NULL || (strcmp(kind, "open") && strcmp(kind, "click")))
        return usage_error(c, "bench tokens: --kind must be open or click");
    if (range == NULL || sscanf(range, "%" SCNd64 "-%" SCNd64, &first, &last) != 2 || first < 1 ||
        last < first)
        return usage_error(c, "bench tokens: --contacts must be FIRST-LAST (contact ids)");
    if ((v = opt(c, "link")) && (parse_i64(v, strlen(v), &link) || link < 0 || link > 1000))
        return usage_error(c, "bench tokens: --link must be a link index (0 to 1000)");
    if (send_env_init(&env, &c->cfg, "http://localhost", NULL, &e))
        return die("%s", e.msg);
    k = kind[0] == 'o' ? 'o' : 'c';
    for (id = first; id <= last; id++) {
        token_make(env.token_key, k, run, id, (int)link, t);
        printf("/t/%c/%s\n", k, t);
    }
    send_env_release(&env);
    return 0;
}

static int bench_usage(struct cli *c)
{
    return usage_error(c, "bench: expected 'gen', 'segments' or 'tokens'");
}

static const struct cli_cmd bench_subs[] = {
    CLI_SUB("gen", bench_gen, " contacts= events= seed= out= ", 0),
    CLI_SUB("segments", bench_segments_cmd, " rules= runs= ", 0),
    CLI_SUB("tokens", bench_tokens, " run= kind= contacts= link= ", 0),
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
    "       engage bench segments --rules DIR [--runs N]\n"
    "       engage bench tokens --run R --kind open|click --contacts FIRST-LAST [--link N]\n\n"
    "gen writes DIR/contacts.csv and DIR/events.csv shaped like the demo CRM. The\n"
    "same seed, sizes and day (UTC, or --now) give identical files. Events default\n"
    "to 12 per contact and fall in the 400 days before that day.\n"
    "segments loads the audience index once, evaluates every DIR/*.json N times\n"
    "(default 20) at the clock's now, and prints the index's load time and size and\n"
    "each segment's member count and median, p95 and fastest evaluation time.\n"
    "tokens prints the paths of the open pixel or of link N's redirect of run R's\n"
    "messages to contacts FIRST..LAST, signed with this data directory's key.\n",
};
