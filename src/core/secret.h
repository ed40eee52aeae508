/* core/secret.h -- secrets that must live in the store: libsodium secretbox.
 *
 * The 32-byte key comes from [secrets] key_env (64 hex digits in a variable) or
 * key_file (64 hex digits; created with mode 0600 on first use when it is the
 * default path under the data directory). Sealed form: "sb1:" + base64url(nonce ||
 * ciphertext). Plain text never leaves these functions except to the caller. */
#ifndef ENGAGE_SECRET_H
#define ENGAGE_SECRET_H

#include "config.h"

#define SECRET_KEY_BYTES 32

int secret_key_load(const struct config *c, unsigned char key[SECRET_KEY_BYTES], struct err *e);
/* Caller owns *out (NUL-terminated). */
int secret_seal(const unsigned char key[SECRET_KEY_BYTES], const char *plain, size_t n, char **out,
                struct err *e);
/* Caller owns *out and should wipe it (secret_free). E_INVAL for a wrong key or tampering. */
int secret_open(const unsigned char key[SECRET_KEY_BYTES], const char *sealed, char **out,
                size_t *out_len, struct err *e);
void secret_free(char *p);
/* Random token of nbytes, base64url without padding; caller owns it. */
char *secret_random_token(size_t nbytes);

#endif
