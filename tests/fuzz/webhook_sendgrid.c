/* tests/fuzz/webhook_sendgrid.c -- libFuzzer: SendGrid's Event Webhook
 * (src/delivery/sendgrid.c).
 *
 * The input is parsed as a body, and so is what follows its first two lines; those
 * lines are the timestamp and signature headers of a verify against SendGrid's published
 * test key, which must refuse everything but the published test vector (nobody forges
 * ECDSA by chance). The input is also loaded as a DER key. Never a crash, a read past
 * the input, an event outside the model's bounds, or a leak (OpenSSL's objects too). */
#include <sodium.h>

#include "webhook.h"

#define PUBLIC_KEY                                                                                 \
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+"                                    \
    "u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhH"                                                        \
    "PTnlvFYPAZFceEu/1FwCM/QmGUhA=="
#define VECTOR_TS "1588788367"
#define VECTOR_BODY                                                                                \
    "{\"category\":\"example_payload\",\"event\":\"test_event\",\"message_id\":\"message_id\"}"

static void *key; /* loaded once, kept for the process */

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static struct arena a; /* reset, not released: a fresh chunk per run is slow */
    struct fuzz_split s;
    struct err e = {0};
    void *k;

    if (key == NULL) {
        unsigned char der[128];
        size_t n = 0;
        if (sodium_base642bin(der, sizeof der, PUBLIC_KEY, strlen(PUBLIC_KEY), NULL, &n, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            (key = sendgrid_key_load(der, n, &e)) == NULL)
            abort();
    }
    fuzz_parse(&a, sendgrid_parse, (const char *)data, size);
    fuzz_split(data, size, &s);
    fuzz_parse(&a, sendgrid_parse, s.body, s.len);
    err_clear(&e);
    if (sendgrid_verify(key, s.line1, s.line2, s.body, s.len, &e) == 0) {
        if (strcmp(s.line1, VECTOR_TS) != 0 || s.len != strlen(VECTOR_BODY) ||
            memcmp(s.body, VECTOR_BODY, s.len) != 0)
            abort(); /* verified something SendGrid never signed */
    } else if (e.code != E_AUTH || e.msg[0] == '\0') {
        abort();
    }
    fuzz_split_free(&s);
    err_clear(&e);
    k = sendgrid_key_load(data, size, &e);
    if ((k == NULL) != (e.code == E_INVAL))
        abort();
    sendgrid_key_free(k);
    return 0;
}
