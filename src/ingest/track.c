/* ingest/track.c -- one request to ingest, whole: the tracking API's calls (/v1/identify,
 * track, page, screen, group, alias, batch) and the native API's records.
 *
 * DESIGN: the body is read whole (a tracking body by core/jtree.c into the caller's
 * arena, a native one by jansson in the front end), the write key in it checked, its
 * messages mapped one by one (tracking.c), validated here against the current contracts
 * (ingest_job_prepare, beside the writer, which then only stores) and handed to the
 * server's one writer (queue.c), which returns once the transaction holding them
 * committed. Invalid messages are replied beside the valid ones, each listed with its
 * reason and kept as a dead letter; only a body that cannot be read at all is refused
 * whole. A store connection is taken from the pool only when a cache misses (the key,
 * the contracts), and given back before the wait for the writer. */
#include <stdlib.h>
#include <string.h>

#include "ingest.h"

/* The request's store connection: taken on first need, given back by lend_end. */
struct lend {
    struct store_pool *pool;
    struct store *st;
};

static struct store *lend_store(struct lend *l)
{
    if (l->st == NULL)
        l->st = store_pool_get(l->pool);
    return l->st;
}

static void lend_end(struct lend *l)
{
    if (l->st)
        store_pool_put(l->pool, l->st);
    l->st = NULL;
}

static enum ingest_reply refuse(struct ingest_result *out, enum ingest_reply reply)
{
    out->reply = reply;
    return reply;
}

/* The body's write key, when the front end had none: UNAUTHORIZED, FORBIDDEN or FAILED
 * in out, or DONE when the key may write. */
static enum ingest_reply check_key(const struct ingest_track_call *call, const struct jt *body,
                                   struct lend *l, struct ingest_result *out)
{
    const char *key = jt_str(body, "writeKey");
    int rc;

    if (key == NULL) {
        ERR(&out->err, E_AUTH,
            "send the write key as the Basic user name (empty password) or "
            "as \"writeKey\" in the body");
        return refuse(out, INGEST_REPLY_UNAUTHORIZED);
    }
    rc = auth_apikey_cached(key, &out->who)
             ? 0
             : auth_apikey_verify(lend_store(l), key, &out->who, &out->err);
    if (rc == E_AUTH)
        return refuse(out, INGEST_REPLY_UNAUTHORIZED);
    if (rc)
        return refuse(out, INGEST_REPLY_FAILED);
    out->who_known = 1;
    if (!(call->roles & (unsigned)out->who.role))
        return refuse(out, INGEST_REPLY_FORBIDDEN);
    return INGEST_REPLY_DONE;
}

/* The current contracts, from the writer's cache or else read with a store connection. */
static int contracts_get(const struct ingest_front *f, struct lend *l, struct contract_set **cs,
                         struct err *e)
{
    if (ingest_queue_contracts_cached(f->queue, cs))
        return 0;
    return ingest_queue_contracts(f->queue, lend_store(l), cs, e);
}

/* Validates the job's items, stores them through the writer and fills the reply. */
static enum ingest_reply run(const struct ingest_front *f, struct ingest_job *job,
                             const struct contract_set *cs, int tracking, struct ingest_result *out)
{
    json_t *rejected;
    size_t i, accepted = 0;
    int rc;

    ingest_job_prepare(job, cs);
    rc = ingest_queue_run(f->queue, job, &out->err);
    if (rc)
        return refuse(out, rc == E_BUSY ? INGEST_REPLY_FULL : INGEST_REPLY_FAILED);
    rejected = json_array();
    for (i = 0; i < job->n; i++) {
        const struct ingest_item *it = &job->items[i];
        if (it->rejected)
            json_array_append_new(rejected,
                                  json_pack("{s:I,s:s,s:s,s:s}", "index", (json_int_t)i, "reason",
                                            it->reason, "field", it->field, "message", it->msg));
        else
            accepted++;
    }
    out->body = json_pack("{s:I,s:o}", "accepted", (json_int_t)accepted, "rejected", rejected);
    if (tracking)
        json_object_set_new(out->body, "success", json_true());
    return refuse(out, INGEST_REPLY_DONE);
}

/* A message of a batch refused for its size, kept whole as a dead letter. */
static void too_large(const struct jt *m, size_t max_message, struct ingest_item *it)
{
    memset(it, 0, sizeof *it);
    it->raw = jt_json(m);
    it->rejected = 1;
    snprintf(it->reason, sizeof it->reason, "too_large");
    snprintf(it->msg, sizeof it->msg, "a message is at most %zu bytes of JSON", max_message);
}

/* The common messages map from the arena straight to prepared events
 * (tracking_map_fast), the others through jansson (tracking_map). */
enum ingest_reply ingest_track_request(const struct ingest_front *f,
                                       const struct ingest_track_call *call,
                                       struct ingest_result *out)
{
    int batch = call->type == TRACK_NONE;
    struct ingest_job job = {.kind = SRC_SDK,
                             .source = "sdk",
                             .origin = call->req_id,
                             .received_at = call->received_at,
                             .max_value_bytes = (size_t)f->cfg->max_value_bytes};
    struct jt_limits lim = {.max_values = (size_t)f->cfg->max_json_values,
                            .max_items = INGEST_MAX_ITEMS,
                            .items_key = "batch"};
    struct lend l = {.pool = f->pool};
    struct contract_set *cs = NULL;
    struct buf scratch;
    const struct jt *list, *body;
    struct jt *root;
    const char *sent_at;
    size_t i, n;

    memset(out, 0, sizeof *out);
    buf_init(&scratch);
    out->parse_rc = jt_parse_limited(call->arena, call->text, call->len, &lim, &root, &out->je);
    if (out->parse_rc) {
        refuse(out, INGEST_REPLY_UNREADABLE);
        goto out;
    }
    body = root;
    if (body->type != JT_OBJ) {
        ERR(&out->err, E_INVAL, "the body must be a JSON object");
        refuse(out, INGEST_REPLY_MALFORMED);
        goto out;
    }
    if (call->who == NULL && check_key(call, body, &l, out) != INGEST_REPLY_DONE)
        goto out;
    list = batch ? jt_get(body, "batch") : body;
    if (batch && (list == NULL || list->type != JT_ARR)) {
        ERRF(&out->err, E_INVAL, "/batch", "a batch needs \"batch\": an array of messages");
        refuse(out, INGEST_REPLY_MALFORMED);
        goto out;
    }
    n = batch ? list->n : 1; /* at most INGEST_MAX_ITEMS: jt_parse_limited saw to it */
    if (contracts_get(f, &l, &cs, &out->err)) {
        refuse(out, INGEST_REPLY_FAILED);
        goto out;
    }
    lend_end(&l); /* mapping and waiting for the writer need none */
    sent_at = jt_str(body, "sentAt");
    job.items = arena_alloc(call->arena, (n ? n : 1) * sizeof *job.items);
    job.n = n;
    for (i = 0; i < n; i++) {
        const struct jt *m = batch ? &list->u.items[i] : list;
        struct ingest_item *it = &job.items[i];
        if (batch && m->srclen > call->max_message) {
            too_large(m, call->max_message, it);
        } else if (!tracking_map_fast(m, call->type, job.received_at, sent_at, cs,
                                      job.max_value_bytes, call->arena, &scratch, it)) {
            json_t *j = jt_json(m);
            tracking_map(j, call->type, job.received_at, sent_at, it);
            json_decref(j);
        }
        it->index = i;
    }
    run(f, &job, cs, 1, out);
    for (i = 0; i < job.n; i++)
        ingest_item_release(&job.items[i]);
out:
    lend_end(&l);
    contract_set_free(cs);
    buf_release(&scratch);
    return out->reply;
}

enum ingest_reply ingest_records_request(const struct ingest_front *f, const json_t *body,
                                         int contacts, const char *req_id, int64_t received_at,
                                         struct ingest_result *out)
{
    struct ingest_job job = {.kind = SRC_API,
                             .source = "api",
                             .origin = req_id,
                             .received_at = received_at,
                             .max_value_bytes = (size_t)f->cfg->max_value_bytes};
    struct lend l = {.pool = f->pool};
    struct contract_set *cs = NULL;
    const json_t *list = json_object_get(body, "items");
    size_t i, n;

    memset(out, 0, sizeof *out);
    if (!json_is_object(body) || (list && !json_is_array(list))) {
        ERR(&out->err, E_INVAL, "%s",
            contacts ? "the body must be a contact object or {\"items\":[contacts…]}"
                     : "the body must be an event object or {\"items\":[events…]}");
        return refuse(out, INGEST_REPLY_MALFORMED);
    }
    n = list ? json_array_size(list) : 1; /* at most INGEST_MAX_ITEMS: the front end's */
    job.items = xcalloc(n ? n : 1, sizeof *job.items);
    job.n = n;
    for (i = 0; i < n; i++) {
        json_t *rec = list ? json_array_get(list, i) : (json_t *)body;
        struct ingest_item *it = &job.items[i];
        it->index = i;
        it->raw = json_incref(rec);
        it->is_contact = contacts;
        if (!json_is_object(rec)) {
            it->rejected = 1;
            snprintf(it->reason, sizeof it->reason, "invalid_type");
            snprintf(it->msg, sizeof it->msg, "a record must be a JSON object");
        } else if (contacts) {
            it->contact = json_incref(rec);
        } else {
            it->event = json_incref(rec);
        }
    }
    if (contracts_get(f, &l, &cs, &out->err)) {
        refuse(out, INGEST_REPLY_FAILED);
    } else {
        lend_end(&l);
        run(f, &job, cs, 0, out);
    }
    lend_end(&l);
    contract_set_free(cs);
    for (i = 0; i < job.n; i++)
        ingest_item_release(&job.items[i]);
    free(job.items);
    return out->reply;
}

void ingest_result_release(struct ingest_result *r)
{
    if (r == NULL)
        return;
    json_decref(r->body);
    r->body = NULL;
}
