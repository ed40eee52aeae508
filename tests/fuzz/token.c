/* tests/fuzz/token.c -- libFuzzer: signed tokens (src/campaign/token.c).
 *
 * Each input is checked as a token (as a /u/ link would bring it: NUL-terminated, any
 * length). It must be refused -- nobody forges an HMAC by chance -- unless it is,
 * byte for byte, the token made from the fields it decodes to. The input's first 21
 * bytes are also used as fields to make a token, which must check back to them.
 * Never a crash, a read past the input, or a leak. */
#include <stdlib.h>
#include <string.h>

#include "campaign/campaign.h"

static const unsigned char key[TOKEN_KEY_BYTES] = "fuzzing key, 32 bytes long.....";

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char *s = malloc(size + 1), made[TOKEN_MAX], kind;
    int64_t run, contact;
    int link;

    memcpy(s, data, size);
    s[size] = '\0';
    if (token_check(key, s, &kind, &run, &contact, &link) == 0) {
        token_make(key, kind, run, contact, link, made);
        if (strcmp(made, s) != 0)
            abort(); /* accepted something that is not our own token */
    }
    if (size >= 21) {
        int64_t r, c;
        char k2;
        int l2;
        memcpy(&r, data + 1, 8);
        memcpy(&c, data + 9, 8);
        memcpy(&l2, data + 17, 4);
        token_make(key, (char)data[0], r, c, l2, made);
        if (strlen(made) >= TOKEN_MAX || token_check(key, made, &k2, &run, &contact, &link) != 0 ||
            k2 != (char)data[0] || run != r || contact != c || link != l2)
            abort();
    }
    free(s);
    return 0;
}
