/* delivery/mailgun.c -- Mailgun's webhooks: one JSON object per POST, the signature in
 * the body beside the event (protocols.md section 2.3).
 *
 * DESIGN: the signature token is the event's source_id, not event-data.id, which
 * Mailgun keeps unique only within a day (django-anymail PR #131 made the same choice).
 * The HMAC is computed over the timestamp's text as sent, never a reformatted number. */
#include <sodium.h>
#include <string.h>

#include "delivery_int.h"

static const char *const suppressed[] = {"suppress-bounce", "suppress-unsubscribe",
                                         "suppress-complaint"};

static enum mev_kind event_kind(const char *type, const struct jt *ed)
{
    const char *sev, *reason;

    if (strcmp(type, "delivered") == 0)
        return MEV_DELIVERED;
    if (strcmp(type, "opened") == 0)
        return MEV_OPENED;
    if (strcmp(type, "clicked") == 0)
        return MEV_CLICKED;
    if (strcmp(type, "unsubscribed") == 0)
        return MEV_UNSUBSCRIBED;
    if (strcmp(type, "complained") == 0)
        return MEV_COMPLAINED;
    if (strcmp(type, "failed") != 0)
        return MEV_NONE; /* accepted, rejected, stored, what Mailgun adds later */
    sev = jt_str(ed, "severity");
    if (sev && strcmp(sev, "temporary") == 0)
        return MEV_DEFERRED;
    if (sev == NULL || strcmp(sev, "permanent") != 0)
        return MEV_NONE; /* no severity: neither a bounce nor a retry can be claimed */
    reason = jt_str(ed, "reason");
    for (size_t i = 0; reason && i < sizeof suppressed / sizeof *suppressed; i++)
        if (strcmp(reason, suppressed[i]) == 0)
            return MEV_DROPPED; /* never sent: the address was on a suppression list */
    return MEV_BOUNCED_HARD;
}

/* delivery-status's code and text ("550 5.1.1 The email account ... does not exist"),
 * else the failure's reason ("suppress-bounce", "generic"). */
static const char *reason_of(struct arena *a, const struct jt *ed)
{
    const struct jt *ds = jt_get(ed, "delivery-status"), *code = jt_get(ds, "code");
    const char *text = jt_str(ds, "message");
    struct buf b;
    const char *r;

    if (text == NULL || *text == '\0')
        text = jt_str(ds, "description");
    if (text == NULL || *text == '\0')
        text = jt_str(ed, "reason");
    if (text && *text == '\0')
        text = NULL;
    buf_init(&b);
    if (code && (code->type == JT_INT || (code->type == JT_STR && code->n > 0)))
        buf_add(&b, code->type == JT_INT ? code->src : code->u.s,
                code->type == JT_INT ? code->srclen : code->n);
    if (text && b.len)
        buf_addc(&b, ' ');
    if (text)
        buf_adds(&b, text);
    r = b.len ? mev_strdup(a, b.p, b.len, MEV_MAX_REASON) : NULL;
    buf_release(&b);
    return r;
}

int mailgun_parse(const char *body, size_t len, struct mev_list *out, struct err *e)
{
    struct arena *a = out->a;
    const struct jt *root, *ed, *headers;
    const char *type;
    enum mev_kind kind;
    struct mev *m;
    int rc;

    rc = hook_json(a, "Mailgun body", body, len, NULL, HOOK_VALUES_ONE, &root, e);
    if (rc)
        return rc;
    if (root->type != JT_OBJ)
        return ERR(e, E_INVAL, "Mailgun body: not a JSON object");
    ed = jt_get(root, "event-data");
    if (ed == NULL || ed->type != JT_OBJ)
        return ERR(e, E_INVAL, "Mailgun body: \"event-data\" missing or not an object");
    type = jt_str(ed, "event");
    if (type == NULL)
        return ERR(e, E_INVAL, "Mailgun body: event-data.event missing (the event's type)");
    kind = event_kind(type, ed);
    if (kind == MEV_NONE)
        return 0;
    m = mev_list_add(out);
    if (m == NULL)
        return ERR(e, E_TOOBIG, "Mailgun body: more than %d events", MEV_MAX_PER_BODY);
    headers = jt_get(jt_get(ed, "message"), "headers");
    m->kind = kind;
    m->source_id = hook_str(a, jt_get(root, "signature"), "token", MEV_MAX_ID);
    m->message_id = hook_message_id(a, jt_str(jt_get(ed, "user-variables"), "engage_message_id"));
    if (m->message_id == NULL)
        m->message_id = hook_message_id(a, jt_str(headers, "message-id"));
    m->queue_id = hook_str(a, headers, "message-id", MEV_MAX_ID);
    m->email = hook_str(a, ed, "recipient", MEV_MAX_EMAIL);
    m->at_ms = hook_seconds_ms(jt_get(ed, "timestamp"));
    if (kind == MEV_BOUNCED_HARD || kind == MEV_DROPPED || kind == MEV_DEFERRED)
        m->reason = reason_of(a, ed);
    if (kind == MEV_CLICKED)
        m->url = hook_str(a, ed, "url", MEV_MAX_URL);
    if (kind == MEV_OPENED || kind == MEV_CLICKED)
        m->user_agent = hook_str(a, jt_get(ed, "client-info"), "user-agent", MEV_MAX_AGENT);
    return 0;
}

int mailgun_verify(const unsigned char *key, size_t keylen, const char *body, size_t len,
                   int64_t now_ms, int max_age_s, char token_out[MAILGUN_TOKEN_MAX], struct err *e)
{
    struct arena a;
    struct err pe = {0};
    const struct jt *root, *sig, *ts;
    const char *token, *hex;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    size_t toklen;
    int64_t ts_s;
    int rc;

    arena_init(&a);
    token_out[0] = '\0';
    if (key == NULL || keylen == 0) {
        rc = ERR(e, E_AUTH, "Mailgun signature: no signing key configured");
        goto out;
    }
    if (hook_json(&a, "the body", body, len, NULL, HOOK_VALUES_ONE, &root, &pe) != 0) {
        rc = ERR(e, E_AUTH, "Mailgun signature: none found, %s", pe.msg);
        goto out;
    }
    sig = jt_get(root, "signature");
    ts = jt_get(sig, "timestamp");
    token = jt_str(sig, "token");
    hex = jt_str(sig, "signature");
    if (sig == NULL || ts == NULL || token == NULL || hex == NULL) {
        rc = ERR(e, E_AUTH, "Mailgun signature: signature.%s missing",
                 sig == NULL  ? "{timestamp,token,signature}"
                 : ts == NULL ? "timestamp"
                 : token      ? "signature"
                              : "token");
        goto out;
    }
    /* the timestamp is a string in what Mailgun sends; a number is taken as written */
    if ((ts->type != JT_STR && ts->type != JT_INT) ||
        parse_i64(ts->type == JT_STR ? ts->u.s : ts->src, ts->type == JT_STR ? ts->n : ts->srclen,
                  &ts_s) != 0) {
        rc = ERR(e, E_AUTH, "Mailgun signature: signature.timestamp is not Unix seconds");
        goto out;
    }
    toklen = strlen(token);
    if (toklen >= MAILGUN_TOKEN_MAX) {
        rc = ERR(e, E_AUTH, "Mailgun signature: a token of %zu bytes, more than %d", toklen,
                 MAILGUN_TOKEN_MAX - 1);
        goto out;
    }
    hook_hmac(key, keylen, ts->type == JT_STR ? ts->u.s : ts->src,
              ts->type == JT_STR ? ts->n : ts->srclen, token, toklen, "", 0, mac);
    if (!hook_hex_eq(mac, hex, strlen(hex))) {
        rc = ERR(e, E_AUTH, "Mailgun signature: does not match (signing key, timestamp or token)");
        goto out;
    }
    if (!hook_in_window(ts_s, now_ms, max_age_s)) {
        rc = ERR(e, E_FORBIDDEN,
                 "Mailgun signature: timestamp %lld is more than %d s from now (%lld)",
                 (long long)ts_s, max_age_s, (long long)(now_ms / SEC_MS));
        goto out;
    }
    memcpy(token_out, token, toklen + 1);
    rc = 0;
out:
    sodium_memzero(mac, sizeof mac);
    arena_release(&a);
    return rc;
}
