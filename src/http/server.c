/* http/server.c -- libmicrohttpd glue: body accumulation, auth, routing, responses.
 *
 * MHD calls the access handler several times per request: first with headers
 * only (we allocate the request state), then with body chunks (appended, capped
 * at max_body_bytes: past it the request is answered 413 without storing more),
 * and last with no data (we dispatch). The state is freed in the completion
 * callback, which also runs for aborted requests. */
#include "http.h"
#include "routes_int.h"
#include "guard.h"
#include "../core/jtree.h"
#include "../core/metrics.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sodium.h>
#include <errno.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_ROUTES 128
/* The statuses the API answers with; anything else counts as "other". */
static const int statuses[] = {200, 201, 202, 302, 400, 401, 403, 404,
                               405, 406, 409, 413, 422, 429, 500, 503};
#define NSTATUS ((int)(sizeof statuses / sizeof *statuses))
/* Time from a request's headers to its answer being queued, per route: Prometheus
 * histogram buckets (upper bounds in seconds). */
static const double dur_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1,   0.25,   0.5,   1,    2.5,   10};
#define NDUR ((int)(sizeof dur_bounds / sizeof *dur_bounds))
struct http_server {
    struct MHD_Daemon *d;
    struct app *app;
    struct http_guard *guard; /* deadlines and per-address limits (guard.c) */
    /* engage_http_requests_total by [route][status] and ..._duration_seconds by route
     * (the app's registry owns them; http_routes_count is "unmatched") */
    struct metric_series *hits[MAX_ROUTES + 1][NSTATUS + 1];
    struct metric_series *dur[MAX_ROUTES + 1];
};

/* A kept-alive connection is closed after this many requests (its last answer says
 * "Connection: close"): a client pipelining thousands and reading slowly holds its
 * thread for as long as those take. */
#define MAX_REQUESTS_PER_CONNECTION 1000

/* Per request, from the first call (headers) to completion. The route and the
 * caller are settled on the first call, so a request that will be refused never
 * has its body buffered. */
struct conn_state {
    struct buf body;
    int too_big;
    int route;        /* index in http_routes, or -1 */
    int early_status; /* refused before the body: 401, 403, 404, 405, 400 */
    char early_code[32], early_msg[200];
    char allow[64]; /* for 405: the methods the path takes */
    char params[4][256];
    struct principal who;
    int authenticated;
    double t0;       /* clock_mono_ms() when the headers came */
    size_t max_body; /* this request's body cap */
    int keyless;     /* counted in the keyless limits (addr below) */
    struct guard_addr addr;
};

/* Bulk connections: past this much body, their thread's nice value is raised by
 * BULK_NICE (CFS then gives it a third of a normal thread's share when both wait). */
#define BULK_BODY_BYTES (64 * 1024)
#define BULK_NICE 5
static __thread int bulk_thread;

static _Atomic uint64_t req_counter;

/* The arenas requests read their bodies into: a few kept warm between requests (no
 * megabyte malloc per batch), shared by all connections rather than one per thread, so
 * idle connections hold none whatever they sent (with a thread per connection, one
 * arena per thread held 2.4 MB for each idle connection that had sent one big body).
 * An arena that grew past ARENA_KEEP_BYTES for a huge request is given back. */
#define ARENA_KEEP 8
#define ARENA_KEEP_BYTES (8u << 20)
static pthread_mutex_t arenas_mu = PTHREAD_MUTEX_INITIALIZER;
static struct arena *arenas[ARENA_KEEP]; /* arenas_mu protects arenas, narenas */
static int narenas;

struct arena *http_arena_take(void)
{
    struct arena *a = NULL;

    pthread_mutex_lock(&arenas_mu);
    if (narenas)
        a = arenas[--narenas];
    pthread_mutex_unlock(&arenas_mu);
    if (a == NULL) {
        a = xmalloc(sizeof *a);
        arena_init(a);
    }
    arena_reset(a);
    return a;
}

void http_arena_give(struct arena *a)
{
    if (arena_size(a) <= ARENA_KEEP_BYTES) {
        pthread_mutex_lock(&arenas_mu);
        if (narenas < ARENA_KEEP) {
            arenas[narenas++] = a;
            a = NULL;
        }
        pthread_mutex_unlock(&arenas_mu);
    }
    if (a) {
        arena_release(a);
        free(a);
    }
}

static void arenas_cleanup(void)
{
    pthread_mutex_lock(&arenas_mu);
    while (narenas) {
        arena_release(arenas[--narenas]);
        free(arenas[narenas]);
    }
    pthread_mutex_unlock(&arenas_mu);
}

void http_json(struct http_resp *w, int status, json_t *body)
{
    char *s = body ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;

    if (s == NULL) {
        /* A value jansson refused (never expected: text is sanitised on the way in). */
        json_decref(body);
        w->status = 500;
        buf_reset(&w->body);
        buf_adds(&w->body, "{\"error\":{\"code\":\"internal\",\"message\":\"the response "
                           "could not be encoded\"}}\n");
        w->content_type = "application/json";
        return;
    }
    w->status = status;
    buf_reset(&w->body);
    buf_adds(&w->body, s);
    buf_addc(&w->body, '\n');
    w->content_type = "application/json";
    free(s);
    json_decref(body);
}

void http_error(struct http_resp *w, int status, const char *code, const char *message,
                const char *path)
{
    json_t *err = json_pack("{s:s,s:s}", "code", code, "message", message);

    if (path)
        json_object_set_new(err, "path", json_string(path));
    http_json(w, status, json_pack("{s:o}", "error", err));
}

void http_error_list(struct http_resp *w, int status, const char *code, const char *message,
                     const struct errlist *errs)
{
    json_t *details = json_array();
    json_t *err;
    int i;

    for (i = 0; i < errs->n; i++)
        json_array_append_new(details, json_pack("{s:s,s:s}", "path", errs->items[i].path,
                                                 "message", errs->items[i].msg));
    err = json_pack("{s:s,s:s,s:s,s:o}", "code", code, "message", message, "path",
                    errs->n ? errs->items[0].path : "", "details", details);
    http_json(w, status, json_pack("{s:o}", "error", err));
}

void http_error_from(struct http_req *r, struct http_resp *w, const struct err *e)
{
    static const struct {
        int code, status;
        const char *name;
    } map[] = {
        {E_INVAL, 400, "invalid"},       {E_NOTFOUND, 404, "not_found"},
        {E_CONFLICT, 409, "conflict"},   {E_TOOBIG, 413, "too_large"},
        {E_BUSY, 503, "busy"},           {E_AUTH, 401, "unauthorized"},
        {E_FORBIDDEN, 403, "forbidden"},
    };
    size_t i;

    for (i = 0; i < sizeof map / sizeof *map; i++) {
        if (map[i].code == e->code) {
            http_error(w, map[i].status, map[i].name, e->msg, e->field[0] ? e->field : NULL);
            if (map[i].status == 503)
                snprintf(w->extra_headers, sizeof w->extra_headers, "Retry-After: 1\n");
            return;
        }
    }
    log_write(LOG_ERROR, "http", r->req_id, "%s %s: %s (%s:%d)", r->method, r->path, e->msg,
              e->file ? e->file : "?", e->line);
    http_error(w, 500, "internal", "internal error; see the server log for this request id", NULL);
}

int http_only_params(struct http_req *r, struct http_resp *w, const char *allowed)
{
    const char *bad = http_unknown_query(r, allowed);
    const char *p = allowed;
    struct buf names;
    size_t n;
    char msg[300];

    if (bad == NULL)
        return 0;
    /* " limit cursor " is listed as "limit, cursor"; "" and " " as none. */
    buf_init(&names);
    while (*p) {
        while (*p == ' ')
            p++;
        n = strcspn(p, " ");
        if (n) {
            if (names.len)
                buf_adds(&names, ", ");
            buf_add(&names, p, n);
        }
        p += n;
    }
    /* Names are valid UTF-8 here (dispatch refuses others); cut on a character. */
    snprintf(msg, sizeof msg, "unknown query parameter \"%.*s%s\" (this route takes %s)",
             (int)utf8_prefix(bad, strlen(bad), 60), bad, strlen(bad) > 60 ? "..." : "",
             names.len ? names.p : "none");
    buf_release(&names);
    http_error(w, 400, "invalid_parameter", msg, bad);
    return -1;
}

int http_page_params(struct http_req *r, struct http_resp *w, int *limit, int64_t *cursor)
{
    const char *v;
    int64_t n;

    *limit = 100;
    *cursor = 0;
    if ((v = http_query(r, "limit"))) {
        if (parse_i64(v, strlen(v), &n) || n < 1 || n > 1000) {
            http_error(w, 400, "invalid_parameter", "limit must be an integer from 1 to 1000",
                       "limit");
            return -1;
        }
        *limit = (int)n;
    }
    if ((v = http_query(r, "cursor"))) {
        if (parse_i64(v, strlen(v), cursor) || *cursor < 0) {
            http_error(w, 400, "invalid_parameter", "cursor is not one this API gave", "cursor");
            return -1;
        }
    }
    return 0;
}

json_t *http_page_json(json_t *items, int64_t next_cursor)
{
    return json_pack("{s:o,s:o}", "items", items, "next_cursor",
                     next_cursor ? json_sprintf("%lld", (long long)next_cursor) : json_null());
}

const char *http_query(struct http_req *r, const char *name)
{
    return MHD_lookup_connection_value((struct MHD_Connection *)r->conn, MHD_GET_ARGUMENT_KIND,
                                       name);
}

struct unknown_q {
    const char *allowed;
    const char *bad;
};

static enum MHD_Result check_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    struct unknown_q *u = cls;
    char pat[80];

    (void)kind;
    (void)value;
    snprintf(pat, sizeof pat, " %.70s ", key);
    if (strstr(u->allowed, pat) == NULL) {
        u->bad = key;
        return MHD_NO; /* stop at the first */
    }
    return MHD_YES;
}

const char *http_unknown_query(struct http_req *r, const char *allowed)
{
    struct unknown_q u = {allowed, NULL};

    MHD_get_connection_values((struct MHD_Connection *)r->conn, MHD_GET_ARGUMENT_KIND, check_arg,
                              &u);
    return u.bad;
}

const char *http_header(struct http_req *r, const char *name)
{
    return MHD_lookup_connection_value((struct MHD_Connection *)r->conn, MHD_HEADER_KIND, name);
}

struct store *http_store(struct http_req *r)
{
    if (r->st == NULL)
        r->st = store_pool_get(r->app->pool);
    return r->st;
}

void http_store_release(struct http_req *r)
{
    if (r->st)
        store_pool_put(r->app->pool, r->st);
    r->st = NULL;
}

/* Answers a jt_parse_limited failure: 413 past a limit (at the list's pointer when the
 * list was too long), else 400. */
void http_json_error(struct http_resp *w, int rc, const struct jt_error *je, const char *items_key)
{
    char msg[300], path[80];

    if (rc == E_TOOBIG) {
        snprintf(msg, sizeof msg, "%s (reading stopped at line %d, column %d)", je->text, je->line,
                 je->column);
        snprintf(path, sizeof path, "/%s", items_key ? items_key : "");
        http_error(w, 413, "too_large", msg, items_key && je->text[0] == '"' ? path : NULL);
        return;
    }
    snprintf(msg, sizeof msg, "body is not valid JSON: %s (line %d, column %d)", je->text, je->line,
             je->column);
    http_error(w, 400, "invalid_json", msg, NULL);
}

json_t *http_body_json_capped(struct http_req *r, struct http_resp *w, size_t max_items,
                              const char *items_key)
{
    struct jt_limits lim = {.max_values = (size_t)r->app->cfg->max_json_values,
                            .max_items = max_items,
                            .items_key = items_key};
    struct arena *a;
    struct jt_error je;
    struct jt *root;
    json_t *j = NULL;
    int rc;

    if (r->body_len == 0) {
        http_error(w, 400, "invalid_json", "the request needs a JSON body", NULL);
        return NULL;
    }
    /* Read by core/jtree.c, counting values as it goes: a body of a million empty
     * objects stops at the limit instead of becoming a million jansson objects first. */
    a = http_arena_take();
    rc = jt_parse_limited(a, r->body, r->body_len, &lim, &root, &je);
    if (rc == 0 && (j = jt_json_unique(root, r->body, &je)) == NULL)
        rc = E_INVAL;
    if (rc)
        http_json_error(w, rc, &je, items_key);
    http_arena_give(a);
    return j;
}

json_t *http_body_json(struct http_req *r, struct http_resp *w)
{
    return http_body_json_capped(r, w, 0, NULL);
}

/* Registers the request counters and durations, a series for every route (and
 * "unmatched") made now: a request only bumps atomics. */
static void request_metrics(struct http_server *s, struct metrics *m)
{
    static const struct metric_def hits_def = {.name = "engage_http_requests_total",
                                               .help = "HTTP requests by route and status.",
                                               .type = METRIC_COUNTER,
                                               .labels = "route,code",
                                               .flags = METRIC_HIDE_ZERO};
    static const struct metric_def dur_def = {
        .name = "engage_http_request_duration_seconds",
        .help = "Time from a request's headers to its answer, by route.",
        .type = METRIC_HISTOGRAM,
        .labels = "route",
        .buckets = dur_bounds,
        .nbuckets = NDUR,
        .flags = METRIC_HIDE_ZERO};
    struct metric *hits = metrics_add(m, &hits_def), *dur = metrics_add(m, &dur_def);
    int i, k;

    for (i = 0; i <= http_routes_count && i <= MAX_ROUTES; i++) {
        const char *name = i < http_routes_count ? http_routes[i].name : "unmatched";
        for (k = 0; k <= NSTATUS; k++) {
            char code[16];
            const char *values[] = {name, code};
            if (k < NSTATUS)
                snprintf(code, sizeof code, "%d", statuses[k]);
            else
                snprintf(code, sizeof code, "other");
            s->hits[i][k] = metric_series(hits, values);
        }
    }
    for (i = 0; i <= http_routes_count && i <= MAX_ROUTES; i++) {
        const char *values[] = {i < http_routes_count ? http_routes[i].name : "unmatched"};
        s->dur[i] = metric_series(dur, values);
    }
}

/* Matches path against pattern; {x} segments are captured into params. */
static int match(const char *pattern, const char *path, char params[4][256])
{
    int np = 0;

    while (*pattern && *path) {
        if (*pattern == '{') {
            const char *pe = strchr(pattern, '}');
            size_t n = strcspn(path, "/");
            if (pe == NULL || n == 0 || n >= 256 || np == 4)
                return 0;
            memcpy(params[np], path, n);
            params[np][n] = '\0';
            np++;
            pattern = pe + 1;
            path += n;
            continue;
        }
        if (*pattern != *path)
            return 0;
        pattern++;
        path++;
    }
    return *pattern == '\0' && *path == '\0';
}

static void refuse(struct conn_state *cs, int status, const char *code, const char *msg)
{
    cs->early_status = status;
    snprintf(cs->early_code, sizeof cs->early_code, "%s", code);
    snprintf(cs->early_msg, sizeof cs->early_msg, "%s", msg);
}

/* The user name of a Basic credential (base64 of "user:password"). */
static int basic_user(const char *b64, char *out, size_t cap)
{
    unsigned char raw[384];
    size_t n = 0;
    char *colon;

    while (*b64 == ' ')
        b64++;
    if (sodium_base642bin(raw, sizeof raw - 1, b64, strlen(b64), " ", &n, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        n == 0)
        return -1;
    raw[n] = '\0';
    colon = strchr((char *)raw, ':');
    if (colon)
        *colon = '\0';
    if (strlen((char *)raw) >= cap || raw[0] == '\0')
        return -1;
    snprintf(out, cap, "%s", (char *)raw);
    return 0;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct http_server *s = cls;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
        guard_conn_started(s->guard, c, socket_context);
    else
        guard_conn_closed(s->guard, socket_context);
}

/* Called once a request's first line is in. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    struct http_server *s = cls;

    (void)uri;
    guard_request_line(s->guard, c);
    return NULL; /* *con_cls stays NULL until on_request's first call */
}

/* First call: find the route, authenticate, check the role. */
static void settle(struct http_server *s, struct MHD_Connection *c, const char *method,
                   const char *url, struct conn_state *cs)
{
    const char *h;
    int i, k, path_matched = 0;

    cs->route = -1;
    for (i = 0; i < http_routes_count; i++) {
        char params[4][256];
        memset(params, 0, sizeof params);
        if (!match(http_routes[i].pattern, url, params))
            continue;
        path_matched = 1;
        if (strcmp(http_routes[i].method, method) == 0) {
            cs->route = i;
            memcpy(cs->params, params, sizeof params);
            break;
        }
        if (strlen(cs->allow) + strlen(http_routes[i].method) + 3 < sizeof cs->allow)
            snprintf(cs->allow + strlen(cs->allow), sizeof cs->allow - strlen(cs->allow), "%s%s",
                     cs->allow[0] ? ", " : "", http_routes[i].method);
    }
    if (cs->route < 0) {
        if (path_matched)
            refuse(cs, 405, "method_not_allowed", "this path does not take that method");
        else
            refuse(cs, 404, "not_found", "no such route");
        return;
    }
    for (k = 0; k < 4; k++) {
        if (!utf8_valid(cs->params[k], strlen(cs->params[k]))) {
            refuse(cs, 400, "invalid_path", "a path segment is not valid UTF-8");
            return;
        }
    }
    if (http_routes[cs->route].flags & ROUTE_TRACKING)
        cs->max_body =
            strcmp(cs->params[0], "batch") == 0 ? HTTP_TRACK_MAX_BATCH : HTTP_TRACK_MAX_MESSAGE;
    if (http_routes[cs->route].roles == 0)
        return;
    h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (h == NULL && (http_routes[cs->route].flags & ROUTE_TRACKING)) {
        /* "writeKey" in the body: the handler checks it once the body is in, so until
         * then such requests are limited per address (their body cap is small). */
        if (guard_keyless_take(s->guard, c, &cs->addr)) {
            refuse(cs, 429, "busy",
                   "too many tracking requests without a key under way from "
                   "this address: send the write key in the Authorization "
                   "header (Basic user name), or retry");
            return;
        }
        cs->keyless = 1;
        return;
    }
    if (h == NULL) {
        refuse(cs, 401, "unauthorized",
               "this route needs an API key: send 'Authorization: Bearer KEY'");
        return;
    }
    {
        char key[256];
        struct store *st;
        struct err e = {0};
        int rc;
        if (strncasecmp(h, "Bearer ", 7) == 0) {
            snprintf(key, sizeof key, "%s", h + 7);
        } else if ((http_routes[cs->route].flags & ROUTE_TRACKING) &&
                   strncasecmp(h, "Basic ", 6) == 0 && basic_user(h + 6, key, sizeof key) == 0) {
            /* the write key is the user name; the password is empty */
        } else {
            refuse(cs, 401, "unauthorized",
                   http_routes[cs->route].flags & ROUTE_TRACKING
                       ? "send the write key as the Basic user name (empty password)"
                       : "use 'Authorization: Bearer KEY'");
            return;
        }
        /* A key seen in the last seconds needs no store connection (the pool's may
         * all be lent out to slower requests). */
        if (auth_apikey_cached(key, &cs->who)) {
            rc = 0;
        } else {
            st = store_pool_get(s->app->pool);
            rc = auth_apikey_verify(st, key, &cs->who, &e);
            store_pool_put(s->app->pool, st);
        }
        if (rc == E_AUTH) {
            refuse(cs, 401, "unauthorized", e.msg);
            return;
        }
        if (rc) {
            log_error("http", "authentication failed: %s", e.msg);
            refuse(cs, 503, "busy", "the server cannot check credentials right now");
            return;
        }
    }
    cs->authenticated = 1;
    if (!(http_routes[cs->route].roles & (unsigned)cs->who.role)) {
        char msg[200];
        snprintf(msg, sizeof msg, "role %s may not call %s %s", role_name(cs->who.role),
                 http_routes[cs->route].method, http_routes[cs->route].pattern);
        refuse(cs, 403, "forbidden", msg);
    }
}

static enum MHD_Result check_utf8(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    int *bad = cls;

    (void)kind;
    if (!utf8_valid(key, strlen(key)) || (value && !utf8_valid(value, strlen(value)))) {
        *bad = 1;
        return MHD_NO;
    }
    return MHD_YES;
}

/* 1 if every query parameter's name and value is valid UTF-8 (MHD has decoded %XX):
 * handlers may then put them into JSON answers and messages. */
static int query_utf8(struct MHD_Connection *c)
{
    int bad = 0;

    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, check_utf8, &bad);
    return !bad;
}

static void dispatch(struct http_server *s, struct conn_state *cs, struct http_req *r,
                     struct http_resp *w, int *route_ix)
{
    *route_ix = cs->route >= 0 ? cs->route : http_routes_count;
    if (cs->early_status) {
        http_error(w, cs->early_status, cs->early_code, cs->early_msg, NULL);
        if (cs->early_status == 503)
            snprintf(w->extra_headers, sizeof w->extra_headers, "Retry-After: 1\n");
        else if (cs->early_status == 401)
            snprintf(w->extra_headers, sizeof w->extra_headers,
                     "WWW-Authenticate: Bearer realm=\"engage\"\n");
        else if (cs->early_status == 405)
            snprintf(w->extra_headers, sizeof w->extra_headers, "Allow: %s\n", cs->allow);
        else if (cs->early_status == 429)
            snprintf(w->extra_headers, sizeof w->extra_headers, "Retry-After: 1\n");
        return;
    }
    if (!query_utf8((struct MHD_Connection *)r->conn)) {
        http_error(w, 400, "invalid_parameter",
                   "a query parameter's name or value is not "
                   "valid UTF-8 (after %-decoding)",
                   NULL);
        return;
    }
    memcpy(r->params, cs->params, sizeof r->params);
    r->who = cs->who;
    r->authenticated = cs->authenticated;
    r->st = http_routes[cs->route].flags & ROUTE_LAZY_STORE ? NULL : store_pool_get(s->app->pool);
    http_routes[cs->route].fn(r, w);
    http_store_release(r);
}

/* Answers the request: the route's handler, or the refusal settled on the first call. */
static enum MHD_Result answer(struct http_server *s, struct MHD_Connection *c,
                              struct conn_state *cs, const char *url, const char *method)
{
    struct http_req r;
    struct http_resp w;
    struct MHD_Response *resp;
    enum MHD_Result ret;
    int route_ix = http_routes_count;

    guard_phase(s->guard, c, GUARD_BUSY);
    memset(&r, 0, sizeof r);
    memset(&w, 0, sizeof w);
    buf_init(&w.body);
    r.app = s->app;
    r.method = method;
    r.path = url;
    r.conn = c;
    r.body = cs->body.p ? cs->body.p : "";
    r.body_len = cs->body.len;
    snprintf(r.req_id, sizeof r.req_id, "r%llx-%llu",
             (unsigned long long)(s->app->started_at / 1000),
             (unsigned long long)atomic_fetch_add(&req_counter, 1) + 1);
    if (cs->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "the body is larger than %zu bytes%s", cs->max_body,
                 cs->max_body < (size_t)s->app->cfg->max_body_bytes ? " (this route's limit)" : "");
        http_error(&w, 413, "too_large", msg, NULL);
    } else {
        dispatch(s, cs, &r, &w, &route_ix);
    }
    if (w.status == 0)
        http_error(&w, 500, "internal", "the handler gave no response", NULL);
    if (route_ix <= MAX_ROUTES) {
        double secs = (clock_mono_ms() - cs->t0) / 1000;
        int k;
        for (k = 0; k < NSTATUS && statuses[k] != w.status; k++)
            ;
        metric_add(s->hits[route_ix][k], 1);
        metric_observe(s->dur[route_ix], secs);
    }
    resp = MHD_create_response_from_buffer(w.body.len, w.body.p ? w.body.p : (char *)"",
                                           MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(resp, "Content-Type",
                            w.content_type ? w.content_type : "application/json");
    MHD_add_response_header(resp, "X-Request-Id", r.req_id);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (w.extra_headers[0]) {
        char *line = w.extra_headers, *nl;
        while ((nl = strchr(line, '\n')) != NULL) {
            char *colon = strchr(line, ':');
            *nl = '\0';
            if (colon && colon < nl) {
                *colon = '\0';
                MHD_add_response_header(resp, line, colon + 2);
            }
            line = nl + 1;
        }
    }
    if (guard_requests(s->guard, c) >= MAX_REQUESTS_PER_CONNECTION)
        MHD_add_response_header(resp, "Connection", "close");
    ret = MHD_queue_response(c, (unsigned)w.status, resp);
    MHD_destroy_response(resp);
    guard_phase(s->guard, c, GUARD_WRITE); /* the answer must be taken in time too */
    if (w.status >= 500 || log_level_current >= LOG_DEBUG)
        log_write(w.status >= 500 ? LOG_WARN : LOG_DEBUG, "http", r.req_id, "%s %s -> %d", method,
                  url, w.status);
    buf_release(&w.body);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    struct http_server *s = cls;
    struct conn_state *cs = *con_cls;

    (void)version;
    if (cs == NULL) {
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        cs = xcalloc(1, sizeof *cs);
        cs->t0 = clock_mono_ms();
        buf_init(&cs->body);
        *con_cls = cs;
        /* Cap before allocating: a declared length over the limit is refused at once. */
        cs->max_body = (size_t)s->app->cfg->max_body_bytes;
        settle(s, c, method, url, cs);
        /* A body whose key is inside it gets the headers' short deadline. */
        guard_phase(s->guard, c, cs->keyless ? GUARD_KEYLESS_BODY : GUARD_BODY);
        if (cl && strtoull(cl, NULL, 10) > cs->max_body)
            cs->too_big = 1;
        /* A refused request's body is still read (and dropped, within body_timeout_s)
         * before the answer: answered early, the connection would close under a client
         * still sending, which then sees a broken pipe instead of the answer, and retries. */
        return MHD_YES;
    }
    if (*upload_size) {
        /* A refused request's body is read and dropped, never stored. */
        if (!cs->too_big && !cs->early_status && cs->body.len + *upload_size > cs->max_body) {
            cs->too_big = 1;
            buf_release(&cs->body);
        }
        if (!cs->too_big && !cs->early_status)
            buf_add(&cs->body, upload, *upload_size);
        /* A connection sending big bodies (batches of events) is bulk work: its thread
         * runs at a lower CPU priority from then on, so single calls on other
         * connections are not kept waiting behind it. Only with a thread per
         * connection: a pool thread serves others too. */
        if (cs->body.len > BULK_BODY_BYTES && !bulk_thread && s->app->cfg->http_threads == 0) {
            bulk_thread = 1;
            if (setpriority(PRIO_PROCESS, (id_t)gettid(), BULK_NICE) != 0)
                log_warn("http", "cannot lower a bulk connection's priority: %s", strerror(errno));
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return answer(s, c, cs, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_server *s = cls;
    struct conn_state *cs = *con_cls;

    (void)toe;
    guard_phase(s->guard, c, GUARD_IDLE);
    if (cs) {
        if (cs->keyless)
            guard_keyless_give(s->guard, &cs->addr);
        buf_release(&cs->body);
        free(cs);
        *con_cls = NULL;
    }
}

/* libmicrohttpd's own messages, as JSON log lines. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;

    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    utf8_sanitize(msg);
    log_write(LOG_WARN, "http", NULL, "libmicrohttpd: %s", msg);
}

int http_listen(const struct config *cfg, int *fd, int *port, struct err *e)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    char host[256];
    int p, one = 1, sfd;

    *fd = -1;
    if (config_parse_listen(cfg->listen, host, sizeof host, &p))
        return ERR(e, E_INVAL, "listen: expected ADDR:PORT, got \"%s\"", cfg->listen);
    memset(&ss, 0, sizeof ss);
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        ((struct sockaddr_in *)&ss)->sin_family = AF_INET;
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)p);
        sslen = sizeof(struct sockaddr_in);
    } else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
        ((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)p);
        sslen = sizeof(struct sockaddr_in6);
    } else {
        return ERR(e, E_INVAL, "listen: \"%s\" is not an IP address", host);
    }
    sfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sfd < 0)
        return ERR(e, E_IO, "cannot listen on %s: %s", cfg->listen, strerror(errno));
    setsockopt(sfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6)
        setsockopt(sfd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(sfd, (struct sockaddr *)&ss, sslen) != 0 || listen(sfd, 511) != 0) {
        int err = errno;
        close(sfd);
        return ERR(e, E_IO, "cannot listen on %s: %s%s", cfg->listen, strerror(err),
                   err == EADDRINUSE ? " (another engage serve, or another program, has that "
                                       "port: stop it or pass --listen ADDR:PORT)"
                                     : "");
    }
    sslen = sizeof ss;
    if (getsockname(sfd, (struct sockaddr *)&ss, &sslen) == 0)
        p = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                           : ((struct sockaddr_in *)&ss)->sin_port);
    *fd = sfd;
    *port = p;
    return 0;
}

int http_start(struct http_server **out, struct app *app, int fd, struct err *e)
{
    struct http_server *s;
    const struct config *cfg = app->cfg;
    /* libmicrohttpd's own (idle) timeout only as a backstop: the guard's deadlines come
     * first, with a 408 where one is due. */
    unsigned backstop =
        (unsigned)(cfg->header_timeout_s > cfg->body_timeout_s ? cfg->header_timeout_s
                                                               : cfg->body_timeout_s);
    int rc;

    if (backstop < (unsigned)cfg->idle_timeout_s)
        backstop = (unsigned)cfg->idle_timeout_s;
    s = xcalloc(1, sizeof *s);
    s->app = app;
    if ((rc = guard_new(&s->guard, cfg, app->workers, e))) {
        free(s);
        close(fd);
        return rc;
    }
    request_metrics(s, app->metrics);
    guard_metrics(s->guard, app->metrics);
    /* http_threads 0: a thread per connection, so that a request waiting (for the
     * ingest writer, a segment evaluation) never holds up another connection's; else
     * a pool of that many threads, each polling its share of the connections. */
    {
        /* The pool size only with a pool (MHD warns about a zero one). */
        struct MHD_OptionItem pool[] = {
            {MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)cfg->http_threads, NULL},
            {MHD_OPTION_END, 0, NULL},
        };
        s->d = MHD_start_daemon(
            MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
                (cfg->http_threads ? MHD_USE_EPOLL : MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL),
            0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
            NULL, /* first, or MHD warns */
            MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_ARRAY,
            cfg->http_threads ? pool : pool + 1, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
            MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
            MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
            MHD_OPTION_CONNECTION_TIMEOUT, backstop + 5, MHD_OPTION_END);
    }
    if (s->d == NULL) {
        /* fd not closed here: libmicrohttpd closes it on most of its failure paths. */
        http_stop(s);
        return ERR(e, E_IO, "cannot serve on %s (libmicrohttpd refused to start: see the log)",
                   cfg->listen);
    }
    *out = s;
    return 0;
}

void http_stop(struct http_server *s)
{
    if (s == NULL)
        return;
    if (s->d)
        MHD_stop_daemon(s->d); /* closes every connection, and the listening socket */
    guard_free(s->guard);
    arenas_cleanup();
    free(s);
}
