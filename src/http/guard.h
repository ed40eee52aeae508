/* http/guard.h -- the connection guard: deadlines and per-address limits (inside http/).
 *
 * libmicrohttpd's own timeout is an idle one, reset by every byte: a client sending a
 * header byte a second, or reading its answer as slowly, is never idle. The guard
 * tracks every connection from accept to close with a phase and an absolute deadline,
 * counts connections and keyless tracking requests per client address, and a reaper
 * thread closes what is past its deadline. server.c calls it from libmicrohttpd's
 * callbacks; nothing here answers a request. Thread-safe: one lock inside. */
#ifndef ENGAGE_HTTP_GUARD_H
#define ENGAGE_HTTP_GUARD_H

#include <microhttpd.h>

#include "../core/config.h"

/* Where a connection is, and the deadline of each phase:
 *   HEADERS  from the accept, or a kept-alive connection's request line: header_timeout_s
 *   BODY     from the headers: body_timeout_s (a keyless tracking body: header_timeout_s)
 *   BUSY     the handler runs: none
 *   WRITE    from the answer's queueing to its last byte taken: body_timeout_s
 *   IDLE     from the answer sent to the next request line: idle_timeout_s */
enum guard_phase {
    GUARD_HEADERS,
    GUARD_BODY,
    GUARD_KEYLESS_BODY,
    GUARD_BUSY,
    GUARD_WRITE,
    GUARD_IDLE
};

/* A client address as the limits count it: IPv4 whole, IPv6 by its /64 (one host, as
 * providers hand them out). */
struct guard_addr {
    unsigned char b[16];
};

/* c's address as the limits count it (sa: a sockaddr_in or sockaddr_in6; else zeros). */
struct sockaddr;
void guard_addr_of(const struct sockaddr *sa, struct guard_addr *out);

/* A count per address: open addressing with linear probes, entries moved back on
 * removal (no tombstones); sized at init for at most `most` addresses at once. */
struct guard_count {
    struct guard_addr a;
    int n; /* 0: a free slot */
};
struct guard_table {
    struct guard_count *slots;
    size_t mask; /* capacity - 1, a power of two at least twice `most` */
};
void guard_table_init(struct guard_table *t, size_t most);
void guard_table_release(struct guard_table *t);
/* The address's entry: its own, or the free slot where it would go (n 0: set a, then n). */
struct guard_count *guard_table_find(struct guard_table *t, const struct guard_addr *a);
/* One off the address's count; at 0 its slot is freed. */
void guard_table_drop(struct guard_table *t, const struct guard_addr *a);

struct http_guard;
struct worker_set;
struct metrics;
/* Starts the reaper (a worker of ws, which may be NULL). The configuration must outlive
 * the guard. */
int guard_new(struct http_guard **out, const struct config *cfg, struct worker_set *ws,
              struct err *e);
/* Stops the reaper (after libmicrohttpd has closed every connection) and frees. NULL-safe. */
void guard_free(struct http_guard *g);

/* MHD_CONNECTION_NOTIFY_STARTED / CLOSED. A connection past per_ip_connections from its
 * address is shut down at once (libmicrohttpd then closes it). CLOSED runs before
 * libmicrohttpd closes the descriptor: the reaper never touches one reused since. */
void guard_conn_started(struct http_guard *g, struct MHD_Connection *c, void **socket_context);
void guard_conn_closed(struct http_guard *g, void **socket_context);
/* A request's first line is in (the URI log callback): counts the request and, after a
 * kept-alive pause, starts its header clock. */
void guard_request_line(struct http_guard *g, struct MHD_Connection *c);
/* Moves the connection to phase, its deadline counted from now. */
void guard_phase(struct http_guard *g, struct MHD_Connection *c, enum guard_phase phase);
/* Requests this connection has begun (1 for its first). */
int guard_requests(struct http_guard *g, struct MHD_Connection *c);

/* Counts a tracking request without a key in flight from c's address: 0 and *addr (to
 * give back), or -1 past keyless_per_ip for the address or keyless_max in all. */
int guard_keyless_take(struct http_guard *g, struct MHD_Connection *c, struct guard_addr *addr);
void guard_keyless_give(struct http_guard *g, const struct guard_addr *addr);

/* Registers open connections, deadline closures by phase and per-address refusals
 * (engage_http_connections, _timeouts_total, _refused_total) in m; g must outlive m's use. */
void guard_metrics(struct http_guard *g, struct metrics *m);

#endif
