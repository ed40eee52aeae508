/* tests/unit/consent.c -- consent states, the sticky opt-out rule by every source, the
 * send check. The rule alone (consent_decide), then the same transitions end to end:
 * every ingestion source (CSV, SDK, CRM sync, native API, replay) and the explicit,
 * audited change, each tried from every state to every state against a real store. */
#include "consent/consent.h"
#include "helpers.h"
#include "ingest_fixture.h"

static const enum consent_state all_states[CONSENT_STATES] = {
    CONSENT_SUBSCRIBED, CONSENT_UNSUBSCRIBED, CONSENT_BOUNCED, CONSENT_COMPLAINED};

/* What the rule must say, written out rather than computed. */
static enum consent_verdict expected(enum consent_state from, enum consent_state to, int bulk)
{
    if (from == to)
        return CONSENT_SAME;
    if (bulk && from != CONSENT_SUBSCRIBED && to == CONSENT_SUBSCRIBED)
        return CONSENT_KEEP;
    return CONSENT_APPLY;
}

UTEST(consent, names_round_trip)
{
    enum consent_state s;
    int i;
    for (i = 0; i < CONSENT_STATES; i++) {
        cr_assert_eq(consent_parse(consent_name(all_states[i]), &s), 0);
        cr_assert_eq(s, all_states[i]);
    }
    cr_assert_str_eq(consent_name(CONSENT_SUBSCRIBED), "subscribed");
    cr_assert_str_eq(consent_name(CONSENT_UNSUBSCRIBED), "unsubscribed");
    cr_assert_str_eq(consent_name(CONSENT_BOUNCED), "bounced");
    cr_assert_str_eq(consent_name(CONSENT_COMPLAINED), "complained");
    cr_assert_str_eq(consent_name((enum consent_state)7), "unknown");
    cr_assert_eq(consent_parse("Subscribed", &s), E_INVAL);
    cr_assert_eq(consent_parse("", &s), E_INVAL);
    cr_assert_eq(consent_parse("unknown", &s), E_INVAL);
}

UTEST(consent, the_sticky_rule)
{
    int i, j;
    for (i = 0; i < CONSENT_STATES; i++) {
        for (j = 0; j < CONSENT_STATES; j++) {
            enum consent_state from = all_states[i], to = all_states[j];
            cr_assert_eq(consent_decide(from, to, CONSENT_VIA_BULK), expected(from, to, 1),
                         "bulk %s -> %s", consent_name(from), consent_name(to));
            cr_assert_eq(consent_decide(from, to, CONSENT_VIA_EXPLICIT), expected(from, to, 0),
                         "explicit %s -> %s", consent_name(from), consent_name(to));
        }
    }
    /* The three ways back that only an explicit change may take. */
    cr_assert_eq(consent_decide(CONSENT_UNSUBSCRIBED, CONSENT_SUBSCRIBED, CONSENT_VIA_BULK),
                 CONSENT_KEEP);
    cr_assert_eq(consent_decide(CONSENT_BOUNCED, CONSENT_SUBSCRIBED, CONSENT_VIA_BULK),
                 CONSENT_KEEP);
    cr_assert_eq(consent_decide(CONSENT_COMPLAINED, CONSENT_SUBSCRIBED, CONSENT_VIA_BULK),
                 CONSENT_KEEP);
}

UTEST(consent, send_check)
{
    cr_assert(consent_allows_send(CONSENT_SUBSCRIBED));
    cr_assert_not(consent_allows_send(CONSENT_UNSUBSCRIBED));
    cr_assert_not(consent_allows_send(CONSENT_BOUNCED));
    cr_assert_not(consent_allows_send(CONSENT_COMPLAINED));
    cr_assert_not(consent_allows_send((enum consent_state)7));
    cr_assert(consent_contact_allows_send(CONSENT_SUBSCRIBED, 0, "a@example.com"));
    cr_assert_not(consent_contact_allows_send(CONSENT_SUBSCRIBED, 1, "a@example.com"));
    cr_assert_not(consent_contact_allows_send(CONSENT_SUBSCRIBED, 0, NULL));
    cr_assert_not(consent_contact_allows_send(CONSENT_SUBSCRIBED, 0, ""));
    cr_assert_not(consent_contact_allows_send(CONSENT_UNSUBSCRIBED, 0, "a@example.com"));
    cr_assert_not(consent_contact_allows_send(CONSENT_COMPLAINED, 0, "a@example.com"));
}

static int count_changes(void *ctx, const struct store_consent_change *ch)
{
    (void)ch;
    ++*(int *)ctx;
    return 0;
}

/* The contact's state and the number of changes in its history. */
static enum consent_state state_of(struct fx *f, const char *xid, int *nchanges)
{
    struct store_contact c;
    enum consent_state s;
    store_contact_init(&c);
    cr_assert_eq(store_contact_get_by_xid(f->st, xid, &c, &f->e), 0, "%s: %s", xid, f->e.msg);
    *nchanges = 0;
    cr_assert_eq(store_consent_history(f->st, c.id, count_changes, nchanges, &f->e), 0);
    s = c.consent;
    store_contact_release(&c);
    return s;
}

/* A contact created in state from (its history: one entry). */
static void contact_in(struct fx *f, const char *xid, enum consent_state from)
{
    char rec[200];
    int n;
    snprintf(rec, sizeof rec, "{\"external_id\":\"%s\",\"email_consent\":\"%s\"}", xid,
             consent_name(from));
    cr_assert_eq(fx_ingest(f, SRC_API, 0, rec), INGEST_INSERTED);
    cr_assert_eq(state_of(f, xid, &n), from);
    cr_assert_eq(n, 1);
}

UTEST(consent, every_transition_by_every_bulk_source)
{
    static const struct {
        enum source_kind kind;
        const char *name;
    } sources[] = {{SRC_CSV, "csv"},
                   {SRC_SDK, "sdk"},
                   {SRC_SYNC, "sync"},
                   {SRC_API, "api"},
                   {SRC_REPLAY, "replay"}};
    struct fx f;
    size_t k;
    int i, j;

    fx_open(&f);
    for (k = 0; k < sizeof sources / sizeof *sources; k++) {
        cr_assert(source_is_bulk(sources[k].kind), "%s is a bulk source", sources[k].name);
        for (i = 0; i < CONSENT_STATES; i++) {
            for (j = 0; j < CONSENT_STATES; j++) {
                enum consent_state from = all_states[i], to = all_states[j];
                enum consent_verdict want = expected(from, to, 1);
                char xid[64], rec[300];
                int64_t kept = f.in.stats.consent_kept;
                int n;
                snprintf(xid, sizeof xid, "%s-%d-%d", sources[k].name, i, j);
                contact_in(&f, xid, from);
                /* With an attribute: a refused re-subscribe keeps the rest of the record. */
                snprintf(rec, sizeof rec,
                         "{\"external_id\":\"%s\",\"email_consent\":\"%s\","
                         "\"attributes\":{\"city\":\"Pune\"}}",
                         xid, consent_name(to));
                cr_assert_eq(fx_ingest(&f, sources[k].kind, 0, rec), INGEST_UPDATED, "%s %s -> %s",
                             sources[k].name, consent_name(from), consent_name(to));
                cr_assert_eq(state_of(&f, xid, &n), want == CONSENT_APPLY ? to : from,
                             "%s %s -> %s", sources[k].name, consent_name(from), consent_name(to));
                cr_assert_eq(n, want == CONSENT_APPLY ? 2 : 1, "%s %s -> %s: history",
                             sources[k].name, consent_name(from), consent_name(to));
                cr_assert_eq(f.in.stats.consent_kept - kept, want == CONSENT_KEEP,
                             "%s %s -> %s: consent_kept", sources[k].name, consent_name(from),
                             consent_name(to));
            }
        }
    }
    fx_close(&f);
}

UTEST(consent, every_transition_by_an_explicit_change)
{
    struct fx f;
    int i, j;

    fx_open(&f);
    for (i = 0; i < CONSENT_STATES; i++) {
        for (j = 0; j < CONSENT_STATES; j++) {
            enum consent_state from = all_states[i], to = all_states[j], before = from;
            char xid[64];
            int n;
            snprintf(xid, sizeof xid, "explicit-%d-%d", i, j);
            contact_in(&f, xid, from);
            /* Without a reason: refused, nothing changes. */
            cr_assert_eq(contact_consent_change(f.st, &f.cfg, xid, to, "api", "", "test", "r1",
                                                &before, &f.e),
                         E_INVAL);
            err_clear(&f.e);
            cr_assert_eq(state_of(&f, xid, &n), from);
            cr_assert_eq(n, 1);
            /* With one: every transition is taken, and audited. */
            cr_assert_eq(contact_consent_change(f.st, &f.cfg, xid, to, "api", "asked by phone",
                                                "test", "r1", &before, &f.e),
                         0, "%s", f.e.msg);
            cr_assert_eq(before, from);
            cr_assert_eq(state_of(&f, xid, &n), to, "explicit %s -> %s", consent_name(from),
                         consent_name(to));
            cr_assert_eq(n, from == to ? 1 : 2, "explicit %s -> %s: history", consent_name(from),
                         consent_name(to));
        }
    }
    cr_assert_eq(fx_sql_int(&f, "SELECT count(*) FROM audit WHERE action = 'contact.consent'"),
                 CONSENT_STATES * CONSENT_STATES);
    fx_close(&f);
}
