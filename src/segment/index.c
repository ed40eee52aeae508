/* segment/index.c -- the in-memory audience index.
 *
 * DESIGN: contacts are dense ids (the store's contact ids, never reused), so every
 * contact column is an array indexed by id plus a presence bitset; strings are
 * dictionary codes. Per event name, entries live in CSR layout: off[c]..off[c+1]
 * are contact c's entries, sorted by time, with the store row id beside each time
 * (16 bytes an entry). A catch-up reads, in one read transaction, the contacts and
 * events whose change sequence is above what the index has seen. Contacts are
 * rewritten in place. New event states are queued as pending entries; a row seen
 * before (an update, a move to another contact, a delete) is also put on the dead
 * list, and one merge per event name at the end of the catch-up rebuilds the CSR
 * arrays without the dead entries and with the pending ones in place. Property
 * columns (for `where`) are parallel to the entries and are loaded from the store
 * the first time a plan needs them; catch-ups then read new events' properties too.
 * On a store error the index is emptied and the next catch-up loads it again. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "segment_int.h"

static double now_ms_mono(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- dictionaries ----------------------------------------------------------------- */

void strdict_init(struct strdict *d)
{
    memset(d, 0, sizeof *d);
    strmap_init(&d->map);
    d->n = 1; /* code 0 = none */
}

void strdict_release(struct strdict *d)
{
    uint32_t i;

    for (i = 1; i < d->n; i++)
        free(d->strs[i]);
    for (i = 1; i < d->nfolded; i++)
        free(d->folded[i]);
    free(d->strs);
    free(d->lens);
    free(d->folded);
    strmap_release(&d->map);
    memset(d, 0, sizeof *d);
}

uint32_t strdict_code(struct strdict *d, const char *s, size_t len)
{
    int64_t code;

    if (strmap_get(&d->map, s, len, &code))
        return (uint32_t)code;
    ASSERT(d->n < UINT32_MAX);
    if (d->n >= d->cap) {
        d->cap = d->cap ? d->cap * 2 : 64;
        d->strs = xrealloc(d->strs, d->cap * sizeof *d->strs);
        d->lens = xrealloc(d->lens, d->cap * sizeof *d->lens);
    }
    d->strs[d->n] = xstrndup(s, len);
    d->lens[d->n] = (uint32_t)len;
    d->bytes += len + 1 + 48;
    strmap_put(&d->map, s, len, d->n);
    return d->n++;
}

/* ---- columns ---------------------------------------------------------------------- */

static void column_init(struct column *c, const char *name, enum ftype t, int inferred)
{
    memset(c, 0, sizeof *c);
    c->name = xstrdup(name);
    c->type = t;
    c->inferred = inferred;
    strdict_init(&c->dict);
}

static void column_release(struct column *c)
{
    free(c->name);
    free(c->present);
    free(c->v.code);
    strdict_release(&c->dict);
    memset(c, 0, sizeof *c);
}

static size_t value_size(enum ftype t)
{
    switch (t) {
    case FT_STRING:
        return sizeof(uint32_t);
    case FT_NUMBER:
        return sizeof(double);
    case FT_TIMESTAMP:
        return sizeof(int64_t);
    default:
        return 1;
    }
}

/* Grows c to at least n slots; new slots are absent. */
static void column_grow(struct column *c, size_t n)
{
    size_t oldw = (c->cap + 63) / 64, neww = (n + 63) / 64, vs = value_size(c->type);

    if (n <= c->cap)
        return;
    c->present = xrealloc(c->present, (neww ? neww : 1) * sizeof(uint64_t));
    memset(c->present + oldw, 0, (neww - oldw) * sizeof(uint64_t));
    c->v.code = xrealloc(c->v.code, (n ? n : 1) * vs);
    memset((char *)c->v.code + c->cap * vs, 0, (n - c->cap) * vs);
    c->cap = n;
}

void column_set_json(struct column *c, size_t i, const json_t *v)
{
    int64_t ms;

    ASSERT(i < c->cap);
    bit_clear(c->present, i);
    if (v == NULL || json_is_null(v))
        return;
    if (c->inferred && json_value_ftype(v) != c->type)
        return;
    switch (c->type) {
    case FT_STRING:
        if (!json_is_string(v))
            return;
        c->v.code[i] = strdict_code(&c->dict, json_string_value(v), json_string_length(v));
        break;
    case FT_NUMBER:
        if (!json_is_number(v))
            return;
        c->v.num[i] = json_number_value(v);
        break;
    case FT_BOOLEAN:
        if (!json_is_boolean(v))
            return;
        c->v.b[i] = json_is_true(v);
        break;
    case FT_TIMESTAMP:
        if (!json_is_string(v) ||
            time_parse_iso(json_string_value(v), json_string_length(v), &ms) != 0)
            return;
        c->v.ts[i] = ms;
        break;
    }
    bit_set(c->present, i);
}

static void column_set_str(struct column *c, size_t i, const char *s)
{
    bit_clear(c->present, i);
    if (s == NULL)
        return;
    c->v.code[i] = strdict_code(&c->dict, s, strlen(s));
    bit_set(c->present, i);
}

static size_t column_bytes(const struct column *c)
{
    return c->cap * value_size(c->type) + (c->cap + 63) / 8 + c->dict.bytes;
}

/* ---- lifecycle -------------------------------------------------------------------- */

static const char *const bi_names[BI__N] = {"", "email", "external_id", "created_at",
                                            "email_consent"};
static const enum ftype bi_types[BI__N] = {FT_STRING, FT_STRING, FT_STRING, FT_TIMESTAMP,
                                           FT_STRING};

void audience_index_new(struct audience_index **out)
{
    struct audience_index *ix = xcalloc(1, sizeof *ix);
    int i;

    for (i = 1; i < BI__N; i++)
        column_init(&ix->builtins[i], bi_names[i], bi_types[i], 0);
    *out = ix;
}

static void evname_release(struct evname *en)
{
    size_t j;
    int i;

    free(en->name);
    free(en->off);
    free(en->time);
    free(en->row);
    for (j = 0; j < en->npend; j++)
        free(en->pend[j].props);
    free(en->pend);
    for (i = 0; i < en->npcols; i++)
        column_release(&en->pcols[i]);
    free(en->pcols);
}

/* Empties the index (keeps the struct): the next catch-up loads everything. */
static void index_reset(struct audience_index *ix)
{
    int i;

    free(ix->live);
    for (i = 1; i < BI__N; i++)
        column_release(&ix->builtins[i]);
    for (i = 0; i < ix->nattrs; i++)
        column_release(&ix->attrs[i]);
    free(ix->attrs);
    for (i = 0; i < ix->nnames; i++)
        evname_release(&ix->names[i]);
    free(ix->names);
    free(ix->dead);
    memset(ix, 0, sizeof *ix);
    for (i = 1; i < BI__N; i++)
        column_init(&ix->builtins[i], bi_names[i], bi_types[i], 0);
}

void audience_index_free(struct audience_index *ix)
{
    int i;

    if (ix == NULL)
        return;
    index_reset(ix);
    for (i = 1; i < BI__N; i++)
        column_release(&ix->builtins[i]);
    free(ix);
}

/* ---- contacts --------------------------------------------------------------------- */

/* Makes room for contact id (and every id below it). */
static void ensure_contact(struct audience_index *ix, int64_t id)
{
    size_t n = (size_t)id + 1, cap, oldw, neww;
    int i;

    ASSERT(id > 0 && id < (int64_t)UINT32_MAX);
    if (n > ix->cap) {
        cap = ix->cap ? ix->cap : 1024;
        while (cap < n)
            cap *= 2;
        oldw = (ix->cap + 63) / 64;
        neww = (cap + 63) / 64;
        ix->live = xrealloc(ix->live, neww * sizeof *ix->live);
        memset(ix->live + oldw, 0, (neww - oldw) * sizeof *ix->live);
        for (i = 1; i < BI__N; i++)
            column_grow(&ix->builtins[i], cap);
        for (i = 0; i < ix->nattrs; i++)
            column_grow(&ix->attrs[i], cap);
        for (i = 0; i < ix->nnames; i++)
            ix->names[i].off = xrealloc(ix->names[i].off, (cap + 1) * sizeof(uint32_t));
        ix->cap = cap;
    }
    if (n > ix->ncontacts) {
        for (i = 0; i < ix->nnames; i++) {
            struct evname *en = &ix->names[i];
            size_t c;
            for (c = ix->ncontacts + 1; c <= n; c++)
                en->off[c] = en->off[ix->ncontacts];
        }
        ix->ncontacts = n;
    }
}

int index_attr_col(struct audience_index *ix, const char *name, enum ftype t, int create)
{
    int i;

    for (i = 0; i < ix->nattrs; i++)
        if (strcmp(ix->attrs[i].name, name) == 0)
            return i;
    if (!create)
        return -1;
    ix->attrs = xrealloc(ix->attrs, (size_t)(ix->nattrs + 1) * sizeof *ix->attrs);
    column_init(&ix->attrs[ix->nattrs], name, t, 0);
    column_grow(&ix->attrs[ix->nattrs], ix->cap);
    return ix->nattrs++;
}

static int on_attr(void *ctx, const char *name, const char *type, const char *origin)
{
    struct audience_index *ix = ctx;
    enum vtype vt;

    (void)origin;
    if (vtype_parse(type, &vt) != 0)
        vt = VT_STRING;
    index_attr_col(ix, name, ftype_of_vtype(vt), 1);
    return 0;
}

/* Declared contact attributes take the contact contract's type (ingestion types them so);
 * undeclared ones the registry's. 1 if a column changed type: the index must reload. */
static int declare_attrs(struct audience_index *ix, const struct contract_set *cs)
{
    const struct contract *cc = contract_set_contact(cs);
    int i, col;

    for (i = 0; cc && i < contract_nprops(cc); i++) {
        const char *name = contract_prop_name(cc, i);
        enum ftype t = ftype_of_vtype((enum vtype)contract_prop_type(cc, name));
        col = index_attr_col(ix, name, t, 1);
        if (ix->attrs[col].type != t)
            return 1;
    }
    return 0;
}

static int on_contact(void *ctx, const struct store_contact *c)
{
    struct audience_index *ix = ctx;
    size_t id = (size_t)c->id;
    int i;

    ensure_contact(ix, c->id);
    if (c->external_id && !c->deleted && c->merged_into == 0)
        bit_set(ix->live, id);
    else
        bit_clear(ix->live, id);
    column_set_str(&ix->builtins[BI_EMAIL], id, c->email);
    column_set_str(&ix->builtins[BI_EXTERNAL_ID], id, c->external_id);
    ix->builtins[BI_CREATED_AT].v.ts[id] = c->created_at;
    bit_set(ix->builtins[BI_CREATED_AT].present, id);
    column_set_str(&ix->builtins[BI_EMAIL_CONSENT], id, consent_name(c->consent));
    for (i = 0; i < ix->nattrs; i++)
        column_set_json(&ix->attrs[i], id, c->attrs ? json_object_get(c->attrs, ix->attrs[i].name)
                                                     : NULL);
    if (c->seq > ix->contact_seq)
        ix->contact_seq = c->seq;
    return 0;
}

/* ---- event names and entries --------------------------------------------------------- */

struct evname *index_evname(struct audience_index *ix, int64_t name_id)
{
    int i;

    for (i = 0; i < ix->nnames; i++)
        if (ix->names[i].name_id == name_id)
            return &ix->names[i];
    return NULL;
}

struct evname *index_evname_by_name(struct audience_index *ix, const char *name)
{
    int i;

    for (i = 0; i < ix->nnames; i++)
        if (strcmp(ix->names[i].name, name) == 0)
            return &ix->names[i];
    return NULL;
}

static int on_name(void *ctx, int64_t id, const char *name)
{
    struct audience_index *ix = ctx;
    struct evname *en;

    if (index_evname(ix, id))
        return 0;
    ix->names = xrealloc(ix->names, (size_t)(ix->nnames + 1) * sizeof *ix->names);
    en = &ix->names[ix->nnames++];
    memset(en, 0, sizeof *en);
    en->name_id = id;
    en->name = xstrdup(name);
    en->off = xcalloc(ix->cap + 1, sizeof *en->off);
    return 0;
}

static void dead_add(struct audience_index *ix, int64_t row)
{
    if (ix->ndead == ix->capdead) {
        ix->capdead = ix->capdead ? ix->capdead * 2 : 256;
        ix->dead = xrealloc(ix->dead, ix->capdead * sizeof *ix->dead);
    }
    ix->dead[ix->ndead++] = row;
}

struct catchup {
    struct audience_index *ix;
    int64_t max_row;
};

static int on_event(void *ctx, const struct store_event *ev)
{
    struct catchup *cu = ctx;
    struct audience_index *ix = cu->ix;
    struct evname *en;
    struct pending_event *p;

    if (ev->id <= ix->max_row)
        dead_add(ix, ev->id); /* seen before: its old entry (if any) goes */
    if (ev->id > cu->max_row)
        cu->max_row = ev->id;
    if (ev->seq > ix->event_seq)
        ix->event_seq = ev->seq;
    if (ev->deleted)
        return 0;
    en = index_evname(ix, ev->name_id);
    ASSERT(en != NULL); /* names are read first, in the same snapshot */
    ensure_contact(ix, ev->contact_id);
    if (en->npend == en->cappend) {
        en->cappend = en->cappend ? en->cappend * 2 : 1024;
        en->pend = xrealloc(en->pend, en->cappend * sizeof *en->pend);
    }
    p = &en->pend[en->npend++];
    p->contact = (uint32_t)ev->contact_id;
    p->time = ev->occurred_at;
    p->row = ev->id;
    p->props = en->npcols && ev->props ? xstrdup(ev->props) : NULL;
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

static int is_dead(const struct audience_index *ix, int64_t row)
{
    return ix->ndead && bsearch(&row, ix->dead, ix->ndead, sizeof row, cmp_i64) != NULL;
}

/* Pending entries sorted by (contact, time). */
static const struct pending_event *pend_sort_base;
static int cmp_pend(const void *a, const void *b)
{
    const struct pending_event *x = &pend_sort_base[*(const size_t *)a];
    const struct pending_event *y = &pend_sort_base[*(const size_t *)b];

    if (x->contact != y->contact)
        return x->contact < y->contact ? -1 : 1;
    if (x->time != y->time)
        return x->time < y->time ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

/* Sorts pending indexes by contact (counting sort), then each contact's run by time. */
static size_t *pend_order(const struct audience_index *ix, const struct evname *en)
{
    size_t *cnt = xcalloc(ix->ncontacts + 1, sizeof *cnt), *ord, j, c, sum = 0, start;

    for (j = 0; j < en->npend; j++)
        cnt[en->pend[j].contact]++;
    for (c = 0; c <= ix->ncontacts; c++) {
        size_t k = cnt[c];
        cnt[c] = sum;
        sum += k;
    }
    ord = xmalloc((en->npend ? en->npend : 1) * sizeof *ord);
    for (j = 0; j < en->npend; j++)
        ord[cnt[en->pend[j].contact]++] = j;
    free(cnt);
    pend_sort_base = en->pend; /* merges run under the index's single-writer rule */
    for (start = 0; start < en->npend;) {
        size_t end = start + 1;
        while (end < en->npend && en->pend[ord[end]].contact == en->pend[ord[start]].contact)
            end++;
        if (end - start > 1)
            qsort(ord + start, end - start, sizeof *ord, cmp_pend);
        start = end;
    }
    return ord;
}

/* Rebuilds en without dead entries and with its pending ones. */
static void merge_evname(struct audience_index *ix, struct evname *en)
{
    size_t nc = ix->ncontacts, c, i, j, pos, newn = 0, pj = 0;
    uint32_t *off = xmalloc((ix->cap + 1) * sizeof *off);
    size_t *ord = pend_order(ix, en);
    int64_t *src, *time, *row;
    json_t **pjson = NULL;
    int k;

    /* Where each entry of the new arrays comes from: base i, or pending -(j + 1). */
    src = xmalloc((en->n + en->npend + 1) * sizeof *src);
    for (c = 0; c < nc; c++) {
        size_t hi = en->off[c + 1];
        off[c] = (uint32_t)newn;
        i = en->off[c];
        while (i < hi || (pj < en->npend && en->pend[ord[pj]].contact == c)) {
            int take_base;
            if (i < hi && is_dead(ix, en->row[i])) {
                i++;
                continue;
            }
            if (i >= hi)
                take_base = 0;
            else if (pj >= en->npend || en->pend[ord[pj]].contact != c)
                take_base = 1;
            else
                take_base = en->time[i] <= en->pend[ord[pj]].time;
            src[newn++] = take_base ? (int64_t)i++ : -(int64_t)(ord[pj++] + 1);
        }
    }
    ASSERT(pj == en->npend);
    ASSERT(newn < UINT32_MAX);
    off[nc] = (uint32_t)newn;
    time = xmalloc((newn ? newn : 1) * sizeof *time);
    row = xmalloc((newn ? newn : 1) * sizeof *row);
    for (pos = 0; pos < newn; pos++) {
        if (src[pos] >= 0) {
            time[pos] = en->time[src[pos]];
            row[pos] = en->row[src[pos]];
        } else {
            const struct pending_event *p = &en->pend[-src[pos] - 1];
            time[pos] = p->time;
            row[pos] = p->row;
        }
    }
    if (en->npcols) {
        pjson = xcalloc(en->npend ? en->npend : 1, sizeof *pjson);
        for (j = 0; j < en->npend; j++)
            if (en->pend[j].props)
                pjson[j] = json_loads(en->pend[j].props, 0, NULL);
    }
    for (k = 0; k < en->npcols; k++) {
        struct column *old = &en->pcols[k], col;
        column_init(&col, old->name, old->type, old->inferred);
        strdict_release(&col.dict);
        col.dict = old->dict; /* codes stay valid: the dictionary moves over */
        strdict_init(&old->dict);
        column_grow(&col, newn);
        for (pos = 0; pos < newn; pos++) {
            if (src[pos] >= 0) {
                size_t s = (size_t)src[pos];
                if (bit_get(old->present, s)) {
                    memcpy((char *)col.v.code + pos * value_size(col.type),
                           (char *)old->v.code + s * value_size(col.type), value_size(col.type));
                    bit_set(col.present, pos);
                }
            } else {
                json_t *o = pjson[-src[pos] - 1];
                column_set_json(&col, pos, o ? json_object_get(o, col.name) : NULL);
            }
        }
        column_release(old);
        *old = col;
    }
    if (pjson) {
        for (j = 0; j < en->npend; j++)
            json_decref(pjson[j]);
        free(pjson);
    }
    for (j = 0; j < en->npend; j++)
        free(en->pend[j].props);
    en->npend = 0;
    free(en->off);
    free(en->time);
    free(en->row);
    en->off = off;
    en->time = time;
    en->row = row;
    en->n = newn;
    free(src);
    free(ord);
}

/* ---- catch-up ------------------------------------------------------------------------ */

static int any_pcols(const struct audience_index *ix)
{
    int i;

    for (i = 0; i < ix->nnames; i++)
        if (ix->names[i].npcols)
            return 1;
    return 0;
}

int audience_index_catch_up(struct audience_index *ix, struct store *st, struct err *e)
{
    struct catchup cu = {.ix = ix, .max_row = ix->max_row};
    struct contract_set *cs = NULL;
    double t0 = now_ms_mono();
    int rc, i, first = !ix->loaded;

    rc = store_read_begin(st, e);
    if (rc)
        return rc;
    rc = contract_set_load(st, &cs, e);
    if (rc == 0 && declare_attrs(ix, cs)) {
        /* A contract changed an attribute's type: start again from scratch. */
        index_reset(ix);
        cu.max_row = 0;
        first = 1;
        declare_attrs(ix, cs);
    }
    contract_set_free(cs);
    if (rc == 0)
        rc = store_attr_types(st, on_attr, ix, e);
    if (rc == 0)
        rc = store_event_names(st, on_name, ix, e);
    if (rc == 0)
        rc = store_contacts_since(st, ix->contact_seq, 0, on_contact, ix, e);
    if (rc == 0)
        rc = store_events_since(st, ix->event_seq, 0, any_pcols(ix), on_event, &cu, e);
    store_rollback(st); /* only read */
    if (rc) {
        index_reset(ix);
        return rc;
    }
    if (ix->ndead) {
        qsort(ix->dead, ix->ndead, sizeof *ix->dead, cmp_i64);
    }
    for (i = 0; i < ix->nnames; i++)
        if (ix->names[i].npend || ix->ndead)
            merge_evname(ix, &ix->names[i]);
    ix->ndead = 0;
    ix->max_row = cu.max_row;
    ix->loaded = 1;
    if (first) {
        struct audience_stats s;
        ix->load_ms = now_ms_mono() - t0;
        audience_index_stats(ix, &s);
        log_info("segment", "audience index loaded: %lld contacts (%lld members), %lld events,"
                            " %lld MB, %.0f ms",
                 (long long)s.contacts, (long long)s.members, (long long)s.events,
                 (long long)(s.bytes >> 20), ix->load_ms);
    }
    return 0;
}

/* ---- property columns ----------------------------------------------------------------- */

struct propload {
    size_t ncontacts;
    struct evname *en;
    struct column *col;
};

static int on_prop_event(void *ctx, const struct store_event *ev)
{
    struct propload *pl = ctx;
    struct evname *en = pl->en;
    size_t lo, hi, c = (size_t)ev->contact_id;
    json_t *o;

    if (ev->contact_id <= 0 || c >= pl->ncontacts)
        return 0; /* a contact the index has not seen yet: it comes with the next catch-up */
    lo = evname_lower_bound(en, c, ev->occurred_at);
    for (hi = en->off[c + 1]; lo < hi && en->time[lo] == ev->occurred_at; lo++) {
        if (en->row[lo] != ev->id)
            continue;
        o = ev->props ? json_loads(ev->props, 0, NULL) : NULL;
        column_set_json(pl->col, lo, o ? json_object_get(o, pl->col->name) : NULL);
        json_decref(o);
        break;
    }
    return 0;
}

int index_prop_col(struct audience_index *ix, struct store *st, struct evname *en,
                   const char *prop, enum ftype t, int declared, int *out, struct err *e)
{
    struct propload pl = {.en = en, .ncontacts = ix->ncontacts};
    int i, rc;

    for (i = 0; i < en->npcols; i++)
        if (strcmp(en->pcols[i].name, prop) == 0 && en->pcols[i].type == t &&
            en->pcols[i].inferred == !declared) {
            *out = i;
            return 0;
        }
    en->pcols = xrealloc(en->pcols, (size_t)(en->npcols + 1) * sizeof *en->pcols);
    pl.col = &en->pcols[en->npcols];
    column_init(pl.col, prop, t, !declared);
    column_grow(pl.col, en->n ? en->n : 1);
    rc = store_events_of_name(st, en->name_id, on_prop_event, &pl, e);
    if (rc) {
        column_release(pl.col);
        return rc;
    }
    *out = en->npcols++;
    return 0;
}

/* ---- stats ------------------------------------------------------------------------------ */

void audience_index_stats(const struct audience_index *ix, struct audience_stats *out)
{
    size_t w, bytes = (ix->cap + 63) / 8;
    int i, k;

    memset(out, 0, sizeof *out);
    out->contacts = ix->ncontacts ? (int64_t)ix->ncontacts - 1 : 0;
    for (w = 0; w < (ix->ncontacts + 63) / 64; w++)
        out->members += __builtin_popcountll(ix->live[w]);
    for (i = 1; i < BI__N; i++)
        bytes += column_bytes(&ix->builtins[i]);
    for (i = 0; i < ix->nattrs; i++)
        bytes += column_bytes(&ix->attrs[i]);
    for (i = 0; i < ix->nnames; i++) {
        const struct evname *en = &ix->names[i];
        out->events += (int64_t)en->n;
        bytes += (ix->cap + 1) * sizeof(uint32_t) + en->n * 16;
        for (k = 0; k < en->npcols; k++)
            bytes += column_bytes(&en->pcols[k]);
        out->property_columns += en->npcols;
    }
    out->event_names = ix->nnames;
    out->attributes = ix->nattrs;
    out->bytes = (int64_t)bytes;
    out->contact_seq = ix->contact_seq;
    out->event_seq = ix->event_seq;
    out->load_ms = ix->load_ms;
}
