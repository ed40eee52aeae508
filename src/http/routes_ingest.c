/* http/routes_ingest.c -- data coming in over HTTP: the Segment-compatible tracking API
 * (/v1/identify, track, page, screen, group, alias, batch) and the native
 * POST /api/v1/events and /api/v1/contacts.
 *
 * A request is read whole (gzip inflated whatever the Content-Type says: RudderStack
 * labels gzip'ed JSON as a form), sized against the tracking limits, parsed (a tracking
 * body by core/jtree.c into an arena, a native one by jansson), mapped
 * message by message (ingest/tracking.c), then handed to the server's one writer
 * (ingest/queue.c), which answers once the transaction holding it committed. Invalid
 * messages are answered 200 beside the valid ones, each listed with its reason and
 * kept as a dead letter; only a body that is not JSON is a 400. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "../core/jtree.h"
#include "../ingest/ingest.h"
#include "routes_int.h"

#define TRACK_MAX_MESSAGE HTTP_TRACK_MAX_MESSAGE /* one message, as JSON */
#define TRACK_MAX_BATCH HTTP_TRACK_MAX_BATCH     /* a /v1/batch body, inflated */
#define TRACK_MAX_ITEMS 2500            /* messages in one batch */

/* Inflates a gzip body into out, at most cap bytes. 0, E_TOOBIG or E_INVAL. */
static int gunzip(const char *in, size_t n, size_t cap, struct buf *out)
{
    z_stream z;
    char chunk[16384];
    int zr;

    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 32) != Z_OK) /* gzip or zlib, by the header */
        return E_NOMEM;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    do {
        z.next_out = (Bytef *)chunk;
        z.avail_out = sizeof chunk;
        zr = inflate(&z, Z_NO_FLUSH);
        if (zr != Z_OK && zr != Z_STREAM_END) {
            inflateEnd(&z);
            return E_INVAL;
        }
        if (out->len + (sizeof chunk - z.avail_out) > cap) {
            inflateEnd(&z);
            return E_TOOBIG;
        }
        buf_add(out, chunk, sizeof chunk - z.avail_out);
    } while (zr != Z_STREAM_END && (z.avail_in > 0 || z.avail_out == 0));
    inflateEnd(&z);
    return zr == Z_STREAM_END ? 0 : E_INVAL;
}

/* The body's text, inflated into *inflated if gzip'ed, within cap: 0, or -1 with 400/413
 * answered. */
static int body_text(struct http_req *r, struct http_resp *w, size_t cap, struct buf *inflated,
                     const char **text, size_t *len)
{
    const char *enc = http_header(r, "Content-Encoding");
    char msg[300];

    *text = r->body;
    *len = r->body_len;
    if (enc && strcasecmp(enc, "gzip") == 0) {
        int rc = gunzip(r->body, r->body_len, cap, inflated);
        if (rc) {
            if (rc == E_TOOBIG) {
                snprintf(msg, sizeof msg, "the inflated body is larger than %zu bytes", cap);
                http_error(w, 413, "too_large", msg, NULL);
            } else {
                http_error(w, 400, "invalid_body", "Content-Encoding is gzip but the body is "
                                                   "not valid gzip data", NULL);
            }
            return -1;
        }
        *text = inflated->p ? inflated->p : "";
        *len = inflated->len;
    } else if (enc && strcasecmp(enc, "identity") != 0) {
        http_error(w, 400, "invalid_body", "Content-Encoding must be gzip or identity", NULL);
        return -1;
    }
    if (*len > cap) {
        snprintf(msg, sizeof msg, "the body is larger than %zu bytes", cap);
        http_error(w, 413, "too_large", msg, NULL);
        return -1;
    }
    if (*len == 0) {
        http_error(w, 400, "invalid_json", "the request needs a JSON body", NULL);
        return -1;
    }
    return 0;
}

/* Stores the job's items through the writer and answers: 200 with what was accepted
 * and what was not (and why), 429 when the writer is full. */
static void run_and_answer(struct http_req *r, struct http_resp *w, struct ingest_job *job,
                           const struct contract_set *cs, int tracking)
{
    struct err e = {0};
    json_t *rejected, *body;
    size_t i, accepted = 0;
    int rc;

    /* Validated here, beside the writer, which then only stores. */
    ingest_job_prepare(job, cs);
    rejected = json_array();
    http_store_release(r); /* not held while the writer works */
    rc = ingest_queue_run(r->app->ingest, job, &e);
    if (rc) {
        json_decref(rejected);
        if (rc == E_BUSY) {
            http_error(w, 429, "busy", e.msg, NULL);
            snprintf(w->extra_headers, sizeof w->extra_headers, "Retry-After: 1\n");
            return;
        }
        http_error_from(r, w, &e);
        return;
    }
    for (i = 0; i < job->n; i++) {
        struct ingest_item *it = &job->items[i];
        if (it->rejected)
            json_array_append_new(rejected, json_pack("{s:I,s:s,s:s,s:s}", "index",
                                                      (json_int_t)i, "reason", it->reason,
                                                      "field", it->field, "message", it->msg));
        else
            accepted++;
    }
    body = json_pack("{s:I,s:o}", "accepted", (json_int_t)accepted, "rejected", rejected);
    if (tracking)
        json_object_set_new(body, "success", json_true());
    http_json(w, 200, body);
}

static void items_release(struct ingest_item *items, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        ingest_item_release(&items[i]);
    free(items);
}

/* A message refused for its size, kept whole as a dead letter. */
static void too_large(const struct jt *m, struct ingest_item *it)
{
    memset(it, 0, sizeof *it);
    it->raw = jt_json(m);
    it->rejected = 1;
    snprintf(it->reason, sizeof it->reason, "too_large");
    snprintf(it->msg, sizeof it->msg, "a message is at most %d bytes of JSON", TRACK_MAX_MESSAGE);
}

/* POST /v1/{type}: one message, or /v1/batch: {"batch":[…],"sentAt"?,"writeKey"?}.
 * The body is read by core/jtree.c into an arena; the common messages map
 * from there straight to prepared events (tracking_map_fast), the others through
 * jansson (tracking_map). */
void h_tracking(struct http_req *r, struct http_resp *w)
{
    enum tracking_type type = TRACK_NONE;
    int batch = strcmp(r->params[0], "batch") == 0;
    struct ingest_job job = {.kind = SRC_SDK, .source = "sdk", .origin = r->req_id,
                             .received_at = clock_now_ms(),
                             .max_value_bytes = (size_t)r->app->cfg->max_value_bytes};
    struct contract_set *cs = NULL;
    struct arena *a;
    struct buf inflated, scratch;
    const struct jt *list, *body;
    struct jt *root;
    struct jt_error je;
    struct err e = {0};
    struct jt_limits lim = {.max_items = TRACK_MAX_ITEMS, .items_key = "batch"};
    const char *sent_at, *text;
    size_t i, n, len;
    int rc;

    if (!batch && (type = tracking_type_parse(r->params[0])) == TRACK_NONE) {
        http_error(w, 404, "not_found", "the tracking API has /v1/identify, track, page, screen, "
                                        "group, alias and batch", NULL);
        return;
    }
    a = http_arena_take(); /* given back at out: */
    buf_init(&inflated);
    buf_init(&scratch);
    if (body_text(r, w, batch ? TRACK_MAX_BATCH : TRACK_MAX_MESSAGE, &inflated, &text, &len))
        goto out;
    lim.max_values = (size_t)r->app->cfg->max_json_values;
    if ((rc = jt_parse_limited(a, text, len, &lim, &root, &je))) {
        http_json_error(w, rc, &je, "batch");
        goto out;
    }
    body = root;
    if (body->type != JT_OBJ) {
        http_error(w, 400, "invalid_json", "the body must be a JSON object", NULL);
        goto out;
    }
    if (!r->authenticated) {
        const char *key = jt_str(body, "writeKey");
        if (key == NULL) {
            http_error(w, 401, "unauthorized", "send the write key as the Basic user name "
                                               "(empty password) or as \"writeKey\" in the body",
                       NULL);
            goto out;
        }
        if (http_auth_key(r, w, key, ROLE_INGEST | ROLE_ADMIN))
            goto out;
    }
    list = batch ? jt_get(body, "batch") : body;
    if (batch && (list == NULL || list->type != JT_ARR)) {
        http_error(w, 400, "invalid_json", "a batch needs \"batch\": an array of messages",
                   "/batch");
        goto out;
    }
    n = batch ? list->n : 1; /* at most TRACK_MAX_ITEMS: jt_parse_limited saw to it */
    if (!ingest_queue_contracts_cached(r->app->ingest, &cs) &&
        ingest_queue_contracts(r->app->ingest, http_store(r), &cs, &e)) {
        http_error_from(r, w, &e);
        goto out;
    }
    http_store_release(r); /* mapping and waiting for the writer need none */
    sent_at = jt_str(body, "sentAt");
    job.items = arena_alloc(a, (n ? n : 1) * sizeof *job.items);
    job.n = n;
    for (i = 0; i < n; i++) {
        const struct jt *m = batch ? &list->u.items[i] : list;
        struct ingest_item *it = &job.items[i];
        if (batch && m->srclen > TRACK_MAX_MESSAGE) {
            too_large(m, it);
        } else if (!tracking_map_fast(m, type, job.received_at, sent_at, cs, job.max_value_bytes,
                                      a, &scratch, it)) {
            json_t *j = jt_json(m);
            tracking_map(j, type, job.received_at, sent_at, it);
            json_decref(j);
        }
        it->index = i;
    }
    run_and_answer(r, w, &job, cs, 1);
    for (i = 0; i < job.n; i++)
        ingest_item_release(&job.items[i]);
out:
    contract_set_free(cs);
    buf_release(&inflated);
    buf_release(&scratch);
    http_arena_give(a);
}

/* POST /api/v1/events and /api/v1/contacts: one native record, or {"items":[…]}. */
static void native(struct http_req *r, struct http_resp *w, int contacts)
{
    struct ingest_job job = {.kind = SRC_API, .source = "api", .origin = r->req_id,
                             .received_at = clock_now_ms(),
                             .max_value_bytes = (size_t)r->app->cfg->max_value_bytes};
    struct contract_set *cs = NULL;
    struct err e = {0};
    json_t *body = http_body_json_capped(r, w, TRACK_MAX_ITEMS, "items"), *list;
    size_t i, n;

    if (body == NULL)
        return;
    list = json_object_get(body, "items");
    if (!json_is_object(body) || (list && !json_is_array(list))) {
        json_decref(body);
        http_error(w, 400, "invalid_json",
                   contacts ? "the body must be a contact object or {\"items\":[contacts…]}"
                            : "the body must be an event object or {\"items\":[events…]}",
                   NULL);
        return;
    }
    n = list ? json_array_size(list) : 1; /* at most TRACK_MAX_ITEMS: see above */
    job.items = xcalloc(n ? n : 1, sizeof *job.items);
    job.n = n;
    for (i = 0; i < n; i++) {
        json_t *rec = list ? json_array_get(list, i) : body;
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
    if (!ingest_queue_contracts_cached(r->app->ingest, &cs) &&
        ingest_queue_contracts(r->app->ingest, http_store(r), &cs, &e))
        http_error_from(r, w, &e);
    else
        run_and_answer(r, w, &job, cs, 0);
    contract_set_free(cs);
    items_release(job.items, job.n);
    json_decref(body);
}

void h_events_post(struct http_req *r, struct http_resp *w)
{
    native(r, w, 0);
}

void h_contacts_post(struct http_req *r, struct http_resp *w)
{
    native(r, w, 1);
}
