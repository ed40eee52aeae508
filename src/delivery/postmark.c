/* delivery/postmark.c -- Postmark's webhooks: one JSON object per POST, named by its
 * RecordType; no signature, only the Basic credentials of the URL Postmark was given
 * (protocols.md section 2.4).
 *
 * DESIGN: Postmark sends no event id. A bounce has its own (ID); any other record is
 * named by the message and the record's time as Postmark wrote it (seven fractional
 * digits: two opens of one message differ there). The credentials are compared as
 * SHA-256 digests, so the time taken says nothing of where or whether the lengths
 * differ. */
#include <sodium.h>
#include <string.h>
#include <strings.h>

#include "delivery_int.h"

/* Longer Authorization headers are refused before decoding. */
#define AUTH_B64_MAX 4096

/* The record types, what each becomes, and where each keeps its recipient and time. */
struct record {
    const char *type;
    enum mev_kind kind; /* a Bounce's by its Type; a SubscriptionChange's when it suppresses */
    const char *email_key;
    const char *time_key;
    int has_id; /* ID is the record's own id (a bounce's; complaints are bounces too) */
};

static const struct record records[] = {
    {"Delivery", MEV_DELIVERED, "Recipient", "DeliveredAt", 0},
    {"Bounce", MEV_BOUNCED_SOFT, "Email", "BouncedAt", 1},
    {"SpamComplaint", MEV_COMPLAINED, "Email", "BouncedAt", 1},
    {"Open", MEV_OPENED, "Recipient", "ReceivedAt", 0},
    {"Click", MEV_CLICKED, "Recipient", "ReceivedAt", 0},
    {"SubscriptionChange", MEV_UNSUBSCRIBED, "Recipient", "ChangedAt", 0},
};

static enum mev_kind bounce_kind(const char *type)
{
    static const char *const hard[] = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"};

    if (type && strcmp(type, "SpamComplaint") == 0)
        return MEV_COMPLAINED;
    for (size_t i = 0; type && i < sizeof hard / sizeof *hard; i++)
        if (strcmp(type, hard[i]) == 0)
            return MEV_BOUNCED_HARD;
    return MEV_BOUNCED_SOFT; /* SoftBounce, Transient, DnsError, Blocked, ... */
}

static enum mev_kind record_kind(const struct record *r, const struct jt *ev)
{
    const struct jt *v;

    if (strcmp(r->type, "Bounce") == 0)
        return bounce_kind(jt_str(ev, "Type"));
    if (r->kind == MEV_UNSUBSCRIBED) {
        /* SuppressSending false is a resubscription: no kind of ours */
        v = jt_get(ev, "SuppressSending");
        return v && v->type == JT_TRUE ? MEV_UNSUBSCRIBED : MEV_NONE;
    }
    return r->kind;
}

/* "Bounce:42", else "Open:<MessageID>:<ReceivedAt>" */
static const char *source_id(struct arena *a, const struct record *r, const struct jt *ev)
{
    const char *id = r->has_id ? hook_text(a, jt_get(ev, "ID"), MEV_MAX_ID) : NULL;
    const char *mid = jt_str(ev, "MessageID"), *at = jt_str(ev, r->time_key);
    struct buf b;
    const char *s;

    if (id == NULL && (mid == NULL || *mid == '\0'))
        return NULL;
    buf_init(&b);
    if (id)
        buf_printf(&b, "%s:%s", r->type, id);
    else
        buf_printf(&b, "%s:%s:%s", r->type, mid, at ? at : "");
    s = mev_strdup(a, b.p, b.len, MEV_MAX_ID);
    buf_release(&b);
    return s;
}

/* "HardBounce: smtp;550 5.1.1 ..." */
static const char *bounce_reason(struct arena *a, const struct jt *ev)
{
    const char *type = jt_str(ev, "Type"), *text = jt_str(ev, "Details");
    struct buf b;
    const char *s;

    if (text == NULL || *text == '\0')
        text = jt_str(ev, "Description");
    if (text && *text == '\0')
        text = NULL;
    if (type && *type == '\0')
        type = NULL;
    if (type == NULL && text == NULL)
        return NULL;
    buf_init(&b);
    buf_printf(&b, "%s%s%s", type ? type : "", type && text ? ": " : "", text ? text : "");
    s = mev_strdup(a, b.p, b.len, MEV_MAX_REASON);
    buf_release(&b);
    return s;
}

int postmark_parse(const char *body, size_t len, struct mev_list *out, struct err *e)
{
    struct arena *a = out->a;
    const struct record *r = NULL;
    const struct jt *root;
    const char *type;
    enum mev_kind kind;
    struct mev *m;
    int rc;

    rc = hook_json(a, "Postmark body", body, len, NULL, HOOK_VALUES_ONE, &root, e);
    if (rc)
        return rc;
    if (root->type != JT_OBJ)
        return ERR(e, E_INVAL, "Postmark body: not a JSON object");
    type = jt_str(root, "RecordType");
    if (type == NULL)
        return ERR(e, E_INVAL, "Postmark body: RecordType missing (Delivery, Bounce, ...)");
    for (size_t i = 0; i < sizeof records / sizeof *records; i++)
        if (strcmp(type, records[i].type) == 0)
            r = &records[i];
    if (r == NULL)
        return 0; /* a record type Postmark added later */
    kind = record_kind(r, root);
    if (kind == MEV_NONE)
        return 0;
    m = mev_list_add(out);
    if (m == NULL)
        return ERR(e, E_TOOBIG, "Postmark body: more than %d events", MEV_MAX_PER_BODY);
    m->kind = kind;
    m->source_id = source_id(a, r, root);
    m->message_id = hook_message_id(a, jt_str(jt_get(root, "Metadata"), "engage_message_id"));
    m->queue_id = hook_str(a, root, "MessageID", MEV_MAX_ID);
    m->email = hook_str(a, root, r->email_key, MEV_MAX_EMAIL);
    if (m->email == NULL) /* the other name, should a record type switch */
        m->email = hook_str(a, root, strcmp(r->email_key, "Email") == 0 ? "Recipient" : "Email",
                            MEV_MAX_EMAIL);
    m->at_ms = hook_iso_ms(jt_str(root, r->time_key));
    if (kind == MEV_BOUNCED_HARD || kind == MEV_BOUNCED_SOFT)
        m->reason = bounce_reason(a, root);
    if (kind == MEV_CLICKED)
        m->url = hook_str(a, root, "OriginalLink", MEV_MAX_URL);
    if (kind == MEV_OPENED || kind == MEV_CLICKED)
        m->user_agent = hook_str(a, root, "UserAgent", MEV_MAX_AGENT);
    return 0;
}

/* 1 when got[0..gn) equals want: digests compared, so neither a length nor the first
 * differing byte shows in the time taken. */
static int same(const char *want, const unsigned char *got, size_t gn)
{
    unsigned char hw[crypto_hash_sha256_BYTES], hg[crypto_hash_sha256_BYTES];
    int eq;

    crypto_hash_sha256(hw, (const unsigned char *)want, strlen(want));
    crypto_hash_sha256(hg, got, gn);
    eq = crypto_verify_32(hw, hg) == 0;
    sodium_memzero(hw, sizeof hw);
    sodium_memzero(hg, sizeof hg);
    return eq;
}

int postmark_verify(const char *authorization, const char *user, const char *password,
                    struct err *e)
{
    unsigned char *dec = NULL, *colon;
    const char *p, *end = NULL;
    size_t n = 0, declen = 0;
    int rc, ok;

    if (user == NULL || password == NULL) {
        rc = ERR(e, E_AUTH, "Postmark credentials: none configured");
        goto out;
    }
    if (authorization == NULL || *authorization == '\0') {
        rc = ERR(e, E_AUTH, "Postmark credentials: Authorization header missing");
        goto out;
    }
    if (strncasecmp(authorization, "Basic", 5) != 0 ||
        (authorization[5] != ' ' && authorization[5] != '\t')) {
        rc = ERR(e, E_AUTH, "Postmark credentials: the Authorization header is not Basic");
        goto out;
    }
    p = authorization + 5;
    p += strspn(p, " \t");
    n = strlen(p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    if (n == 0 || n > AUTH_B64_MAX) {
        rc = ERR(e, E_AUTH, "Postmark credentials: %zu bytes of base64 (1 to %d)", n, AUTH_B64_MAX);
        goto out;
    }
    dec = xmalloc(n);
    if (sodium_base642bin(dec, n, p, n, NULL, &declen, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != p + n) {
        /* padding is optional in what some clients send */
        end = NULL;
        if (sodium_base642bin(dec, n, p, n, NULL, &declen, &end,
                              sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0 ||
            end != p + n) {
            rc = ERR(e, E_AUTH, "Postmark credentials: the Basic credentials are not base64");
            goto out;
        }
    }
    colon = memchr(dec, ':', declen);
    if (colon == NULL) {
        rc = ERR(e, E_AUTH, "Postmark credentials: no ':' between user and password");
        goto out;
    }
    /* both compared whatever the first gives: no early return on the user */
    ok = same(user, dec, (size_t)(colon - dec));
    ok &= same(password, colon + 1, declen - (size_t)(colon + 1 - dec));
    rc = ok ? 0 : ERR(e, E_AUTH, "Postmark credentials: wrong user or password");
out:
    if (dec) {
        sodium_memzero(dec, n);
        free(dec);
    }
    return rc;
}
