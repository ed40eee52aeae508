/* http/routes_sync.c -- CRM sync over HTTP: sources (admin, audited) and their health
 * (read roles). The password is taken once, sealed, and never shown again; a source
 * added here names only what [sync] allows the API (sync/policy.c). */
#include <string.h>

#include "../sync/sync.h"
#include "routes_int.h"

/* GET /api/v1/sync/sources */
void h_sync_sources_list(struct http_req *r, struct http_resp *w)
{
    json_t *items;
    struct err e = {0};

    if (http_only_params(r, w, ""))
        return;
    if (sync_sources_list_json(r->st, &items, &e)) {
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
    json_t *src;
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
    } else if (sync_source_get_json(r->st, spec.name, &src, &e) == 0) {
        http_json(w, 201, src);
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
void h_sync_health(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *items;

    if (http_only_params(r, w, ""))
        return;
    if (sync_health_json(r->st, r->app->sync, &items, &e)) {
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 200, json_pack("{s:o}", "items", items));
}

/* GET /api/v1/sync/reconciliations?limit=&cursor= : the kept reports, newest first. */
void h_sync_reconciliations(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    int64_t cursor = 0, last;
    json_t *items;
    int limit;

    if (http_only_params(r, w, " limit cursor ") || http_page_params(r, w, &limit, &cursor))
        return;
    if (sync_reconciliations_json(r->st, cursor, limit, &items, &last, &e)) {
        http_error_from(r, w, &e);
        return;
    }
    http_json(
        w, 200,
        http_page_json(items, json_array_size(items) == (size_t)limit && last > 1 ? last : 0));
}
