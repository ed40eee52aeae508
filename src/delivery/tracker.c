/* delivery/tracker.c -- our own tracking: the open pixel, the click redirect and the
 * one-click unsubscribe, each kept before it is answered.
 *
 * DESIGN: a hit is verified on the request's thread (the token's HMAC: a forged or
 * altered one is 404 and costs no write). An open or a click is then appended to the
 * tracking journal (DATA/tracking.journal: one write(2) of a small record with its
 * CRC, under a lock) and answered; one writer thread, with its own store connection and
 * ingest session, applies the journal in large transactions (engagement_apply_to) and
 * records how far it got in the same transaction (store_journal_set), so a kill -9 at
 * any instant loses nothing and applies nothing twice: what was answered is in the file
 * (the kernel's, as a WAL commit under synchronous = NORMAL is), what was applied is
 * committed with its offset, and a restart applies the rest. Waiting for a store commit
 * per request instead held a hit to a commit of at most the waiting requests: 12,000
 * hits/s at best, and p99 far over 5 ms while a campaign sends (docs/benchmarks.md).
 * The journal is emptied (truncated, offset 0, under the append lock) once applied past
 * 64 MiB. The unsubscribe, whose page says the result, waits for its own commit: it is
 * queued for the same writer, which takes such jobs first. A click redirects only to the
 * link of that index in the message its run renders (the run's template version,
 * tracked as the dispatcher tracks it, kept compiled in a small cache), never to a URL
 * from the request. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "../consent/consent.h"
#include "../core/metrics.h"
#include "../core/worker.h"
#include "../ingest/ingest.h"
#include "../store/store.h"
#include "delivery.h"

/* Runs whose tracked template is kept compiled for clicks. */
#define LINK_CACHE 32
/* link_url's answer for a link that needs the contact's values (not an error code). */
#define NEEDS_CONTACT 1

/* The journal: a record is HEAD bytes -- length (of the whole record), CRC-32 of what
 * follows it, kind, machine, link, run, contact, received_at, user agent's and URL's
 * lengths -- then the user agent and the URL. */
#define JOURNAL_FILE "tracking.journal"
#define JOURNAL_NAME "tracking" /* its checkpoint's name in the store */
#define JOURNAL_HEAD 40
#define JOURNAL_MAX (JOURNAL_HEAD + MEV_MAX_AGENT + MEV_MAX_URL)
#define JOURNAL_ROTATE (64L << 20) /* emptied once applied past this */
#define JOURNAL_CHUNK (4L << 20)   /* read at once */
#define APPLY_BATCH 5000           /* hits a transaction at most */
#define WRITER_NICE 5

struct hit {
    struct mev ev;
    int64_t run_id, contact_id;
    int64_t received_at;
    /* the writer's answer: done under the tracker's mu, then cv signalled (each hit its
     * own, so a commit wakes only the requests it answered) */
    pthread_cond_t cv;
    int done, rc;
    enum engagement_outcome out;
    struct err err;
    struct hit *next;
};

struct cached_run {
    int64_t run_id;
    struct message_template *mt;
    uint64_t used;
};

struct tracker {
    const struct send_env *env;
    struct worker *writer;
    int jfd;              /* the journal, O_APPEND */
    pthread_mutex_t jmu;  /* jmu protects appends and the emptying of the journal */
    int64_t applied;      /* the journal's offset applied and committed: written by the
                           * writer, read atomically by tracker_pending_bytes */
    unsigned char *chunk; /* the writer's read buffer */
    char jpath[1100];
    pthread_mutex_t mu; /* mu protects head, tail and each queued hit's answer */
    struct hit *head, **tail;
    struct ingest in; /* the writer's */
    struct engagement *eng;
    pthread_mutex_t cache_mu; /* cache_mu protects cache, clock */
    struct cached_run cache[LINK_CACHE];
    uint64_t clock;
    struct metric_series *hits[3], *failures;
};

/* ---- the writer --------------------------------------------------------------------- */

/* The unsubscribes queued (the one kind of hit that waits for its commit: opens and clicks
 * go to the journal). A message without a ledger row (a test send's link) still
 * unsubscribes its contact. */
static int store_hits(struct tracker *t, struct hit *list, struct err *e)
{
    struct hit *h;
    int rc = ingest_begin(&t->in, e);

    for (h = list; rc == 0 && h; h = h->next) {
        rc = engagement_apply_to(t->eng, "unsubscribe", &h->ev, h->run_id, h->contact_id,
                                 h->received_at, &h->out, e);
        if (rc == 0 && h->out == ENGAGEMENT_UNKNOWN) {
            char reason[96];
            int changed;
            snprintf(reason, sizeof reason, "unsubscribe link of campaign run %lld",
                     (long long)h->run_id);
            rc = engagement_consent(t->in.st, h->contact_id, CONSENT_UNSUBSCRIBED, "recipient",
                                    reason, h->received_at, &changed, e);
        }
    }
    return engagement_finish(t->eng, rc, e);
}

static void answer(struct tracker *t, struct hit *list, int rc, const struct err *e)
{
    struct hit *h, *next;

    pthread_mutex_lock(&t->mu);
    for (h = list; h; h = next) {
        next = h->next; /* h may be gone once signalled and the lock let go */
        h->rc = rc;
        if (rc)
            h->err = *e;
        h->done = 1;
        pthread_cond_signal(&h->cv);
    }
    pthread_mutex_unlock(&t->mu);
}

/* ---- the journal ------------------------------------------------------------------ */

static void put32(unsigned char *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static void put64(unsigned char *p, int64_t v)
{
    memcpy(p, &v, 8);
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t v;

    memcpy(&v, p, 4);
    return v;
}

static int64_t get64(const unsigned char *p)
{
    int64_t v;

    memcpy(&v, p, 8);
    return v;
}

/* Appends one hit. 0, or E_IO (logged by the caller). */
static int journal_append(struct tracker *t, const struct hit *h, struct err *e)
{
    unsigned char rec[JOURNAL_MAX];
    size_t ua = h->ev.user_agent ? strnlen(h->ev.user_agent, MEV_MAX_AGENT) : 0;
    size_t url = h->ev.url ? strnlen(h->ev.url, MEV_MAX_URL) : 0;
    size_t n = JOURNAL_HEAD + ua + url, done = 0;
    int rc = 0;

    put32(rec, (uint32_t)n);
    rec[8] = (unsigned char)h->ev.kind;
    rec[9] = (unsigned char)h->ev.machine;
    rec[10] = rec[11] = 0;
    put64(rec + 12, h->run_id);
    put64(rec + 20, h->contact_id);
    put64(rec + 28, h->received_at);
    rec[36] = (unsigned char)(ua & 0xff);
    rec[37] = (unsigned char)(ua >> 8);
    rec[38] = (unsigned char)(url & 0xff);
    rec[39] = (unsigned char)(url >> 8);
    memcpy(rec + JOURNAL_HEAD, h->ev.user_agent ? h->ev.user_agent : "", ua);
    memcpy(rec + JOURNAL_HEAD + ua, h->ev.url ? h->ev.url : "", url);
    put32(rec + 4, (uint32_t)crc32(0, rec + 8, (uInt)(n - 8)));
    pthread_mutex_lock(&t->jmu);
    while (done < n) {
        ssize_t w = write(t->jfd, rec + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = ERR(e, E_IO, "the tracking journal %s: %s", t->jpath, strerror(errno));
            break;
        }
        done += (size_t)w;
    }
    pthread_mutex_unlock(&t->jmu);
    return rc;
}

/* Applies what the journal holds past t->applied, APPLY_BATCH hits a transaction, each
 * with its new offset. */
static int journal_apply(struct tracker *t, struct store *st, struct err *e)
{
    for (;;) {
        ssize_t got = pread(t->jfd, t->chunk, JOURNAL_CHUNK, t->applied);
        size_t at = 0;
        int n = 0, rc;

        if (got < 0)
            return ERR(e, E_IO, "the tracking journal %s: %s", t->jpath, strerror(errno));
        rc = ingest_begin(&t->in, e);
        while (rc == 0 && n < APPLY_BATCH && at + JOURNAL_HEAD <= (size_t)got) {
            const unsigned char *r = t->chunk + at;
            size_t len = get32(r), ua = r[36] | (size_t)r[37] << 8,
                   url = r[38] | (size_t)r[39] << 8;
            char uab[MEV_MAX_AGENT + 1], urlb[MEV_MAX_URL + 1];
            struct hit h = {0};
            if (len < JOURNAL_HEAD || len > JOURNAL_MAX || len != JOURNAL_HEAD + ua + url)
                rc = ERR(e, E_CORRUPT, "the tracking journal %s: a bad record at byte %lld",
                         t->jpath, (long long)(t->applied + (int64_t)at));
            else if (at + len > (size_t)got)
                break; /* the rest of it comes with the next read */
            else if (get32(r + 4) != (uint32_t)crc32(0, r + 8, (uInt)(len - 8)))
                rc = ERR(e, E_CORRUPT, "the tracking journal %s: a damaged record at byte %lld",
                         t->jpath, (long long)(t->applied + (int64_t)at));
            if (rc)
                break;
            memcpy(uab, r + JOURNAL_HEAD, ua);
            uab[ua] = '\0';
            memcpy(urlb, r + JOURNAL_HEAD + ua, url);
            urlb[url] = '\0';
            h.ev.kind = (enum mev_kind)r[8];
            h.ev.machine = r[9];
            h.ev.user_agent = ua ? uab : NULL;
            h.ev.url = url ? urlb : NULL;
            h.run_id = get64(r + 12);
            h.contact_id = get64(r + 20);
            h.received_at = get64(r + 28);
            rc = engagement_apply_to(t->eng, "tracking", &h.ev, h.run_id, h.contact_id,
                                     h.received_at, &h.out, e);
            at += len;
            n++;
        }
        if (rc == 0 && n)
            rc = store_journal_set(st, JOURNAL_NAME, t->applied + (int64_t)at, e);
        rc = engagement_finish(t->eng, rc, e);
        if (rc)
            return rc;
        __atomic_store_n(&t->applied, t->applied + (int64_t)at, __ATOMIC_RELAXED);
        if (n == 0)
            break;
    }
    if (t->applied >= JOURNAL_ROTATE) { /* all applied: empty it, appends held meanwhile */
        struct stat sb;
        int rc = 0;
        pthread_mutex_lock(&t->jmu);
        if (fstat(t->jfd, &sb) == 0 && sb.st_size == t->applied) {
            if (ftruncate(t->jfd, 0) != 0)
                rc = ERR(e, E_IO, "the tracking journal %s: %s", t->jpath, strerror(errno));
            if (rc == 0)
                rc = store_begin(st, e);
            if (rc == 0)
                rc = store_finish(st, store_journal_set(st, JOURNAL_NAME, 0, e), e);
            /* a failed commit leaves the store's offset past the file's end: the next
             * start reads that as emptied */
            __atomic_store_n(&t->applied, 0, __ATOMIC_RELAXED);
        }
        pthread_mutex_unlock(&t->jmu);
        return rc;
    }
    return 0;
}

static int writer_tick(void *ctx, struct store *st, struct err *e)
{
    struct tracker *t = ctx;

    for (;;) {
        struct hit *list;
        struct err he = {0};
        int rc;

        pthread_mutex_lock(&t->mu);
        list = t->head;
        t->head = NULL;
        t->tail = &t->head;
        pthread_mutex_unlock(&t->mu);
        if (list == NULL)
            return delivery_hold_apply() ? 0 : journal_apply(t, st, e);
        rc = store_hits(t, list, &he);
        if (rc) {
            /* one at a time, so one hit that cannot be stored fails alone */
            struct hit *h = list, *next;
            while (h) {
                next = h->next;
                h->next = NULL;
                err_clear(&he);
                rc = store_hits(t, h, &he);
                answer(t, h, rc, &he);
                h = next;
            }
        } else {
            answer(t, list, 0, &he);
        }
    }
}

/* Where the last whole, undamaged record after from ends: a process killed in the middle
 * of an append may leave part of one, which the next append would follow. */
static int64_t journal_good_end(struct tracker *t, int64_t from)
{
    for (;;) {
        ssize_t got = pread(t->jfd, t->chunk, JOURNAL_CHUNK, from);
        size_t at = 0;

        while (got > 0 && at + JOURNAL_HEAD <= (size_t)got) {
            const unsigned char *r = t->chunk + at;
            size_t len = get32(r), ua = r[36] | (size_t)r[37] << 8,
                   url = r[38] | (size_t)r[39] << 8;
            if (len < JOURNAL_HEAD || len > JOURNAL_MAX || len != JOURNAL_HEAD + ua + url ||
                at + len > (size_t)got ||
                get32(r + 4) != (uint32_t)crc32(0, r + 8, (uInt)(len - 8)))
                break;
            at += len;
        }
        if (at == 0)
            return from;
        from += (int64_t)at;
        if (got < JOURNAL_CHUNK)
            return from;
    }
}

static void writer_init(void *ctx, struct store *st)
{
    struct tracker *t = ctx;
    struct err e = {0};
    struct stat sb;

    /* The writer works behind the requests: at nice +5 a request's thread, woken, gets
     * the core first (at 20,000 hits/s its p90 fell from 1.8 to 0.6 ms). */
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), WRITER_NICE) != 0)
        log_debug("tracking", "the writer's priority stays: %s", strerror(errno));
    ingest_init(&t->in, st, t->env->cfg);
    t->eng = engagement_new(&t->in);
    if (store_journal_applied(st, JOURNAL_NAME, &t->applied, &e) && e.code != E_NOTFOUND)
        log_error("tracking", "the tracking journal's checkpoint: %s", e.msg);
    /* past the file's end: it was emptied and the new offset not committed */
    pthread_mutex_lock(&t->jmu);
    if (fstat(t->jfd, &sb) == 0 && t->applied > sb.st_size)
        t->applied = 0;
    pthread_mutex_unlock(&t->jmu);
}

static void writer_fini(void *ctx, struct store *st)
{
    struct tracker *t = ctx;

    (void)st;
    engagement_free(t->eng);
    t->eng = NULL;
    ingest_release(&t->in);
}

static const struct worker_def writer_def = {
    .name = "track-writer",
    .tick = writer_tick,
    .interval_ms = 0, /* woken by each hit */
    .backoff_min_ms = 100,
    .backoff_max_ms = 1000,
    .store = WORKER_STORE,
    .flags = WORKER_FINAL_TICK,
    .init = writer_init,
    .fini = writer_fini,
};

/* An open or a click: into the journal, and the writer woken. */
static int record_hit(struct tracker *t, struct hit *h, struct err *e)
{
    int rc;

    h->received_at = clock_now_ms();
    rc = journal_append(t, h, e);
    if (rc)
        metric_add(t->failures, 1);
    else
        worker_wake(t->writer);
    return rc;
}

/* Queues h and waits for the writer's answer (the unsubscribe). */
static int record(struct tracker *t, struct hit *h, struct err *e)
{
    h->received_at = clock_now_ms();
    pthread_cond_init(&h->cv, NULL);
    pthread_mutex_lock(&t->mu);
    *t->tail = h;
    t->tail = &h->next;
    pthread_mutex_unlock(&t->mu);
    worker_wake(t->writer);
    pthread_mutex_lock(&t->mu);
    while (!h->done)
        pthread_cond_wait(&h->cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
    pthread_cond_destroy(&h->cv);
    if (h->rc) {
        *e = h->err;
        metric_add(t->failures, 1);
    }
    return h->rc;
}

/* ---- start, stop ---------------------------------------------------------------------- */

int tracker_start(struct tracker **out, struct worker_set *ws, const struct send_env *env,
                  struct metrics *m, struct err *e)
{
    struct tracker *t = xcalloc(1, sizeof *t);
    static const char *const kinds[3] = {"open", "click", "unsubscribe"};
    int rc, i;

    t->env = env;
    t->tail = &t->head;
    t->jfd = -1;
    pthread_mutex_init(&t->mu, NULL);
    pthread_mutex_init(&t->jmu, NULL);
    pthread_mutex_init(&t->cache_mu, NULL);
    if (m) {
        static const struct metric_def defs[] = {
            {.name = "engage_tracking_hits_total",
             .help = "Opens, clicks and unsubscribes from our own links, stored.",
             .type = METRIC_COUNTER,
             .labels = "kind"},
            {.name = "engage_tracking_failures_total",
             .help = "Tracking hits that could not be stored.",
             .type = METRIC_COUNTER},
        };
        struct metric *f = metrics_add(m, &defs[0]);
        for (i = 0; i < 3; i++)
            t->hits[i] = metric_series(f, &kinds[i]);
        t->failures = metric_series(metrics_add(m, &defs[1]), NULL);
    }
    snprintf(t->jpath, sizeof t->jpath, "%s/%s", env->cfg->data_dir, JOURNAL_FILE);
    t->jfd = open(t->jpath, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (t->jfd < 0) {
        rc = ERR(e, E_IO, "the tracking journal %s: %s", t->jpath, strerror(errno));
        tracker_stop(t);
        return rc;
    }
    t->chunk = xmalloc(JOURNAL_CHUNK);
    { /* before anything appends */
        struct stat sb;
        int64_t end = journal_good_end(t, 0);
        if (fstat(t->jfd, &sb) == 0 && end < sb.st_size) {
            log_warn("tracking",
                     "the tracking journal %s ends in %lld bytes of a record cut short (the "
                     "server was stopped while writing it, before answering): dropped",
                     t->jpath, (long long)(sb.st_size - end));
            if (ftruncate(t->jfd, end) != 0)
                log_error("tracking", "the tracking journal %s: %s", t->jpath, strerror(errno));
        }
    }
    rc = worker_start(&t->writer, ws, &writer_def, t, e);
    if (rc) {
        tracker_stop(t);
        return rc;
    }
    *out = t;
    return 0;
}

void tracker_stop(struct tracker *t)
{
    if (t == NULL)
        return;
    worker_stop(t->writer); /* its last tick applies what the journal holds */
    if (t->jfd >= 0)
        close(t->jfd);
    free(t->chunk);
    for (int i = 0; i < LINK_CACHE; i++)
        message_template_free(t->cache[i].mt);
    pthread_mutex_destroy(&t->cache_mu);
    pthread_mutex_destroy(&t->mu);
    pthread_mutex_destroy(&t->jmu);
    free(t);
}

int64_t tracker_pending_bytes(struct tracker *t)
{
    struct stat sb;
    int64_t applied = __atomic_load_n(&t->applied, __ATOMIC_RELAXED), n = 0;

    pthread_mutex_lock(&t->jmu);
    if (fstat(t->jfd, &sb) == 0)
        n = sb.st_size - applied;
    pthread_mutex_unlock(&t->jmu);
    return n > 0 ? n : 0;
}

/* ---- the hits -------------------------------------------------------------------------- */

/* The token's fields when it is of kind want; else E_NOTFOUND. */
static int check(const struct tracker *t, const char *token, char want, int64_t *run_id,
                 int64_t *contact_id, int *link, struct err *e)
{
    char kind;

    if (token_check(t->env->token_key, token, &kind, run_id, contact_id, link) || kind != want)
        return ERR(e, E_NOTFOUND, "this link is not valid");
    return 0;
}

/* Apple Mail Privacy Protection fetches every image through a proxy whose User-Agent is
 * exactly this, whether or not the recipient opened the message. */
static int machine_agent(const char *ua)
{
    return ua && strcmp(ua, "Mozilla/5.0") == 0;
}

int tracker_open(struct tracker *t, const char *token, const char *user_agent, struct err *e)
{
    struct hit h = {0};
    int link, rc = check(t, token, 'o', &h.run_id, &h.contact_id, &link, e);

    if (rc)
        return rc;
    h.ev.kind = MEV_OPENED;
    h.ev.user_agent = user_agent;
    h.ev.machine = machine_agent(user_agent);
    rc = record_hit(t, &h, e);
    if (rc == 0)
        metric_add(t->hits[0], 1);
    return rc;
}

struct run_fields {
    int64_t template_id;
    int version, opens, clicks;
};

static int keep_run(void *ctx, const struct store_run *r)
{
    struct run_fields *f = ctx;

    f->template_id = r->template_id;
    f->version = r->template_version;
    f->opens = r->track_opens;
    f->clicks = r->track_clicks;
    return 0;
}

struct tv {
    struct message_template *mt;
    struct errlist errs;
    struct err e;
};

static int compile_tv(void *ctx, const struct store_template *st)
{
    struct tv *v = ctx;

    message_template_compile(st, &v->mt, &v->errs, &v->e);
    return 0;
}

/* The run's template version compiled and tracked as the dispatcher rendered it. */
static int load_run_template(struct store *st, int64_t run_id, struct message_template **out,
                             struct err *e)
{
    struct run_fields f = {0};
    struct tv v = {0};
    int rc = store_run_get(st, run_id, keep_run, &f, e);

    if (rc == 0 && f.version == 0)
        rc = ERR(e, E_NOTFOUND, "run %lld never started", (long long)run_id);
    if (rc == 0)
        rc = store_template_version_get(st, f.template_id, f.version, compile_tv, &v, e);
    if (rc == 0 && v.mt == NULL)
        rc = ERR(e, E_NOTFOUND, "the run's template does not compile any more");
    if (rc == 0)
        rc = message_template_track(v.mt, f.opens, f.clicks, e);
    if (rc) {
        message_template_free(v.mt);
        return rc;
    }
    *out = v.mt;
    return 0;
}

/* The URL of link `link` of run's messages for c: from the cached template, loaded on
 * first use (the least recently used entry makes room). The link is rendered under the
 * cache's lock, so an entry is never freed while in use. c NULL: NEEDS_CONTACT when the link
 * needs the contact's values (it holds {{ }} tokens), so that a plain link costs no read
 * of the contact. */
static int link_url(struct tracker *t, struct store *(*store)(void *ctx), void *ctx, int64_t run_id,
                    int link, const struct message_contact *c, struct buf *url, struct err *e)
{
    static const struct message_contact no_contact;
    struct message_template *mt = NULL;
    struct cached_run *slot = NULL;
    int i, rc;

    for (int pass = 0; pass < 2; pass++) {
        pthread_mutex_lock(&t->cache_mu);
        for (i = 0; i < LINK_CACHE && slot == NULL; i++)
            if (t->cache[i].mt && t->cache[i].run_id == run_id)
                slot = &t->cache[i];
        if (slot == NULL && mt) { /* loaded: take the oldest slot */
            slot = &t->cache[0];
            for (i = 1; i < LINK_CACHE; i++)
                if (t->cache[i].used < slot->used)
                    slot = &t->cache[i];
            message_template_free(slot->mt);
            slot->mt = mt;
            slot->run_id = run_id;
            mt = NULL;
        }
        if (slot) {
            slot->used = ++t->clock;
            if (c == NULL && message_template_link(slot->mt, (size_t)link) &&
                strstr(message_template_link(slot->mt, (size_t)link), "{{"))
                rc = NEEDS_CONTACT;
            else
                rc = message_link_url(slot->mt, (size_t)link, c ? c : &no_contact, url, e);
            pthread_mutex_unlock(&t->cache_mu);
            message_template_free(mt); /* another request loaded it meanwhile */
            return rc;
        }
        pthread_mutex_unlock(&t->cache_mu);
        rc = load_run_template(store(ctx), run_id, &mt, e);
        if (rc)
            return rc;
    }
    message_template_free(mt);
    return ERR(e, E_INTERNAL, "link cache");
}

int tracker_click(struct tracker *t, struct store *(*store)(void *ctx), void *ctx,
                  const char *token, const char *user_agent, struct buf *url, int *recorded,
                  struct err *e)
{
    struct hit h = {0};
    struct store_contact c;
    struct message_contact mc = {0};
    int link, rc = check(t, token, 'c', &h.run_id, &h.contact_id, &link, e);

    *recorded = 0;
    if (rc)
        return rc;
    store_contact_init(&c);
    rc = link_url(t, store, ctx, h.run_id, link, NULL, url, e);
    if (rc == NEEDS_CONTACT) { /* a link written with {{ }} tokens: the contact's values */
        if (store_contact_get(store(ctx), h.contact_id, &c, e) == 0) {
            mc.external_id = c.external_id;
            mc.email = c.email;
            mc.attrs = c.attrs;
        }
        err_clear(e);
        rc = link_url(t, store, ctx, h.run_id, link, &mc, url, e);
    }
    store_contact_release(&c);
    if (rc == E_INVAL || rc == E_NOTFOUND) {
        err_clear(e);
        return ERR(e, E_NOTFOUND, "this link is not valid");
    }
    if (rc)
        return rc;
    h.ev.kind = MEV_CLICKED;
    h.ev.url = url->p;
    h.ev.user_agent = user_agent;
    if (record_hit(t, &h, e) == 0) {
        *recorded = 1;
        metric_add(t->hits[1], 1);
    }
    return 0; /* the redirect is answered even when the click could not be stored */
}

int tracker_unsubscribe(struct tracker *t, struct store *st, const char *token, int apply,
                        struct unsubscribe_view *v, struct err *e)
{
    struct hit h = {0};
    char source_id[48];
    int link, rc = check(t, token, 'u', &h.run_id, &h.contact_id, &link, e);

    if (rc) {
        err_clear(e);
        return ERR(e, E_NOTFOUND, "this unsubscribe link is not valid");
    }
    if (apply) {
        store_message_id(h.run_id, h.contact_id, source_id, sizeof source_id);
        h.ev.kind = MEV_UNSUBSCRIBED;
        h.ev.source_id = source_id; /* one per message: a second POST changes nothing */
        rc = record(t, &h, e);
        if (rc)
            return rc;
        metric_add(t->hits[2], 1);
    }
    return unsubscribe_view(st, t->env, token, v, e);
}
