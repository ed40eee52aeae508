/* segment/segment_int.h -- shared inside src/segment only: the index layout and
 * the plan tree. */
#ifndef ENGAGE_SEGMENT_INT_H
#define ENGAGE_SEGMENT_INT_H

#include "segment.h"

/* Types a column or a condition can have (integers are numbers here). */
enum ftype { FT_STRING, FT_NUMBER, FT_BOOLEAN, FT_TIMESTAMP };
const char *ftype_name(enum ftype t);
enum ftype ftype_of_vtype(enum vtype t);
/* The type of a JSON value with no declared type: booleans, numbers, strings that
 * read as ISO-8601 dates or date-times are timestamps, other strings are strings. */
enum ftype json_value_ftype(const json_t *v);
/* The same for stored text: a timestamp if it reads as an ISO-8601 date, else a string. */
enum ftype text_ftype(const char *s, size_t n);

/* ---- strings: a dictionary (code 0 = none) ------------------------------------ */

struct strdict {
    struct strmap map; /* string -> code */
    char **strs;       /* code -> string; strs[0] unused */
    uint32_t *lens;
    char **folded; /* simple case folds, made on first `contains` */
    uint32_t nfolded;
    uint32_t n, cap; /* n = codes handed out + 1 */
    size_t bytes;
};
void strdict_init(struct strdict *d);
void strdict_release(struct strdict *d);
uint32_t strdict_code(struct strdict *d, const char *s, size_t len); /* adds if new */

/* ---- typed columns ---------------------------------------------------------------
 * A column holds one value or nothing per slot: contacts for attributes (slot =
 * contact id), event entries for property columns (slot = entry position). */
struct column {
    char *name;
    enum ftype type;
    uint64_t *present; /* bitset */
    union {
        void *p;
        uint8_t *c8; /* FT_STRING: strdict code, as wide as the dictionary needs */
        uint16_t *c16;
        uint32_t *c32;
        uint32_t *off;   /* FT_STRING in an arena column: offset in text (width 4) */
        uint64_t *off64; /* ... (width 8) */
        double *num;
        int64_t *ts;
        uint8_t *b; /* 0 false, 1 true */
    } v;
    int width; /* bytes a dictionary code: 1, 2 or 4 (widened as codes grow);
                * an arena column's offsets: 4, or 8 past 4 GiB of text */
    /* Arena columns hold nearly unique strings (email, external_id) whole, NUL-
     * terminated, instead of in a dictionary: 4 bytes a slot plus the text (offsets of
     * 8 bytes past 4 GiB; rewrites append: a text half dead, or a quarter dead when it
     * would pass 4 GiB, is compacted).
     * Their simple case folds are made on the first `contains` and kept current after. */
    int arena;
    size_t dead;  /* bytes of text no slot points to any more */
    int unloaded; /* an identifier column (email, external_id) not read yet: no
                   * slots; the first rule on it loads it (index_load_ident) */
    struct buf text, folded;
    void *foff; /* offset in folded per slot (as wide as the text's), once folded */
    struct strdict dict;
    size_t cap;   /* slots allocated */
    int inferred; /* an undeclared property: values typed by json_value_ftype() */
};

enum builtin { BI_NONE, BI_EMAIL, BI_EXTERNAL_ID, BI_CREATED_AT, BI_EMAIL_CONSENT, BI__N };
/* The built-in a field name means, or BI_NONE. */
int builtin_of(const char *name);

/* One event name: entries grouped by contact (CSR), sorted by time in a contact.
 * Events that arrived since the last merge are pending: sorted by (contact, time)
 * after each catch-up and counted beside the CSR arrays, until there are enough of
 * them to be worth a merge. Their property values live in ppcols, by slot. */
struct pending_event {
    uint32_t contact;
    uint32_t slot; /* index into ppcols[k] */
    int64_t time, row;
};
/* CSR offsets, 2 bytes and a quarter a contact: contact c's first entry is base[c / 16]
 * + rel[c]; in a block of 16 contacts whose entries pass 65,535 (heavy users), base
 * has its top bit set and the block's offsets are wide[(base & ~CSR_WIDE) * 16 + c % 16]. */
#define CSR_BLOCK 16
#define CSR_WIDE 0x80000000u
struct csr {
    uint32_t *base; /* a block's first offset, or CSR_WIDE | its wide block */
    uint16_t *rel;  /* per contact, from its block's first offset */
    uint32_t *wide;
    size_t nblocks, nwide, capwide;
};

static inline size_t csr_get(const struct csr *o, size_t c)
{
    uint32_t b = o->base[c / CSR_BLOCK];

    return b & CSR_WIDE ? o->wide[(size_t)(b & ~CSR_WIDE) * CSR_BLOCK + c % CSR_BLOCK]
                        : (size_t)b + o->rel[c];
}

struct evname {
    int64_t name_id;
    char *name;
    struct csr off; /* off(c) .. off(c+1): contact c's entries; ncontacts + 1 */
    int64_t *time, *row;
    size_t n; /* entries */
    struct pending_event *pend;
    size_t npend, cappend;
    size_t nfresh;         /* the last nfresh entries came in this catch-up (unsorted) */
    struct column *pcols;  /* property columns parallel to the entries */
    struct column *ppcols; /* the same properties of pending entries, by slot; string
                            * codes are those of pcols[k]'s dictionary */
    int npcols;
    size_t nslots;
    int merge; /* settle: merge (1) or only sort this name */
};

struct audience_index {
    int loaded;
    int64_t contact_seq, event_seq;
    size_t ncontacts; /* ids 0 .. ncontacts-1 (0 unused) */
    size_t cap;       /* slots in every contact column */
    uint64_t *live;   /* members: identified, not deleted, not merged */
    struct column builtins[BI__N];
    struct column *attrs; /* contact attributes */
    int nattrs;
    struct buf scratch; /* decoded attribute texts while reading contacts */
    struct evname *names;
    int nnames;
    uint64_t generation; /* bumped by every reset: plans compiled before are void */
    int64_t *dead;       /* rows whose entry in the CSR arrays no longer holds (sorted
                          * after a catch-up): skipped by evaluation, dropped by merges */
    size_t ndead, capdead;
    size_t merge_min;        /* merge an event name once it has this many pending entries */
    struct contract_set *cs; /* the store's contracts as of the last catch-up */
    int64_t contracts_stamp;
    double load_ms;
};

/* 1 if row is on the dead list. */
int index_is_dead(const struct audience_index *ix, int64_t row);
/* The first pending entry of en whose contact is at least c. */
size_t index_pend_lower_bound(const struct evname *en, size_t c);

/* The first of contact c's entries in en at or after instant t (off(c + 1) if none). */
static inline size_t evname_lower_bound(const struct evname *en, size_t c, int64_t t)
{
    size_t lo = csr_get(&en->off, c), hi = csr_get(&en->off, c + 1);

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (en->time[mid] < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The dictionary code in slot i of a dictionary column. */
static inline uint32_t column_code(const struct column *c, size_t i)
{
    return c->width == 1 ? c->v.c8[i] : c->width == 2 ? c->v.c16[i] : c->v.c32[i];
}

/* The string in slot i of an arena column (present slots only). */
static inline const char *column_text(const struct column *c, size_t i)
{
    return c->text.p + (c->width == 8 ? c->v.off64[i] : c->v.off[i]);
}

/* Its simple case fold (folded columns only). */
static inline const char *column_folded(const struct column *c, size_t i)
{
    return c->folded.p +
           (c->width == 8 ? ((const uint64_t *)c->foff)[i] : ((const uint32_t *)c->foff)[i]);
}

/* Loads identifier column bi (BI_EMAIL, BI_EXTERNAL_ID) when it is not yet: a scan of
 * the contacts, kept current by catch-ups from then on. Members and samples read
 * identifiers from the store, so the index holds them only once a rule needs them. */
int index_load_ident(struct audience_index *ix, struct store *st, int bi, struct err *e);

/* Makes the folds of an arena column's strings (once; later writes keep them). */
void column_fold(struct column *c);

/* Column index of an attribute (creating it with type t if create), or -1. */
int index_attr_col(struct audience_index *ix, const char *name, enum ftype t, int create);
/* The event name slot for a store name id, or NULL. */
struct evname *index_evname(struct audience_index *ix, int64_t name_id);
struct evname *index_evname_by_name(struct audience_index *ix, const char *name);
/* Property columns of ev by (name, type, declared), those not there yet loaded from the
 * store in one scan; each want's col receives its column's index. */
struct prop_want {
    const char *prop;
    enum ftype type;
    int declared;
    int col; /* out */
};
int index_prop_cols(struct audience_index *ix, struct store *st, struct evname *ev,
                    struct prop_want *want, int n, struct err *e);
/* Reads a JSON value into slot i of col (absent if it does not have the column's
 * type, inferred types for undeclared properties). */
void column_set_json(struct column *col, size_t i, const json_t *v);
static inline int bit_get(const uint64_t *b, size_t i)
{
    return (int)((b[i >> 6] >> (i & 63)) & 1);
}
static inline void bit_set(uint64_t *b, size_t i)
{
    b[i >> 6] |= 1ULL << (i & 63);
}
static inline void bit_clear(uint64_t *b, size_t i)
{
    b[i >> 6] &= ~(1ULL << (i & 63));
}

/* ---- the plan ------------------------------------------------------------------- */

enum op { OP_EQ, OP_NEQ, OP_IN, OP_CONTAINS, OP_GTE, OP_LTE };
const char *op_name(enum op o);

/* A typed comparison: an attribute rule or one `where` item. */
struct cond {
    enum op op;
    enum ftype type;
    int nvals;
    double *num;
    int64_t *ts;
    char **str; /* NUL-terminated; lens beside */
    size_t *lens;
    int b;
    char *folded; /* contains: the value after simple case folding */
    size_t folded_len;
};

enum node_kind { N_AND, N_OR, N_ATTR, N_BEHAVIOR };

struct node {
    enum node_kind kind;
    char *path; /* JSON pointer of the rule, for explain */
    struct node **kids;
    int nkids;
    /* N_ATTR */
    char *field;
    int builtin; /* enum builtin, or BI_NONE for an attribute */
    int col;     /* attribute column, -1 = no data yet (every contact missing) */
    struct cond c;
    /* N_BEHAVIOR */
    char *event;
    int ev;  /* index in ix->names, -1 = no such events stored yet */
    int did; /* 1 did_event, 0 did_not_event */
    int within_days, count_gte;
    struct cond *where;
    char **where_fields;
    int *where_cols;     /* property column per where item */
    int *where_declared; /* where item i has a contract type */
    int nwhere;
    double cost; /* estimated work per contact, for ordering */
};

struct segment_plan {
    struct node *root;
    const struct audience_index *ix;
    uint64_t generation; /* the index's when compiled: a reset since voids the plan */
    int nrules;
};

/* dsl.c: validates and builds the tree (columns not resolved yet). */
int dsl_parse(struct audience_index *ix, const struct contract_set *cs, const json_t *rules,
              const struct segment_limits *lim, struct node **out, int *nrules,
              struct errlist *errs);
void node_free(struct node *n);
/* Case-insensitive containment of the folded needle in s[0..n). */
int contains_folded(const char *s, size_t n, const char *needle, size_t needle_len,
                    struct buf *scratch);

#endif
