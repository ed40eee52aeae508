/* http/routes_ingest.c -- data coming in over HTTP: the Segment-compatible tracking API
 * (/v1/identify, track, page, screen, group, alias, batch) and the native
 * POST /api/v1/events and /api/v1/contacts.
 *
 * A thin adapter: the handler reads the transport -- the body whole (gzip inflated
 * whatever the Content-Type says: RudderStack labels gzip'ed JSON as a form), sized
 * against the tracking limits; the key the server already checked from the
 * Authorization header -- and hands it to one domain call (ingest/track.c:
 * ingest_track_request, ingest_records_request), which checks a key sent in the body,
 * maps, validates and stores the messages; the handler turns its reply into the
 * response. Invalid messages are answered 200 beside the valid ones, each listed with
 * its reason and kept as a dead letter; only a body that is not JSON is a 400. */
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "../core/jtree.h"
#include "../ingest/ingest.h"
#include "routes_int.h"

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
                http_error(w, 400, "invalid_body",
                           "Content-Encoding is gzip but the body is "
                           "not valid gzip data",
                           NULL);
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

/* Turns the domain's reply into the response: 200 with what was accepted and what was
 * not (and why), 429 when the writer is full, the refusals with their statuses. */
static void answer(struct http_req *r, struct http_resp *w, struct ingest_result *res)
{
    char msg[200];

    if (res->who_known) {
        r->who = res->who;
        r->authenticated = 1;
    }
    switch (res->reply) {
    case INGEST_REPLY_DONE:
        http_json(w, 200, res->body);
        res->body = NULL;
        return;
    case INGEST_REPLY_UNREADABLE:
        http_json_error(w, res->parse_rc, &res->je, "batch");
        return;
    case INGEST_REPLY_MALFORMED:
        http_error(w, 400, "invalid_json", res->err.msg, res->err.field[0] ? res->err.field : NULL);
        return;
    case INGEST_REPLY_UNAUTHORIZED:
        http_error(w, 401, "unauthorized", res->err.msg, NULL);
        return;
    case INGEST_REPLY_FORBIDDEN:
        snprintf(msg, sizeof msg, "role %s may not call %s %s", role_name(res->who.role), r->method,
                 r->path);
        http_error(w, 403, "forbidden", msg, NULL);
        return;
    case INGEST_REPLY_FULL:
        http_error(w, 429, "busy", res->err.msg, NULL);
        snprintf(w->extra_headers, sizeof w->extra_headers, "Retry-After: 1\n");
        return;
    case INGEST_REPLY_FAILED:
        http_error_from(r, w, &res->err);
        return;
    }
}

static void front_of(struct http_req *r, struct ingest_front *f)
{
    http_store_release(r); /* the domain call takes a connection only when it needs one */
    f->queue = r->app->ingest;
    f->pool = r->app->pool;
    f->cfg = r->app->cfg;
}

/* POST /v1/{type}: one message, or /v1/batch: {"batch":[…],"sentAt"?,"writeKey"?}. */
void h_tracking(struct http_req *r, struct http_resp *w)
{
    int batch = strcmp(r->params[0], "batch") == 0;
    struct ingest_track_call call = {.type = TRACK_NONE,
                                     .req_id = r->req_id,
                                     .received_at = clock_now_ms(),
                                     .who = r->authenticated ? &r->who : NULL,
                                     .roles = ROLE_INGEST | ROLE_ADMIN,
                                     .max_message = HTTP_TRACK_MAX_MESSAGE};
    struct ingest_front f;
    struct ingest_result res;
    struct buf inflated;

    if (!batch && (call.type = tracking_type_parse(r->params[0])) == TRACK_NONE) {
        http_error(w, 404, "not_found",
                   "the tracking API has /v1/identify, track, page, screen, "
                   "group, alias and batch",
                   NULL);
        return;
    }
    call.arena = http_arena_take(); /* given back below */
    buf_init(&inflated);
    if (body_text(r, w, batch ? HTTP_TRACK_MAX_BATCH : HTTP_TRACK_MAX_MESSAGE, &inflated,
                  &call.text, &call.len) == 0) {
        front_of(r, &f);
        ingest_track_request(&f, &call, &res);
        answer(r, w, &res);
        ingest_result_release(&res);
    }
    buf_release(&inflated);
    http_arena_give(call.arena);
}

/* POST /api/v1/events and /api/v1/contacts: one native record, or {"items":[…]}. */
static void native(struct http_req *r, struct http_resp *w, int contacts)
{
    int64_t received_at = clock_now_ms();
    json_t *body = http_body_json_capped(r, w, INGEST_MAX_ITEMS, "items");
    struct ingest_front f;
    struct ingest_result res;

    if (body == NULL)
        return;
    front_of(r, &f);
    ingest_records_request(&f, body, contacts, r->req_id, received_at, &res);
    answer(r, w, &res);
    ingest_result_release(&res);
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
