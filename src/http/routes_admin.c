/* http/routes_admin.c -- contacts (read, list, delete, consent), API keys and the audit
 * log. Every change here is audited in the transaction that makes it. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "../ingest/ingest.h"
#include "../segment/segment.h"
#include "../campaign/campaign.h"
#include "routes_int.h"

/* ---- contacts ---------------------------------------------------------------------- */

void h_contact_get(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    json_t *c, *msgs;

    if (http_only_params(r, w, " "))
        return;
    if (segment_contact_view(r->app->segments, r->st, r->params[0], &c, &e)) {
        http_error_from(r, w, &e);
        return;
    }
    /* the contact's latest campaign messages, with what became of each */
    if (contact_messages(r->st, json_integer_value(json_object_get(c, "id")), 20, &msgs, &e)) {
        json_decref(c);
        http_error_from(r, w, &e);
        return;
    }
    json_object_set_new(c, "messages", msgs);
    http_json(w, 200, c);
}

void h_contacts_list(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    int64_t cursor, last_id;
    json_t *items;
    int limit;

    if (http_only_params(r, w, " limit cursor email ") || http_page_params(r, w, &limit, &cursor))
        return;
    if (contacts_page_json(r->st, cursor, limit, http_query(r, "email"), &items, &last_id, &e)) {
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 200, http_page_json(items, (int)json_array_size(items) == limit ? last_id : 0));
}

void h_contact_delete(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};

    if (http_only_params(r, w, " "))
        return;
    if (contact_delete(r->st, r->params[0], r->who.actor, r->req_id, &e)) {
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 200, json_pack("{s:s,s:b}", "external_id", r->params[0], "deleted", 1));
}

/* POST /api/v1/contacts/{external_id}/consent {"state","reason"}: the only way back to
 * subscribed. */
/* POST /api/v1/contacts/{external_id}/restore, with {"reason"?} or no body. */
void h_contact_restore(struct http_req *r, struct http_resp *w)
{
    json_t *body = NULL, *out = NULL;
    const char *reason = NULL;
    struct err e = {0};

    if (http_only_params(r, w, " "))
        return;
    if (r->body_len) {
        if ((body = http_body_json(r, w)) == NULL)
            return;
        reason = json_string_value(json_object_get(body, "reason"));
        if (!json_is_object(body) || json_object_size(body) > (reason ? 1u : 0u) ||
            (reason && strlen(reason) > 500)) {
            http_error(w, 422, "invalid",
                       "the body may hold only \"reason\": 1 to 500 bytes, "
                       "kept in the audit log",
                       "/reason");
            json_decref(body);
            return;
        }
    }
    if (contact_restore(r->st, r->params[0], reason, r->who.actor, r->req_id, &out, &e))
        http_error_from(r, w, &e);
    else
        http_json(w, 200, out);
    json_decref(body);
}

void h_contact_consent(struct http_req *r, struct http_resp *w)
{
    json_t *body = http_body_json(r, w);
    const char *state, *reason;
    enum consent_state to, before;
    struct errlist errs = {0};
    struct err e = {0};

    if (body == NULL)
        return;
    state = json_string_value(json_object_get(body, "state"));
    reason = json_string_value(json_object_get(body, "reason"));
    if (state == NULL || consent_parse(state, &to))
        errlist_add(&errs, "/state", "must be subscribed, unsubscribed, bounced or complained");
    if (reason == NULL || *reason == '\0' || strlen(reason) > 500)
        errlist_add(&errs, "/reason",
                    "is required: 1 to 500 bytes, kept in the history and the "
                    "audit log");
    if (errs.n) {
        http_error_list(w, 422, "invalid", "the consent change is not valid", &errs);
        json_decref(body);
        return;
    }
    if (contact_consent_change(r->st, r->app->cfg, r->params[0], to, "api", reason, r->who.actor,
                               r->req_id, &before, &e)) {
        json_decref(body);
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 200,
              json_pack("{s:s,s:s,s:s}", "external_id", r->params[0], "from", consent_name(before),
                        "to", consent_name(to)));
    json_decref(body);
}

/* ---- API keys ---------------------------------------------------------------------- */

void h_apikeys_list(struct http_req *r, struct http_resp *w)
{
    json_t *items;
    struct err e = {0};

    if (http_only_params(r, w, " "))
        return;
    if (auth_apikeys_json(r->st, &items, &e)) {
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 200, http_page_json(items, 0));
}

/* POST {"name","role"}: 201 with the key, shown this once. */
void h_apikeys_create(struct http_req *r, struct http_resp *w)
{
    json_t *body = http_body_json(r, w);
    const char *name, *role_s;
    struct errlist errs = {0};
    struct err e = {0};
    enum role role;
    char *key = NULL;
    int64_t id;

    if (body == NULL)
        return;
    name = json_string_value(json_object_get(body, "name"));
    role_s = json_string_value(json_object_get(body, "role"));
    if (name == NULL || *name == '\0' || strlen(name) > 100)
        errlist_add(&errs, "/name", "is required: 1 to 100 bytes");
    if (role_s == NULL || role_parse(role_s, &role))
        errlist_add(&errs, "/role", "must be ingest, analyst, marketer or admin");
    if (errs.n) {
        http_error_list(w, 422, "invalid", "the key is not valid", &errs);
        json_decref(body);
        return;
    }
    if (auth_apikey_create(r->st, name, role, r->who.actor, r->req_id, &key, &id, &e)) {
        json_decref(body);
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 201, auth_apikey_created_json(id, name, role, key));
    sodium_memzero(key, strlen(key));
    free(key);
    json_decref(body);
}

void h_apikey_revoke(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    int64_t id;

    if (http_only_params(r, w, " "))
        return;
    if (parse_i64(r->params[0], strlen(r->params[0]), &id) || id < 1) {
        http_error(w, 404, "not_found", "no such API key", NULL);
        return;
    }
    if (auth_apikey_revoke(r->st, id, r->who.actor, r->req_id, &e)) {
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 200, json_pack("{s:I,s:b}", "id", (json_int_t)id, "revoked", 1));
}

/* ---- the audit log ------------------------------------------------------------------- */

static int time_param(struct http_req *r, struct http_resp *w, const char *name, int64_t *out)
{
    const char *v = http_query(r, name);
    char msg[96];

    *out = 0;
    if (v && time_parse_iso(v, strlen(v), out)) {
        snprintf(msg, sizeof msg, "%s must be an ISO-8601 time", name);
        http_error(w, 400, "invalid_parameter", msg, name);
        return -1;
    }
    return 0;
}

void h_audit_list(struct http_req *r, struct http_resp *w)
{
    struct store_audit_filter f = {0};
    struct err e = {0};
    int64_t cursor, last_id;
    json_t *items;
    int limit;

    if (http_only_params(r, w, " limit cursor actor action entity entity_id since until ") ||
        http_page_params(r, w, &limit, &cursor) || time_param(r, w, "since", &f.since) ||
        time_param(r, w, "until", &f.until))
        return;
    f.actor = http_query(r, "actor");
    f.action = http_query(r, "action");
    f.entity = http_query(r, "entity");
    f.entity_id = http_query(r, "entity_id");
    if (audit_list_json(r->st, cursor, limit, &f, &items, &last_id, &e)) {
        http_error_from(r, w, &e);
        return;
    }
    http_json(w, 200, http_page_json(items, (int)json_array_size(items) == limit ? last_id : 0));
}
