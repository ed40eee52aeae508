/* campaign/env.c -- what the send half shares: the providers, the token key and the
 * base URL of links (struct send_env in campaign.h).
 *
 * DESIGN: built once by `engage serve` before the HTTP server, immutable afterwards,
 * so routes and the dispatcher read it without a lock. The token key is
 * HMAC-SHA256(secrets key, "engage token v1"): one secret on disk serves both
 * secretbox and link signing without either use revealing the other's key, and the
 * context's version names a future rotation. Links use [server] public_url (without a
 * trailing slash); with none they use the server's own address, and public_url_set
 * says so (a provider whose recipients are elsewhere refuses to run then). */
#include <sodium.h>
#include <string.h>

#include "../core/secret.h"
#include "../provider/provider.h"
#include "campaign.h"

static const char token_context[] = "engage token v1";

int send_env_init(struct send_env *env, const struct config *cfg, const char *listen_url,
                  struct segment_service *segments, struct err *e)
{
    unsigned char key[SECRET_KEY_BYTES];
    const char *base = cfg->public_url[0] ? cfg->public_url : listen_url;
    size_t n = strlen(base);
    int rc;

    memset(env, 0, sizeof *env);
    env->cfg = cfg;
    env->segments = segments;
    while (n > 0 && base[n - 1] == '/')
        n--;
    if (n >= sizeof env->base_url)
        return ERR(e, E_INVAL, "[server] public_url: longer than %zu characters",
                   sizeof env->base_url - 1);
    memcpy(env->base_url, base, n);
    env->base_url[n] = '\0';
    env->public_url_set = cfg->public_url[0] != '\0';
    rc = secret_key_load(cfg, key, e);
    if (rc)
        goto out;
    crypto_auth_hmacsha256(env->token_key, (const unsigned char *)token_context,
                           sizeof token_context - 1, key);
    mime_init();
    rc = provider_set_new(&env->providers, cfg, e);
out:
    sodium_memzero(key, sizeof key);
    if (rc)
        send_env_release(env);
    return rc;
}

void send_env_release(struct send_env *env)
{
    provider_set_free(env->providers);
    env->providers = NULL;
    sodium_memzero(env->token_key, sizeof env->token_key);
}
