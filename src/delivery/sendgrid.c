/* delivery/sendgrid.c -- SendGrid's Event Webhook: a JSON array of events, signed with
 * ECDSA P-256 over the timestamp header and the raw body (protocols.md section 2.1).
 *
 * DESIGN: the key is read once (sendgrid_key_load) and kept by the caller; a verify is
 * one EVP context, about 16k a second on one core. OpenSSL queues an error on a bad
 * signature or a malformed DER: every failure clears the thread's queue, so the next
 * user of OpenSSL on this thread does not read a stale error as its own. */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <sodium.h>
#include <string.h>
#include <strings.h>

#include "delivery_int.h"

/* A P-256 ECDSA signature is DER of at most 72 bytes: 96 in base64. */
#define SIG_B64_MAX 192
#define SIG_MAX 144
#define KEY_DER_MAX 4096

/* The bounce classifications SendGrid calls soft: "Technical" and "Content" */
static int soft_classification(const char *c)
{
    return c && (strcasecmp(c, "technical") == 0 || strcasecmp(c, "content") == 0);
}

static enum mev_kind event_kind(const char *type, const struct jt *ev)
{
    static const struct {
        const char *name;
        enum mev_kind kind;
    } kinds[] = {
        {"delivered", MEV_DELIVERED},
        {"deferred", MEV_DEFERRED},
        {"dropped", MEV_DROPPED},
        {"spamreport", MEV_COMPLAINED},
        {"unsubscribe", MEV_UNSUBSCRIBED},
        {"group_unsubscribe", MEV_UNSUBSCRIBED},
        {"open", MEV_OPENED},
        {"click", MEV_CLICKED},
    };
    const char *bt;

    if (strcmp(type, "bounce") == 0) {
        bt = jt_str(ev, "type");
        if ((bt && strcmp(bt, "blocked") == 0) ||
            soft_classification(jt_str(ev, "bounce_classification")))
            return MEV_BOUNCED_SOFT;
        return MEV_BOUNCED_HARD;
    }
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (strcmp(type, kinds[i].name) == 0)
            return kinds[i].kind;
    return MEV_NONE; /* processed, group_resubscribe, what SendGrid adds later */
}

/* "5.1.1 550 5.1.1 user unknown" would say the status twice: the status goes first
 * only when the text does not hold it. */
static const char *reason_of(struct arena *a, const struct jt *ev)
{
    const char *status = jt_str(ev, "status"), *text = jt_str(ev, "reason");
    struct buf b;
    const char *r;

    if (text == NULL || *text == '\0')
        text = jt_str(ev, "response"); /* deferred */
    if (text && *text == '\0')
        text = NULL;
    if (status && *status == '\0')
        status = NULL;
    if (status == NULL || (text && strstr(text, status)))
        return text ? mev_strdup(a, text, strlen(text), MEV_MAX_REASON) : NULL;
    if (text == NULL)
        return mev_strdup(a, status, strlen(status), MEV_MAX_REASON);
    buf_init(&b);
    buf_printf(&b, "%s %s", status, text);
    r = mev_strdup(a, b.p, b.len, MEV_MAX_REASON);
    buf_release(&b);
    return r;
}

static int read_event(struct mev_list *out, const struct jt *ev, size_t i, struct err *e)
{
    struct arena *a = out->a;
    const char *type, *qid;
    const struct jt *v;
    enum mev_kind kind;
    struct mev *m;

    if (ev->type != JT_OBJ)
        return ERR(e, E_INVAL, "SendGrid body: [%zu] is not an object (each event is one)", i);
    type = jt_str(ev, "event");
    if (type == NULL)
        return ERR(e, E_INVAL, "SendGrid body: [%zu].event: missing (the event's type, a string)",
                   i);
    kind = event_kind(type, ev);
    if (kind == MEV_NONE)
        return 0;
    m = mev_list_add(out);
    if (m == NULL)
        return ERR(e, E_TOOBIG, "SendGrid body: more than %d events", MEV_MAX_PER_BODY);
    m->kind = kind;
    m->source_id = hook_str(a, ev, "sg_event_id", MEV_MAX_ID);
    m->message_id = hook_message_id(a, jt_str(ev, "engage_message_id"));
    if (m->message_id == NULL)
        m->message_id = hook_message_id(a, jt_str(ev, "smtp-id"));
    qid = jt_str(ev, "sg_message_id");
    if (qid && *qid) /* "<X-Message-Id>.filter...": the part before the first '.' */
        m->queue_id = mev_strdup(a, qid, strcspn(qid, "."), MEV_MAX_ID);
    m->email = hook_str(a, ev, "email", MEV_MAX_EMAIL);
    m->at_ms = hook_seconds_ms(jt_get(ev, "timestamp"));
    switch (kind) {
    case MEV_DEFERRED:
    case MEV_DROPPED:
    case MEV_BOUNCED_HARD:
    case MEV_BOUNCED_SOFT:
        m->reason = reason_of(a, ev);
        break;
    case MEV_CLICKED:
        m->url = hook_str(a, ev, "url", MEV_MAX_URL);
        /* fall through */
    case MEV_OPENED:
        m->user_agent = hook_str(a, ev, "useragent", MEV_MAX_AGENT);
        v = jt_get(ev, "sg_machine_open");
        m->machine = v && v->type == JT_TRUE;
        break;
    default:
        break;
    }
    return 0;
}

int sendgrid_parse(const char *body, size_t len, struct mev_list *out, struct err *e)
{
    const struct jt *root;
    int rc;

    rc = hook_json(out->a, "SendGrid body", body, len, NULL,
                   (size_t)(MEV_MAX_PER_BODY + 1) * HOOK_VALUES_PER_EVENT, &root, e);
    if (rc)
        return rc;
    if (root->type != JT_ARR)
        return ERR(e, E_INVAL, "SendGrid body: not a JSON array of events");
    if (root->n > MEV_MAX_PER_BODY)
        return ERR(e, E_TOOBIG, "SendGrid body: %u events, more than %d", root->n,
                   MEV_MAX_PER_BODY);
    for (uint32_t i = 0; i < root->n; i++) {
        rc = read_event(out, &root->u.items[i], i, e);
        if (rc)
            return rc;
    }
    return 0;
}

void *sendgrid_key_load(const unsigned char *der, size_t len, struct err *e)
{
    const unsigned char *p = der;
    EVP_PKEY *pk = NULL;
    char group[64];
    size_t glen = 0;
    int nid, rc = E_INVAL;

    if (der == NULL || len == 0 || len > KEY_DER_MAX) {
        ERR(e, E_INVAL, "SendGrid key: %zu bytes of DER, expected a public key of about 91",
            der ? len : 0);
        goto out;
    }
    pk = d2i_PUBKEY(NULL, &p, (long)len);
    if (pk == NULL) {
        ERR(e, E_INVAL, "SendGrid key: not a DER SubjectPublicKeyInfo");
        goto out;
    }
    if (p != der + len) {
        ERR(e, E_INVAL, "SendGrid key: %zu bytes after the key", (size_t)(der + len - p));
        goto out;
    }
    if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_EC) {
        const char *sn = OBJ_nid2sn(EVP_PKEY_get_base_id(pk));
        ERR(e, E_INVAL, "SendGrid key: not an EC (P-256) key but %s", sn ? sn : "of another type");
        goto out;
    }
    if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                       &glen) != 1) {
        ERR(e, E_INVAL, "SendGrid key: an EC key without a named curve (P-256 expected)");
        goto out;
    }
    nid = OBJ_sn2nid(group);
    if (nid == NID_undef)
        nid = EC_curve_nist2nid(group);
    if (nid != NID_X9_62_prime256v1) {
        ERR(e, E_INVAL, "SendGrid key: curve %s, not P-256 (prime256v1)", group);
        goto out;
    }
    rc = 0;
out:
    if (rc) {
        EVP_PKEY_free(pk);
        pk = NULL;
        ERR_clear_error();
    }
    return pk;
}

void sendgrid_key_free(void *key)
{
    EVP_PKEY_free(key);
}

int sendgrid_verify(const void *key, const char *timestamp, const char *sig_b64, const char *body,
                    size_t len, struct err *e)
{
    unsigned char sig[SIG_MAX];
    size_t siglen = 0, b64len, tslen;
    EVP_MD_CTX *ctx = NULL;
    int rc, v;

    if (key == NULL) {
        rc = ERR(e, E_AUTH, "SendGrid signature: no verification key configured");
        goto out;
    }
    if (timestamp == NULL || *timestamp == '\0') {
        rc = ERR(e, E_AUTH, "SendGrid signature: X-Twilio-Email-Event-Webhook-Timestamp missing");
        goto out;
    }
    /* Digits only: SendGrid signs timestamp || body with nothing between them, so a
     * timestamp that took the body's first bytes would sign the same text. */
    tslen = strlen(timestamp);
    if (tslen > 20 || strspn(timestamp, "0123456789") != tslen) {
        rc = ERR(e, E_AUTH, "SendGrid signature: the timestamp header is not Unix seconds");
        goto out;
    }
    if (sig_b64 == NULL || *sig_b64 == '\0') {
        rc = ERR(e, E_AUTH, "SendGrid signature: X-Twilio-Email-Event-Webhook-Signature missing");
        goto out;
    }
    b64len = strlen(sig_b64);
    if (b64len > SIG_B64_MAX || sodium_base642bin(sig, sizeof sig, sig_b64, b64len, NULL, &siglen,
                                                  NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
        rc = ERR(e, E_AUTH, "SendGrid signature: the signature header is not base64");
        goto out;
    }
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        rc = ERR(e, E_NOMEM, "SendGrid signature: out of memory");
        goto out;
    }
    /* EVP_PKEY is not const in OpenSSL's prototypes; a verify does not change it */
    if (EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, (EVP_PKEY *)key) != 1 ||
        EVP_DigestVerifyUpdate(ctx, timestamp, tslen) != 1 ||
        (len && EVP_DigestVerifyUpdate(ctx, body, len) != 1)) {
        rc = ERR(e, E_INTERNAL, "SendGrid signature: OpenSSL cannot verify with this key");
        goto out;
    }
    v = EVP_DigestVerifyFinal(ctx, sig, siglen);
    if (v == 1) {
        rc = 0;
    } else if (v == 0) {
        rc = ERR(e, E_AUTH, "SendGrid signature: does not verify (body, timestamp or key)");
    } else {
        rc = ERR(e, E_AUTH, "SendGrid signature: not a DER ECDSA signature");
    }
out:
    if (rc)
        ERR_clear_error();
    EVP_MD_CTX_free(ctx);
    return rc;
}
