/* segment/index.c -- the in-memory audience index.
 *
 * DESIGN: contacts are dense ids (the store's contact ids, never reused), so every
 * contact column is an array indexed by id plus a presence bitset; strings are
 * dictionary codes. Per event name, entries live in CSR layout: off(c)..off(c+1)
 * are contact c's entries, sorted by time, with the store row id beside each time
 * (16 bytes an entry; the offsets 2 bytes a contact from a base every 16: struct csr). A catch-up
 * reads, in one read transaction, the contacts and events whose change sequence is above what the
 * index has seen. Contacts are rewritten in place. New event states are queued as pending entries;
 * a row seen before (an update, a move to another contact, a delete) is also put on the dead list,
 * and one merge per event name at the end of the catch-up rebuilds the CSR arrays without the dead
 * entries and with the pending ones in place. Property columns (for `where`) are parallel to the
 * entries and are loaded from the store the first time a plan needs them; catch-ups then read new
 * events' properties too. On a store error the index is emptied and the next catch-up loads it
 * again. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "segment_int.h"

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

/* ---- CSR offsets (struct csr) ---------------------------------------------------------- */

/* Room for the offsets of contacts 0 .. cap; new ones are 0. */
static void csr_resize(struct csr *o, size_t cap)
{
    size_t nb = cap / CSR_BLOCK + 1;

    o->base = xrealloc(o->base, nb * sizeof *o->base);
    o->rel = xrealloc(o->rel, nb * CSR_BLOCK * sizeof *o->rel);
    if (nb > o->nblocks) {
        memset(o->base + o->nblocks, 0, (nb - o->nblocks) * sizeof *o->base);
        memset(o->rel + o->nblocks * CSR_BLOCK, 0, (nb - o->nblocks) * CSR_BLOCK * sizeof *o->rel);
    }
    o->nblocks = nb;
}

/* Sets contact c's offset to v. Offsets are set in increasing c, each at least the one
 * before (a rebuild, or new contacts at the end); a block whose offsets outgrow 2 bytes
 * moves to the wide table. */
static void csr_set(struct csr *o, size_t c, size_t v)
{
    size_t blk = c / CSR_BLOCK, i = c % CSR_BLOCK, k;
    uint32_t b;

    ASSERT(v < CSR_WIDE && blk < o->nblocks); /* 2^31 entries an event name */
    if (i == 0) {
        o->base[blk] = (uint32_t)v;
        o->rel[c] = 0;
        return;
    }
    b = o->base[blk];
    if (b & CSR_WIDE) {
        o->wide[(size_t)(b & ~CSR_WIDE) * CSR_BLOCK + i] = (uint32_t)v;
        return;
    }
    ASSERT(v >= b);
    if (v - b <= UINT16_MAX) {
        o->rel[c] = (uint16_t)(v - b);
        return;
    }
    if (o->nwide == o->capwide) {
        o->capwide = o->capwide ? o->capwide * 2 : 16;
        o->wide = xrealloc(o->wide, o->capwide * CSR_BLOCK * sizeof *o->wide);
    }
    ASSERT(o->nwide < CSR_WIDE);
    for (k = 0; k < i; k++)
        o->wide[o->nwide * CSR_BLOCK + k] = b + o->rel[blk * CSR_BLOCK + k];
    o->wide[o->nwide * CSR_BLOCK + i] = (uint32_t)v;
    o->base[blk] = CSR_WIDE | (uint32_t)o->nwide++;
}

static void csr_release(struct csr *o)
{
    free(o->base);
    free(o->rel);
    free(o->wide);
    memset(o, 0, sizeof *o);
}

static size_t csr_bytes(const struct csr *o)
{
    return o->nblocks * (sizeof *o->base + CSR_BLOCK * sizeof *o->rel) +
           o->capwide * CSR_BLOCK * sizeof *o->wide;
}

/* ---- columns ---------------------------------------------------------------------- */

static void column_init(struct column *c, const char *name, enum ftype t, int inferred)
{
    memset(c, 0, sizeof *c);
    c->name = xstrdup(name);
    c->type = t;
    c->inferred = inferred;
    c->width = 1;
    strdict_init(&c->dict);
}

static void column_release(struct column *c)
{
    free(c->name);
    free(c->present);
    free(c->v.p);
    free(c->foff);
    buf_release(&c->text);
    buf_release(&c->folded);
    strdict_release(&c->dict);
    memset(c, 0, sizeof *c);
}

static size_t value_size(const struct column *c)
{
    if (c->arena)
        return (size_t)c->width;
    switch (c->type) {
    case FT_STRING:
        return (size_t)c->width;
    case FT_NUMBER:
        return sizeof(double);
    case FT_TIMESTAMP:
        return sizeof(int64_t);
    default:
        return 1;
    }
}

/* Sets c's slots to exactly n (growing or shrinking; new slots are absent). */
static void column_resize(struct column *c, size_t n)
{
    size_t oldw = (c->cap + 63) / 64, neww = (n + 63) / 64, vs = value_size(c);

    c->present = xrealloc(c->present, (neww ? neww : 1) * sizeof(uint64_t));
    if (neww > oldw)
        memset(c->present + oldw, 0, (neww - oldw) * sizeof(uint64_t));
    c->v.p = xrealloc(c->v.p, (n ? n : 1) * vs);
    if (n > c->cap)
        memset((char *)c->v.p + c->cap * vs, 0, (n - c->cap) * vs);
    if (c->foff) {
        c->foff = xrealloc(c->foff, (n ? n : 1) * (size_t)c->width);
        if (n > c->cap)
            memset((char *)c->foff + c->cap * (size_t)c->width, 0, (n - c->cap) * (size_t)c->width);
    }
    c->cap = n;
}

/* Arena text grows by doubling while loading: gives the slack back. */
static void column_fit_text(struct column *c)
{
    if (c->text.cap > c->text.len + 1 + c->text.len / 8) {
        c->text.p = xrealloc(c->text.p, c->text.len + 1);
        c->text.cap = c->text.len + 1;
    }
}

/* Sets a dictionary code, first widening the column's codes if this one needs it. */
static void column_set_code(struct column *c, size_t i, uint32_t code)
{
    int w = code > UINT16_MAX ? 4 : code > UINT8_MAX ? 2 : 1;

    if (w > c->width) {
        void *to = xmalloc((c->cap ? c->cap : 1) * (size_t)w);
        size_t k;
        for (k = 0; k < c->cap; k++) {
            uint32_t v = column_code(c, k);
            if (w == 2)
                ((uint16_t *)to)[k] = (uint16_t)v;
            else
                ((uint32_t *)to)[k] = v;
        }
        free(c->v.p);
        c->v.p = to;
        c->width = w;
    }
    if (c->width == 1)
        c->v.c8[i] = (uint8_t)code;
    else if (c->width == 2)
        c->v.c16[i] = (uint16_t)code;
    else
        c->v.c32[i] = code;
}

/* Grows c to at least n slots; new slots are absent. */
static void column_grow(struct column *c, size_t n)
{
    if (n > c->cap)
        column_resize(c, n);
}

/* Slot i of c from a stored value: kind, and the number or text it holds. A value of
 * another type leaves the slot absent (for inferred columns, text that reads as a date
 * is a timestamp, not a string: docs/dsl.md). */
static void column_set_value_in(struct column *c, struct strdict *dict, size_t i,
                                enum store_prop_kind kind, double num, const char *text, size_t len)
{
    int64_t ms;

    ASSERT(i < c->cap);
    bit_clear(c->present, i);
    switch (c->type) {
    case FT_STRING:
        if (kind != STORE_PROP_TEXT || (c->inferred && text_ftype(text, len) != FT_STRING))
            return;
        column_set_code(c, i, strdict_code(dict, text, len));
        break;
    case FT_NUMBER:
        if (kind != STORE_PROP_NUMBER)
            return;
        c->v.num[i] = num;
        break;
    case FT_BOOLEAN:
        if (kind != STORE_PROP_TRUE && kind != STORE_PROP_FALSE)
            return;
        c->v.b[i] = kind == STORE_PROP_TRUE;
        break;
    case FT_TIMESTAMP:
        if (kind != STORE_PROP_TEXT || time_parse_iso(text, len, &ms) != 0)
            return;
        c->v.ts[i] = ms;
        break;
    }
    bit_set(c->present, i);
}

static void column_set_json_in(struct column *c, struct strdict *dict, size_t i, const json_t *v)
{
    if (json_is_string(v))
        column_set_value_in(c, dict, i, STORE_PROP_TEXT, 0, json_string_value(v),
                            json_string_length(v));
    else if (json_is_number(v))
        column_set_value_in(c, dict, i, STORE_PROP_NUMBER, json_number_value(v), NULL, 0);
    else if (json_is_boolean(v))
        column_set_value_in(c, dict, i, json_is_true(v) ? STORE_PROP_TRUE : STORE_PROP_FALSE, 0,
                            NULL, 0);
    else
        column_set_value_in(c, dict, i, STORE_PROP_OTHER, 0, NULL, 0);
}

void column_set_json(struct column *c, size_t i, const json_t *v)
{
    column_set_json_in(c, &c->dict, i, v);
}

/* An arena column's offset (into text, or into folded when fold) of slot i. */
static void arena_set(struct column *c, int fold, size_t i, size_t off)
{
    void *a = fold ? c->foff : c->v.p;

    if (c->width == 8)
        ((uint64_t *)a)[i] = off;
    else
        ((uint32_t *)a)[i] = (uint32_t)off;
}

/* An arena column's offsets to 8 bytes: its text (or folds) would pass 4 GiB. */
static void arena_widen(struct column *c)
{
    size_t i, n = c->cap ? c->cap : 1;
    uint64_t *off = xmalloc(n * sizeof *off), *foff = c->foff ? xmalloc(n * sizeof *foff) : NULL;

    for (i = 0; i < c->cap; i++) {
        off[i] = c->v.off[i];
        if (foff)
            foff[i] = ((uint32_t *)c->foff)[i];
    }
    free(c->v.p);
    free(c->foff);
    c->v.off64 = off;
    c->foff = foff;
    c->width = 8;
}

static void column_compact(struct column *c);

/* What 4-byte arena offsets reach: 4 GiB (the tests make it small, to go past it). */
static size_t arena_limit = UINT32_MAX;

static void column_set_str(struct column *c, size_t i, const char *s)
{
    size_t n;
    int was = bit_get(c->present, i);

    if (c->arena && was && (s == NULL || strcmp(column_text(c, i), s) != 0))
        c->dead += strlen(column_text(c, i)) + 1; /* its text is garbage from now */
    bit_clear(c->present, i);
    if (s == NULL)
        return;
    n = strlen(s);
    if (!c->arena) {
        column_set_code(c, i, strdict_code(&c->dict, s, n));
    } else if (was && strcmp(column_text(c, i), s) == 0) {
        /* unchanged: keep the text (and fold) it has */
    } else {
        if (c->dead > c->text.len / 2 && c->dead > arena_limit / 65536)
            column_compact(c); /* rewrites left more garbage than text */
        /* Room for the text and its fold (at most 3 bytes a byte, casefold.c) within
         * 4-byte offsets: compact a text a quarter dead, else widen the offsets. */
        if (c->width == 4 && (c->text.len + n + 1 > arena_limit ||
                              (c->foff && c->folded.len + 3 * n + 1 > arena_limit))) {
            if (c->dead >= c->text.len / 4)
                column_compact(c);
            if (c->text.len + n + 1 > arena_limit ||
                (c->foff && c->folded.len + 3 * n + 1 > arena_limit))
                arena_widen(c);
        }
        if (c->text.len == 0)
            buf_addc(&c->text, '\0'); /* offset 0 is never a string */
        arena_set(c, 0, i, c->text.len);
        buf_add(&c->text, s, n);
        buf_addc(&c->text, '\0');
        if (c->foff) {
            arena_set(c, 1, i, c->folded.len);
            casefold_utf8(s, n, &c->folded);
            buf_addc(&c->folded, '\0');
        }
    }
    bit_set(c->present, i);
}

/* An arena column's text rewritten with the live strings only. */
static void column_compact(struct column *c)
{
    struct buf text;
    size_t i;
    int folded = c->foff != NULL;

    buf_init(&text);
    buf_addc(&text, '\0');
    for (i = 0; i < c->cap; i++) {
        const char *s;
        if (!bit_get(c->present, i))
            continue;
        s = column_text(c, i);
        arena_set(c, 0, i, text.len); /* (no larger than the text it came from) */
        buf_add(&text, s, strlen(s) + 1);
    }
    buf_release(&c->text);
    c->text = text;
    c->dead = 0;
    free(c->foff);
    c->foff = NULL;
    buf_release(&c->folded);
    if (folded)
        column_fold(c);
}

void column_fold(struct column *c)
{
    size_t i;

    if (c->foff)
        return;
    if (c->width == 4 && c->text.len * 3 + 1 > arena_limit)
        arena_widen(c); /* the folds could pass 4 GiB */
    c->foff = xcalloc(c->cap ? c->cap : 1, (size_t)c->width);
    buf_addc(&c->folded, '\0');
    for (i = 0; i < c->cap; i++) {
        const char *s;
        if (!bit_get(c->present, i))
            continue;
        s = column_text(c, i);
        arena_set(c, 1, i, c->folded.len);
        casefold_utf8(s, strlen(s), &c->folded);
        buf_addc(&c->folded, '\0');
    }
}

static size_t column_bytes(const struct column *c)
{
    return c->cap * value_size(c) + (c->cap + 63) / 8 + c->dict.bytes + c->text.cap +
           c->folded.cap + (c->foff ? c->cap * (size_t)c->width : 0);
}

static void log_memory(const struct audience_index *ix);

/* ---- lifecycle -------------------------------------------------------------------- */

static const char *const bi_names[BI__N] = {"", "email", "external_id", "created_at",
                                            "email_consent"};
static const enum ftype bi_types[BI__N] = {FT_STRING, FT_STRING, FT_STRING, FT_TIMESTAMP,
                                           FT_STRING};

static void builtins_init(struct audience_index *ix)
{
    int i;

    for (i = 1; i < BI__N; i++)
        column_init(&ix->builtins[i], bi_names[i], bi_types[i], 0);
    ix->builtins[BI_EMAIL].arena = ix->builtins[BI_EXTERNAL_ID].arena = 1;
    ix->builtins[BI_EMAIL].width = ix->builtins[BI_EXTERNAL_ID].width = 4;
    ix->builtins[BI_EMAIL].unloaded = ix->builtins[BI_EXTERNAL_ID].unloaded = 1;
}

void audience_index_new(struct audience_index **out)
{
    struct audience_index *ix = xcalloc(1, sizeof *ix);

    builtins_init(ix);
    ix->merge_min = 8192;
    {
        /* Tests run the random comparison with both paths: merge always, merge never. */
        const char *v = getenv("ENGAGE_SEGMENT_MERGE_MIN");
        int64_t n;
        if (v && parse_i64(v, strlen(v), &n) == 0 && n >= 0)
            ix->merge_min = (size_t)n;
        v = getenv("ENGAGE_SEGMENT_ARENA_LIMIT");
        if (v && parse_i64(v, strlen(v), &n) == 0 && n >= 64 && n <= UINT32_MAX)
            arena_limit = (size_t)n;
    }
    *out = ix;
}

const struct contract_set *audience_index_contracts(const struct audience_index *ix)
{
    return ix->cs;
}

void audience_index_set_merge_min(struct audience_index *ix, size_t n)
{
    ix->merge_min = n;
}

static void evname_release(struct evname *en)
{
    int i;

    free(en->name);
    csr_release(&en->off);
    free(en->time);
    free(en->row);
    free(en->pend);
    for (i = 0; i < en->npcols; i++) {
        column_release(&en->pcols[i]);
        column_release(&en->ppcols[i]);
    }
    free(en->pcols);
    free(en->ppcols);
}

/* Empties the index (keeps the struct): the next catch-up loads everything. */
static void index_reset(struct audience_index *ix)
{
    struct contract_set *cs;
    uint64_t generation;
    size_t merge_min;
    int64_t stamp;
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
    merge_min = ix->merge_min;
    cs = ix->cs;
    stamp = ix->contracts_stamp;
    generation = ix->generation;
    memset(ix, 0, sizeof *ix);
    ix->generation = generation + 1;
    ix->merge_min = merge_min;
    ix->cs = cs; /* the contracts describe the store, not what the index held */
    ix->contracts_stamp = stamp;
    builtins_init(ix);
}

void audience_index_free(struct audience_index *ix)
{
    int i;

    if (ix == NULL)
        return;
    buf_release(&ix->scratch);
    index_reset(ix);
    contract_set_free(ix->cs);
    for (i = 1; i < BI__N; i++)
        column_release(&ix->builtins[i]);
    free(ix);
}

/* ---- contacts --------------------------------------------------------------------- */

/* Makes room for contact id (and every id below it). */
/* Sets the slots of every contact column to cap (at least ncontacts). */
static void resize_contacts(struct audience_index *ix, size_t cap)
{
    size_t oldw = (ix->cap + 63) / 64, neww = (cap + 63) / 64;
    int i;

    ix->live = xrealloc(ix->live, neww * sizeof *ix->live);
    if (neww > oldw)
        memset(ix->live + oldw, 0, (neww - oldw) * sizeof *ix->live);
    for (i = 1; i < BI__N; i++)
        if (!ix->builtins[i].unloaded)
            column_resize(&ix->builtins[i], cap);
    for (i = 0; i < ix->nattrs; i++)
        column_resize(&ix->attrs[i], cap);
    for (i = 0; i < ix->nnames; i++)
        csr_resize(&ix->names[i].off, cap);
    ix->cap = cap;
}

/* Makes room for contact id (and every id below it): capacity grows by a quarter, so
 * at most a fifth of the contact columns is slack. */
static void ensure_contact(struct audience_index *ix, int64_t id)
{
    size_t n = (size_t)id + 1, cap;
    int i;

    ASSERT(id > 0 && id < (int64_t)UINT32_MAX);
    if (n > ix->cap) {
        cap = ix->cap ? ix->cap : 1024;
        while (cap < n)
            cap += cap / 4;
        resize_contacts(ix, cap);
    }
    if (n > ix->ncontacts) {
        for (i = 0; i < ix->nnames; i++) {
            struct evname *en = &ix->names[i];
            size_t c;
            for (c = ix->ncontacts + 1; c <= n; c++)
                csr_set(&en->off, c, csr_get(&en->off, ix->ncontacts));
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
    if (builtin_of(name) == BI_NONE)
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
        if (builtin_of(name) != BI_NONE)
            continue; /* the contract's email is the contact's email: a built-in column */
        col = index_attr_col(ix, name, t, 1);
        if (ix->attrs[col].type != t)
            return 1;
    }
    return 0;
}

static int on_contact(void *ctx, const struct store_contact_row *c)
{
    struct audience_index *ix = ctx;
    size_t id = (size_t)c->id;
    int i, k;

    ensure_contact(ix, c->id);
    if (c->external_id && !c->deleted && c->merged_into == 0)
        bit_set(ix->live, id);
    else
        bit_clear(ix->live, id);
    if (!ix->builtins[BI_EMAIL].unloaded)
        column_set_str(&ix->builtins[BI_EMAIL], id, c->email);
    if (!ix->builtins[BI_EXTERNAL_ID].unloaded)
        column_set_str(&ix->builtins[BI_EXTERNAL_ID], id, c->external_id);
    ix->builtins[BI_CREATED_AT].v.ts[id] = c->created_at;
    bit_set(ix->builtins[BI_CREATED_AT].present, id);
    column_set_str(&ix->builtins[BI_EMAIL_CONSENT], id, consent_name(c->consent));
    /* The attributes kept, read from the stored JSON in one pass per 16. */
    for (i = 0; i < ix->nattrs; i += STORE_MAX_PROPS) {
        struct store_prop_value v[STORE_MAX_PROPS];
        const char *names[STORE_MAX_PROPS];
        int n = ix->nattrs - i < STORE_MAX_PROPS ? ix->nattrs - i : STORE_MAX_PROPS;
        for (k = 0; k < n; k++)
            names[k] = ix->attrs[i + k].name;
        store_props_find(c->attrs_json ? c->attrs_json : "{}", names, n, v, &ix->scratch);
        for (k = 0; k < n; k++)
            column_set_value_in(&ix->attrs[i + k], &ix->attrs[i + k].dict, id, v[k].kind, v[k].num,
                                v[k].text, v[k].len);
    }
    if (c->seq > ix->contact_seq)
        ix->contact_seq = c->seq;
    return 0;
}

struct identload {
    struct audience_index *ix;
    struct column *c;
    int bi;
};

static int on_ident(void *ctx, const struct store_contact_row *row)
{
    struct identload *l = ctx;

    /* Contacts the index has not caught up with yet come with the next catch-up. */
    if ((size_t)row->id < l->ix->ncontacts)
        column_set_str(l->c, (size_t)row->id, l->bi == BI_EMAIL ? row->email : row->external_id);
    return 0;
}

int index_load_ident(struct audience_index *ix, struct store *st, int bi, struct err *e)
{
    struct identload l = {ix, &ix->builtins[bi], bi};
    double t0 = clock_mono_ms();
    int rc;

    if (!l.c->unloaded)
        return 0;
    l.c->unloaded = 0;
    column_resize(l.c, ix->cap);
    rc = store_contact_rows_since(st, 0, 0, on_ident, &l, e);
    if (rc) { /* none is half-loaded */
        column_release(l.c);
        column_init(l.c, bi_names[bi], bi_types[bi], 0);
        l.c->arena = l.c->unloaded = 1;
        l.c->width = 4;
        return rc;
    }
    column_fit_text(l.c);
    log_info("segment", "loaded the %s column (%zu contacts) in %.0f ms", l.c->name,
             ix->ncontacts ? ix->ncontacts - 1 : 0, clock_mono_ms() - t0);
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
    csr_resize(&en->off, ix->cap);
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

/* One version of an event: it replaces ev->prev (whose entry, base or pending, goes)
 * and, unless it is a deletion, becomes a pending entry. */
static int on_event(void *ctx, const struct store_event *ev)
{
    struct audience_index *ix = ctx;
    struct evname *en;
    struct pending_event *p;

    if (ev->prev)
        dead_add(ix, ev->prev);
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
    p->slot = (uint32_t)en->nslots++;
    en->nfresh++;
    if (en->npcols) {
        json_t *o = ev->props ? json_loads(ev->props, 0, NULL) : NULL;
        int k;
        for (k = 0; k < en->npcols; k++) {
            struct column *pc = &en->ppcols[k];
            if (pc->cap < en->nslots)
                column_grow(pc, en->nslots * 2);
            column_set_json_in(pc, &en->pcols[k].dict, p->slot,
                               o ? json_object_get(o, pc->name) : NULL);
        }
        json_decref(o);
    }
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

int index_is_dead(const struct audience_index *ix, int64_t row)
{
    return ix->ndead && bsearch(&row, ix->dead, ix->ndead, sizeof row, cmp_i64) != NULL;
}

size_t index_pend_lower_bound(const struct evname *en, size_t c)
{
    size_t lo = 0, hi = en->npend;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (en->pend[mid].contact < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int pend_before(const struct pending_event *x, const struct pending_event *y)
{
    return x->time < y->time || (x->time == y->time && x->row < y->row);
}

static int cmp_pend(const void *a, const void *b)
{
    const struct pending_event *x = a, *y = b;

    return pend_before(x, y) ? -1 : pend_before(y, x) ? 1 : 0;
}

static int cmp_pend_contact(const void *a, const void *b)
{
    const struct pending_event *x = a, *y = b;

    if (x->contact != y->contact)
        return x->contact < y->contact ? -1 : 1;
    return cmp_pend(a, b);
}

/* Reorders en's pending entries by (contact, time): a counting sort by contact into a
 * new array, then an insertion sort of each contact's run (runs are short; a long one
 * goes to qsort). */
static void pend_sort(const struct audience_index *ix, struct evname *en)
{
    size_t *start = xcalloc(ix->ncontacts + 1, sizeof *start), j, c, sum = 0;
    struct pending_event *sorted = xmalloc((en->npend ? en->npend : 1) * sizeof *sorted);

    for (j = 0; j < en->npend; j++)
        start[en->pend[j].contact]++;
    for (c = 0; c <= ix->ncontacts; c++) {
        size_t k = start[c];
        start[c] = sum;
        sum += k;
    }
    for (j = 0; j < en->npend; j++)
        sorted[start[en->pend[j].contact]++] = en->pend[j];
    free(start);
    for (j = 0; j < en->npend;) {
        size_t end = j + 1, a;
        while (end < en->npend && sorted[end].contact == sorted[j].contact)
            end++;
        if (end - j > 32) {
            qsort(sorted + j, end - j, sizeof *sorted, cmp_pend);
        } else {
            for (a = j + 1; a < end; a++) {
                struct pending_event p = sorted[a];
                size_t k = a;
                while (k > j && pend_before(&p, &sorted[k - 1])) {
                    sorted[k] = sorted[k - 1];
                    k--;
                }
                sorted[k] = p;
            }
        }
        j = end;
    }
    free(en->pend);
    en->pend = sorted;
    en->cappend = en->npend ? en->npend : 1;
}

/* Rebuilds en without dead entries and with its pending ones. */
static void merge_evname(struct audience_index *ix, struct evname *en)
{
    size_t nc = ix->ncontacts, c, i, pos, newn = 0, pj = 0;
    struct csr off = {0};
    int64_t *src, *time, *row;
    size_t vs;
    int k;

    csr_resize(&off, ix->cap);
    pend_sort(ix, en);
    /* Where each entry of the new arrays comes from: base i, or pending -(j + 1). */
    src = xmalloc((en->n + en->npend + 1) * sizeof *src);
    for (c = 0; c < nc; c++) {
        size_t hi = csr_get(&en->off, c + 1);
        csr_set(&off, c, newn);
        i = csr_get(&en->off, c);
        while (i < hi || (pj < en->npend && en->pend[pj].contact == c)) {
            int take_base;
            if (i < hi && index_is_dead(ix, en->row[i])) {
                i++;
                continue;
            }
            if (i >= hi)
                take_base = 0;
            else if (pj >= en->npend || en->pend[pj].contact != c)
                take_base = 1;
            else
                take_base = en->time[i] <= en->pend[pj].time;
            src[newn++] = take_base ? (int64_t)i++ : -(int64_t)(pj++ + 1);
        }
    }
    ASSERT(pj == en->npend);
    csr_set(&off, nc, newn);
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
    for (k = 0; k < en->npcols; k++) {
        struct column *old = &en->pcols[k], *pend = &en->ppcols[k], col;
        column_init(&col, old->name, old->type, old->inferred);
        strdict_release(&col.dict);
        col.dict = old->dict; /* codes stay valid: the dictionary moves over */
        strdict_init(&old->dict);
        col.width = old->width;
        column_grow(&col, newn);
        vs = value_size(&col);
        for (pos = 0; pos < newn; pos++) {
            const struct column *from = old;
            size_t s = (size_t)src[pos];
            if (src[pos] < 0) {
                from = pend;
                s = en->pend[-src[pos] - 1].slot;
            }
            if (!bit_get(from->present, s))
                continue;
            if (col.type == FT_STRING) /* the pending column's codes may be narrower */
                column_set_code(&col, pos, column_code(from, s));
            else
                memcpy((char *)col.v.p + pos * vs, (char *)from->v.p + s * vs, vs);
            bit_set(col.present, pos);
        }
        column_release(old);
        *old = col;
        memset(pend->present, 0, (pend->cap + 63) / 64 * sizeof(uint64_t));
    }
    en->npend = 0;
    en->nfresh = 0;
    en->nslots = 0;
    csr_release(&en->off);
    free(en->time);
    free(en->row);
    en->off = off;
    en->time = time;
    en->row = row;
    en->n = newn;
    free(src);
}

/* ---- catch-up ------------------------------------------------------------------------ */

/* Drops pending entries of versions replaced in this catch-up (the new version has its
 * own id and was queued after them). chg is sorted. */
static void drop_stale(struct evname *en, const int64_t *chg, size_t nchg)
{
    size_t j, w = 0;

    for (j = 0; j < en->npend; j++) {
        if (bsearch(&en->pend[j].row, chg, nchg, sizeof *chg, cmp_i64))
            continue;
        en->pend[w++] = en->pend[j];
    }
    en->npend = w;
}

static void sort_dead(struct audience_index *ix)
{
    size_t i, w = 0;

    qsort(ix->dead, ix->ndead, sizeof *ix->dead, cmp_i64);
    for (i = 0; i < ix->ndead; i++)
        if (w == 0 || ix->dead[w - 1] != ix->dead[i])
            ix->dead[w++] = ix->dead[i];
    ix->ndead = w;
}

/* Each event name is merged or sorted on its own (they share only read-only state:
 * the contact count and the dead list), so the names are spread over the cores. */
struct settle_pool {
    struct audience_index *ix;
    atomic_int next;
};

static void *settle_worker(void *arg)
{
    struct settle_pool *sp = arg;
    struct audience_index *ix = sp->ix;
    int i;

    while ((i = atomic_fetch_add(&sp->next, 1)) < ix->nnames) {
        struct evname *en = &ix->names[i];
        if (en->merge)
            merge_evname(ix, en);
        else if (en->nfresh) {
            if (en->npend * 8 < ix->ncontacts)
                qsort(en->pend, en->npend, sizeof *en->pend, cmp_pend_contact);
            else
                pend_sort(ix, en);
        }
        en->nfresh = 0;
        en->merge = 0;
    }
    return NULL;
}

static void settle_names(struct audience_index *ix)
{
    struct settle_pool sp = {.ix = ix};
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    pthread_t tids[16];
    int i, want = 0, started = 0, nthreads;

    for (i = 0; i < ix->nnames; i++)
        want += ix->names[i].merge;
    nthreads = want > 1 ? (int)(ncpu > 16 ? 16 : ncpu > 0 ? ncpu : 1) : 1;
    if (nthreads > want)
        nthreads = want > 0 ? want : 1;
    atomic_init(&sp.next, 0);
    for (i = 1; i < nthreads; i++)
        if (pthread_create(&tids[started], NULL, settle_worker, &sp) == 0)
            started++;
    settle_worker(&sp);
    for (i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
}

/* A name is due a merge when its pending entries are many (merge_min, and a sixteenth
 * of its size), or when rewrites of the same rows have used up far more pending slots
 * than there are pending entries (slots are only reclaimed by a merge). */
static int merge_due(const struct audience_index *ix, const struct evname *en)
{
    return (en->npend > ix->merge_min && en->npend > en->n / 16) ||
           en->nslots > 4 * en->npend + ix->merge_min;
}

/* After reading a catch-up's rows: retire stale pending entries, then merge the names
 * that have enough pending entries (all of them, and clear the dead list, when rows
 * changed or on the first load), and sort the pending entries of the others. */
static void settle(struct audience_index *ix, size_t dead0, int first)
{
    size_t nchg = ix->ndead - dead0, limit = ix->merge_min > 1024 ? ix->merge_min : 1024;
    int64_t *chg = NULL;
    int i, all = first || ix->merge_min == 0 || ix->ndead > limit;

    if (nchg) {
        chg = xmalloc(nchg * sizeof *chg);
        memcpy(chg, ix->dead + dead0, nchg * sizeof *chg);
        qsort(chg, nchg, sizeof *chg, cmp_i64);
        for (i = 0; i < ix->nnames; i++)
            drop_stale(&ix->names[i], chg, nchg);
        free(chg);
        sort_dead(ix);
    }
    for (i = 0; !all && ix->ndead && i < ix->nnames; i++)
        all = merge_due(ix, &ix->names[i]);
    for (i = 0; i < ix->nnames; i++)
        ix->names[i].merge = all ? (ix->names[i].npend || ix->ndead) : merge_due(ix, &ix->names[i]);
    settle_names(ix);
    if (all)
        ix->ndead = 0;
}

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
    struct contract_set *cs = NULL;
    int64_t stamp = 0;
    size_t dead0;
    double t0 = clock_mono_ms(), t1, t2, t3;
    int rc, i, first = !ix->loaded;

    rc = store_read_begin(st, e);
    if (rc)
        return rc;
    /* The contracts are read again only when a version was added since (the stamp). */
    rc = store_contracts_stamp(st, &stamp, e);
    if (rc == 0 && (ix->cs == NULL || stamp != ix->contracts_stamp)) {
        rc = contract_set_load(st, NULL, &cs, e); /* types only */
        if (rc == 0) {
            contract_set_free(ix->cs);
            ix->cs = cs;
            ix->contracts_stamp = stamp;
        }
    }
    if (rc == 0 && declare_attrs(ix, ix->cs)) {
        /* A contract changed an attribute's type: start again from scratch. */
        index_reset(ix);
        first = 1;
        declare_attrs(ix, ix->cs);
    }
    dead0 = ix->ndead; /* after a possible reset: the rows this catch-up adds come after */
    if (rc == 0)
        rc = store_attr_types(st, on_attr, ix, e);
    if (rc == 0)
        rc = store_event_names(st, on_name, ix, e);
    t1 = clock_mono_ms();
    if (rc == 0)
        rc = store_contact_rows_since(st, ix->contact_seq, 0, on_contact, ix, e);
    t2 = clock_mono_ms();
    if (rc == 0)
        rc = store_events_since(st, ix->event_seq, 0, any_pcols(ix), on_event, ix, e);
    t3 = clock_mono_ms();
    store_rollback(st); /* only read */
    if (rc) {
        index_reset(ix);
        return rc;
    }
    settle(ix, dead0, first);
    log_debug("segment",
              "catch-up: catalogue %.0f ms, contacts %.0f ms, events %.0f ms, merge %.0f ms",
              t1 - t0, t2 - t1, t3 - t2, clock_mono_ms() - t3);
    ix->loaded = 1;
    if (first) {
        struct audience_stats s;
        /* Room for a sixteenth more contacts, not the slack of the growth while loading. */
        resize_contacts(ix, ix->ncontacts + ix->ncontacts / 16 + 1024);
        for (i = 1; i < BI__N; i++)
            column_fit_text(&ix->builtins[i]);
        ix->load_ms = clock_mono_ms() - t0;
        audience_index_stats(ix, &s);
        log_info("segment",
                 "audience index loaded: %lld contacts (%lld members), %lld events,"
                 " %lld MB, %.0f ms",
                 (long long)s.contacts, (long long)s.members, (long long)s.events,
                 (long long)(s.bytes >> 20), ix->load_ms);
        log_memory(ix);
    }
    return 0;
}

/* Where the index's memory goes, column by column (debug log). */
static void log_memory(const struct audience_index *ix)
{
    struct buf b;
    int i;

    if (log_level_current < LOG_DEBUG)
        return;
    buf_init(&b);
    for (i = 1; i < BI__N; i++)
        buf_printf(&b, "%s %.1f, ", ix->builtins[i].name,
                   column_bytes(&ix->builtins[i]) / 1048576.0);
    for (i = 0; i < ix->nattrs; i++)
        buf_printf(&b, "%s %.1f, ", ix->attrs[i].name, column_bytes(&ix->attrs[i]) / 1048576.0);
    for (i = 0; i < ix->nnames; i++)
        buf_printf(&b, "event %s %.1f + %.1f, ", ix->names[i].name,
                   csr_bytes(&ix->names[i].off) / 1048576.0, ix->names[i].n * 16 / 1048576.0);
    log_debug("segment", "index memory (MB): %.*s", b.len > 2 ? (int)b.len - 2 : 0, b.p ? b.p : "");
    buf_release(&b);
}

/* ---- property columns ----------------------------------------------------------------- */

struct propload {
    const struct audience_index *ix;
    struct evname *en;
    const int *cols; /* the pcols being loaded, in the order of the scan's values */
    int n;
};

/* Where row id (contact c, instant t) sits: in the CSR entries (*pending = 0) or among
 * the pending ones (1), at *slot; 0 if the index does not hold it (yet: the next
 * catch-up brings it). A dead CSR entry's row lives on in a pending entry. */
static int entry_of(const struct propload *pl, int64_t c, int64_t t, int64_t id, int *pending,
                    size_t *slot)
{
    const struct evname *en = pl->en;
    size_t i, hi;

    if (c <= 0 || (size_t)c >= pl->ix->ncontacts)
        return 0;
    hi = csr_get(&en->off, c + 1);
    for (i = evname_lower_bound(en, (size_t)c, t); i < hi && en->time[i] == t; i++)
        if (en->row[i] == id && !index_is_dead(pl->ix, id)) {
            *pending = 0;
            *slot = i;
            return 1;
        }
    for (i = index_pend_lower_bound(en, (size_t)c); i < en->npend && en->pend[i].contact == c; i++)
        if (en->pend[i].row == id) {
            *pending = 1;
            *slot = en->pend[i].slot;
            return 1;
        }
    return 0;
}

static int on_prop_values(void *ctx, int64_t id, int64_t contact_id, int64_t occurred_at,
                          const struct store_prop_value *v, int n)
{
    struct propload *pl = ctx;
    size_t slot;
    int pending, j;

    if (!entry_of(pl, contact_id, occurred_at, id, &pending, &slot))
        return 0;
    for (j = 0; j < n; j++) {
        struct column *base = &pl->en->pcols[pl->cols[j]];
        struct column *col = pending ? &pl->en->ppcols[pl->cols[j]] : base;
        column_set_value_in(col, &base->dict, slot, v[j].kind, v[j].num, v[j].text, v[j].len);
    }
    return 0;
}

int index_prop_cols(struct audience_index *ix, struct store *st, struct evname *en,
                    struct prop_want *want, int n, struct err *e)
{
    struct propload pl = {.ix = ix, .en = en};
    int cols[STORE_MAX_PROPS], ncols = 0, i, k, rc = 0, first_new = en->npcols;
    const char *names[STORE_MAX_PROPS];
    double t0 = clock_mono_ms();

    for (i = 0; i < n; i++) {
        for (k = 0; k < en->npcols; k++)
            if (strcmp(en->pcols[k].name, want[i].prop) == 0 && en->pcols[k].type == want[i].type &&
                en->pcols[k].inferred == !want[i].declared)
                break;
        if (k == en->npcols) { /* a new column, loaded below */
            en->pcols = xrealloc(en->pcols, (size_t)(en->npcols + 1) * sizeof *en->pcols);
            en->ppcols = xrealloc(en->ppcols, (size_t)(en->npcols + 1) * sizeof *en->ppcols);
            column_init(&en->pcols[k], want[i].prop, want[i].type, !want[i].declared);
            column_grow(&en->pcols[k], en->n ? en->n : 1);
            column_init(&en->ppcols[k], want[i].prop, want[i].type, !want[i].declared);
            column_grow(&en->ppcols[k], en->nslots ? en->nslots : 1);
            en->npcols++;
        }
        want[i].col = k;
    }
    /* One scan of the name's events for up to 16 new columns at a time. */
    for (k = first_new; rc == 0 && k < en->npcols; k++) {
        cols[ncols] = k;
        names[ncols++] = en->pcols[k].name;
        if (ncols == STORE_MAX_PROPS || k == en->npcols - 1) {
            pl.cols = cols;
            pl.n = ncols;
            rc = store_event_prop_values(st, en->name_id, names, ncols, on_prop_values, &pl, e);
            ncols = 0;
        }
    }
    if (rc) { /* drop the columns this call added: none is half-loaded */
        for (k = first_new; k < en->npcols; k++) {
            column_release(&en->pcols[k]);
            column_release(&en->ppcols[k]);
        }
        en->npcols = first_new;
        return rc;
    }
    if (en->npcols > first_new)
        log_info("segment", "loaded %d property column(s) of '%s' (%zu events) in %.0f ms",
                 en->npcols - first_new, en->name, en->n + en->npend, clock_mono_ms() - t0);
    return 0;
}

/* ---- one contact's latest events ---------------------------------------------------------- */

/* Keeps rows/times[0..*n) the `limit` latest (time, then row, descending). */
static void keep_latest(int64_t *rows, int64_t *times, size_t *n, size_t limit, int64_t row,
                        int64_t time)
{
    size_t i;

    if (*n == limit && (time < times[*n - 1] || (time == times[*n - 1] && row < rows[*n - 1])))
        return;
    i = *n < limit ? (*n)++ : *n - 1;
    for (; i > 0 && (times[i - 1] < time || (times[i - 1] == time && rows[i - 1] < row)); i--) {
        times[i] = times[i - 1];
        rows[i] = rows[i - 1];
    }
    times[i] = time;
    rows[i] = row;
}

size_t audience_index_recent(const struct audience_index *ix, int64_t contact, size_t limit,
                             int64_t *rows, int64_t *times)
{
    size_t n = 0, c = (size_t)contact;
    int i;

    if (limit == 0 || contact <= 0 || c >= ix->ncontacts)
        return 0;
    for (i = 0; i < ix->nnames; i++) {
        const struct evname *en = &ix->names[i];
        size_t j, taken = 0;
        /* Each contact's entries are sorted by time: walk back from the newest. */
        for (j = csr_get(&en->off, c + 1); j > csr_get(&en->off, c) && taken < limit; j--) {
            if (ix->ndead && index_is_dead(ix, en->row[j - 1]))
                continue;
            keep_latest(rows, times, &n, limit, en->row[j - 1], en->time[j - 1]);
            taken++;
        }
        for (j = index_pend_lower_bound(en, c); j < en->npend && en->pend[j].contact == c; j++)
            keep_latest(rows, times, &n, limit, en->pend[j].row, en->pend[j].time);
    }
    return n;
}

/* ---- stats ------------------------------------------------------------------------------ */

static void index_stats(const struct audience_index *ix, struct audience_stats *out, int exact);

void audience_index_stats(const struct audience_index *ix, struct audience_stats *out)
{
    index_stats(ix, out, 1);
}

void audience_index_stats_quick(const struct audience_index *ix, struct audience_stats *out)
{
    index_stats(ix, out, 0);
}

static void index_stats(const struct audience_index *ix, struct audience_stats *out, int exact)
{
    size_t w, j, bytes = (ix->cap + 63) / 8;
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
        out->events += (int64_t)(en->n + en->npend);
        out->pending += (int64_t)en->npend;
        for (j = 0; exact && ix->ndead && j < en->n; j++) /* rows superseded since the last merge */
            out->events -= index_is_dead(ix, en->row[j]);
        bytes += csr_bytes(&en->off) + en->n * 16;
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
