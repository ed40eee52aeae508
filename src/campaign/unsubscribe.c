/* campaign/unsubscribe.c -- the recipient's own unsubscribe: the link in every message
 * (List-Unsubscribe and the body's {{ unsubscribe_url }}), GET shows a page, an RFC 8058
 * one-click POST acts.
 *
 * DESIGN: the token (token.c) names the run and the contact and is HMAC-signed, so the
 * link needs no login, no cookie and no lookup table: a forged or altered one is simply
 * not found. Unsubscribing is a consent change from subscribed to unsubscribed only (an
 * address already opted out, bounced or complained stays as it is) written
 * with its history row in one transaction. It is the recipient's act, not a
 * control-plane change: no audit row, the history says source "recipient". */
#include <string.h>

#include "../consent/consent.h"
#include "../store/store.h"
#include "campaign.h"

/* "j***@example.org": the first character of the local part, the domain. */
static void mask(const char *email, char *out, size_t cap)
{
    const char *at = email ? strchr(email, '@') : NULL;

    if (at == NULL || at == email)
        snprintf(out, cap, "your address");
    else
        snprintf(out, cap, "%c***%s", email[0], at);
}

int unsubscribe_by_token(struct store *st, const struct send_env *env, const char *token, int apply,
                         struct unsubscribe_view *out, struct err *e)
{
    struct store_contact c;
    int64_t run_id, contact_id;
    char kind, reason[96];
    int link, rc;

    memset(out, 0, sizeof *out);
    if (token_check(env->token_key, token, &kind, &run_id, &contact_id, &link) || kind != 'u')
        return ERR(e, E_NOTFOUND, "this unsubscribe link is not valid");
    store_contact_init(&c);
    rc = store_begin(st, e);
    if (rc)
        return rc;
    rc = store_contact_get(st, contact_id, &c, e);
    if (rc == E_NOTFOUND || (rc == 0 && c.deleted))
        rc = ERR(e, E_NOTFOUND, "this unsubscribe link is not valid any more");
    if (rc == 0) {
        mask(c.email, out->email_masked, sizeof out->email_masked);
        out->subscribed = c.consent == CONSENT_SUBSCRIBED;
        /* Only a subscribed contact changes: the bulk rule would also move bounced or
         * complained to unsubscribed, and lose the stronger signal. */
        if (apply && c.consent == CONSENT_SUBSCRIBED) {
            snprintf(reason, sizeof reason, "unsubscribe link of campaign run %lld",
                     (long long)run_id);
            rc = store_consent_log(st, c.id, (int)c.consent, CONSENT_UNSUBSCRIBED, "recipient",
                                   reason, clock_now_ms(), e);
            if (rc == 0) {
                c.consent = CONSENT_UNSUBSCRIBED;
                c.updated_at = clock_now_ms();
                rc = store_contact_update(st, &c, e); /* a new seq: segments see it */
            }
            if (rc == 0)
                out->subscribed = 0;
        }
    }
    store_contact_release(&c);
    return store_finish(st, rc, e);
}
