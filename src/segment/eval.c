/* segment/eval.c -- compile a rules tree into a plan and evaluate it into a bitset.
 *
 * DESIGN: compilation resolves each attribute rule to its column, each behaviour
 * rule to its event name's CSR arrays and each `where` item to a property
 * column (loaded on first use), flattens nested groups of the same operator and
 * orders siblings cheapest first. Evaluation is "mask in, mask out": a node only
 * looks at contacts still in its mask (AND narrows the mask child by child, OR
 * drops from it the contacts already matched), so the expensive behaviour rules
 * run on the few contacts the cheap attribute rules leave. String conditions are
 * decided once per dictionary code, not per contact. Threads take contiguous
 * blocks of 16384 contacts; each checks the deadline between blocks. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "segment_int.h"

#define BLOCK_WORDS 256 /* 16384 contacts */

void segment_limits_from_config(const struct config *cfg, struct segment_limits *out)
{
    out->max_depth = cfg->seg_max_depth;
    out->max_rules = cfg->seg_max_rules;
    out->max_in_values = cfg->seg_max_in_values;
    out->max_window_days = cfg->seg_max_window_days;
    out->timeout_ms = cfg->seg_eval_timeout_ms;
    out->threads = 0;
}

/* ---- compile ------------------------------------------------------------------------ */

static int cmp_cost(const void *a, const void *b)
{
    const struct node *x = *(struct node *const *)a, *y = *(struct node *const *)b;

    return (x->cost > y->cost) - (x->cost < y->cost);
}

/* Splices children of the same operator into their parent; sorts by cost. */
static void flatten(struct node *n)
{
    int i, j, total = 0;
    struct node **kids;

    if (n->kind != N_AND && n->kind != N_OR)
        return;
    for (i = 0; i < n->nkids; i++) {
        flatten(n->kids[i]);
        total += n->kids[i]->kind == n->kind ? n->kids[i]->nkids : 1;
    }
    kids = xcalloc((size_t)total, sizeof *kids);
    for (i = 0, j = 0; i < n->nkids; i++) {
        struct node *k = n->kids[i];
        if (k->kind == n->kind) {
            memcpy(kids + j, k->kids, (size_t)k->nkids * sizeof *kids);
            j += k->nkids;
            k->nkids = 0;
            node_free(k);
        } else
            kids[j++] = k;
    }
    free(n->kids);
    n->kids = kids;
    n->nkids = total;
    /* A stable order for equal costs keeps explain output predictable. */
    for (i = 1; i < n->nkids; i++)
        for (j = i; j > 0 && cmp_cost(&n->kids[j - 1], &n->kids[j]) > 0; j--) {
            struct node *t = n->kids[j];
            n->kids[j] = n->kids[j - 1];
            n->kids[j - 1] = t;
        }
    n->cost = 0;
    for (i = 0; i < n->nkids; i++)
        n->cost += n->kids[i]->cost;
}

static int resolve(struct audience_index *ix, struct store *st, struct node *n, struct err *e)
{
    int i, rc;

    switch (n->kind) {
    case N_AND:
    case N_OR:
        for (i = 0; i < n->nkids; i++)
            if ((rc = resolve(ix, st, n->kids[i], e)) != 0)
                return rc;
        return 0;
    case N_ATTR:
        if (n->builtin == BI_EMAIL || n->builtin == BI_EXTERNAL_ID)
            return index_load_ident(ix, st, n->builtin, e);
        if (n->builtin == BI_NONE)
            n->col = index_attr_col(ix, n->field, n->c.type, 0);
        if (n->col >= 0 && ix->attrs[n->col].type != n->c.type)
            n->col = -1; /* the data holds another type: every contact lacks this one */
        return 0;
    case N_BEHAVIOR: {
        struct evname *en = index_evname_by_name(ix, n->event);
        struct prop_want *want;
        n->ev = en ? (int)(en - ix->names) : -1;
        if (en)
            n->cost += (double)en->n / (double)(ix->ncontacts ? ix->ncontacts : 1);
        if (en == NULL || n->nwhere == 0)
            return 0;
        want = xcalloc((size_t)n->nwhere, sizeof *want);
        for (i = 0; i < n->nwhere; i++) {
            want[i].prop = n->where_fields[i];
            want[i].type = n->where[i].type;
            want[i].declared = n->where_declared[i];
        }
        rc = index_prop_cols(ix, st, en, want, n->nwhere, e);
        for (i = 0; rc == 0 && i < n->nwhere; i++)
            n->where_cols[i] = want[i].col;
        free(want);
        return rc;
    }
    }
    return 0;
}

int segment_compile(struct audience_index *ix, struct store *st, const struct contract_set *cs,
                    const json_t *rules, const struct segment_limits *lim,
                    struct segment_plan **out, struct errlist *errs, struct err *e)
{
    struct node *root;
    int nrules, rc;

    *out = NULL;
    rc = dsl_parse(ix, cs, rules, lim, &root, &nrules, errs);
    if (rc)
        return ERR(e, E_INVAL, "rules are not valid: %d problem%s", errs->n,
                   errs->n == 1 ? "" : "s");
    rc = resolve(ix, st, root, e);
    if (rc) {
        node_free(root);
        return rc;
    }
    flatten(root);
    *out = xcalloc(1, sizeof **out);
    (*out)->root = root;
    (*out)->ix = ix;
    (*out)->generation = ix->generation;
    (*out)->nrules = nrules;
    return 0;
}

void segment_plan_free(struct segment_plan *p)
{
    if (p == NULL)
        return;
    node_free(p->root);
    free(p);
}

/* ---- explain -------------------------------------------------------------------------- */

static json_t *cond_json(const struct cond *c)
{
    json_t *vals = json_array();
    char iso[32];
    int i;

    for (i = 0; i < c->nvals; i++) {
        switch (c->type) {
        case FT_NUMBER:
            json_array_append_new(vals, json_real(c->num[i]));
            break;
        case FT_TIMESTAMP:
            time_format_iso(c->ts[i], iso);
            json_array_append_new(vals, json_string(iso));
            break;
        case FT_STRING:
            json_array_append_new(vals, json_stringn(c->str[i], c->lens[i]));
            break;
        case FT_BOOLEAN:
            json_array_append_new(vals, json_boolean(c->b));
            break;
        }
    }
    return json_pack("{s:s, s:s, s:o}", "op", op_name(c->op), "type", ftype_name(c->type), "values",
                     vals);
}

static json_t *node_json(const struct segment_plan *p, const struct node *n)
{
    const struct audience_index *ix = p->ix;
    json_t *o, *arr;
    int i;

    switch (n->kind) {
    case N_AND:
    case N_OR:
        arr = json_array();
        for (i = 0; i < n->nkids; i++)
            json_array_append_new(arr, node_json(p, n->kids[i]));
        return json_pack("{s:s, s:o, s:f}", "op", n->kind == N_AND ? "AND" : "OR", "rules", arr,
                         "cost", n->cost);
    case N_ATTR:
        o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:f}", "type", "attribute", "rule",
                      n->path[0] ? n->path : "/", "field", n->field, "column",
                      n->builtin != BI_NONE ? "built-in"
                      : n->col >= 0         ? "attribute"
                                            : "none (no contact has it yet)",
                      "condition", cond_json(&n->c), "cost", n->cost);
        return o;
    case N_BEHAVIOR:
        arr = json_array();
        for (i = 0; i < n->nwhere; i++) {
            json_t *w = cond_json(&n->where[i]);
            json_object_set_new(w, "field", json_string(n->where_fields[i]));
            json_object_set_new(w, "typed_by",
                                json_string(n->where_declared[i] ? "contract" : "value"));
            json_array_append_new(arr, w);
        }
        o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:o, s:I, s:f}", "type", "behavior", "rule",
                      n->path[0] ? n->path : "/", "event", n->event, "op",
                      n->did ? "did_event" : "did_not_event", "within_days", n->within_days,
                      "where", arr, "events_indexed",
                      (json_int_t)(n->ev >= 0 ? ix->names[n->ev].n : 0), "cost", n->cost);
        if (n->did)
            json_object_set_new(o, "count_gte", json_integer(n->count_gte));
        return o;
    }
    return json_null();
}

json_t *segment_plan_explain(const struct segment_plan *p)
{
    return json_pack("{s:i, s:o, s:s}", "rules", p->nrules, "plan", node_json(p, p->root), "order",
                     "siblings run cheapest first; AND narrows, OR skips matched");
}

/* ---- string decisions per dictionary code --------------------------------------------- */

/* A condition bound to its column for one evaluation. */
struct bound {
    const struct cond *c;
    const struct column *col; /* NULL: every slot missing */
    uint8_t *match;           /* strings: does code k satisfy the comparison (eq for neq) */
    struct strmap *values;    /* arena columns, eq/neq/in with many values: a set */
};

static int str_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int r = memcmp(a, b, an < bn ? an : bn);

    return r ? r : (an > bn) - (an < bn);
}

static void fold_dict(struct strdict *d)
{
    struct buf b;
    uint32_t k;

    if (d->nfolded == d->n)
        return;
    d->folded = xrealloc(d->folded, (d->cap ? d->cap : 1) * sizeof *d->folded);
    if (d->nfolded == 0)
        d->nfolded = 1;
    buf_init(&b);
    for (k = d->nfolded; k < d->n; k++) {
        buf_reset(&b);
        casefold_utf8(d->strs[k], d->lens[k], &b);
        d->folded[k] = b.p ? xstrndup(b.p, b.len) : xstrdup("");
    }
    buf_release(&b);
    d->nfolded = d->n;
}

struct match_job {
    struct bound *bd;
    const struct strdict *d;
    uint32_t lo, hi;
};

/* contains, gte, lte: decided for each code of a slice of the dictionary. */
static void *match_range(void *arg)
{
    struct match_job *j = arg;
    const struct cond *c = j->bd->c;
    const struct strdict *d = j->d;
    uint32_t k;

    for (k = j->lo; k < j->hi; k++) {
        int m;
        if (c->op == OP_CONTAINS)
            m = c->folded_len == 0 ||
                memmem(d->folded[k], strlen(d->folded[k]), c->folded, c->folded_len) != NULL;
        else if (c->op == OP_GTE)
            m = str_cmp(d->strs[k], d->lens[k], c->str[0], c->lens[0]) >= 0;
        else
            m = str_cmp(d->strs[k], d->lens[k], c->str[0], c->lens[0]) <= 0;
        j->bd->match[k] = (uint8_t)m;
    }
    return NULL;
}

static void bind_cond(struct bound *bd, const struct cond *c, struct column *col, int nthreads)
{
    struct match_job jobs[64];
    pthread_t tids[64];
    const struct strdict *d;
    int64_t code;
    int i, started = 0;

    bd->c = c;
    bd->col = col;
    bd->match = NULL;
    bd->values = NULL;
    if (col == NULL || c->type != FT_STRING)
        return;
    if (col->arena) { /* decided per contact: see arena_test() */
        if (c->op == OP_CONTAINS)
            column_fold(col);
        if ((c->op == OP_EQ || c->op == OP_NEQ || c->op == OP_IN) && c->nvals > 4) {
            bd->values = xmalloc(sizeof *bd->values);
            strmap_init(bd->values);
            for (i = 0; i < c->nvals; i++)
                strmap_put(bd->values, c->str[i], c->lens[i], 1);
        }
        return;
    }
    d = &col->dict;
    bd->match = xcalloc(d->n ? d->n : 1, 1);
    if (c->op == OP_EQ || c->op == OP_NEQ || c->op == OP_IN) {
        for (i = 0; i < c->nvals; i++) /* equality: a hash probe per value */
            if (strmap_get(&d->map, c->str[i], c->lens[i], &code))
                bd->match[code] = 1;
        return;
    }
    if (c->op == OP_CONTAINS)
        fold_dict(&col->dict);
    if (d->n < 65536 || nthreads < 2)
        nthreads = 1;
    if (nthreads > 64)
        nthreads = 64;
    for (i = 0; i < nthreads; i++) {
        jobs[i].bd = bd;
        jobs[i].d = d;
        jobs[i].lo = 1 + (uint32_t)((uint64_t)(d->n - 1) * (uint64_t)i / (uint64_t)nthreads);
        jobs[i].hi = 1 + (uint32_t)((uint64_t)(d->n - 1) * (uint64_t)(i + 1) / (uint64_t)nthreads);
    }
    for (i = 1; i < nthreads; i++)
        if (pthread_create(&tids[started], NULL, match_range, &jobs[i]) == 0)
            started++;
        else
            match_range(&jobs[i]); /* no thread: do that slice here */
    match_range(&jobs[0]);
    for (i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
}

/* A string condition on an arena column's slot (present). */
static int arena_test(const struct bound *bd, const struct column *col, size_t slot)
{
    const struct cond *c = bd->c;
    const char *s = column_text(col, slot);
    size_t n = strlen(s);
    int64_t one;
    int i, m = 0;

    switch (c->op) {
    case OP_EQ:
    case OP_NEQ:
    case OP_IN:
        if (bd->values)
            return strmap_get(bd->values, s, n, &one);
        for (i = 0; i < c->nvals && !m; i++)
            m = str_cmp(s, n, c->str[i], c->lens[i]) == 0;
        return m;
    case OP_CONTAINS: {
        const char *f = column_folded(col, slot);
        return c->folded_len == 0 || memmem(f, strlen(f), c->folded, c->folded_len) != NULL;
    }
    case OP_GTE:
        return str_cmp(s, n, c->str[0], c->lens[0]) >= 0;
    case OP_LTE:
        return str_cmp(s, n, c->str[0], c->lens[0]) <= 0;
    }
    return 0;
}

/* The condition on slot of col: the bound column, or the pending column beside it
 * (same dictionary, so the same match table). */
static inline int cond_test_in(const struct bound *bd, const struct column *col, size_t slot)
{
    const struct cond *c = bd->c;
    int i, m = 0;

    if (col == NULL || !bit_get(col->present, slot))
        return c->op == OP_NEQ;
    switch (c->type) {
    case FT_STRING:
        m = col->arena ? arena_test(bd, col, slot) : bd->match[column_code(col, slot)];
        break;
    case FT_BOOLEAN:
        m = col->v.b[slot] == c->b;
        break;
    case FT_NUMBER: {
        double x = col->v.num[slot];
        if (c->op == OP_GTE)
            return x >= c->num[0];
        if (c->op == OP_LTE)
            return x <= c->num[0];
        for (i = 0; i < c->nvals && !m; i++)
            m = x == c->num[i];
        break;
    }
    case FT_TIMESTAMP: {
        int64_t x = col->v.ts[slot];
        if (c->op == OP_GTE)
            return x >= c->ts[0];
        if (c->op == OP_LTE)
            return x <= c->ts[0];
        for (i = 0; i < c->nvals && !m; i++)
            m = x == c->ts[i];
        break;
    }
    }
    return c->op == OP_NEQ ? !m : m;
}

static inline int cond_test(const struct bound *bd, size_t slot)
{
    return cond_test_in(bd, bd->col, slot);
}

/* ---- evaluation ------------------------------------------------------------------------ */

/* Per node, what an evaluation needs bound: its conditions with their columns. */
struct enode {
    const struct node *n;
    struct enode *kids;
    struct bound attr;
    struct bound *where;
    const struct column **wpend; /* the pending column of each where item */
    const struct evname *en;
    const struct audience_index *ix;
    int64_t from, to; /* the window */
};

struct eval {
    struct audience_index *ix;
    struct enode root;
    int depth;
    size_t nwords, nblocks;
    uint64_t *out;
    double deadline;
    int nthreads;
    atomic_size_t next_block;
    atomic_int timed_out;
};

static void enode_bind(struct eval *ev, struct enode *en, const struct node *n, int64_t now,
                       int depth)
{
    struct audience_index *ix = ev->ix;
    int i;

    en->n = n;
    if (depth > ev->depth)
        ev->depth = depth;
    switch (n->kind) {
    case N_AND:
    case N_OR:
        en->kids = xcalloc((size_t)n->nkids, sizeof *en->kids);
        for (i = 0; i < n->nkids; i++)
            enode_bind(ev, &en->kids[i], n->kids[i], now, depth + 1);
        break;
    case N_ATTR:
        bind_cond(&en->attr, &n->c,
                  n->builtin != BI_NONE ? &ix->builtins[n->builtin]
                  : n->col >= 0         ? &ix->attrs[n->col]
                                        : NULL,
                  ev->nthreads);
        break;
    case N_BEHAVIOR:
        en->en = n->ev >= 0 ? &ix->names[n->ev] : NULL;
        en->ix = ix;
        en->to = now;
        en->from = now - (int64_t)n->within_days * DAY_MS;
        en->where = xcalloc((size_t)(n->nwhere ? n->nwhere : 1), sizeof *en->where);
        en->wpend = xcalloc((size_t)(n->nwhere ? n->nwhere : 1), sizeof *en->wpend);
        for (i = 0; i < n->nwhere; i++) {
            bind_cond(&en->where[i], &n->where[i],
                      en->en ? &ix->names[n->ev].pcols[n->where_cols[i]] : NULL, ev->nthreads);
            en->wpend[i] = en->en ? &ix->names[n->ev].ppcols[n->where_cols[i]] : NULL;
        }
        break;
    }
}

static void enode_release(struct enode *en)
{
    int i;

    if (en->kids)
        for (i = 0; i < en->n->nkids; i++)
            enode_release(&en->kids[i]);
    free(en->kids);
    free(en->attr.match);
    if (en->attr.values) {
        strmap_release(en->attr.values);
        free(en->attr.values);
    }
    if (en->where)
        for (i = 0; i < en->n->nwhere; i++)
            free(en->where[i].match);
    free(en->where);
    free(en->wpend);
}

/* Counts contact c's events in the window that pass the where items, up to what the
 * rule needs: CSR entries (minus dead rows) and pending ones. *pc is a cursor into
 * the pending entries that only moves forward: contacts come in increasing order. */
static int behavior_test(const struct enode *en, size_t c, size_t *pc)
{
    const struct evname *ev = en->en;
    const struct node *n = en->n;
    size_t end, i;
    int64_t count = 0, need = n->did ? n->count_gte : 1;
    int k, ok, dead = en->ix->ndead > 0;

    if (ev != NULL) {
        end = csr_get(&ev->off, c + 1);
        for (i = evname_lower_bound(ev, c, en->from);
             i < end && ev->time[i] <= en->to && count < need; i++) {
            if (dead && index_is_dead(en->ix, ev->row[i]))
                continue;
            ok = 1;
            for (k = 0; k < n->nwhere && ok; k++)
                ok = cond_test(&en->where[k], i);
            count += ok;
        }
        while (*pc < ev->npend && ev->pend[*pc].contact < c)
            ++*pc;
        for (i = *pc; i < ev->npend && ev->pend[i].contact == c && count < need; i++) {
            const struct pending_event *p = &ev->pend[i];
            if (p->time < en->from || p->time > en->to)
                continue;
            ok = 1;
            for (k = 0; k < n->nwhere && ok; k++)
                ok = cond_test_in(&en->where[k], en->wpend[k], p->slot);
            count += ok;
        }
    }
    return n->did ? count >= need : count == 0;
}

static int all_zero(const uint64_t *w, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (w[i])
            return 0;
    return 1;
}

/* out = mask AND node, over nw words starting at contact word w0. scratch holds
 * 2 * nw words per level below this one. */
static void eval_node(const struct enode *en, const uint64_t *mask, uint64_t *out, size_t nw,
                      size_t w0, uint64_t *scratch)
{
    const struct node *n = en->n;
    uint64_t *a = scratch, *b = scratch + nw, *deeper = scratch + 2 * nw;
    size_t w;
    int i;

    switch (n->kind) {
    case N_AND:
        memcpy(a, mask, nw * sizeof *a);
        for (i = 0; i < n->nkids && !all_zero(a, nw); i++) {
            eval_node(&en->kids[i], a, b, nw, w0, deeper);
            memcpy(a, b, nw * sizeof *a);
        }
        memcpy(out, a, nw * sizeof *out);
        return;
    case N_OR:
        memcpy(a, mask, nw * sizeof *a); /* still to decide */
        memset(out, 0, nw * sizeof *out);
        for (i = 0; i < n->nkids && !all_zero(a, nw); i++) {
            eval_node(&en->kids[i], a, b, nw, w0, deeper);
            for (w = 0; w < nw; w++) {
                out[w] |= b[w];
                a[w] &= ~b[w];
            }
        }
        return;
    case N_ATTR:
    case N_BEHAVIOR: {
        size_t pc = n->kind == N_BEHAVIOR && en->en && en->en->npend
                        ? index_pend_lower_bound(en->en, w0 * 64)
                        : 0;
        for (w = 0; w < nw; w++) {
            uint64_t m = mask[w], r = 0;
            while (m) {
                int bit = __builtin_ctzll(m);
                size_t c = (w0 + w) * 64 + (size_t)bit;
                m &= m - 1;
                if (n->kind == N_ATTR ? cond_test(&en->attr, c) : behavior_test(en, c, &pc))
                    r |= 1ULL << bit;
            }
            out[w] = r;
        }
        return;
    }
    }
}

static void *eval_thread(void *arg)
{
    struct eval *ev = arg;
    uint64_t *scratch = xcalloc((size_t)(ev->depth + 2) * 2 * BLOCK_WORDS, sizeof *scratch);
    size_t blk;

    while (!atomic_load(&ev->timed_out) &&
           (blk = atomic_fetch_add(&ev->next_block, 1)) < ev->nblocks) {
        size_t w0 = blk * BLOCK_WORDS;
        size_t nw = ev->nwords - w0 < BLOCK_WORDS ? ev->nwords - w0 : BLOCK_WORDS;
        if (clock_mono_ms() > ev->deadline) {
            atomic_store(&ev->timed_out, 1);
            break;
        }
        eval_node(&ev->root, ev->ix->live + w0, ev->out + w0, nw, w0, scratch);
    }
    free(scratch);
    return NULL;
}

int segment_eval(struct audience_index *ix, const struct segment_plan *p, int64_t now_ms,
                 const struct segment_limits *lim, struct segment_result *out, struct err *e)
{
    struct eval ev;
    pthread_t tids[64];
    double t0 = clock_mono_ms();
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nthreads = lim->threads > 0 ? lim->threads : (int)(ncpu > 0 ? ncpu : 1), i, started = 0;
    size_t w;

    ASSERT(p->ix == ix);
    memset(out, 0, sizeof *out);
    if (p->generation != ix->generation)
        return ERR(e, E_INTERNAL,
                   "the audience index was reloaded since the rules were "
                   "compiled: compile them again");
    memset(&ev, 0, sizeof ev);
    ev.ix = ix;
    ev.nwords = (ix->ncontacts + 63) / 64;
    ev.nblocks = (ev.nwords + BLOCK_WORDS - 1) / BLOCK_WORDS;
    ev.deadline = t0 + (lim->timeout_ms != 0 ? lim->timeout_ms : 30000); /* < 0: expired */
    ev.out = xcalloc(ev.nwords ? ev.nwords : 1, sizeof *ev.out);
    atomic_init(&ev.next_block, 0);
    atomic_init(&ev.timed_out, 0);
    if (nthreads > 64)
        nthreads = 64;
    ev.nthreads = nthreads;
    enode_bind(&ev, &ev.root, p->root, now_ms, 1);
    if ((size_t)nthreads > ev.nblocks)
        nthreads = (int)(ev.nblocks ? ev.nblocks : 1);
    for (i = 1; i < nthreads; i++) /* a thread that cannot start leaves its blocks to us */
        if (pthread_create(&tids[started], NULL, eval_thread, &ev) == 0)
            started++;
    eval_thread(&ev);
    for (i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    enode_release(&ev.root);
    if (atomic_load(&ev.timed_out) || clock_mono_ms() > ev.deadline) {
        free(ev.out);
        return ERR(e, E_BUSY, "evaluation passed its deadline of %d ms", lim->timeout_ms);
    }
    out->bits = ev.out;
    out->nwords = ev.nwords;
    for (w = 0; w < ev.nwords; w++)
        out->count += __builtin_popcountll(ev.out[w]);
    out->took_ms = clock_mono_ms() - t0;
    return 0;
}

void segment_result_release(struct segment_result *r)
{
    free(r->bits);
    memset(r, 0, sizeof *r);
}

size_t segment_member_ids(const struct segment_result *r, int64_t after_id, int64_t *out, size_t n)
{
    size_t c = after_id < 0 ? 0 : (size_t)after_id + 1, nbits = r->nwords * 64, k = 0;

    while (c < nbits && k < n) {
        uint64_t w = r->bits[c / 64] >> (c % 64);
        if (w == 0) {
            c = (c / 64 + 1) * 64;
            continue;
        }
        c += (size_t)__builtin_ctzll(w);
        out[k++] = (int64_t)c++;
    }
    return k;
}

int segment_members(struct audience_index *ix, struct store *st, const struct segment_result *r,
                    int64_t after_id, int64_t limit, segment_member_fn fn, void *ctx, struct err *e)
{
    const struct column *xid = &ix->builtins[BI_EXTERNAL_ID];
    int64_t ids[256], sent = 0;
    size_t n, k;
    int rc;

    if (xid->unloaded && (limit <= 0 || limit > 1000) &&
        (rc = index_load_ident(ix, st, BI_EXTERNAL_ID, e)) != 0)
        return rc;
    do {
        size_t want = limit > 0 && limit - sent < 256 ? (size_t)(limit - sent) : 256;
        n = segment_member_ids(r, after_id, ids, want);
        for (k = 0; k < n; k++) {
            size_t c = (size_t)ids[k];
            if (!xid->unloaded && c < xid->cap && bit_get(xid->present, c)) {
                rc = fn(ctx, ids[k], column_text(xid, c));
            } else { /* a short page, or a contact the index has not caught up with */
                struct store_contact sc;
                store_contact_init(&sc);
                rc = store_contact_get(st, ids[k], &sc, e);
                if (rc == 0)
                    rc = fn(ctx, ids[k], sc.external_id);
                else if (rc == E_NOTFOUND) /* gone since: skipped, as snapshots do */
                    rc = 0, err_clear(e);
                store_contact_release(&sc);
            }
            if (rc)
                return rc;
        }
        sent += (int64_t)n;
        after_id = n ? ids[n - 1] : after_id;
    } while (n == 256 && (limit <= 0 || sent < limit));
    return 0;
}
