/* http/routes.c -- the route table and its handlers (thin: they call the modules).
 *
 * Roles per route are declared here and enforced by the server before the
 * handler runs; docs/api.md has the same table for people. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../ingest/ingest.h"
#include "http.h"

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
    if (store_ping(r->st, &e)) {
        http_error(w, 503, "store_unavailable", e.msg, NULL);
        return;
    }
    http_json(w, 200, json_pack("{s:s}", "status", "ready"));
}

static int metric_reason(void *ctx, const char *key, int64_t count)
{
    buf_printf(ctx, "engage_ingest_rejected{reason=\"%s\"} %lld\n", key, (long long)count);
    return 0;
}

/* Table counts scan whole indexes: they are recounted only when a change sequence moved
 * since the last count (two index probes tell), so idle scrapes cost nothing. */
static pthread_mutex_t counts_mu = PTHREAD_MUTEX_INITIALIZER; /* protects counts_* */
static struct store_counts counts_cache;
static int counts_valid;

static void h_metrics(struct http_req *r, struct http_resp *w)
{
    struct store_counts c;
    struct err e = {0};
    int64_t cseq = 0, eseq = 0;
    int rc;

    rc = store_change_seqs(r->st, &cseq, &eseq, &e);
    pthread_mutex_lock(&counts_mu);
    if (rc == 0 && (!counts_valid || cseq != counts_cache.contact_seq ||
                    eseq != counts_cache.event_seq)) {
        rc = store_counts(r->st, &counts_cache, &e);
        counts_valid = rc == 0;
    }
    c = counts_cache;
    pthread_mutex_unlock(&counts_mu);
    if (rc) {
        http_error_from(r, w, &e);
        return;
    }
    w->status = 200;
    w->content_type = "text/plain; version=0.0.4";
    buf_printf(&w->body,
               "# HELP engage_build_info Build version.\n# TYPE engage_build_info gauge\n"
               "engage_build_info{version=\"%s\"} 1\n"
               "# HELP engage_uptime_seconds Seconds since start.\n# TYPE engage_uptime_seconds gauge\n"
               "engage_uptime_seconds %.3f\n"
               "# HELP engage_contacts Contacts in the store.\n# TYPE engage_contacts gauge\n"
               "engage_contacts{state=\"active\"} %lld\nengage_contacts{state=\"deleted\"} %lld\n"
               "# HELP engage_events Events in the store.\n# TYPE engage_events gauge\n"
               "engage_events %lld\n"
               "# HELP engage_events_unvalidated Stored events of names without a contract.\n"
               "# TYPE engage_events_unvalidated gauge\nengage_events_unvalidated %lld\n"
               "# HELP engage_change_seq Latest change sequence by table.\n"
               "# TYPE engage_change_seq gauge\nengage_change_seq{table=\"contacts\"} %lld\n"
               "engage_change_seq{table=\"events\"} %lld\n"
               "# HELP engage_ingest_rejected Records in the dead-letter store awaiting replay, "
               "by reason.\n# TYPE engage_ingest_rejected gauge\n",
               r->app->version, (double)(clock_now_ms() - r->app->started_at) / 1000.0,
               (long long)(c.contacts - c.contacts_deleted), (long long)c.contacts_deleted,
               (long long)c.events, (long long)c.events_unvalidated, (long long)c.contact_seq,
               (long long)c.event_seq);
    if (store_rejected_counts(r->st, metric_reason, &w->body, &e)) {
        buf_reset(&w->body);
        http_error_from(r, w, &e);
        return;
    }
    http_metrics_write(&w->body);
}

/* ---- contracts ------------------------------------------------------------------------- */

static json_t *contract_json(const struct store_contract *c)
{
    char ts[32];
    json_t *doc = json_loads(c->body, 0, NULL);

    time_format_iso(c->created_at, ts);
    return json_pack("{s:s,s:s,s:i,s:s,s:s,s:o}", "name", c->name, "kind", c->kind, "version",
                     c->version, "created_at", ts, "created_by", c->created_by, "contract",
                     doc ? doc : json_null());
}

static int add_contract(void *ctx, const struct store_contract *c)
{
    json_array_append_new(ctx, contract_json(c));
    return 0;
}

static void h_contracts_list(struct http_req *r, struct http_resp *w)
{
    json_t *items = json_array();
    struct err e = {0};

    if (store_contracts_latest(r->st, add_contract, items, &e)) {
        json_decref(items);
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 200, json_pack("{s:o}", "items", items));
}

static void h_contract_get(struct http_req *r, struct http_resp *w)
{
    json_t *versions = json_array();
    struct err e = {0};

    if (store_contract_versions(r->st, r->params[0], add_contract, versions, &e)) {
        json_decref(versions);
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 200, json_pack("{s:s,s:O,s:o}", "name", r->params[0], "latest",
                                json_array_get(versions, 0), "versions", versions));
}

static int keep_latest(void *ctx, const struct store_contract *c)
{
    json_t **slot = ctx;

    if (*slot == NULL)
        *slot = json_loads(c->body, 0, NULL);
    return 0;
}

static void h_contract_put(struct http_req *r, struct http_resp *w)
{
    struct errlist errs = {0};
    struct contract *c = NULL;
    struct err e = {0};
    json_t *doc, *before = NULL;
    char *body;
    int version = 0, rc;

    doc = http_body_json(r, w);
    if (doc == NULL)
        return;
    body = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (contract_compile(body, strlen(body), r->params[0], 0, &c, &errs, &e)) {
        http_error_list(w, 422, "invalid_contract", "the contract has problems", &errs);
        goto out;
    }
    rc = store_begin(r->st, &e);
    if (rc == 0) {
        struct err tmp = {0};
        rc = store_contract_versions(r->st, r->params[0], keep_latest, &before, &tmp);
        rc = rc == E_NOTFOUND ? 0 : rc;
        if (rc)
            e = tmp;
    }
    if (rc == 0)
        rc = store_contract_put(r->st, r->params[0], contract_kind(c), body, r->who.actor,
                                &version, &e);
    if (rc == 0) {
        char ent[160];
        snprintf(ent, sizeof ent, "%s@%d", r->params[0], version);
        rc = audit_record(r->st, r->who.actor, "contract.put", "contract", ent, before, doc,
                          r->req_id, &e);
    }
    if (rc == 0)
        rc = store_commit(r->st, &e);
    else
        store_rollback(r->st);
    if (rc) {
        http_error_from(r, w, &e);
        goto out;
    }
    log_write(LOG_INFO, "contracts", r->req_id, "contract '%s' version %d by %s", r->params[0],
              version, r->who.actor);
    http_json(w, 201, json_pack("{s:s,s:s,s:i,s:O}", "name", r->params[0], "kind",
                                contract_kind(c), "version", version, "contract", doc));
out:
    contract_free(c);
    json_decref(before);
    json_decref(doc);
    free(body);
}

/* ---- the dead-letter store ----------------------------------------------------------- */

struct rej_page {
    json_t *items;
    int64_t last_id;
};

static int add_rejected(void *ctx, const struct store_rejected *x)
{
    struct rej_page *p = ctx;
    char ts[32], rs[32];
    json_t *raw = json_loads(x->raw, 0, NULL);
    json_t *item;

    time_format_iso(x->created_at, ts);
    item = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:s,s:i}", "id", (json_int_t)x->id,
                     "created_at", ts, "source", x->source, "kind", x->kind, "reason", x->reason,
                     "field", x->field, "message", x->message, "origin", x->origin, "raw",
                     raw ? raw : json_string(x->raw), "status", x->status, "attempts",
                     x->attempts);
    if (x->resolved_at) {
        time_format_iso(x->resolved_at, rs);
        json_object_set_new(item, "resolved_at", json_string(rs));
    }
    json_array_append_new(p->items, item);
    p->last_id = x->id;
    return 0;
}

/* Reads the shared filter parameters; answers 400 and returns -1 on a bad one. */
static int rejected_filter(struct http_req *r, struct http_resp *w, struct store_rejected_filter *f)
{
    const char *v;
    int64_t n;

    memset(f, 0, sizeof *f);
    f->status = http_query(r, "status");
    f->reason = http_query(r, "reason");
    f->source = http_query(r, "source");
    f->kind = http_query(r, "kind");
    if ((v = http_query(r, "since")) && time_parse_iso(v, strlen(v), &f->since)) {
        http_error(w, 400, "invalid_parameter", "since must be an ISO-8601 timestamp", "since");
        return -1;
    }
    if ((v = http_query(r, "until")) && time_parse_iso(v, strlen(v), &f->until)) {
        http_error(w, 400, "invalid_parameter", "until must be an ISO-8601 timestamp", "until");
        return -1;
    }
    f->limit = 100;
    if ((v = http_query(r, "limit"))) {
        if (parse_i64(v, strlen(v), &n) || n < 1 || n > 1000) {
            http_error(w, 400, "invalid_parameter", "limit must be an integer from 1 to 1000",
                       "limit");
            return -1;
        }
        f->limit = (int)n;
    }
    if ((v = http_query(r, "cursor"))) {
        if (parse_i64(v, strlen(v), &f->after_id) || f->after_id < 0) {
            http_error(w, 400, "invalid_parameter", "cursor is not one this API gave", "cursor");
            return -1;
        }
    }
    return 0;
}

static void h_rejected_list(struct http_req *r, struct http_resp *w)
{
    struct store_rejected_filter f;
    struct rej_page p = {json_array(), 0};
    struct err e = {0};

    if (rejected_filter(r, w, &f)) {
        json_decref(p.items);
        return;
    }
    if (store_rejected_list(r->st, &f, add_rejected, &p, &e)) {
        json_decref(p.items);
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 200, json_pack("{s:o,s:o}", "items", p.items, "next_cursor",
                                (int)json_array_size(p.items) == f.limit
                                    ? json_sprintf("%lld", (long long)p.last_id)
                                    : json_null()));
}

static void h_rejected_replay(struct http_req *r, struct http_resp *w)
{
    struct store_rejected_filter f = {0};
    struct replay_stats rs;
    struct ingest in;
    struct err e = {0};
    json_t *body = NULL;
    int rc;

    if (r->body_len) {
        json_error_t je;
        body = json_loadb(r->body, r->body_len, 0, &je);
        if (!json_is_object(body)) {
            json_decref(body);
            http_error(w, 400, "invalid_json", "the body must be a JSON object of filters", NULL);
            return;
        }
        if (json_unpack_ex(body, &je, JSON_STRICT, "{s?s,s?s,s?s,s?I}", "reason", &f.reason,
                           "source", &f.source, "kind", &f.kind, "id", &f.id) != 0) {
            char msg[300];
            snprintf(msg, sizeof msg, "filters are reason, source, kind (strings) and id: %s",
                     je.text);
            http_error(w, 422, "invalid_filter", msg, NULL);
            json_decref(body);
            return;
        }
    }
    ingest_init(&in, r->st, r->app->cfg);
    rc = rejected_replay(&in, &f, r->who.actor, r->req_id, &rs, &e);
    ingest_release(&in);
    json_decref(body);
    if (rc) {
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 200, json_pack("{s:I,s:I,s:I}", "tried", (json_int_t)rs.tried, "ingested",
                                (json_int_t)rs.ingested, "still_rejected",
                                (json_int_t)rs.still_rejected));
}

const struct route http_routes[] = {
    {"GET", "/healthz", 0, h_healthz, "healthz"},
    {"GET", "/readyz", 0, h_readyz, "readyz"},
    {"GET", "/metrics", 0, h_metrics, "metrics"},
    {"GET", "/api/v1/contracts", ROLES_READ, h_contracts_list, "contracts.list"},
    {"GET", "/api/v1/contracts/{name}", ROLES_READ, h_contract_get, "contracts.get"},
    {"PUT", "/api/v1/contracts/{name}", ROLE_ADMIN, h_contract_put, "contracts.put"},
    {"GET", "/api/v1/rejected", ROLES_READ, h_rejected_list, "rejected.list"},
    {"POST", "/api/v1/rejected/replay", ROLE_MARKETER | ROLE_ADMIN, h_rejected_replay,
     "rejected.replay"},
};
const int http_routes_count = sizeof http_routes / sizeof *http_routes;
