/* tests/unit/segment_ref.h -- the obviously-right reference for segment evaluation.
 *
 * DESIGN: a plain in-memory copy of what the store should hold (contacts with typed
 * attributes, consent and deleted/merged flags; events with name, owner, instant,
 * typed properties and a deleted flag), and an evaluator that walks a rules
 * document over it literally, one rule at a time over every contact, with no
 * index, no plan and no code of the engine (src/segment/). Unicode simple case
 * folding comes from parsing CaseFolding.txt (statuses C and S) here. The only
 * project functions used are time_parse_iso (core), for timestamp rule values, and
 * time_format_iso, for dumps. The declared fields are the shipped contracts' (written
 * out below) plus any a test stores (ref_decl_add).
 *
 * The semantics (docs/dsl.md):
 *  - a group {"op":"AND"|"OR","rules":[…]} or a single rule at the root;
 *  - attribute rules: built-ins email (string, missing if none), external_id
 *    (string), created_at (timestamp), email_consent (string); other fields typed
 *    by the contact contract, else by the attribute registry (first value wins);
 *  - numbers compare as doubles, timestamps as instants, strings byte-wise
 *    (memcmp, then the shorter first); contains = substring after simple case
 *    folding of both sides; in = eq to any element; booleans only eq/neq;
 *  - a missing value (or one of another type) never matches eq, in, contains, gte,
 *    lte and always matches neq;
 *  - behaviour rules count the contact's live events named E with
 *    now - D*86400000 <= occurred_at <= now that pass every where condition;
 *    did_event: count >= count_gte (default 1); did_not_event: count == 0. A where
 *    property is typed by the event's contract, else by the rule's value;
 *  - the events of a contact merged into another (an identify that linked an
 *    anonymous id) count for the contact it was merged into, following the chain;
 *  - members: not deleted, not merged, with an external id.
 *
 * The copy holds STORED values, typed the way the store holds them, not the raw
 * input: the test mirrors ingestion (docs/contracts.md "Typing values" and
 * "Inference"). Undeclared contact attributes take the registry's type (so the JSON
 * string "123" is stored as the number 123); declared fields take the contract's.
 * Undeclared event properties arriving as JSON are stored as they came; their type is
 * read as dsl.md's `where` paragraph says undeclared data is typed: JSON booleans,
 * JSON numbers, strings that read as ISO-8601 dates or date-times (timestamps), any
 * other string a string; objects and arrays have none of these types (missing).
 *
 * Everything is static and only meant for tests/unit/segment_random.c. */
#ifndef ENGAGE_SEGMENT_REF_H
#define ENGAGE_SEGMENT_REF_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

#define REF_FN static __attribute__((unused))
#define REF_DAY_MS DAY_MS

enum ref_type { REF_NONE = -1, REF_STRING = 0, REF_NUMBER, REF_BOOLEAN, REF_TIMESTAMP };

static const char *const ref_type_names[] = {"string", "number", "boolean", "timestamp"};

/* A typed value. Strings are owned; fold caches their simple case fold. */
struct ref_value {
    int type; /* enum ref_type; REF_NONE = absent */
    char *s;  /* REF_STRING */
    size_t n;
    double d;   /* REF_NUMBER */
    int64_t i;  /* REF_TIMESTAMP (ms) and REF_BOOLEAN (0/1) */
    char *fold; /* cache */
    size_t nfold;
};

struct ref_kv {
    char *key;
    struct ref_value v;
};

struct ref_contact {
    char *xid;   /* NULL: anonymous only */
    char *email; /* NULL: none */
    int consent; /* 0 subscribed, 1 unsubscribed, 2 bounced, 3 complained */
    int64_t created_at;
    int deleted;
    int merged_into; /* -1, or the index of the contact it was merged into */
    struct ref_kv *attrs;
    int nattrs, attrcap;
    int64_t store_id; /* bookkeeping for the test (0 = not known yet) */
    int *evs;         /* live events of this contact (ref_db_index) */
    int nevs, evcap;
};

struct ref_event {
    char *event_id, *name, *source;
    int contact; /* index of the owning contact */
    int64_t at;
    int deleted;
    struct ref_kv *props;
    int nprops, propcap;
};

/* The attribute registry: first value's type wins (undeclared attributes only). */
struct ref_db {
    struct ref_contact *c;
    int nc, ccap;
    struct ref_event *ev;
    int nev, evcap;
    struct ref_kv *reg; /* v.type only */
    int nreg, regcap;
};

/* ---- the shipped contracts (contracts/NAME.json), as typed fields ---------------------- */

struct ref_decl {
    const char *owner; /* event name, or "contact" */
    const char *name;
    int type;     /* integer counts as number */
    int optional; /* 1: may be absent (contact attributes, and the shipped event
                   * properties a contract does not require) */
    int integer;  /* declared integer */
};

static const struct ref_decl ref_decls[] = {
    {"contact", "email", REF_STRING, 1, 0},
    {"contact", "first_name", REF_STRING, 1, 0},
    {"contact", "last_name", REF_STRING, 1, 0},
    {"contact", "city", REF_STRING, 1, 0},
    {"contact", "plan", REF_STRING, 1, 0},
    {"contact", "ltv", REF_NUMBER, 1, 0},
    {"contact", "signup_at", REF_TIMESTAMP, 1, 0},
    {"order_created", "order_id", REF_STRING, 0, 0},
    {"order_created", "amount", REF_NUMBER, 0, 0},
    {"order_created", "currency", REF_STRING, 0, 0},
    {"order_created", "created_at", REF_TIMESTAMP, 0, 0},
    {"call_logged", "call_id", REF_STRING, 0, 0},
    {"call_logged", "agent_id", REF_STRING, 0, 0},
    {"call_logged", "duration_sec", REF_NUMBER, 0, 1},
    {"call_logged", "created_at", REF_TIMESTAMP, 0, 0},
    {"whatsapp_sent", "message_id", REF_STRING, 0, 0},
    {"whatsapp_sent", "status", REF_STRING, 0, 0},
    {"whatsapp_sent", "created_at", REF_TIMESTAMP, 0, 0},
    {"email_opened", "campaign_id", REF_STRING, 0, 0},
    {"email_opened", "message_id", REF_STRING, 0, 0},
    {"email_opened", "opened_at", REF_TIMESTAMP, 0, 0},
    /* email_opened version 2, and the other email_* contracts (issue 15) */
    {"email_opened", "run_id", REF_STRING, 1, 0},
    {"email_opened", "source", REF_STRING, 1, 0},
    {"email_opened", "machine", REF_BOOLEAN, 1, 0},
    {"email_delivered", "campaign_id", REF_STRING, 0, 0},
    {"email_delivered", "run_id", REF_STRING, 0, 0},
    {"email_delivered", "message_id", REF_STRING, 0, 0},
    {"email_delivered", "source", REF_STRING, 0, 0},
    {"email_delivered", "delivered_at", REF_TIMESTAMP, 0, 0},
    {"email_clicked", "campaign_id", REF_STRING, 0, 0},
    {"email_clicked", "run_id", REF_STRING, 0, 0},
    {"email_clicked", "message_id", REF_STRING, 0, 0},
    {"email_clicked", "source", REF_STRING, 0, 0},
    {"email_clicked", "clicked_at", REF_TIMESTAMP, 0, 0},
    {"email_clicked", "url", REF_STRING, 1, 0},
    {"email_bounced", "campaign_id", REF_STRING, 0, 0},
    {"email_bounced", "run_id", REF_STRING, 0, 0},
    {"email_bounced", "message_id", REF_STRING, 0, 0},
    {"email_bounced", "source", REF_STRING, 0, 0},
    {"email_bounced", "bounced_at", REF_TIMESTAMP, 0, 0},
    {"email_bounced", "bounce", REF_STRING, 0, 0},
    {"email_bounced", "reason", REF_STRING, 1, 0},
    {"email_complained", "campaign_id", REF_STRING, 0, 0},
    {"email_complained", "run_id", REF_STRING, 0, 0},
    {"email_complained", "message_id", REF_STRING, 0, 0},
    {"email_complained", "source", REF_STRING, 0, 0},
    {"email_complained", "complained_at", REF_TIMESTAMP, 0, 0},
    {"email_unsubscribed", "campaign_id", REF_STRING, 0, 0},
    {"email_unsubscribed", "run_id", REF_STRING, 0, 0},
    {"email_unsubscribed", "message_id", REF_STRING, 0, 0},
    {"email_unsubscribed", "source", REF_STRING, 0, 0},
    {"email_unsubscribed", "unsubscribed_at", REF_TIMESTAMP, 0, 0},
};

/* Event contracts a test stores on top of the shipped ones (one process, one store). */
#define REF_MAX_EXTRA 16
static struct ref_decl ref_extra[REF_MAX_EXTRA];
static int ref_nextra;
static const char *ref_strict_event; /* an added contract with additional_properties false */

REF_FN void ref_decl_add(const char *owner, const char *name, int type, int optional, int integer)
{
    if (ref_nextra < REF_MAX_EXTRA)
        ref_extra[ref_nextra++] = (struct ref_decl){owner, name, type, optional, integer};
}

REF_FN void ref_decl_reset(void)
{
    ref_nextra = 0;
    ref_strict_event = NULL;
}

/* The i-th declaration, shipped first, then added ones; NULL past the end. */
REF_FN const struct ref_decl *ref_decl_at(size_t i)
{
    size_t n = sizeof ref_decls / sizeof ref_decls[0];

    if (i < n)
        return &ref_decls[i];
    return i - n < (size_t)ref_nextra ? &ref_extra[i - n] : NULL;
}

REF_FN int ref_decl_type(const char *owner, const char *name)
{
    const struct ref_decl *d;
    size_t i;

    for (i = 0; (d = ref_decl_at(i)) != NULL; i++)
        if (strcmp(d->owner, owner) == 0 && strcmp(d->name, name) == 0)
            return d->type;
    return REF_NONE;
}

REF_FN int ref_event_has_contract(const char *name)
{
    const struct ref_decl *d;
    size_t i;

    for (i = 0; (d = ref_decl_at(i)) != NULL; i++)
        if (strcmp(d->owner, name) == 0 && strcmp(name, "contact") != 0)
            return 1;
    return 0;
}

/* ---- Unicode simple case folding, from CaseFolding.txt ------------------------------- */

struct ref_fold_pair {
    uint32_t from, to;
};
static struct ref_fold_pair *ref_folds;
static size_t ref_nfolds;

static int ref_fold_cmp(const void *a, const void *b)
{
    uint32_t x = ((const struct ref_fold_pair *)a)->from,
             y = ((const struct ref_fold_pair *)b)->from;
    return x < y ? -1 : x > y;
}

/* Loads statuses C and S ("code; status; mapping; # name"). 0, or -1 if unreadable. */
REF_FN int ref_fold_load(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[512];
    size_t cap = 0;

    if (f == NULL)
        return -1;
    free(ref_folds);
    ref_folds = NULL;
    ref_nfolds = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long from, to;
        char status;
        char *p = line, *end;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        from = strtoul(p, &end, 16);
        if (end == p || *end != ';')
            continue;
        p = end + 1;
        while (*p == ' ')
            p++;
        status = *p++;
        if (status != 'C' && status != 'S')
            continue;
        if (*p != ';')
            continue;
        p++;
        to = strtoul(p, &end, 16);
        if (end == p)
            continue;
        while (*end == ' ')
            end++;
        if (*end != ';') /* more than one code point: a full mapping, never C or S */
            continue;
        if (ref_nfolds == cap) {
            cap = cap ? cap * 2 : 2048;
            ref_folds = realloc(ref_folds, cap * sizeof *ref_folds);
        }
        ref_folds[ref_nfolds].from = (uint32_t)from;
        ref_folds[ref_nfolds].to = (uint32_t)to;
        ref_nfolds++;
    }
    fclose(f);
    qsort(ref_folds, ref_nfolds, sizeof *ref_folds, ref_fold_cmp);
    return ref_nfolds ? 0 : -1;
}

REF_FN void ref_fold_free(void)
{
    free(ref_folds);
    ref_folds = NULL;
    ref_nfolds = 0;
}

REF_FN uint32_t ref_fold_cp(uint32_t cp)
{
    struct ref_fold_pair key = {cp, 0}, *hit;

    hit = bsearch(&key, ref_folds, ref_nfolds, sizeof *ref_folds, ref_fold_cmp);
    return hit ? hit->to : cp;
}

/* Decodes one well-formed UTF-8 sequence: its length, or 0 if s does not start one. */
REF_FN size_t ref_utf8_dec(const unsigned char *s, size_t n, uint32_t *cp)
{
    uint32_t c;
    size_t len, i;

    if (n == 0)
        return 0;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        len = 2;
        c = s[0] & 0x1F;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        len = 3;
        c = s[0] & 0x0F;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        len = 4;
        c = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF))) ||
        (len == 4 && (c < 0x10000 || c > 0x10FFFF)))
        return 0;
    *cp = c;
    return len;
}

REF_FN size_t ref_utf8_enc(uint32_t c, char *out)
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* The simple case fold of s[0..n): a new NUL-terminated string (caller frees); bytes
 * that do not start a valid sequence are copied as they are. */
REF_FN char *ref_fold(const char *s, size_t n, size_t *out_n)
{
    char *out = malloc(n * 4 + 1); /* a fold never needs more than 4 bytes per input byte */
    size_t i = 0, o = 0;

    while (i < n) {
        uint32_t cp;
        size_t len = ref_utf8_dec((const unsigned char *)s + i, n - i, &cp);
        if (len == 0) {
            out[o++] = s[i++];
            continue;
        }
        o += ref_utf8_enc(ref_fold_cp(cp), out + o);
        i += len;
    }
    out[o] = '\0';
    *out_n = o;
    return out;
}

/* ---- values ------------------------------------------------------------------------ */

REF_FN void ref_value_release(struct ref_value *v)
{
    free(v->s);
    free(v->fold);
    memset(v, 0, sizeof *v);
    v->type = REF_NONE;
}

REF_FN struct ref_value ref_str(const char *s, size_t n)
{
    struct ref_value v = {.type = REF_STRING, .n = n};
    v.s = malloc(n + 1);
    memcpy(v.s, s, n);
    v.s[n] = '\0';
    return v;
}

REF_FN struct ref_value ref_num(double d)
{
    struct ref_value v = {.type = REF_NUMBER, .d = d};
    return v;
}

REF_FN struct ref_value ref_bool(int b)
{
    struct ref_value v = {.type = REF_BOOLEAN, .i = b != 0};
    return v;
}

REF_FN struct ref_value ref_ts(int64_t ms)
{
    struct ref_value v = {.type = REF_TIMESTAMP, .i = ms};
    return v;
}

REF_FN struct ref_value ref_value_copy(const struct ref_value *v)
{
    struct ref_value c = *v;
    c.fold = NULL;
    c.nfold = 0;
    if (v->type == REF_STRING)
        c = ref_str(v->s, v->n);
    return c;
}

REF_FN int ref_value_equal(const struct ref_value *a, const struct ref_value *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case REF_STRING:
        return a->n == b->n && memcmp(a->s, b->s, a->n) == 0;
    case REF_NUMBER:
        return a->d == b->d;
    default:
        return a->i == b->i;
    }
}

REF_FN const char *ref_value_fold(struct ref_value *v, size_t *n)
{
    if (v->fold == NULL)
        v->fold = ref_fold(v->s, v->n, &v->nfold);
    *n = v->nfold;
    return v->fold;
}

REF_FN void ref_value_print(FILE *f, const struct ref_value *v)
{
    char iso[32];

    switch (v->type) {
    case REF_STRING: {
        json_t *j = json_stringn(v->s, v->n);
        char *t = json_dumps(j, JSON_ENCODE_ANY);
        fprintf(f, "%s", t);
        free(t);
        json_decref(j);
        break;
    }
    case REF_NUMBER:
        fprintf(f, "%.17g", v->d);
        break;
    case REF_BOOLEAN:
        fprintf(f, "%s", v->i ? "true" : "false");
        break;
    case REF_TIMESTAMP:
        time_format_iso(v->i, iso);
        fprintf(f, "ts(%s = %lld)", iso, (long long)v->i);
        break;
    default:
        fprintf(f, "(absent)");
    }
}

/* ---- key/value lists --------------------------------------------------------------- */

REF_FN struct ref_value *ref_kv_get(struct ref_kv *kv, int n, const char *key)
{
    int i;

    for (i = 0; i < n; i++)
        if (strcmp(kv[i].key, key) == 0)
            return &kv[i].v;
    return NULL;
}

/* Sets key to v (takes ownership of v). */
REF_FN void ref_kv_set(struct ref_kv **kv, int *n, int *cap, const char *key, struct ref_value v)
{
    struct ref_value *old = ref_kv_get(*kv, *n, key);

    if (old) {
        ref_value_release(old);
        *old = v;
        return;
    }
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        *kv = realloc(*kv, (size_t)*cap * sizeof **kv);
    }
    (*kv)[*n].key = strdup(key);
    (*kv)[*n].v = v;
    (*n)++;
}

REF_FN void ref_kv_free(struct ref_kv *kv, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        free(kv[i].key);
        ref_value_release(&kv[i].v);
    }
    free(kv);
}

/* ---- the data set ------------------------------------------------------------------- */

REF_FN void ref_db_init(struct ref_db *db)
{
    memset(db, 0, sizeof *db);
}

REF_FN void ref_db_release(struct ref_db *db)
{
    int i;

    for (i = 0; i < db->nc; i++) {
        struct ref_contact *c = &db->c[i];
        free(c->xid);
        free(c->email);
        ref_kv_free(c->attrs, c->nattrs);
        free(c->evs);
    }
    for (i = 0; i < db->nev; i++) {
        struct ref_event *ev = &db->ev[i];
        free(ev->event_id);
        free(ev->name);
        free(ev->source);
        ref_kv_free(ev->props, ev->nprops);
    }
    ref_kv_free(db->reg, db->nreg);
    free(db->c);
    free(db->ev);
    memset(db, 0, sizeof *db);
}

/* Adds a contact; returns its index. xid and email may be NULL. */
REF_FN int ref_contact_add(struct ref_db *db, const char *xid, const char *email, int consent,
                           int64_t created_at)
{
    struct ref_contact *c;

    if (db->nc == db->ccap) {
        db->ccap = db->ccap ? db->ccap * 2 : 64;
        db->c = realloc(db->c, (size_t)db->ccap * sizeof *db->c);
    }
    c = &db->c[db->nc];
    memset(c, 0, sizeof *c);
    c->xid = xid ? strdup(xid) : NULL;
    c->email = email ? strdup(email) : NULL;
    c->consent = consent;
    c->created_at = created_at;
    c->merged_into = -1;
    return db->nc++;
}

REF_FN void ref_contact_set(struct ref_db *db, int ci, const char *key, struct ref_value v)
{
    struct ref_contact *c = &db->c[ci];
    ref_kv_set(&c->attrs, &c->nattrs, &c->attrcap, key, v);
}

/* Adds an event with no properties yet; returns its index. */
REF_FN int ref_event_add(struct ref_db *db, const char *event_id, const char *name,
                         const char *source, int contact, int64_t at)
{
    struct ref_event *ev;

    if (db->nev == db->evcap) {
        db->evcap = db->evcap ? db->evcap * 2 : 256;
        db->ev = realloc(db->ev, (size_t)db->evcap * sizeof *db->ev);
    }
    ev = &db->ev[db->nev];
    memset(ev, 0, sizeof *ev);
    ev->event_id = strdup(event_id);
    ev->name = strdup(name);
    ev->source = strdup(source);
    ev->contact = contact;
    ev->at = at;
    return db->nev++;
}

REF_FN void ref_event_set(struct ref_db *db, int ei, const char *key, struct ref_value v)
{
    struct ref_event *ev = &db->ev[ei];

    ref_kv_set(&ev->props, &ev->nprops, &ev->propcap, key, v);
}

/* Drops every property of event ei (a source rewrote it). */
REF_FN void ref_event_clear(struct ref_db *db, int ei)
{
    struct ref_event *ev = &db->ev[ei];

    ref_kv_free(ev->props, ev->nprops);
    ev->props = NULL;
    ev->nprops = ev->propcap = 0;
}

/* Records an undeclared attribute's type unless it has one (first value wins). */
REF_FN void ref_db_register(struct ref_db *db, const char *name, int type)
{
    if (ref_kv_get(db->reg, db->nreg, name) == NULL) {
        struct ref_value v = {.type = type};
        ref_kv_set(&db->reg, &db->nreg, &db->regcap, name, v);
    }
}

/* The type of an attribute rule's field, REF_NONE if unknown. */
REF_FN int ref_field_type(const struct ref_db *db, const char *field)
{
    const struct ref_value *r;
    int t;

    if (strcmp(field, "email") == 0 || strcmp(field, "external_id") == 0 ||
        strcmp(field, "email_consent") == 0)
        return REF_STRING;
    if (strcmp(field, "created_at") == 0)
        return REF_TIMESTAMP;
    t = ref_decl_type("contact", field);
    if (t != REF_NONE)
        return t;
    r = ref_kv_get(db->reg, db->nreg, field);
    return r ? r->type : REF_NONE;
}

/* The contact whose events contact ci's are: ci, or the end of its merged_into chain. */
REF_FN int ref_owner(const struct ref_db *db, int ci)
{
    int hops = 0;

    while (db->c[ci].merged_into >= 0 && hops++ <= db->nc)
        ci = db->c[ci].merged_into;
    return ci;
}

/* Groups the live events by owner; call after every change and before evaluating. */
REF_FN void ref_db_index(struct ref_db *db)
{
    int i;

    for (i = 0; i < db->nc; i++)
        db->c[i].nevs = 0;
    for (i = 0; i < db->nev; i++) {
        struct ref_contact *c;
        if (db->ev[i].deleted)
            continue;
        c = &db->c[ref_owner(db, db->ev[i].contact)];
        if (c->nevs == c->evcap) {
            c->evcap = c->evcap ? c->evcap * 2 : 8;
            c->evs = realloc(c->evs, (size_t)c->evcap * sizeof *c->evs);
        }
        c->evs[c->nevs++] = i;
    }
}

REF_FN int ref_is_member(const struct ref_contact *c)
{
    return c->xid != NULL && !c->deleted && c->merged_into < 0;
}

/* ---- evaluation ----------------------------------------------------------------------- */

/* Byte order: memcmp over the common prefix, then the shorter first. */
REF_FN int ref_bytes_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c)
        return c < 0 ? -1 : 1;
    return an < bn ? -1 : an > bn;
}

/* A rule value as a typed value of type t (the generator only writes values that fit). */
REF_FN struct ref_value ref_rule_value(const json_t *j, int t)
{
    struct ref_value v = {.type = REF_NONE};
    int64_t ms;

    switch (t) {
    case REF_STRING:
        if (json_is_string(j))
            v = ref_str(json_string_value(j), json_string_length(j));
        break;
    case REF_NUMBER:
        if (json_is_number(j))
            v = ref_num(json_number_value(j));
        break;
    case REF_BOOLEAN:
        if (json_is_boolean(j))
            v = ref_bool(json_is_true(j));
        break;
    case REF_TIMESTAMP:
        if (json_is_string(j) &&
            time_parse_iso(json_string_value(j), json_string_length(j), &ms) == 0)
            v = ref_ts(ms);
        break;
    }
    return v;
}

/* The type a where condition takes from its value when no contract declares it. */
REF_FN int ref_infer_rule_value(const json_t *j)
{
    int64_t ms;

    if (json_is_array(j))
        j = json_array_get(j, 0);
    if (json_is_boolean(j))
        return REF_BOOLEAN;
    if (json_is_number(j))
        return REF_NUMBER;
    if (json_is_string(j) && time_parse_iso(json_string_value(j), json_string_length(j), &ms) == 0)
        return REF_TIMESTAMP;
    return REF_STRING;
}

/* -1, 0, 1 for two values of type t. */
REF_FN int ref_value_cmp(const struct ref_value *a, const struct ref_value *b)
{
    switch (a->type) {
    case REF_STRING:
        return ref_bytes_cmp(a->s, a->n, b->s, b->n);
    case REF_NUMBER:
        return a->d < b->d ? -1 : a->d > b->d;
    default:
        return a->i < b->i ? -1 : a->i > b->i;
    }
}

/* A compiled condition: field type, op and typed constants (needle folded once). */
struct ref_cond {
    int type;
    char op[16];
    struct ref_value *vals;
    int nvals;
    char *needle; /* contains: the folded value */
    size_t nneedle;
};

REF_FN void ref_cond_init(struct ref_cond *c, int type, const char *op, const json_t *value)
{
    size_t i;

    memset(c, 0, sizeof *c);
    c->type = type;
    snprintf(c->op, sizeof c->op, "%s", op);
    if (json_is_array(value)) {
        c->vals = calloc(json_array_size(value) + 1, sizeof *c->vals);
        for (i = 0; i < json_array_size(value); i++)
            c->vals[c->nvals++] = ref_rule_value(json_array_get(value, i), type);
    } else {
        c->vals = calloc(1, sizeof *c->vals);
        c->vals[0] = ref_rule_value(value, type);
        c->nvals = 1;
    }
    if (strcmp(op, "contains") == 0 && c->vals[0].type == REF_STRING)
        c->needle = ref_fold(c->vals[0].s, c->vals[0].n, &c->nneedle);
}

REF_FN void ref_cond_release(struct ref_cond *c)
{
    int i;

    for (i = 0; i < c->nvals; i++)
        ref_value_release(&c->vals[i]);
    free(c->vals);
    free(c->needle);
}

/* Does stored value v (NULL = absent) satisfy the condition? */
REF_FN int ref_cond_match(const struct ref_cond *c, struct ref_value *v)
{
    int i;

    if (v == NULL || v->type == REF_NONE || v->type != c->type)
        return strcmp(c->op, "neq") == 0; /* missing: only neq matches */
    if (strcmp(c->op, "contains") == 0) {
        size_t n;
        const char *h;
        if (c->type != REF_STRING || c->needle == NULL)
            return 0;
        h = ref_value_fold(v, &n);
        return c->nneedle == 0 || memmem(h, n, c->needle, c->nneedle) != NULL;
    }
    if (strcmp(c->op, "in") == 0) {
        for (i = 0; i < c->nvals; i++)
            if (c->vals[i].type == c->type && ref_value_cmp(v, &c->vals[i]) == 0)
                return 1;
        return 0;
    }
    if (c->vals[0].type != c->type)
        return 0; /* an invalid rule: the generator never writes one */
    if (strcmp(c->op, "eq") == 0)
        return ref_value_cmp(v, &c->vals[0]) == 0;
    if (strcmp(c->op, "neq") == 0)
        return ref_value_cmp(v, &c->vals[0]) != 0;
    if (c->type == REF_BOOLEAN)
        return 0;
    if (strcmp(c->op, "gte") == 0)
        return ref_value_cmp(v, &c->vals[0]) >= 0;
    if (strcmp(c->op, "lte") == 0)
        return ref_value_cmp(v, &c->vals[0]) <= 0;
    return 0;
}

static const char *const ref_consent_names[] = {"subscribed", "unsubscribed", "bounced",
                                                "complained"};

/* The value of an attribute field on contact c; *tmp holds built-ins (caller releases). */
REF_FN struct ref_value *ref_contact_field(struct ref_contact *c, const char *field,
                                           struct ref_value *tmp)
{
    *tmp = (struct ref_value){.type = REF_NONE};
    if (strcmp(field, "email") == 0) {
        if (c->email)
            *tmp = ref_str(c->email, strlen(c->email));
        return c->email ? tmp : NULL;
    }
    if (strcmp(field, "external_id") == 0) {
        if (c->xid)
            *tmp = ref_str(c->xid, strlen(c->xid));
        return c->xid ? tmp : NULL;
    }
    if (strcmp(field, "email_consent") == 0) {
        const char *s = ref_consent_names[c->consent & 3];
        *tmp = ref_str(s, strlen(s));
        return tmp;
    }
    if (strcmp(field, "created_at") == 0) {
        *tmp = ref_ts(c->created_at);
        return tmp;
    }
    return ref_kv_get(c->attrs, c->nattrs, field);
}

/* Fills out[i] for every contact i (members or not). */
REF_FN void ref_eval_node(struct ref_db *db, const json_t *node, int64_t now, unsigned char *out);

REF_FN void ref_eval_attribute(struct ref_db *db, const json_t *r, unsigned char *out)
{
    const char *field = json_string_value(json_object_get(r, "field"));
    struct ref_cond cond;
    int i;

    ref_cond_init(&cond, ref_field_type(db, field), json_string_value(json_object_get(r, "op")),
                  json_object_get(r, "value"));
    for (i = 0; i < db->nc; i++) {
        struct ref_value tmp, *v = ref_contact_field(&db->c[i], field, &tmp);
        out[i] = (unsigned char)ref_cond_match(&cond, v);
        ref_value_release(&tmp);
    }
    ref_cond_release(&cond);
}

REF_FN void ref_eval_behavior(struct ref_db *db, const json_t *r, int64_t now, unsigned char *out)
{
    const char *name = json_string_value(json_object_get(r, "event"));
    const char *op = json_string_value(json_object_get(r, "op"));
    const json_t *wd = json_object_get(r, "within_days"), *k = json_object_get(r, "count_gte");
    const json_t *where = json_object_get(r, "where");
    int64_t lo = wd ? now - (int64_t)json_integer_value(wd) * REF_DAY_MS : INT64_MIN;
    int64_t need = k ? (int64_t)json_integer_value(k) : 1;
    int did = strcmp(op, "did_event") == 0;
    struct ref_cond *conds = NULL;
    const char **props = NULL;
    size_t nconds = json_array_size(where), j;
    int i;

    if (nconds) {
        conds = calloc(nconds, sizeof *conds);
        props = calloc(nconds, sizeof *props);
    }
    for (j = 0; j < nconds; j++) {
        const json_t *w = json_array_get(where, j);
        const char *prop = json_string_value(json_object_get(w, "field"));
        int t = ref_decl_type(name, prop);
        if (t == REF_NONE)
            t = ref_infer_rule_value(json_object_get(w, "value"));
        props[j] = prop;
        ref_cond_init(&conds[j], t, json_string_value(json_object_get(w, "op")),
                      json_object_get(w, "value"));
    }
    for (i = 0; i < db->nc; i++) {
        struct ref_contact *c = &db->c[i];
        int64_t count = 0;
        int e;
        for (e = 0; e < c->nevs; e++) {
            struct ref_event *ev = &db->ev[c->evs[e]];
            int ok = 1;
            if (ev->deleted || strcmp(ev->name, name) != 0 || ev->at < lo || ev->at > now)
                continue;
            for (j = 0; j < nconds && ok; j++)
                ok = ref_cond_match(&conds[j], ref_kv_get(ev->props, ev->nprops, props[j]));
            count += ok;
        }
        out[i] = (unsigned char)(did ? count >= need : count == 0);
    }
    for (j = 0; j < nconds; j++)
        ref_cond_release(&conds[j]);
    free(conds);
    free(props);
}

REF_FN void ref_eval_node(struct ref_db *db, const json_t *node, int64_t now, unsigned char *out)
{
    const json_t *rules = json_object_get(node, "rules");
    int i;

    if (rules) {
        int is_and = strcmp(json_string_value(json_object_get(node, "op")), "AND") == 0;
        unsigned char *tmp = malloc((size_t)db->nc + 1);
        size_t k;
        memset(out, is_and ? 1 : 0, (size_t)db->nc);
        for (k = 0; k < json_array_size(rules); k++) {
            ref_eval_node(db, json_array_get(rules, k), now, tmp);
            for (i = 0; i < db->nc; i++)
                out[i] = is_and ? (out[i] && tmp[i]) : (out[i] || tmp[i]);
        }
        free(tmp);
        return;
    }
    if (strcmp(json_string_value(json_object_get(node, "type")), "attribute") == 0)
        ref_eval_attribute(db, node, out);
    else
        ref_eval_behavior(db, node, now, out);
}

static int ref_strp_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The members matching rules at now: external ids sorted by strcmp, borrowed from db;
 * caller frees the array. Call ref_db_index after changing db. */
REF_FN const char **ref_eval(struct ref_db *db, const json_t *rules, int64_t now, size_t *n)
{
    unsigned char *hit = malloc((size_t)db->nc + 1);
    const char **ids = malloc(((size_t)db->nc + 1) * sizeof *ids);
    int i;

    ref_eval_node(db, rules, now, hit);
    *n = 0;
    for (i = 0; i < db->nc; i++)
        if (hit[i] && ref_is_member(&db->c[i]))
            ids[(*n)++] = db->c[i].xid;
    free(hit);
    qsort(ids, *n, sizeof *ids, ref_strp_cmp);
    return ids;
}

/* Contact i's data, for failure reports: built-ins, attributes and the events named in
 * names (NULL = all). */
REF_FN void ref_contact_dump(FILE *f, const struct ref_db *db, int ci, const char *const *names,
                             int nnames)
{
    const struct ref_contact *c = &db->c[ci];
    char iso[32];
    int i, j;

    time_format_iso(c->created_at, iso);
    fprintf(f,
            "  contact #%d xid=%s email=%s consent=%s created_at=%s (%lld) deleted=%d "
            "merged_into=%d store_id=%lld\n",
            ci, c->xid ? c->xid : "(none)", c->email ? c->email : "(none)",
            ref_consent_names[c->consent & 3], iso, (long long)c->created_at, c->deleted,
            c->merged_into, (long long)c->store_id);
    for (i = 0; i < c->nattrs; i++) {
        fprintf(f, "    attr %s = ", c->attrs[i].key);
        ref_value_print(f, &c->attrs[i].v);
        fprintf(f, "\n");
    }
    for (i = 0; i < db->nev; i++) {
        const struct ref_event *ev = &db->ev[i];
        int want = names == NULL;
        if (ref_owner(db, ev->contact) != ci)
            continue;
        for (j = 0; j < nnames && !want; j++)
            want = strcmp(names[j], ev->name) == 0;
        if (!want)
            continue;
        time_format_iso(ev->at, iso);
        fprintf(f, "    event %s \"%s\" at %s (%lld)%s src=%s {", ev->event_id, ev->name, iso,
                (long long)ev->at, ev->deleted ? " DELETED" : "", ev->source);
        for (j = 0; j < ev->nprops; j++) {
            fprintf(f, "%s%s: ", j ? ", " : "", ev->props[j].key);
            ref_value_print(f, &ev->props[j].v);
        }
        fprintf(f, "}\n");
    }
}

#endif
