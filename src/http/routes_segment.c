/* http/routes_segment.c -- /api/v1/segments: thin handlers over segment/service.c. */
#include <stdlib.h>
#include <string.h>

#include "../segment/segment.h"
#include "routes_int.h"

/* The {id} of the route: a positive integer, else 404 (no such segment). */
static int segment_id(struct http_req *r, struct http_resp *w, int64_t *id)
{
    if (parse_i64(r->params[0], strlen(r->params[0]), id) || *id < 1) {
        http_error(w, 404, "not_found", "no such segment", NULL);
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
        http_error_list(w, 422, "invalid_segment", e->msg, errs);
    else if (rc)
        http_error_from(r, w, e);
    else
        http_json(w, status, out);
    if (rc)
        json_decref(out);
}

void h_segments_preview(struct http_req *r, struct http_resp *w)
{
    struct errlist errs = {0};
    struct err e = {0};
    json_t *body, *out = NULL, *rules;
    int rc;

    if (http_only_params(r, w, " ") || (body = object_body(r, w)) == NULL)
        return;
    rules = json_object_get(body, "rules");
    if (rules == NULL || json_object_size(body) != 1) {
        errlist_add(&errs, rules ? "" : "/rules",
                    rules ? "the body is {\"rules\": …} and nothing else" : "is required");
        rc = ERR(&e, E_INVAL, "the preview request is not valid");
    } else
        rc = segment_preview(r->app->segments, r->st, rules, clock_now_ms(), &out, &errs, &e);
    answer(r, w, rc, &e, &errs, 200, out);
    json_decref(body);
}

void h_segments_create(struct http_req *r, struct http_resp *w)
{
    struct errlist errs = {0};
    struct err e = {0};
    json_t *body, *out = NULL;
    int64_t id = 0;
    int rc;

    if (http_only_params(r, w, " ") || (body = object_body(r, w)) == NULL)
        return;
    rc = segment_create(r->app->segments, r->st, body, r->who.actor, r->req_id, &id, &errs, &e);
    if (rc == 0)
        rc = segment_get(r->st, id, &out, &e);
    answer(r, w, rc, &e, &errs, 201, out);
    json_decref(body);
}

void h_segments_list(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *items = NULL;
    int64_t cursor, next;
    int limit, rc;

    if (http_only_params(r, w, " limit cursor ") || http_page_params(r, w, &limit, &cursor))
        return;
    rc = segment_list(r->st, cursor, limit, &items, &next, &e);
    answer(r, w, rc, &e, NULL, 200, rc ? NULL : http_page_json(items, next));
}

void h_segment_get(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *out = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || segment_id(r, w, &id))
        return;
    rc = segment_get(r->st, id, &out, &e);
    if (rc == 0)
        json_object_del(out, "plan");
    answer(r, w, rc, &e, NULL, 200, out);
}

void h_segment_plan(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *out = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || segment_id(r, w, &id))
        return;
    rc = segment_get(r->st, id, &out, &e);
    answer(r, w, rc, &e, NULL, 200,
           rc ? NULL
              : json_pack("{s:I,s:O,s:O}", "id", (json_int_t)id, "version",
                          json_object_get(out, "version"), "plan", json_object_get(out, "plan")));
    json_decref(out);
}

void h_segment_versions(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *items = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || segment_id(r, w, &id))
        return;
    rc = segment_versions(r->st, id, &items, &e);
    answer(r, w, rc, &e, NULL, 200, rc ? NULL : json_pack("{s:o}", "items", items));
}

void h_segment_update(struct http_req *r, struct http_resp *w)
{
    struct errlist errs = {0};
    struct err e = {0};
    json_t *body, *out = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || segment_id(r, w, &id) || (body = object_body(r, w)) == NULL)
        return;
    rc = segment_update(r->app->segments, r->st, id, body, r->who.actor, r->req_id, &errs, &e);
    if (rc == 0)
        rc = segment_get(r->st, id, &out, &e);
    if (rc == 0)
        json_object_del(out, "plan");
    answer(r, w, rc, &e, &errs, 200, out);
    json_decref(body);
}

void h_segment_delete(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || segment_id(r, w, &id))
        return;
    rc = segment_delete(r->st, id, r->who.actor, r->req_id, &e);
    answer(r, w, rc, &e, NULL, 200,
           rc ? NULL : json_pack("{s:I,s:b}", "id", (json_int_t)id, "deleted", 1));
}

void h_segment_evaluate(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *out = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || segment_id(r, w, &id))
        return;
    if (r->body_len) {
        http_error(w, 400, "invalid_body", "evaluate takes no body", "");
        return;
    }
    rc = segment_evaluate(r->app->segments, r->st, id, "api", r->who.actor, r->req_id, &out, &e);
    answer(r, w, rc, &e, NULL, 200, out);
}

void h_segment_evaluations(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *items = NULL;
    int64_t id, cursor, next;
    int limit, rc;

    if (http_only_params(r, w, " limit cursor ") || segment_id(r, w, &id) ||
        http_page_params(r, w, &limit, &cursor))
        return;
    rc = segment_evaluations(r->st, id, cursor, limit, &items, &next, &e);
    answer(r, w, rc, &e, NULL, 200, rc ? NULL : http_page_json(items, next));
}

void h_segment_members(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *out = NULL;
    int64_t id, cursor, next, evid = 0;
    const char *v;
    int limit, rc;

    if (http_only_params(r, w, " evaluation limit cursor ") || segment_id(r, w, &id) ||
        http_page_params(r, w, &limit, &cursor))
        return;
    if ((v = http_query(r, "evaluation")) && (parse_i64(v, strlen(v), &evid) || evid < 1)) {
        http_error(w, 400, "invalid_parameter", "evaluation must be an evaluation id",
                   "evaluation");
        return;
    }
    rc = segment_snapshot_members(r->st, id, evid, cursor, limit, &out, &next, &e);
    if (rc == 0)
        json_object_set_new(out, "next_cursor",
                            next ? json_sprintf("%lld", (long long)next) : json_null());
    answer(r, w, rc, &e, NULL, 200, out);
}
