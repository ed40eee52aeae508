/* delivery/webhook.c -- the parts the provider formats share: a body read within limits,
 * members as an event's strings and times, HMAC-SHA256 against hex in constant time, and
 * the replay window (delivery_int.h). */
#include <math.h>
#include <sodium.h>
#include <string.h>

#include "delivery_int.h"

int hook_json(struct arena *a, const char *what, const char *body, size_t len, const char *list,
              size_t max_values, const struct jt **out, struct err *e)
{
    struct jt_limits lim = {
        .max_values = max_values,
        .max_items = list ? MEV_MAX_PER_BODY : 0,
        .items_key = list,
    };
    struct jt_error je;
    struct jt *root;
    int rc;

    if (body == NULL || len == 0)
        return ERR(e, E_INVAL, "%s: empty body", what);
    rc = jt_parse_limited(a, body, len, &lim, &root, &je);
    if (rc == E_TOOBIG)
        return ERR(e, E_TOOBIG, "%s: %s (line %d, column %d)", what, je.text, je.line, je.column);
    if (rc)
        return ERR(e, E_INVAL, "%s is not JSON: %s at line %d, column %d", what, je.text, je.line,
                   je.column);
    *out = root;
    return 0;
}

const char *hook_str(struct arena *a, const struct jt *obj, const char *key, size_t max)
{
    const struct jt *v = jt_get(obj, key);

    return v && v->type == JT_STR ? hook_text(a, v, max) : NULL;
}

const char *hook_text(struct arena *a, const struct jt *v, size_t max)
{
    if (v == NULL)
        return NULL;
    if (v->type == JT_STR) {
        if (v->n == 0)
            return NULL;
        /* The tree's decoded string is in the same arena and NUL-terminated already:
         * a body of a thousand events need not be copied twice. */
        if (v->n <= max)
            return v->u.s;
        return mev_strdup(a, v->u.s, v->n, max);
    }
    if (v->type == JT_INT)
        return mev_strdup(a, v->src, v->srclen, max);
    return NULL;
}

const char *hook_message_id(struct arena *a, const char *s)
{
    char id[48];

    if (s == NULL || mev_message_id(s, id) != 0)
        return NULL;
    return arena_strndup(a, id, strlen(id));
}

int64_t hook_seconds_ms(const struct jt *v)
{
    if (v == NULL)
        return 0;
    if (v->type == JT_INT)
        return v->u.i > 0 && v->u.i <= TIME_MAX_MS / SEC_MS ? (int64_t)v->u.i * SEC_MS : 0;
    if (v->type == JT_REAL && v->u.d > 0 && v->u.d <= (double)(TIME_MAX_MS / SEC_MS))
        return (int64_t)llround(v->u.d * 1000.0);
    return 0;
}

int64_t hook_iso_ms(const char *s)
{
    int64_t ms;

    if (s == NULL || time_parse_iso(s, strlen(s), &ms) != 0)
        return 0;
    return ms;
}

int hook_quote_len(const char *s)
{
    return (int)utf8_prefix(s, strlen(s), 40);
}

void hook_hmac(const unsigned char *key, size_t keylen, const void *a, size_t alen, const void *b,
               size_t blen, const void *c, size_t clen, unsigned char mac[32])
{
    crypto_auth_hmacsha256_state st;

    /* _init takes a key of any length (crypto_auth_hmacsha256 wants exactly 32 bytes) */
    crypto_auth_hmacsha256_init(&st, key, keylen);
    crypto_auth_hmacsha256_update(&st, a, alen);
    crypto_auth_hmacsha256_update(&st, b, blen);
    crypto_auth_hmacsha256_update(&st, c, clen);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof st);
}

int hook_hex_eq(const unsigned char mac[32], const char *hex, size_t n)
{
    unsigned char bin[32];
    size_t binlen = 0;
    const char *end = NULL;

    /* The length of a hex SHA-256 is no secret: a wrong one is refused at once. */
    if (n != 64 || sodium_hex2bin(bin, sizeof bin, hex, n, NULL, &binlen, &end) != 0 ||
        binlen != sizeof bin || end != hex + n)
        return 0;
    return crypto_verify_32(bin, mac) == 0;
}

int hook_in_window(int64_t ts_s, int64_t now_ms, int max_age_s)
{
    int64_t d;

    if (ts_s < 0 || ts_s > TIME_MAX_MS / SEC_MS || max_age_s < 0 || now_ms < TIME_MIN_MS ||
        now_ms > TIME_MAX_MS)
        return 0;
    d = now_ms - ts_s * SEC_MS;
    return d <= (int64_t)max_age_s * SEC_MS && d >= -(int64_t)max_age_s * SEC_MS;
}
