/* campaign/engagement.c -- message events applied: what happened to a message after the
 * provider took it, from every source, in one model (campaign.h, "engagement").
 *
 * DESIGN: an event is stored once (message_events, unique on its source's id), then
 * folded into state that only grows: the ledger row's kind bits (messages.events) are set,
 * never cleared, so events arriving late or out of order move nothing back (delivered
 * after opened is both) and a kind is counted once per message however many sources
 * report it. Counters per run and per minute are gathered as deltas in memory and
 * written once per key by engagement_flush, in the same transaction as the events, so
 * they always equal a recount of the stored events (tests/e2e's storm test checks it).
 * Consent follows the provider's or the recipient's word, and each event lands as a
 * contact event (email_opened, ...) through the ingest session whose transaction this
 * all runs in, checked by its contract like any other event. */
#include <stdlib.h>
#include <string.h>

#include "../consent/consent.h"
#include "../core/map.h"
#include "../ingest/ingest.h"
#include "../store/store.h"
#include "campaign.h"

static const char *const kind_names[MEV_KINDS] = {
    [MEV_DELIVERED] = "delivered",       [MEV_DEFERRED] = "deferred",
    [MEV_DROPPED] = "dropped",           [MEV_BOUNCED_HARD] = "bounced_hard",
    [MEV_BOUNCED_SOFT] = "bounced_soft", [MEV_COMPLAINED] = "complained",
    [MEV_UNSUBSCRIBED] = "unsubscribed", [MEV_OPENED] = "opened",
    [MEV_CLICKED] = "clicked",           [MEV_CONVERTED] = "converted",
};

const char *mev_kind_name(enum mev_kind k)
{
    return (unsigned)k < MEV_KINDS ? kind_names[k] : NULL;
}

enum mev_kind mev_kind_parse(const char *s)
{
    for (int k = 1; s && k < MEV_KINDS; k++)
        if (strcmp(s, kind_names[k]) == 0)
            return (enum mev_kind)k;
    return MEV_NONE;
}

/* The contact event of each kind, and the property that holds its time. */
static const struct {
    const char *name, *at;
} contact_events[MEV_KINDS] = {
    [MEV_DELIVERED] = {"email_delivered", "delivered_at"},
    [MEV_BOUNCED_HARD] = {"email_bounced", "bounced_at"},
    [MEV_BOUNCED_SOFT] = {"email_bounced", "bounced_at"},
    [MEV_COMPLAINED] = {"email_complained", "complained_at"},
    [MEV_UNSUBSCRIBED] = {"email_unsubscribed", "unsubscribed_at"},
    [MEV_OPENED] = {"email_opened", "opened_at"},
    [MEV_CLICKED] = {"email_clicked", "clicked_at"},
};

/* ---- counter deltas ------------------------------------------------------------------ */

struct delta_key {
    int64_t run_id, minute; /* minute -1: the run's total */
    int64_t metric;
};
struct delta {
    struct delta_key k;
    int64_t n;
    double x;
};

struct engagement {
    struct ingest *in;
    struct strmap index; /* struct delta_key bytes -> index in d */
    struct delta *d;
    size_t n, cap;
};

struct engagement *engagement_new(struct ingest *in)
{
    struct engagement *g = xcalloc(1, sizeof *g);

    g->in = in;
    strmap_init(&g->index);
    return g;
}

void engagement_free(struct engagement *g)
{
    if (g == NULL)
        return;
    strmap_release(&g->index);
    free(g->d);
    free(g);
}

void engagement_discard(struct engagement *g)
{
    strmap_clear(&g->index);
    g->n = 0;
}

static void add_one(struct engagement *g, int64_t run_id, int64_t minute, int metric, int64_t n,
                    double x)
{
    struct delta_key k = {run_id, minute, metric};
    int64_t at;

    if (!strmap_get(&g->index, (const char *)&k, sizeof k, &at)) {
        if (g->n == g->cap) {
            g->cap = g->cap ? g->cap * 2 : 64;
            g->d = xrealloc(g->d, g->cap * sizeof *g->d);
        }
        at = (int64_t)g->n++;
        g->d[at] = (struct delta){.k = k};
        strmap_put(&g->index, (const char *)&k, sizeof k, at);
    }
    g->d[at].n += n;
    g->d[at].x += x;
}

/* n (and x) to the run's total and to its minute. */
static void count(struct engagement *g, int64_t run_id, int64_t minute, int metric, int64_t n,
                  double x)
{
    add_one(g, run_id, -1, metric, n, x);
    add_one(g, run_id, minute, metric, n, x);
}

int engagement_flush(struct engagement *g, struct err *e)
{
    size_t i;
    int rc = 0;

    for (i = 0; rc == 0 && i < g->n; i++) {
        const struct delta *d = &g->d[i];
        if (d->k.minute < 0) /* the run's total */
            rc = store_stat_add(g->in->st, d->k.run_id, (int)d->k.metric, d->n, d->x, e);
        else
            rc = store_stat_minute_add(g->in->st, d->k.run_id, (int)d->k.metric, d->k.minute, d->n,
                                       d->x, e);
    }
    if (rc == 0)
        engagement_discard(g);
    return rc;
}

int engagement_finish(struct engagement *g, int rc, struct err *e)
{
    if (rc == 0)
        rc = engagement_flush(g, e);
    if (rc == 0 && (rc = ingest_commit(g->in, e)) == 0)
        return 0;
    engagement_discard(g);
    ingest_rollback(g->in);
    return rc;
}

/* ---- consent --------------------------------------------------------------------------- */

int engagement_consent(struct store *st, int64_t contact_id, int to, const char *source,
                       const char *reason, int64_t now, int *changed, struct err *e)
{
    struct store_contact c;
    int from, rc;

    *changed = 0;
    store_contact_init(&c);
    rc = store_contact_get(st, contact_id, &c, e);
    if (rc == E_NOTFOUND) { /* gone since: nothing to change */
        err_clear(e);
        rc = 0;
        goto out;
    }
    if (rc || c.deleted)
        goto out;
    from = (int)c.consent;
    /* Unsubscribing moves only a subscribed contact: the bulk rule would also move bounced
     * or complained to unsubscribed, and lose the stronger signal. */
    if (to == CONSENT_UNSUBSCRIBED
            ? from != CONSENT_SUBSCRIBED
            : consent_decide(c.consent, (enum consent_state)to, CONSENT_VIA_BULK) != CONSENT_APPLY)
        goto out;
    rc = store_consent_log(st, c.id, from, to, source, reason, now, e);
    if (rc == 0) {
        c.consent = (enum consent_state)to;
        c.updated_at = now;
        rc = store_contact_update(st, &c, e); /* a new seq: segments see it */
    }
    if (rc == 0)
        *changed = 1;
out:
    store_contact_release(&c);
    return rc;
}

/* ---- the contact event ------------------------------------------------------------------ */

static int contact_event(struct engagement *g, const char *source, const struct store_mevent *me,
                         const struct store_msg_engagement *row, struct err *e)
{
    const char *name = contact_events[me->kind].name;
    struct ingest_ctx cx = {
        .kind = SRC_API, .source = "engage", .origin = source, .received_at = me->received_at};
    enum ingest_outcome outcome;
    char at[32], id[64], mid[48], campaign[24], run[24];
    json_t *props, *rec;
    int rc;

    if (name == NULL || row->external_id[0] == '\0')
        return 0; /* no event for this kind, or a contact without an external id */
    time_format_iso(me->at, at);
    snprintf(id, sizeof id, "engage:message_event:%lld", (long long)me->id);
    store_message_id(row->run_id, row->contact_id, mid, sizeof mid);
    snprintf(campaign, sizeof campaign, "%lld", (long long)row->campaign_id);
    snprintf(run, sizeof run, "%lld", (long long)row->run_id);
    props = json_pack("{s:s,s:s,s:s,s:s,s:s}", "campaign_id", campaign, "run_id", run, "message_id",
                      mid, contact_events[me->kind].at, at, "source", source);
    if (me->kind == MEV_BOUNCED_HARD || me->kind == MEV_BOUNCED_SOFT)
        json_object_set_new(props, "bounce",
                            json_string(me->kind == MEV_BOUNCED_HARD ? "hard" : "soft"));
    if (me->reason)
        json_object_set_new(props, "reason", json_string(me->reason));
    if (me->kind == MEV_CLICKED && me->url)
        json_object_set_new(props, "url", json_string(me->url));
    if (me->kind == MEV_OPENED)
        json_object_set_new(props, "machine", json_boolean(me->machine));
    rec = json_pack("{s:s,s:s,s:s,s:o}", "external_id", row->external_id, "event", name, "event_id",
                    id, "properties", props);
    rc = rec ? ingest_event(g->in, &cx, rec, &outcome, e) : 0; /* NULL: not UTF-8, dropped */
    json_decref(rec);
    return rc;
}

/* ---- applying --------------------------------------------------------------------------- */

/* The consent change a kind brings, or -1. */
static int consent_of(enum mev_kind k)
{
    switch (k) {
    case MEV_BOUNCED_HARD:
        return CONSENT_BOUNCED;
    case MEV_COMPLAINED:
        return CONSENT_COMPLAINED;
    case MEV_UNSUBSCRIBED:
        return CONSENT_UNSUBSCRIBED;
    default:
        return -1;
    }
}

/* The consent history's source for an event's: the recipient's own act, the send (a hard
 * bounce at SMTP time), else the source itself ("webhook:NAME": the provider behind it). */
static const char *consent_source(const char *source)
{
    if (strcmp(source, "tracking") == 0 || strcmp(source, "unsubscribe") == 0)
        return "recipient";
    if (strcmp(source, "smtp") == 0)
        return "send";
    return source;
}

static int apply_row(struct engagement *g, const char *source, const struct mev *ev,
                     const struct store_msg_engagement *row, int64_t received_at,
                     enum engagement_outcome *out, struct err *e)
{
    struct store *st = g->in->st;
    struct store_mevent me = {
        .source = source,
        .source_id = ev->source_id,
        .kind = ev->kind,
        .run_id = row ? row->run_id : 0,
        .contact_id = row ? row->contact_id : 0,
        .message_row = row ? row->id : 0,
        .queue_id = ev->queue_id,
        .email = ev->email              ? ev->email
                 : row && row->email[0] ? row->email
                                        : NULL,
        .at = ev->at_ms > 0 ? ev->at_ms : received_at,
        .received_at = received_at,
        .reason = ev->reason,
        .url = ev->url,
        .user_agent = ev->user_agent,
        .machine = ev->machine,
        .value = ev->value,
    };
    unsigned bits, bit = 1u << ev->kind;
    int64_t minute;
    int rc, inserted, to;

    if (ev->kind <= MEV_NONE || ev->kind >= MEV_KINDS)
        return ERR(e, E_INVAL, "unknown message event kind %d", (int)ev->kind);
    rc = store_mevent_insert(st, &me, &inserted, e);
    if (rc)
        return rc;
    if (!inserted) {
        *out = ENGAGEMENT_DUPLICATE;
        return 0;
    }
    minute = me.at / 60000;
    if (row == NULL) {
        count(g, 0, minute, STAT_EVENTS_UNKNOWN, 1, 0);
        *out = ENGAGEMENT_UNKNOWN;
        return 0;
    }
    *out = ENGAGEMENT_APPLIED;
    bits = row->events;
    if (ev->kind == MEV_OPENED && ev->machine) {
        /* counted apart, and not as an open: docs/analytics.md, "Machine opens" */
        count(g, row->run_id, minute, STAT_OPENS_MACHINE, 1, 0);
        return contact_event(g, source, &me, row, e);
    }
    if (ev->kind == MEV_OPENED)
        count(g, row->run_id, minute, STAT_OPENS, 1, 0);
    if (ev->kind == MEV_CLICKED) {
        count(g, row->run_id, minute, STAT_CLICKS, 1, 0);
        /* a click is an open too (the pixel may have been blocked) */
        if (!(bits & (1u << MEV_OPENED))) {
            bits |= 1u << MEV_OPENED;
            count(g, row->run_id, minute, STAT_KIND + MEV_OPENED, 1, 0);
        }
    }
    if (!(bits & bit)) {
        bits |= bit;
        count(g, row->run_id, minute, STAT_KIND + ev->kind, 1, ev->value);
        to = consent_of(ev->kind);
        if (to >= 0) {
            char reason[160];
            int changed;
            snprintf(reason, sizeof reason, "%s, message %lld.%lld of campaign run %lld%s%.100s",
                     mev_kind_name(ev->kind), (long long)row->run_id, (long long)row->contact_id,
                     (long long)row->run_id, ev->reason ? ": " : "", ev->reason ? ev->reason : "");
            rc = engagement_consent(st, row->contact_id, to, consent_source(source), reason,
                                    received_at, &changed, e);
        }
    } else if (ev->kind == MEV_CONVERTED) {
        count(g, row->run_id, minute, STAT_KIND + MEV_CONVERTED, 0, ev->value); /* revenue */
    }
    if (rc == 0 && bits != row->events)
        rc = store_message_set_events(st, row->id, bits, e);
    if (rc == 0)
        rc = contact_event(g, source, &me, row, e);
    return rc;
}

int engagement_apply(struct engagement *g, const char *source, const struct mev *ev,
                     int64_t received_at, enum engagement_outcome *out, struct err *e)
{
    struct store_msg_engagement row;
    int64_t run_id, contact_id;
    int rc = E_NOTFOUND;

    if (ev->message_id && store_message_id_parse(ev->message_id, &run_id, &contact_id) == 0)
        rc = store_message_engagement(g->in->st, run_id, contact_id, &row, e);
    if (rc == E_NOTFOUND && ev->queue_id) {
        err_clear(e);
        rc = store_message_by_queue_id(g->in->st, ev->queue_id, &row, e);
    }
    if (rc == E_NOTFOUND) {
        err_clear(e);
        return apply_row(g, source, ev, NULL, received_at, out, e);
    }
    return rc ? rc : apply_row(g, source, ev, &row, received_at, out, e);
}

int engagement_apply_to(struct engagement *g, const char *source, const struct mev *ev,
                        int64_t run_id, int64_t contact_id, int64_t received_at,
                        enum engagement_outcome *out, struct err *e)
{
    struct store_msg_engagement row;
    int rc = store_message_engagement(g->in->st, run_id, contact_id, &row, e);

    if (rc == E_NOTFOUND) {
        err_clear(e);
        return apply_row(g, source, ev, NULL, received_at, out, e);
    }
    return rc ? rc : apply_row(g, source, ev, &row, received_at, out, e);
}
