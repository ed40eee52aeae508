/* http/routes_template.c -- /api/v1/templates: thin handlers over campaign/templates.c. */
#include <stdlib.h>
#include <string.h>

#include "../campaign/campaign.h"
#include "routes_int.h"

/* The {id} of the route: a positive integer, else 404 (no such template). */
static int template_id(struct http_req *r, struct http_resp *w, int64_t *id)
{
    if (parse_i64(r->params[0], strlen(r->params[0]), id) || *id < 1) {
        http_error(w, 404, "not_found", "no such template", NULL);
        return -1;
    }
    return 0;
}

/* A JSON object body, or 400 (malformed) / 422 (not an object). */
static json_t *object_body(struct http_req *r, struct http_resp *w)
{
    json_t *body = http_body_json(r, w);

    if (body && !json_is_object(body)) {
        json_decref(body);
        http_error(w, 422, "invalid_body", "the body must be a JSON object", "");
        return NULL;
    }
    return body;
}

static void answer(struct http_req *r, struct http_resp *w, int rc, const struct err *e,
                   const struct errlist *errs, int status, json_t *out)
{
    if (rc == E_INVAL && errs && errs->n)
        http_error_list(w, 422, "invalid_template", e->msg, errs);
    else if (rc)
        http_error_from(r, w, e);
    else
        http_json(w, status, out);
    if (rc)
        json_decref(out);
}

void h_templates_create(struct http_req *r, struct http_resp *w)
{
    struct errlist errs = {0};
    struct err e = {0};
    json_t *body, *out = NULL;
    int64_t id = 0;
    int rc;

    if (http_only_params(r, w, " ") || (body = object_body(r, w)) == NULL)
        return;
    rc = template_create(r->st, body, r->who.actor, r->req_id, &id, &errs, &e);
    if (rc == 0)
        rc = template_get(r->st, id, &out, &e);
    answer(r, w, rc, &e, &errs, 201, out);
    json_decref(body);
}

void h_templates_list(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *items = NULL;
    int64_t cursor, next;
    int limit, rc;

    if (http_only_params(r, w, " limit cursor ") || http_page_params(r, w, &limit, &cursor))
        return;
    rc = template_list(r->st, cursor, limit, &items, &next, &e);
    answer(r, w, rc, &e, NULL, 200, rc ? NULL : http_page_json(items, next));
}

void h_template_get(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *out = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || template_id(r, w, &id))
        return;
    rc = template_get(r->st, id, &out, &e);
    answer(r, w, rc, &e, NULL, 200, out);
}

void h_template_update(struct http_req *r, struct http_resp *w)
{
    struct errlist errs = {0};
    struct err e = {0};
    json_t *body, *out = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || template_id(r, w, &id) || (body = object_body(r, w)) == NULL)
        return;
    rc = template_update(r->st, id, body, r->who.actor, r->req_id, &errs, &e);
    if (rc == 0)
        rc = template_get(r->st, id, &out, &e);
    answer(r, w, rc, &e, &errs, 200, out);
    json_decref(body);
}

void h_template_delete(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || template_id(r, w, &id))
        return;
    rc = template_delete(r->st, id, r->who.actor, r->req_id, &e);
    answer(r, w, rc, &e, NULL, 200,
           rc ? NULL : json_pack("{s:I,s:b}", "id", (json_int_t)id, "deleted", 1));
}

void h_template_versions(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *items = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || template_id(r, w, &id))
        return;
    rc = template_versions(r->st, id, &items, &e);
    answer(r, w, rc, &e, NULL, 200, rc ? NULL : json_pack("{s:o}", "items", items));
}

void h_template_preview(struct http_req *r, struct http_resp *w)
{
    struct errlist errs = {0};
    struct err e = {0};
    json_t *body, *out = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || template_id(r, w, &id) || (body = object_body(r, w)) == NULL)
        return;
    rc = template_preview(r->app->send, r->st, id, body, &out, &errs, &e);
    answer(r, w, rc, &e, &errs, 200, out);
    json_decref(body);
}

void h_template_test_send(struct http_req *r, struct http_resp *w)
{
    struct errlist errs = {0};
    struct err e = {0};
    json_t *body, *out = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || template_id(r, w, &id) || (body = object_body(r, w)) == NULL)
        return;
    rc =
        template_test_send(r->app->send, r->st, id, body, r->who.actor, r->req_id, &out, &errs, &e);
    answer(r, w, rc, &e, &errs, 200, out);
    json_decref(body);
}
