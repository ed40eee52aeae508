/* cli/apikey.c -- engage apikey create|list|revoke.
 *
 * DESIGN: parse the line, call auth, print. The key's secret is printed once and
 * freed with secret_free(). */
#include <string.h>

#include "auth/auth.h"
#include "core/secret.h"
#include "cli.h"

/* ---- apikeys ------------------------------------------------------------------------------ */

static int print_key(void *ctx, const struct store_apikey *k)
{
    struct list_out *lo = ctx;
    char ts[32];

    time_format_iso(k->created_at, ts);
    if (lo->items) {
        json_array_append_new(lo->items, json_pack("{s:I,s:s,s:s,s:s,s:s,s:b}", "id",
                                                   (json_int_t)k->id, "name", k->name, "role",
                                                   k->role, "prefix", k->prefix, "created_at", ts,
                                                   "revoked", k->revoked_at != 0));
    } else {
        printf("%-4lld %-20s %-9s %s…  %s%s\n", (long long)k->id, k->name, k->role, k->prefix, ts,
               k->revoked_at ? "  revoked" : "");
    }
    return 0;
}

/* engage apikey create --role ROLE --name NAME */
static int apikey_create(struct cli *c)
{
    const char *rs = opt(c, "role"), *name = opt(c, "name");
    struct store *st;
    struct err e = {0};
    enum role r;
    char *key = NULL;
    int64_t id;
    int rc;

    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    if (rs == NULL || role_parse(rs, &r)) {
        store_close(st);
        return usage_error(c, "apikey create: --role must be admin, marketer, analyst or ingest");
    }
    if (name == NULL) {
        store_close(st);
        return usage_error(c, "apikey create: --name is required");
    }
    rc = auth_apikey_create(st, name, r, c->actor, "", &key, &id, &e);
    if (rc == 0) {
        if (c->json)
            print_json(json_pack("{s:I,s:s,s:s,s:s}", "id", (json_int_t)id, "name", name, "role",
                                 rs, "key", key));
        else
            printf("%s\n(api key %lld, role %s: shown once, keep it safe)\n", key, (long long)id,
                   rs);
        secret_free(key);
    }
    store_close(st);
    return rc ? die("%s", e.msg) : 0;
}

/* engage apikey list */
static int apikey_list(struct cli *c)
{
    struct list_out lo = {c, c->json ? json_array() : NULL, 0};
    struct store *st;
    struct err e = {0};
    int rc;

    if ((rc = open_store(c, &st, OPEN_MIGRATE))) {
        json_decref(lo.items);
        return rc;
    }
    rc = store_apikeys(st, print_key, &lo, &e);
    if (rc == 0 && c->json)
        print_json(json_pack("{s:O}", "items", lo.items));
    json_decref(lo.items);
    store_close(st);
    return rc ? die("%s", e.msg) : 0;
}

/* engage apikey revoke ID */
static int apikey_revoke(struct cli *c)
{
    struct store *st;
    struct err e = {0};
    int64_t id;
    int rc;

    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    if (parse_i64(c->args[1], strlen(c->args[1]), &id)) {
        store_close(st);
        return usage_error(c, "apikey revoke: expected a key id, got \"%s\"", c->args[1]);
    }
    rc = auth_apikey_revoke(st, id, c->actor, "", &e);
    if (rc == 0 && !c->json)
        printf("api key %lld revoked\n", (long long)id);
    store_close(st);
    return rc ? die("%s", e.msg) : 0;
}

static int apikey_usage(struct cli *c)
{
    if (c->nargs >= 1 && strcmp(c->args[0], "revoke") == 0)
        return usage_error(c, "apikey revoke: expected one key id (see 'engage apikey list')");
    return usage_error(c, "apikey: expected create, list or revoke ID");
}

static const struct cli_cmd apikey_subs[] = {
    CLI_SUB("create", apikey_create, " role= name= ", 0),
    CLI_SUB("list", apikey_list, NULL, 0),
    CLI_SUB("revoke", apikey_revoke, NULL, 1),
    {0},
};

const struct cli_cmd cli_cmd_apikey = {
    "apikey", apikey_usage, NULL, 0, apikey_subs, 0,
    "  apikey create|list|revoke                API keys\n",
    "usage: engage apikey create --role ROLE --name NAME\n"
    "       engage apikey list\n       engage apikey revoke ID\n\n"
    "Roles: admin, marketer, analyst, ingest. The key is shown once, at creation;\n"
    "the store keeps only its hash. Send it as 'Authorization: Bearer KEY'.\n",
};
