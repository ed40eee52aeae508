/* sync/sources.c -- adding and removing sync sources, for the CLI and the API alike:
 * every check in one place (what a reference or a DSN may name depends on who adds the
 * source: policy.c), the change audited in its own transaction with the reference, the
 * password never shown. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "../auth/auth.h"
#include "../core/secret.h"
#include "sync.h"

json_t *sync_source_json(const struct store_sync_source *s)
{
    const char *pw = s->password && *s->password
                         ? strncmp(s->password, "sb1:", 4) == 0 ? "sealed" : s->password
                         : "none";
    json_t *m = json_loads(s->mapping ? s->mapping : "null", JSON_DECODE_ANY, NULL);

    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:o,s:I,s:s,s:o,s:o}", "name", s->name, "kind",
                     s->kind, "origin", sync_origin_of(s) == SYNC_ORIGIN_CLI ? "cli" : "api", "dsn",
                     s->dsn ? s->dsn : "", "password", pw, "mapping", m ? m : json_null(),
                     "last_ok_at", json_iso_or_null(s->last_ok_at), "failures",
                     (json_int_t)s->failures, "last_error", s->last_error, "last_error_at",
                     json_iso_or_null(s->last_error_at), "created_at",
                     json_iso_or_null(s->created_at));
}

/* A source as its audit records keep it: the password as password_ref, the reference
 * itself (env:VAR, file:PATH; "sealed" or "none"), which the audit's masking keeps, as
 * it keeps any *_ref member: never the secret, nor the sealed value. */
static json_t *audit_view(const struct store_sync_source *s)
{
    json_t *j = sync_source_json(s);

    json_object_set(j, "password_ref", json_object_get(j, "password"));
    json_object_del(j, "password");
    return j;
}

int sync_source_create(struct store *st, const struct config *cfg,
                       const struct sync_source_spec *spec, const char *actor, const char *req_id,
                       struct errlist *errs, struct err *e)
{
    struct store_sync_source src;
    struct sync_mapping m;
    char *password = NULL;
    size_t i, n = spec->name ? strlen(spec->name) : 0;
    json_t *after;
    int rc, has_ref = spec->password_ref && *spec->password_ref;

    if (n == 0 || n >= 64 || strspn(spec->name, "abcdefghijklmnopqrstuvwxyz0123456789_-") != n)
        errlist_add(errs, "/name", "1 to 63 of a-z, 0-9, _ and -");
    if (!spec->kind || (strcmp(spec->kind, "postgres") && strcmp(spec->kind, "sqlite")))
        errlist_add(errs, "/kind", "must be postgres or sqlite");
    if (!spec->dsn || !*spec->dsn || strlen(spec->dsn) > 1024)
        errlist_add(errs, "/dsn", "is required: a libpq connection string, or the SQLite file");
    else if (spec->kind && strcmp(spec->kind, "postgres") == 0)
        sync_dsn_check(spec->dsn, spec->origin, has_ref || spec->password != NULL, cfg, "/dsn",
                       errs);
    else if (spec->kind && strcmp(spec->kind, "sqlite") == 0) {
        char path[PATH_MAX], msg[300];
        if (sync_sqlite_path(spec->dsn, spec->origin, cfg, path, msg, sizeof msg))
            errlist_add(errs, "/dsn", "%s", msg);
    }
    if (has_ref)
        sync_ref_check(spec->password_ref, spec->origin, cfg, "/password_ref", errs);
    if (has_ref && spec->password)
        errlist_add(errs, "/password", "give a password or a reference to one, not both");
    else if (spec->password && *spec->password == '\0')
        errlist_add(errs, "/password", "must not be empty");
    if (!spec->mapping) {
        errlist_add(errs, "/mapping", "is required (docs/sync.md)");
    } else {
        struct errlist merrs = {0};
        struct err me = {0};
        if (sync_mapping_parse(spec->mapping, &m, &merrs, &me) == 0)
            sync_mapping_release(&m);
        for (i = 0; i < (size_t)merrs.n; i++) {
            char path[200];
            snprintf(path, sizeof path, "/mapping%s", merrs.items[i].path);
            errlist_add(errs, path, "%s", merrs.items[i].msg);
        }
    }
    if (errs->n)
        return ERR(e, E_INVAL, "the source has %d problem%s", errs->n, errs->n == 1 ? "" : "s");
    if (spec->password) {
        unsigned char key[SECRET_KEY_BYTES];
        rc = secret_key_load(cfg, key, e);
        if (rc == 0)
            rc = secret_seal(key, spec->password, strlen(spec->password), &password, e);
        sodium_memzero(key, sizeof key);
        if (rc)
            return rc;
    } else if (spec->password_ref && *spec->password_ref) {
        password = xstrdup(spec->password_ref);
    }
    memset(&src, 0, sizeof src);
    snprintf(src.name, sizeof src.name, "%s", spec->name);
    snprintf(src.kind, sizeof src.kind, "%s", spec->kind);
    snprintf(src.origin, sizeof src.origin, "%s", spec->origin == SYNC_ORIGIN_CLI ? "cli" : "api");
    src.dsn = (char *)spec->dsn;
    src.password = password;
    src.mapping = (char *)spec->mapping;
    after = audit_view(&src);
    rc = store_begin(st, e);
    if (rc == 0)
        rc = store_sync_source_add(st, &src, NULL, e);
    if (rc == 0)
        rc = audit_record(st, actor, "sync_source.add", "sync_source", spec->name, NULL, after,
                          req_id, e);
    rc = store_finish(st, rc, e);
    json_decref(after);
    free(password);
    return rc;
}

int sync_source_delete(struct store *st, const char *name, const char *actor, const char *req_id,
                       struct err *e)
{
    struct store_sync_source before;
    json_t *b = NULL;
    int rc = store_begin(st, e);

    if (rc == 0 && (rc = store_sync_source_get(st, name, &before, e)) == 0) {
        b = audit_view(&before);
        store_sync_source_release(&before);
        rc = store_sync_source_remove(st, name, e);
    }
    if (rc == 0)
        rc = audit_record(st, actor, "sync_source.remove", "sync_source", name, b, NULL, req_id, e);
    rc = store_finish(st, rc, e);
    json_decref(b);
    return rc;
}

/* ---- walking the sources ---- */

struct names {
    char **v;
    size_t n, cap;
};

static int add_name(void *ctx, const struct store_sync_source *s)
{
    struct names *ns = ctx;

    if (ns->n == ns->cap) {
        ns->cap = ns->cap ? ns->cap * 2 : 8;
        ns->v = xrealloc(ns->v, ns->cap * sizeof *ns->v);
    }
    ns->v[ns->n++] = xstrdup(s->name);
    return 0;
}

int sync_sources_each(struct store *st, const char *only, int (*fn)(void *ctx, const char *name),
                      void *ctx, struct err *e)
{
    struct names ns = {0};
    size_t i;
    int rc = 0;

    if (only) {
        struct store_sync_source s;
        rc = store_sync_source_get(st, only, &s, e);
        store_sync_source_release(&s);
    }
    if (rc == 0)
        rc = store_sync_sources(st, add_name, &ns, e);
    for (i = 0; rc == 0 && i < ns.n; i++)
        if (only == NULL || strcmp(only, ns.v[i]) == 0)
            rc = fn(ctx, ns.v[i]);
    for (i = 0; i < ns.n; i++)
        free(ns.v[i]);
    free(ns.v);
    return rc;
}

/* ---- sources as the API shows them ---- */

static int add_source(void *ctx, const struct store_sync_source *s)
{
    json_array_append_new(ctx, sync_source_json(s));
    return 0;
}

int sync_sources_list_json(struct store *st, json_t **items, struct err *e)
{
    int rc;

    *items = json_array();
    rc = store_sync_sources(st, add_source, *items, e);
    if (rc) {
        json_decref(*items);
        *items = NULL;
    }
    return rc;
}

int sync_source_get_json(struct store *st, const char *name, json_t **out, struct err *e)
{
    struct store_sync_source src;
    int rc = store_sync_source_get(st, name, &src, e);

    *out = NULL;
    if (rc == 0) {
        *out = sync_source_json(&src);
        store_sync_source_release(&src);
    }
    return rc;
}

struct health {
    struct store *st;
    struct sync_worker *worker;
    json_t *items;
    struct err *e;
};

static int add_health(void *ctx, const struct store_sync_source *s)
{
    struct health *h = ctx;
    struct sync_mapping m;
    struct errlist errs = {0};
    struct err me = {0};
    json_t *item = sync_source_json(s), *tables = json_array();
    int i;

    json_object_del(item, "mapping");
    json_object_del(item, "dsn");
    json_object_del(item, "password");
    json_object_set_new(item, "status",
                        json_string(s->failures     ? "failing"
                                    : s->last_ok_at ? "ok"
                                                    : "never_run"));
    if (sync_mapping_parse(s->mapping, &m, &errs, &me) == 0) {
        for (i = 0; i < m.ntables; i++) {
            struct store_sync_checkpoint cp;
            json_t *t = sync_worker_table_stats(h->worker, s->name, m.tables[i].table);
            json_object_set_new(t, "table", json_string(m.tables[i].table));
            json_object_set_new(
                t, "into", json_string(m.tables[i].into == SYNC_CONTACTS ? "contacts" : "events"));
            if (store_sync_checkpoint_get(h->st, s->id, m.tables[i].table, &cp, h->e) == 0) {
                char iso[32];
                json_object_set_new(t, "rows", json_integer(cp.rows));
                if (cp.updated_at) {
                    time_format_iso(cp.updated_at, iso);
                    json_object_set_new(t, "checkpoint_moved_at", json_string(iso));
                }
                store_sync_checkpoint_release(&cp);
            }
            json_array_append_new(tables, t);
        }
        sync_mapping_release(&m);
    }
    json_object_set_new(item, "tables", tables);
    json_array_append_new(h->items, item);
    return 0;
}

int sync_health_json(struct store *st, struct sync_worker *worker, json_t **items, struct err *e)
{
    struct health h = {st, worker, json_array(), e};
    int rc = store_sync_sources(st, add_health, &h, e);

    if (rc) {
        json_decref(h.items);
        h.items = NULL;
    }
    *items = h.items;
    return rc;
}

/* ---- checking a source ---- */

int sync_source_check(struct store *st, const struct config *cfg, const char *name,
                      int (*fn)(void *ctx, const char *table, const char *error, int rows),
                      void *ctx, struct err *e)
{
    struct store_sync_source src;
    struct sync_mapping m;
    struct errlist errs = {0};
    struct sync_conn *conn = NULL;
    int rc = store_sync_source_get(st, name, &src, e), i, parsed;

    if (rc)
        return rc;
    rc = sync_mapping_parse(src.mapping, &m, &errs, e);
    parsed = rc == 0;
    if (rc == 0)
        rc = sync_connect(&src, cfg, &conn, e);
    for (i = 0; rc == 0 && i < m.ntables; i++) {
        struct sync_batch b = {0};
        struct err te = {0};
        /* One row read through the mapping's own query checks the table and columns. */
        if (sync_read(conn, &m.tables[i], NULL, NULL, 1, &b, &te)) {
            rc = fn(ctx, m.tables[i].table, te.msg, 0);
        } else {
            rc = fn(ctx, m.tables[i].table, NULL, b.n);
            sync_batch_release(&b);
        }
    }
    sync_disconnect(conn);
    if (parsed)
        sync_mapping_release(&m);
    store_sync_source_release(&src);
    return rc;
}
