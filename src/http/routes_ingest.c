/* http/routes_ingest.c -- data coming in over HTTP: the Segment-compatible tracking API
 * (/v1/identify, track, page, screen, group, alias, batch) and the native
 * POST /api/v1/events and /api/v1/contacts.
 *
 * A request is read whole (gzip inflated whatever the Content-Type says: RudderStack
 * labels gzip'ed JSON as a form), sized against the tracking limits, parsed, mapped
 * message by message (ingest/tracking.c), then handed to the server's one writer
 * (ingest/queue.c), which answers once the transaction holding it committed. Invalid
 * messages are answered 200 beside the valid ones, each listed with its reason and
 * kept as a dead letter; only a body that is not JSON is a 400. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "../ingest/ingest.h"
#include "routes_int.h"

#define TRACK_MAX_MESSAGE (32 * 1024)   /* one message, as JSON */
#define TRACK_MAX_BATCH (500 * 1024)    /* a /v1/batch body, inflated */
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

/* The body as JSON: inflated if gzip'ed, within cap. Answers 400/413 and returns NULL
 * otherwise. */
static json_t *body_json(struct http_req *r, struct http_resp *w, size_t cap)
{
    const char *enc = http_header(r, "Content-Encoding");
    const char *text = r->body;
    size_t len = r->body_len;
    struct buf inflated;
    json_error_t je;
    json_t *j;
    char msg[300];

    buf_init(&inflated);
    if (enc && strcasecmp(enc, "gzip") == 0) {
        int rc = gunzip(r->body, r->body_len, cap, &inflated);
        if (rc) {
            buf_release(&inflated);
            if (rc == E_TOOBIG) {
                snprintf(msg, sizeof msg, "the inflated body is larger than %zu bytes", cap);
                http_error(w, 413, "too_large", msg, NULL);
            } else {
                http_error(w, 400, "invalid_body", "Content-Encoding is gzip but the body is "
                                                   "not valid gzip data", NULL);
            }
            return NULL;
        }
        text = inflated.p ? inflated.p : "";
        len = inflated.len;
    } else if (enc && strcasecmp(enc, "identity") != 0) {
        http_error(w, 400, "invalid_body", "Content-Encoding must be gzip or identity", NULL);
        return NULL;
    }
    if (len > cap) {
        buf_release(&inflated);
        snprintf(msg, sizeof msg, "the body is larger than %zu bytes", cap);
        http_error(w, 413, "too_large", msg, NULL);
        return NULL;
    }
    j = len ? json_loadb(text, len, 0, &je) : NULL;
    buf_release(&inflated);
    if (j == NULL) {
        if (len)
            snprintf(msg, sizeof msg, "body is not valid JSON: %s (line %d, column %d)", je.text,
                     je.line, je.column);
        else
            snprintf(msg, sizeof msg, "the request needs a JSON body");
        http_error(w, 400, "invalid_json", msg, NULL);
    }
    return j;
}

/* The size of a value as compact JSON, near enough for a limit: strings and keys by
 * their length (escapes not counted), every other value as 8 bytes; no number is
 * formatted. Stops counting past cap. */
static size_t json_size(const json_t *v, size_t cap)
{
    size_t n = 0, i;
    const char *k;
    json_t *x;

    switch (json_typeof(v)) {
    case JSON_STRING:
        return json_string_length(v) + 2;
    case JSON_OBJECT:
        json_object_foreach((json_t *)v, k, x) {
            n += strlen(k) + 4 + json_size(x, cap);
            if (n > cap)
                break;
        }
        return n + 2;
    case JSON_ARRAY:
        for (i = 0; i < json_array_size(v) && n <= cap; i++)
            n += json_size(json_array_get(v, i), cap) + 1;
        return n + 2;
    default:
        return 8;
    }
}

/* Stores the job's items through the writer and answers: 200 with what was accepted
 * and what was not (and why), 429 when the writer is full. */
static void run_and_answer(struct http_req *r, struct http_resp *w, struct ingest_job *job,
                           int tracking)
{
    struct contract_set *cs = NULL;
    struct err e = {0};
    json_t *rejected, *body;
    size_t i, accepted = 0;
    int rc;

    /* Validated here, beside the writer, which then only stores. */
    rc = ingest_queue_contracts(r->app->ingest, r->st, &cs, &e);
    if (rc) {
        http_error_from(r, w, &e);
        return;
    }
    ingest_job_prepare(job, cs);
    contract_set_free(cs);
    rejected = json_array();
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

/* POST /v1/{type}: one message, or /v1/batch: {"batch":[…],"sentAt"?,"writeKey"?}. */
void h_tracking(struct http_req *r, struct http_resp *w)
{
    enum tracking_type type = TRACK_NONE;
    int batch = strcmp(r->params[0], "batch") == 0;
    struct ingest_job job = {.kind = SRC_SDK, .source = "sdk", .origin = r->req_id,
                             .received_at = clock_now_ms()};
    const json_t *list;
    json_t *body;
    const char *sent_at;
    size_t i, n;

    if (!batch && (type = tracking_type_parse(r->params[0])) == TRACK_NONE) {
        http_error(w, 404, "not_found", "the tracking API has /v1/identify, track, page, screen, "
                                        "group, alias and batch", NULL);
        return;
    }
    body = body_json(r, w, batch ? TRACK_MAX_BATCH : TRACK_MAX_MESSAGE);
    if (body == NULL)
        return;
    if (!json_is_object(body)) {
        json_decref(body);
        http_error(w, 400, "invalid_json", "the body must be a JSON object", NULL);
        return;
    }
    if (!r->authenticated) {
        const char *key = json_string_value(json_object_get(body, "writeKey"));
        if (key == NULL) {
            json_decref(body);
            http_error(w, 401, "unauthorized", "send the write key as the Basic user name "
                                               "(empty password) or as \"writeKey\" in the body",
                       NULL);
            return;
        }
        if (http_auth_key(r, w, key, ROLE_INGEST | ROLE_ADMIN)) {
            json_decref(body);
            return;
        }
    }
    list = batch ? json_object_get(body, "batch") : body;
    if (batch && !json_is_array(list)) {
        json_decref(body);
        http_error(w, 400, "invalid_json", "a batch needs \"batch\": an array of messages",
                   "/batch");
        return;
    }
    n = batch ? json_array_size(list) : 1;
    if (n > TRACK_MAX_ITEMS) {
        json_decref(body);
        http_error(w, 413, "too_large", "a batch holds at most 2500 messages", "/batch");
        return;
    }
    sent_at = json_string_value(json_object_get(body, "sentAt"));
    job.items = xcalloc(n ? n : 1, sizeof *job.items);
    job.n = n;
    for (i = 0; i < n; i++) {
        const json_t *m = batch ? json_array_get(list, i) : list;
        struct ingest_item *it = &job.items[i];
        tracking_map(m, type, job.received_at, sent_at, it);
        it->index = i;
        if (!it->rejected && batch && json_size(m, TRACK_MAX_MESSAGE) > TRACK_MAX_MESSAGE) {
            it->rejected = 1;
            snprintf(it->reason, sizeof it->reason, "too_large");
            it->field[0] = '\0';
            snprintf(it->msg, sizeof it->msg, "a message is at most %d bytes of JSON",
                     TRACK_MAX_MESSAGE);
        }
    }
    run_and_answer(r, w, &job, 1);
    items_release(job.items, job.n);
    json_decref(body);
}

/* POST /api/v1/events and /api/v1/contacts: one native record, or {"items":[…]}. */
static void native(struct http_req *r, struct http_resp *w, int contacts)
{
    struct ingest_job job = {.kind = SRC_API, .source = "api", .origin = r->req_id,
                             .received_at = clock_now_ms()};
    json_t *body = http_body_json(r, w), *list;
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
    n = list ? json_array_size(list) : 1;
    if (n > TRACK_MAX_ITEMS) {
        json_decref(body);
        http_error(w, 413, "too_large", "at most 2500 records a request", "/items");
        return;
    }
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
    run_and_answer(r, w, &job, 0);
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
