/* delivery/generic.c -- our own webhook format, for any sender that can echo our
 * message id: {"events":[{"id","type","message_id",...}]}, signed with a shared secret
 * as X-Engage-Signature: v1=<hex HMAC-SHA256(secret, timestamp "." body)>.
 *
 * DESIGN: the sender writes this format for us, so it is read strictly: an unknown type
 * is an error the sender can fix (naming the event's index and field), where a
 * provider's unknown type is skipped. A message_id that is not ours (RUN.CONTACT, or our
 * Message-ID) is taken as the provider's queue id: an MTA's log shipper knows the queue
 * id its relay gave, which the ledger keeps ("queued as ..."). Several v1= values are
 * accepted so a secret can be rotated without a window of refused deliveries. */
#include <sodium.h>
#include <string.h>

#include "delivery_int.h"

/* v1= values in one X-Engage-Signature at most (two secrets during a rotation). */
#define MAX_SIGNATURES 8
#define KIND_LIST                                                                                  \
    "delivered, deferred, dropped, bounced_hard, bounced_soft, complained, unsubscribed, "         \
    "opened, clicked"

static int read_event(struct mev_list *out, const struct jt *ev, size_t i, struct err *e)
{
    struct arena *a = out->a;
    const char *id, *type, *mid_s, *mid;
    const struct jt *ts;
    enum mev_kind kind;
    struct mev *m;

    if (ev->type != JT_OBJ)
        return ERR(e, E_INVAL, "events[%zu]: not an object", i);
    id = hook_text(a, jt_get(ev, "id"), MEV_MAX_ID);
    if (id == NULL)
        return ERR(e, E_INVAL, "events[%zu].id: missing or empty (the event's unique id, a string)",
                   i);
    type = jt_str(ev, "type");
    if (type == NULL)
        return ERR(e, E_INVAL, "events[%zu].type: missing (one of " KIND_LIST ")", i);
    kind = mev_kind_parse(type);
    if (kind == MEV_NONE || kind == MEV_CONVERTED) /* conversions are ours alone */
        return ERR(e, E_INVAL, "events[%zu].type: unknown type \"%.*s\" (one of " KIND_LIST ")", i,
                   hook_quote_len(type), type);
    mid_s = jt_str(ev, "message_id");
    if (mid_s == NULL)
        return ERR(e, E_INVAL, "events[%zu].message_id: missing (the message's RUN.CONTACT id)", i);
    if (*mid_s == '\0')
        return ERR(e, E_INVAL, "events[%zu].message_id: empty", i);
    mid = hook_message_id(a, mid_s);
    m = mev_list_add(out);
    if (m == NULL)
        return ERR(e, E_TOOBIG, "events: more than %d", MEV_MAX_PER_BODY);
    m->kind = kind;
    m->source_id = id;
    m->message_id = mid;
    if (mid == NULL)
        m->queue_id = hook_str(a, ev, "message_id", MEV_MAX_ID);
    m->email = hook_str(a, ev, "email", MEV_MAX_EMAIL);
    ts = jt_get(ev, "timestamp");
    m->at_ms = ts && ts->type == JT_STR ? hook_iso_ms(ts->u.s) : hook_seconds_ms(ts);
    m->reason = hook_str(a, ev, "reason", MEV_MAX_REASON);
    m->url = hook_str(a, ev, "url", MEV_MAX_URL);
    m->user_agent = hook_str(a, ev, "user_agent", MEV_MAX_AGENT);
    return 0;
}

int generic_parse(const char *body, size_t len, struct mev_list *out, struct err *e)
{
    const struct jt *root, *list;
    int rc;

    rc = hook_json(out->a, "body", body, len, "events",
                   (size_t)(MEV_MAX_PER_BODY + 1) * HOOK_VALUES_PER_EVENT, &root, e);
    if (rc)
        return rc;
    if (root->type != JT_OBJ)
        return ERR(e, E_INVAL, "body: not a JSON object (expected {\"events\": [...]})");
    list = jt_get(root, "events");
    if (list == NULL || list->type != JT_ARR)
        return ERR(e, E_INVAL, "events: missing or not an array");
    for (uint32_t i = 0; i < list->n; i++) {
        rc = read_event(out, &list->u.items[i], i, e);
        if (rc)
            return rc;
    }
    return 0;
}

int generic_verify(const unsigned char *secret, size_t secretlen, const char *timestamp,
                   const char *signature, const char *body, size_t len, int64_t now_ms,
                   int max_age_s, struct err *e)
{
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    const char *p;
    int64_t ts_s;
    int rc, ok = 0, seen = 0;

    if (secret == NULL || secretlen == 0) {
        rc = ERR(e, E_AUTH, "X-Engage-Signature: no secret configured");
        goto out;
    }
    if (timestamp == NULL || *timestamp == '\0') {
        rc = ERR(e, E_FORBIDDEN, "X-Engage-Timestamp: missing");
        goto out;
    }
    if (parse_i64(timestamp, strlen(timestamp), &ts_s) != 0) {
        rc = ERR(e, E_FORBIDDEN, "X-Engage-Timestamp: not Unix seconds");
        goto out;
    }
    if (signature == NULL || *signature == '\0') {
        rc = ERR(e, E_AUTH, "X-Engage-Signature: missing");
        goto out;
    }
    hook_hmac(secret, secretlen, timestamp, strlen(timestamp), ".", 1, body ? body : "",
              body ? len : 0, mac);
    /* every v1= value is compared, a match or not: which one matched takes no time to see */
    for (p = signature; *p;) {
        size_t n = strcspn(p, ",");
        const char *v = p;
        size_t vn = n;
        while (vn > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            vn--;
        }
        while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
            vn--;
        if (vn >= 3 && memcmp(v, "v1=", 3) == 0) {
            if (++seen > MAX_SIGNATURES) {
                rc = ERR(e, E_AUTH, "X-Engage-Signature: more than %d v1= values", MAX_SIGNATURES);
                goto out;
            }
            ok |= hook_hex_eq(mac, v + 3, vn - 3);
        }
        p += n;
        if (*p == ',')
            p++;
    }
    if (seen == 0) {
        rc = ERR(e, E_AUTH, "X-Engage-Signature: no v1= value");
        goto out;
    }
    if (!ok) {
        rc = ERR(e, E_AUTH, "X-Engage-Signature: no v1= value matches (secret, timestamp or body)");
        goto out;
    }
    if (!hook_in_window(ts_s, now_ms, max_age_s)) {
        rc = ERR(e, E_FORBIDDEN, "X-Engage-Timestamp: %lld is more than %d s from now (%lld)",
                 (long long)ts_s, max_age_s, (long long)(now_ms / SEC_MS));
        goto out;
    }
    rc = 0;
out:
    sodium_memzero(mac, sizeof mac);
    return rc;
}
