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
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:o}", "event", ev->name ? ev->name : "",
                     "event_id", ev->event_id, "occurred_at", occ, "received_at", rec, "source",
                     ev->source, "contract_version", ev->contract_version, "properties",
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
                     c->external_id, "email", c->email, "attributes", c->attrs,
                     "email_consent", consent_name(c->consent), "created_at", cts,
                     "updated_at", uts);
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

int contact_delete(struct store *st, const char *xid, const char *actor, const char *req_id,
                   struct err *e)
{
    struct store_contact c;
    json_t *b;
    int rc;

    store_contact_init(&c);
    rc = store_begin(st, e);
    if (rc)
        return rc;
    rc = store_contact_get_by_xid(st, xid, &c, e);
    if (rc == E_NOTFOUND)
        rc = ERR(e, E_NOTFOUND, "no contact '%s'", xid);
    else if (rc == 0 && c.deleted)
        rc = ERR(e, E_NOTFOUND, "contact '%s' was deleted already", xid);
    if (rc == 0) {
        b = contact_summary_json(&c);
        c.deleted = 1;
        c.updated_at = clock_now_ms();
        rc = store_contact_update(st, &c, e); /* a new seq: the audience index drops it */
        if (rc == 0)
            rc = audit_record(st, actor, "contact.delete", "contact", xid, b, NULL, req_id, e);
        json_decref(b);
    }
    rc = store_finish(st, rc, e);
    store_contact_release(&c);
    return rc;
}

int contact_restore(struct store *st, const char *xid, const char *reason, const char *actor,
                    const char *req_id, json_t **out, struct err *e)
{
    struct store_contact c;
    json_t *a;
    int rc;

    *out = NULL;
    store_contact_init(&c);
    rc = store_begin(st, e);
    if (rc)
        return rc;
    rc = store_contact_get_by_xid(st, xid, &c, e);
    if (rc == E_NOTFOUND)
        rc = ERR(e, E_NOTFOUND, "no contact '%s'", xid);
    else if (rc == 0 && !c.deleted)
        rc = ERR(e, E_CONFLICT, "contact '%s' is not deleted", xid);
    else if (rc == 0 && c.merged_into)
        rc = ERR(e, E_CONFLICT, "contact '%s' was merged into contact %lld: restore that one", xid,
                 (long long)c.merged_into);
    if (rc == 0) {
        c.deleted = 0;
        c.updated_at = clock_now_ms();
        rc = store_contact_update(st, &c, e); /* a new seq: the audience index takes it back */
    }
    if (rc == 0) {
        *out = contact_summary_json(&c);
        a = json_deep_copy(*out);
        if (reason && *reason)
            json_object_set_new(a, "reason", json_string(reason));
        rc = audit_record(st, actor, "contact.restore", "contact", xid, NULL, a, req_id, e);
        json_decref(a);
    }
    rc = store_finish(st, rc, e);
    if (rc) {
        json_decref(*out);
        *out = NULL;
    }
    store_contact_release(&c);
    return rc;
}
