/* tests/unit/token.c -- signed tokens (src/campaign/token.c).
 *
 * A token made is checked back to the same fields; every single-byte change of it,
 * to every other byte value, is refused; another key refuses it; truncated, empty,
 * oversized and non-base64 inputs are refused without a crash (ASan watches). */
#include <stdint.h>

#include "campaign/campaign.h"
#include "helpers.h"

static const unsigned char key1[TOKEN_KEY_BYTES] = "0123456789abcdef0123456789abcde";
static const unsigned char key2[TOKEN_KEY_BYTES] = "0123456789abcdef0123456789abcdX";

static int check(const unsigned char *key, const char *t)
{
    char kind;
    int64_t run, contact;
    int link;

    return token_check(key, t, &kind, &run, &contact, &link);
}

UTEST(token, round_trip)
{
    static const struct {
        char kind;
        int64_t run, contact;
        int link;
    } cases[] = {{'u', 1, 1, 0},
                 {'u', 42, 9001, 0},
                 {'c', INT64_MAX, INT64_MAX, 2147483647},
                 {'o', 0, -1, -1},
                 {'c', 123456789012345LL, 7, 31}};

    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char t[TOKEN_MAX], kind = 0;
        int64_t run = 0, contact = 0;
        int link = 0;
        token_make(key1, cases[i].kind, cases[i].run, cases[i].contact, cases[i].link, t);
        cr_assert_lt(strlen(t), TOKEN_MAX);
        cr_assert_eq(strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."),
                     strlen(t), "URL-safe only: %s", t);
        cr_assert_eq(token_check(key1, t, &kind, &run, &contact, &link), 0, "%s", t);
        cr_assert_eq(kind, cases[i].kind);
        cr_assert_eq(run, cases[i].run);
        cr_assert_eq(contact, cases[i].contact);
        cr_assert_eq(link, cases[i].link);
    }
}

UTEST(token, same_fields_same_token_other_fields_other_token)
{
    char a[TOKEN_MAX], b[TOKEN_MAX], c[TOKEN_MAX];

    token_make(key1, 'u', 5, 6, 0, a);
    token_make(key1, 'u', 5, 6, 0, b);
    token_make(key1, 'u', 5, 7, 0, c);
    cr_assert_str_eq(a, b);
    cr_assert_str_neq(a, c);
}

UTEST(token, every_single_byte_alteration_fails)
{
    char t[TOKEN_MAX], m[TOKEN_MAX];
    size_t n, i;
    int v, tried = 0;

    token_make(key1, 'u', 77, 1234567, 0, t);
    n = strlen(t);
    for (i = 0; i < n; i++)
        for (v = 1; v < 256; v++) {
            if (v == (unsigned char)t[i])
                continue;
            memcpy(m, t, n + 1);
            m[i] = (char)v;
            cr_assert_neq(check(key1, m), 0, "byte %zu changed to %d was accepted", i, v);
            tried++;
        }
    cr_assert_eq(tried, (int)n * 254);
}

UTEST(token, another_key_fails)
{
    char t[TOKEN_MAX];

    token_make(key1, 'u', 1, 2, 0, t);
    cr_assert_eq(check(key1, t), 0);
    cr_assert_eq(check(key2, t), E_INVAL);
}

UTEST(token, malformed_inputs_fail)
{
    char t[TOKEN_MAX], m[4 * TOKEN_MAX];
    size_t n, i;

    token_make(key1, 'u', 1, 2, 0, t);
    n = strlen(t);
    for (i = 0; i < n; i++) { /* every truncation */
        memcpy(m, t, i);
        m[i] = '\0';
        cr_assert_eq(check(key1, m), E_INVAL, "prefix of %zu accepted", i);
    }
    cr_assert_eq(check(key1, ""), E_INVAL);
    cr_assert_eq(check(key1, NULL), E_INVAL);
    snprintf(m, sizeof m, "%s%s", t, "A"); /* one more character */
    cr_assert_eq(check(key1, m), E_INVAL);
    snprintf(m, sizeof m, "%s%s", t, t); /* oversized */
    cr_assert_eq(check(key1, m), E_INVAL);
    memset(m, 'A', sizeof m - 1);
    m[sizeof m - 1] = '\0';
    cr_assert_eq(check(key1, m), E_INVAL);
    memset(m, '*', n); /* the right length, not base64url */
    m[n] = '\0';
    cr_assert_eq(check(key1, m), E_INVAL);
    memcpy(m, t, n + 1); /* standard base64 characters are not base64url */
    m[3] = '+';
    cr_assert_eq(check(key1, m), E_INVAL);
    memcpy(m, t, n + 1); /* the dot moved */
    m[27] = t[28];
    m[28] = t[27];
    cr_assert_eq(check(key1, m), E_INVAL);
}

UTEST(token, unsubscribe_url)
{
    struct send_env env;
    struct buf b;
    char t[TOKEN_MAX], *want;

    memset(&env, 0, sizeof env);
    memcpy(env.token_key, key1, sizeof key1);
    snprintf(env.base_url, sizeof env.base_url, "https://mail.example.com");
    buf_init(&b);
    token_unsubscribe_url(&env, 3, 4, &b);
    token_make(key1, 'u', 3, 4, 0, t);
    want = xasprintf("https://mail.example.com/u/%s", t);
    cr_assert_str_eq(b.p, want);
    cr_assert_eq(check(key1, b.p + strlen("https://mail.example.com/u/")), 0);
    free(want);
    buf_release(&b);
}
