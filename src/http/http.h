/* http/http.h -- the HTTP server: libmicrohttpd glue, router, JSON errors.
 *
 * DESIGN: routes are data (routes.c: method, pattern, allowed roles, handler).
 * The server accumulates the body (capped before allocation), authenticates the
 * caller, checks the route's roles, takes a store connection from the pool and
 * calls the handler, which fills a response. Handlers never see libmicrohttpd;
 * they call domain modules, which call the store. */
#ifndef ENGAGE_HTTP_H
#define ENGAGE_HTTP_H

#include <jansson.h>

#include "../app.h"
#include "../auth/auth.h"
#include "../core/config.h"
#include "../core/map.h"
#include "../store/store.h"

struct app; /* app.h: what handlers reach (the config, the pool, the modules) */

struct http_req {
    struct app *app;
    const char *method, *path;
    const char *query; /* raw query string or NULL (MHD gives args separately) */
    void *conn;        /* opaque: for http_query() */
    char req_id[24];
    const char *body;
    size_t body_len;
    struct principal who;
    int authenticated;
    char params[4][256]; /* {name} segments of the route, in order */
    struct store *st;    /* a pooled connection for the handler */
};

struct http_resp {
    int status;
    struct buf body;
    const char *content_type;
    char extra_headers[4096]; /* "Name: value\n" lines (a redirect's Location too) */
};

typedef void (*http_handler)(struct http_req *r, struct http_resp *w);

struct route {
    const char *method, *pattern;
    unsigned roles; /* 0 = public (no credentials) */
    http_handler fn;
    const char *name; /* for metrics and docs */
    unsigned flags;
};
/* The tracking API's authentication: the write key as the Basic user (empty password)
 * or Bearer, or else "writeKey" in the body, which the domain call checks
 * (ingest_track_request) once the body is in. */
#define ROUTE_TRACKING 1u
/* The handler takes a store connection only when it needs one (http_store): ingestion
 * parses and maps first, and mostly needs none. */
#define ROUTE_LAZY_STORE 2u

extern const struct route http_routes[];
extern const int http_routes_count;

/* Tracking bodies, as sent and inflated: one message, and a /v1/batch. */
#define HTTP_TRACK_MAX_MESSAGE (32 * 1024)
#define HTTP_TRACK_MAX_BATCH (500 * 1024)

struct http_server;
/* Binds and listens on cfg->listen (port 0 picks one): *fd, and the bound *port. Done
 * first, before anything slow, so a port in use is said at once, naming the address. */
int http_listen(const struct config *cfg, int *fd, int *port, struct err *e);
/* Serves on the listening socket fd (taken over: closed by http_stop). Registers the
 * request counters and durations and the connection guard's figures in app->metrics;
 * the guard's reaper is a worker of app->workers. */
int http_start(struct http_server **out, struct app *app, int fd, struct err *e);
void http_stop(struct http_server *s);

/* Response helpers. */
void http_json(struct http_resp *w, int status, json_t *body); /* steals body */
void http_error(struct http_resp *w, int status, const char *code, const char *message,
                const char *path);
/* 422 with every problem in details. */
void http_error_list(struct http_resp *w, int status, const char *code, const char *message,
                     const struct errlist *errs);
/* Maps an E_* code to status + error code, logging 5xx with the cause. */
void http_error_from(struct http_req *r, struct http_resp *w, const struct err *e);
/* A request header or NULL. */
const char *http_header(struct http_req *r, const char *name);
/* Gives the request's pooled store connection back before the handler ends (one about
 * to wait long, for the ingest writer say, and needing the store no more). */
void http_store_release(struct http_req *r);
/* The request's pooled store connection, taken now if the route is ROUTE_LAZY_STORE. */
struct store *http_store(struct http_req *r);
/* A query parameter or NULL. */
const char *http_query(struct http_req *r, const char *name);
/* The first query parameter whose name is not in allowed (" a b c "), or NULL. */
const char *http_unknown_query(struct http_req *r, const char *allowed);
/* Answers 400 naming a query parameter not in allowed (" a b c "); -1 then, else 0. */
int http_only_params(struct http_req *r, struct http_resp *w, const char *allowed);
/* ?limit= (1..1000, default 100) and ?cursor= (an integer this API gave); 400 and -1
 * on a bad one. */
int http_page_params(struct http_req *r, struct http_resp *w, int *limit, int64_t *cursor);
/* {"items": items, "next_cursor": "N" | null}; steals items. */
json_t *http_page_json(json_t *items, int64_t next_cursor);
/* Parses the body as a JSON object/array (duplicate keys refused), reading at most
 * [server] max_json_values values; on failure answers 400 (not JSON) or 413 (past the
 * limit) and returns NULL. */
json_t *http_body_json(struct http_req *r, struct http_resp *w);
/* The same, and at most max_items items in the list that is the top object's member
 * items_key (413 at its pointer past it, before the rest is read). */
json_t *http_body_json_capped(struct http_req *r, struct http_resp *w, size_t max_items,
                              const char *items_key);
struct jt_error;
/* Answers a core/jtree.c reading failure rc: 413 past a limit, else 400. */
void http_json_error(struct http_resp *w, int rc, const struct jt_error *je, const char *items_key);
/* Arenas to read bodies into, kept warm between requests; give back what you take. */
struct arena *http_arena_take(void);
void http_arena_give(struct arena *a);

#endif
