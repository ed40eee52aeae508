/* consent/consent.c -- consent states by name, the sticky opt-out rule, the send check.
 *
 * The rule is written once here; ingest calls consent_decide() for every source, the
 * explicit change included, and the unit tests (tests/unit/consent.c) try every
 * transition by every source. */
#include "consent.h"

#include <string.h>

#include "../core/core.h"

static const char *const consent_names[CONSENT_STATES] = {"subscribed", "unsubscribed", "bounced",
                                                          "complained"};

const char *consent_name(enum consent_state s)
{
    return (unsigned)s < CONSENT_STATES ? consent_names[s] : "unknown";
}

int consent_parse(const char *s, enum consent_state *out)
{
    int i;

    for (i = 0; i < CONSENT_STATES; i++) {
        if (strcmp(s, consent_names[i]) == 0) {
            *out = (enum consent_state)i;
            return 0;
        }
    }
    return E_INVAL;
}

enum consent_verdict consent_decide(enum consent_state from, enum consent_state to,
                                    enum consent_via via)
{
    if (from == to)
        return CONSENT_SAME;
    /* An opt-out (unsubscribed, bounced, complained) is lifted only on purpose. */
    if (via != CONSENT_VIA_EXPLICIT && from != CONSENT_SUBSCRIBED && to == CONSENT_SUBSCRIBED)
        return CONSENT_KEEP;
    return CONSENT_APPLY;
}

int consent_allows_send(enum consent_state s)
{
    return s == CONSENT_SUBSCRIBED;
}

int consent_contact_allows_send(enum consent_state s, int deleted, const char *email)
{
    return !deleted && email != NULL && *email != '\0' && consent_allows_send(s);
}
