/* campaign/campaigns.c -- campaigns and their runs as records: what the API and the CLI
 * create, change and read. The dispatcher (dispatcher.c) does the sending.
 *
 * DESIGN: a campaign is a draft until it is sent; POST .../send creates a run (state
 * scheduled, due at the campaign's scheduled_at or now) in the same transaction that
 * moves the campaign on and writes the audit row, then the dispatcher starts it:
 * freezes the audience, writes the ledger, sends. Every state change of a run is one
 * transaction with its audit row; the ledger rows it touches (cancel skips the unsent,
 * resend-failed re-queues) move in that same transaction. The campaign's state mirrors
 * its latest run's (docs/campaigns.md, "States"). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../auth/auth.h"
#include "../core/map.h"
#include "../provider/provider.h"
#include "../store/store.h"
#include "campaign.h"
#include "campaign_int.h"

#define MAX_NAME 128
#define MAX_THROTTLE 100000

/* ---- owned copies of store rows ------------------------------------------------------ */

struct camp_copy {
    struct store_campaign c;
    char *name, *provider, *state, *created_by, *conversion;
};

static void camp_copy_release(struct camp_copy *k)
{
    free(k->conversion);
    free(k->name);
    free(k->provider);
    free(k->state);
    free(k->created_by);
    memset(k, 0, sizeof *k);
}

static int keep_campaign(void *ctx, const struct store_campaign *c)
{
    struct camp_copy *k = ctx;

    camp_copy_release(k);
    k->c = *c;
    k->c.name = k->name = xstrdup(c->name);
    k->c.provider = k->provider = c->provider ? xstrdup(c->provider) : NULL;
    k->c.state = k->state = xstrdup(c->state);
    k->c.created_by = k->created_by = xstrdup(c->created_by);
    k->c.conversion = k->conversion = c->conversion ? xstrdup(c->conversion) : NULL;
    return 0;
}

void run_copy_release(struct run_copy *k)
{
    free(k->state);
    free(k->reason);
    free(k->provider);
    free(k->created_by);
    memset(k, 0, sizeof *k);
}

int run_copy_keep(void *ctx, const struct store_run *r)
{
    struct run_copy *k = ctx;

    run_copy_release(k);
    k->r = *r;
    k->r.state = k->state = xstrdup(r->state);
    k->r.reason = k->reason = r->reason ? xstrdup(r->reason) : NULL;
    k->r.provider = k->provider = xstrdup(r->provider);
    k->r.created_by = k->created_by = xstrdup(r->created_by);
    return 0;
}

void campaign_only_keys(const json_t *body, const char *keys, const char *what,
                        struct errlist *errs)
{
    const char *k;
    json_t *v;

    json_object_foreach((json_t *)body, k, v) {
        char word[140], path[140];
        snprintf(word, sizeof word, " %.128s ", k);
        if (strstr(keys, word) == NULL || strlen(k) > 128) {
            snprintf(path, sizeof path, "/%.128s", k);
            errlist_add(errs, path, "unknown key (%s)", what);
        }
    }
}

static int load_campaign(struct store *st, int64_t id, struct camp_copy *k, struct err *e)
{
    int rc = store_campaign_get(st, id, keep_campaign, k, e);

    if (rc == E_NOTFOUND) {
        err_clear(e);
        rc = ERR(e, E_NOTFOUND, "no such campaign");
    }
    return rc;
}

static int load_run(struct store *st, int64_t id, struct run_copy *k, struct err *e)
{
    int rc = store_run_get(st, id, run_copy_keep, k, e);

    if (rc == E_NOTFOUND) {
        err_clear(e);
        rc = ERR(e, E_NOTFOUND, "no such campaign run");
    }
    return rc;
}

/* ---- JSON ---------------------------------------------------------------------------- */

static json_t *campaign_json(const struct store_campaign *c)
{
    json_t *conv = c->conversion ? json_loads(c->conversion, 0, NULL) : NULL;

    return json_pack(
        "{s:I,s:s,s:I,s:I,s:s?,s:i,s:o,s:s,s:o,s:o,s:s,s:o,s:b,s:b,s:o}", "id", (json_int_t)c->id,
        "name", c->name, "segment_id", (json_int_t)c->segment_id, "template_id",
        (json_int_t)c->template_id, "provider", c->provider, "throttle_per_second",
        c->throttle_per_second, "scheduled_at", json_iso_or_null(c->scheduled_at), "state",
        c->state, "created_at", json_iso_or_null(c->created_at), "updated_at",
        json_iso_or_null(c->updated_at), "created_by", c->created_by, "last_run_id",
        c->last_run_id ? json_integer(c->last_run_id) : json_null(), "track_opens", c->track_opens,
        "track_clicks", c->track_clicks, "conversion", conv ? conv : json_null());
}

static const char *const count_names[MSG_STATES] = {"queued", "sending", "sent",   "retry",
                                                    "failed", "dead",    "skipped"};

/* The run with its ledger counts. Members the ledger has no row for count as queued (as
 * skipped once the run was cancelled), so the counts always add up to the audience. */
static json_t *run_json(const struct store_run *r, const int64_t counts[MSG_STATES])
{
    json_t *cj = json_object(), *out;
    int64_t rows = 0, left, now = send_clock_ms();
    double rate = 0, secs;
    int i;

    for (i = 0; i < MSG_STATES; i++)
        rows += counts[i];
    for (i = 0; i < MSG_STATES; i++) {
        int64_t n = counts[i];
        /* members without a row yet: still to come while the run may send, else never */
        int live = strcmp(r->state, "cancelled") && strcmp(r->state, "failed");
        if (i == (live ? MSG_QUEUED : MSG_SKIPPED) && r->audience > rows)
            n += r->audience - rows;
        json_object_set_new(cj, count_names[i], json_integer(n));
    }
    left =
        json_integer_value(json_object_get(cj, "queued")) + counts[MSG_SENDING] + counts[MSG_RETRY];
    secs = (double)((r->finished_at ? r->finished_at : now) - r->started_at) / 1000.0;
    if (r->started_at && secs > 0)
        rate = (double)(counts[MSG_SENT] + counts[MSG_FAILED]) / secs;
    out = json_pack(
        "{s:I,s:I,s:s,s:s?,s:s,s:I,s:I,s:i,s:o,s:I,s:o,s:I,s:o,s:o,s:o,s:o,s:s,s:f,s:o}", "id",
        (json_int_t)r->id, "campaign_id", (json_int_t)r->campaign_id, "state", r->state, "reason",
        r->reason, "provider", r->provider, "segment_id", (json_int_t)r->segment_id, "template_id",
        (json_int_t)r->template_id, "template_version", r->template_version, "evaluation_id",
        r->evaluation_id ? json_integer(r->evaluation_id) : json_null(), "audience",
        (json_int_t)r->audience, "counts", cj, "possible_duplicates",
        (json_int_t)r->possible_duplicates, "start_at", json_iso_or_null(r->start_at), "created_at",
        json_iso_or_null(r->created_at), "started_at", json_iso_or_null(r->started_at),
        "finished_at", json_iso_or_null(r->finished_at), "created_by", r->created_by,
        "rate_per_second", rate, "eta_seconds",
        (strcmp(r->state, "running") == 0 && rate > 0) ? json_integer((json_int_t)(left / rate))
                                                       : json_null());
    return out;
}

static int run_json_load(struct store *st, const struct store_run *r, json_t **out, struct err *e)
{
    int64_t counts[MSG_STATES] = {0};
    int rc = store_messages_count(st, r->id, counts, e);

    if (rc == 0)
        *out = run_json(r, counts);
    return rc;
}

/* ---- validation ---------------------------------------------------------------------- */

static int exists_segment(void *ctx, const struct store_segment *s)
{
    (void)ctx;
    (void)s;
    return 0;
}

static int exists_template(void *ctx, const struct store_template *t)
{
    (void)ctx;
    (void)t;
    return 0;
}

/* A flag of the body: true or false (absent: unchanged, or dflt when not partial). */
static void read_flag(const json_t *body, const char *key, int *out, int dflt, int partial,
                      struct errlist *errs)
{
    const json_t *v = json_object_get(body, key);
    char path[40];

    if (v == NULL) {
        if (!partial)
            *out = dflt;
        return;
    }
    snprintf(path, sizeof path, "/%s", key);
    if (!json_is_boolean(v))
        errlist_add(errs, path, "must be true or false");
    else
        *out = json_is_true(v);
}

/* The conversion goal: null, or {event, within_days, value_property?, after?}; *out is
 * its compact JSON (caller frees) with after filled in, NULL for none. */
static void read_conversion(const json_t *v, char **out, struct errlist *errs)
{
    const json_t *ev = json_object_get(v, "event"), *days = json_object_get(v, "within_days");
    const json_t *prop = json_object_get(v, "value_property"), *after = json_object_get(v, "after");
    json_t *c;
    int bad = 0;

    *out = NULL;
    if (json_is_null(v))
        return;
    if (!json_is_object(v)) {
        errlist_add(errs, "/conversion",
                    "must be null or {\"event\", \"within_days\", \"value_property\"?, "
                    "\"after\"?}");
        return;
    }
    {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            char path[140];
            if (strcmp(k, "event") && strcmp(k, "within_days") && strcmp(k, "value_property") &&
                strcmp(k, "after")) {
                snprintf(path, sizeof path, "/conversion/%.100s", k);
                errlist_add(errs, path,
                            "unknown key (a conversion goal has event, within_days, "
                            "value_property, after)");
            }
        }
    }
    if (!json_is_string(ev) || json_string_length(ev) == 0 ||
        json_string_length(ev) > STORE_MAX_NAME) {
        errlist_add(errs, "/conversion/event", "must be an event name of 1 to %d bytes",
                    STORE_MAX_NAME);
        bad = 1;
    }
    if (!json_is_integer(days) || json_integer_value(days) < 1 || json_integer_value(days) > 365) {
        errlist_add(errs, "/conversion/within_days", "must be a whole number of days, 1 to 365");
        bad = 1;
    }
    if (prop && !json_is_null(prop) &&
        (!json_is_string(prop) || json_string_length(prop) == 0 ||
         json_string_length(prop) > STORE_MAX_NAME)) {
        errlist_add(errs, "/conversion/value_property",
                    "must be the name of a numeric property of the event");
        bad = 1;
    }
    if (after && !json_is_null(after) &&
        (!json_is_string(after) || (strcmp(json_string_value(after), "delivered") &&
                                    strcmp(json_string_value(after), "clicked")))) {
        errlist_add(errs, "/conversion/after", "must be \"delivered\" or \"clicked\"");
        bad = 1;
    }
    if (bad || errs->n)
        return;
    c = json_pack("{s:O,s:O,s:s}", "event", ev, "within_days", days, "after",
                  json_is_string(after) ? json_string_value(after) : "delivered");
    if (json_is_string(prop))
        json_object_set(c, "value_property", (json_t *)prop);
    *out = json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(c);
}

/* Reads the body into *c (partial: only the keys present), every problem into errs;
 * *conversion is the new goal's JSON when the body has one (caller frees). */
static void read_fields(const struct send_env *env, struct store *st, const json_t *body,
                        struct store_campaign *c, int partial, char **conversion,
                        struct errlist *errs, struct err *e)
{
    const json_t *v;

    campaign_only_keys(body,
                       " name segment_id template_id provider throttle_per_second "
                       "scheduled_at track_opens track_clicks conversion ",
                       "a campaign has name, segment_id, template_id, provider, "
                       "throttle_per_second, scheduled_at, track_opens, track_clicks, conversion",
                       errs);
    read_flag(body, "track_opens", &c->track_opens, 1, partial, errs);
    read_flag(body, "track_clicks", &c->track_clicks, 1, partial, errs);
    v = json_object_get(body, "conversion");
    if (v) {
        read_conversion(v, conversion, errs);
        c->conversion = *conversion;
    } else if (!partial) {
        c->conversion = NULL;
    }
    v = json_object_get(body, "name");
    if (v || !partial) {
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > MAX_NAME)
            errlist_add(errs, "/name", "must be a string of 1 to %d bytes", MAX_NAME);
        else
            c->name = json_string_value(v);
    }
    v = json_object_get(body, "segment_id");
    if (v || !partial) {
        if (!json_is_integer(v) || json_integer_value(v) < 1)
            errlist_add(errs, "/segment_id", "must be the id of a segment");
        else if (store_segment_get(st, json_integer_value(v), exists_segment, NULL, e) ==
                 E_NOTFOUND) {
            err_clear(e);
            errlist_add(errs, "/segment_id", "no segment has id %lld",
                        (long long)json_integer_value(v));
        } else
            c->segment_id = json_integer_value(v);
    }
    v = json_object_get(body, "template_id");
    if (v || !partial) {
        if (!json_is_integer(v) || json_integer_value(v) < 1)
            errlist_add(errs, "/template_id", "must be the id of a template");
        else if (store_template_get(st, json_integer_value(v), exists_template, NULL, e) ==
                 E_NOTFOUND) {
            err_clear(e);
            errlist_add(errs, "/template_id", "no template has id %lld",
                        (long long)json_integer_value(v));
        } else
            c->template_id = json_integer_value(v);
    }
    v = json_object_get(body, "provider");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v) || provider_find(env->providers, json_string_value(v)) == NULL) {
            struct buf names = {0};
            size_t n;
            for (n = 0; n < provider_count(env->providers); n++)
                buf_printf(&names, "%s%s", n ? ", " : "", provider_at(env->providers, n)->name);
            errlist_add(errs, "/provider", "must be the name of a configured provider (%s)",
                        names.p ? names.p : "");
            buf_release(&names);
        } else
            c->provider = json_string_value(v);
    } else if (v || !partial)
        c->provider = NULL;
    v = json_object_get(body, "throttle_per_second");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > MAX_THROTTLE)
            errlist_add(errs, "/throttle_per_second",
                        "must be null or an integer from 0 (no throttle) to %d", MAX_THROTTLE);
        else
            c->throttle_per_second = (int)json_integer_value(v);
    } else if (v || !partial)
        c->throttle_per_second = 0;
    v = json_object_get(body, "scheduled_at");
    if (v && !json_is_null(v)) {
        int64_t at;
        if (!json_is_string(v) ||
            time_parse_iso(json_string_value(v), json_string_length(v), &at) || at <= 0)
            errlist_add(errs, "/scheduled_at",
                        "must be null or an ISO-8601 time (2026-12-24T09:00:00Z)");
        else
            c->scheduled_at = at;
    } else if (v || !partial)
        c->scheduled_at = 0;
}

static int audit_campaign(struct store *st, const char *actor, const char *action, int64_t id,
                          json_t *before, json_t *after, const char *req_id, struct err *e)
{
    char sid[32];

    snprintf(sid, sizeof sid, "%lld", (long long)id);
    return audit_record(st, actor, action, "campaign", sid, before, after, req_id, e);
}

static int invalid(struct errlist *errs, struct err *e)
{
    return ERR(e, E_INVAL, "the campaign is not valid: %d problem%s", errs->n,
               errs->n == 1 ? "" : "s");
}

/* ---- campaigns ----------------------------------------------------------------------- */

int campaign_create(const struct send_env *env, struct store *st, const json_t *body,
                    const char *actor, const char *req_id, int64_t *id, struct errlist *errs,
                    struct err *e)
{
    struct store_campaign c = {0};
    json_t *after = NULL;
    char *conversion = NULL;
    int rc;

    read_fields(env, st, body, &c, 0, &conversion, errs, e);
    if (e->code || errs->n) {
        free(conversion);
        return e->code ? e->code : invalid(errs, e);
    }
    c.state = "draft";
    c.created_by = actor;
    c.created_at = c.updated_at = clock_now_ms();
    rc = store_begin(st, e);
    if (rc)
        return rc;
    rc = store_campaign_insert(st, &c, e);
    if (rc == E_CONFLICT) {
        err_clear(e);
        rc = ERRF(e, E_CONFLICT, "/name", "a campaign named '%s' exists already", c.name);
    }
    if (rc == 0) {
        after = campaign_json(&c);
        rc = audit_campaign(st, actor, "campaign.create", c.id, NULL, after, req_id, e);
    }
    rc = store_finish(st, rc, e);
    if (rc == 0)
        *id = c.id;
    json_decref(after);
    free(conversion);
    return rc;
}

int campaign_update(const struct send_env *env, struct store *st, int64_t id, const json_t *body,
                    const char *actor, const char *req_id, struct errlist *errs, struct err *e)
{
    struct camp_copy k = {0};
    struct run_copy run = {0};
    struct store_campaign c;
    json_t *before = NULL, *after = NULL;
    char *conversion = NULL;
    int rc;

    rc = store_begin(st, e);
    if (rc)
        return rc;
    rc = load_campaign(st, id, &k, e);
    if (rc)
        goto out;
    c = k.c;
    if (strcmp(c.state, "draft") && strcmp(c.state, "scheduled")) {
        rc = ERR(e, E_CONFLICT, "the campaign is %s: only a draft or scheduled one can change",
                 c.state);
        goto out;
    }
    read_fields(env, st, body, &c, 1, &conversion, errs, e);
    if (e->code) {
        rc = e->code;
        goto out;
    }
    if (errs->n) {
        rc = invalid(errs, e);
        goto out;
    }
    c.updated_at = clock_now_ms();
    rc = store_campaign_update(st, &c, e);
    if (rc == E_CONFLICT) {
        err_clear(e);
        rc = ERRF(e, E_CONFLICT, "/name", "a campaign named '%s' exists already", c.name);
    }
    /* A scheduled campaign's waiting run takes the changes: it starts from them. */
    if (rc == 0 && strcmp(c.state, "scheduled") == 0 && c.last_run_id) {
        rc = load_run(st, c.last_run_id, &run, e);
        if (rc == 0 && strcmp(run.r.state, "scheduled") == 0) {
            const struct provider *p = provider_find(env->providers, c.provider);
            run.r.segment_id = c.segment_id;
            run.r.template_id = c.template_id;
            run.r.provider = p ? p->name : run.r.provider;
            run.r.throttle_per_second = c.throttle_per_second;
            run.r.track_opens = c.track_opens;
            run.r.track_clicks = c.track_clicks;
            run.r.start_at = c.scheduled_at ? c.scheduled_at : send_clock_ms();
            run.r.updated_at = c.updated_at;
            rc = store_run_update(st, &run.r, e);
        }
    }
    if (rc == 0) {
        before = campaign_json(&k.c);
        after = campaign_json(&c);
        rc = audit_campaign(st, actor, "campaign.update", id, before, after, req_id, e);
    }
out:
    rc = store_finish(st, rc, e);
    json_decref(before);
    json_decref(after);
    camp_copy_release(&k);
    run_copy_release(&run);
    free(conversion);
    return rc;
}

int campaign_delete(struct store *st, int64_t id, const char *actor, const char *req_id,
                    struct err *e)
{
    struct camp_copy k = {0};
    json_t *before = NULL;
    int rc;

    rc = store_begin(st, e);
    if (rc)
        return rc;
    rc = load_campaign(st, id, &k, e);
    if (rc == 0 && (strcmp(k.c.state, "running") == 0 || strcmp(k.c.state, "paused") == 0 ||
                    strcmp(k.c.state, "scheduled") == 0))
        rc = ERR(e, E_CONFLICT, "the campaign is %s: cancel it first", k.c.state);
    if (rc == 0) {
        struct store_campaign c = k.c;
        c.deleted = 1;
        c.updated_at = clock_now_ms();
        before = campaign_json(&k.c);
        rc = store_campaign_update(st, &c, e);
        if (rc == 0)
            rc = audit_campaign(st, actor, "campaign.delete", id, before, NULL, req_id, e);
    }
    rc = store_finish(st, rc, e);
    json_decref(before);
    camp_copy_release(&k);
    return rc;
}

int campaign_get(struct store *st, int64_t id, json_t **out, struct err *e)
{
    struct camp_copy k = {0};
    int rc = load_campaign(st, id, &k, e);

    *out = rc ? NULL : campaign_json(&k.c);
    camp_copy_release(&k);
    return rc;
}

struct list_ctx {
    json_t *items;
    int64_t last;
};

static int list_campaign(void *ctx, const struct store_campaign *c)
{
    struct list_ctx *l = ctx;

    json_array_append_new(l->items, campaign_json(c));
    l->last = c->id;
    return 0;
}

int campaign_list(struct store *st, int64_t after_id, int limit, json_t **items,
                  int64_t *next_cursor, struct err *e)
{
    struct list_ctx l = {json_array(), 0};
    int rc = store_campaigns_list(st, after_id, limit, list_campaign, &l, e);

    *next_cursor = (rc == 0 && (int)json_array_size(l.items) == limit) ? l.last : 0;
    if (rc)
        json_decref(l.items);
    *items = rc ? NULL : l.items;
    return rc;
}

/* The campaign's state for a run's. */
static const char *campaign_state_for(const char *run_state)
{
    if (strcmp(run_state, "failed") == 0)
        return "draft"; /* it never started: the campaign can be fixed and sent again */
    return run_state;
}

int campaign_send(const struct send_env *env, struct store *st, int64_t id, const char *actor,
                  const char *req_id, json_t **out, struct err *e)
{
    struct camp_copy k = {0};
    struct store_run r = {0};
    const struct provider *p;
    json_t *before = NULL, *after = NULL;
    int64_t now = send_clock_ms();
    int rc;

    *out = NULL;
    rc = store_begin(st, e);
    if (rc)
        return rc;
    rc = load_campaign(st, id, &k, e);
    if (rc)
        goto out;
    if (strcmp(k.c.state, "draft")) {
        rc = ERR(e, E_CONFLICT, "the campaign is %s: only a draft can be sent", k.c.state);
        goto out;
    }
    p = provider_find(env->providers, k.c.provider);
    if (p == NULL) {
        rc = ERRF(e, E_INVAL, "/provider", "the provider '%s' is not configured any more",
                  k.c.provider);
        goto out;
    }
    if (p->needs_public_url && !env->public_url_set) {
        rc = ERRF(e, E_INVAL, "/provider",
                  "the provider '%s' sends to real recipients, whose links must reach this "
                  "server: set [server] public_url first (docs/configuration.md)",
                  p->name);
        goto out;
    }
    r.campaign_id = id;
    r.state = "scheduled";
    r.provider = p->name;
    r.segment_id = k.c.segment_id;
    r.template_id = k.c.template_id;
    r.throttle_per_second = k.c.throttle_per_second;
    r.track_opens = k.c.track_opens;
    r.track_clicks = k.c.track_clicks;
    r.start_at = k.c.scheduled_at > now ? k.c.scheduled_at : now;
    r.created_at = r.updated_at = now;
    r.created_by = actor;
    rc = store_run_insert(st, &r, e);
    if (rc == 0)
        rc = store_run_log_add(st, r.id, now, "state", "-> scheduled: sent by the campaign", 1, e);
    if (rc == 0) {
        struct store_campaign c = k.c;
        c.state = k.c.scheduled_at > now ? "scheduled" : "running";
        c.last_run_id = r.id;
        c.updated_at = now;
        rc = store_campaign_update(st, &c, e);
        before = campaign_json(&k.c);
        after = campaign_json(&c);
    }
    if (rc == 0)
        rc = audit_campaign(st, actor, "campaign.send", id, before, after, req_id, e);
    if (rc == 0)
        rc = run_json_load(st, &r, out, e);
out:
    rc = store_finish(st, rc, e);
    if (rc) {
        json_decref(*out);
        *out = NULL;
    }
    json_decref(before);
    json_decref(after);
    camp_copy_release(&k);
    return rc;
}

int campaign_act(struct store *st, int64_t id, enum campaign_action act, const char *actor,
                 const char *req_id, json_t **out, struct err *e)
{
    static const char *const verbs[] = {"pause", "resume", "cancel"};
    struct camp_copy k = {0};
    struct run_copy run = {0};
    const char *from = NULL, *to;
    json_t *after = NULL;
    int64_t now = send_clock_ms(), moved = 0;
    int rc;

    *out = NULL;
    rc = store_begin(st, e);
    if (rc)
        return rc;
    rc = load_campaign(st, id, &k, e);
    if (rc == 0 && k.c.last_run_id == 0)
        rc = ERR(e, E_CONFLICT, "the campaign has not been sent: nothing to %s", verbs[act]);
    if (rc == 0)
        rc = load_run(st, k.c.last_run_id, &run, e);
    if (rc)
        goto out;
    from = run.r.state;
    to = act == CAMPAIGN_PAUSE ? "paused" : act == CAMPAIGN_RESUME ? "running" : "cancelled";
    if ((act == CAMPAIGN_PAUSE && strcmp(from, "running")) ||
        (act == CAMPAIGN_RESUME && strcmp(from, "paused")) ||
        (act == CAMPAIGN_CANCEL && strcmp(from, "scheduled") && strcmp(from, "running") &&
         strcmp(from, "paused"))) {
        rc = ERR(e, E_CONFLICT, "the campaign's run is %s: it cannot %s", from, verbs[act]);
        goto out;
    }
    if (act == CAMPAIGN_CANCEL) {
        /* Rows still sending whose lease ran out (a server that died with them) are
         * skipped too; those a live server is sending finish as they do. No more rows
         * are created: the members without one count as skipped. */
        rc = store_messages_move(st, run.r.id,
                                 1u << MSG_QUEUED | 1u << MSG_RETRY | 1u << MSG_SENDING,
                                 MSG_SKIPPED, "run cancelled", now, &moved, e);
        run.r.finished_at = now;
        run.r.reason = "cancelled";
        run.r.ledgered = 1;
    }
    if (rc == 0)
        rc = run_transition(st, &run.r, NULL, to, run.r.reason, now, e);
    if (rc == 0) {
        char verb[32];
        snprintf(verb, sizeof verb, "campaign.%s", verbs[act]);
        after = json_pack("{s:I,s:s,s:s,s:I}", "run_id", (json_int_t)run.r.id, "from", from, "to",
                          to, "skipped", (json_int_t)moved);
        rc = audit_campaign(st, actor, verb, id, NULL, after, req_id, e);
    }
    if (rc == 0)
        rc = run_json_load(st, &run.r, out, e);
out:
    rc = store_finish(st, rc, e);
    if (rc) {
        json_decref(*out);
        *out = NULL;
    }
    json_decref(after);
    camp_copy_release(&k);
    run_copy_release(&run);
    return rc;
}

/* ---- runs ---------------------------------------------------------------------------- */

int run_get(struct store *st, int64_t id, json_t **out, struct err *e)
{
    struct run_copy k = {0};
    int rc;

    *out = NULL;
    rc = store_read_begin(st, e);
    if (rc)
        return rc;
    rc = load_run(st, id, &k, e);
    if (rc == 0)
        rc = run_json_load(st, &k.r, out, e);
    store_rollback(st);
    run_copy_release(&k);
    return rc;
}

struct runs_ctx {
    struct store *st;
    json_t *items;
    int64_t last;
    struct err *e;
};

static int list_run(void *ctx, const struct store_run *r)
{
    struct runs_ctx *l = ctx;
    json_t *j = NULL;
    int rc = run_json_load(l->st, r, &j, l->e);

    if (rc == 0)
        json_array_append_new(l->items, j);
    l->last = r->id;
    return rc;
}

int run_list(struct store *st, int64_t campaign_id, int64_t before_id, int limit, json_t **items,
             int64_t *next_cursor, struct err *e)
{
    struct camp_copy k = {0};
    struct runs_ctx l = {st, json_array(), 0, e};
    int rc = load_campaign(st, campaign_id, &k, e);

    camp_copy_release(&k);
    if (rc == 0)
        rc = store_runs_list(st, campaign_id, before_id, limit, list_run, &l, e);
    *next_cursor = (rc == 0 && (int)json_array_size(l.items) == limit) ? l.last : 0;
    if (rc)
        json_decref(l.items);
    *items = rc ? NULL : l.items;
    return rc;
}

/* The kinds of message event a row has had, by name. */
static json_t *events_json(unsigned events)
{
    json_t *a = json_array();

    for (int k = 1; k < MEV_KINDS; k++)
        if (events & (1u << k))
            json_array_append_new(a, json_string(mev_kind_name((enum mev_kind)k)));
    return a;
}

static json_t *message_json(const struct store_msg *m)
{
    char mid[48];

    store_message_id(m->run_id, m->contact_id, mid, sizeof mid);
    return json_pack(
        "{s:I,s:I,s:I,s:s?,s:s?,s:s,s:i,s:s?,s:s,s:s?,s:o,s:o,s:o}", "id", (json_int_t)m->id,
        "run_id", (json_int_t)m->run_id, "contact_id", (json_int_t)m->contact_id, "external_id",
        m->external_id, "email", m->email, "state", store_msg_state_name(m->state), "attempts",
        m->attempts, "last_error", m->last_error, "message_id", mid, "provider_message_id",
        m->provider_message_id, "next_attempt_at",
        m->state == MSG_RETRY ? json_iso_or_null(m->next_at) : json_null(), "updated_at",
        json_iso_or_null(m->updated_at), "events", events_json(m->events));
}

static int list_message(void *ctx, const struct store_msg *m)
{
    struct list_ctx *l = ctx;

    json_array_append_new(l->items, message_json(m));
    l->last = m->id;
    return 0;
}

int run_messages(struct store *st, int64_t run_id, const struct run_msg_filter *f, int64_t after_id,
                 int limit, json_t **items, int64_t *next_cursor, struct err *e)
{
    struct run_copy k = {0};
    struct list_ctx l = {json_array(), 0};
    enum mev_kind kind = MEV_NONE;
    int s = -1, rc;

    *items = NULL;
    if (f->state && (s = store_msg_state_parse(f->state)) < 0) {
        json_decref(l.items);
        return ERRF(e, E_INVAL, "state",
                    "state must be one of queued, sending, sent, retry, failed, dead, skipped");
    }
    if (f->event && (kind = mev_kind_parse(f->event)) == MEV_NONE) {
        json_decref(l.items);
        return ERRF(e, E_INVAL, "event",
                    "event must be one of delivered, deferred, dropped, bounced_hard, "
                    "bounced_soft, complained, unsubscribed, opened, clicked, converted");
    }
    rc = load_run(st, run_id, &k, e);
    run_copy_release(&k);
    if (rc == 0 && kind == MEV_NONE && f->reason == NULL)
        rc = store_messages_list(st, run_id, s, after_id, limit, list_message, &l, e);
    else if (rc == 0)
        rc = store_messages_filter(st, run_id, s, kind ? 1u << kind : 0, f->reason, after_id, limit,
                                   list_message, &l, e);
    *next_cursor = (rc == 0 && (int)json_array_size(l.items) == limit) ? l.last : 0;
    if (rc)
        json_decref(l.items);
    else
        *items = l.items;
    return rc;
}

static int add_log(void *ctx, const struct store_run_log *g)
{
    struct list_ctx *l = ctx;

    json_array_append_new(l->items, json_pack("{s:I,s:o,s:s,s:s?,s:I}", "id", (json_int_t)g->id,
                                              "at", json_iso_or_null(g->at), "kind", g->kind,
                                              "detail", g->detail, "count", (json_int_t)g->count));
    l->last = g->id;
    return 0;
}

int run_log(struct store *st, int64_t run_id, int64_t after_id, int limit, json_t **items,
            int64_t *next_cursor, struct err *e)
{
    struct run_copy k = {0};
    struct list_ctx l = {json_array(), 0};
    int rc = load_run(st, run_id, &k, e);

    run_copy_release(&k);
    if (rc == 0)
        rc = store_run_log_list(st, run_id, after_id, limit, add_log, &l, e);
    *next_cursor = (rc == 0 && (int)json_array_size(l.items) == limit) ? l.last : 0;
    if (rc)
        json_decref(l.items);
    *items = rc ? NULL : l.items;
    return rc;
}

static int add_reason(void *ctx, int state, const char *reason, int64_t n)
{
    json_array_append_new(ctx, json_pack("{s:s,s:s?,s:I}", "state", store_msg_state_name(state),
                                         "reason", reason, "count", (json_int_t)n));
    return 0;
}

int run_reasons(struct store *st, int64_t run_id, json_t **out, struct err *e)
{
    struct run_copy k = {0};
    json_t *a = json_array();
    int rc = load_run(st, run_id, &k, e);

    run_copy_release(&k);
    if (rc == 0)
        rc = store_messages_reasons(st, run_id, 100, add_reason, a, e);
    *out = rc ? NULL : json_pack("{s:o}", "reasons", a);
    if (rc)
        json_decref(a);
    return rc;
}

static int add_contact_message(void *ctx, const struct store_msg_engagement *m)
{
    char mid[48];

    store_message_id(m->run_id, m->contact_id, mid, sizeof mid);
    json_array_append_new(
        ctx, json_pack("{s:s,s:I,s:I,s:s,s:o,s:o}", "message_id", mid, "run_id",
                       (json_int_t)m->run_id, "campaign_id", (json_int_t)m->campaign_id, "state",
                       store_msg_state_name(m->state), "events", events_json(m->events),
                       "updated_at", json_iso_or_null(m->updated_at)));
    return 0;
}

int contact_messages(struct store *st, int64_t contact_id, int limit, json_t **out, struct err *e)
{
    json_t *a = json_array();
    int rc = store_messages_of_contact(st, contact_id, 0, limit, add_contact_message, a, e);

    *out = rc ? NULL : a;
    if (rc)
        json_decref(a);
    return rc;
}

/* A run that had completed runs again (rows were re-queued), and its campaign with it. A
 * cancelled run never does: its rows are not re-queued (campaign_run.resend_failed
 * refuses, a replay of dead letters leaves them). */
static int run_reopen(struct store *st, int64_t run_id, int64_t now, struct err *e)
{
    struct run_copy k = {0};
    int rc = load_run(st, run_id, &k, e);

    if (rc == 0 && strcmp(k.r.state, "completed") == 0) {
        k.r.finished_at = 0;
        rc = run_transition(st, &k.r, NULL, "running", NULL, now, e);
    }
    run_copy_release(&k);
    return rc;
}

int run_resend_failed(struct store *st, int64_t run_id, const char *actor, const char *req_id,
                      json_t **out, struct err *e)
{
    struct run_copy k = {0};
    json_t *after = NULL, *run = NULL;
    int64_t now = send_clock_ms(), moved = 0;
    char sid[32];
    int rc;

    *out = NULL;
    rc = store_begin(st, e);
    if (rc)
        return rc;
    rc = load_run(st, run_id, &k, e);
    if (rc == 0 && strcmp(k.r.state, "scheduled") == 0)
        rc = ERR(e, E_CONFLICT, "the run has not started");
    if (rc == 0 && (strcmp(k.r.state, "cancelled") == 0 || strcmp(k.r.state, "failed") == 0))
        rc = ERR(e, E_CONFLICT, "the run was %s: it sends nothing more", k.r.state);
    if (rc == 0)
        rc = store_messages_move(st, run_id, 1u << MSG_FAILED | 1u << MSG_DEAD, MSG_QUEUED, NULL,
                                 now, &moved, e);
    if (rc == 0 && moved)
        rc = run_reopen(st, run_id, now, e);
    if (rc == 0) {
        after = json_pack("{s:I}", "requeued", (json_int_t)moved);
        snprintf(sid, sizeof sid, "%lld", (long long)run_id);
        rc = audit_record(st, actor, "campaign_run.resend_failed", "campaign_run", sid, NULL, after,
                          req_id, e);
    }
    if (rc == 0)
        rc = load_run(st, run_id, &k, e);
    if (rc == 0)
        rc = run_json_load(st, &k.r, &run, e);
    rc = store_finish(st, rc, e);
    if (rc == 0)
        *out = json_pack("{s:I,s:o}", "requeued", (json_int_t)moved, "run", run);
    else
        json_decref(run);
    json_decref(after);
    run_copy_release(&k);
    return rc;
}

/* ---- the dead-letter queue ----------------------------------------------------------- */

int dlq_list(struct store *st, int64_t run_id, const char *reason, int64_t after_id, int limit,
             json_t **items, int64_t *next_cursor, struct err *e)
{
    struct list_ctx l = {json_array(), 0};
    int rc = store_messages_dead(st, run_id, reason, after_id, limit, list_message, &l, e);

    *next_cursor = (rc == 0 && (int)json_array_size(l.items) == limit) ? l.last : 0;
    if (rc)
        json_decref(l.items);
    *items = rc ? NULL : l.items;
    return rc;
}

struct replay_ctx {
    struct store *st;
    int64_t now, total;
    json_t *runs;
    struct err *e;
};

static int replayed_run(void *ctx, int64_t run_id, int64_t count)
{
    struct replay_ctx *x = ctx;

    x->total += count;
    json_array_append_new(x->runs, json_pack("{s:I,s:I}", "run_id", (json_int_t)run_id, "requeued",
                                             (json_int_t)count));
    return run_reopen(x->st, run_id, x->now, x->e);
}

int dlq_replay(struct store *st, const json_t *body, const char *actor, const char *req_id,
               json_t **out, struct errlist *errs, struct err *e)
{
    struct replay_ctx x = {st, send_clock_ms(), 0, json_array(), e};
    const json_t *v;
    const char *reason = NULL;
    int64_t run_id = 0;
    json_t *after = NULL;
    int rc;

    *out = NULL;
    campaign_only_keys(body, " run_id reason ", "a replay takes run_id and reason", errs);
    v = json_object_get(body, "run_id");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1)
            errlist_add(errs, "/run_id", "must be null or the id of a campaign run");
        else
            run_id = json_integer_value(v);
    }
    v = json_object_get(body, "reason");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 200)
            errlist_add(errs, "/reason", "must be null or a string of 1 to 200 bytes");
        else
            reason = json_string_value(v);
    }
    if (errs->n) {
        json_decref(x.runs);
        return ERR(e, E_INVAL, "the replay request is not valid");
    }
    rc = store_begin(st, e);
    if (rc == 0)
        rc = store_messages_replay_dead(st, run_id, reason, x.now, replayed_run, &x, e);
    if (rc == 0) {
        after = json_pack("{s:O,s:I}", "runs", x.runs, "requeued", (json_int_t)x.total);
        rc = audit_record(st, actor, "dlq.replay", "dlq", run_id ? "run" : "all", NULL, after,
                          req_id, e);
    }
    rc = store_finish(st, rc, e);
    if (rc == 0)
        *out = json_pack("{s:I,s:O}", "requeued", (json_int_t)x.total, "runs", x.runs);
    json_decref(after);
    json_decref(x.runs);
    return rc;
}

int64_t send_clock_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- transitions --------------------------------------------------------------------- */

int run_transition(struct store *st, struct store_run *r, const char *from, const char *to,
                   const char *reason, int64_t now, struct err *e)
{
    struct camp_copy c = {0};
    int rc;

    if (from) {
        struct run_copy cur = {0};
        rc = load_run(st, r->id, &cur, e);
        if (rc == 0 && strcmp(cur.r.state, from))
            rc = ERR(e, E_CONFLICT, "run %lld is %s now, not %s", (long long)r->id, cur.r.state,
                     from);
        run_copy_release(&cur);
        if (rc)
            return rc;
    }
    {
        char detail[600];
        snprintf(detail, sizeof detail, "%s -> %s%s%.500s", r->state ? r->state : "", to,
                 reason ? ": " : "", reason ? reason : "");
        rc = store_run_log_add(st, r->id, now, "state", detail, 1, e);
        if (rc)
            return rc;
    }
    r->state = to;
    r->reason = reason;
    r->updated_at = now;
    rc = store_run_update(st, r, e);
    if (rc == 0) {
        rc = store_campaign_get(st, r->campaign_id, keep_campaign, &c, e);
        if (rc == E_NOTFOUND) { /* the campaign was deleted: the run goes on alone */
            err_clear(e);
            rc = 0;
        } else if (rc == 0 && c.c.last_run_id == r->id) {
            c.c.state = campaign_state_for(to);
            c.c.updated_at = now;
            rc = store_campaign_update(st, &c.c, e);
        }
    }
    camp_copy_release(&c);
    return rc;
}
