/* auth/auth.c -- API keys and audit records. */
#include "auth.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "../core/secret.h"

#define KEY_HASH_BYTES 32

static const struct {
    enum role r;
    const char *name;
} roles[] = {
    {ROLE_INGEST, "ingest"},
    {ROLE_ANALYST, "analyst"},
    {ROLE_MARKETER, "marketer"},
    {ROLE_ADMIN, "admin"},
};

const char *role_name(enum role r)
{
    size_t i;

    for (i = 0; i < sizeof roles / sizeof *roles; i++)
        if (roles[i].r == r)
            return roles[i].name;
    return "none";
}

int role_parse(const char *s, enum role *out)
{
    size_t i;

    for (i = 0; i < sizeof roles / sizeof *roles; i++) {
        if (strcmp(roles[i].name, s) == 0) {
            *out = roles[i].r;
            return 0;
        }
    }
    return E_INVAL;
}

static void key_hash(const char *key, unsigned char out[KEY_HASH_BYTES])
{
    crypto_generichash(out, KEY_HASH_BYTES, (const unsigned char *)key, strlen(key), NULL, 0);
}

int auth_apikey_create(struct store *st, const char *name, enum role role, const char *actor,
                       const char *req_id, char **key_out, int64_t *id, struct err *e)
{
    unsigned char h[KEY_HASH_BYTES];
    char prefix[16], idbuf[32];
    char *token, *key;
    json_t *after;
    int rc;

    if (name == NULL || *name == '\0' || strlen(name) > 128)
        return ERRF(e, E_INVAL, "name", "a key needs a name of 1 to 128 characters");
    if (sodium_init() < 0)
        return ERR(e, E_INTERNAL, "libsodium failed to initialise");
    token = secret_random_token(32);
    key = xasprintf("ek_%s", token);
    secret_free(token);
    key_hash(key, h);
    snprintf(prefix, sizeof prefix, "%.10s", key);
    rc = store_begin(st, e);
    if (rc) {
        secret_free(key);
        return rc;
    }
    rc = store_apikey_add(st, name, role_name(role), prefix, h, sizeof h, clock_now_ms(), id, e);
    if (rc == 0) {
        snprintf(idbuf, sizeof idbuf, "%lld", (long long)*id);
        after = json_pack("{s:I,s:s,s:s,s:s}", "id", (json_int_t)*id, "name", name, "role",
                          role_name(role), "prefix", prefix);
        rc = audit_record(st, actor, "apikey.create", "apikey", idbuf, NULL, after, req_id, e);
        json_decref(after);
    }
    if (rc == 0)
        rc = store_commit(st, e);
    else
        store_rollback(st);
    if (rc) {
        secret_free(key);
        return rc;
    }
    *key_out = key;
    return 0;
}

int auth_apikey_revoke(struct store *st, int64_t id, const char *actor, const char *req_id,
                       struct err *e)
{
    char idbuf[32];
    json_t *after;
    int rc;

    rc = store_begin(st, e);
    if (rc)
        return rc;
    rc = store_apikey_revoke(st, id, clock_now_ms(), e);
    if (rc == 0) {
        snprintf(idbuf, sizeof idbuf, "%lld", (long long)id);
        after = json_pack("{s:I,s:b}", "id", (json_int_t)id, "revoked", 1);
        rc = audit_record(st, actor, "apikey.revoke", "apikey", idbuf, NULL, after, req_id, e);
        json_decref(after);
    }
    if (rc == 0)
        rc = store_commit(st, e);
    else
        store_rollback(st);
    if (rc == 0)
        auth_cache_clear(); /* refused at once in this process */
    return rc;
}

struct named_keys {
    const char *name;
    int64_t *ids;
    int n, cap;
};

static int find_named(void *ctx, const struct store_apikey *k)
{
    struct named_keys *nk = ctx;

    if (strcmp(k->name, nk->name) != 0 || k->revoked_at != 0)
        return 0;
    if (nk->n == nk->cap) {
        nk->cap = nk->cap ? 2 * nk->cap : 8;
        nk->ids = xrealloc(nk->ids, (size_t)nk->cap * sizeof *nk->ids);
    }
    nk->ids[nk->n++] = k->id;
    return 0;
}

int auth_apikey_revoke_named(struct store *st, const char *name, const char *actor,
                             const char *req_id, int *revoked, struct err *e)
{
    struct named_keys nk = {name, NULL, 0, 0};
    int i, rc;

    *revoked = 0;
    /* The ids are read first: no statement is open while a revocation writes. */
    rc = store_apikeys(st, find_named, &nk, e);
    for (i = 0; rc == 0 && i < nk.n; i++)
        if ((rc = auth_apikey_revoke(st, nk.ids[i], actor, req_id, e)) == 0)
            (*revoked)++;
    free(nk.ids);
    return rc;
}

/* Keys verified in the last few seconds, by hash: a busy ingestion client sends its
 * key with every request, and each lookup (with its "last used" write) would stand in
 * the writer's way. A revoked key is refused within AUTH_CACHE_MS. */
#define AUTH_CACHE 64
#define AUTH_CACHE_MS 5000
static struct {
    unsigned char hash[KEY_HASH_BYTES];
    struct principal who;
    int64_t at;
} auth_cache[AUTH_CACHE];
static pthread_mutex_t auth_cache_mu = PTHREAD_MUTEX_INITIALIZER;
/* Bumped by every clear (a revocation): a check that read the key from the store
 * before a revocation must not put it back into the cache after the clear, or the
 * revoked key would pass for another AUTH_CACHE_MS. auth_cache_mu protects it. */
static uint64_t auth_cache_gen;
void (*auth_test_after_lookup)(void); /* tests only: runs between lookup and caching */

static int cache_get(const unsigned char *h, struct principal *out)
{
    int64_t now = clock_mono_ms();
    int i, hit = 0;

    pthread_mutex_lock(&auth_cache_mu);
    for (i = 0; i < AUTH_CACHE && !hit; i++)
        if (auth_cache[i].at && now - auth_cache[i].at < AUTH_CACHE_MS &&
            sodium_memcmp(auth_cache[i].hash, h, KEY_HASH_BYTES) == 0) {
            *out = auth_cache[i].who;
            hit = 1;
        }
    pthread_mutex_unlock(&auth_cache_mu);
    return hit;
}

static uint64_t cache_gen(void)
{
    uint64_t g;

    pthread_mutex_lock(&auth_cache_mu);
    g = auth_cache_gen;
    pthread_mutex_unlock(&auth_cache_mu);
    return g;
}

/* Caches who for h, unless the cache was cleared since gen was read. */
static void cache_put(const unsigned char *h, const struct principal *who, uint64_t gen)
{
    int64_t now = clock_mono_ms();
    int i, slot = 0;

    pthread_mutex_lock(&auth_cache_mu);
    if (gen != auth_cache_gen) {
        pthread_mutex_unlock(&auth_cache_mu);
        return;
    }
    for (i = 0; i < AUTH_CACHE; i++) {
        if (auth_cache[i].at == 0 || sodium_memcmp(auth_cache[i].hash, h, KEY_HASH_BYTES) == 0) {
            slot = i;
            break;
        }
        if (auth_cache[i].at < auth_cache[slot].at)
            slot = i; /* the oldest goes */
    }
    memcpy(auth_cache[slot].hash, h, KEY_HASH_BYTES);
    auth_cache[slot].who = *who;
    auth_cache[slot].at = now;
    pthread_mutex_unlock(&auth_cache_mu);
}

void auth_cache_clear(void)
{
    pthread_mutex_lock(&auth_cache_mu);
    memset(auth_cache, 0, sizeof auth_cache);
    auth_cache_gen++;
    pthread_mutex_unlock(&auth_cache_mu);
}

int auth_apikey_cached(const char *key, struct principal *out)
{
    unsigned char h[KEY_HASH_BYTES];

    if (strncmp(key, "ek_", 3) != 0 || strlen(key) > 128)
        return 0;
    key_hash(key, h);
    return cache_get(h, out);
}

int auth_apikey_verify(struct store *st, const char *key, struct principal *out, struct err *e)
{
    unsigned char h[KEY_HASH_BYTES];
    struct store_apikey k;
    char name[129], role[32];
    struct err tmp = {0};
    enum role r;
    uint64_t gen;
    int rc;

    if (strncmp(key, "ek_", 3) != 0 || strlen(key) > 128)
        return ERR(e, E_AUTH, "invalid API key");
    key_hash(key, h);
    if (cache_get(h, out))
        return 0;
    gen = cache_gen(); /* before the lookup: a clear after it keeps this key out */
    rc = store_apikey_by_hash(st, h, sizeof h, &k, name, sizeof name, role, sizeof role, &tmp);
    if (rc == E_NOTFOUND)
        return ERR(e, E_AUTH, "invalid or revoked API key");
    if (rc) {
        *e = tmp;
        return rc;
    }
    if (role_parse(role, &r))
        return ERR(e, E_AUTH, "API key has an unknown role");
    out->role = r;
    out->key_id = k.id;
    snprintf(out->actor, sizeof out->actor, "apikey:%lld:%.64s", (long long)k.id, name);
    if (auth_test_after_lookup)
        auth_test_after_lookup();
    cache_put(h, out, gen);
    return 0;
}

/* Whether a member's name says it holds a secret, word by word (words split at _, -, .
 * and a change from lower to upper case): one word is password, passwd, passphrase,
 * secret, token, credential(s), apikey, cookie or authorization, or api, private,
 * secret, access, signing or encryption is followed by key. A bare "key" (a mapping's
 * key column, a sort key) is none, nor is a name whose last word is ref: a reference to
 * a secret (env:VAR, file:PATH), kept so the record says where it comes from. */
static int secret_name(const char *k)
{
    static const char *const words[] = {"password", "passwd",        "passphrase",  "secret",
                                        "token",    "credential",    "credentials", "apikey",
                                        "cookie",   "authorization", NULL};
    /* "KIND_key" is a secret unless KIND says it is data: naming the secret kinds
     * (api, hmac, session, write, license…) would let each one forgotten through. */
    static const char *const data_key[] = {
        "sort",      "public",   "primary", "foreign", "partition", "cache",   "lookup",
        "join",      "unique",   "shard",   "routing", "group",     "natural", "idempotency",
        "dedup",     "dedupe",   "row",     "index",   "object",    "bucket",  "composite",
        "surrogate", "business", "map",     NULL};
    char w[2][32] = {"", ""};
    int cur = 0, found = 0;
    size_t n = 0, i, j;

    for (i = 0;; i++) {
        char ch = k[i];
        int split = ch == '\0' || ch == '_' || ch == '-' || ch == '.' ||
                    (i > 0 && ch >= 'A' && ch <= 'Z' && k[i - 1] >= 'a' && k[i - 1] <= 'z');
        if (split && n) { /* a word ends: w[cur] */
            w[cur][n < sizeof w[cur] ? n : sizeof w[cur] - 1] = '\0';
            for (j = 0; words[j]; j++)
                found |= strcmp(w[cur], words[j]) == 0;
            if (strcmp(w[cur], "key") == 0 && w[!cur][0]) {
                int data = 0;
                for (j = 0; data_key[j]; j++)
                    data |= strcmp(w[!cur], data_key[j]) == 0;
                found |= !data;
            }
            cur = !cur;
            n = 0;
        }
        if (ch == '\0')
            break;
        if (!split || (ch >= 'A' && ch <= 'Z')) {
            if (n < sizeof w[cur] - 1)
                w[cur][n] = (char)(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
            n++;
        }
    }
    return found && strcmp(w[!cur], "ref") != 0; /* w[!cur]: the last word */
}

json_t *audit_mask(const json_t *v)
{
    if (json_is_object(v)) {
        json_t *out = json_object();
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            if (secret_name(k) && !json_is_null(x))
                json_object_set_new(out, k, json_string("***"));
            else
                json_object_set_new(out, k, audit_mask(x));
        }
        return out;
    }
    if (json_is_array(v)) {
        json_t *out = json_array();
        size_t i;
        json_t *x;
        json_array_foreach((json_t *)v, i, x)
            json_array_append_new(out, audit_mask(x));
        return out;
    }
    return json_deep_copy(v);
}

int audit_record(struct store *st, const char *actor, const char *action, const char *entity,
                 const char *entity_id, const json_t *before, const json_t *after,
                 const char *req_id, struct err *e)
{
    json_t *mb = before ? audit_mask(before) : NULL, *ma = after ? audit_mask(after) : NULL;
    char *bt = mb ? json_dumps(mb, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    char *at = ma ? json_dumps(ma, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    struct store_audit a = {
        .at = clock_now_ms(),
        .actor = actor,
        .action = action,
        .entity = entity,
        .entity_id = entity_id,
        .before = bt,
        .after = at,
        .request_id = req_id,
    };
    int rc = store_audit_add(st, &a, e);

    free(bt);
    free(at);
    json_decref(mb);
    json_decref(ma);
    return rc;
}

json_t *audit_json(const struct store_audit *a)
{
    json_t *before = a->before ? json_loads(a->before, 0, NULL) : NULL;
    json_t *after = a->after ? json_loads(a->after, 0, NULL) : NULL;
    char ts[32];

    time_format_iso(a->at, ts);
    return json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:o,s:o,s:s}", "id", (json_int_t)a->id, "at", ts,
                     "actor", a->actor, "action", a->action, "entity", a->entity, "entity_id",
                     a->entity_id, "before", before ? before : json_null(), "after",
                     after ? after : json_null(), "request_id", a->request_id);
}

/* ---- records as the API and the CLI show them ---------------------------------------- */

json_t *auth_apikey_json(const struct store_apikey *k)
{
    char cts[32], uts[32], rts[32];

    time_format_iso(k->created_at, cts);
    time_format_iso(k->last_used_at, uts);
    time_format_iso(k->revoked_at, rts);
    return json_pack("{s:I,s:s,s:s,s:s,s:s,s:s?,s:s?}", "id", (json_int_t)k->id, "name", k->name,
                     "role", k->role, "prefix", k->prefix, "created_at", cts, "last_used_at",
                     k->last_used_at ? uts : NULL, "revoked_at", k->revoked_at ? rts : NULL);
}

static int add_key(void *ctx, const struct store_apikey *k)
{
    json_array_append_new(ctx, auth_apikey_json(k));
    return 0;
}

int auth_apikeys_json(struct store *st, json_t **items, struct err *e)
{
    int rc;

    *items = json_array();
    rc = store_apikeys(st, add_key, *items, e);
    if (rc) {
        json_decref(*items);
        *items = NULL;
    }
    return rc;
}

json_t *auth_apikey_created_json(int64_t id, const char *name, enum role role, const char *key)
{
    return json_pack("{s:I,s:s,s:s,s:s}", "id", (json_int_t)id, "name", name, "role",
                     role_name(role), "key", key);
}

struct audit_page {
    json_t *items;
    int64_t last_id;
};

static int add_audit(void *ctx, const struct store_audit *a)
{
    struct audit_page *p = ctx;

    json_array_append_new(p->items, audit_json(a));
    p->last_id = a->id;
    return 0;
}

int audit_list_json(struct store *st, int64_t before_id, int limit,
                    const struct store_audit_filter *f, json_t **items, int64_t *last_id,
                    struct err *e)
{
    struct audit_page p = {json_array(), 0};
    int rc = store_audit_list(st, before_id, limit, f, add_audit, &p, e);

    if (rc) {
        json_decref(p.items);
        p.items = NULL;
    }
    *items = p.items;
    *last_id = p.last_id;
    return rc;
}
