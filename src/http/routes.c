/* http/routes.c -- the route table and its handlers (thin: they call the modules).
 *
 * Roles per route are declared here and enforced by the server before the
 * handler runs; docs/api.md has the same table for people. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../core/metrics.h"
#include "../ingest/ingest.h"
#include "../segment/segment.h"
#include "http.h"
#include "../sync/sync.h"
#include "routes_int.h"

/* ---- what the route files share (routes_int.h) -------------------------------------- */

int route_id(struct http_req *r, struct http_resp *w, const char *what, int64_t *id)
{
    if (parse_i64(r->params[0], strlen(r->params[0]), id) || *id < 1) {
        char msg[64];
        snprintf(msg, sizeof msg, "no such %s", what);
        http_error(w, 404, "not_found", msg, NULL);
        return -1;
    }
    return 0;
}

json_t *route_object_body(struct http_req *r, struct http_resp *w)
{
    json_t *body = http_body_json(r, w);

    if (body && !json_is_object(body)) {
        json_decref(body);
        http_error(w, 422, "invalid_body", "the body must be a JSON object", "");
        return NULL;
    }
    return body;
}

void route_answer(struct http_req *r, struct http_resp *w, int rc, const struct err *e,
                  const struct errlist *errs, const char *invalid_code, int status, json_t *out)
{
    if (rc == E_INVAL && errs && errs->n)
        http_error_list(w, 422, invalid_code, e->msg, errs);
    else if (rc == E_INVAL && e->field[0] == '/')
        http_error(w, 422, invalid_code, e->msg, e->field);
    else if (rc)
        http_error_from(r, w, e);
    else
        http_json(w, status, out);
    if (rc)
        json_decref(out);
}

void route_get(struct http_req *r, struct http_resp *w, const char *what, route_get_fn get,
               const char *wrap)
{
    struct err e = {0};
    json_t *out = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || route_id(r, w, what, &id))
        return;
    rc = get(r->st, id, &out, &e);
    if (rc == 0 && wrap)
        out = json_pack("{s:o}", wrap, out);
    route_answer(r, w, rc, &e, NULL, "invalid", 200, out);
}

void route_list(struct http_req *r, struct http_resp *w, route_list_fn list)
{
    struct err e = {0};
    json_t *items = NULL;
    int64_t cursor, next;
    int limit, rc;

    if (http_only_params(r, w, " limit cursor ") || http_page_params(r, w, &limit, &cursor))
        return;
    rc = list(r->st, cursor, limit, &items, &next, &e);
    route_answer(r, w, rc, &e, NULL, "invalid", 200, rc ? NULL : http_page_json(items, next));
}

/* ---- health and metrics ----------------------------------------------------------- */

static void h_healthz(struct http_req *r, struct http_resp *w)
{
    (void)r;
    http_json(w, 200, json_pack("{s:s}", "status", "ok"));
}

static void h_readyz(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};

    if (!r->app->ready) {
        http_error(w, 503, "starting", "the server is starting", NULL);
        return;
    }
    if (r->app->segments && !segment_service_ready(r->app->segments)) {
        http_error(w, 503, "starting", "loading the audience index", NULL);
        return;
    }
    if (store_ping(r->st, &e)) {
        http_error(w, 503, "store_unavailable", e.msg, NULL);
        return;
    }
    http_json(w, 200, json_pack("{s:s}", "status", "ready"));
}

/* Every module's figures, registered as each started (app.c), computed with the
 * request's store connection where they need one. */
static void h_metrics(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};

    if (metrics_render(r->app->metrics, &w->body, r->st, &e)) {
        buf_reset(&w->body);
        http_error_from(r, w, &e);
        return;
    }
    w->status = 200;
    w->content_type = "text/plain; version=0.0.4";
}

/* ---- contracts ------------------------------------------------------------------------- */

static void h_contracts_list(struct http_req *r, struct http_resp *w)
{
    json_t *items;
    struct err e = {0};

    if (http_only_params(r, w, " ")) /* a short list: no paging, no filters */
        return;
    if (contract_records_json(r->st, NULL, &items, &e)) {
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 200, json_pack("{s:o}", "items", items));
}

static void h_contract_get(struct http_req *r, struct http_resp *w)
{
    json_t *versions;
    struct err e = {0};

    if (http_only_params(r, w, " "))
        return;
    if (contract_records_json(r->st, r->params[0], &versions, &e)) {
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 200,
              json_pack("{s:s,s:O,s:o}", "name", r->params[0], "latest",
                        json_array_get(versions, 0), "versions", versions));
}

static void h_contract_put(struct http_req *r, struct http_resp *w)
{
    struct errlist errs = {0};
    struct err e = {0};
    json_t *doc;
    int version = 0, unchanged = 0, rc;

    doc = http_body_json(r, w);
    if (doc == NULL)
        return;
    rc = contract_put(r->st, r->params[0], r->body, r->body_len, r->who.actor, r->req_id, &version,
                      &unchanged, &errs, &e);
    if (rc == E_INVAL && errs.n) {
        http_error_list(w, 422, "invalid_contract", "the contract has problems", &errs);
    } else if (rc) {
        http_error_from(r, w, &e);
    } else {
        if (!unchanged)
            log_write(LOG_INFO, "contracts", r->req_id, "contract '%s' version %d by %s",
                      r->params[0], version, r->who.actor);
        if (!unchanged && r->app->ingest)
            ingest_queue_contracts_changed(r->app->ingest); /* validation uses it at once */
        http_json(w, unchanged ? 200 : 201,
                  json_pack("{s:s,s:s,s:i,s:b,s:O}", "name", r->params[0], "kind",
                            json_is_string(json_object_get(doc, "kind"))
                                ? json_string_value(json_object_get(doc, "kind"))
                            : strcmp(r->params[0], "contact") == 0 ? "contact"
                                                                   : "event",
                            "version", version, "unchanged", unchanged, "contract", doc));
    }
    json_decref(doc);
}

/* ---- the dead-letter store ----------------------------------------------------------- */

/* ingest's rules of a dead-letter filter: 0, or answers 400 naming the filter and
 * returns -1. */
static int filter_check(struct http_resp *w, struct store_rejected_filter *f)
{
    struct rejected_problem p;
    struct err e = {0};

    if (rejected_filter_check(f, &p, &e) == 0)
        return 0;
    http_error(w, 400, "invalid_parameter", e.msg, p.filter);
    return -1;
}

/* Reads the list filters; answers 400 and returns -1 on a bad one. */
static int rejected_filter(struct http_req *r, struct http_resp *w, struct store_rejected_filter *f)
{
    const char *v;

    memset(f, 0, sizeof *f);
    if (http_only_params(r, w, " status reason source kind since until limit cursor "))
        return -1;
    f->status = http_query(r, "status"); /* all: every status, as the CLI's --status all */
    f->reason = http_query(r, "reason");
    f->source = http_query(r, "source");
    f->kind = http_query(r, "kind");
    if (filter_check(w, f))
        return -1;
    if ((v = http_query(r, "since")) && time_parse_iso(v, strlen(v), &f->since)) {
        http_error(w, 400, "invalid_parameter", "since must be an ISO-8601 timestamp", "since");
        return -1;
    }
    if ((v = http_query(r, "until")) && time_parse_iso(v, strlen(v), &f->until)) {
        http_error(w, 400, "invalid_parameter", "until must be an ISO-8601 timestamp", "until");
        return -1;
    }
    if (filter_check(w, f)) /* since before until */
        return -1;
    if (http_page_params(r, w, &f->limit, &f->after_id))
        return -1;
    return 0;
}

static void h_rejected_list(struct http_req *r, struct http_resp *w)
{
    struct store_rejected_filter f;
    struct err e = {0};
    json_t *items;
    int64_t last_id;
    int full;

    if (rejected_filter(r, w, &f))
        return;
    if (rejected_page_json(r->st, &f, &items, &last_id, &full, &e)) {
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 200,
              http_page_json(items, full || (int)json_array_size(items) == f.limit ? last_id : 0));
}

/* GET /api/v1/rejected/{id}: one letter with all that was kept of its record. */
static void h_rejected_get(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *item = NULL;
    int64_t id;
    int rc;

    if (http_only_params(r, w, " "))
        return;
    if (parse_i64(r->params[0], strlen(r->params[0]), &id) || id < 1) {
        http_error(w, 404, "not_found", "no such dead letter", NULL);
        return;
    }
    rc = rejected_get_json(r->st, id, &item, &e);
    if (rc == E_NOTFOUND) {
        http_error(w, 404, "not_found", "no such dead letter", NULL);
        return;
    }
    if (rc) {
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 200, item);
}

/* The body of replay and dismiss: {"reason","source","kind","id"}, each optional. */
static int action_filter(struct http_req *r, struct http_resp *w, json_t **body,
                         struct store_rejected_filter *f)
{
    static const char *const strs[] = {"reason", "source", "kind"};
    struct rejected_problem p;
    struct err e = {0};
    const char *k;
    json_t *v;
    size_t i;

    memset(f, 0, sizeof *f);
    *body = NULL;
    if (r->body_len == 0)
        return 0;
    *body = http_body_json(r, w);
    if (*body == NULL)
        return -1;
    if (!json_is_object(*body)) {
        http_error(w, 400, "invalid_body", "the body must be a JSON object of filters", "");
        return -1;
    }
    json_object_foreach(*body, k, v) {
        char path[80];
        snprintf(path, sizeof path, "/%.70s", k);
        if (strcmp(k, "id") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 1) {
                http_error(w, 400, "invalid_body", "id must be a record id (a positive integer)",
                           path);
                return -1;
            }
            f->id = json_integer_value(v);
            continue;
        }
        for (i = 0; i < 3 && strcmp(k, strs[i]); i++)
            ;
        if (i == 3) {
            http_error(w, 400, "invalid_body",
                       "unknown filter: filters are reason, source, kind "
                       "and id",
                       path);
            return -1;
        }
        if (!json_is_string(v)) {
            http_error(w, 400, "invalid_body", "must be a string", path);
            return -1;
        }
        *(i == 0 ? &f->reason : i == 1 ? &f->source : &f->kind) = json_string_value(v);
        /* ingest's rules, as each filter is read: the first bad one is answered */
        if (rejected_filter_check(f, &p, &e)) {
            http_error(w, 400, "invalid_body", e.msg, path);
            return -1;
        }
    }
    return 0;
}

static void h_rejected_replay(struct http_req *r, struct http_resp *w)
{
    struct store_rejected_filter f;
    struct replay_stats rs;
    struct ingest in;
    struct err e = {0};
    json_t *body;
    int rc;

    if (action_filter(r, w, &body, &f)) {
        json_decref(body);
        return;
    }
    ingest_init(&in, r->st, r->app->cfg);
    rc = rejected_replay(&in, &f, r->who.actor, r->req_id, &rs, &e);
    ingest_release(&in);
    json_decref(body);
    if (rc) {
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 200,
              json_pack("{s:I,s:I,s:I,s:I}", "tried", (json_int_t)rs.tried, "ingested",
                        (json_int_t)rs.ingested, "still_rejected", (json_int_t)rs.still_rejected,
                        "not_replayable", (json_int_t)rs.not_replayable));
}

static void h_rejected_dismiss(struct http_req *r, struct http_resp *w)
{
    struct store_rejected_filter f;
    struct ingest in;
    struct err e = {0};
    json_t *body;
    int64_t n = 0;
    int rc;

    if (action_filter(r, w, &body, &f)) {
        json_decref(body);
        return;
    }
    if (rejected_dismiss_check(&f, &e)) {
        json_decref(body);
        http_error(w, 400, "invalid_body", e.msg, "");
        return;
    }
    ingest_init(&in, r->st, r->app->cfg);
    rc = rejected_dismiss(&in, &f, r->who.actor, r->req_id, &n, &e);
    ingest_release(&in);
    json_decref(body);
    if (rc) {
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 200, json_pack("{s:I}", "dismissed", (json_int_t)n));
}

const struct route http_routes[] = {
    {"GET", "/healthz", 0, h_healthz, "healthz", 0},
    {"GET", "/readyz", 0, h_readyz, "readyz", 0},
    {"GET", "/metrics", 0, h_metrics, "metrics", 0},
    {"GET", "/u/{token}", 0, h_unsubscribe_get, "unsubscribe.page", 0},
    {"POST", "/u/{token}", 0, h_unsubscribe_post, "unsubscribe.one_click", 0},
    {"GET", "/t/o/{token}", 0, h_track_open, "tracking.open", ROUTE_LAZY_STORE},
    {"GET", "/t/c/{token}", 0, h_track_click, "tracking.click", ROUTE_LAZY_STORE},
    {"POST", "/webhooks/{name}", 0, h_webhook, "webhooks.receive", 0},
    {"POST", "/v1/{type}", ROLE_INGEST | ROLE_ADMIN, h_tracking, "tracking",
     ROUTE_TRACKING | ROUTE_LAZY_STORE},
    {"POST", "/api/v1/events", ROLE_INGEST | ROLE_MARKETER | ROLE_ADMIN, h_events_post,
     "events.create", ROUTE_LAZY_STORE},
    {"POST", "/api/v1/contacts", ROLE_INGEST | ROLE_MARKETER | ROLE_ADMIN, h_contacts_post,
     "contacts.upsert", ROUTE_LAZY_STORE},
    {"GET", "/api/v1/contacts", ROLES_READ, h_contacts_list, "contacts.list", 0},
    {"GET", "/api/v1/contacts/{external_id}", ROLES_READ, h_contact_get, "contacts.get", 0},
    {"DELETE", "/api/v1/contacts/{external_id}", ROLES_WRITE, h_contact_delete, "contacts.delete",
     0},
    {"POST", "/api/v1/contacts/{external_id}/consent", ROLES_WRITE, h_contact_consent,
     "contacts.consent", 0},
    {"POST", "/api/v1/contacts/{external_id}/restore", ROLES_WRITE, h_contact_restore,
     "contacts.restore", 0},
    {"GET", "/api/v1/apikeys", ROLE_ADMIN, h_apikeys_list, "apikeys.list", 0},
    {"POST", "/api/v1/apikeys", ROLE_ADMIN, h_apikeys_create, "apikeys.create", 0},
    {"DELETE", "/api/v1/apikeys/{id}", ROLE_ADMIN, h_apikey_revoke, "apikeys.revoke", 0},
    {"GET", "/api/v1/audit", ROLE_ADMIN, h_audit_list, "audit.list", 0},
    {"GET", "/api/v1/sync/sources", ROLE_ADMIN, h_sync_sources_list, "sync.sources.list", 0},
    {"POST", "/api/v1/sync/sources", ROLE_ADMIN, h_sync_sources_create, "sync.sources.create", 0},
    {"DELETE", "/api/v1/sync/sources/{name}", ROLE_ADMIN, h_sync_source_delete,
     "sync.sources.delete", 0},
    {"GET", "/api/v1/sync/health", ROLES_READ, h_sync_health, "sync.health", 0},
    {"GET", "/api/v1/sync/reconciliations", ROLES_READ, h_sync_reconciliations,
     "sync.reconciliations", 0},
    {"GET", "/api/v1/contracts", ROLES_READ, h_contracts_list, "contracts.list", 0},
    {"GET", "/api/v1/contracts/{name}", ROLES_READ, h_contract_get, "contracts.get", 0},
    {"PUT", "/api/v1/contracts/{name}", ROLE_ADMIN, h_contract_put, "contracts.put", 0},
    {"GET", "/api/v1/rejected", ROLES_READ, h_rejected_list, "rejected.list", 0},
    {"GET", "/api/v1/rejected/{id}", ROLES_READ, h_rejected_get, "rejected.get", 0},
    {"POST", "/api/v1/rejected/replay", ROLE_MARKETER | ROLE_ADMIN, h_rejected_replay,
     "rejected.replay", 0},
    {"POST", "/api/v1/rejected/dismiss", ROLE_MARKETER | ROLE_ADMIN, h_rejected_dismiss,
     "rejected.dismiss", 0},
    {"POST", "/api/v1/segments/preview", ROLES_READ, h_segments_preview, "segments.preview", 0},
    {"POST", "/api/v1/segments", ROLES_WRITE, h_segments_create, "segments.create", 0},
    {"GET", "/api/v1/segments", ROLES_READ, h_segments_list, "segments.list", 0},
    {"GET", "/api/v1/segments/{id}", ROLES_READ, h_segment_get, "segments.get", 0},
    {"PUT", "/api/v1/segments/{id}", ROLES_WRITE, h_segment_update, "segments.update", 0},
    {"DELETE", "/api/v1/segments/{id}", ROLES_WRITE, h_segment_delete, "segments.delete", 0},
    {"GET", "/api/v1/segments/{id}/plan", ROLES_READ, h_segment_plan, "segments.plan", 0},
    {"GET", "/api/v1/segments/{id}/versions", ROLES_READ, h_segment_versions, "segments.versions",
     0},
    {"POST", "/api/v1/segments/{id}/evaluate", ROLES_WRITE, h_segment_evaluate, "segments.evaluate",
     0},
    {"GET", "/api/v1/segments/{id}/evaluations", ROLES_READ, h_segment_evaluations,
     "segments.evaluations", 0},
    {"GET", "/api/v1/segments/{id}/members", ROLES_READ, h_segment_members, "segments.members", 0},
    {"POST", "/api/v1/templates", ROLES_WRITE, h_templates_create, "templates.create", 0},
    {"GET", "/api/v1/templates", ROLES_READ, h_templates_list, "templates.list", 0},
    {"GET", "/api/v1/templates/{id}", ROLES_READ, h_template_get, "templates.get", 0},
    {"PUT", "/api/v1/templates/{id}", ROLES_WRITE, h_template_update, "templates.update", 0},
    {"DELETE", "/api/v1/templates/{id}", ROLES_WRITE, h_template_delete, "templates.delete", 0},
    {"GET", "/api/v1/templates/{id}/versions", ROLES_READ, h_template_versions,
     "templates.versions", 0},
    {"POST", "/api/v1/templates/{id}/preview", ROLES_READ, h_template_preview, "templates.preview",
     0},
    {"POST", "/api/v1/templates/{id}/test-send", ROLES_WRITE, h_template_test_send,
     "templates.test_send", 0},
    {"POST", "/api/v1/campaigns", ROLES_WRITE, h_campaigns_create, "campaigns.create", 0},
    {"GET", "/api/v1/campaigns", ROLES_READ, h_campaigns_list, "campaigns.list", 0},
    {"GET", "/api/v1/campaigns/{id}", ROLES_READ, h_campaign_get, "campaigns.get", 0},
    {"PUT", "/api/v1/campaigns/{id}", ROLES_WRITE, h_campaign_update, "campaigns.update", 0},
    {"DELETE", "/api/v1/campaigns/{id}", ROLES_WRITE, h_campaign_delete, "campaigns.delete", 0},
    {"POST", "/api/v1/campaigns/{id}/send", ROLES_WRITE, h_campaign_send, "campaigns.send", 0},
    {"POST", "/api/v1/campaigns/{id}/pause", ROLES_WRITE, h_campaign_pause, "campaigns.pause", 0},
    {"POST", "/api/v1/campaigns/{id}/resume", ROLES_WRITE, h_campaign_resume, "campaigns.resume",
     0},
    {"POST", "/api/v1/campaigns/{id}/cancel", ROLES_WRITE, h_campaign_cancel, "campaigns.cancel",
     0},
    {"GET", "/api/v1/campaigns/{id}/runs", ROLES_READ, h_campaign_runs, "campaigns.runs", 0},
    {"GET", "/api/v1/campaign-runs/{id}", ROLES_READ, h_run_get, "campaign_runs.get", 0},
    {"GET", "/api/v1/campaign-runs/{id}/reasons", ROLES_READ, h_run_reasons,
     "campaign_runs.reasons", 0},
    {"GET", "/api/v1/campaign-runs/{id}/log", ROLES_READ, h_run_log, "campaign_runs.log", 0},
    {"GET", "/api/v1/campaign-runs/{id}/funnel", ROLES_READ, h_run_funnel, "campaign_runs.funnel",
     0},
    {"GET", "/api/v1/campaign-runs/{id}/timeseries", ROLES_READ, h_run_timeseries,
     "campaign_runs.timeseries", 0},
    {"GET", "/api/v1/campaigns/{id}/funnel", ROLES_READ, h_campaign_funnel, "campaigns.funnel", 0},
    {"GET", "/api/v1/campaigns/{id}/timeseries", ROLES_READ, h_campaign_timeseries,
     "campaigns.timeseries", 0},
    {"GET", "/api/v1/analytics/overview", ROLES_READ, h_analytics_overview, "analytics.overview",
     0},
    {"GET", "/api/v1/ops/queues", ROLES_READ, h_ops_queues, "ops.queues", 0},
    {"GET", "/api/v1/campaign-runs/{id}/messages", ROLES_READ, h_run_messages,
     "campaign_runs.messages", 0},
    {"POST", "/api/v1/campaign-runs/{id}/resend-failed", ROLES_WRITE, h_run_resend_failed,
     "campaign_runs.resend_failed", 0},
    {"GET", "/api/v1/dlq", ROLES_READ, h_dlq_list, "dlq.list", 0},
    {"POST", "/api/v1/dlq/replay", ROLES_WRITE, h_dlq_replay, "dlq.replay", 0},
};
const int http_routes_count = sizeof http_routes / sizeof *http_routes;
