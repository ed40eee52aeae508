/* ingest/contacts.c -- what the contacts API and the CLI's contact commands share: a
 * contact as JSON, and the changes an operator makes to one, each audited in the
 * transaction that makes it. */
#include <string.h>

#include "../auth/auth.h"
#include "ingest.h"

static int add_consent(void *ctx, const struct store_consent_change *ch)
{
    char ts[32];

    time_format_iso(ch->at, ts);
    json_array_append_new(ctx, json_pack("{s:s,s:s?,s:s,s:s,s:s?}", "at", ts, "from",
                                         ch->from < 0 ? NULL : consent_name(ch->from), "to",
                                         consent_name(ch->to), "source", ch->source, "reason",
                                         ch->reason && *ch->reason ? ch->reason : NULL));
    return 0;
}

json_t *event_json(const struct store_event *ev)
{
    char occ[32], rec[32];
    json_t *props = json_loads(ev->props ? ev->props : "{}", 0, NULL);

    time_format_iso(ev->occurred_at, occ);
    time_format_iso(ev->received_at, rec);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:o}", "event", ev->name ? ev->name : "", "event_id",
                     ev->event_id, "occurred_at", occ, "received_at", rec, "source", ev->source,
                     "contract_version", ev->contract_version, "properties",
                     props ? props : json_object());
}

static int add_event(void *ctx, const struct store_event *ev)
{
    json_array_append_new(ctx, event_json(ev));
    return 0;
}

json_t *contact_summary_json(const struct store_contact *c)
{
    char cts[32], uts[32];

    time_format_iso(c->created_at, cts);
    time_format_iso(c->updated_at, uts);
    return json_pack("{s:I,s:s?,s:s?,s:O,s:s,s:s,s:s}", "id", (json_int_t)c->id, "external_id",
                     c->external_id, "email", c->email, "attributes", c->attrs, "email_consent",
                     consent_name(c->consent), "created_at", cts, "updated_at", uts);
}

int contact_view(struct store *st, const char *xid, int recent, const int64_t *seqs, int nseqs,
                 json_t **out, struct err *e)
{
    struct store_contact c;
    json_t *hist = json_array(), *events = json_array();
    int rc;

    *out = NULL;
    store_contact_init(&c);
    rc = store_contact_get_by_xid(st, xid, &c, e);
    if (rc == E_NOTFOUND)
        rc = ERR(e, E_NOTFOUND, "no contact '%s'", xid);
    else if (rc == 0 && c.deleted)
        rc = ERR(e, E_NOTFOUND, "contact '%s' was deleted", xid);
    if (rc == 0)
        rc = store_consent_history(st, c.id, add_consent, hist, e);
    if (rc == 0 && seqs) {
        int i;
        for (i = 0; rc == 0 && i < nseqs; i++)
            rc = store_event_by_seq(st, seqs[i], add_event, events, e);
    } else if (rc == 0 && recent > 0) {
        rc = store_events_of_contact(st, c.id, recent, add_event, events, e);
    }
    if (rc == 0) {
        *out = contact_summary_json(&c);
        json_object_set_new(*out, "consent_history", hist);
        json_object_set_new(*out, "recent_events", events);
    } else {
        json_decref(hist);
        json_decref(events);
    }
    store_contact_release(&c);
    return rc;
}

int contact_consent_change(struct store *st, const struct config *cfg, const char *xid,
                           enum consent_state to, const char *source, const char *reason,
                           const char *actor, const char *req_id, enum consent_state *before,
                           struct err *e)
{
    struct ingest in;
    json_t *b, *a;
    int rc;

    ingest_init(&in, st, cfg);
    rc = store_begin(st, e);
    if (rc == 0)
        rc = ingest_set_consent(&in, xid, to, source, reason, before, e);
    if (rc == 0) {
        b = json_pack("{s:s}", "email_consent", consent_name(*before));
        a = json_pack("{s:s,s:s}", "email_consent", consent_name(to), "reason", reason);
        rc = audit_record(st, actor, "contact.consent", "contact", xid, b, a, req_id, e);
        json_decref(b);
        json_decref(a);
    }
    rc = store_finish(st, rc, e);
    ingest_release(&in);
    return rc;
}

/* Flags a contact deleted (to = 1) or takes the flag off (to = 0), audited in the same
 * transaction: a deletion with the contact as it was, a restore with it as it is now
 * (and the reason). *out (restore): the contact. */
static int set_deleted(struct store *st, const char *xid, int to, const char *reason,
                       const char *actor, const char *req_id, json_t **out, struct err *e)
{
    struct store_contact c;
    json_t *now;
    int rc;

    store_contact_init(&c);
    rc = store_begin(st, e);
    if (rc)
        return rc;
    rc = store_contact_get_by_xid(st, xid, &c, e);
    if (rc == E_NOTFOUND)
        rc = ERR(e, E_NOTFOUND, "no contact '%s'", xid);
    else if (rc == 0 && to && c.deleted)
        rc = ERR(e, E_NOTFOUND, "contact '%s' was deleted already", xid);
    else if (rc == 0 && !to && !c.deleted)
        rc = ERR(e, E_CONFLICT, "contact '%s' is not deleted", xid);
    else if (rc == 0 && !to && c.merged_into)
        rc = ERR(e, E_CONFLICT, "contact '%s' was merged into contact %lld: restore that one", xid,
                 (long long)c.merged_into);
    if (rc == 0) {
        json_t *was = to ? contact_summary_json(&c) : NULL;
        c.deleted = to;
        c.updated_at = clock_now_ms();
        /* A new seq: the audience index drops the contact, or takes it back. */
        rc = store_contact_update(st, &c, e);
        now = to ? NULL : contact_summary_json(&c);
        if (now && reason && *reason)
            json_object_set_new(now, "reason", json_string(reason));
        if (rc == 0)
            rc = audit_record(st, actor, to ? "contact.delete" : "contact.restore", "contact", xid,
                              was, now, req_id, e);
        json_decref(was);
        if (rc == 0 && out) {
            json_object_del(now, "reason");
            *out = json_incref(now);
        }
        json_decref(now);
    }
    rc = store_finish(st, rc, e);
    if (rc && out && *out) {
        json_decref(*out);
        *out = NULL;
    }
    store_contact_release(&c);
    return rc;
}

int contact_delete(struct store *st, const char *xid, const char *actor, const char *req_id,
                   struct err *e)
{
    return set_deleted(st, xid, 1, NULL, actor, req_id, NULL, e);
}

int contact_restore(struct store *st, const char *xid, const char *reason, const char *actor,
                    const char *req_id, json_t **out, struct err *e)
{
    *out = NULL;
    return set_deleted(st, xid, 0, reason, actor, req_id, out, e);
}

struct contact_page {
    json_t *items;
    int64_t last_id;
};

static int add_contact(void *ctx, const struct store_contact *c)
{
    struct contact_page *p = ctx;

    json_array_append_new(p->items, contact_summary_json(c));
    p->last_id = c->id;
    return 0;
}

int contacts_page_json(struct store *st, int64_t after_id, int limit, const char *email,
                       json_t **items, int64_t *last_id, struct err *e)
{
    struct contact_page p = {json_array(), 0};
    int rc = store_contacts_list(st, after_id, limit, email, add_contact, &p, e);

    if (rc) {
        json_decref(p.items);
        p.items = NULL;
    }
    *items = p.items;
    *last_id = p.last_id;
    return rc;
}
