/* consent/consent.h -- email consent: its states, the sticky opt-out rule, the send check.
 *
 * DESIGN: the one place that says what consent means. A contact has one state; every
 * change is decided here (consent_decide) and logged by the caller (ingest writes the
 * change and its history through the store). The rule is sticky: a bulk source -- a CSV
 * import, a CRM sync, an SDK or native API record, a replay of dead letters -- may move a
 * contact to an opt-out state or between them, never from one back to subscribed; only an
 * explicit change with a reason (POST /api/v1/contacts/{id}/consent, `engage contact
 * consent`, both audited) can. Campaigns ask consent_allows_send() at send time.
 *
 * This header depends on nothing: the states are stored by the store and named by the
 * configuration ([ingest] default_consent), so they sit below both. Pure functions, any
 * thread. */
#ifndef ENGAGE_CONSENT_H
#define ENGAGE_CONSENT_H

enum consent_state {
    CONSENT_SUBSCRIBED,
    CONSENT_UNSUBSCRIBED,
    CONSENT_BOUNCED,
    CONSENT_COMPLAINED
};
#define CONSENT_STATES 4

/* "subscribed", "unsubscribed", "bounced", "complained"; "unknown" for anything else. */
const char *consent_name(enum consent_state s);
/* The state named s: 0, or E_INVAL. */
int consent_parse(const char *s, enum consent_state *out);

/* Who asks for a change: any ingestion path (bulk), or an explicit call with a reason
 * that the caller audits. */
enum consent_via { CONSENT_VIA_BULK, CONSENT_VIA_EXPLICIT };
enum consent_verdict {
    CONSENT_SAME,  /* to is the current state: nothing to do, nothing logged */
    CONSENT_APPLY, /* change it (and log the change) */
    CONSENT_KEEP   /* refused by the sticky rule: the opt-out stays (ingest counts it) */
};
/* The sticky rule: what a request to move a contact from `from` to `to` comes to. */
enum consent_verdict consent_decide(enum consent_state from, enum consent_state to,
                                    enum consent_via via);

/* Whether a campaign may email a contact in state s: subscribed only. */
int consent_allows_send(enum consent_state s);
/* The same for a contact as the store gives it: not deleted (merged contacts are
 * deleted too), with an email address, and subscribed. */
int consent_contact_allows_send(enum consent_state s, int deleted, const char *email);

#endif
