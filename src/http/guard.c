/* http/guard.c -- the connection guard (guard.h).
 *
 * DESIGN: every connection has a struct conn_track, hung on libmicrohttpd's socket
 * context when it starts and kept on one list; a phase change sets the deadline. The
 * reaper wakes four times a second (a monotonic clock, so a clock stepped back does
 * not suspend deadlines: a worker, core/worker.h), and for each connection past its deadline sends
 * a 408 if a request was under way and shuts the socket down; libmicrohttpd then reads end-of-file
 * and closes the connection. libmicrohttpd's CLOSED notification comes before it closes the
 * descriptor and removes the entry under mu, so a descriptor is only ever shut down while it is
 * still the connection's. Connections and keyless requests are counted per address in two small
 * hash tables (open addressing, linear probes, entries moved back on removal: no tombstones), sized
 * for twice the most there can be. */
#include "guard.h"

#include "../core/metrics.h"
#include "../core/worker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

struct conn_track {
    struct conn_track *prev, *next; /* on the guard's list */
    int fd;
    enum guard_phase phase;
    double deadline; /* clock_mono_ms(); 0: none */
    int requests;    /* begun on this connection */
    int reaped;      /* shut down by the reaper or the address limit */
    struct guard_addr addr;
};

struct http_guard {
    const struct config *cfg;
    pthread_mutex_t mu;      /* protects everything below */
    struct conn_track conns; /* list head */
    int nconns, nkeyless;
    struct guard_table by_addr; /* open connections per address */
    struct guard_table keyless; /* keyless tracking requests in flight per address */
    struct worker *reaper;
    char answer408[256];
    int n408;
};

static const char *const phase_names[] = {"headers", "body", "body", "busy", "write", "idle"};
static _Atomic uint64_t timeouts[GUARD_IDLE + 1]; /* by phase */
static _Atomic uint64_t refused_per_ip, refused_keyless;

/* ---- addresses ------------------------------------------------------------------------ */

void guard_addr_of(const struct sockaddr *sa, struct guard_addr *out)
{
    static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    memset(out, 0, sizeof *out);
    if (sa && sa->sa_family == AF_INET) {
        memcpy(out->b, v4mapped, 12);
        memcpy(out->b + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    } else if (sa && sa->sa_family == AF_INET6) {
        memcpy(out->b, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        if (memcmp(out->b, v4mapped, 12) != 0)
            memset(out->b + 8, 0, 8); /* an IPv6 host is its /64 */
    }
}

static void addr_of(struct MHD_Connection *c, struct guard_addr *out)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

    guard_addr_of(ci ? ci->client_addr : NULL, out);
}

void guard_table_init(struct guard_table *t, size_t most)
{
    size_t cap = 16;

    while (cap < 2 * most)
        cap *= 2;
    t->slots = xcalloc(cap, sizeof *t->slots);
    t->mask = cap - 1;
}

void guard_table_release(struct guard_table *t)
{
    free(t->slots);
    t->slots = NULL;
}

static size_t slot_of(const struct guard_table *t, const struct guard_addr *a)
{
    return (size_t)hash64(a->b, sizeof a->b) & t->mask;
}

struct guard_count *guard_table_find(struct guard_table *t, const struct guard_addr *a)
{
    size_t i = slot_of(t, a);

    while (t->slots[i].n && memcmp(&t->slots[i].a, a, sizeof *a) != 0)
        i = (i + 1) & t->mask;
    return &t->slots[i];
}

void guard_table_drop(struct guard_table *t, const struct guard_addr *a)
{
    struct guard_count *e = guard_table_find(t, a);
    size_t hole, i;

    if (e->n == 0 || --e->n > 0)
        return;
    /* The slot is free: close up the probe run behind it, each entry moved back into
     * the hole when its home slot is not in (hole, i], cyclically. */
    hole = (size_t)(e - t->slots);
    for (i = (hole + 1) & t->mask; t->slots[i].n; i = (i + 1) & t->mask) {
        size_t home = slot_of(t, &t->slots[i].a);
        if (((i - home) & t->mask) >= ((i - hole) & t->mask)) {
            t->slots[hole] = t->slots[i];
            t->slots[i].n = 0;
            hole = i;
        }
    }
}

/* ---- connections ---------------------------------------------------------------------- */

static double deadline_of(const struct config *cfg, enum guard_phase phase)
{
    int s = 0;

    switch (phase) {
    case GUARD_HEADERS:
        s = cfg->header_timeout_s;
        break;
    case GUARD_BODY:
        s = cfg->body_timeout_s;
        break;
    case GUARD_KEYLESS_BODY:
        s = cfg->header_timeout_s;
        break;
    case GUARD_BUSY:
        s = 0;
        break;
    case GUARD_WRITE:
        s = cfg->body_timeout_s;
        break;
    case GUARD_IDLE:
        s = cfg->idle_timeout_s;
        break;
    }
    return s ? clock_mono_ms() + s * 1000.0 : 0;
}

static struct conn_track *track_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return ci ? ci->socket_context : NULL;
}

void guard_conn_started(struct http_guard *g, struct MHD_Connection *c, void **socket_context)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct conn_track *t = xcalloc(1, sizeof *t);
    struct guard_count *e;

    t->fd = ci ? ci->connect_fd : -1;
    t->phase = GUARD_HEADERS;
    t->deadline = deadline_of(g->cfg, GUARD_HEADERS);
    addr_of(c, &t->addr);
    pthread_mutex_lock(&g->mu);
    t->next = g->conns.next;
    t->prev = &g->conns;
    g->conns.next->prev = t;
    g->conns.next = t;
    g->nconns++;
    e = guard_table_find(&g->by_addr, &t->addr);
    if (e->n == 0)
        e->a = t->addr;
    e->n++;
    if (g->cfg->per_ip_connections > 0 && e->n > g->cfg->per_ip_connections && t->fd >= 0) {
        shutdown(t->fd, SHUT_RDWR); /* libmicrohttpd reads end-of-file and closes it */
        t->reaped = 1;
        atomic_fetch_add(&refused_per_ip, 1);
    }
    pthread_mutex_unlock(&g->mu);
    *socket_context = t;
}

void guard_conn_closed(struct http_guard *g, void **socket_context)
{
    struct conn_track *t = *socket_context;

    if (t == NULL)
        return;
    pthread_mutex_lock(&g->mu);
    t->prev->next = t->next;
    t->next->prev = t->prev;
    g->nconns--;
    guard_table_drop(&g->by_addr, &t->addr);
    pthread_mutex_unlock(&g->mu);
    free(t);
    *socket_context = NULL;
}

void guard_request_line(struct http_guard *g, struct MHD_Connection *c)
{
    struct conn_track *t = track_of(c);

    if (t == NULL)
        return;
    pthread_mutex_lock(&g->mu);
    t->requests++;
    /* On a new connection the header clock runs from the accept. */
    if (t->phase != GUARD_HEADERS) {
        t->phase = GUARD_HEADERS;
        t->deadline = deadline_of(g->cfg, GUARD_HEADERS);
    }
    pthread_mutex_unlock(&g->mu);
}

void guard_phase(struct http_guard *g, struct MHD_Connection *c, enum guard_phase phase)
{
    struct conn_track *t = track_of(c);

    if (t == NULL)
        return;
    pthread_mutex_lock(&g->mu);
    t->phase = phase;
    t->deadline = deadline_of(g->cfg, phase);
    pthread_mutex_unlock(&g->mu);
}

int guard_requests(struct http_guard *g, struct MHD_Connection *c)
{
    struct conn_track *t = track_of(c);
    int n;

    if (t == NULL)
        return 0;
    pthread_mutex_lock(&g->mu);
    n = t->requests;
    pthread_mutex_unlock(&g->mu);
    return n;
}

/* ---- keyless tracking requests ---------------------------------------------------------- */

int guard_keyless_take(struct http_guard *g, struct MHD_Connection *c, struct guard_addr *addr)
{
    struct guard_count *e;
    int rc = -1;

    addr_of(c, addr);
    pthread_mutex_lock(&g->mu);
    e = guard_table_find(&g->keyless, addr);
    if (g->nkeyless < g->cfg->keyless_max && e->n < g->cfg->keyless_per_ip) {
        if (e->n == 0)
            e->a = *addr;
        e->n++;
        g->nkeyless++;
        rc = 0;
    }
    pthread_mutex_unlock(&g->mu);
    if (rc)
        atomic_fetch_add(&refused_keyless, 1);
    return rc;
}

void guard_keyless_give(struct http_guard *g, const struct guard_addr *addr)
{
    pthread_mutex_lock(&g->mu);
    if (guard_table_find(&g->keyless, addr)->n) {
        guard_table_drop(&g->keyless, addr);
        g->nkeyless--;
    }
    pthread_mutex_unlock(&g->mu);
}

/* ---- the reaper ---------------------------------------------------------------------------- */

/* Closes what is past its deadline, four times a second. */
static int reaper_tick(void *ctx, struct store *st, struct err *e)
{
    struct http_guard *g = ctx;
    struct conn_track *t;
    double now = clock_mono_ms();

    pthread_mutex_lock(&g->mu);
    for (t = g->conns.next; t != &g->conns; t = t->next) {
        if (t->reaped || t->deadline == 0 || t->deadline > now || t->fd < 0)
            continue;
        /* A request that did not arrive gets an answer; a connection idle or not
         * taking its answer just closes (a 408 would land inside an answer). */
        if (t->phase == GUARD_HEADERS || t->phase == GUARD_BODY || t->phase == GUARD_KEYLESS_BODY)
            (void)!send(t->fd, g->answer408, (size_t)g->n408, MSG_DONTWAIT | MSG_NOSIGNAL);
        shutdown(t->fd, SHUT_RDWR);
        t->reaped = 1;
        atomic_fetch_add(&timeouts[t->phase], 1);
    }
    pthread_mutex_unlock(&g->mu);
    return 0;
}

static const struct worker_def reaper_def = {
    .name = "http-reaper",
    .tick = reaper_tick,
    .interval_ms = 250,
    .store = WORKER_NO_STORE,
};

int guard_new(struct http_guard **out, const struct config *cfg, struct worker_set *ws,
              struct err *e)
{
    static const char body408[] =
        "{\"error\":{\"code\":\"timeout\",\"message\":\"the request did not arrive in time\"}}\n";
    struct http_guard *g = xcalloc(1, sizeof *g);
    int rc;

    g->cfg = cfg;
    g->conns.next = g->conns.prev = &g->conns;
    g->n408 = snprintf(g->answer408, sizeof g->answer408,
                       "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: "
                       "application/json\r\nContent-Length: %zu\r\n\r\n%s",
                       sizeof body408 - 1, body408);
    guard_table_init(&g->by_addr, (size_t)cfg->max_connections);
    guard_table_init(&g->keyless, (size_t)cfg->keyless_max);
    pthread_mutex_init(&g->mu, NULL);
    rc = worker_start(&g->reaper, ws, &reaper_def, g, e);
    if (rc) {
        pthread_mutex_destroy(&g->mu);
        guard_table_release(&g->by_addr);
        guard_table_release(&g->keyless);
        free(g);
        g = NULL;
    }
    *out = g;
    return rc;
}

void guard_free(struct http_guard *g)
{
    if (g == NULL)
        return;
    worker_stop(g->reaper);
    pthread_mutex_destroy(&g->mu);
    guard_table_release(&g->by_addr);
    guard_table_release(&g->keyless);
    free(g);
}

/* ---- metrics ------------------------------------------------------------------------------- */

enum guard_figure { CONNECTIONS, TIMEOUTS, REFUSED };

static int collect(void *ctx, int which, void *scrape, struct metric_sink *out, struct err *e)
{
    static const enum guard_phase shown[] = {GUARD_HEADERS, GUARD_BODY, GUARD_WRITE, GUARD_IDLE};
    static const char *const per_ip[] = {"per_ip_connections"}, *const keyless[] = {"keyless"};
    struct http_guard *g = ctx;
    size_t i;
    int n;

    switch (which) {
    case CONNECTIONS:
        pthread_mutex_lock(&g->mu);
        n = g->nconns;
        pthread_mutex_unlock(&g->mu);
        metric_emit(out, NULL, n);
        break;
    case TIMEOUTS:
        for (i = 0; i < sizeof shown / sizeof *shown; i++) {
            const char *values[] = {phase_names[shown[i]]};
            uint64_t v = atomic_load(&timeouts[shown[i]]);
            if (shown[i] == GUARD_BODY)
                v += atomic_load(&timeouts[GUARD_KEYLESS_BODY]);
            metric_emit(out, values, (double)v);
        }
        break;
    case REFUSED:
        metric_emit(out, per_ip, (double)atomic_load(&refused_per_ip));
        metric_emit(out, keyless, (double)atomic_load(&refused_keyless));
        break;
    }
    return 0;
}

void guard_metrics(struct http_guard *g, struct metrics *m)
{
    static const struct metric_def defs[] = {
        {.name = "engage_http_connections",
         .help = "Open HTTP connections.",
         .type = METRIC_GAUGE,
         .collect = collect,
         .which = CONNECTIONS},
        {.name = "engage_http_timeouts_total",
         .help = "Connections closed for missing a deadline, by phase (headers, body, write, "
                 "idle).",
         .type = METRIC_COUNTER,
         .labels = "phase",
         .collect = collect,
         .which = TIMEOUTS},
        {.name = "engage_http_refused_total",
         .help = "Connections and requests refused by a per-address limit.",
         .type = METRIC_COUNTER,
         .labels = "limit",
         .collect = collect,
         .which = REFUSED},
    };

    metrics_add_all(m, defs, sizeof defs / sizeof *defs, g);
}
