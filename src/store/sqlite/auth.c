/* store/sqlite/auth.c -- API keys (only their hashes) and the audit trail. */
#include <stdio.h>

#include "sqlite_int.h"

#define KEY_COLS "id, name, role, prefix, created_at, revoked_at, last_used_at"

static const struct sq_def q_key_add = {
    SQ_KEY_ADD, "INSERT INTO apikeys(name, role, prefix, hash, created_at) VALUES(?1,?2,?3,?4,?5)"};
static const struct sq_def q_key_by_hash = {
    SQ_KEY_BY_HASH, "SELECT " KEY_COLS " FROM apikeys WHERE hash = ?1 AND revoked_at = 0"};
static const struct sq_def q_key_touch = {
    SQ_KEY_TOUCH,
    "UPDATE apikeys SET last_used_at = ?2 WHERE id = ?1 AND last_used_at < ?2 - 60000"};
static const struct sq_def q_keys = {SQ_KEYS, "SELECT " KEY_COLS " FROM apikeys ORDER BY id"};
static const struct sq_def q_key_revoke = {
    SQ_KEY_REVOKE, "UPDATE apikeys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at = 0"};
static const struct sq_def q_audit_add = {
    SQ_AUDIT_ADD, "INSERT INTO audit(at, actor, action, entity, entity_id, before, after,"
                  " request_id) VALUES(?1,?2,?3,?4,?5,?6,?7,?8)"};
static const struct sq_def q_audit_list = {
    SQ_AUDIT_LIST, "SELECT id, at, actor, action, entity, entity_id, before, after, request_id"
                   " FROM audit WHERE id < ?1 AND (?3 IS NULL OR actor = ?3)"
                   " AND (?4 IS NULL OR action = ?4) AND (?5 IS NULL OR entity = ?5)"
                   " AND (?6 IS NULL OR entity_id = ?6) AND at >= ?7 AND at < ?8"
                   " ORDER BY id DESC LIMIT ?2"};

/* ---- keys ------------------------------------------------------------------------- */

int store_apikey_add(struct store *st, const char *name, const char *role, const char *prefix,
                     const unsigned char *hash, size_t hash_len, int64_t at, int64_t *id,
                     struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_key_add, e);

    if (rc)
        return rc;
    sq_text(&q, 1, name);
    sq_text(&q, 2, role);
    sq_text(&q, 3, prefix);
    sq_blob(&q, 4, hash, hash_len);
    sq_i64(&q, 5, at);
    rc = sq_exec(&q, "store api key", e);
    if (rc == 0 && id)
        *id = sq_last_id(st);
    return rc;
}

static void read_key(sqlite3_stmt *s, struct store_apikey *k)
{
    k->id = sqlite3_column_int64(s, 0);
    k->name = sq_col_text(s, 1);
    k->role = sq_col_text(s, 2);
    k->prefix = sq_col_text(s, 3);
    k->created_at = sqlite3_column_int64(s, 4);
    k->revoked_at = sqlite3_column_int64(s, 5);
    k->last_used_at = sqlite3_column_int64(s, 6);
}

/* Best effort, at most once a minute per key: a busy store must not fail auth. */
static void key_touch(struct store *st, int64_t id)
{
    struct err ignored = {0};
    struct sq q;

    if (sq_prep(&q, st, &q_key_touch, &ignored))
        return;
    sq_i64(&q, 1, id);
    sq_i64(&q, 2, clock_now_ms());
    /* Never wait for another writer (an import) just to note a key's use. */
    sqlite3_busy_timeout(st->db, 0);
    sq_exec(&q, "note api key use", &ignored);
    sqlite3_busy_timeout(st->db, st->busy_timeout_ms);
}

int store_apikey_by_hash(struct store *st, const unsigned char *hash, size_t hash_len,
                         struct store_apikey *out, char *name, size_t namecap, char *role,
                         size_t rolecap, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_key_by_hash, e);

    if (rc)
        return rc;
    sq_blob(&q, 1, hash, hash_len);
    rc = sq_step(&q, "read api key", e);
    if (rc > 0) {
        read_key(q.s, out);
        snprintf(name, namecap, "%s", out->name);
        snprintf(role, rolecap, "%s", out->role);
        out->name = name;
        out->role = role;
        out->prefix = NULL;
        rc = 0;
    } else if (rc == 0) {
        rc = ERR(e, E_NOTFOUND, "no such api key");
    }
    sq_done(&q);
    if (rc == 0 && !st->in_tx)
        key_touch(st, out->id);
    return rc;
}

struct key_visit {
    store_apikey_fn fn;
    void *ctx;
};

static int row_key(sqlite3_stmt *s, void *ctx)
{
    struct key_visit *v = ctx;
    struct store_apikey k;

    read_key(s, &k);
    return v->fn(v->ctx, &k);
}

int store_apikeys(struct store *st, store_apikey_fn fn, void *ctx, struct err *e)
{
    struct key_visit v = {fn, ctx};
    struct sq q;
    int rc = sq_prep(&q, st, &q_keys, e);

    return rc ? rc : sq_each(&q, "list api keys", row_key, &v, NULL, e);
}

int store_apikey_revoke(struct store *st, int64_t id, int64_t at, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_key_revoke, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, id);
    sq_i64(&q, 2, at);
    rc = sq_exec(&q, "revoke api key", e);
    if (rc == 0 && sq_changes(st) == 0)
        rc = ERR(e, E_NOTFOUND, "no active api key with id %lld", (long long)id);
    return rc;
}

/* ---- audit ------------------------------------------------------------------------ */

int store_audit_add(struct store *st, const struct store_audit *a, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, &q_audit_add, e)))
        return rc;
    sq_i64(&q, 1, a->at);
    sq_text(&q, 2, a->actor);
    sq_text(&q, 3, a->action);
    sq_text(&q, 4, a->entity);
    sq_text(&q, 5, a->entity_id ? a->entity_id : "");
    sq_text(&q, 6, a->before);
    sq_text(&q, 7, a->after);
    sq_text(&q, 8, a->request_id ? a->request_id : "");
    return sq_exec(&q, "write audit record", e);
}

struct audit_visit {
    store_audit_fn fn;
    void *ctx;
};

static int row_audit(sqlite3_stmt *s, void *ctx)
{
    struct audit_visit *v = ctx;
    struct store_audit a = {
        .id = sqlite3_column_int64(s, 0),
        .at = sqlite3_column_int64(s, 1),
        .actor = sq_col_text(s, 2),
        .action = sq_col_text(s, 3),
        .entity = sq_col_text(s, 4),
        .entity_id = sq_col_text(s, 5),
        .before = sq_col_text(s, 6),
        .after = sq_col_text(s, 7),
        .request_id = sq_col_text(s, 8),
    };

    return v->fn(v->ctx, &a);
}

int store_audit_list(struct store *st, int64_t before_id, int limit,
                     const struct store_audit_filter *f, store_audit_fn fn, void *ctx,
                     struct err *e)
{
    static const struct store_audit_filter none = {0};
    struct audit_visit v = {fn, ctx};
    struct sq q;
    int rc = sq_prep(&q, st, &q_audit_list, e);

    if (rc)
        return rc;
    if (f == NULL)
        f = &none;
    sq_i64(&q, 1, before_id > 0 ? before_id : INT64_MAX);
    sq_int(&q, 2, limit > 0 ? limit : -1);
    sq_text(&q, 3, f->actor);
    sq_text(&q, 4, f->action);
    sq_text(&q, 5, f->entity);
    sq_text(&q, 6, f->entity_id);
    sq_i64(&q, 7, f->since > 0 ? f->since : INT64_MIN);
    sq_i64(&q, 8, f->until > 0 ? f->until : INT64_MAX);
    return sq_each(&q, "read audit", row_audit, &v, NULL, e);
}
