/* http/routes_sync.c -- CRM sync over HTTP: sources (admin, audited) and their health
 * (read roles). The password is taken once, sealed, and never shown again; a source
 * added here names only what [sync] allows the API (sync/policy.c). */
#include <string.h>

#include "../sync/sync.h"
#include "routes_int.h"

/* GET /api/v1/sync/sources */
static int add_source(void *ctx, const struct store_sync_source *s)
{
    json_array_append_new(ctx, sync_source_json(s));
    return 0;
}

void h_sync_sources_list(struct http_req *r, struct http_resp *w)
{
    json_t *items;
    struct err e = {0};

    if (http_only_params(r, w, ""))
        return;
    items = json_array();
    if (store_sync_sources(r->st, add_source, items, &e)) {
        json_decref(items);
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 200, json_pack("{s:o,s:n}", "items", items, "next_cursor"));
}

/* POST /api/v1/sync/sources {name, kind, dsn, password_ref?|password?, mapping} */
void h_sync_sources_create(struct http_req *r, struct http_resp *w)
{
    static const char *const strings[] = {"name", "kind", "dsn", "password_ref", "password"};
    json_t *body = http_body_json(r, w), *mapping;
    struct sync_source_spec spec;
    struct store_sync_source src;
    struct errlist errs = {0};
    struct err e = {0};
    char *mtext = NULL;
    size_t i;
    int rc;

    if (body == NULL)
        return;
    if (!json_is_object(body)) {
        json_decref(body);
        http_error(w, 400, "invalid_json", "the body must be a source object", NULL);
        return;
    }
    mapping = json_object_get(body, "mapping");
    if (mapping)
        mtext = json_dumps(mapping, JSON_COMPACT | JSON_ENCODE_ANY);
    for (i = 0; i < sizeof strings / sizeof *strings; i++) {
        json_t *v = json_object_get(body, strings[i]);
        char path[32];
        snprintf(path, sizeof path, "/%s", strings[i]);
        if (v && !json_is_string(v) && !json_is_null(v))
            errlist_add(&errs, path, "must be a string");
    }
    spec = (struct sync_source_spec){
        .name = json_string_value(json_object_get(body, "name")),
        .kind = json_string_value(json_object_get(body, "kind")),
        .dsn = json_string_value(json_object_get(body, "dsn")),
        .password_ref = json_string_value(json_object_get(body, "password_ref")),
        .password = json_string_value(json_object_get(body, "password")),
        .mapping = mtext,
        .origin = SYNC_ORIGIN_API,
    };
    rc = sync_source_create(r->st, r->app->cfg, &spec, r->who.actor, r->req_id, &errs, &e);
    free(mtext);
    if (rc == E_INVAL && errs.n) {
        http_error_list(w, 422, "invalid_source", "the source has problems", &errs);
    } else if (rc) {
        http_error_from(r, w, &e);
    } else if (store_sync_source_get(r->st, spec.name, &src, &e) == 0) {
        http_json(w, 201, sync_source_json(&src));
        store_sync_source_release(&src);
    } else {
        http_error_from(r, w, &e);
    }
    json_decref(body);
}

/* DELETE /api/v1/sync/sources/{name} */
void h_sync_source_delete(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};

    if (sync_source_delete(r->st, r->params[0], r->who.actor, r->req_id, &e)) {
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 200, json_pack("{s:s,s:b}", "name", r->params[0], "removed", 1));
}

/* GET /api/v1/sync/health */
struct health {
    struct http_req *r;
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
    json_object_set_new(item, "status", json_string(s->failures      ? "failing"
                                                    : s->last_ok_at ? "ok"
                                                                    : "never_run"));
    if (sync_mapping_parse(s->mapping, &m, &errs, &me) == 0) {
        for (i = 0; i < m.ntables; i++) {
            struct store_sync_checkpoint cp;
            json_t *t = sync_worker_table_stats(h->r->app->sync, s->name, m.tables[i].table);
            json_object_set_new(t, "table", json_string(m.tables[i].table));
            json_object_set_new(t, "into", json_string(m.tables[i].into == SYNC_CONTACTS
                                                           ? "contacts" : "events"));
            if (store_sync_checkpoint_get(h->r->st, s->id, m.tables[i].table, &cp, h->e) == 0) {
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

void h_sync_health(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    struct health h = {r, NULL, &e};

    if (http_only_params(r, w, ""))
        return;
    h.items = json_array();
    if (store_sync_sources(r->st, add_health, &h, &e)) {
        json_decref(h.items);
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 200, json_pack("{s:o}", "items", h.items));
}

/* GET /api/v1/sync/reconciliations?limit=&cursor= : the kept reports, newest first. */
struct recs {
    json_t *items;
    int64_t last;
};

static int add_rec(void *ctx, int64_t id, const char *source, int64_t started_at,
                   int64_t finished_at, int64_t mismatches, int repaired, const char *report)
{
    struct recs *rs = ctx;
    json_t *rep = json_loads(report, 0, NULL);

    json_array_append_new(rs->items,
                          json_pack("{s:I,s:s,s:o,s:o,s:I,s:b,s:o}", "id", (json_int_t)id,
                                    "source", source, "started_at", json_iso_or_null(started_at),
                                    "finished_at", json_iso_or_null(finished_at), "mismatches",
                                    (json_int_t)mismatches, "repaired", repaired, "tables",
                                    json_object_get(rep, "tables")
                                        ? json_incref(json_object_get(rep, "tables"))
                                        : json_array()));
    json_decref(rep);
    rs->last = id;
    return 0;
}

void h_sync_reconciliations(struct http_req *r, struct http_resp *w)
{
    struct recs rs = {json_array(), 0};
    struct err e = {0};
    int64_t cursor = 0;
    int limit;

    if (http_only_params(r, w, " limit cursor ") || http_page_params(r, w, &limit, &cursor)) {
        json_decref(rs.items);
        return;
    }
    if (store_sync_reconciliations(r->st, cursor, limit, add_rec, &rs, &e)) {
        json_decref(rs.items);
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 200, http_page_json(rs.items, json_array_size(rs.items) == (size_t)limit &&
                                                       rs.last > 1 ? rs.last : 0));
}
