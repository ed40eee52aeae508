/* app.h -- the server process: what `engage serve` starts, in which order, and stops.
 *
 * DESIGN: app_start brings up, in order, the metrics registry and the workers' set, the
 * store pool, the ingest writer, the segment service (the audience index) and its
 * scheduler, the sync worker, the send environment (providers, token key, base URL of
 * links), the dispatcher, tracking and webhooks, and the HTTP server (app.c has the table); a step
 * that fails undoes the ones before it in reverse, and app_stop undoes them all in reverse. The
 * struct is the one context handlers reach (struct http_req has a pointer); `ready` is
 * the one shutdown flag: 1 from a finished start until stop begins (/readyz reads it). */
#ifndef ENGAGE_APP_H
#define ENGAGE_APP_H

#include <stdint.h>

#include "core/core.h"

struct config;
struct store_pool;
struct segment_service;
struct segment_scheduler;
struct ingest_queue;
struct sync_worker;
struct http_server;
struct worker_set;
struct metrics;
struct send_env;
struct dispatcher;
struct tracker;
struct webhooks;
struct conversions;

struct app {
    /* set by the caller before app_start */
    struct config *cfg;
    const char *location; /* where the store is: the data directory */
    const char *version;
    /* set by app_start */
    int64_t started_at;
    struct metrics *metrics;     /* every module's figures, rendered by /metrics */
    struct worker_set *workers;  /* the background workers and their stores' location */
    struct store_pool *pool;     /* connections lent to requests */
    struct ingest_queue *ingest; /* the one writer of ingested data */
    struct segment_service *segments;
    struct segment_scheduler *scheduler;
    struct sync_worker *sync;        /* CRM sync passes (NULL outside serve) */
    struct send_env *send;           /* providers, token key, base URL (campaign/campaign.h) */
    struct dispatcher *dispatcher;   /* the send worker (campaign/campaign.h) */
    struct tracker *tracker;         /* opens, clicks, unsubscribes (delivery/delivery.h) */
    struct webhooks *webhooks;       /* provider webhooks and their inbox (the same) */
    struct conversions *conversions; /* conversion goals (the same) */
    struct http_server *http;
    int listen_fd; /* from http_listen: the HTTP server takes it over */
    int started;   /* steps started, for the undo */
    _Atomic int ready;
};

/* Starts everything on the listening socket listen_fd (taken over: closed on failure
 * too). On failure what was started is stopped again and e says why. */
int app_start(struct app *app, int listen_fd, struct err *e);
/* Clears ready, then stops everything in the reverse order: the HTTP server first (its
 * in-flight requests are answered), the store pool last. */
void app_stop(struct app *app);

#endif
