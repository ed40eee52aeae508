/* cli/segment.c -- engage segment eval|explain.
 *
 * DESIGN: load the audience index from the store as the server does, compile the
 * rules file, evaluate or explain it, print. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

struct members_out {
    char **ids;
    size_t n, cap;
};

static int collect_member(void *ctx, int64_t id, const char *xid)
{
    struct members_out *m = ctx;

    (void)id;
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 1024;
        m->ids = xrealloc(m->ids, m->cap * sizeof *m->ids);
    }
    m->ids[m->n++] = xstrdup(xid);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void print_members(struct cli *c, const struct segment_result *res,
                          const struct audience_stats *ixs, struct members_out *m)
{
    size_t i;

    if (c->json) {
        json_t *o = json_pack("{s:I, s:f, s:{s:I, s:I, s:I, s:f}}", "count", (json_int_t)res->count,
                              "took_ms", res->took_ms, "index", "members", (json_int_t)ixs->members,
                              "events", (json_int_t)ixs->events, "bytes", (json_int_t)ixs->bytes,
                              "load_ms", ixs->load_ms);
        if (opt(c, "members")) {
            json_t *a = json_array();
            for (i = 0; i < m->n; i++)
                json_array_append_new(a, json_string(m->ids[i]));
            json_object_set_new(o, "members", a);
        }
        print_json(o);
    } else if (opt(c, "members")) {
        for (i = 0; i < m->n; i++)
            printf("%s\n", m->ids[i]);
    } else {
        printf("%lld member%s of %lld contacts (%.2f ms; index of %lld events loaded in %.0f ms)\n",
               (long long)res->count, res->count == 1 ? "" : "s", (long long)ixs->members,
               res->took_ms, (long long)ixs->events, ixs->load_ms);
    }
}

/* A fresh audience index loaded from the store, and the segment limits. */
static int load_index(struct cli *c, struct store *st, struct audience_index **ix,
                      struct segment_limits *lim, struct err *e)
{
    segment_limits_from_config(&c->cfg, lim);
    audience_index_new(ix);
    return audience_index_catch_up(*ix, st, e);
}

/* engage segment eval|explain --rules FILE.json [--members] */
static int segment_run(struct cli *c, int eval)
{
    const char *path = opt(c, "rules");
    struct segment_limits lim;
    struct audience_index *ix = NULL;
    struct segment_plan *plan = NULL;
    struct segment_result res = {0};
    struct members_out m = {0};
    struct errlist errs = {0};
    struct audience_stats ixs;
    struct store *st;
    struct err e = {0};
    json_error_t je;
    json_t *rules;
    size_t i;
    int rc;

    if (path == NULL)
        return usage_error(c, "segment %s: --rules FILE.json is required", c->args[0]);
    rules = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (rules == NULL)
        return die("%s:%d:%d: %s", path, je.line, je.column, (json_error_tidy(&je), je.text));
    if ((rc = open_store(c, &st, OPEN_MIGRATE))) {
        json_decref(rules);
        return rc;
    }
    rc = load_index(c, st, &ix, &lim, &e);
    if (rc == 0)
        rc = segment_compile(ix, st, audience_index_contracts(ix), rules, &lim, &plan, &errs, &e);
    if (rc == E_INVAL && errs.n) {
        print_problems(path, &errs);
        rc = 1;
    } else if (rc == 0 && !eval) {
        print_json(segment_plan_explain(plan));
    } else if (rc == 0) {
        rc = segment_eval(ix, plan, clock_now_ms(), &lim, &res, &e);
        if (rc == 0 && opt(c, "members")) {
            rc = segment_members(ix, st, &res, 0, 0, collect_member, &m, &e);
            qsort(m.ids, m.n, sizeof *m.ids, cmp_str);
        }
        if (rc == 0) {
            audience_index_stats(ix, &ixs);
            print_members(c, &res, &ixs, &m);
        }
    }
    for (i = 0; i < m.n; i++)
        free(m.ids[i]);
    free(m.ids);
    segment_result_release(&res);
    segment_plan_free(plan);
    audience_index_free(ix);
    json_decref(rules);
    store_close(st);
    if (rc < 0)
        return die("segment %s: %s", c->args[0], e.msg);
    return rc;
}

static int segment_eval_cmd(struct cli *c)
{
    return segment_run(c, 1);
}

static int segment_explain_cmd(struct cli *c)
{
    return segment_run(c, 0);
}

static int segment_usage(struct cli *c)
{
    return usage_error(c, "segment: expected 'eval' or 'explain'");
}

static const struct cli_cmd segment_subs[] = {
    CLI_SUB("eval", segment_eval_cmd, " rules= members ", 0),
    CLI_SUB("explain", segment_explain_cmd, " rules= ", 0),
    {0},
};

const struct cli_cmd cli_cmd_segment = {
    "segment",
    segment_usage,
    NULL,
    0,
    segment_subs,
    0,
    "  segment eval|explain  evaluate or explain a rules file (docs/dsl.md)\n",
    "usage: engage segment eval --rules FILE.json [--members]\n"
    "       engage segment explain --rules FILE.json\n\n"
    "eval loads the audience index from the store, evaluates the rules (docs/dsl.md)\n"
    "at the clock's now (--now ISO pins it) and prints the member count; with\n"
    "--members, the members' external ids one per line in byte order. explain prints\n"
    "the compiled plan. Invalid rules: one line per problem, 'FILE: /pointer: why'.\n",
};
