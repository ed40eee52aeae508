/* http/routes_segment.c -- /api/v1/segments: thin handlers over segment/service.c. */
#include <stdlib.h>
#include <string.h>

#include "../segment/segment.h"
#include "routes_int.h"

void h_segments_preview(struct http_req *r, struct http_resp *w)
{
    struct errlist errs = {0};
    struct err e = {0};
    json_t *body, *out = NULL, *rules;
    int rc;

    if (http_only_params(r, w, " ") || (body = route_object_body(r, w)) == NULL)
        return;
    rules = json_object_get(body, "rules");
    if (rules == NULL || json_object_size(body) != 1) {
        errlist_add(&errs, rules ? "" : "/rules",
                    rules ? "the body is {\"rules\": …} and nothing else" : "is required");
        rc = ERR(&e, E_INVAL, "the preview request is not valid");
    } else
        rc = segment_preview(r->app->segments, r->st, rules, clock_now_ms(), &out, &errs, &e);
    route_answer(r, w, rc, &e, &errs, "invalid_segment", 200, out);
    json_decref(body);
}

void h_segments_create(struct http_req *r, struct http_resp *w)
{
    struct errlist errs = {0};
    struct err e = {0};
    json_t *body, *out = NULL;
    int64_t id = 0;
    int rc;

    if (http_only_params(r, w, " ") || (body = route_object_body(r, w)) == NULL)
        return;
    rc = segment_create(r->app->segments, r->st, body, r->who.actor, r->req_id, &id, &errs, &e);
    if (rc == 0)
        rc = segment_get(r->st, id, &out, &e);
    route_answer(r, w, rc, &e, &errs, "invalid_segment", 201, out);
    json_decref(body);
}

void h_segments_list(struct http_req *r, struct http_resp *w)
{
    route_list(r, w, segment_list);
}

void h_segment_get(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *out = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || route_id(r, w, "segment", &id))
        return;
    rc = segment_get(r->st, id, &out, &e);
    if (rc == 0)
        json_object_del(out, "plan");
    route_answer(r, w, rc, &e, NULL, "invalid_segment", 200, out);
}

void h_segment_plan(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *out = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || route_id(r, w, "segment", &id))
        return;
    rc = segment_get(r->st, id, &out, &e);
    route_answer(r, w, rc, &e, NULL, "invalid_segment", 200,
                 rc ? NULL
                    : json_pack("{s:I,s:O,s:O}", "id", (json_int_t)id, "version",
                                json_object_get(out, "version"), "plan",
                                json_object_get(out, "plan")));
    json_decref(out);
}

void h_segment_versions(struct http_req *r, struct http_resp *w)
{
    route_get(r, w, "segment", segment_versions, "items");
}

void h_segment_update(struct http_req *r, struct http_resp *w)
{
    struct errlist errs = {0};
    struct err e = {0};
    json_t *body, *out = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || route_id(r, w, "segment", &id) ||
        (body = route_object_body(r, w)) == NULL)
        return;
    rc = segment_update(r->app->segments, r->st, id, body, r->who.actor, r->req_id, &errs, &e);
    if (rc == 0)
        rc = segment_get(r->st, id, &out, &e);
    if (rc == 0)
        json_object_del(out, "plan");
    route_answer(r, w, rc, &e, &errs, "invalid_segment", 200, out);
    json_decref(body);
}

void h_segment_delete(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || route_id(r, w, "segment", &id))
        return;
    rc = segment_delete(r->st, id, r->who.actor, r->req_id, &e);
    route_answer(r, w, rc, &e, NULL, "invalid_segment", 200,
                 rc ? NULL : json_pack("{s:I,s:b}", "id", (json_int_t)id, "deleted", 1));
}

void h_segment_evaluate(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *out = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || route_id(r, w, "segment", &id))
        return;
    if (r->body_len) {
        http_error(w, 400, "invalid_body", "evaluate takes no body", "");
        return;
    }
    rc = segment_evaluate(r->app->segments, r->st, id, "api", r->who.actor, r->req_id, &out, &e);
    route_answer(r, w, rc, &e, NULL, "invalid_segment", 200, out);
}

void h_segment_evaluations(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *items = NULL;
    int64_t id, cursor, next;
    int limit, rc;

    if (http_only_params(r, w, " limit cursor ") || route_id(r, w, "segment", &id) ||
        http_page_params(r, w, &limit, &cursor))
        return;
    rc = segment_evaluations(r->st, id, cursor, limit, &items, &next, &e);
    route_answer(r, w, rc, &e, NULL, "invalid_segment", 200,
                 rc ? NULL : http_page_json(items, next));
}

void h_segment_members(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *out = NULL;
    int64_t id, cursor, next, evid = 0;
    const char *v;
    int limit, rc;

    if (http_only_params(r, w, " evaluation limit cursor ") || route_id(r, w, "segment", &id) ||
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
    route_answer(r, w, rc, &e, NULL, "invalid_segment", 200, out);
}
