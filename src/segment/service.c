/* segment/service.c -- saved segments: versions, evaluations, snapshots, scheduling.
 *
 * DESIGN: one segment_service per server process owns the audience index and the
 * lock around it (catch-up, compile and evaluate take it; they are milliseconds).
 * Saving validates and compiles the rules, then stores the segment, its new
 * version (rules + plan) and the audit record in one transaction. An evaluation
 * is committed as a "running" row before any work, and its outcome, with the
 * membership as a portable roaring bitmap, in one transaction after: a crash in
 * between leaves a running row that the next start marks failed ("interrupted"),
 * never a partial snapshot. The scheduler claims due segments by moving their
 * next run in the same transaction that reads them. */
#include <pthread.h>
#include <roaring/roaring.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../auth/auth.h"
#include "../core/metrics.h"
#include "../core/worker.h"
#include "../ingest/ingest.h" /* contact_view: the record a contact is shown as */
#include "segment_int.h"

#define SAMPLE_SIZE 20
#define MAX_NAME 200
#define MAX_DESCRIPTION 2000
#define MAX_EVERY_MINUTES 10080 /* a week */

struct segment_service {
    pthread_mutex_t mu; /* mu protects ix */
    struct audience_index *ix;
    struct segment_limits lim;
    pthread_mutex_t stats_mu;    /* stats_mu protects stats (held only to copy them) */
    struct audience_stats stats; /* as of the last time a reader got mu */
    atomic_int loaded;           /* the scheduler's first load is done */
};

void segment_service_new(struct segment_service **out, const struct config *cfg)
{
    struct segment_service *sv = xcalloc(1, sizeof *sv);

    pthread_mutex_init(&sv->mu, NULL);
    pthread_mutex_init(&sv->stats_mu, NULL);
    atomic_init(&sv->loaded, 1); /* a scheduler, if started, loads it first */
    audience_index_new(&sv->ix);
    segment_limits_from_config(cfg, &sv->lim);
    *out = sv;
}

void segment_service_free(struct segment_service *sv)
{
    if (sv == NULL)
        return;
    audience_index_free(sv->ix);
    pthread_mutex_destroy(&sv->mu);
    pthread_mutex_destroy(&sv->stats_mu);
    free(sv);
}

int segment_service_ready(struct segment_service *sv)
{
    return atomic_load(&sv->loaded);
}

int segment_service_stats(struct segment_service *sv, struct audience_stats *out)
{
    int fresh = pthread_mutex_trylock(&sv->mu) == 0; /* never waits behind a load */

    if (fresh) {
        struct audience_stats now;
        audience_index_stats_quick(sv->ix, &now); /* never a pass over every event */
        pthread_mutex_unlock(&sv->mu);
        pthread_mutex_lock(&sv->stats_mu);
        sv->stats = now;
        pthread_mutex_unlock(&sv->stats_mu);
    }
    pthread_mutex_lock(&sv->stats_mu);
    *out = sv->stats;
    pthread_mutex_unlock(&sv->stats_mu);
    return fresh;
}

/* Prefixes every pointer in errs with prefix ("/rules"): the API reports pointers into
 * the request body. */
static void errs_prefix(struct errlist *errs, const char *prefix)
{
    char tmp[sizeof errs->items[0].path];
    int i;

    for (i = 0; i < errs->n; i++) {
        snprintf(tmp, sizeof tmp, "%s%s", prefix, errs->items[i].path);
        memcpy(errs->items[i].path, tmp, sizeof tmp);
    }
}

/* Under sv->mu: catch up and compile. */
static int compile_locked(struct segment_service *sv, struct store *st, const json_t *rules,
                          struct segment_plan **plan, struct errlist *errs, struct err *e)
{
    int rc = audience_index_catch_up(sv->ix, st, e);

    if (rc == 0)
        rc = segment_compile(sv->ix, st, audience_index_contracts(sv->ix), rules, &sv->lim, plan,
                             errs, e);
    return rc;
}

/* ---- a contact's latest events -------------------------------------------------------- */

int segment_recent_events(struct segment_service *sv, struct store *st, int64_t contact_id,
                          int limit, int64_t *seqs, int *n, struct err *e)
{
    int64_t times[64];
    int rc;

    *n = 0;
    if (!atomic_load(&sv->loaded))
        return ERR(e, E_BUSY, "the audience index is loading; retry shortly");
    if (limit > 64)
        limit = 64;
    pthread_mutex_lock(&sv->mu);
    rc = audience_index_catch_up(sv->ix, st, e);
    if (rc == 0)
        *n = (int)audience_index_recent(sv->ix, contact_id, (size_t)limit, seqs, times);
    pthread_mutex_unlock(&sv->mu);
    return rc;
}

/* ---- preview ---------------------------------------------------------------------- */

/* The sample: the first members as evaluated, their identifiers as the store has them
 * (a member gone since is left out). */
static int sample_of(struct store *st, const struct segment_result *r, json_t *items, struct err *e)
{
    int64_t ids[SAMPLE_SIZE];
    size_t n = segment_member_ids(r, 0, ids, SAMPLE_SIZE), k;
    int rc = 0;

    for (k = 0; rc == 0 && k < n; k++) {
        struct store_contact c;
        store_contact_init(&c);
        rc = store_contact_get(st, ids[k], &c, e);
        if (rc == 0)
            json_array_append_new(items,
                                  json_pack("{s:I,s:s?,s:s?}", "contact_id", (json_int_t)ids[k],
                                            "external_id", c.external_id, "email", c.email));
        else if (rc == E_NOTFOUND)
            rc = 0, err_clear(e);
        store_contact_release(&c);
    }
    return rc;
}

int segment_preview(struct segment_service *sv, struct store *st, const json_t *rules, int64_t now,
                    json_t **out, struct errlist *errs, struct err *e)
{
    struct segment_plan *plan = NULL;
    struct segment_result res = {0};
    json_t *sample = json_array();
    int rc;

    *out = NULL;
    if (!atomic_load(&sv->loaded)) /* do not tie up a request thread behind the load */
        return ERR(e, E_BUSY, "the audience index is loading; retry shortly");
    pthread_mutex_lock(&sv->mu);
    rc = compile_locked(sv, st, rules, &plan, errs, e);
    if (rc == 0)
        rc = segment_eval(sv->ix, plan, now, &sv->lim, &res, e);
    if (rc == 0)
        rc = sample_of(st, &res, sample, e);
    pthread_mutex_unlock(&sv->mu);
    errs_prefix(errs, "/rules");
    if (rc == 0) {
        char iso[32];
        time_format_iso(now, iso);
        *out = json_pack("{s:I,s:O,s:f,s:s}", "count", (json_int_t)res.count, "sample", sample,
                         "took_ms", res.took_ms, "as_of", iso);
    }
    json_decref(sample);
    segment_result_release(&res);
    segment_plan_free(plan);
    return rc;
}

/* ---- JSON of stored rows ------------------------------------------------------------ */

static json_t *segment_evaluation_json(const struct store_evaluation *ev)
{
    return json_pack("{s:I,s:I,s:i,s:s,s:s,s:o,s:o,s:o,s:I,s:f,s:s?}", "id", (json_int_t)ev->id,
                     "segment_id", (json_int_t)ev->segment_id, "version", ev->version, "trigger",
                     ev->trigger, "status", ev->status, "as_of", json_iso_or_null(ev->as_of),
                     "started_at", json_iso_or_null(ev->started_at), "finished_at",
                     json_iso_or_null(ev->finished_at), "member_count",
                     (json_int_t)ev->member_count, "took_ms", ev->took_ms, "error",
                     ev->error && *ev->error ? ev->error : NULL);
}

static json_t *segment_json(const struct store_segment *s)
{
    json_t *rules = json_loads(s->rules, 0, NULL);

    return json_pack("{s:I,s:s,s:s,s:i,s:o,s:o,s:o,s:o,s:o,s:s}", "id", (json_int_t)s->id, "name",
                     s->name, "description", s->description, "version", s->version, "rules",
                     rules ? rules : json_null(), "schedule",
                     s->schedule_minutes ? json_pack("{s:i}", "every_minutes", s->schedule_minutes)
                                         : json_null(),
                     "next_run_at",
                     s->schedule_minutes ? json_iso_or_null(s->next_run_at) : json_null(),
                     "created_at", json_iso_or_null(s->created_at), "updated_at",
                     json_iso_or_null(s->updated_at), "created_by", s->created_by);
}

static int keep_segment(void *ctx, const struct store_segment *s)
{
    json_t **out = ctx;

    json_decref(*out);
    *out = segment_json(s);
    json_object_set_new(*out, "plan", s->plan ? json_loads(s->plan, 0, NULL) : json_null());
    return 0;
}

static int keep_evaluation(void *ctx, const struct store_evaluation *ev)
{
    json_t **out = ctx;

    json_decref(*out);
    *out = segment_evaluation_json(ev);
    return 0;
}

/* The segment as the API shows it: with its latest successful evaluation. */
int segment_get(struct store *st, int64_t id, json_t **out, struct err *e)
{
    json_t *last = NULL;
    struct err e2 = {0};
    int rc;

    *out = NULL;
    rc = store_segment_get(st, id, keep_segment, out, e);
    if (rc)
        return rc;
    rc = store_evaluation_get(st, id, 0, keep_evaluation, &last, &e2);
    if (rc != 0 && rc != E_NOTFOUND) {
        *e = e2;
        json_decref(*out);
        *out = NULL;
        return rc;
    }
    json_object_set_new(*out, "last_evaluation", rc == 0 ? last : json_null());
    return 0;
}

/* ---- save ---------------------------------------------------------------------------- */

/* Reads and checks name, description, schedule from body into s (strings point into
 * body); every problem into errs. partial: absent keys keep s's values (PUT). */
static void read_fields(const json_t *body, struct store_segment *s, int partial,
                        struct errlist *errs)
{
    static const char *const keys[] = {"name", "description", "rules", "schedule", NULL};
    const json_t *v;
    const char *k;
    int i;

    json_object_foreach((json_t *)body, k, v) {
        for (i = 0; keys[i] && strcmp(keys[i], k); i++)
            ;
        if (keys[i] == NULL) {
            char path[100];
            snprintf(path, sizeof path, "/%.80s", k);
            errlist_add(errs, path,
                        "unknown key (a segment has name, description, rules, "
                        "schedule)");
        }
    }
    v = json_object_get(body, "name");
    if (v || !partial) {
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > MAX_NAME)
            errlist_add(errs, "/name", "must be a string of 1 to %d bytes", MAX_NAME);
        else
            s->name = json_string_value(v);
    }
    v = json_object_get(body, "description");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v) || json_string_length(v) > MAX_DESCRIPTION)
            errlist_add(errs, "/description", "must be a string of at most %d bytes",
                        MAX_DESCRIPTION);
        else
            s->description = json_string_value(v);
    } else if (v || !partial)
        s->description = "";
    v = json_object_get(body, "schedule");
    if (v && !json_is_null(v)) {
        const json_t *every = json_object_get(v, "every_minutes");
        if (!json_is_object(v) || json_object_size(v) != 1 || !json_is_integer(every) ||
            json_integer_value(every) < 1 || json_integer_value(every) > MAX_EVERY_MINUTES)
            errlist_add(errs, "/schedule",
                        "must be null or {\"every_minutes\": N} with N from 1 to %d",
                        MAX_EVERY_MINUTES);
        else
            s->schedule_minutes = (int)json_integer_value(every);
    } else if (v || !partial)
        s->schedule_minutes = 0;
    if (!partial && json_object_get(body, "rules") == NULL)
        errlist_add(errs, "/rules", "is required");
}

/* Validates and compiles rules; *plan_text is the plan's JSON (caller frees). */
static int plan_rules(struct segment_service *sv, struct store *st, const json_t *rules,
                      char **plan_text, struct errlist *errs, struct err *e)
{
    struct segment_plan *plan = NULL;
    int rc;

    *plan_text = NULL;
    if (!atomic_load(&sv->loaded))
        return ERR(e, E_BUSY, "the audience index is loading; retry shortly");
    pthread_mutex_lock(&sv->mu);
    rc = compile_locked(sv, st, rules, &plan, errs, e);
    if (rc == 0) {
        json_t *x = segment_plan_explain(plan);
        *plan_text = json_dumps(x, JSON_COMPACT);
        json_decref(x);
    }
    pthread_mutex_unlock(&sv->mu);
    segment_plan_free(plan);
    errs_prefix(errs, "/rules");
    return rc;
}

int segment_create(struct segment_service *sv, struct store *st, const json_t *body,
                   const char *actor, const char *req_id, int64_t *id, struct errlist *errs,
                   struct err *e)
{
    struct store_segment s = {0};
    const json_t *rules = json_object_get(body, "rules");
    char *plan = NULL, *rules_text = NULL;
    json_t *after = NULL;
    int rc;

    read_fields(body, &s, 0, errs);
    if (rules) {
        struct errlist rerrs = {0};
        if (plan_rules(sv, st, rules, &plan, &rerrs, e) == E_INVAL) {
            int i;
            for (i = 0; i < rerrs.n; i++)
                errlist_add(errs, rerrs.items[i].path, "%s", rerrs.items[i].msg);
            err_clear(e);
        } else if (e->code)
            return e->code;
    }
    if (errs->n) {
        free(plan);
        return ERR(e, E_INVAL, "the segment is not valid: %d problem%s", errs->n,
                   errs->n == 1 ? "" : "s");
    }
    rules_text = json_dumps(rules, JSON_COMPACT);
    s.rules = rules_text;
    s.plan = plan;
    s.version = 1;
    s.created_by = actor;
    s.created_at = s.updated_at = clock_now_ms();
    s.next_run_at = s.schedule_minutes ? s.created_at : 0;
    rc = store_begin(st, e);
    if (rc)
        goto out;
    rc = store_segment_insert(st, &s, e);
    if (rc == E_CONFLICT) {
        err_clear(e);
        rc = ERRF(e, E_CONFLICT, "/name", "a segment named '%s' exists already", s.name);
    }
    if (rc == 0) {
        char sid[32];
        after = segment_json(&s);
        snprintf(sid, sizeof sid, "%lld", (long long)s.id);
        rc = audit_record(st, actor, "segment.create", "segment", sid, NULL, after, req_id, e);
    }
    rc = store_finish(st, rc, e);
    if (rc == 0)
        *id = s.id;
out:
    json_decref(after);
    free(rules_text);
    free(plan);
    return rc;
}

/* A copy of a stored segment, owning its strings. */
struct seg_copy {
    struct store_segment s;
    char *texts[6];
};

static int copy_segment(void *ctx, const struct store_segment *s)
{
    struct seg_copy *c = ctx;

    c->s = *s;
    c->s.name = c->texts[0] = xstrdup(s->name);
    c->s.description = c->texts[1] = xstrdup(s->description);
    c->s.created_by = c->texts[2] = xstrdup(s->created_by);
    c->s.rules = c->texts[3] = xstrdup(s->rules);
    c->s.plan = c->texts[4] = xstrdup(s->plan);
    return 0;
}

static void seg_copy_release(struct seg_copy *c)
{
    int i;

    for (i = 0; i < 6; i++)
        free(c->texts[i]);
    memset(c, 0, sizeof *c);
}

/* PUT: any of name, description, rules, schedule. New rules (that differ from the
 * current ones) make a new version; the old ones are kept. */
int segment_update(struct segment_service *sv, struct store *st, int64_t id, const json_t *body,
                   const char *actor, const char *req_id, struct errlist *errs, struct err *e)
{
    struct seg_copy cur = {0};
    struct store_segment s;
    const json_t *rules = json_object_get(body, "rules");
    char *plan = NULL, *rules_text = NULL, sid[32];
    json_t *before = NULL, *after = NULL;
    int rc, new_version = 0, old_schedule;

    rc = store_segment_get(st, id, copy_segment, &cur, e);
    if (rc)
        return rc;
    s = cur.s;
    old_schedule = s.schedule_minutes;
    read_fields(body, &s, 1, errs);
    if (rules) {
        struct errlist rerrs = {0};
        rules_text = json_dumps(rules, JSON_COMPACT);
        {
            json_t *old = json_loads(cur.s.rules, 0, NULL);
            new_version = !json_equal(old, rules);
            json_decref(old);
        }
        if (new_version && plan_rules(sv, st, rules, &plan, &rerrs, e) == E_INVAL) {
            int i;
            for (i = 0; i < rerrs.n; i++)
                errlist_add(errs, rerrs.items[i].path, "%s", rerrs.items[i].msg);
            err_clear(e);
        } else if (e->code) {
            rc = e->code; /* a store failure, or the index still loading */
            goto out;
        }
    }
    if (errs->n) {
        rc = ERR(e, E_INVAL, "the segment is not valid: %d problem%s", errs->n,
                 errs->n == 1 ? "" : "s");
        goto out;
    }
    s.updated_at = clock_now_ms();
    if (new_version) {
        s.version = cur.s.version + 1;
        s.rules = rules_text;
        s.plan = plan;
        s.created_by = actor;
    }
    if (s.schedule_minutes != old_schedule)
        s.next_run_at = s.schedule_minutes ? s.updated_at : 0;
    before = segment_json(&cur.s);
    after = segment_json(&s);
    json_object_set_new(after, "created_by", json_string(cur.s.created_by));
    rc = store_begin(st, e);
    if (rc)
        goto out;
    /* What was read and compiled above must still be the segment: a concurrent PUT or
     * DELETE in between is a conflict, never overwritten. */
    {
        struct seg_copy now = {0};
        rc = store_segment_get(st, id, copy_segment, &now, e);
        if (rc == 0 && (now.s.version != cur.s.version || now.s.updated_at != cur.s.updated_at))
            rc = ERR(e, E_CONFLICT,
                     "the segment changed while this update was prepared: read "
                     "it again and retry");
        seg_copy_release(&now);
        if (rc)
            goto fail; /* E_NOTFOUND if it was deleted meanwhile */
    }
    rc = store_segment_update(st, &s, new_version, e);
    if (rc == E_CONFLICT) { /* the unique index on live names */
        err_clear(e);
        rc = ERRF(e, E_CONFLICT, "/name", "a segment named '%s' exists already", s.name);
    }
fail:
    snprintf(sid, sizeof sid, "%lld", (long long)id);
    if (rc == 0)
        rc = audit_record(st, actor, "segment.update", "segment", sid, before, after, req_id, e);
    rc = store_finish(st, rc, e);
out:
    json_decref(before);
    json_decref(after);
    free(rules_text);
    free(plan);
    seg_copy_release(&cur);
    return rc;
}

int segment_delete(struct store *st, int64_t id, const char *actor, const char *req_id,
                   struct err *e)
{
    struct seg_copy cur = {0};
    json_t *before = NULL;
    char sid[32];
    int rc;

    rc = store_begin(st, e);
    if (rc)
        return rc;
    rc = store_segment_get(st, id, copy_segment, &cur, e);
    if (rc == 0) {
        before = segment_json(&cur.s);
        cur.s.deleted = 1;
        cur.s.updated_at = clock_now_ms();
        rc = store_segment_update(st, &cur.s, 0, e);
    }
    snprintf(sid, sizeof sid, "%lld", (long long)id);
    if (rc == 0)
        rc = audit_record(st, actor, "segment.delete", "segment", sid, before, NULL, req_id, e);
    rc = store_finish(st, rc, e);
    json_decref(before);
    seg_copy_release(&cur);
    return rc;
}

/* ---- evaluate ------------------------------------------------------------------------ */

/* The members as a portable roaring bitmap. Caller frees *out. */
static void snapshot_encode(const struct segment_result *r, char **out, size_t *len)
{
    roaring_bitmap_t *rb = roaring_bitmap_create();
    uint32_t chunk[4096];
    size_t w, n = 0;

    for (w = 0; w < r->nwords; w++) {
        uint64_t bits = r->bits[w];
        while (bits) {
            chunk[n++] = (uint32_t)(w * 64 + (size_t)__builtin_ctzll(bits));
            bits &= bits - 1;
            if (n == 4096) {
                roaring_bitmap_add_many(rb, n, chunk);
                n = 0;
            }
        }
    }
    roaring_bitmap_add_many(rb, n, chunk);
    roaring_bitmap_run_optimize(rb);
    *len = roaring_bitmap_portable_size_in_bytes(rb);
    *out = xmalloc(*len ? *len : 1);
    roaring_bitmap_portable_serialize(rb, *out);
    roaring_bitmap_free(rb);
}

int segment_evaluate(struct segment_service *sv, struct store *st, int64_t id, const char *trigger,
                     const char *actor, const char *req_id, json_t **out, struct err *e)
{
    struct seg_copy cur = {0};
    struct store_evaluation ev = {.trigger = trigger, .status = "running"};
    struct segment_plan *plan = NULL;
    struct segment_result res = {0};
    struct errlist errs = {0};
    struct err why = {0};
    char *snap = NULL, msg[512], sid[32];
    size_t snap_len = 0;
    json_t *rules = NULL;
    int rc, erc, deadline = 0;

    *out = NULL;
    if (!atomic_load(&sv->loaded))
        return ERR(e, E_BUSY, "the audience index is loading; retry shortly");
    rc = store_segment_get(st, id, copy_segment, &cur, e);
    if (rc)
        return rc;
    ev.segment_id = id;
    ev.version = cur.s.version;
    ev.as_of = ev.started_at = clock_now_ms();
    /* The running row is committed before any work: a crash leaves a trace. */
    rc = store_begin(st, e);
    if (rc == 0)
        rc = store_evaluation_begin(st, &ev, e);
    snprintf(sid, sizeof sid, "%lld", (long long)id);
    if (rc == 0 && actor) {
        json_t *a =
            json_pack("{s:I,s:i}", "evaluation_id", (json_int_t)ev.id, "version", ev.version);
        rc = audit_record(st, actor, "segment.evaluate", "segment", sid, NULL, a, req_id, e);
        json_decref(a);
    }
    rc = store_finish(st, rc, e);
    if (rc)
        goto out;

    rules = json_loads(cur.s.rules, 0, NULL);
    pthread_mutex_lock(&sv->mu);
    erc = compile_locked(sv, st, rules, &plan, &errs, &why);
    if (erc == 0) {
        erc = segment_eval(sv->ix, plan, ev.as_of, &sv->lim, &res, &why);
        deadline = erc == E_BUSY; /* segment_eval's only E_BUSY */
    }
    pthread_mutex_unlock(&sv->mu);
    if (erc == 0) {
        ev.status = "succeeded";
        ev.member_count = res.count;
        ev.took_ms = res.took_ms;
        snapshot_encode(&res, &snap, &snap_len);
    } else {
        ev.status = deadline ? "timed_out" : "failed";
        if (erc == E_INVAL && errs.n)
            snprintf(msg, sizeof msg, "the rules are no longer valid: %s: %s", errs.items[0].path,
                     errs.items[0].msg);
        else
            snprintf(msg, sizeof msg, "%s", why.msg);
        ev.error = msg;
        log_warn("segment", "evaluation %lld of segment %lld %s: %s", (long long)ev.id,
                 (long long)id, ev.status, msg);
    }
    ev.finished_at = clock_now_ms();
    rc = store_begin(st, e);
    if (rc == 0)
        rc = store_evaluation_finish(st, &ev, snap, snap_len, e);
    rc = store_finish(st, rc, e);
    if (rc == 0)
        *out = segment_evaluation_json(&ev);
out:
    free(snap);
    json_decref(rules);
    segment_result_release(&res);
    segment_plan_free(plan);
    seg_copy_release(&cur);
    return rc;
}

/* ---- members of a snapshot --------------------------------------------------------------- */

int segment_snapshot_members(struct store *st, int64_t segment_id, int64_t evaluation_id,
                             int64_t after_contact, int limit, json_t **out, int64_t *next_cursor,
                             struct err *e)
{
    json_t *evj = NULL, *items;
    roaring_bitmap_t *rb;
    roaring_uint32_iterator_t *it;
    void *blob = NULL;
    size_t len;
    int rc, n = 0;

    *out = NULL;
    *next_cursor = 0;
    rc = store_segment_get(st, segment_id, keep_segment, &evj, e); /* 404 for a deleted one */
    json_decref(evj);
    evj = NULL;
    if (rc == 0)
        rc = store_evaluation_get(st, segment_id, evaluation_id, keep_evaluation, &evj, e);
    if (rc == 0)
        rc = store_snapshot_get(st, json_integer_value(json_object_get(evj, "id")), &blob, &len, e);
    if (rc) {
        json_decref(evj);
        return rc;
    }
    rb = roaring_bitmap_portable_deserialize_safe(blob, len);
    free(blob);
    if (rb == NULL) {
        json_decref(evj);
        return ERR(e, E_CORRUPT, "the snapshot of evaluation %lld does not decode",
                   (long long)evaluation_id);
    }
    items = json_array();
    it = roaring_create_iterator(rb);
    if (after_contact >= (int64_t)UINT32_MAX)
        it->has_value = false; /* past every contact id: the end */
    else if (after_contact >= 0)
        roaring_move_uint32_iterator_equalorlarger(it, (uint32_t)after_contact + 1);
    rc = 0;
    while (rc == 0 && it->has_value && n < limit) {
        struct store_contact c;
        store_contact_init(&c);
        rc = store_contact_get(st, it->current_value, &c, e);
        if (rc == 0)
            json_array_append_new(items,
                                  json_pack("{s:I,s:s?,s:s?}", "contact_id", (json_int_t)c.id,
                                            "external_id", c.external_id, "email", c.email));
        else if (rc == E_NOTFOUND) { /* contacts are never removed: cannot happen, skip */
            err_clear(e);
            rc = 0;
        }
        store_contact_release(&c);
        *next_cursor = it->current_value;
        n++;
        roaring_advance_uint32_iterator(it);
    }
    if (!it->has_value)
        *next_cursor = 0;
    roaring_free_uint32_iterator(it);
    roaring_bitmap_free(rb);
    if (rc) {
        json_decref(items);
        json_decref(evj);
        return rc;
    }
    *out = json_pack("{s:o,s:o}", "evaluation", evj, "items", items);
    return 0;
}

/* ---- the scheduler ------------------------------------------------------------------------ */

struct due_ids {
    int64_t ids[100];
    int n;
};

static int take_due(void *ctx, const struct store_segment *s)
{
    struct due_ids *d = ctx;

    if (d->n < 100)
        d->ids[d->n++] = s->id;
    return 0;
}

int segment_scheduler_tick(struct segment_service *sv, struct store *st, int64_t now, int *ran,
                           struct err *e)
{
    struct due_ids due = {.n = 0};
    int rc, i;

    *ran = 0;
    rc = store_begin(st, e);
    if (rc)
        return rc;
    rc = store_segments_claim_due(st, now, take_due, &due, e);
    rc = store_finish(st, rc, e);
    for (i = 0; rc == 0 && i < due.n; i++) {
        json_t *out = NULL;
        struct err e2 = {0};
        if (segment_evaluate(sv, st, due.ids[i], "schedule", NULL, "", &out, &e2) != 0)
            log_warn("segment", "scheduled evaluation of segment %lld: %s", (long long)due.ids[i],
                     e2.msg);
        json_decref(out);
        (*ran)++;
    }
    return rc;
}

int segment_recover(struct store *st, int64_t *interrupted, struct err *e)
{
    int rc = store_begin(st, e);

    if (rc)
        return rc;
    rc = store_evaluations_interrupt(st, clock_now_ms(), interrupted, e);
    rc = store_finish(st, rc, e);
    return rc;
}

/* ---- lists ------------------------------------------------------------------------------ */

struct page {
    json_t *items;
    int64_t last;
};

/* Hands the page's items to the caller (NULL on error); a full page has a next cursor. */
static int page_finish(struct page *p, int rc, int limit, json_t **items, int64_t *next_cursor)
{
    if (next_cursor)
        *next_cursor = rc == 0 && (int)json_array_size(p->items) == limit ? p->last : 0;
    if (rc) {
        json_decref(p->items);
        p->items = NULL;
    }
    *items = p->items;
    return rc;
}

static int add_segment(void *ctx, const struct store_segment *s)
{
    struct page *p = ctx;

    json_array_append_new(p->items, segment_json(s));
    p->last = s->id;
    return 0;
}

int segment_list(struct store *st, int64_t after_id, int limit, json_t **items,
                 int64_t *next_cursor, struct err *e)
{
    struct page p = {json_array(), 0};
    int rc = store_segments_list(st, after_id, limit, add_segment, &p, e);
    size_t i;

    /* Each with its latest successful evaluation, as GET /segments/{id} shows it (read
     * after the list: a store reader may not run another query inside its callback). */
    for (i = 0; rc == 0 && i < json_array_size(p.items); i++) {
        json_t *seg = json_array_get(p.items, i), *last = NULL;
        rc = store_evaluation_get(st, json_integer_value(json_object_get(seg, "id")), 0,
                                  keep_evaluation, &last, e);
        if (rc == E_NOTFOUND) {
            err_clear(e);
            rc = 0;
        }
        json_object_set_new(seg, "last_evaluation", last ? last : json_null());
    }
    return page_finish(&p, rc, limit, items, next_cursor);
}

static int add_version(void *ctx, const struct store_segment *s)
{
    struct page *p = ctx;
    json_t *o = json_pack("{s:i,s:o,s:o,s:s}", "version", s->version, "rules",
                          json_loads(s->rules, 0, NULL), "created_at",
                          json_iso_or_null(s->created_at), "created_by", s->created_by);

    json_array_append_new(p->items, o);
    return 0;
}

int segment_versions(struct store *st, int64_t id, json_t **items, struct err *e)
{
    struct page p = {json_array(), 0};
    json_t *probe = NULL;
    int rc = store_segment_get(st, id, keep_segment, &probe, e); /* 404 once deleted */

    json_decref(probe);
    if (rc == 0)
        rc = store_segment_versions(st, id, add_version, &p, e);
    return page_finish(&p, rc, 0, items, NULL);
}

static int add_evaluation(void *ctx, const struct store_evaluation *ev)
{
    struct page *p = ctx;

    json_array_append_new(p->items, segment_evaluation_json(ev));
    p->last = ev->id;
    return 0;
}

int segment_evaluations(struct store *st, int64_t id, int64_t before_id, int limit, json_t **items,
                        int64_t *next_cursor, struct err *e)
{
    struct page p = {json_array(), 0};
    json_t *probe = NULL;
    int rc = store_segment_get(st, id, keep_segment, &probe, e);

    json_decref(probe);
    if (rc == 0)
        rc = store_evaluations_list(st, id, before_id, limit, add_evaluation, &p, e);
    return page_finish(&p, rc, limit, items, next_cursor);
}

/* ---- the scheduler worker ------------------------------------------------------------------ */

struct segment_scheduler {
    struct segment_service *sv;
    struct store_pool *pool;
    struct worker *worker;
};

/* Start-up: evaluations a dead process left running, then load the index. */
static void scheduler_init(void *ctx, struct store *unused)
{
    struct segment_scheduler *sc = ctx;
    struct store *st = store_pool_get(sc->pool);
    struct err e = {0};
    int64_t interrupted = 0;

    if (segment_recover(st, &interrupted, &e))
        log_warn("segment", "recovering evaluations: %s", e.msg);
    else if (interrupted)
        log_warn("segment", "%lld evaluation(s) were interrupted by a stop; marked failed",
                 (long long)interrupted);
    err_clear(&e);
    pthread_mutex_lock(&sc->sv->mu);
    if (audience_index_catch_up(sc->sv->ix, st, &e))
        log_warn("segment", "loading the audience index: %s", e.msg);
    pthread_mutex_unlock(&sc->sv->mu);
    atomic_store(&sc->sv->loaded, 1); /* loaded or failed (the next use retries): ready */
    store_pool_put(sc->pool, st);
}

/* A pooled connection, as the requests use: the scheduler holds one only while it runs. */
static int scheduler_tick(void *ctx, struct store *unused, struct err *e)
{
    struct segment_scheduler *sc = ctx;
    struct store *st = store_pool_get(sc->pool);
    int ran, rc = segment_scheduler_tick(sc->sv, st, clock_now_ms(), &ran, e);

    store_pool_put(sc->pool, st);
    return rc;
}

static const struct worker_def scheduler_def = {
    .name = "segment-sched",
    .tick = scheduler_tick,
    .interval_ms = 1000,
    /* A failed tick (a store busy under an import) is retried the next second, as the
     * scheduler always did: a due segment should not wait a minute after the import. */
    .backoff_min_ms = 1000,
    .backoff_max_ms = 1000,
    .store = WORKER_NO_STORE,
    .init = scheduler_init,
};

int segment_scheduler_start(struct segment_scheduler **out, struct worker_set *ws,
                            struct segment_service *sv, struct store_pool *pool, struct err *e)
{
    struct segment_scheduler *sc = xcalloc(1, sizeof *sc);
    int rc;

    sc->sv = sv;
    sc->pool = pool;
    atomic_store(&sv->loaded, 0); /* until the worker's first load */
    rc = worker_start(&sc->worker, ws, &scheduler_def, sc, e);
    if (rc) {
        atomic_store(&sv->loaded, 1);
        free(sc);
        sc = NULL;
    }
    *out = sc;
    return rc;
}

void segment_scheduler_stop(struct segment_scheduler *sc)
{
    if (sc == NULL)
        return;
    worker_stop(sc->worker);
    free(sc);
}

int segment_contact_view(struct segment_service *sv, struct store *st, const char *xid,
                         json_t **out, struct err *e)
{
    struct err ie = {0};
    int64_t seqs[20], id = 0;
    int n = 0, deleted = 0, from_index = 0;

    /* The latest events come from the audience index (milliseconds); while it loads,
     * from a scan of the store (about a second per 20M events). */
    if (store_contact_lookup(st, xid, &id, &deleted, &ie) == 0 && !deleted &&
        segment_recent_events(sv, st, id, 20, seqs, &n, &ie) == 0)
        from_index = 1;
    return contact_view(st, xid, 20, from_index ? seqs : NULL, n, out, e);
}

/* ---- metrics ----------------------------------------------------------------------------------
 */

enum index_figure { MEMBERS, EVENTS, PENDING, BYTES, LOAD_SECONDS, SEQS };

static int collect_index(void *ctx, int which, void *scrape, struct metric_sink *out, struct err *e)
{
    static const char *const contacts[] = {"contacts"}, *const events[] = {"events"};
    struct audience_stats ix;

    segment_service_stats(ctx, &ix);
    switch (which) {
    case MEMBERS:
        metric_emit(out, NULL, (double)ix.members);
        break;
    case EVENTS:
        metric_emit(out, NULL, (double)ix.events);
        break;
    case PENDING:
        metric_emit(out, NULL, (double)ix.pending);
        break;
    case BYTES:
        metric_emit(out, NULL, (double)ix.bytes);
        break;
    case LOAD_SECONDS:
        metric_emit(out, NULL, ix.load_ms / 1000.0);
        break;
    case SEQS:
        metric_emit(out, contacts, (double)ix.contact_seq);
        metric_emit(out, events, (double)ix.event_seq);
        break;
    }
    return 0;
}

/* scrape: the scrape's store connection. */
static int collect_evaluations(void *ctx, int which, void *scrape, struct metric_sink *out,
                               struct err *e)
{
    return store_evaluation_counts(scrape, metric_emit_count, out, e);
}

void segment_service_metrics(struct segment_service *sv, struct metrics *m)
{
    static const struct metric_def defs[] = {
        {.name = "engage_segment_index_contacts",
         .help = "Members in the audience index.",
         .type = METRIC_GAUGE,
         .collect = collect_index,
         .which = MEMBERS},
        {.name = "engage_segment_index_events",
         .help = "Events in the audience index (pending: not merged yet).",
         .type = METRIC_GAUGE,
         .collect = collect_index,
         .which = EVENTS},
        {.name = "engage_segment_index_events_pending",
         .help = "Events in the audience index not merged yet.",
         .type = METRIC_GAUGE,
         .collect = collect_index,
         .which = PENDING},
        {.name = "engage_segment_index_bytes",
         .help = "Heap held by the audience index.",
         .type = METRIC_GAUGE,
         .collect = collect_index,
         .which = BYTES},
        {.name = "engage_segment_index_load_seconds",
         .help = "Time of the index's first load.",
         .type = METRIC_GAUGE,
         .decimals = 3,
         .collect = collect_index,
         .which = LOAD_SECONDS},
        {.name = "engage_segment_index_seq",
         .help = "Change sequences the index has caught up to.",
         .type = METRIC_GAUGE,
         .labels = "table",
         .collect = collect_index,
         .which = SEQS},
        {.name = "engage_segment_evaluations",
         .help = "Segment evaluations by status.",
         .type = METRIC_GAUGE,
         .labels = "status",
         .collect = collect_evaluations},
    };

    metrics_add_all(m, defs, sizeof defs / sizeof *defs, sv);
}
