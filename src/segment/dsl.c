/* segment/dsl.c -- the rules DSL v1: parse, validate, build the plan tree.
 *
 * DESIGN: one recursive walk over the JSON document that reports every problem
 * (not just the first) as a JSON pointer and a sentence, and builds typed nodes
 * as it goes; the tree is thrown away if any problem was found. What a field or
 * event is comes from the store's catalogue as the audience index knows it (the
 * attribute registry and event names) and from the contracts; an unknown name
 * gets the closest known one suggested. Semantics: docs/dsl.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "segment_int.h"

static const char *const ftype_names[] = {"string", "number", "boolean", "timestamp"};
static const char *const op_names[] = {"eq", "neq", "in", "contains", "gte", "lte"};
static const char *const builtin_names[BI__N] = {"", "email", "external_id", "created_at",
                                                 "email_consent"};
static const enum ftype builtin_types[BI__N] = {FT_STRING, FT_STRING, FT_STRING, FT_TIMESTAMP,
                                                FT_STRING};

const char *ftype_name(enum ftype t)
{
    return ftype_names[t];
}

const char *op_name(enum op o)
{
    return op_names[o];
}

enum ftype ftype_of_vtype(enum vtype t)
{
    switch (t) {
    case VT_NUMBER:
    case VT_INTEGER:
        return FT_NUMBER;
    case VT_BOOLEAN:
        return FT_BOOLEAN;
    case VT_TIMESTAMP:
        return FT_TIMESTAMP;
    default:
        return FT_STRING;
    }
}

struct pctx {
    struct audience_index *ix;
    const struct contract_set *cs;
    const struct segment_limits *lim;
    struct errlist *errs;
    int nrules;
};

/* ---- suggestions ------------------------------------------------------------------ */

static size_t edit_distance(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b), i, j, *row, prev, best;

    if (na > 64 || nb > 64)
        return 99;
    row = xcalloc(nb + 1, sizeof *row);
    for (j = 0; j <= nb; j++)
        row[j] = j;
    for (i = 1; i <= na; i++) {
        prev = row[0];
        row[0] = i;
        for (j = 1; j <= nb; j++) {
            size_t cur = row[j];
            best = prev + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    best = row[nb];
    free(row);
    return best;
}

struct suggest {
    const char *want;
    const char *best;
    size_t dist;
    struct buf known; /* the first few known names, for the message */
    int nknown;
};

static void suggest_offer(struct suggest *s, const char *name)
{
    size_t d = edit_distance(s->want, name);

    if (s->best == NULL || d < s->dist) {
        s->best = name;
        s->dist = d;
    }
    if (s->nknown < 8)
        buf_printf(&s->known, "%s%s", s->nknown ? ", " : "", name);
    else if (s->nknown == 8)
        buf_adds(&s->known, ", …");
    s->nknown++;
}

static void suggest_report(struct suggest *s, struct errlist *errs, const char *path,
                           const char *what)
{
    size_t n = strlen(s->want);
    size_t limit = n / 3 > 2 ? n / 3 : 2;

    if (s->best && s->dist <= limit)
        errlist_add(errs, path, "unknown %s '%s'; did you mean '%s'?", what, s->want, s->best);
    else if (s->nknown)
        errlist_add(errs, path, "unknown %s '%s' (known: %s)", what, s->want, s->known.p);
    else
        errlist_add(errs, path, "unknown %s '%s' (none are known yet)", what, s->want);
    buf_release(&s->known);
}

/* ---- values -------------------------------------------------------------------------- */

static int op_parse(const char *s, enum op *out)
{
    int i;

    for (i = 0; i < 6; i++)
        if (strcmp(s, op_names[i]) == 0) {
            *out = (enum op)i;
            return 0;
        }
    return E_INVAL;
}

/* The type of a JSON value with no declared type (docs/dsl.md): how rule values type
 * undeclared event properties, and how stored values of those properties are read. */
enum ftype text_ftype(const char *s, size_t n)
{
    int64_t ms;

    if (n >= 10 && s[4] == '-' && s[0] >= '0' && s[0] <= '9' && time_parse_iso(s, n, &ms) == 0)
        return FT_TIMESTAMP;
    return FT_STRING;
}

enum ftype json_value_ftype(const json_t *v)
{
    if (json_is_boolean(v))
        return FT_BOOLEAN;
    if (json_is_number(v))
        return FT_NUMBER;
    if (json_is_string(v))
        return text_ftype(json_string_value(v), json_string_length(v));
    return FT_STRING;
}

/* One typed constant into slot i of c; a sentence into errs at path if it does not fit. */
static int value_parse(struct pctx *p, struct cond *c, int i, const json_t *v, int consent,
                       const char *path)
{
    switch (c->type) {
    case FT_NUMBER:
        if (!json_is_number(v) || !isfinite(json_number_value(v)))
            goto bad;
        c->num[i] = json_number_value(v);
        return 0;
    case FT_BOOLEAN:
        if (!json_is_boolean(v))
            goto bad;
        c->b = json_is_true(v);
        return 0;
    case FT_TIMESTAMP:
        if (!json_is_string(v) ||
            time_parse_iso(json_string_value(v), json_string_length(v), &c->ts[i]) != 0) {
            errlist_add(p->errs, path,
                        "must be an ISO-8601 date or date-time, e.g. \"2026-05-01\" or"
                        " \"2026-05-01T09:30:00Z\"");
            return E_INVAL;
        }
        return 0;
    case FT_STRING:
        if (!json_is_string(v))
            goto bad;
        c->str[i] = xstrndup(json_string_value(v), json_string_length(v));
        c->lens[i] = json_string_length(v);
        if (consent && c->op != OP_CONTAINS && c->op != OP_GTE && c->op != OP_LTE) {
            enum consent_state state;
            if (consent_parse(c->str[i], &state) == 0)
                return 0;
            errlist_add(p->errs, path,
                        "must be one of subscribed, unsubscribed, bounced, complained");
            return E_INVAL;
        }
        return 0;
    }
bad:
    errlist_add(p->errs, path, "must be a %s",
                c->type == FT_BOOLEAN ? "boolean (true or false)" : ftype_names[c->type]);
    return E_INVAL;
}

static void cond_alloc(struct cond *c, int n)
{
    c->nvals = n;
    if (c->type == FT_NUMBER)
        c->num = xcalloc((size_t)n, sizeof *c->num);
    else if (c->type == FT_TIMESTAMP)
        c->ts = xcalloc((size_t)n, sizeof *c->ts);
    else if (c->type == FT_STRING) {
        c->str = xcalloc((size_t)n, sizeof *c->str);
        c->lens = xcalloc((size_t)n, sizeof *c->lens);
    }
}

static void cond_release(struct cond *c)
{
    int i;

    free(c->num);
    free(c->ts);
    if (c->str)
        for (i = 0; i < c->nvals; i++)
            free(c->str[i]);
    free(c->str);
    free(c->lens);
    free(c->folded);
}

/* op + value against a field of type t (t already known). what names the field for
 * messages ("'ltv' is a number"). */
static int cond_parse(struct pctx *p, struct cond *c, enum ftype t, const json_t *op,
                      const json_t *value, const char *path, const char *what, int consent)
{
    char sub[200];
    size_t i;
    int bad = 0;

    memset(c, 0, sizeof *c);
    c->type = t;
    snprintf(sub, sizeof sub, "%s/op", path);
    if (!json_is_string(op) || op_parse(json_string_value(op), &c->op) != 0) {
        errlist_add(p->errs, sub, "must be one of eq, neq, in, contains, gte, lte");
        return E_INVAL;
    }
    if (t == FT_BOOLEAN && c->op != OP_EQ && c->op != OP_NEQ) {
        errlist_add(p->errs, sub, "%s applies to no boolean: %s is a boolean (use eq or neq)",
                    op_names[c->op], what);
        return E_INVAL;
    }
    if (c->op == OP_CONTAINS && t != FT_STRING) {
        errlist_add(p->errs, sub, "contains applies to strings only: %s is a %s", what,
                    ftype_names[t]);
        return E_INVAL;
    }
    snprintf(sub, sizeof sub, "%s/value", path);
    if (value == NULL) {
        errlist_add(p->errs, sub, "is required");
        return E_INVAL;
    }
    if (c->op == OP_IN) {
        if (!json_is_array(value) || json_array_size(value) == 0) {
            errlist_add(p->errs, sub, "must be a non-empty array for in");
            return E_INVAL;
        }
        if (json_array_size(value) > (size_t)p->lim->max_in_values) {
            errlist_add(p->errs, sub, "has %zu values; in takes at most %d", json_array_size(value),
                        p->lim->max_in_values);
            return E_INVAL;
        }
        if (t == FT_BOOLEAN) {
            errlist_add(p->errs, sub, "in applies to no boolean");
            return E_INVAL;
        }
        cond_alloc(c, (int)json_array_size(value));
        for (i = 0; i < json_array_size(value); i++) {
            char item[220];
            snprintf(item, sizeof item, "%s/%zu", sub, i);
            if (value_parse(p, c, (int)i, json_array_get(value, i), consent, item))
                bad = 1;
        }
        return bad ? E_INVAL : 0;
    }
    if (json_is_array(value)) {
        errlist_add(p->errs, sub, "must be a single %s (only in takes an array)", ftype_names[t]);
        return E_INVAL;
    }
    cond_alloc(c, 1);
    if (value_parse(p, c, 0, value, consent, sub))
        return E_INVAL;
    if (c->op == OP_CONTAINS) {
        struct buf b;
        buf_init(&b);
        casefold_utf8(c->str[0], c->lens[0], &b);
        c->folded_len = b.len;
        c->folded = b.p ? buf_take(&b) : xstrdup("");
    }
    return 0;
}

/* ---- keys ----------------------------------------------------------------------------- */

/* Every key of o must be in allowed (NULL-terminated); reports the others. */
static int keys_check(struct pctx *p, const json_t *o, const char *path, const char *const *allowed)
{
    const char *k;
    json_t *v;
    int bad = 0, i;

    json_object_foreach((json_t *)o, k, v) {
        for (i = 0; allowed[i]; i++)
            if (strcmp(k, allowed[i]) == 0)
                break;
        if (allowed[i] == NULL) {
            char sub[200];
            snprintf(sub, sizeof sub, "%s/%s", path, k);
            errlist_add(p->errs, sub, "unknown key");
            bad = 1;
        }
    }
    return bad;
}

/* ---- attribute rules -------------------------------------------------------------------- */

int builtin_of(const char *name)
{
    int i;

    for (i = 1; i < BI__N; i++)
        if (strcmp(name, builtin_names[i]) == 0)
            return i;
    return BI_NONE;
}

/* The type of field F: built-in, stored attribute, or declared in the contact contract. */
static int field_type(struct pctx *p, const char *f, enum ftype *t, int *builtin)
{
    const struct contract *cc = p->cs ? contract_set_contact(p->cs) : NULL;
    int i, vt;

    for (i = 1; i < BI__N; i++)
        if (strcmp(f, builtin_names[i]) == 0) {
            *builtin = i;
            *t = builtin_types[i];
            return 0;
        }
    *builtin = BI_NONE;
    for (i = 0; i < p->ix->nattrs; i++)
        if (strcmp(p->ix->attrs[i].name, f) == 0) {
            *t = p->ix->attrs[i].type;
            return 0;
        }
    if (cc && (vt = contract_prop_type(cc, f)) >= 0) {
        *t = ftype_of_vtype((enum vtype)vt);
        return 0;
    }
    return E_NOTFOUND;
}

static void field_unknown(struct pctx *p, const char *f, const char *path)
{
    const struct contract *cc = p->cs ? contract_set_contact(p->cs) : NULL;
    struct suggest s = {.want = f};
    int i;

    buf_init(&s.known);
    for (i = 1; i < BI__N; i++)
        suggest_offer(&s, builtin_names[i]);
    for (i = 0; i < p->ix->nattrs; i++)
        suggest_offer(&s, p->ix->attrs[i].name);
    for (i = 0; cc && i < contract_nprops(cc); i++)
        if (index_attr_col(p->ix, contract_prop_name(cc, i), FT_STRING, 0) < 0 &&
            builtin_of(contract_prop_name(cc, i)) == BI_NONE)
            suggest_offer(&s, contract_prop_name(cc, i));
    suggest_report(&s, p->errs, path, "field");
}

static struct node *parse_attribute(struct pctx *p, const json_t *j, const char *path)
{
    static const char *const keys[] = {"type", "field", "op", "value", NULL};
    const json_t *field = json_object_get(j, "field");
    struct node *n;
    char sub[200], what[200];
    enum ftype t;
    int builtin, bad = keys_check(p, j, path, keys);

    snprintf(sub, sizeof sub, "%s/field", path);
    if (!json_is_string(field) || json_string_length(field) == 0) {
        errlist_add(p->errs, sub,
                    "must be a non-empty string: an attribute or one of email,"
                    " external_id, created_at, email_consent");
        return NULL;
    }
    if (field_type(p, json_string_value(field), &t, &builtin) != 0) {
        field_unknown(p, json_string_value(field), sub);
        return NULL;
    }
    n = xcalloc(1, sizeof *n);
    n->kind = N_ATTR;
    n->path = xstrdup(path);
    n->field = xstrdup(json_string_value(field));
    n->builtin = builtin;
    n->col = -1;
    snprintf(what, sizeof what, "'%s'", n->field);
    if (cond_parse(p, &n->c, t, json_object_get(j, "op"), json_object_get(j, "value"), path, what,
                   builtin == BI_EMAIL_CONSENT) ||
        bad) {
        node_free(n);
        return NULL;
    }
    n->cost = n->c.op == OP_CONTAINS ? 2 : 1;
    return n;
}

/* ---- behaviour rules -------------------------------------------------------------------- */

static const struct contract *event_contract(struct pctx *p, const char *name)
{
    return p->cs ? contract_set_event(p->cs, name) : NULL;
}

static void event_unknown(struct pctx *p, const char *name, const char *path)
{
    struct suggest s = {.want = name};
    int i;

    buf_init(&s.known);
    for (i = 0; i < p->ix->nnames; i++)
        suggest_offer(&s, p->ix->names[i].name);
    for (i = 0; p->cs && i < contract_set_nevents(p->cs); i++) {
        const char *cn = contract_name(contract_set_event_at(p->cs, i));
        if (index_evname_by_name(p->ix, cn) == NULL)
            suggest_offer(&s, cn);
    }
    suggest_report(&s, p->errs, path, "event");
}

static void prop_unknown(struct pctx *p, const struct contract *c, const char *name,
                         const char *path)
{
    struct suggest s = {.want = name};
    int i;

    buf_init(&s.known);
    for (i = 0; i < contract_nprops(c); i++)
        suggest_offer(&s, contract_prop_name(c, i));
    suggest_report(&s, p->errs, path, "property");
}

static int parse_where(struct pctx *p, struct node *n, const json_t *where, const char *path,
                       const struct contract *c)
{
    static const char *const keys[] = {"field", "op", "value", NULL};
    char sub[200], item[200], what[200];
    size_t i, count;
    int bad = 0, vt;

    snprintf(sub, sizeof sub, "%s/where", path);
    if (where == NULL)
        return 0;
    if (!json_is_array(where)) {
        errlist_add(p->errs, sub, "must be an array of {field, op, value}");
        return E_INVAL;
    }
    count = json_array_size(where);
    if (count > (size_t)p->lim->max_rules) {
        errlist_add(p->errs, sub, "has %zu conditions; at most %d allowed", count,
                    p->lim->max_rules);
        return E_INVAL;
    }
    n->where = xcalloc(count ? count : 1, sizeof *n->where);
    n->where_fields = xcalloc(count ? count : 1, sizeof *n->where_fields);
    n->where_cols = xcalloc(count ? count : 1, sizeof *n->where_cols);
    n->where_declared = xcalloc(count ? count : 1, sizeof *n->where_declared);
    for (i = 0; i < count; i++) {
        const json_t *w = json_array_get(where, i);
        const json_t *f, *v;
        enum ftype t;

        snprintf(item, sizeof item, "%s/%zu", sub, i);
        if (!json_is_object(w)) {
            errlist_add(p->errs, item, "must be an object {field, op, value}");
            bad = 1;
            continue;
        }
        if (keys_check(p, w, item, keys))
            bad = 1;
        f = json_object_get(w, "field");
        v = json_object_get(w, "value");
        snprintf(what, sizeof what, "%s/field", item);
        if (!json_is_string(f) || json_string_length(f) == 0) {
            errlist_add(p->errs, what, "must be a non-empty string: an event property");
            bad = 1;
            continue;
        }
        vt = c ? contract_prop_type(c, json_string_value(f)) : -1;
        if (vt >= 0)
            t = ftype_of_vtype((enum vtype)vt);
        else if (c && contract_strict(c)) {
            prop_unknown(p, c, json_string_value(f), what);
            bad = 1;
            continue;
        } else
            t = json_value_ftype(json_is_array(v) ? json_array_get(v, 0) : v);
        snprintf(what, sizeof what, "'%s'", json_string_value(f));
        n->where_fields[n->nwhere] = xstrdup(json_string_value(f));
        n->where_cols[n->nwhere] = -1;
        n->where_declared[n->nwhere] = vt >= 0;
        if (cond_parse(p, &n->where[n->nwhere], t, json_object_get(w, "op"), v, item, what, 0))
            bad = 1;
        n->nwhere++;
    }
    return bad ? E_INVAL : 0;
}

static int int_in(const json_t *v, int64_t lo, int64_t hi)
{
    return json_is_integer(v) && json_integer_value(v) >= lo && json_integer_value(v) <= hi;
}

static struct node *parse_behavior(struct pctx *p, const json_t *j, const char *path)
{
    static const char *const keys[] = {"type",      "event", "op", "within_days",
                                       "count_gte", "where", NULL};
    const json_t *ev = json_object_get(j, "event"), *op = json_object_get(j, "op");
    const json_t *wd = json_object_get(j, "within_days"), *cg = json_object_get(j, "count_gte");
    const struct contract *c = NULL;
    struct node *n = xcalloc(1, sizeof *n);
    char sub[200];
    int bad = keys_check(p, j, path, keys);

    n->kind = N_BEHAVIOR;
    n->path = xstrdup(path);
    n->ev = -1;
    n->count_gte = 1;
    snprintf(sub, sizeof sub, "%s/event", path);
    if (!json_is_string(ev) || json_string_length(ev) == 0) {
        errlist_add(p->errs, sub, "must be a non-empty string: an event name");
        bad = 1;
    } else {
        n->event = xstrdup(json_string_value(ev));
        c = event_contract(p, n->event);
        if (c == NULL && index_evname_by_name(p->ix, n->event) == NULL) {
            event_unknown(p, n->event, sub);
            bad = 1;
        }
    }
    snprintf(sub, sizeof sub, "%s/op", path);
    if (json_is_string(op) && strcmp(json_string_value(op), "did_event") == 0)
        n->did = 1;
    else if (json_is_string(op) && strcmp(json_string_value(op), "did_not_event") == 0)
        n->did = 0;
    else {
        errlist_add(p->errs, sub, "must be did_event or did_not_event");
        bad = 1;
    }
    snprintf(sub, sizeof sub, "%s/within_days", path);
    if (!int_in(wd, 1, p->lim->max_window_days)) {
        errlist_add(p->errs, sub, "%s an integer from 1 to %d",
                    wd ? "must be" : "is required:", p->lim->max_window_days);
        bad = 1;
    } else
        n->within_days = (int)json_integer_value(wd);
    snprintf(sub, sizeof sub, "%s/count_gte", path);
    if (cg && !n->did && json_is_string(op)) {
        errlist_add(p->errs, sub, "did_not_event takes no count_gte (it means zero events)");
        bad = 1;
    } else if (cg && !int_in(cg, 1, 1000000000)) {
        errlist_add(p->errs, sub, "must be an integer from 1 to 1000000000");
        bad = 1;
    } else if (cg)
        n->count_gte = (int)json_integer_value(cg);
    if (parse_where(p, n, json_object_get(j, "where"), path, c))
        bad = 1;
    if (bad) {
        node_free(n);
        return NULL;
    }
    n->cost = 8 + 4 * n->nwhere;
    return n;
}

/* ---- groups ------------------------------------------------------------------------------ */

static struct node *parse_node(struct pctx *p, const json_t *j, const char *path, int depth);

static struct node *parse_group(struct pctx *p, const json_t *j, const char *path, int depth)
{
    static const char *const keys[] = {"op", "rules", NULL};
    const json_t *op = json_object_get(j, "op"), *rules = json_object_get(j, "rules");
    struct node *n;
    char sub[200];
    size_t i;
    int bad = keys_check(p, j, path, keys);

    if (depth > p->lim->max_depth) {
        errlist_add(p->errs, path, "groups nest at most %d deep", p->lim->max_depth);
        return NULL;
    }
    snprintf(sub, sizeof sub, "%s/op", path);
    if (!json_is_string(op) ||
        (strcmp(json_string_value(op), "AND") != 0 && strcmp(json_string_value(op), "OR") != 0)) {
        errlist_add(p->errs, sub, "must be AND or OR");
        bad = 1;
    }
    snprintf(sub, sizeof sub, "%s/rules", path);
    if (!json_is_array(rules) || json_array_size(rules) == 0) {
        errlist_add(p->errs, sub, "must be a non-empty array of rules and groups");
        return NULL;
    }
    n = xcalloc(1, sizeof *n);
    n->kind = json_is_string(op) && strcmp(json_string_value(op), "OR") == 0 ? N_OR : N_AND;
    n->path = xstrdup(path);
    n->kids = xcalloc(json_array_size(rules), sizeof *n->kids);
    for (i = 0; i < json_array_size(rules); i++) {
        char item[200];
        struct node *k;
        snprintf(item, sizeof item, "%s/%zu", sub, i);
        k = parse_node(p, json_array_get(rules, i), item, depth + 1);
        if (k == NULL)
            bad = 1;
        else
            n->kids[n->nkids++] = k;
    }
    if (bad) {
        node_free(n);
        return NULL;
    }
    return n;
}

static struct node *parse_node(struct pctx *p, const json_t *j, const char *path, int depth)
{
    const json_t *type;

    if (!json_is_object(j)) {
        errlist_add(p->errs, path, "must be an object: a group {op, rules} or a rule {type, …}");
        return NULL;
    }
    type = json_object_get(j, "type");
    if (type == NULL) {
        /* A group, unless it looks like a rule that lost its type: then that one problem,
         * not the four a group would find in it. */
        const json_t *op = json_object_get(j, "op");
        int and_or = json_is_string(op) && (strcmp(json_string_value(op), "AND") == 0 ||
                                            strcmp(json_string_value(op), "OR") == 0);
        if (json_object_get(j, "rules") || and_or ||
            !(op || json_object_get(j, "field") || json_object_get(j, "event")))
            return parse_group(p, j, path, depth);
        {
            char sub[200];
            snprintf(sub, sizeof sub, "%s/type", path);
            errlist_add(p->errs, sub,
                        "is required: attribute (with field, op, value) or "
                        "behavior (with event, op, within_days)");
        }
        return NULL;
    }
    if (++p->nrules > p->lim->max_rules) {
        if (p->nrules == p->lim->max_rules + 1)
            errlist_add(p->errs, path, "is rule %d; at most %d rules are allowed", p->nrules,
                        p->lim->max_rules);
        return NULL;
    }
    if (json_is_string(type) && strcmp(json_string_value(type), "attribute") == 0)
        return parse_attribute(p, j, path);
    if (json_is_string(type) && strcmp(json_string_value(type), "behavior") == 0)
        return parse_behavior(p, j, path);
    {
        char sub[200];
        snprintf(sub, sizeof sub, "%s/type", path);
        errlist_add(p->errs, sub, "must be attribute or behavior");
    }
    return NULL;
}

int dsl_parse(struct audience_index *ix, const struct contract_set *cs, const json_t *rules,
              const struct segment_limits *lim, struct node **out, int *nrules,
              struct errlist *errs)
{
    struct pctx p = {.ix = ix, .cs = cs, .lim = lim, .errs = errs};
    struct node *root;

    *out = NULL;
    root = parse_node(&p, rules, "", 1);
    if (root == NULL || errs->n > 0) {
        if (errs->n == 0)
            errlist_add(errs, "", "rules are not valid");
        node_free(root);
        return E_INVAL;
    }
    *out = root;
    *nrules = p.nrules;
    return 0;
}

void node_free(struct node *n)
{
    int i;

    if (n == NULL)
        return;
    for (i = 0; i < n->nkids; i++)
        node_free(n->kids[i]);
    free(n->kids);
    free(n->path);
    free(n->field);
    cond_release(&n->c);
    free(n->event);
    for (i = 0; i < n->nwhere; i++) {
        cond_release(&n->where[i]);
        free(n->where_fields[i]);
    }
    free(n->where);
    free(n->where_fields);
    free(n->where_cols);
    free(n->where_declared);
    free(n);
}
