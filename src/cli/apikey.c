/* cli/apikey.c -- engage apikey create|list|revoke.
 *
 * DESIGN: parse the line, call auth, print. The key's secret is printed once and
 * freed with secret_free(). */
#include <string.h>

#include "auth/auth.h"
#include "core/secret.h"
#include "cli.h"

/* ---- apikeys ------------------------------------------------------------------------------ */

/* A key as a line, from the JSON auth formats for the API and --json alike. */
static void print_key(const json_t *k)
{
    printf("%-4lld %-20s %-9s %s…  %s%s\n", (long long)json_integer_value(json_object_get(k, "id")),
           json_string_value(json_object_get(k, "name")),
           json_string_value(json_object_get(k, "role")),
           json_string_value(json_object_get(k, "prefix")),
           json_string_value(json_object_get(k, "created_at")),
           json_is_string(json_object_get(k, "revoked_at")) ? "  revoked" : "");
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
            print_json(auth_apikey_created_json(id, name, r, key));
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
    return list_items(c, auth_apikeys_json, print_key, NULL);
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
    "apikey",
    apikey_usage,
    NULL,
    0,
    apikey_subs,
    0,
    "  apikey create|list|revoke                API keys\n",
    "usage: engage apikey create --role ROLE --name NAME\n"
    "       engage apikey list\n       engage apikey revoke ID\n\n"
    "Roles: admin, marketer, analyst, ingest. The key is shown once, at creation;\n"
    "the store keeps only its hash. Send it as 'Authorization: Bearer KEY'.\n",
};
