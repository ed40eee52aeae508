/* http/routes_campaign.c -- /api/v1/campaigns, /api/v1/campaign-runs, /api/v1/dlq: thin
 * handlers over campaign/campaigns.c; a change that gives the dispatcher work wakes it. */
#include <stdlib.h>
#include <string.h>

#include "../campaign/campaign.h"
#include "routes_int.h"

static void answer(struct http_req *r, struct http_resp *w, int rc, const struct err *e,
                   const struct errlist *errs, int status, json_t *out)
{
    route_answer(r, w, rc, e, errs, "invalid_campaign", status, out);
}

static int no_body(struct http_req *r, struct http_resp *w, const char *what)
{
    char msg[80];

    if (r->body_len == 0)
        return 0;
    snprintf(msg, sizeof msg, "%s takes no body", what);
    http_error(w, 400, "invalid_body", msg, "");
    return -1;
}

void h_campaigns_create(struct http_req *r, struct http_resp *w)
{
    struct errlist errs = {0};
    struct err e = {0};
    json_t *body, *out = NULL;
    int64_t id = 0;
    int rc;

    if (http_only_params(r, w, " ") || (body = route_object_body(r, w)) == NULL)
        return;
    rc = campaign_create(r->app->send, r->st, body, r->who.actor, r->req_id, &id, &errs, &e);
    if (rc == 0)
        rc = campaign_get(r->st, id, &out, &e);
    answer(r, w, rc, &e, &errs, 201, out);
    json_decref(body);
}

void h_campaigns_list(struct http_req *r, struct http_resp *w)
{
    route_list(r, w, campaign_list);
}

void h_campaign_get(struct http_req *r, struct http_resp *w)
{
    route_get(r, w, "campaign", campaign_get, NULL);
}

void h_campaign_update(struct http_req *r, struct http_resp *w)
{
    struct errlist errs = {0};
    struct err e = {0};
    json_t *body, *out = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || route_id(r, w, "campaign", &id) ||
        (body = route_object_body(r, w)) == NULL)
        return;
    rc = campaign_update(r->app->send, r->st, id, body, r->who.actor, r->req_id, &errs, &e);
    if (rc == 0)
        rc = campaign_get(r->st, id, &out, &e);
    answer(r, w, rc, &e, &errs, 200, out);
    json_decref(body);
    if (rc == 0)
        dispatcher_wake(r->app->dispatcher);
}

void h_campaign_delete(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || route_id(r, w, "campaign", &id))
        return;
    rc = campaign_delete(r->st, id, r->who.actor, r->req_id, &e);
    answer(r, w, rc, &e, NULL, 200,
           rc ? NULL : json_pack("{s:I,s:b}", "id", (json_int_t)id, "deleted", 1));
}

void h_campaign_send(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *out = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || route_id(r, w, "campaign", &id) || no_body(r, w, "send"))
        return;
    rc = campaign_send(r->app->send, r->st, id, r->who.actor, r->req_id, &out, &e);
    answer(r, w, rc, &e, NULL, 202, out);
    if (rc == 0)
        dispatcher_wake(r->app->dispatcher);
}

static void act(struct http_req *r, struct http_resp *w, enum campaign_action a, const char *what)
{
    struct err e = {0};
    json_t *out = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || route_id(r, w, "campaign", &id) || no_body(r, w, what))
        return;
    rc = campaign_act(r->st, id, a, r->who.actor, r->req_id, &out, &e);
    answer(r, w, rc, &e, NULL, 200, out);
    if (rc == 0)
        dispatcher_wake(r->app->dispatcher);
}

void h_campaign_pause(struct http_req *r, struct http_resp *w)
{
    act(r, w, CAMPAIGN_PAUSE, "pause");
}

void h_campaign_resume(struct http_req *r, struct http_resp *w)
{
    act(r, w, CAMPAIGN_RESUME, "resume");
}

void h_campaign_cancel(struct http_req *r, struct http_resp *w)
{
    act(r, w, CAMPAIGN_CANCEL, "cancel");
}

void h_campaign_runs(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *items = NULL;
    int64_t id, cursor, next;
    int limit, rc;

    if (http_only_params(r, w, " limit cursor ") || route_id(r, w, "campaign", &id) ||
        http_page_params(r, w, &limit, &cursor))
        return;
    rc = run_list(r->st, id, cursor, limit, &items, &next, &e);
    answer(r, w, rc, &e, NULL, 200, rc ? NULL : http_page_json(items, next));
}

void h_run_get(struct http_req *r, struct http_resp *w)
{
    route_get(r, w, "campaign run", run_get, NULL);
}

void h_run_messages(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *items = NULL;
    int64_t id, cursor, next;
    int limit, rc;

    struct run_msg_filter f;

    if (http_only_params(r, w, " state event reason limit cursor ") ||
        route_id(r, w, "campaign run", &id) || http_page_params(r, w, &limit, &cursor))
        return;
    f.state = http_query(r, "state");
    f.event = http_query(r, "event");
    f.reason = http_query(r, "reason");
    rc = run_messages(r->st, id, &f, cursor, limit, &items, &next, &e);
    if (rc == E_INVAL) {
        http_error(w, 400, "invalid_parameter", e.msg, e.field);
        return;
    }
    answer(r, w, rc, &e, NULL, 200, rc ? NULL : http_page_json(items, next));
}

void h_run_log(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *items = NULL;
    int64_t id, cursor, next;
    int limit, rc;

    if (http_only_params(r, w, " limit cursor ") || route_id(r, w, "campaign run", &id) ||
        http_page_params(r, w, &limit, &cursor))
        return;
    rc = run_log(r->st, id, cursor, limit, &items, &next, &e);
    answer(r, w, rc, &e, NULL, 200, rc ? NULL : http_page_json(items, next));
}

void h_run_reasons(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *out = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || route_id(r, w, "campaign run", &id))
        return;
    rc = run_reasons(r->st, id, &out, &e);
    answer(r, w, rc, &e, NULL, 200, out);
}

void h_run_resend_failed(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *out = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || route_id(r, w, "campaign run", &id) ||
        no_body(r, w, "resend-failed"))
        return;
    rc = run_resend_failed(r->st, id, r->who.actor, r->req_id, &out, &e);
    answer(r, w, rc, &e, NULL, 200, out);
    if (rc == 0)
        dispatcher_wake(r->app->dispatcher);
}

void h_dlq_list(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *items = NULL;
    int64_t cursor, next, run = 0;
    const char *v, *reason = http_query(r, "reason");
    int limit, rc;

    if (http_only_params(r, w, " run run_id reason limit cursor ") ||
        http_page_params(r, w, &limit, &cursor))
        return;
    if (((v = http_query(r, "run")) || (v = http_query(r, "run_id"))) &&
        (parse_i64(v, strlen(v), &run) || run < 1)) {
        http_error(w, 400, "invalid_parameter", "run must be a campaign run id", "run");
        return;
    }
    if (reason && (reason[0] == '\0' || strlen(reason) > 200)) {
        http_error(w, 400, "invalid_parameter", "reason must be 1 to 200 bytes", "reason");
        return;
    }
    rc = dlq_list(r->st, run, reason, cursor, limit, &items, &next, &e);
    answer(r, w, rc, &e, NULL, 200, rc ? NULL : http_page_json(items, next));
}

void h_dlq_replay(struct http_req *r, struct http_resp *w)
{
    struct errlist errs = {0};
    struct err e = {0};
    json_t *body, *out = NULL;
    int rc;

    if (http_only_params(r, w, " "))
        return;
    body = r->body_len ? route_object_body(r, w) : json_object();
    if (body == NULL)
        return;
    rc = dlq_replay(r->st, body, r->who.actor, r->req_id, &out, &errs, &e);
    answer(r, w, rc, &e, &errs, 200, out);
    json_decref(body);
    if (rc == 0)
        dispatcher_wake(r->app->dispatcher);
}
