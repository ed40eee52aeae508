/* http/routes_delivery.c -- what recipients' mail clients and providers call, with no
 * credentials: the open pixel (/t/o/), the click redirect (/t/c/), the unsubscribe link
 * (/u/) and the provider webhooks (/webhooks/{name}). Each is a thin adapter over
 * delivery/delivery.h. */
#include <string.h>

#include "../analytics/analytics.h"
#include "../campaign/campaign.h"
#include "../delivery/delivery.h"
#include "routes_int.h"

/* ---- our tracking ------------------------------------------------------------------- */

/* The smallest transparent GIF: 1x1, one transparent colour. */
static const unsigned char gif[] = {
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00,
    0x00, 0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00,
    0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b};

/* A small page for a person who followed a link that is not valid. */
static void not_found_page(struct http_resp *w, const char *line)
{
    buf_reset(&w->body);
    w->status = 404;
    w->content_type = "text/html; charset=utf-8";
    buf_adds(&w->body, "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                       "<title>Link not valid</title></head><body style=\"font-family:"
                       "sans-serif;max-width:32em;margin:3em auto;padding:0 1em\">"
                       "<h1>Link not valid</h1><p>");
    html_escape_append(&w->body, line);
    buf_adds(&w->body, "</p></body></html>\n");
}

/* GET /t/o/{token}: the open pixel. The image is answered once the open is stored. */
void h_track_open(struct http_req *r, struct http_resp *w)
{
    struct err e = {0};
    int rc = tracker_open(r->app->tracker, r->params[0], http_header(r, "User-Agent"), &e);

    if (rc == E_NOTFOUND) {
        not_found_page(w, "This image link is not valid.");
        return;
    }
    if (rc) {
        log_warn("tracking", "request %s: an open could not be stored: %s", r->req_id, e.msg);
        http_error(w, 503, "unavailable", "the open could not be stored; try again", "");
        return;
    }
    buf_reset(&w->body);
    buf_add(&w->body, gif, sizeof gif);
    w->status = 200;
    w->content_type = "image/gif";
}

static struct store *req_store(void *ctx)
{
    return http_store(ctx);
}

/* GET /t/c/{token}: the click. 302 to the link of that index in the message, whether or
 * not the click could be stored (the recipient must reach it; a failure is logged). */
void h_track_click(struct http_req *r, struct http_resp *w)
{
    struct buf url;
    struct err e = {0};
    int recorded = 0, rc;

    buf_init(&url);
    rc = tracker_click(r->app->tracker, req_store, r, r->params[0], http_header(r, "User-Agent"),
                       &url, &recorded, &e);
    if (rc == E_NOTFOUND) {
        not_found_page(w, "This link is not valid.");
    } else if (rc) {
        http_error_from(r, w, &e);
    } else if (url.len + 16 > sizeof w->extra_headers) {
        not_found_page(w, "This link is too long to follow.");
    } else {
        if (!recorded)
            log_warn("tracking", "request %s: a click could not be stored: %s", r->req_id, e.msg);
        w->status = 302;
        buf_reset(&w->body);
        snprintf(w->extra_headers, sizeof w->extra_headers,
                 "Location: %s\nReferrer-Policy: no-referrer\n", url.p);
    }
    buf_release(&url);
}

/* ---- the recipient's unsubscribe link: /u/{token} (no credentials, no cookies) -------- */

/* A small page: title, a line of text (escaped), and with form the one-click button. */
static void unsub_page(struct http_resp *w, int status, const char *title, const char *line,
                       const char *masked, int form)
{
    buf_reset(&w->body);
    w->status = status;
    w->content_type = "text/html; charset=utf-8";
    /* (every answer already says Cache-Control: no-store) */
    snprintf(w->extra_headers, sizeof w->extra_headers, "Referrer-Policy: no-referrer\n");
    buf_adds(&w->body, "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                       "<meta name=\"viewport\" content=\"width=device-width\"><title>");
    html_escape_append(&w->body, title);
    buf_adds(&w->body, "</title></head><body style=\"font-family:sans-serif;max-width:32em;"
                       "margin:3em auto;padding:0 1em\"><h1>");
    html_escape_append(&w->body, title);
    buf_adds(&w->body, "</h1><p>");
    html_escape_append(&w->body, line);
    if (masked) {
        buf_adds(&w->body, " <strong>");
        html_escape_append(&w->body, masked);
        buf_adds(&w->body, "</strong>");
    }
    buf_adds(&w->body, "</p>");
    if (form) /* the same URL; the body RFC 8058 names, so a mail client's POST is the same */
        buf_adds(&w->body, "<form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" "
                           "value=\"One-Click\"><button type=\"submit\">Unsubscribe</button>"
                           "</form>");
    buf_adds(&w->body, "</body></html>\n");
}

static void unsub_answer(struct http_req *r, struct http_resp *w, int apply)
{
    struct unsubscribe_view v;
    struct err e = {0};
    int rc = tracker_unsubscribe(r->app->tracker, r->st, r->params[0], apply, &v, &e);

    if (rc == E_NOTFOUND)
        unsub_page(w, 404, "Link not valid",
                   "This unsubscribe link is not valid. Use the link in the most recent "
                   "message you received.",
                   NULL, 0);
    else if (rc) { /* the store failed: the operator sees why, the recipient may retry */
        log_warn("unsubscribe", "request %s: %s", r->req_id, e.msg);
        unsub_page(w, 503, "Try again", "Your request could not be completed just now.", NULL, 0);
    } else if (v.subscribed)
        unsub_page(w, 200, "Unsubscribe", "Stop all marketing email to", v.email_masked, 1);
    else
        unsub_page(w, 200, "Unsubscribed", "No more marketing email will be sent to",
                   v.email_masked, 0);
}

/* GET: the page, with a button (works without JavaScript); nothing changes. */
void h_unsubscribe_get(struct http_req *r, struct http_resp *w)
{
    unsub_answer(r, w, 0);
}

/* POST with "List-Unsubscribe=One-Click" (RFC 8058: form-urlencoded or multipart, as a
 * mail client or the page's button sends it): unsubscribes at once, answers 200 (never a
 * redirect). Anything else is 400 and changes nothing. */
void h_unsubscribe_post(struct http_req *r, struct http_resp *w)
{
    const char *b = r->body ? r->body : "";
    size_t n = r->body ? r->body_len : 0;
    int one_click = memmem(b, n, "List-Unsubscribe=One-Click", 26) != NULL ||
                    (memmem(b, n, "name=\"List-Unsubscribe\"", 23) != NULL &&
                     memmem(b, n, "One-Click", 9) != NULL);

    if (!one_click) {
        unsub_page(w, 400, "Not understood",
                   "This is not a one-click unsubscribe request (RFC 8058): nothing was changed.",
                   NULL, 0);
        return;
    }
    unsub_answer(r, w, 1);
}

/* ---- provider webhooks: POST /webhooks/{name} ----------------------------------------- */

static const char *req_header(void *ctx, const char *name)
{
    return http_header(ctx, name);
}

void h_webhook(struct http_req *r, struct http_resp *w)
{
    struct webhook_request rq = {.name = r->params[0],
                                 .body = r->body ? r->body : "",
                                 .len = r->body ? r->body_len : 0,
                                 .header = req_header,
                                 .ctx = r};
    struct webhook_answer a;

    webhooks_receive(r->app->webhooks, r->st, &rq, &a);
    if (a.status != 200) {
        if (a.status == 401) /* what a client of HTTP Basic (Postmark) expects */
            snprintf(w->extra_headers, sizeof w->extra_headers,
                     "WWW-Authenticate: Basic realm=\"engage webhook\"\n");
        http_error(w, a.status, a.code, a.msg, "");
        return;
    }
    http_json(w, 200,
              json_pack("{s:I,s:I}", "stored", (json_int_t)a.id, "events", (json_int_t)a.events));
}

/* ---- analytics (analyst and above) ------------------------------------------------------ */

typedef int (*funnel_fn)(struct store *st, int64_t id, json_t **out, struct err *e);
typedef int (*series_fn)(struct store *st, int64_t id, const struct analytics_range *q,
                         json_t **out, struct err *e);

static void funnel(struct http_req *r, struct http_resp *w, const char *what, funnel_fn fn)
{
    json_t *out = NULL;
    struct err e = {0};
    int64_t id;
    int rc;

    if (http_only_params(r, w, " ") || route_id(r, w, what, &id))
        return;
    rc = fn(r->st, id, &out, &e); /* before out is read: argument order is unspecified */
    route_answer(r, w, rc, &e, NULL, "invalid", 200, out);
}

static int range_params(struct http_req *r, struct http_resp *w, struct analytics_range *q,
                        const char *allowed)
{
    if (http_only_params(r, w, allowed))
        return -1;
    q->bucket = http_query(r, "bucket");
    q->from = http_query(r, "from");
    q->to = http_query(r, "to");
    q->tz = http_query(r, "tz");
    return 0;
}

static void series(struct http_req *r, struct http_resp *w, const char *what, series_fn fn)
{
    struct analytics_range q;
    json_t *out = NULL;
    struct err e = {0};
    int64_t id;
    int rc;

    if (range_params(r, w, &q, " bucket from to tz ") || route_id(r, w, what, &id))
        return;
    rc = fn(r->st, id, &q, &out, &e);
    route_answer(r, w, rc, &e, NULL, "invalid_query", 200, out);
}

void h_campaign_funnel(struct http_req *r, struct http_resp *w)
{
    funnel(r, w, "campaign", analytics_campaign_funnel);
}

void h_run_funnel(struct http_req *r, struct http_resp *w)
{
    funnel(r, w, "campaign run", analytics_run_funnel);
}

void h_campaign_timeseries(struct http_req *r, struct http_resp *w)
{
    series(r, w, "campaign", analytics_campaign_timeseries);
}

void h_run_timeseries(struct http_req *r, struct http_resp *w)
{
    series(r, w, "campaign run", analytics_run_timeseries);
}

void h_analytics_overview(struct http_req *r, struct http_resp *w)
{
    struct analytics_range q;
    json_t *out = NULL;
    struct err e = {0};
    int rc;

    if (range_params(r, w, &q, " from to tz "))
        return;
    rc = analytics_overview(r->st, &q, &out, &e);
    route_answer(r, w, rc, &e, NULL, "invalid_query", 200, out);
}

void h_ops_queues(struct http_req *r, struct http_resp *w)
{
    json_t *out = NULL;
    struct err e = {0};
    int rc;

    if (http_only_params(r, w, " "))
        return;
    rc = analytics_queues(r->st, &out, &e);
    if (rc == 0)
        json_object_set_new(out, "tracking_journal",
                            json_pack("{s:I}", "pending_bytes",
                                      (json_int_t)tracker_pending_bytes(r->app->tracker)));
    route_answer(r, w, rc, &e, NULL, "invalid", 200, out);
}
