/* store/sqlite/contacts.c -- contacts, their consent history and anonymous ids, and
 * the attribute type registry. Every contact write takes the next contact change
 * sequence of the write transaction (conn.c). */
#include <stdlib.h>
#include <string.h>

#include "sqlite_int.h"

#define CONTACT_COLS                                                                               \
    "id, external_id, email, attrs, consent, created_at, updated_at, seq, deleted, merged_into"

static const struct sq_def q_get = {SQ_CONTACT_GET,
                                    "SELECT " CONTACT_COLS " FROM contacts WHERE id = ?1"};
static const struct sq_def q_by_xid = {SQ_CONTACT_BY_XID, "SELECT " CONTACT_COLS
                                                          " FROM contacts WHERE external_id = ?1"};
static const struct sq_def q_by_anon = {
    SQ_CONTACT_BY_ANON, "SELECT c.id, c.external_id, c.email, c.attrs, c.consent, c.created_at,"
                        " c.updated_at, c.seq, c.deleted, c.merged_into FROM anonymous_ids a"
                        " JOIN contacts c ON c.id = a.contact_id WHERE a.anonymous_id = ?1"};
static const struct sq_def q_lookup = {SQ_CONTACT_LOOKUP,
                                       "SELECT id, deleted FROM contacts WHERE external_id = ?1"};
static const struct sq_def q_ids = {
    SQ_CONTACT_IDS, "SELECT external_id, id, deleted FROM contacts WHERE external_id IS NOT NULL"};
static const struct sq_def q_insert = {
    SQ_CONTACT_INSERT,
    "INSERT INTO contacts(external_id, email, attrs, consent, created_at,"
    " updated_at, seq, deleted, merged_into) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)"};
/* Same parameter numbers as the insert (?5 created_at is not rewritten): one binder. */
static const struct sq_def q_update = {
    SQ_CONTACT_UPDATE, "UPDATE contacts SET external_id=?1, email=?2, attrs=?3, consent=?4,"
                       " updated_at=?6, seq=?7, deleted=?8, merged_into=?9 WHERE id=?10"};
static const struct sq_def q_consent_log = {
    SQ_CONSENT_LOG, "INSERT INTO consent_changes(contact_id, at, from_state, to_state, source,"
                    " reason) VALUES(?1,?2,?3,?4,?5,?6)"};
static const struct sq_def q_consent_history = {
    SQ_CONSENT_HISTORY, "SELECT at, from_state, to_state, source, coalesce(reason,'')"
                        " FROM consent_changes WHERE contact_id = ?1 ORDER BY id"};
static const struct sq_def q_anon_link = {
    SQ_ANON_LINK, "INSERT INTO anonymous_ids(anonymous_id, contact_id, created_at)"
                  " VALUES(?1,?2,?3) ON CONFLICT(anonymous_id) DO UPDATE SET contact_id=?2"};
static const struct sq_def q_since = {SQ_CONTACTS_SINCE,
                                      "SELECT " CONTACT_COLS
                                      " FROM contacts WHERE seq > ?1 ORDER BY seq LIMIT ?2"};
static const struct sq_def q_list = {
    SQ_CONTACTS_LIST, "SELECT " CONTACT_COLS " FROM contacts WHERE id > ?1 AND deleted = 0"
                      " ORDER BY id LIMIT ?2"};
static const struct sq_def q_by_email = {
    SQ_CONTACTS_BY_EMAIL, "SELECT " CONTACT_COLS " FROM contacts WHERE email = ?3 AND id > ?1"
                          " AND deleted = 0 ORDER BY id LIMIT ?2"};
static const struct sq_def q_max_seq = {SQ_MAXSEQ_C, "SELECT coalesce(max(seq), 0) FROM contacts"};
static const struct sq_def q_count = {
    SQ_COUNT_C, "SELECT count(*), coalesce(sum(deleted), 0), coalesce(max(seq), 0) FROM contacts"};
static const struct sq_def q_attr_types = {
    SQ_ATTR_TYPES, "SELECT name, type, origin FROM attributes ORDER BY name"};
static const struct sq_def q_attr_put = {
    SQ_ATTR_PUT,
    "INSERT INTO attributes(name, type, origin) VALUES(?1,?2,?3) ON CONFLICT(name) DO NOTHING"};
static const struct sq_def q_attr_get = {SQ_ATTR_GET,
                                         "SELECT type FROM attributes WHERE name = ?1"};

/* ---- reading ------------------------------------------------------------------- */

static void read_contact(sqlite3_stmt *s, struct store_contact *c)
{
    const char *xid = sq_col_text(s, 1), *email = sq_col_text(s, 2), *attrs = sq_col_text(s, 3);

    store_contact_release(c);
    c->id = sqlite3_column_int64(s, 0);
    c->external_id = xid ? xstrdup(xid) : NULL;
    c->email = email ? xstrdup(email) : NULL;
    c->attrs = attrs ? json_loads(attrs, 0, NULL) : NULL;
    if (c->attrs == NULL || !json_is_object(c->attrs)) {
        json_decref(c->attrs);
        c->attrs = json_object();
    }
    c->consent = (enum consent_state)sqlite3_column_int(s, 4);
    c->created_at = sqlite3_column_int64(s, 5);
    c->updated_at = sqlite3_column_int64(s, 6);
    c->seq = sqlite3_column_int64(s, 7);
    c->deleted = sqlite3_column_int(s, 8);
    c->merged_into = sqlite3_column_int64(s, 9);
}

static int contact_get_by(struct store *st, const struct sq_def *def, int64_t id, const char *key,
                          struct store_contact *out, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, def, e);

    if (rc)
        return rc;
    if (key)
        sq_text(&q, 1, key);
    else
        sq_i64(&q, 1, id);
    rc = sq_step(&q, "read contact", e);
    if (rc > 0) {
        read_contact(q.s, out);
        rc = 0;
    } else if (rc == 0) {
        rc = ERR(e, E_NOTFOUND, "contact not found");
    }
    sq_done(&q);
    return rc;
}

int store_contact_get(struct store *st, int64_t id, struct store_contact *out, struct err *e)
{
    return contact_get_by(st, &q_get, id, NULL, out, e);
}

int store_contact_get_by_xid(struct store *st, const char *xid, struct store_contact *out,
                             struct err *e)
{
    return contact_get_by(st, &q_by_xid, 0, xid, out, e);
}

int store_contact_get_by_anon(struct store *st, const char *anon_id, struct store_contact *out,
                              struct err *e)
{
    return contact_get_by(st, &q_by_anon, 0, anon_id, out, e);
}

int store_contact_lookup(struct store *st, const char *xid, int64_t *id, int *deleted,
                         struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_lookup, e);

    if (rc)
        return rc;
    sq_text(&q, 1, xid);
    rc = sq_step(&q, "look up contact", e);
    if (rc > 0) {
        *id = sqlite3_column_int64(q.s, 0);
        *deleted = sqlite3_column_int(q.s, 1);
        rc = 0;
    } else if (rc == 0) {
        rc = E_NOTFOUND; /* an expected outcome on this path: not recorded */
    }
    sq_done(&q);
    return rc;
}

struct id_visit {
    store_contact_id_fn fn;
    void *ctx;
};

static int row_id(sqlite3_stmt *s, void *ctx)
{
    struct id_visit *v = ctx;

    return v->fn(v->ctx, sq_col_text(s, 0), sqlite3_column_int64(s, 1), sqlite3_column_int(s, 2));
}

int store_contact_ids(struct store *st, store_contact_id_fn fn, void *ctx, struct err *e)
{
    struct id_visit v = {fn, ctx};
    struct sq q;
    int rc = sq_prep(&q, st, &q_ids, e);

    return rc ? rc : sq_each(&q, "read contact ids", row_id, &v, NULL, e);
}

/* ---- writing ------------------------------------------------------------------- */

/* Writes every column of c with the next change sequence (insert or update by id). */
static int contact_write(struct store *st, const struct sq_def *def, struct store_contact *c,
                         struct err *e)
{
    int update = def == &q_update;
    struct sq q;
    char *attrs;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, def, e)))
        return rc;
    attrs = c->attrs ? json_dumps(c->attrs, JSON_COMPACT | JSON_SORT_KEYS) : xstrdup("{}");
    ASSERT(attrs);
    c->seq = st->next_contact_seq++;
    sq_text(&q, 1, c->external_id);
    sq_text(&q, 2, c->email);
    sq_textn(&q, 3, attrs, strlen(attrs), 1);
    sq_int(&q, 4, (int)c->consent);
    sq_i64(&q, 5, c->created_at);
    sq_i64(&q, 6, c->updated_at);
    sq_i64(&q, 7, c->seq);
    sq_int(&q, 8, c->deleted);
    sq_i64(&q, 9, c->merged_into);
    if (update)
        sq_i64(&q, 10, c->id);
    rc = sq_exec(&q, update ? "update contact" : "insert contact", e);
    free(attrs);
    if (rc == 0 && !update)
        c->id = sq_last_id(st);
    return rc;
}

int store_contact_insert(struct store *st, struct store_contact *c, struct err *e)
{
    return contact_write(st, &q_insert, c, e);
}

int store_contact_update(struct store *st, struct store_contact *c, struct err *e)
{
    return contact_write(st, &q_update, c, e);
}

int store_consent_log(struct store *st, int64_t contact_id, int from, int to, const char *source,
                      const char *reason, int64_t at, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_consent_log, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, contact_id);
    sq_i64(&q, 2, at);
    sq_int(&q, 3, from);
    sq_int(&q, 4, to);
    sq_text(&q, 5, source);
    sq_text(&q, 6, reason);
    return sq_exec(&q, "log consent change", e);
}

struct consent_visit {
    store_consent_fn fn;
    void *ctx;
};

static int row_consent(sqlite3_stmt *s, void *ctx)
{
    struct consent_visit *v = ctx;
    struct store_consent_change c = {
        .at = sqlite3_column_int64(s, 0),
        .from = sqlite3_column_int(s, 1),
        .to = sqlite3_column_int(s, 2),
        .source = sq_col_text(s, 3),
        .reason = sq_col_text(s, 4),
    };

    return v->fn(v->ctx, &c);
}

int store_consent_history(struct store *st, int64_t contact_id, store_consent_fn fn, void *ctx,
                          struct err *e)
{
    struct consent_visit v = {fn, ctx};
    struct sq q;
    int rc = sq_prep(&q, st, &q_consent_history, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, contact_id);
    return sq_each(&q, "read consent history", row_consent, &v, NULL, e);
}

int store_anon_link(struct store *st, const char *anon_id, int64_t contact_id, int64_t at,
                    struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_anon_link, e);

    if (rc)
        return rc;
    sq_text(&q, 1, anon_id);
    sq_i64(&q, 2, contact_id);
    sq_i64(&q, 3, at);
    return sq_exec(&q, "link anonymous id", e);
}

/* ---- lists ------------------------------------------------------------------------ */

/* One struct reused for every row. */
struct contact_visit {
    store_contact_fn fn;
    void *ctx;
    struct store_contact c;
};

static int row_contact(sqlite3_stmt *s, void *ctx)
{
    struct contact_visit *v = ctx;

    read_contact(s, &v->c);
    return v->fn(v->ctx, &v->c);
}

int store_contacts_since(struct store *st, int64_t after_seq, int64_t limit, store_contact_fn fn,
                         void *ctx, struct err *e)
{
    struct contact_visit v = {.fn = fn, .ctx = ctx};
    struct sq q;
    int rc = sq_prep(&q, st, &q_since, e);

    if (rc)
        return rc;
    store_contact_init(&v.c);
    sq_i64(&q, 1, after_seq);
    sq_i64(&q, 2, limit > 0 ? limit : -1);
    rc = sq_each(&q, "read contacts", row_contact, &v, NULL, e);
    store_contact_release(&v.c);
    return rc;
}

struct contact_row_visit {
    store_contact_row_fn fn;
    void *ctx;
};

static int row_contact_row(sqlite3_stmt *s, void *ctx)
{
    struct contact_row_visit *v = ctx;
    struct store_contact_row c = {
        .id = sqlite3_column_int64(s, 0),
        .external_id = sq_col_text(s, 1),
        .email = sq_col_text(s, 2),
        .attrs_json = sq_col_text(s, 3),
        .consent = (enum consent_state)sqlite3_column_int(s, 4),
        .created_at = sqlite3_column_int64(s, 5),
        .updated_at = sqlite3_column_int64(s, 6),
        .seq = sqlite3_column_int64(s, 7),
        .deleted = sqlite3_column_int(s, 8),
        .merged_into = sqlite3_column_int64(s, 9),
    };

    return v->fn(v->ctx, &c);
}

int store_contact_rows_since(struct store *st, int64_t after_seq, int64_t limit,
                             store_contact_row_fn fn, void *ctx, struct err *e)
{
    struct contact_row_visit v = {fn, ctx};
    struct sq q;
    int rc = sq_prep(&q, st, &q_since, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, after_seq);
    sq_i64(&q, 2, limit > 0 ? limit : -1);
    return sq_each(&q, "read contacts", row_contact_row, &v, NULL, e);
}

int store_contacts_list(struct store *st, int64_t after_id, int limit, const char *email,
                        store_contact_fn fn, void *ctx, struct err *e)
{
    struct contact_visit v = {.fn = fn, .ctx = ctx};
    struct sq q;
    int rc = sq_prep(&q, st, email ? &q_by_email : &q_list, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, after_id);
    sq_int(&q, 2, limit > 0 ? limit : -1);
    if (email)
        sq_text(&q, 3, email);
    store_contact_init(&v.c);
    rc = sq_each(&q, "list contacts", row_contact, &v, NULL, e);
    store_contact_release(&v.c);
    return rc;
}

int contacts_max_seq(struct store *st, int64_t *out, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_max_seq, e);

    return rc ? rc : sq_ints(&q, out, NULL, "query", e);
}

int contacts_totals(struct store *st, int64_t *count, int64_t *deleted, int64_t *max_seq,
                    struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_count, e);

    if (rc)
        return rc;
    rc = sq_step(&q, "count contacts", e);
    if (rc > 0) {
        *count = sqlite3_column_int64(q.s, 0);
        *deleted = sqlite3_column_int64(q.s, 1);
        *max_seq = sqlite3_column_int64(q.s, 2);
        rc = 0;
    } else if (rc == 0) {
        rc = sq_err(st, e, SQLITE_DONE, "count contacts");
    }
    sq_done(&q);
    return rc;
}

/* ---- the attribute registry ---------------------------------------------------- */

struct attr_visit {
    store_attr_fn fn;
    void *ctx;
};

static int row_attr(sqlite3_stmt *s, void *ctx)
{
    struct attr_visit *v = ctx;

    return v->fn(v->ctx, sq_col_text(s, 0), sq_col_text(s, 1), sq_col_text(s, 2));
}

int store_attr_types(struct store *st, store_attr_fn fn, void *ctx, struct err *e)
{
    struct attr_visit v = {fn, ctx};
    struct sq q;
    int rc = sq_prep(&q, st, &q_attr_types, e);

    return rc ? rc : sq_each(&q, "read attribute types", row_attr, &v, NULL, e);
}

int store_attr_type_get(struct store *st, const char *name, char *type_out, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_attr_get, e);

    if (rc)
        return rc;
    sq_text(&q, 1, name);
    rc = sq_step(&q, "read attribute type", e);
    if (rc > 0) {
        snprintf(type_out, 16, "%s", sq_col_text(q.s, 0));
        rc = 0;
    } else if (rc == 0) {
        rc = E_NOTFOUND; /* expected: not recorded */
    }
    sq_done(&q);
    return rc;
}

int store_attr_type_put(struct store *st, const char *name, const char *type, const char *origin,
                        char *type_out, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_attr_put, e);

    if (rc)
        return rc;
    sq_text(&q, 1, name);
    sq_text(&q, 2, type);
    sq_text(&q, 3, origin);
    rc = sq_exec(&q, "record attribute type", e);
    if (rc)
        return rc;
    rc = store_attr_type_get(st, name, type_out, e); /* the type that holds */
    return rc == E_NOTFOUND ? ERR(e, E_INTERNAL, "attribute type of '%s' vanished", name) : rc;
}
