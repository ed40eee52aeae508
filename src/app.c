/* app.c -- the server's start and stop order (app.h).
 *
 * DESIGN: the steps are a table, started top to bottom and stopped bottom to top,
 * so a step added for the send half has one place to go and its undo is in the same
 * row. Each module registers its own metrics when it starts; the figures that are
 * the store's (table counts, change sequences, dead letters) and the process's own
 * (build, uptime) are registered here, computed at scrape time on the request's
 * connection. */
#include "app.h"

#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "campaign/campaign.h"
#include "core/metrics.h"
#include "core/worker.h"
#include "delivery/delivery.h"
#include "http/http.h"
#include "ingest/ingest.h"
#include "segment/segment.h"
#include "store/store.h"
#include "sync/sync.h"

/* ---- the store's and the process's figures ------------------------------------------- */

/* Table counts scan whole indexes: they are recounted only when a change sequence moved
 * since the last count (two index probes tell), so idle scrapes cost nothing. */
static pthread_mutex_t counts_mu = PTHREAD_MUTEX_INITIALIZER; /* protects counts_* */
static struct store_counts counts_cache;
static int counts_valid;

static int counts_get(struct store *st, struct store_counts *out, struct err *e)
{
    int64_t cseq = 0, eseq = 0;
    int rc = store_change_seqs(st, &cseq, &eseq, e);

    pthread_mutex_lock(&counts_mu);
    if (rc == 0 &&
        (!counts_valid || cseq != counts_cache.contact_seq || eseq != counts_cache.event_seq)) {
        rc = store_counts(st, &counts_cache, e);
        counts_valid = rc == 0;
    }
    *out = counts_cache;
    pthread_mutex_unlock(&counts_mu);
    return rc;
}

enum app_figure { BUILD, UPTIME, CONTACTS, EVENTS, UNVALIDATED, SEQS };

/* The process's figures, and the store's (scrape: the scrape's connection). */
static int collect(void *ctx, int which, void *scrape, struct metric_sink *out, struct err *e)
{
    static const char *const active[] = {"active"}, *const deleted[] = {"deleted"},
                             *const contacts[] = {"contacts"}, *const events[] = {"events"};
    const struct app *app = ctx;
    const char *version[] = {app->version};
    struct store_counts c;
    int rc;

    if (which == BUILD) {
        metric_emit(out, version, 1);
        return 0;
    }
    if (which == UPTIME) {
        metric_emit(out, NULL, (double)(clock_now_ms() - app->started_at) / 1000.0);
        return 0;
    }
    rc = counts_get(scrape, &c, e);
    if (rc)
        return rc;
    switch (which) {
    case CONTACTS:
        metric_emit(out, active, (double)(c.contacts - c.contacts_deleted));
        metric_emit(out, deleted, (double)c.contacts_deleted);
        break;
    case EVENTS:
        metric_emit(out, NULL, (double)c.events);
        break;
    case UNVALIDATED:
        metric_emit(out, NULL, (double)c.events_unvalidated);
        break;
    case SEQS:
        metric_emit(out, contacts, (double)c.contact_seq);
        metric_emit(out, events, (double)c.event_seq);
        break;
    }
    return 0;
}

static int collect_rejected(void *ctx, int which, void *scrape, struct metric_sink *out,
                            struct err *e)
{
    return store_rejected_counts(scrape, metric_emit_count, out, e);
}

/* The queues of GET /api/v1/ops/queues, as gauges (scrape: the scrape's connection). */
enum queue_figure { Q_LEDGER, Q_OLDEST, Q_RETRY, Q_INBOX, Q_INBOX_AGE, Q_JOURNAL };

static int collect_queues(void *ctx, int which, void *scrape, struct metric_sink *out,
                          struct err *e)
{
    static const char *const states[MSG_STATES] = {"queued", "sending", "sent",   "retry",
                                                   "failed", "dead",    "skipped"};
    static const char *const pending[] = {"pending"}, *const failed[] = {"failed"};
    const struct app *app = ctx;
    struct store_queues q;
    int64_t now = clock_now_ms();
    int rc, i;

    if (which == Q_JOURNAL) {
        metric_emit(out, NULL, app->tracker ? (double)tracker_pending_bytes(app->tracker) : 0);
        return 0;
    }
    rc = store_queues(scrape, &q, e);
    if (rc)
        return rc;
    switch (which) {
    case Q_LEDGER:
        for (i = 0; i < MSG_STATES; i++) {
            const char *v[] = {states[i]};
            metric_emit(out, v, (double)q.ledger[i]);
        }
        break;
    case Q_OLDEST:
        metric_emit(out, NULL, q.oldest_queued_at ? (double)(now - q.oldest_queued_at) / 1000 : 0);
        break;
    case Q_RETRY:
        metric_emit(out, NULL, (double)q.retry);
        break;
    case Q_INBOX:
        metric_emit(out, pending, (double)q.inbox_pending);
        metric_emit(out, failed, (double)q.inbox_failed);
        break;
    case Q_INBOX_AGE:
        metric_emit(out, NULL, q.inbox_oldest_at ? (double)(now - q.inbox_oldest_at) / 1000 : 0);
        break;
    }
    return 0;
}

static void app_metrics(struct app *app)
{
    static const struct metric_def defs[] = {
        {.name = "engage_build_info",
         .help = "Build version.",
         .type = METRIC_GAUGE,
         .labels = "version",
         .collect = collect,
         .which = BUILD},
        {.name = "engage_uptime_seconds",
         .help = "Seconds since start.",
         .type = METRIC_GAUGE,
         .decimals = 3,
         .collect = collect,
         .which = UPTIME},
        {.name = "engage_contacts",
         .help = "Contacts in the store.",
         .type = METRIC_GAUGE,
         .labels = "state",
         .collect = collect,
         .which = CONTACTS},
        {.name = "engage_events",
         .help = "Events in the store.",
         .type = METRIC_GAUGE,
         .collect = collect,
         .which = EVENTS},
        {.name = "engage_events_unvalidated",
         .help = "Stored events of names without a contract.",
         .type = METRIC_GAUGE,
         .collect = collect,
         .which = UNVALIDATED},
        {.name = "engage_change_seq",
         .help = "Latest change sequence by table.",
         .type = METRIC_GAUGE,
         .labels = "table",
         .collect = collect,
         .which = SEQS},
        {.name = "engage_ingest_rejected",
         .help = "Records in the dead-letter store awaiting replay, by reason.",
         .type = METRIC_GAUGE,
         .labels = "reason",
         .collect = collect_rejected},
        {.name = "engage_queue_ledger_rows",
         .help = "Send ledger rows of every run, by state (dead: the send dead letters).",
         .type = METRIC_GAUGE,
         .labels = "state",
         .collect = collect_queues,
         .which = Q_LEDGER},
        {.name = "engage_queue_oldest_queued_seconds",
         .help = "Age of the oldest queued message of a run that may send (0: none).",
         .type = METRIC_GAUGE,
         .decimals = 3,
         .collect = collect_queues,
         .which = Q_OLDEST},
        {.name = "engage_queue_retry_rows",
         .help = "Messages waiting to be retried.",
         .type = METRIC_GAUGE,
         .collect = collect_queues,
         .which = Q_RETRY},
        {.name = "engage_webhook_inbox_bodies",
         .help = "Webhook bodies stored and not yet applied (pending), or that failed.",
         .type = METRIC_GAUGE,
         .labels = "state",
         .collect = collect_queues,
         .which = Q_INBOX},
        {.name = "engage_webhook_inbox_oldest_seconds",
         .help = "Age of the oldest pending webhook body (0: none).",
         .type = METRIC_GAUGE,
         .decimals = 3,
         .collect = collect_queues,
         .which = Q_INBOX_AGE},
        {.name = "engage_tracking_journal_pending_bytes",
         .help = "Bytes of the tracking journal answered and not yet applied.",
         .type = METRIC_GAUGE,
         .collect = collect_queues,
         .which = Q_JOURNAL},
    };

    metrics_add_all(app->metrics, defs, sizeof defs / sizeof *defs, app);
}

/* ---- the steps --------------------------------------------------------------------------- */

static int start_base(struct app *app, struct err *e)
{
    metrics_new(&app->metrics);
    worker_set_new(&app->workers, app->location, app->cfg->busy_timeout_ms);
    app_metrics(app);
    worker_set_metrics(app->workers, app->metrics);
    return 0;
}

static void stop_base(struct app *app)
{
    worker_set_free(app->workers);
    metrics_free(app->metrics);
    app->workers = NULL;
    app->metrics = NULL;
}

/* Store connections lent to requests: with a thread per connection, up to 8 at once (a
 * request holds one while it runs; ingestion gives it back before waiting for the
 * writer); with a pool of N threads, N + 2. */
static int start_pool(struct app *app, struct err *e)
{
    struct store_opts so = {.busy_timeout_ms = app->cfg->busy_timeout_ms, .migrate = 0};

    return store_pool_new(&app->pool, app->location,
                          app->cfg->http_threads ? app->cfg->http_threads + 2 : 8, &so, e);
}

static void stop_pool(struct app *app)
{
    store_pool_free(app->pool);
    app->pool = NULL;
}

static int start_ingest(struct app *app, struct err *e)
{
    int rc = ingest_queue_start(&app->ingest, app->workers, app->cfg, e);

    if (rc == 0)
        ingest_queue_metrics(app->ingest, app->metrics);
    return rc;
}

static void stop_ingest(struct app *app)
{
    ingest_queue_stop(app->ingest); /* what was queued is stored first */
    app->ingest = NULL;
}

static int start_segments(struct app *app, struct err *e)
{
    segment_service_new(&app->segments, app->cfg);
    segment_service_metrics(app->segments, app->metrics);
    return 0;
}

static void stop_segments(struct app *app)
{
    segment_service_free(app->segments);
    app->segments = NULL;
}

static int start_scheduler(struct app *app, struct err *e)
{
    return segment_scheduler_start(&app->scheduler, app->workers, app->segments, app->pool, e);
}

static void stop_scheduler(struct app *app)
{
    segment_scheduler_stop(app->scheduler); /* an evaluation under way finishes */
    app->scheduler = NULL;
}

static int start_sync(struct app *app, struct err *e)
{
    int rc = sync_worker_start(&app->sync, app->workers, app->cfg, e);

    if (rc == 0)
        sync_worker_metrics(app->sync, app->metrics);
    return rc;
}

static void stop_sync(struct app *app)
{
    sync_worker_stop(app->sync); /* a pass in progress finishes its batch */
    app->sync = NULL;
}

/* The send half's environment: links use public_url, or else the server's own address,
 * http://host:port with the port the listening socket really has (listen port 0). */
static int start_send(struct app *app, struct err *e)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[256], url[320];
    int port = 0, rc;

    config_parse_listen(app->cfg->listen, host, sizeof host, &port);
    memset(&ss, 0, sizeof ss);
    if (app->listen_fd >= 0 && getsockname(app->listen_fd, (struct sockaddr *)&ss, &sl) == 0)
        port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                              : ((struct sockaddr_in *)&ss)->sin_port);
    snprintf(url, sizeof url, "http://%s%s%s:%d", strchr(host, ':') ? "[" : "", host,
             strchr(host, ':') ? "]" : "", port);
    app->send = xcalloc(1, sizeof *app->send);
    rc = send_env_init(app->send, app->cfg, url, app->segments, e);
    if (rc) {
        free(app->send);
        app->send = NULL;
    }
    return rc;
}

static void stop_send(struct app *app)
{
    send_env_release(app->send);
    free(app->send);
    app->send = NULL;
}

static int start_dispatcher(struct app *app, struct err *e)
{
    return dispatcher_start(&app->dispatcher, app->workers, app->send, app->metrics, e);
}

static void stop_dispatcher(struct app *app)
{
    dispatcher_stop(app->dispatcher); /* sends in flight finish and are recorded */
    app->dispatcher = NULL;
}

static int start_delivery(struct app *app, struct err *e)
{
    int rc = tracker_start(&app->tracker, app->workers, app->send, app->metrics, e);

    if (rc == 0)
        rc = webhooks_start(&app->webhooks, app->workers, app->send, app->metrics, e);
    if (rc == 0)
        rc = conversions_start(&app->conversions, app->workers, app->send, e);
    if (rc) {
        webhooks_stop(app->webhooks);
        app->webhooks = NULL;
        tracker_stop(app->tracker);
        app->tracker = NULL;
    }
    return rc;
}

static void stop_delivery(struct app *app)
{
    conversions_stop(app->conversions);
    app->conversions = NULL;
    webhooks_stop(app->webhooks); /* a body being processed finishes */
    app->webhooks = NULL;
    tracker_stop(app->tracker);
    app->tracker = NULL;
}

static int start_http(struct app *app, struct err *e)
{
    int fd = app->listen_fd;

    app->listen_fd = -1; /* http_start takes it over, failing or not */
    return http_start(&app->http, app, fd, e);
}

static void stop_http(struct app *app)
{
    http_stop(app->http); /* in-flight requests are answered first */
    app->http = NULL;
}

static const struct app_step {
    const char *name;
    int (*start)(struct app *app, struct err *e);
    void (*stop)(struct app *app);
} steps[] = {
    {"metrics and workers", start_base, stop_base},
    {"store pool", start_pool, stop_pool},
    {"ingest writer", start_ingest, stop_ingest},
    {"segment service", start_segments, stop_segments},
    {"segment scheduler", start_scheduler, stop_scheduler},
    {"sync worker", start_sync, stop_sync},
    {"send environment", start_send, stop_send},
    {"dispatcher", start_dispatcher, stop_dispatcher},
    {"tracking and webhooks", start_delivery, stop_delivery},
    {"http server", start_http, stop_http},
};
#define NSTEPS ((int)(sizeof steps / sizeof *steps))

static void stop_steps(struct app *app)
{
    while (app->started > 0) {
        const struct app_step *s = &steps[--app->started];
        log_debug("app", "stopping the %s", s->name);
        s->stop(app);
    }
}

int app_start(struct app *app, int listen_fd, struct err *e)
{
    int rc = 0;

    /* Blocks of 256 KiB and more (request bodies, read arenas) are mapped and unmapped
     * on their own: freed, they go back to the system at once. glibc otherwise raises
     * that threshold each time such a block is freed and serves the next ones from its
     * heaps, which keep them: 16 bodies of 4 MB at once left the server 46 MB larger. */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    app->listen_fd = listen_fd;
    app->started = 0;
    app->started_at = clock_now_ms();
    while (rc == 0 && app->started < NSTEPS) {
        const struct app_step *s = &steps[app->started];
        log_debug("app", "starting the %s", s->name);
        rc = s->start(app, e);
        if (rc == 0)
            app->started++;
    }
    if (rc) {
        stop_steps(app);
        if (app->listen_fd >= 0)
            close(app->listen_fd);
        app->listen_fd = -1;
        return rc;
    }
    atomic_store(&app->ready, 1);
    return 0;
}

void app_stop(struct app *app)
{
    atomic_store(&app->ready, 0);
    stop_steps(app);
}
