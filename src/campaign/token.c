/* campaign/token.c -- signed tokens that name one message: unsubscribe links now, open
 * and click links with issue 15.
 *
 * DESIGN: the link must identify the recipient and the run by itself (an RFC 8058
 * one-click POST carries no cookie), and must not be forgeable or walkable by changing
 * a digit. The payload is fixed-size binary, 21 bytes: the kind (1 byte), the run id
 * and the contact id (8 bytes each, big-endian) and the link index (4 bytes,
 * big-endian); the token is base64url(payload) '.' base64url(HMAC-SHA256(key,
 * payload)[0..16)), no padding: 28 + 1 + 22 = 51 characters. 128 bits of tag are
 * beyond guessing; the whole HMAC would only lengthen every link. The key is derived
 * from the [secrets] key (env.c), never that key itself. A check refuses anything
 * longer than TOKEN_MAX before decoding, needs the exact shape (libsodium's decoder
 * also refuses non-canonical base64, so one token has one spelling), and compares the
 * tag in constant time. */
#include <sodium.h>
#include <string.h>

#include "campaign.h"

#define PAYLOAD_BYTES 21
#define TAG_BYTES 16
#define PAYLOAD_CHARS 28 /* base64url of 21 bytes */
#define TAG_CHARS 22     /* of 16 bytes, unpadded */
#define TOKEN_CHARS (PAYLOAD_CHARS + 1 + TAG_CHARS)

static void put_be(unsigned char *p, uint64_t v, int n)
{
    while (n-- > 0) {
        p[n] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static uint64_t get_be(const unsigned char *p, int n)
{
    uint64_t v = 0;

    while (n-- > 0)
        v = v << 8 | *p++;
    return v;
}

static void tag(const unsigned char key[TOKEN_KEY_BYTES], const unsigned char *payload,
                unsigned char out[TAG_BYTES])
{
    crypto_auth_hmacsha256_state st;
    unsigned char full[crypto_auth_hmacsha256_BYTES];

    crypto_auth_hmacsha256_init(&st, key, TOKEN_KEY_BYTES);
    crypto_auth_hmacsha256_update(&st, payload, PAYLOAD_BYTES);
    crypto_auth_hmacsha256_final(&st, full);
    memcpy(out, full, TAG_BYTES);
    sodium_memzero(&st, sizeof st);
}

void token_make(const unsigned char key[TOKEN_KEY_BYTES], char kind, int64_t run_id,
                int64_t contact_id, int link, char out[TOKEN_MAX])
{
    unsigned char payload[PAYLOAD_BYTES], mac[TAG_BYTES];

    payload[0] = (unsigned char)kind;
    put_be(payload + 1, (uint64_t)run_id, 8);
    put_be(payload + 9, (uint64_t)contact_id, 8);
    put_be(payload + 17, (uint64_t)(uint32_t)link, 4);
    tag(key, payload, mac);
    sodium_bin2base64(out, PAYLOAD_CHARS + 1, payload, sizeof payload,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    out[PAYLOAD_CHARS] = '.';
    sodium_bin2base64(out + PAYLOAD_CHARS + 1, TAG_CHARS + 1, mac, sizeof mac,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* Decodes exactly want bytes from exactly n base64url characters; 0 or -1. */
static int decode(const char *s, size_t n, unsigned char *out, size_t want)
{
    size_t got = 0;
    const char *end = NULL;

    if (sodium_base642bin(out, want, s, n, NULL, &got, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return -1;
    return got == want && end == s + n ? 0 : -1;
}

int token_check(const unsigned char key[TOKEN_KEY_BYTES], const char *token, char *kind,
                int64_t *run_id, int64_t *contact_id, int *link)
{
    unsigned char payload[PAYLOAD_BYTES], mac[TAG_BYTES], want[TAG_BYTES];
    size_t n;

    if (token == NULL)
        return E_INVAL;
    n = strnlen(token, TOKEN_MAX + 1);
    if (n != TOKEN_CHARS || token[PAYLOAD_CHARS] != '.')
        return E_INVAL;
    if (decode(token, PAYLOAD_CHARS, payload, sizeof payload) ||
        decode(token + PAYLOAD_CHARS + 1, TAG_CHARS, mac, sizeof mac))
        return E_INVAL;
    tag(key, payload, want);
    if (sodium_memcmp(mac, want, TAG_BYTES) != 0)
        return E_INVAL;
    *kind = (char)payload[0];
    *run_id = (int64_t)get_be(payload + 1, 8);
    *contact_id = (int64_t)get_be(payload + 9, 8);
    *link = (int)(int32_t)(uint32_t)get_be(payload + 17, 4);
    return 0;
}

void token_url(const struct send_env *env, char kind, int64_t run_id, int64_t contact_id, int link,
               struct buf *out)
{
    char t[TOKEN_MAX];

    token_make(env->token_key, kind, run_id, contact_id, link, t);
    buf_adds(out, env->base_url);
    buf_adds(out, kind == 'u' ? "/u/" : kind == 'o' ? "/t/o/" : "/t/c/");
    buf_adds(out, t);
}

void token_unsubscribe_url(const struct send_env *env, int64_t run_id, int64_t contact_id,
                           struct buf *out)
{
    token_url(env, 'u', run_id, contact_id, 0, out);
}
