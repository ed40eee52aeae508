/* tests/fuzz/webhook_postmark.c -- libFuzzer: Postmark's webhooks (src/delivery/postmark.c).
 *
 * The input is parsed as a body, and so is what follows its first two lines; the first
 * line is an Authorization header checked against fixed credentials and the second is
 * checked as the expected password (any bytes, any length). A check answers 0 only for
 * the credentials' own Basic header, or E_AUTH with a message. Never a crash, a read past
 * the input, or a leak. */
#include <strings.h>

#include "webhook.h"

static int check(const char *header, const char *user, const char *password)
{
    struct err e = {0};
    int rc = postmark_verify(header, user, password, &e);

    if (rc != e.code || (rc != 0 && (rc != E_AUTH || e.msg[0] == '\0')))
        abort();
    return rc;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static struct arena a; /* reset, not released: a fresh chunk per run is slow */
    struct fuzz_split s;

    fuzz_parse(&a, postmark_parse, (const char *)data, size);
    fuzz_split(data, size, &s);
    fuzz_parse(&a, postmark_parse, s.body, s.len);
    /* base64("hook:s3cret") is aG9vazpzM2NyZXQ=: nothing else may pass */
    if (check(s.line1, "hook", "s3cret") == 0 && strcasestr(s.line1, "aG9vazpzM2NyZXQ") == NULL)
        abort();
    check(s.line1, "hook", s.line2);
    check(s.line1, s.line2, "");
    fuzz_split_free(&s);
    return 0;
}
