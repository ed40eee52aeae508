/* tests/fuzz/webhook_generic.c -- libFuzzer: the generic webhook format
 * (src/delivery/generic.c).
 *
 * The input is parsed as a body, and so is what follows its first two lines; those lines
 * are the X-Engage-Timestamp and X-Engage-Signature headers of a verify of that rest with
 * a fixed secret at a fixed now. A verify answers 0, E_AUTH or E_FORBIDDEN with a
 * message; 0 only with a signature header that holds the body's HMAC. Never a crash, a
 * read past the input, or a leak. */
#include <sodium.h>

#include "webhook.h"

static const char secret[] = "fuzzing secret";
#define NOW_MS (INT64_C(1700000000) * 1000)

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static struct arena a; /* reset, not released: a fresh chunk per run is slow */
    struct fuzz_split s;
    struct err e = {0};
    int rc;

    fuzz_parse(&a, generic_parse, (const char *)data, size);
    fuzz_split(data, size, &s);
    fuzz_parse(&a, generic_parse, s.body, s.len);
    rc = generic_verify((const unsigned char *)secret, strlen(secret), s.line1, s.line2, s.body,
                        s.len, NOW_MS, 300, &e);
    if (rc != e.code || (rc != 0 && (e.msg[0] == '\0' || (rc != E_AUTH && rc != E_FORBIDDEN))))
        abort();
    if (rc == 0) { /* then the header holds the HMAC, in hex */
        crypto_auth_hmacsha256_state st;
        unsigned char mac[32];
        char hex[65];
        crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)s.line1, strlen(s.line1));
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)s.body, s.len);
        crypto_auth_hmacsha256_final(&st, mac);
        sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
        if (strcasestr(s.line2, hex) == NULL)
            abort();
    }
    fuzz_split_free(&s);
    return 0;
}
