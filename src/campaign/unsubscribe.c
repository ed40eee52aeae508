/* campaign/unsubscribe.c -- what the page of an unsubscribe link shows: the link in every
 * message (List-Unsubscribe and the body's {{ unsubscribe_url }}). GET shows the page, an
 * RFC 8058 one-click POST acts (delivery/tracker.c: a message event like any other).
 *
 * DESIGN: the token (token.c) names the run and the contact and is HMAC-signed, so the
 * link needs no login, no cookie and no lookup table: a forged or altered one is simply
 * not found. */
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

int unsubscribe_view(struct store *st, const struct send_env *env, const char *token,
                     struct unsubscribe_view *out, struct err *e)
{
    struct store_contact c;
    int64_t run_id, contact_id;
    char kind;
    int link, rc;

    memset(out, 0, sizeof *out);
    if (token_check(env->token_key, token, &kind, &run_id, &contact_id, &link) || kind != 'u')
        return ERR(e, E_NOTFOUND, "this unsubscribe link is not valid");
    store_contact_init(&c);
    rc = store_contact_get(st, contact_id, &c, e);
    if (rc == E_NOTFOUND || (rc == 0 && c.deleted)) {
        err_clear(e);
        rc = ERR(e, E_NOTFOUND, "this unsubscribe link is not valid any more");
    }
    if (rc == 0) {
        mask(c.email, out->email_masked, sizeof out->email_masked);
        out->subscribed = c.consent == CONSENT_SUBSCRIBED;
    }
    store_contact_release(&c);
    return rc;
}
