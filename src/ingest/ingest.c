/* ingest/ingest.c -- contact and event records: validate, type, upsert, dead-letter.
 *
 * DESIGN: the record is a JSON object of raw values (strings in text mode). A
 * record fails as a whole: it is kept in the dead-letter store with the first
 * problem found, and the batch goes on. Consent is sticky (consent_decide() in
 * src/consent/): a bulk source never moves a contact from an opt-out state back to
 * subscribed (the attempt is counted in consent_kept and the rest of the record
 * still applies). */
#include "ingest.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "ingest_int.h"
#include "../auth/auth.h"

/* Why a record of a deleted contact is refused, and the way back. */
#define CONTACT_DELETED_MSG                                                                        \
    "the contact was deleted: restore it (POST /api/v1/contacts/{external_id}/restore or engage "  \
    "contact restore), then replay"

/* External id -> contact id, for as many contacts as this (about 70 bytes each); past
 * it the rest are looked up in the store each time (a cache cleared when full would be
 * refilled and cleared again by every file that touches more contacts than it holds). */
#define CONTACT_CACHE_MAX 16000000

int source_is_bulk(enum source_kind k)
{
    /* Every ingestion path, the native POST /api/v1/contacts included: the way back to
     * subscribed is ingest_set_consent(), an explicit call with a reason (consent.h). */
    return k == SRC_CSV || k == SRC_SDK || k == SRC_SYNC || k == SRC_REPLAY || k == SRC_API;
}

void ingest_init(struct ingest *in, struct store *st, const struct config *cfg)
{
    memset(in, 0, sizeof *in);
    in->st = st;
    in->cfg = cfg;
    in->contracts_stamp = -1;
    strmap_init(&in->contact_ids);
    strmap_init(&in->event_names);
    strmap_init(&in->attr_types);
}

void ingest_release(struct ingest *in)
{
    if (store_in_tx(in->st))
        ingest_rollback(in);
    contract_set_free(in->contracts);
    strmap_release(&in->contact_ids);
    strmap_release(&in->event_names);
    strmap_release(&in->attr_types);
}

static int load_attr(void *ctx, const char *name, const char *type, const char *origin)
{
    struct ingest *in = ctx;
    enum vtype t;

    (void)origin;
    if (vtype_parse(type, &t) == 0)
        strmap_put(&in->attr_types, name, strlen(name), (int64_t)t);
    return 0;
}

void ingest_preload_contacts(struct ingest *in)
{
    in->preload_contacts = 1;
}

static int preload_one(void *ctx, const char *xid, int64_t id, int deleted)
{
    struct ingest *in = ctx;

    if (in->contact_ids.count >= CONTACT_CACHE_MAX)
        return 1; /* stop (error codes are negative): the rest are looked up when seen */
    strmap_put(&in->contact_ids, xid, strlen(xid), deleted ? -id : id);
    return 0;
}

int ingest_begin(struct ingest *in, struct err *e)
{
    int64_t stamp;
    int rc;

    rc = store_begin(in->st, e);
    if (rc)
        return rc;
    /* Someone else changed contacts since our last commit (a delete, a merge):
     * cached ids may be stale. */
    if (store_tx_contact_seq(in->st) != in->seen_contact_seq)
        strmap_clear(&in->contact_ids);
    if (in->preload_contacts) {
        in->preload_contacts = 0;
        strmap_clear(&in->contact_ids);
        rc = store_contact_ids(in->st, preload_one, in, e);
        if (rc == 1)
            rc = 0; /* stopped at the cache's size */
        if (rc) {
            ingest_rollback(in);
            return rc;
        }
    }
    rc = store_contracts_stamp(in->st, &stamp, e);
    if (rc == 0 && stamp != in->contracts_stamp) {
        struct contract_set *cs;
        rc = contract_set_load(in->st, in->cfg, &cs, e);
        if (rc == 0) {
            contract_set_free(in->contracts);
            in->contracts = cs;
            in->contracts_stamp = stamp;
        }
    }
    if (rc == 0 && !in->attr_types_loaded) {
        rc = store_attr_types(in->st, load_attr, in, e);
        in->attr_types_loaded = rc == 0;
    }
    if (rc)
        ingest_rollback(in);
    return rc;
}

int ingest_commit(struct ingest *in, struct err *e)
{
    int64_t seen = store_tx_contact_seq(in->st);
    int rc = store_commit(in->st, e);

    if (rc == 0)
        in->seen_contact_seq = seen;

    if (rc)
        ingest_rollback(in);
    return rc;
}

void ingest_rollback(struct ingest *in)
{
    store_rollback(in->st);
    /* Ids and types learnt in the lost transaction may not exist: forget them all. */
    strmap_clear(&in->contact_ids);
    strmap_clear(&in->event_names);
    strmap_clear(&in->attr_types);
    in->attr_types_loaded = 0;
}

/* ---- dead letters -------------------------------------------------------------- */

/* A letter's identity: kind, source and record text (and, for a record kept only in
 * part, its whole size): the same record rejected again while pending is kept once. */
static void fingerprint(const char *kind, const char *source, const char *raw, int64_t raw_bytes,
                        char out[33])
{
    unsigned char h[16];
    crypto_generichash_state s;

    crypto_generichash_init(&s, NULL, 0, sizeof h);
    crypto_generichash_update(&s, (const unsigned char *)kind, strlen(kind) + 1);
    crypto_generichash_update(&s, (const unsigned char *)source, strlen(source) + 1);
    crypto_generichash_update(&s, (const unsigned char *)raw, strlen(raw));
    if (raw_bytes > 0) {
        char n[32];
        int len = snprintf(n, sizeof n, "%c%lld", '\0', (long long)raw_bytes);
        crypto_generichash_update(&s, (const unsigned char *)n, (size_t)len);
    }
    crypto_generichash_final(&s, h, sizeof h);
    sodium_bin2hex(out, 33, h, sizeof h);
}

/* Records the rejection (or, when replaying, updates the dead letter) and sets *out.
 * raw: the record's text, or only its first bytes when raw_bytes > 0 (its whole size).
 * The store keeps at most STORE_REJECTED_MAX_RAW bytes of it. */
static int reject_text(struct ingest *in, const struct ingest_ctx *cx, const char *kind,
                       const char *raw, int64_t raw_bytes, const char *reason, const char *field,
                       const char *msg, enum ingest_outcome *out, struct err *e)
{
    char origin[512];
    int rc;

    /* Messages quote user data: keep them valid UTF-8 wherever they are shown. */
    snprintf(in->last_reason, sizeof in->last_reason, "%s", reason);
    snprintf(in->last_field, sizeof in->last_field, "%s", field ? field : "");
    snprintf(in->last_msg, sizeof in->last_msg, "%s", msg);
    if (cx->line > 0)
        snprintf(origin, sizeof origin, "%s:%lld", cx->origin ? cx->origin : "",
                 (long long)cx->line);
    else
        snprintf(origin, sizeof origin, "%s", cx->origin ? cx->origin : "");
    utf8_sanitize(in->last_field);
    utf8_sanitize(in->last_msg);
    utf8_sanitize(origin);
    field = in->last_field;
    msg = in->last_msg;
    in->stats.rejected++;
    *out = INGEST_REJECTED;
    if (in->replay_id) {
        rc = store_rejected_update(in->st, in->replay_id, "pending", reason, field, msg, 0, e);
    } else {
        char fp[33];
        struct store_rejected r = {
            .created_at = clock_now_ms(),
            .source = cx->source,
            .kind = kind,
            .reason = reason,
            .field = field,
            .message = msg,
            .origin = origin,
            .raw = raw,
            .fingerprint = fp,
            .once = cx->reject_once,
            .truncated = raw_bytes > 0,
            .raw_bytes = raw_bytes,
        };
        fingerprint(kind, cx->source, raw, raw_bytes, fp);
        rc = store_rejected_add(in->st, &r, NULL, e);
    }
    return rc;
}

int ingest_reject(struct ingest *in, const struct ingest_ctx *cx, const char *kind,
                  const json_t *rec, const char *reason, const char *field, const char *msg,
                  enum ingest_outcome *out, struct err *e)
{
    /* any value; none at all is a bug upstream, kept visible rather than fatal */
    char *raw = rec ? json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)
                    : xstrdup("{\"unrecorded\":true}");
    int rc;

    ASSERT(raw);
    rc = reject_text(in, cx, kind, raw, 0, reason, field, msg, out, e);
    free(raw);
    return rc;
}

int ingest_reject_partial(struct ingest *in, const struct ingest_ctx *cx, const char *kind,
                          const char *raw, int64_t raw_bytes, const char *reason, const char *field,
                          const char *msg, enum ingest_outcome *out, struct err *e)
{
    ASSERT(raw_bytes > 0);
    return reject_text(in, cx, kind, raw, raw_bytes, reason, field, msg, out, e);
}

/* ---- helpers ------------------------------------------------------------------------ */

/* A string member, or NULL when absent, null or (in text mode) empty. */
static const char *get_str(const json_t *rec, const char *key, int *bad)
{
    json_t *v = json_object_get(rec, key);

    if (v == NULL || json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        *bad = 1;
        return NULL;
    }
    return json_string_length(v) ? json_string_value(v) : NULL;
}

const char *ingest_value_check(size_t n, size_t max, char *msg, size_t msgcap)
{
    if (n <= max)
        return NULL;
    snprintf(msg, msgcap, "value of %zu bytes exceeds [ingest] max_value_bytes (%zu)", n, max);
    return "value_too_large";
}

/* 1 with *n the size of the first string in v longer than max, and its path appended to
 * path (objects and arrays walked: "address/line1", "tags/2"); 0 when there is none. */
static int find_long_string(const json_t *v, size_t max, char *path, size_t cap, size_t *n)
{
    size_t len = strlen(path), i;
    const char *k;
    json_t *m;

    if (json_is_string(v)) {
        *n = json_string_length(v);
        return *n > max;
    }
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, m) {
            snprintf(path + len, cap - len, "%s%s", len ? "/" : "", k);
            if (find_long_string(m, max, path, cap, n))
                return 1;
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, m) {
            snprintf(path + len, cap - len, "%s%zu", len ? "/" : "", i);
            if (find_long_string(m, max, path, cap, n))
                return 1;
        }
    }
    path[len] = '\0';
    return 0;
}

/* ingest_value_check() over every string of a record, first of all its checks: the
 * members of its bag (attributes, properties) are named as the other checks name them
 * ("bio", not "attributes/bio"), and as a CSV column is. */
static const char *record_value_check(const json_t *rec, const char *bag, size_t max, char *field,
                                      size_t fieldcap, char *msg, size_t msgcap)
{
    const char *k;
    json_t *v;
    size_t n;

    json_object_foreach((json_t *)rec, k, v) {
        snprintf(field, fieldcap, "%s", strcmp(k, bag) == 0 ? "" : k);
        if (find_long_string(v, max, field, fieldcap, &n))
            return ingest_value_check(n, max, msg, msgcap);
    }
    field[0] = '\0';
    return NULL;
}

static size_t value_cap(size_t configured)
{
    return configured ? configured : (size_t)CONFIG_MAX_VALUE_BYTES;
}

int ingest_id_ok(const char *s, size_t max)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > max)
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20)
            return 0;
    return 1;
}

/* Types undeclared attribute values by the registry. Names the registry does not
 * know yet are typed by inference and listed in new_types, to be recorded only once
 * the whole record has passed (a rejected row must not fix a type). */
static const char *type_undeclared_attrs(struct ingest *in, json_t *typed,
                                         const struct contract *cc, json_t *new_types, char *field,
                                         size_t fieldcap, char *msg, size_t msgcap, struct err *e,
                                         int *rc)
{
    const char *k;
    json_t *v;
    void *tmp;

    *rc = 0;
    json_object_foreach_safe(typed, tmp, k, v) {
        int64_t t;
        json_t *tv;
        size_t kl = strlen(k);
        if (cc && contract_prop_type(cc, k) >= 0)
            continue;
        if (!strmap_get(&in->attr_types, k, kl, &t)) {
            char held[16];
            enum vtype vt;
            *rc = store_attr_type_get(in->st, k, held, e);
            if (*rc == 0 && vtype_parse(held, &vt) == 0) {
                t = (int64_t)vt;
                strmap_put(&in->attr_types, k, kl, t);
            } else if (*rc == 0 || *rc == E_NOTFOUND) {
                *rc = 0;
                t = (int64_t)value_infer(v);
                json_object_set_new(new_types, k, json_integer(t));
            } else {
                return NULL;
            }
        }
        tv = value_coerce(v, (enum vtype)t, msg, msgcap);
        if (tv == NULL) {
            size_t ml = strlen(msg);
            snprintf(field, fieldcap, "%s", k);
            snprintf(msg + ml, msgcap - ml,
                     " (attribute %s is typed %s by its first value; "
                     "declare it in the contact contract to change that)",
                     k, vtype_name((enum vtype)t));
            return "invalid_type";
        }
        json_object_set_new(typed, k, tv);
    }
    return NULL;
}

/* Records the types of attributes first seen in a record that passed. */
static int register_types(struct ingest *in, const json_t *new_types, struct err *e)
{
    const char *k;
    json_t *v;
    int rc;

    json_object_foreach((json_t *)new_types, k, v) {
        char held[16];
        enum vtype vt;
        rc = store_attr_type_put(in->st, k, vtype_name((enum vtype)json_integer_value(v)),
                                 "inferred", held, e);
        if (rc)
            return rc;
        if (vtype_parse(held, &vt) == 0)
            strmap_put(&in->attr_types, k, strlen(k), (int64_t)vt);
    }
    return 0;
}

static int attr_name_ok(const char *k)
{
    size_t n = strlen(k), i;

    if (n == 0 || n > STORE_MAX_NAME)
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x20 || k[i] == '"')
            return 0;
    return 1;
}

static int consent_change(struct ingest *in, const struct ingest_ctx *cx, struct store_contact *c,
                          enum consent_state to, int *changed, struct err *e)
{
    int rc;

    switch (consent_decide(c->consent, to,
                           source_is_bulk(cx->kind) ? CONSENT_VIA_BULK : CONSENT_VIA_EXPLICIT)) {
    case CONSENT_SAME:
        return 0;
    case CONSENT_KEEP:
        in->stats.consent_kept++; /* sticky opt-out */
        return 0;
    case CONSENT_APPLY:
        break;
    }
    rc = store_consent_log(in->st, c->id, (int)c->consent, (int)to, cx->source,
                           source_is_bulk(cx->kind) ? "bulk update" : NULL, cx->received_at, e);
    if (rc == 0) {
        c->consent = to;
        *changed = 1;
    }
    return rc;
}

/* ---- contacts ------------------------------------------------------------------------ */

int ingest_contact(struct ingest *in, const struct ingest_ctx *cx, const json_t *rec,
                   enum ingest_outcome *out, struct err *e)
{
    const struct contract *cc = in->contracts ? contract_set_contact(in->contracts) : NULL;
    const char *xid, *email, *consent_s, *why, *k;
    char field[160] = "", msg[256] = "";
    json_t *attrs_raw, *props, *typed = NULL, *v, *new_types = NULL;
    struct store_contact c;
    enum consent_state consent = in->cfg->default_consent;
    int bad = 0, rc = 0, changed = 0, have_consent = 0;

    in->stats.read++;
    store_contact_init(&c);
    why = record_value_check(rec, "attributes", value_cap((size_t)in->cfg->max_value_bytes), field,
                             sizeof field, msg, sizeof msg);
    if (why)
        return ingest_reject(in, cx, "contact", rec, why, field, msg, out, e);
    xid = get_str(rec, "external_id", &bad);
    if (xid == NULL || !ingest_id_ok(xid, STORE_MAX_EXTERNAL_ID))
        return ingest_reject(
            in, cx, "contact", rec, xid || bad ? "invalid_id" : "missing_field", "external_id",
            xid || bad ? "must be a string of 1 to 255 bytes without control characters"
                       : "is required",
            out, e);
    email = get_str(rec, "email", &bad);
    if (bad)
        return ingest_reject(in, cx, "contact", rec, "invalid_type", "email", "must be a string",
                             out, e);
    consent_s = get_str(rec, "email_consent", &bad);
    if (consent_s || bad) {
        if (bad || consent_parse(consent_s, &consent)) {
            snprintf(msg, sizeof msg,
                     "must be subscribed, unsubscribed, bounced or complained, "
                     "got \"%.40s\"",
                     consent_s ? consent_s : "(not a string)");
            return ingest_reject(in, cx, "contact", rec, "invalid_value", "email_consent", msg, out,
                                 e);
        }
        have_consent = 1;
    }
    attrs_raw = json_object_get(rec, "attributes");
    if (attrs_raw && !json_is_object(attrs_raw))
        return ingest_reject(in, cx, "contact", rec, "invalid_type", "attributes",
                             "must be an object", out, e);
    /* email is a built-in column, checked with the contract's email spec if it has one. */
    props = attrs_raw ? json_deep_copy(attrs_raw) : json_object();
    json_object_foreach(props, k, v) {
        if (!attr_name_ok(k) || strcmp(k, "external_id") == 0 || strcmp(k, "email_consent") == 0) {
            snprintf(field, sizeof field, "%s", k); /* k belongs to props: copy it first */
            json_decref(props);
            return ingest_reject(
                in, cx, "contact", rec, "invalid_name", field,
                "is not a valid attribute name (1 to 128 bytes, no control characters; "
                "external_id and email_consent are reserved)",
                out, e);
        }
        if (cx->text_mode && json_is_string(v) && json_string_length(v) == 0)
            json_object_set_new(props, k, json_null()); /* an empty cell is absent */
    }
    json_object_del(props, "email");
    if (email)
        json_object_set_new(props, "email", json_string(email));
    if (cc) {
        why = contract_apply(cc, props, &typed, field, sizeof field, msg, sizeof msg);
        json_decref(props);
        if (why)
            return ingest_reject(in, cx, "contact", rec, why, field, msg, out, e);
    } else {
        void *tmp;
        typed = props;
        json_object_foreach_safe(typed, tmp, k, v) /* drop nulls left by empty cells */
            if (json_is_null(v))
                json_object_del(typed, k);
    }
    json_object_del(typed, "email");
    if (email && (!cc || contract_prop_type(cc, "email") < 0) && !value_email_ok(email)) {
        json_decref(typed);
        snprintf(msg, sizeof msg, "is not an email address: \"%.60s\"", email);
        return ingest_reject(in, cx, "contact", rec, "invalid_email", "email", msg, out, e);
    }
    new_types = json_object();
    why = type_undeclared_attrs(in, typed, cc, new_types, field, sizeof field, msg, sizeof msg, e,
                                &rc);
    if (rc || why) {
        json_decref(typed);
        json_decref(new_types);
        return rc ? rc : ingest_reject(in, cx, "contact", rec, why, field, msg, out, e);
    }

    rc = store_contact_get_by_xid(in->st, xid, &c, e);
    if (rc == E_NOTFOUND) {
        err_clear(e);
        rc = register_types(in, new_types, e);
        if (rc)
            goto out;
        c.external_id = xstrdup(xid);
        c.email = email ? xstrdup(email) : NULL;
        c.attrs = typed;
        typed = NULL;
        c.consent = consent;
        c.created_at = c.updated_at = cx->received_at;
        rc = store_contact_insert(in->st, &c, e);
        if (rc == 0)
            rc = store_consent_log(in->st, c.id, -1, (int)c.consent, cx->source,
                                   have_consent ? NULL : "default", cx->received_at, e);
        if (rc == 0) {
            strmap_put(&in->contact_ids, xid, strlen(xid), c.id);
            in->stats.inserted++;
            in->stats.contacts_created++;
            *out = INGEST_INSERTED;
        }
        goto out;
    }
    if (rc)
        goto out;
    if (c.deleted) {
        rc = ingest_reject(in, cx, "contact", rec, "contact_deleted", "external_id",
                           CONTACT_DELETED_MSG, out, e);
        goto out;
    }
    rc = register_types(in, new_types, e);
    if (rc)
        goto out;
    json_object_foreach(typed, k, v) {
        json_t *old = json_object_get(c.attrs, k);
        if (old == NULL || !json_equal(old, v)) {
            json_object_set(c.attrs, k, v);
            changed = 1;
        }
    }
    if (email && (c.email == NULL || strcmp(c.email, email) != 0)) {
        free(c.email);
        c.email = xstrdup(email);
        changed = 1;
    }
    if (have_consent) {
        rc = consent_change(in, cx, &c, consent, &changed, e);
        if (rc)
            goto out;
    }
    if (changed) {
        c.updated_at = cx->received_at;
        rc = store_contact_update(in->st, &c, e);
        if (rc == 0) {
            in->stats.updated++;
            *out = INGEST_UPDATED;
        }
    } else {
        in->stats.duplicates++;
        *out = INGEST_UNCHANGED;
    }
out:
    json_decref(typed);
    json_decref(new_types);
    store_contact_release(&c);
    return rc;
}

/* ---- events --------------------------------------------------------------------------- */

/* Finds or creates the contact for an event. *id = 0 (rc 0) when it is deleted. */
/* The contact an event goes to, created if new; *anonymous when it has no external id
 * (yet): such events are stored so that a merge can find them. */
static int event_contact(struct ingest *in, const struct ingest_ctx *cx, const char *xid,
                         uint64_t xid_hash, const char *anon, int64_t *id, int *anonymous,
                         struct err *e)
{
    struct store_contact c;
    int64_t cached;
    int deleted = 0, rc;

    *anonymous = 0;
    if (xid) {
        size_t n = strlen(xid);
        uint64_t h = xid_hash ? xid_hash : hash64(xid, n);
        if (strmap_get_h(&in->contact_ids, xid, n, h, &cached)) {
            *id = cached > 0 ? cached : 0;
            return 0;
        }
        rc = store_contact_lookup(in->st, xid, id, &deleted, e);
        if (rc == 0) {
            if (in->contact_ids.count < CONTACT_CACHE_MAX)
                strmap_put_h(&in->contact_ids, xid, n, h, deleted ? -*id : *id);
            if (deleted)
                *id = 0;
            return 0;
        }
        if (rc != E_NOTFOUND)
            return rc;
    } else {
        store_contact_init(&c);
        rc = store_contact_get_by_anon(in->st, anon, &c, e);
        if (rc == 0) {
            *id = c.deleted && c.merged_into ? c.merged_into : c.deleted ? 0 : c.id;
            *anonymous = !c.deleted && c.external_id == NULL;
            store_contact_release(&c);
            return 0;
        }
        if (rc != E_NOTFOUND)
            return rc;
        err_clear(e);
    }
    /* New contact: the event's source creates it with the default consent. */
    store_contact_init(&c);
    c.external_id = xid ? xstrdup(xid) : NULL;
    c.attrs = json_object();
    c.consent = in->cfg->default_consent;
    c.created_at = c.updated_at = cx->received_at;
    rc = store_contact_insert(in->st, &c, e);
    if (rc == 0)
        rc = store_consent_log(in->st, c.id, -1, (int)c.consent, cx->source, "default",
                               cx->received_at, e);
    if (rc == 0 && anon)
        rc = store_anon_link(in->st, anon, c.id, cx->received_at, e);
    if (rc == 0) {
        *id = c.id;
        *anonymous = xid == NULL;
        if (xid)
            strmap_put(&in->contact_ids, xid, strlen(xid), c.id);
        in->stats.contacts_created++;
    }
    store_contact_release(&c);
    return rc;
}

static int event_name_id(struct ingest *in, const char *name, int create, int64_t *id,
                         struct err *e)
{
    size_t n = strlen(name);
    int rc;

    if (strmap_get(&in->event_names, name, n, id))
        return 0;
    rc = store_event_name_id(in->st, name, create, id, e);
    if (rc == 0 && *id)
        strmap_put(&in->event_names, name, n, *id);
    return rc;
}

int ingest_name_ok(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > STORE_MAX_NAME)
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20)
            return 0;
    return 1;
}

/* ---- canonical event keys ---- */

struct event_key {
    crypto_generichash_state h;
};

static void key_field(struct event_key *k, const char *tag, const char *v, size_t n)
{
    crypto_generichash_update(&k->h, (const unsigned char *)tag, strlen(tag));
    crypto_generichash_update(&k->h, (const unsigned char *)v, n);
    crypto_generichash_update(&k->h, (const unsigned char *)"\x1f", 1);
}

struct event_key *event_key_new(const char *who, const char *name, int64_t occurred_at)
{
    struct event_key *k = xmalloc(sizeof *k);
    char t[32];

    crypto_generichash_init(&k->h, NULL, 0, 16);
    key_field(k, "c\x1e", who, strlen(who));
    key_field(k, "e\x1e", name, strlen(name));
    snprintf(t, sizeof t, "%lld", (long long)occurred_at);
    key_field(k, "t\x1e", t, strlen(t));
    return k;
}

void event_key_prop(struct event_key *k, const char *key, size_t kn, int is_text, const char *v,
                    size_t vn)
{
    crypto_generichash_update(&k->h, (const unsigned char *)"p\x1e", 2);
    crypto_generichash_update(&k->h, (const unsigned char *)key, kn);
    key_field(k, is_text ? "\x1es\x1e" : "\x1ej\x1e", v, vn);
}

char *event_key_finish(struct event_key *k)
{
    unsigned char h[16];
    char hex[33];

    crypto_generichash_final(&k->h, h, sizeof h);
    free(k);
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    return xasprintf("k:%s", hex);
}

static int cmp_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The JSON path's key: properties sorted by name; empty strings and nulls are absent. */
static char *derive_event_id(const json_t *rec, const char *name, const char *who,
                             int64_t occurred_at)
{
    json_t *props = json_object_get(rec, "properties");
    struct event_key *k = event_key_new(who, name, occurred_at);
    const char **keys = NULL;
    size_t n = 0, i;
    const char *key;
    json_t *v;

    if (json_is_object(props)) {
        keys = xcalloc(json_object_size(props) + 1, sizeof *keys);
        json_object_foreach(props, key, v)
            if (!json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0))
                keys[n++] = key;
        qsort(keys, n, sizeof *keys, cmp_keys);
    }
    for (i = 0; i < n; i++) {
        v = json_object_get(props, keys[i]);
        if (json_is_string(v)) {
            event_key_prop(k, keys[i], strlen(keys[i]), 1, json_string_value(v),
                           json_string_length(v));
        } else {
            char *t = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
            event_key_prop(k, keys[i], strlen(keys[i]), 0, t, strlen(t));
            free(t);
        }
    }
    free(keys);
    return event_key_finish(k);
}

/* Compact JSON with sorted keys: the stored form of properties. */
static char *props_dump(const json_t *typed)
{
    char *t = json_dumps(typed, JSON_COMPACT | JSON_SORT_KEYS);

    ASSERT(t);
    return t;
}

/* Types undeclared event properties (events have no registry: each value is typed by itself). */
static void type_undeclared_props(json_t *typed, const struct contract *c, int text_mode)
{
    const char *k;
    json_t *v;
    void *tmp;

    json_object_foreach_safe(typed, tmp, k, v) {
        char msg[64];
        json_t *tv;
        if (json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0 && text_mode)) {
            json_object_del(typed, k);
            continue;
        }
        if (!text_mode || (c && contract_prop_type(c, k) >= 0))
            continue;
        tv = value_coerce(v, value_infer(v), msg, sizeof msg);
        if (tv)
            json_object_set_new(typed, k, tv);
    }
}

/* Sets the rejection of a prepared event; returns 0 for the caller's convenience. */
static int prep_reject(struct prepared_event *p, const char *reason, const char *field,
                       const char *msg)
{
    p->rejected = 1;
    snprintf(p->reason, sizeof p->reason, "%s", reason);
    snprintf(p->field, sizeof p->field, "%s", field ? field : "");
    snprintf(p->msg, sizeof p->msg, "%s", msg);
    return 0;
}

/* A prepared event carries its raw record as JSON text (CSV fast path) or as JSON. */
static int reject_prepared(struct ingest *in, const struct ingest_ctx *cx, struct prepared_event *p,
                           const char *reason, const char *field, const char *msg,
                           enum ingest_outcome *out, struct err *e)
{
    json_t *rec = p->rec;
    int rc;

    if (p->raw_bytes > 0) /* only the first bytes of the record (a CSV row past a cap) */
        return ingest_reject_partial(in, cx, "event", p->raw, p->raw_bytes, reason, field, msg, out,
                                     e);
    if (rec == NULL && p->raw == NULL && p->raw_fn)
        p->raw = p->raw_fn(p->raw_ctx, p);
    if (rec == NULL)
        rec = json_loads(p->raw ? p->raw : "{}", JSON_ALLOW_NUL, NULL);
    if (rec == NULL) /* never expected: keep what there is rather than lose the row */
        rec = json_pack("{s:s?}", "unparsed", p->raw);
    rc = ingest_reject(in, cx, "event", rec, reason, field, msg, out, e);
    if (rec != p->rec)
        json_decref(rec);
    return rc;
}

void prepared_event_reject(struct prepared_event *p, const char *reason, const char *field,
                           const char *msg)
{
    prep_reject(p, reason, field, msg);
}

void prepared_event_release(struct prepared_event *p)
{
    if (!p->in_arena) {
        free(p->name);
        free(p->xid);
        free(p->anon);
        free(p->event_id);
        free(p->props);
        free(p->cells);
    }
    free(p->raw);
    json_decref(p->rec);
    memset(p, 0, sizeof *p);
}

int ingest_event_prepare_fast(const struct contract_set *cs, const struct ingest_parts *in,
                              struct prepared_event *p)
{
    const struct contract *c;

    /* No string in props is longer than props (ids are at most 255 bytes): past that, the
     * general path checks each value, and refuses the same way. */
    if (in->name == NULL || !ingest_name_ok(in->name) ||
        strlen(in->props) > value_cap(in->max_value_bytes))
        return 0;
    c = cs ? contract_set_event(cs, in->name) : NULL;
    if (c != in->typed_by || (in->xid == NULL && in->anon == NULL) ||
        (in->xid && !ingest_id_ok(in->xid, STORE_MAX_EXTERNAL_ID)) ||
        (in->anon && !ingest_id_ok(in->anon, STORE_MAX_EXTERNAL_ID)) || in->event_id == NULL ||
        !ingest_id_ok(in->event_id, STORE_MAX_EVENT_ID))
        return 0;
    memset(p, 0, sizeof *p);
    p->in_arena = 1;
    p->unvalidated = c == NULL; /* no contract: the store applies the unknown-event policy */
    p->contract_version = c ? contract_version(c) : 0;
    p->name = (char *)in->name;
    p->xid = (char *)in->xid;
    p->anon = (char *)in->anon;
    p->event_id = (char *)in->event_id;
    p->props = (char *)in->props;
    p->occurred_at = in->occurred_at;
    p->raw_fn = in->raw_fn;
    p->raw_ctx = in->raw_ctx;
    p->xid_hash = in->xid ? hash64(in->xid, strlen(in->xid)) : 0;
    p->key_hash = store_event_key_hash(in->event_id);
    return 1;
}

int ingest_event_prepare(const struct contract_set *cs, const struct ingest_ctx *cx, json_t *rec,
                         struct prepared_event *p)
{
    const struct contract *c;
    const char *name, *xid, *anon, *ts, *eid, *why;
    char field[160] = "", msg[256] = "";
    json_t *props_raw, *typed = NULL;
    int bad = 0;

    memset(p, 0, sizeof *p);
    p->rec = json_incref(rec);
    why = record_value_check(rec, "properties", value_cap(cx->max_value_bytes), field, sizeof field,
                             msg, sizeof msg);
    if (why)
        return prep_reject(p, why, field, msg);
    name = get_str(rec, "event", &bad);
    if (name == NULL || !ingest_name_ok(name))
        return prep_reject(p, name || bad ? "invalid_name" : "missing_field", "event",
                           name || bad ? "must be a name of 1 to 128 bytes" : "is required");
    xid = get_str(rec, "external_id", &bad);
    anon = get_str(rec, "anonymous_id", &bad);
    if (bad || (xid && !ingest_id_ok(xid, STORE_MAX_EXTERNAL_ID)) ||
        (anon && !ingest_id_ok(anon, STORE_MAX_EXTERNAL_ID)))
        return prep_reject(p, "invalid_id", xid ? "external_id" : "anonymous_id",
                           "must be a string of 1 to 255 bytes without control characters");
    if (xid == NULL && anon == NULL)
        return prep_reject(p, "missing_field", "external_id", "is required (or anonymous_id)");
    props_raw = json_object_get(rec, "properties");
    if (props_raw && !json_is_object(props_raw))
        return prep_reject(p, "invalid_type", "properties", "must be an object");
    c = cs ? contract_set_event(cs, name) : NULL;
    if (c) {
        json_t *src = json_object();
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)props_raw, k, v) /* in text mode an empty cell is absent */
            if (!(cx->text_mode && json_is_string(v) && json_string_length(v) == 0))
                json_object_set(src, k, v);
        why = contract_apply(c, src, &typed, field, sizeof field, msg, sizeof msg);
        json_decref(src);
        if (why)
            return prep_reject(p, why, field, msg);
        p->contract_version = contract_version(c);
    } else {
        typed = props_raw ? json_deep_copy(props_raw) : json_object();
        p->unvalidated = 1; /* the store phase applies the unknown-event policy */
    }
    type_undeclared_props(typed, c, cx->text_mode);

    ts = get_str(rec, "occurred_at", &bad);
    if (bad) {
        prep_reject(p, "invalid_timestamp", "occurred_at", "must be an ISO-8601 timestamp string");
        goto out;
    }
    if (ts) {
        if (value_parse_time(ts, strlen(ts), &p->occurred_at)) {
            snprintf(msg, sizeof msg, "expected an ISO-8601 timestamp, got \"%.40s\"", ts);
            prep_reject(p, "invalid_timestamp", "occurred_at", msg);
            goto out;
        }
    } else if (c && contract_occurred_at(c) &&
               json_is_string(json_object_get(typed, contract_occurred_at(c)))) {
        const char *v = json_string_value(json_object_get(typed, contract_occurred_at(c)));
        if (time_parse_iso(v, strlen(v), &p->occurred_at)) {
            prep_reject(p, "invalid_timestamp", contract_occurred_at(c), "is out of range");
            goto out;
        }
    } else if (cx->kind == SRC_SDK || cx->kind == SRC_API || cx->received_is_time) {
        p->occurred_at = cx->received_at;
    } else {
        prep_reject(p, "missing_field", "occurred_at",
                    c && contract_occurred_at(c)
                        ? "is required (or the contract's occurred_at property)"
                        : "is required");
        goto out;
    }
    eid = get_str(rec, "event_id", &bad);
    if (bad || (eid && !ingest_id_ok(eid, STORE_MAX_EVENT_ID))) {
        prep_reject(p, "invalid_id", "event_id",
                    "must be a string of 1 to 255 bytes without control characters");
        goto out;
    }
    p->event_id = eid ? xstrdup(eid) : derive_event_id(rec, name, xid ? xid : anon, p->occurred_at);
    p->name = xstrdup(name);
    p->xid = xid ? xstrdup(xid) : NULL;
    p->anon = anon ? xstrdup(anon) : NULL;
    p->props = props_dump(typed);
    p->xid_hash = p->xid ? hash64(p->xid, strlen(p->xid)) : 0;
    p->key_hash = store_event_key_hash(p->event_id);
out:
    json_decref(typed);
    return 0;
}

/* A name registered for an event that was then not stored (a duplicate event_id, an
 * owned id of another source) is taken back: a name is known only once data has it. */
static int forget_name(struct ingest *in, int64_t name_id, struct err *e)
{
    strmap_clear(&in->event_names); /* the cache refills from the store */
    return store_event_name_drop(in->st, name_id, e);
}

void ingest_event_prefetch(struct ingest *in, const struct prepared_event *p, int stage)
{
    if (p->rejected)
        return;
    if (p->xid && p->xid_hash)
        strmap_prefetch(&in->contact_ids, p->xid_hash, stage);
    if (stage == 0 && p->key_hash) {
        const struct store_caps *caps = store_caps(in->st);
        if (caps->event_prefetch)
            caps->event_prefetch(in->st, p->key_hash);
    }
}

int ingest_event_store(struct ingest *in, const struct ingest_ctx *cx, struct prepared_event *p,
                       enum ingest_outcome *out, struct err *e)
{
    struct store_event ev = {0};
    int64_t contact_id = 0, name_id = 0;
    char msg[256];
    int rc, inserted = 0, created_name = 0, anonymous = 0;

    in->stats.read++;
    if (p->rejected)
        return reject_prepared(in, cx, p, p->reason, p->field, p->msg, out, e);
    if (p->unvalidated) {
        rc = event_name_id(in, p->name, 0, &name_id, e);
        if (rc)
            return rc;
        if (name_id == 0 && in->cfg->unknown_events_reject) {
            snprintf(msg, sizeof msg,
                     "no contract declares event \"%.128s\" and the unknown-event "
                     "policy is reject",
                     p->name);
            return reject_prepared(in, cx, p, "unknown_event", "event", msg, out, e);
        }
    }
    rc = event_contact(in, cx, p->xid, p->xid_hash, p->anon, &contact_id, &anonymous, e);
    if (rc)
        return rc;
    if (contact_id == 0)
        return reject_prepared(in, cx, p, "contact_deleted",
                               p->xid ? "external_id" : "anonymous_id", CONTACT_DELETED_MSG, out,
                               e);
    if (name_id == 0) {
        rc = event_name_id(in, p->name, 0, &name_id, e);
        if (rc == 0 && name_id == 0) {
            rc = event_name_id(in, p->name, 1, &name_id, e);
            created_name = 1;
        }
        if (rc)
            return rc;
    }
    ev.contact_id = contact_id;
    ev.name_id = name_id;
    ev.occurred_at = p->occurred_at;
    ev.received_at = cx->received_at;
    ev.event_id = p->event_id;
    ev.source = cx->source;
    ev.contract_version = p->contract_version;
    ev.props = p->props;
    ev.anonymous = anonymous;
    ev.key_hash = p->key_hash;
    if (cx->owns_rows) {
        /* A source that owns its rows updates what it wrote before. */
        int outcome = 0;
        struct err tmp = {0};
        rc = store_event_upsert_owned(in->st, &ev, &outcome, &tmp);
        if (rc == E_CONFLICT) {
            if (created_name && (rc = forget_name(in, name_id, e)) != 0)
                return rc;
            return reject_prepared(in, cx, p, "conflict", "event_id", tmp.msg, out, e);
        }
        if (rc) {
            *e = tmp;
            return rc;
        }
        if (outcome == 2) {
            in->stats.updated++;
            *out = INGEST_UPDATED;
            return 0;
        }
        inserted = outcome == 1;
    } else {
        rc = store_event_insert(in->st, &ev, &inserted, e);
        if (rc)
            return rc;
    }
    if (inserted) {
        in->stats.inserted++;
        if (p->unvalidated)
            in->stats.unvalidated++;
        *out = INGEST_INSERTED;
    } else {
        in->stats.duplicates++;
        *out = INGEST_UNCHANGED;
        if (created_name)
            return forget_name(in, name_id, e);
    }
    return 0;
}

int ingest_event(struct ingest *in, const struct ingest_ctx *cx, const json_t *rec,
                 enum ingest_outcome *out, struct err *e)
{
    struct ingest_ctx c = *cx;
    struct prepared_event p;
    int rc;

    c.max_value_bytes = (size_t)in->cfg->max_value_bytes; /* the session's configuration */
    ingest_event_prepare(in->contracts, &c, (json_t *)rec, &p);
    rc = ingest_event_store(in, cx, &p, out, e);
    prepared_event_release(&p);
    return rc;
}

int ingest_event_delete(struct ingest *in, const struct ingest_ctx *cx, const char *event_id,
                        int *deleted, struct err *e)
{
    if (!cx->owns_rows)
        return ERR(e, E_FORBIDDEN, "source '%s' does not own its events: they are never deleted",
                   cx->source);
    return store_event_delete_owned(in->st, event_id, cx->source, deleted, e);
}

/* ---- identity --------------------------------------------------------------------------- */

int ingest_link_anonymous(struct ingest *in, const struct ingest_ctx *cx, const char *anon_id,
                          const char *external_id, struct err *e)
{
    struct store_contact a, u;
    int rc;

    store_contact_init(&a);
    store_contact_init(&u);
    rc = store_contact_get_by_anon(in->st, anon_id, &a, e);
    if (rc && rc != E_NOTFOUND)
        return rc;
    if (rc == E_NOTFOUND)
        err_clear(e);
    if (rc == 0 && a.external_id) {
        rc = 0; /* already a known user's: nothing to merge */
        goto out;
    }
    rc = store_contact_get_by_xid(in->st, external_id, &u, e);
    if (rc == E_NOTFOUND) {
        err_clear(e);
        if (a.id) {
            /* The anonymous contact becomes the user. */
            a.external_id = xstrdup(external_id);
            a.updated_at = cx->received_at;
            rc = store_contact_update(in->st, &a, e);
            if (rc == 0)
                rc = store_events_identified(in->st, a.id, e);
            if (rc == 0)
                strmap_put(&in->contact_ids, external_id, strlen(external_id), a.id);
            goto out;
        }
        u.external_id = xstrdup(external_id);
        u.attrs = json_object();
        u.consent = in->cfg->default_consent;
        u.created_at = u.updated_at = cx->received_at;
        rc = store_contact_insert(in->st, &u, e);
        if (rc == 0)
            rc = store_consent_log(in->st, u.id, -1, (int)u.consent, cx->source, "default",
                                   cx->received_at, e);
        if (rc == 0)
            rc = store_anon_link(in->st, anon_id, u.id, cx->received_at, e);
        goto out;
    }
    if (rc)
        goto out;
    if (a.id && a.id != u.id) {
        int64_t moved = 0;
        rc = store_events_move(in->st, a.id, u.id, &moved, e);
        if (rc)
            goto out;
        a.deleted = 1;
        a.merged_into = u.id;
        a.updated_at = cx->received_at;
        rc = store_contact_update(in->st, &a, e);
        if (rc)
            goto out;
        log_debug("ingest", "merged anonymous contact %lld into %lld (%lld events)",
                  (long long)a.id, (long long)u.id, (long long)moved);
    }
    rc = store_anon_link(in->st, anon_id, u.id, cx->received_at, e);
out:
    store_contact_release(&a);
    store_contact_release(&u);
    return rc;
}

int ingest_set_consent(struct ingest *in, const char *external_id, enum consent_state to,
                       const char *source, const char *reason, enum consent_state *before,
                       struct err *e)
{
    struct store_contact c;
    int rc;

    if (reason == NULL || *reason == '\0')
        return ERRF(e, E_INVAL, "reason", "an explicit consent change needs a reason");
    store_contact_init(&c);
    rc = store_contact_get_by_xid(in->st, external_id, &c, e);
    if (rc)
        return rc;
    if (c.deleted) {
        store_contact_release(&c);
        return ERR(e, E_NOTFOUND, "contact '%s' was deleted", external_id);
    }
    *before = c.consent;
    if (consent_decide(c.consent, to, CONSENT_VIA_EXPLICIT) == CONSENT_APPLY) {
        rc = store_consent_log(in->st, c.id, (int)c.consent, (int)to, source, reason,
                               clock_now_ms(), e);
        if (rc == 0) {
            c.consent = to;
            c.updated_at = clock_now_ms();
            rc = store_contact_update(in->st, &c, e);
        }
    }
    store_contact_release(&c);
    return rc;
}

/* ---- replay ------------------------------------------------------------------------------ */

struct pending {
    int64_t id, created_at;
    char *kind, *source, *raw;
    int truncated;
};

struct collect {
    struct pending *items;
    size_t n;
};

static int collect_one(void *ctx, const struct store_rejected *r)
{
    struct collect *c = ctx;

    c->items[c->n].id = r->id;
    c->items[c->n].created_at = r->created_at;
    c->items[c->n].kind = xstrdup(r->kind);
    c->items[c->n].source = xstrdup(r->source);
    c->items[c->n].raw = xstrdup(r->raw);
    c->items[c->n].truncated = r->truncated;
    c->n++;
    return 0;
}

/* The filters of a replay or dismissal, for its audit record. */
static json_t *filter_json(const struct store_rejected_filter *f)
{
    json_t *j = json_object();

    if (f->reason)
        json_object_set_new(j, "reason", json_string(f->reason));
    if (f->source)
        json_object_set_new(j, "source", json_string(f->source));
    if (f->kind)
        json_object_set_new(j, "kind", json_string(f->kind));
    if (f->id)
        json_object_set_new(j, "id", json_integer(f->id));
    return j;
}

int rejected_replay(struct ingest *in, const struct store_rejected_filter *f, const char *actor,
                    const char *req_id, struct replay_stats *out, struct err *e)
{
    enum { CHUNK = 500 };
    struct store_rejected_filter cur = *f;
    struct collect col;
    int rc = 0;
    size_t i;

    memset(out, 0, sizeof *out);
    cur.status = "pending";
    cur.limit = CHUNK;
    /* Rows that are not records (wrong field count, bad encoding) can never pass: they are
     * left for dismissal unless asked for by reason or id. */
    cur.replayable_only = f->reason == NULL && f->id == 0;
    col.items = xcalloc(CHUNK, sizeof *col.items);
    for (;;) {
        int64_t tried = 0, ingested = 0;
        col.n = 0;
        /* List inside the write transaction: two replays never take the same rows. */
        rc = ingest_begin(in, e);
        if (rc)
            break;
        rc = store_rejected_list(in->st, &cur, collect_one, &col, e);
        for (i = 0; i < col.n && rc == 0; i++) {
            /* A record from the API or an SDK without a time of its own took the time it
             * was received: on replay, when it was first received (the letter's). */
            int live =
                strcmp(col.items[i].source, "api") == 0 || strcmp(col.items[i].source, "sdk") == 0;
            struct ingest_ctx cx = {
                .kind = SRC_REPLAY, /* bulk: a replay can never lift an opt-out */
                .source = col.items[i].source,
                .origin = "replay",
                .text_mode = strcmp(col.items[i].source, "csv") == 0,
                .received_at = live ? col.items[i].created_at : clock_now_ms(),
                .received_is_time = live,
            };
            enum ingest_outcome o;
            json_t *rec;
            cur.after_id = col.items[i].id;
            if (col.items[i].truncated) {
                /* Only the first bytes of the record were kept: storing them would store a
                 * corrupted record. It stays pending; fix it at the source, import it again
                 * and dismiss this. */
                out->not_replayable++;
                continue;
            }
            rec = json_loads(col.items[i].raw, 0, NULL);
            tried++;
            in->replay_id = col.items[i].id;
            if (rec == NULL || json_object_get(rec, "fields")) {
                /* Not a record (a CSV row with the wrong number of fields): it stays. */
                rc = store_rejected_update(in->st, col.items[i].id, "pending", NULL, NULL, NULL, 0,
                                           e);
                out->still_rejected++;
            } else if (strcmp(col.items[i].kind, "contact") == 0) {
                rc = ingest_contact(in, &cx, rec, &o, e);
            } else {
                rc = ingest_event(in, &cx, rec, &o, e);
            }
            if (rec && !json_object_get(rec, "fields") && rc == 0) {
                if (o == INGEST_REJECTED) {
                    out->still_rejected++;
                } else {
                    ingested++;
                    rc = store_rejected_update(in->st, col.items[i].id, "replayed", NULL, NULL,
                                               NULL, clock_now_ms(), e);
                }
            }
            in->replay_id = 0;
            json_decref(rec);
        }
        if (rc == 0 && tried) {
            /* Audited with the rows it changed, chunk by chunk. */
            json_t *args = filter_json(f);
            json_object_set_new(args, "tried", json_integer(tried));
            json_object_set_new(args, "ingested", json_integer(ingested));
            rc = audit_record(in->st, actor, "rejected.replay", "rejected", "", NULL, args, req_id,
                              e);
            json_decref(args);
        }
        if (rc == 0)
            rc = ingest_commit(in, e);
        else
            ingest_rollback(in);
        if (rc == 0) {
            out->tried += tried;
            out->ingested += ingested;
        }
        for (i = 0; i < col.n; i++) {
            free(col.items[i].kind);
            free(col.items[i].source);
            free(col.items[i].raw);
        }
        if (rc || col.n < CHUNK)
            break;
    }
    free(col.items);
    return rc;
}

int rejected_dismiss(struct ingest *in, const struct store_rejected_filter *f, const char *actor,
                     const char *req_id, int64_t *dismissed, struct err *e)
{
    struct store_rejected_filter cur = *f;
    int64_t n = 0;
    int rc;

    *dismissed = 0;
    if ((rc = rejected_dismiss_check(f, e)))
        return rc;
    cur.status = "pending";
    cur.limit = 0;
    rc = store_begin(in->st, e);
    if (rc)
        return rc;
    rc = store_rejected_set_status(in->st, &cur, "dismissed", clock_now_ms(), &n, e);
    if (rc == 0 && n) {
        json_t *args = filter_json(f);
        json_object_set_new(args, "dismissed", json_integer(n));
        rc = audit_record(in->st, actor, "rejected.dismiss", "rejected", "", NULL, args, req_id, e);
        json_decref(args);
    }
    if (rc == 0)
        rc = store_commit(in->st, e);
    else
        store_rollback(in->st);
    if (rc == 0)
        *dismissed = n;
    return rc;
}

int ingest_contact_delete(struct ingest *in, const struct ingest_ctx *cx, const char *xid,
                          int *deleted, struct err *e)
{
    struct store_contact c;
    int rc;

    (void)cx;
    *deleted = 0;
    store_contact_init(&c);
    rc = store_contact_get_by_xid(in->st, xid, &c, e);
    if (rc == E_NOTFOUND) {
        rc = 0; /* never stored: nothing to delete */
    } else if (rc == 0 && !c.deleted) {
        c.deleted = 1;
        c.updated_at = clock_now_ms();
        rc = store_contact_update(in->st, &c, e); /* a new seq: the audience index drops it */
        if (rc == 0) {
            strmap_put(&in->contact_ids, xid, strlen(xid), -c.id);
            *deleted = 1;
        }
    }
    store_contact_release(&c);
    return rc;
}
