/* store/sqlite/templates.c -- email templates and their versions (schema 11).
 *
 * DESIGN: a template row holds what is not versioned (name, current version, times,
 * deleted); template_versions holds each version's body, kept forever, so a run that
 * started on version 3 renders version 3 whatever happened since. Names are unique
 * among live templates (a partial unique index): a clash is E_CONFLICT. */
#include <string.h>

#include "sqlite_int.h"

#define TEMPLATE_COLS                                                                              \
    "t.id, t.name, v.subject, v.html, v.text, v.from_email, v.from_name, v.reply_to,"              \
    " t.created_by, t.version, t.created_at, t.updated_at, t.deleted"
#define TEMPLATE_JOIN                                                                              \
    " FROM templates t JOIN template_versions v ON v.template_id = t.id AND v.version = t.version"
/* A version shows its own author and time as created_by, created_at and updated_at. */
#define VERSION_COLS                                                                               \
    "t.id, t.name, v.subject, v.html, v.text, v.from_email, v.from_name, v.reply_to,"              \
    " v.created_by, v.version, v.created_at, v.created_at, t.deleted"                              \
    " FROM template_versions v JOIN templates t ON t.id = v.template_id"

static const struct sq_def q_insert = {
    SQ_TPL_INSERT, "INSERT INTO templates(name, version, created_at, updated_at, created_by)"
                   " VALUES(?1,?2,?3,?4,?5)"};
static const struct sq_def q_update = {
    SQ_TPL_UPDATE,
    "UPDATE templates SET name=?2, version=?3, updated_at=?4, deleted=?5 WHERE id=?1"};
static const struct sq_def q_version_add = {
    SQ_TPL_VERSION_ADD,
    "INSERT INTO template_versions(template_id, version, subject, html, text, from_email,"
    " from_name, reply_to, created_at, created_by) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)"};
static const struct sq_def q_get = {SQ_TPL_GET, "SELECT " TEMPLATE_COLS TEMPLATE_JOIN
                                                " WHERE t.id = ?1 AND t.deleted = 0"};
static const struct sq_def q_version_get = {
    SQ_TPL_VERSION_GET, "SELECT " VERSION_COLS " WHERE v.template_id = ?1 AND v.version = ?2"};
static const struct sq_def q_list = {SQ_TPL_LIST, "SELECT " TEMPLATE_COLS TEMPLATE_JOIN
                                                  " WHERE t.id > ?1 AND t.deleted = 0"
                                                  " ORDER BY t.id LIMIT ?2"};
static const struct sq_def q_versions = {
    SQ_TPL_VERSIONS, "SELECT " VERSION_COLS " WHERE v.template_id = ?1 ORDER BY v.version DESC"};

int store_template_insert(struct store *st, struct store_template *t, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, &q_insert, e)))
        return rc;
    sq_text(&q, 1, t->name);
    sq_int(&q, 2, t->version);
    sq_i64(&q, 3, t->created_at);
    sq_i64(&q, 4, t->updated_at);
    sq_text(&q, 5, t->created_by);
    rc = sq_exec_unique(&q, "insert template", e);
    if (rc == E_CONFLICT)
        return ERR(e, E_CONFLICT, "a template named '%s' exists already", t->name);
    if (rc)
        return rc;
    t->id = sq_last_id(st);
    return store_template_update(st, t, 1, e);
}

int store_template_update(struct store *st, const struct store_template *t, int add_version,
                          struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, &q_update, e)))
        return rc;
    sq_i64(&q, 1, t->id);
    sq_text(&q, 2, t->name);
    sq_int(&q, 3, t->version);
    sq_i64(&q, 4, t->updated_at);
    sq_int(&q, 5, t->deleted);
    rc = sq_exec_unique(&q, "update template", e);
    if (rc == E_CONFLICT)
        return ERR(e, E_CONFLICT, "a template named '%s' exists already", t->name);
    if (rc || !add_version)
        return rc;
    if ((rc = sq_prep(&q, st, &q_version_add, e)))
        return rc;
    sq_i64(&q, 1, t->id);
    sq_int(&q, 2, t->version);
    sq_text(&q, 3, t->subject);
    sq_text(&q, 4, t->html);
    sq_text(&q, 5, t->text);
    sq_text(&q, 6, t->from_email);
    sq_text(&q, 7, t->from_name);
    sq_text(&q, 8, t->reply_to);
    sq_i64(&q, 9, t->updated_at);
    sq_text(&q, 10, t->created_by);
    return sq_exec(&q, "add template version", e);
}

struct template_visit {
    store_template_fn fn;
    void *ctx;
};

static int row_template(sqlite3_stmt *s, void *ctx)
{
    struct template_visit *v = ctx;
    struct store_template t = {
        .id = sqlite3_column_int64(s, 0),
        .name = sq_col_text(s, 1),
        .subject = sq_col_text(s, 2),
        .html = sq_col_text(s, 3),
        .text = sq_col_text(s, 4),
        .from_email = sq_col_text(s, 5),
        .from_name = sq_col_text(s, 6),
        .reply_to = sq_col_text(s, 7),
        .created_by = sq_col_text(s, 8),
        .version = sqlite3_column_int(s, 9),
        .created_at = sqlite3_column_int64(s, 10),
        .updated_at = sqlite3_column_int64(s, 11),
        .deleted = sqlite3_column_int(s, 12),
    };

    return v->fn(v->ctx, &t);
}

/* Runs def with key (and a second integer when b is not 0); must_find: no row is
 * E_NOTFOUND. */
static int templates_by(struct store *st, const struct sq_def *def, int64_t key, int64_t b,
                        store_template_fn fn, void *ctx, int must_find, struct err *e)
{
    struct template_visit v = {fn, ctx};
    struct sq q;
    int n, rc = sq_prep(&q, st, def, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, key);
    if (b)
        sq_i64(&q, 2, b);
    rc = sq_each(&q, "read templates", row_template, &v, &n, e);
    if (rc == 0 && must_find && n == 0)
        return ERR(e, E_NOTFOUND, "no such template");
    return rc;
}

int store_template_get(struct store *st, int64_t id, store_template_fn fn, void *ctx, struct err *e)
{
    return templates_by(st, &q_get, id, 0, fn, ctx, 1, e);
}

int store_template_version_get(struct store *st, int64_t id, int version, store_template_fn fn,
                               void *ctx, struct err *e)
{
    if (version < 1)
        return ERR(e, E_NOTFOUND, "no such template version");
    return templates_by(st, &q_version_get, id, version, fn, ctx, 1, e);
}

int store_templates_list(struct store *st, int64_t after_id, int limit, store_template_fn fn,
                         void *ctx, struct err *e)
{
    return templates_by(st, &q_list, after_id, limit > 0 ? limit : -1, fn, ctx, 0, e);
}

int store_template_versions(struct store *st, int64_t id, store_template_fn fn, void *ctx,
                            struct err *e)
{
    return templates_by(st, &q_versions, id, 0, fn, ctx, 1, e);
}
