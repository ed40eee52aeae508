/* tests/fuzz/webhook_mailgun.c -- libFuzzer: Mailgun's webhooks (src/delivery/mailgun.c).
 *
 * The input is parsed as a body and verified with a fixed key at a fixed now (its
 * signature is in the body); then its first line is taken as the key of a verify of what
 * follows the first two lines, and that rest is parsed too. A verify answers 0 with a
 * NUL-terminated token shorter than MAILGUN_TOKEN_MAX, or E_AUTH / E_FORBIDDEN with a
 * message. Never a crash, a read past the input, or a leak. */
#include "webhook.h"

static const char key[] = "fuzzing key";
#define NOW_MS (INT64_C(1700000000) * 1000)

static void verify(const void *k, size_t klen, const char *body, size_t len)
{
    char token[MAILGUN_TOKEN_MAX];
    struct err e = {0};
    int rc;

    memset(token, 'x', sizeof token);
    rc = mailgun_verify(k, klen, body, len, NOW_MS, 300, token, &e);
    if (rc != e.code || memchr(token, '\0', sizeof token) == NULL)
        abort();
    if (rc != 0 && (e.msg[0] == '\0' || (rc != E_AUTH && rc != E_FORBIDDEN)))
        abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static struct arena a; /* reset, not released: a fresh chunk per run is slow */
    struct fuzz_split s;

    fuzz_parse(&a, mailgun_parse, (const char *)data, size);
    verify(key, strlen(key), (const char *)data, size);
    fuzz_split(data, size, &s);
    fuzz_parse(&a, mailgun_parse, s.body, s.len);
    verify(s.line1, strlen(s.line1), s.body, s.len);
    fuzz_split_free(&s);
    return 0;
}
