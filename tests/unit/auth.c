/* tests/unit/auth.c -- API keys (hashed, revocable) and audit records. */
#include <sqlite3.h>

#include "auth/auth.h"
#include "helpers.h"

struct audit_rows {
    int n;
    char action[64], after[512];
};

static int grab_audit(void *ctx, const struct store_audit *a)
{
    struct audit_rows *r = ctx;
    if (r->n++ == 0) {
        snprintf(r->action, sizeof r->action, "%s", a->action);
        snprintf(r->after, sizeof r->after, "%s", a->after ? a->after : "");
    }
    return 0;
}

static int db_contains(const char *dir, const char *needle)
{
    char path[512];
    FILE *f;
    char *buf;
    long n;
    int found;
    snprintf(path, sizeof path, "%s/engage.db-wal", dir);
    f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(path, sizeof path, "%s/engage.db", dir);
        f = fopen(path, "rb");
    }
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    found = memmem(buf, (size_t)n, needle, strlen(needle)) != NULL;
    free(buf);
    return found;
}

UTEST(apikey, create_verify_revoke)
{
    char *d = test_tmpdir();
    struct store_opts o = {.busy_timeout_ms = 1000, .migrate = 1};
    struct store *st;
    struct err e = {0};
    struct principal p;
    struct audit_rows rows = {0};
    char *key;
    int64_t id;

    cr_assert_eq(store_open(&st, d, &o, &e), 0);
    cr_assert_eq(auth_apikey_create(st, "ci", ROLE_MARKETER, "cli:test", "req-1", &key, &id, &e),
                 0);
    cr_assert_eq(strncmp(key, "ek_", 3), 0);
    cr_assert_geq(strlen(key), 40);
    cr_assert_not(db_contains(d, key + 12), "only the hash is stored");
    cr_assert_eq(auth_apikey_verify(st, key, &p, &e), 0, "%s", e.msg);
    cr_assert_eq(p.role, ROLE_MARKETER);
    cr_assert(strstr(p.actor, "apikey:") && strstr(p.actor, ":ci"));
    cr_assert_eq(store_audit_list(st, 0, 10, NULL, grab_audit, &rows, &e), 0);
    cr_assert_eq(rows.n, 1);
    cr_assert_str_eq(rows.action, "apikey.create");
    cr_assert_null(strstr(rows.after, key + 3), "the audit row never holds the key");
    cr_assert_eq(auth_apikey_revoke(st, id, "cli:test", "", &e), 0);
    cr_assert_eq(auth_apikey_verify(st, key, &p, &e), E_AUTH);
    err_clear(&e);
    cr_assert_eq(auth_apikey_revoke(st, id, "cli:test", "", &e), E_NOTFOUND, "revoked once");
    err_clear(&e);
    cr_assert_eq(auth_apikey_verify(st, "ek_not-a-key", &p, &e), E_AUTH);
    free(key);
    store_close(st);
    free(d);
}

/* A revocation that lands while a check is between its store lookup and the cache must
 * not leave the key cached: the generation read before the lookup keeps it out. */
static struct store *race_st;
static int64_t race_id;

static void revoke_now(void)
{
    struct err e = {0};

    cr_assert_eq(auth_apikey_revoke(race_st, race_id, "cli:test", "", &e), 0, "%s", e.msg);
}

UTEST(apikey, revoked_during_check_is_not_cached)
{
    char *d = test_tmpdir();
    struct store_opts o = {.busy_timeout_ms = 1000, .migrate = 1};
    struct store *st;
    struct err e = {0};
    struct principal p;
    char *key;

    cr_assert_eq(store_open(&st, d, &o, &e), 0);
    cr_assert_eq(store_open(&race_st, d, &o, &e), 0);
    cr_assert_eq(auth_apikey_create(st, "racy", ROLE_ADMIN, "cli:test", "", &key, &race_id, &e), 0);
    auth_cache_clear();
    auth_test_after_lookup = revoke_now;
    cr_assert_eq(auth_apikey_verify(st, key, &p, &e), 0, "valid when it was looked up");
    auth_test_after_lookup = NULL;
    cr_assert_eq(auth_apikey_cached(key, &p), 0, "the revoked key is not in the cache");
    cr_assert_eq(auth_apikey_verify(st, key, &p, &e), E_AUTH, "and is refused at once");
    free(key);
    store_close(race_st);
    store_close(st);
    free(d);
}

/* Only fields named like a secret: a sync mapping's "key" column, a sort key, "tokens_used"
 * or "secretary" are data; a *_ref member is a reference to a secret, kept. */
UTEST(audit, only_secret_fields_are_masked)
{
    json_t *v = json_loads(
        "{\"name\":\"crm\",\"password_ref\":\"env:CRM_PW\",\"passwordRef\":\"file:/s/pw\","
        "\"mapping\":{\"tables\":[{\"table\":\"orders\",\"key\":\"id\",\"cursor\":\"u\","
        "\"attributes\":{\"sort_key\":\"k\",\"public_key\":\"pk\",\"tokens_used\":\"t\","
        "\"secretary\":\"s\",\"keyword\":\"w\",\"primary_key\":\"p\",\"hmac_key\":\"h\","
        "\"master_key\":\"m\",\"session_key\":\"s\",\"write_key\":\"w\",\"writeKey\":\"w\","
        "\"license_key\":\"l\",\"ssh_key\":\"s\"}}]},"
        "\"password\":\"p\",\"db_password\":\"p\",\"secret\":\"s\",\"client_secret\":\"s\","
        "\"sessionToken\":\"t\",\"refresh_token\":\"t\",\"api_key\":\"k\",\"apiKey\":\"k\","
        "\"APIKey\":\"k\",\"x-api-key\":\"k\",\"private_key\":\"k\",\"signingKey\":\"k\","
        "\"credentials\":{\"user\":\"u\"},\"Authorization\":\"Bearer x\",\"passphrase\":null}",
        0, NULL);
    json_t *m = audit_mask(v);
    char *s = json_dumps(m, JSON_SORT_KEYS | JSON_COMPACT);
    cr_assert_str_eq(
        s, "{\"APIKey\":\"***\",\"Authorization\":\"***\",\"apiKey\":\"***\",\"api_key\":\"***\","
           "\"client_secret\":\"***\",\"credentials\":\"***\",\"db_password\":\"***\","
           "\"mapping\":{\"tables\":[{\"attributes\":{\"hmac_key\":\"***\",\"keyword\":\"w\","
           "\"license_key\":\"***\",\"master_key\":\"***\",\"primary_key\":\"p\","
           "\"public_key\":\"pk\",\"secretary\":\"s\",\"session_key\":\"***\",\"sort_key\":\"k\","
           "\"ssh_key\":\"***\",\"tokens_used\":\"t\",\"writeKey\":\"***\",\"write_key\":\"***\"},"
           "\"cursor\":\"u\","
           "\"key\":\"id\",\"table\":\"orders\"}]},\"name\":\"crm\",\"passphrase\":null,"
           "\"password\":\"***\",\"passwordRef\":\"file:/s/pw\",\"password_ref\":\"env:CRM_PW\","
           "\"private_key\":\"***\",\"refresh_token\":\"***\",\"secret\":\"***\","
           "\"sessionToken\":\"***\",\"signingKey\":\"***\",\"x-api-key\":\"***\"}");
    free(s);
    json_decref(m);
    json_decref(v);
}

UTEST(audit, secrets_are_masked)
{
    json_t *v = json_pack("{s:s,s:{s:s,s:s},s:[{s:s}]}", "name", "crm", "conn", "password", "pw",
                          "host", "db", "list", "api_key", "k");
    json_t *m = audit_mask(v);
    char *s = json_dumps(m, JSON_SORT_KEYS | JSON_COMPACT);
    cr_assert_str_eq(
        s, "{\"conn\":{\"host\":\"db\",\"password\":\"***\"},\"list\":[{\"api_key\":\"***\"}],"
           "\"name\":\"crm\"}");
    free(s);
    json_decref(m);
    json_decref(v);
}
