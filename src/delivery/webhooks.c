/* delivery/webhooks.c -- provider webhooks: [webhook:NAME] sections, the request at POST
 * /webhooks/NAME, and the inbox worker that applies what was stored (delivery.h).
 *
 * DESIGN: a request is verified first (the type's signature, credentials or HMAC; a
 * request that fails is 401 and nothing is kept: it is not the provider's), read once to
 * tell a malformed body at once (400: the sender learns; the body is still kept, and
 * fails in the inbox where an operator sees it), then its raw bytes are committed to the
 * inbox and the request is answered. The inbox worker claims bodies under a lease, parses
 * each again (cheap, and the stored bytes stay the one truth) and applies its events in
 * one transaction with the body's outcome, so a body is applied exactly once: a crash
 * before that commit leaves it pending, and the lease lets it be taken again. Events of
 * messages we do not know are stored and counted, and the body is answered 200 all the
 * same: an error would only make the provider retry for a day. */
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../core/metrics.h"
#include "../core/worker.h"
#include "../ingest/ingest.h"
#include "../store/store.h"
#include "delivery.h"

enum hook_type { HOOK_SENDGRID, HOOK_SES, HOOK_MAILGUN, HOOK_POSTMARK, HOOK_GENERIC };
static const char *const type_names[] = {"sendgrid", "ses", "mailgun", "postmark", "generic"};
#define NTYPES (sizeof type_names / sizeof *type_names)

#define INBOX_BATCH 8               /* bodies claimed at once */
#define INBOX_LEASE_MS (5 * MIN_MS) /* longer than any body takes */
#define INBOX_KEEP_MS HOUR_MS       /* done bodies are kept this long (replay checks, looks) */

struct hook {
    const struct config_named *cfg;
    enum hook_type type;
    void *sg_key; /* sendgrid: the public key */
    struct metric_series *received, *refused, *events;
};

struct webhooks {
    const struct send_env *env;
    struct hook *hooks;
    size_t n;
    struct sns_certs *certs; /* one cache for every ses hook; NULL without one */
    struct worker *w;
    struct ingest in; /* the worker's */
    struct engagement *eng;
    char owner[96];
    int64_t last_prune;
    struct metric_series *unknown, *applied, *duplicates, *failed_bodies;
};

static struct hook *find(struct webhooks *w, const char *name)
{
    for (size_t i = 0; name && i < w->n; i++)
        if (strcmp(w->hooks[i].cfg->name, name) == 0)
            return &w->hooks[i];
    return NULL;
}

/* ---- parsing a stored body ------------------------------------------------------------- */

/* The events of body for hook h, into l. For an SNS confirmation *confirm is set (and m
 * filled) instead; no events. */
static int parse(struct webhooks *w, const struct hook *h, const char *body, size_t len,
                 struct mev_list *l, struct sns_msg *m, int *confirm, struct err *e)
{
    int rc;

    *confirm = 0;
    switch (h->type) {
    case HOOK_SENDGRID:
        return sendgrid_parse(body, len, l, e);
    case HOOK_MAILGUN:
        return mailgun_parse(body, len, l, e);
    case HOOK_POSTMARK:
        return postmark_parse(body, len, l, e);
    case HOOK_GENERIC:
        return generic_parse(body, len, l, e);
    case HOOK_SES:
        rc = sns_read(body, len, l->a, m, e);
        if (rc)
            return rc;
        if (m->type == SNS_SUBSCRIPTION_CONFIRMATION) {
            *confirm = 1;
            return 0;
        }
        if (m->type != SNS_NOTIFICATION)
            return 0; /* an UnsubscribeConfirmation: nothing to apply */
        return ses_parse(m, l, e);
    }
    (void)w;
    return ERR(e, E_INTERNAL, "webhook type %d", (int)h->type);
}

/* ---- the request ------------------------------------------------------------------------ */

static void answer(struct webhook_answer *out, int status, const char *code, const char *fmt,
                   const char *detail)
{
    out->status = status;
    out->code = code;
    snprintf(out->msg, sizeof out->msg, fmt, detail ? detail : "");
}

/* 0 when rq is from hook h's provider; else the answer is set. dedupe: a replay key to
 * store with the body (Mailgun's token), "" for none. */
static int verify(struct webhooks *w, const struct hook *h, const struct webhook_request *rq,
                  struct arena *a, char *dedupe, size_t cap, struct webhook_answer *out)
{
    const struct config_named *c = h->cfg;
    struct err e = {0};
    int64_t now = clock_now_ms();
    int rc = 0;

    dedupe[0] = '\0';
    if (c->insecure && c->secret == NULL && h->type != HOOK_SES)
        return 0;
    switch (h->type) {
    case HOOK_SENDGRID:
        rc = sendgrid_verify(
            h->sg_key, rq->header(rq->ctx, "X-Twilio-Email-Event-Webhook-Timestamp"),
            rq->header(rq->ctx, "X-Twilio-Email-Event-Webhook-Signature"), rq->body, rq->len, &e);
        break;
    case HOOK_MAILGUN: {
        char token[MAILGUN_TOKEN_MAX];
        rc = mailgun_verify((const unsigned char *)c->secret, strlen(c->secret), rq->body, rq->len,
                            now, c->max_age_s, token, &e);
        if (rc == 0)
            snprintf(dedupe, cap, "%s", token);
        if (rc == E_FORBIDDEN) { /* 406 stops Mailgun's retries */
            answer(out, 406, "stale", "%s", e.msg);
            return -1;
        }
        break;
    }
    case HOOK_POSTMARK:
        rc = postmark_verify(rq->header(rq->ctx, "Authorization"), c->username, c->secret, &e);
        break;
    case HOOK_GENERIC:
        rc = generic_verify((const unsigned char *)c->secret, strlen(c->secret),
                            rq->header(rq->ctx, "X-Engage-Timestamp"),
                            rq->header(rq->ctx, "X-Engage-Signature"), rq->body, rq->len, now,
                            c->max_age_s, &e);
        break;
    case HOOK_SES: {
        struct sns_msg m;
        rc = sns_read(rq->body, rq->len, a, &m, &e);
        if (rc) {
            answer(out, 400, "invalid_body", "%s", e.msg);
            return -1;
        }
        if (c->topic_arn[0] && strcmp(m.topic_arn, c->topic_arn) != 0) {
            answer(out, 403, "forbidden", "this endpoint takes notifications of topic %s only",
                   c->topic_arn);
            return -1;
        }
        if (!c->insecure)
            rc = sns_certs_verify(w->certs, &m, &e);
        if (rc == E_IO) { /* SNS retries a 5xx */
            answer(out, 503, "unavailable", "%s", e.msg);
            return -1;
        }
        break;
    }
    }
    if (rc) {
        answer(out, 401, "unauthorized", "%s", e.msg[0] ? e.msg : "not verified");
        return -1;
    }
    return 0;
}

void webhooks_receive(struct webhooks *w, struct store *st, const struct webhook_request *rq,
                      struct webhook_answer *out)
{
    struct hook *h = find(w, rq->name);
    char dedupe[MAILGUN_TOKEN_MAX];
    struct arena a;
    struct mev_list l;
    struct sns_msg m;
    struct err e = {0}, pe = {0};
    int confirm = 0, prc, rc;

    memset(out, 0, sizeof *out);
    if (h == NULL) {
        answer(out, 404, "not_found", "no webhook is configured under this name%s", NULL);
        return;
    }
    arena_init(&a);
    if (verify(w, h, rq, &a, dedupe, sizeof dedupe, out)) {
        metric_add(h->refused, 1);
        goto done;
    }
    mev_list_init(&l, &a);
    prc = parse(w, h, rq->body, rq->len, &l, &m, &confirm, &pe);
    rc = store_begin(st, &e);
    if (rc == 0)
        rc = store_inbox_insert(st, h->cfg->name, dedupe[0] ? dedupe : NULL, rq->body, rq->len,
                                clock_now_ms(), &out->id, &e);
    rc = store_finish(st, rc, &e);
    if (rc == E_CONFLICT) { /* Mailgun's token seen before: a replay */
        metric_add(h->refused, 1);
        answer(out, 406, "replayed", "%s", e.msg);
        goto done;
    }
    if (rc) {
        log_warn("webhook", "%s: the body could not be stored: %s", h->cfg->name, e.msg);
        answer(out, 503, "unavailable", "the body could not be stored; retry later%s", NULL);
        goto done;
    }
    metric_add(h->received, 1);
    worker_wake(w->w);
    if (prc) {
        answer(out, prc == E_TOOBIG ? 413 : 400, "invalid_body", "%s", pe.msg);
        goto done;
    }
    out->status = 200;
    out->events = (int64_t)l.n;
done:
    arena_release(&a);
}

/* ---- the inbox worker ----------------------------------------------------------------- */

struct claimed {
    int64_t id;
    char hook[64];
    char *body;
    size_t len;
    int64_t received_at;
};

struct claim_ctx {
    struct claimed c[INBOX_BATCH];
    int n;
};

static int keep_claimed(void *ctx, const struct store_inbox *b)
{
    struct claim_ctx *k = ctx;
    struct claimed *c = &k->c[k->n++];

    c->id = b->id;
    snprintf(c->hook, sizeof c->hook, "%s", b->hook);
    c->body = xmalloc(b->len + 1);
    memcpy(c->body, b->body, b->len);
    c->body[b->len] = '\0';
    c->len = b->len;
    c->received_at = b->received_at;
    return 0;
}

/* Marks one body failed with why (its own transaction). */
static int fail_body(struct webhooks *w, struct store *st, const struct claimed *c, const char *why,
                     struct err *e)
{
    int held, rc = store_begin(st, e);

    if (rc == 0)
        rc =
            store_inbox_finish(st, c->id, w->owner, INBOX_FAILED, 0, why, clock_now_ms(), &held, e);
    metric_add(w->failed_bodies, 1);
    log_warn("webhook", "%s: body %lld failed: %s", c->hook, (long long)c->id, why);
    return store_finish(st, rc, e);
}

static int process(struct webhooks *w, struct store *st, const struct claimed *c, struct err *e)
{
    struct hook *h = find(w, c->hook);
    char source[80];
    struct arena a;
    struct mev_list l;
    struct sns_msg m;
    struct err pe = {0};
    int64_t applied = 0, unknown = 0, dups = 0;
    int confirm, held, rc;
    size_t i;

    if (h == NULL)
        return fail_body(w, st, c, "no [webhook] section of this name is configured now", e);
    arena_init(&a);
    mev_list_init(&l, &a);
    rc = parse(w, h, c->body, c->len, &l, &m, &confirm, &pe);
    if (rc == 0 && confirm) {
        rc = sns_confirm(&m, &pe);
        if (rc == 0)
            log_info("webhook", "%s: subscribed to SNS topic %s", c->hook, m.topic_arn);
    }
    if (rc) {
        arena_release(&a);
        return fail_body(w, st, c, pe.msg, e);
    }
    snprintf(source, sizeof source, "webhook:%s", c->hook);
    rc = ingest_begin(&w->in, e);
    for (i = 0; rc == 0 && i < l.n; i++) {
        enum engagement_outcome out;
        rc = engagement_apply(w->eng, source, &l.v[i], c->received_at, &out, e);
        applied += out == ENGAGEMENT_APPLIED;
        unknown += out == ENGAGEMENT_UNKNOWN;
        dups += out == ENGAGEMENT_DUPLICATE;
    }
    if (rc == 0)
        rc = store_inbox_finish(st, c->id, w->owner, INBOX_DONE, (int64_t)l.n, NULL, clock_now_ms(),
                                &held, e);
    rc = engagement_finish(w->eng, rc, e);
    arena_release(&a);
    if (rc == 0) {
        metric_add(h->events, l.n);
        metric_add(w->applied, (uint64_t)applied);
        metric_add(w->unknown, (uint64_t)unknown);
        metric_add(w->duplicates, (uint64_t)dups);
    }
    return rc;
}

static int inbox_tick(void *ctx, struct store *st, struct err *e)
{
    struct webhooks *w = ctx;
    int rc = 0;

    if (delivery_hold_apply())
        return 0;
    while (rc == 0 && !worker_stopping(w->w)) {
        struct claim_ctx k = {0};
        int i;
        rc = store_begin(st, e);
        if (rc == 0)
            rc = store_inbox_claim(st, w->owner, clock_now_ms(), INBOX_LEASE_MS, INBOX_BATCH,
                                   keep_claimed, &k, e);
        rc = store_finish(st, rc, e);
        for (i = 0; rc == 0 && i < k.n; i++)
            rc = process(w, st, &k.c[i], e);
        for (i = 0; i < k.n; i++)
            free(k.c[i].body);
        if (k.n == 0)
            break;
    }
    if (rc == 0 && clock_now_ms() - w->last_prune > MIN_MS) {
        int64_t n;
        rc = store_begin(st, e);
        if (rc == 0)
            rc = store_inbox_prune(st, clock_now_ms() - INBOX_KEEP_MS, &n, e);
        rc = store_finish(st, rc, e);
        w->last_prune = clock_now_ms();
    }
    return rc;
}

static void inbox_init(void *ctx, struct store *st)
{
    struct webhooks *w = ctx;

    ingest_init(&w->in, st, w->env->cfg);
    w->eng = engagement_new(&w->in);
}

static void inbox_fini(void *ctx, struct store *st)
{
    struct webhooks *w = ctx;

    (void)st;
    engagement_free(w->eng);
    w->eng = NULL;
    ingest_release(&w->in);
}

static const struct worker_def inbox_def = {
    .name = "webhook-inbox",
    .tick = inbox_tick,
    .interval_ms = 5000, /* woken by each body; the interval retakes expired leases */
    .backoff_min_ms = 1000,
    .backoff_max_ms = 30000,
    .store = WORKER_STORE,
    .init = inbox_init,
    .fini = inbox_fini,
};

/* ---- the sections ----------------------------------------------------------------------- */

static int setup_hook(struct webhooks *w, struct hook *h, struct err *e)
{
    const struct config_named *c = h->cfg;
    size_t t;

    for (t = 0; t < NTYPES && strcmp(c->type, type_names[t]); t++)
        ;
    if (t == NTYPES)
        return ERR(e, E_INVAL,
                   "[webhook:%s] type must be one of sendgrid, ses, mailgun, postmark, generic "
                   "(found \"%s\")",
                   c->name, c->type);
    h->type = (enum hook_type)t;
    if (h->type == HOOK_SES) {
        if (w->certs == NULL) {
            int rc = sns_certs_new(
                &w->certs, c->cert_url_pattern[0] ? c->cert_url_pattern : SNS_CERT_PATTERN_DEFAULT,
                e);
            if (rc)
                return ERR(e, E_INVAL, "[webhook:%s] cert_url_pattern: %s", c->name, e->msg);
        }
        if (c->topic_arn[0] == '\0' && !c->insecure)
            return ERR(e, E_INVAL,
                       "[webhook:%s] needs topic_arn (the SNS topic it takes notifications "
                       "from), or insecure = true",
                       c->name);
        return 0;
    }
    if (c->secret == NULL) {
        static const char *const what[] = {("public_key_env or public_key_file (the Event "
                                            "Webhook's verification key)"),
                                           "", "signing_key_env or signing_key_file",
                                           "username and password_env or password_file",
                                           "secret_env or secret_file"};
        if (c->insecure) {
            log_warn("webhook",
                     "[webhook:%s] is insecure = true: anyone who knows its URL can post "
                     "events to it",
                     c->name);
            return 0;
        }
        return ERR(e, E_INVAL, "[webhook:%s] (type %s) needs %s, or insecure = true", c->name,
                   c->type, what[h->type]);
    }
    if (h->type == HOOK_POSTMARK && c->username[0] == '\0')
        return ERR(e, E_INVAL, "[webhook:%s] (type postmark) needs username", c->name);
    if (h->type == HOOK_SENDGRID) {
        unsigned char der[512];
        size_t n = 0;
        if (sodium_base642bin(der, sizeof der, c->secret, strlen(c->secret), " \n\r\t", &n, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0)
            return ERR(e, E_INVAL, "[webhook:%s] the public key is not base64", c->name);
        h->sg_key = sendgrid_key_load(der, n, e);
        if (h->sg_key == NULL)
            return ERR(e, E_INVAL, "[webhook:%s] the public key: %s", c->name, e->msg);
    }
    return 0;
}

int webhooks_start(struct webhooks **out, struct worker_set *ws, const struct send_env *env,
                   struct metrics *m, struct err *e)
{
    static const struct metric_def defs[] = {
        {.name = "engage_webhook_requests_total",
         .help = "Webhook requests by hook and outcome (stored, refused).",
         .type = METRIC_COUNTER,
         .labels = "hook,outcome"},
        {.name = "engage_webhook_events_total",
         .help = "Events in processed webhook bodies, by hook.",
         .type = METRIC_COUNTER,
         .labels = "hook"},
        {.name = "engage_message_events_total",
         .help = "Provider events applied, by outcome (applied, duplicate, unknown message).",
         .type = METRIC_COUNTER,
         .labels = "outcome"},
        {.name = "engage_webhook_failed_bodies_total",
         .help = "Webhook bodies that could not be processed (kept, failed).",
         .type = METRIC_COUNTER},
    };
    struct webhooks *w = xcalloc(1, sizeof *w);
    struct metric *f[4] = {0};
    char host[64];
    size_t i;
    int rc = 0;

    *out = NULL;
    w->env = env;
    w->n = (size_t)env->cfg->nwebhooks;
    w->hooks = xcalloc(w->n ? w->n : 1, sizeof *w->hooks);
    if (m)
        for (i = 0; i < 4; i++)
            f[i] = metrics_add(m, &defs[i]);
    for (i = 0; rc == 0 && i < w->n; i++) {
        struct hook *h = &w->hooks[i];
        h->cfg = &env->cfg->webhooks[i];
        rc = setup_hook(w, h, e);
        if (rc == 0 && m) {
            const char *v1[2] = {h->cfg->name, "stored"}, *v2[2] = {h->cfg->name, "refused"};
            h->received = metric_series(f[0], v1);
            h->refused = metric_series(f[0], v2);
            h->events = metric_series(f[1], v1);
        }
    }
    if (rc == 0 && m) {
        const char *a[1] = {"applied"}, *d[1] = {"duplicate"}, *u[1] = {"unknown_message"};
        w->applied = metric_series(f[2], a);
        w->duplicates = metric_series(f[2], d);
        w->unknown = metric_series(f[2], u);
        w->failed_bodies = metric_series(f[3], NULL);
    }
    if (gethostname(host, sizeof host))
        snprintf(host, sizeof host, "host");
    host[sizeof host - 1] = '\0';
    snprintf(w->owner, sizeof w->owner, "inbox:%s:%d", host, (int)getpid());
    if (rc == 0)
        rc = worker_start(&w->w, ws, &inbox_def, w, e);
    if (rc) {
        webhooks_stop(w);
        return rc;
    }
    *out = w;
    return 0;
}

void webhooks_stop(struct webhooks *w)
{
    if (w == NULL)
        return;
    worker_stop(w->w);
    for (size_t i = 0; i < w->n; i++)
        sendgrid_key_free(w->hooks[i].sg_key);
    sns_certs_free(w->certs);
    free(w->hooks);
    free(w);
}
