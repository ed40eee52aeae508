/* http/routes_template.c -- /api/v1/templates: thin handlers over campaign/templates.c. */
#include <stdlib.h>
#include <string.h>

#include "../campaign/campaign.h"
#include "routes_int.h"

void h_templates_create(struct http_req *r, struct http_resp *w)
{
    struct errlist errs = {0};
    struct err e = {0};
    json_t *body, *out = NULL;
    int64_t id = 0;
    int rc;

    if (http_only_params(r, w, " ") || (body = route_object_body(r, w)) == NULL)
        return;
    rc = template_create(r->st, body, r->who.actor, r->req_id, &id, &errs, &e);
    if (rc == 0)
        rc = template_get(r->st, id, &out, &e);
    route_answer(r, w, rc, &e, &errs, "invalid_template", 201, out);
    json_decref(body);
}

void h_templates_list(struct http_req *r, struct http_resp *w)
{
    route_list(r, w, template_list);
}

void h_template_get(struct http_req *r, struct http_resp *w)
{
    route_get(r, w, "template", template_get, NULL);
}

void h_template_update(struct http_req *r, struct http_resp *w)
{
    struct errlist errs = {0};
    struct err e = {0};
    json_t *body, *out = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || route_id(r, w, "template", &id) ||
        (body = route_object_body(r, w)) == NULL)
        return;
    rc = template_update(r->st, id, body, r->who.actor, r->req_id, &errs, &e);
    if (rc == 0)
        rc = template_get(r->st, id, &out, &e);
    route_answer(r, w, rc, &e, &errs, "invalid_template", 200, out);
    json_decref(body);
}

void h_template_delete(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || route_id(r, w, "template", &id))
        return;
    rc = template_delete(r->st, id, r->who.actor, r->req_id, &e);
    route_answer(r, w, rc, &e, NULL, "invalid_template", 200,
                 rc ? NULL : json_pack("{s:I,s:b}", "id", (json_int_t)id, "deleted", 1));
}

void h_template_versions(struct http_req *r, struct http_resp *w)
{
    route_get(r, w, "template", template_versions, "items");
}

void h_template_preview(struct http_req *r, struct http_resp *w)
{
    struct errlist errs = {0};
    struct err e = {0};
    json_t *body, *out = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || route_id(r, w, "template", &id) ||
        (body = route_object_body(r, w)) == NULL)
        return;
    rc = template_preview(r->app->send, r->st, id, body, &out, &errs, &e);
    route_answer(r, w, rc, &e, &errs, "invalid_template", 200, out);
    json_decref(body);
}

void h_template_test_send(struct http_req *r, struct http_resp *w)
{
    struct errlist errs = {0};
    struct err e = {0};
    json_t *body, *out = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || route_id(r, w, "template", &id) ||
        (body = route_object_body(r, w)) == NULL)
        return;
    rc =
        template_test_send(r->app->send, r->st, id, body, r->who.actor, r->req_id, &out, &errs, &e);
    route_answer(r, w, rc, &e, &errs, "invalid_template", 200, out);
    json_decref(body);
}
