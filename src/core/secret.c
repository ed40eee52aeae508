/* core/secret.c -- secretbox sealing with a configured key. */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int key_from_hex(const char *hex, size_t n, unsigned char key[SECRET_KEY_BYTES])
{
    size_t bin_len = 0;

    while (n > 0 && (hex[n - 1] == '\n' || hex[n - 1] == '\r' || hex[n - 1] == ' '))
        n--;
    if (n != SECRET_KEY_BYTES * 2)
        return E_INVAL;
    if (sodium_hex2bin(key, SECRET_KEY_BYTES, hex, n, NULL, &bin_len, NULL) != 0 ||
        bin_len != SECRET_KEY_BYTES)
        return E_INVAL;
    return 0;
}

int secret_key_load(const struct config *c, unsigned char key[SECRET_KEY_BYTES], struct err *e)
{
    char *data = NULL;
    size_t n;
    int rc;

    if (sodium_init() < 0)
        return ERR(e, E_INTERNAL, "libsodium failed to initialise");
    if (c->secrets_key_env[0]) {
        const char *v = getenv(c->secrets_key_env);
        if (v == NULL)
            return ERR(e, E_INVAL, "[secrets] key_env: environment variable %s is not set",
                       c->secrets_key_env);
        if (key_from_hex(v, strlen(v), key))
            return ERR(e, E_INVAL, "[secrets] key_env: %s must hold 64 hex digits",
                       c->secrets_key_env);
        return 0;
    }
    rc = file_read_all(c->secrets_key_file, 4096, &data, &n, e);
    if (rc == E_NOTFOUND) {
        /* First use: create the key file, readable by its owner only. */
        char hex[SECRET_KEY_BYTES * 2 + 2];
        int fd;
        err_clear(e);
        randombytes_buf(key, SECRET_KEY_BYTES);
        sodium_bin2hex(hex, sizeof hex, key, SECRET_KEY_BYTES);
        memcpy(hex + SECRET_KEY_BYTES * 2, "\n", 2); /* the line end and its NUL */
        fd = open(c->secrets_key_file, O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd < 0)
            return ERR(e, E_IO, "[secrets] key_file: cannot create '%s': %s", c->secrets_key_file,
                       strerror(errno));
        if (write(fd, hex, strlen(hex)) != (ssize_t)strlen(hex) || fsync(fd) != 0) {
            close(fd);
            return ERR(e, E_IO, "[secrets] key_file: cannot write '%s'", c->secrets_key_file);
        }
        close(fd);
        sodium_memzero(hex, sizeof hex);
        return 0;
    }
    if (rc)
        return rc;
    rc = key_from_hex(data, n, key);
    sodium_memzero(data, n);
    free(data);
    if (rc)
        return ERR(e, E_INVAL, "[secrets] key_file: '%s' must hold 64 hex digits",
                   c->secrets_key_file);
    return 0;
}

int secret_seal(const unsigned char key[SECRET_KEY_BYTES], const char *plain, size_t n, char **out,
                struct err *e)
{
    size_t blen = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + n;
    unsigned char *box;
    size_t b64len;
    char *s;

    if (n > 1 << 20)
        return ERR(e, E_TOOBIG, "secret longer than 1 MiB");
    box = xmalloc(blen);
    randombytes_buf(box, crypto_secretbox_NONCEBYTES);
    crypto_secretbox_easy(box + crypto_secretbox_NONCEBYTES, (const unsigned char *)plain, n, box,
                          key);
    b64len = sodium_base64_ENCODED_LEN(blen, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    s = xmalloc(4 + b64len);
    memcpy(s, "sb1:", 4);
    sodium_bin2base64(s + 4, b64len, box, blen, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    free(box);
    *out = s;
    return 0;
}

int secret_open(const unsigned char key[SECRET_KEY_BYTES], const char *sealed, char **out,
                size_t *out_len, struct err *e)
{
    size_t slen = strlen(sealed), blen = 0;
    unsigned char *box;
    char *plain;

    if (strncmp(sealed, "sb1:", 4) != 0 || slen > (2 << 20))
        return ERR(e, E_INVAL, "sealed secret has an unknown format");
    box = xmalloc(slen);
    if (sodium_base642bin(box, slen, sealed + 4, slen - 4, NULL, &blen, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        blen < crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES) {
        free(box);
        return ERR(e, E_INVAL, "sealed secret is not valid base64");
    }
    *out_len = blen - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES;
    plain = xmalloc(*out_len + 1);
    if (crypto_secretbox_open_easy((unsigned char *)plain, box + crypto_secretbox_NONCEBYTES,
                                   blen - crypto_secretbox_NONCEBYTES, box, key) != 0) {
        free(box);
        free(plain);
        return ERR(e, E_INVAL, "sealed secret does not open with this key (wrong key or altered)");
    }
    plain[*out_len] = '\0';
    free(box);
    *out = plain;
    return 0;
}

void secret_free(char *p)
{
    if (p) {
        sodium_memzero(p, strlen(p));
        free(p);
    }
}

char *secret_random_token(size_t nbytes)
{
    unsigned char raw[64];
    size_t len;
    char *s;

    ASSERT(nbytes <= sizeof raw);
    randombytes_buf(raw, nbytes);
    len = sodium_base64_ENCODED_LEN(nbytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    s = xmalloc(len);
    sodium_bin2base64(s, len, raw, nbytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return s;
}
