/* cli/admin.c -- engage migrate, backup, config, audit and version.
 *
 * DESIGN: parse the line, call the store, config or auth, print. */
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "cli.h"

static int cmd_migrate(struct cli *c)
{
    struct store_opts so = {.busy_timeout_ms = c->cfg.busy_timeout_ms, .any_version = 1};
    struct store *st = NULL;
    struct err e = {0};
    int from, to, rc, added = 0;

    /* Open without migrating, so that the upgrade is reported with its versions. */
    if (store_open(&st, c->data_dir, &so, &e))
        return die("%s", e.msg);
    rc = store_migrate(st, &from, &to, &e);
    if (rc == 0)
        rc = contracts_seed(st, &added, &e);
    store_close(st);
    if (rc)
        return die("%s", e.msg);
    if (c->json)
        print_json(json_pack("{s:i,s:i,s:i}", "from", from, "to", to, "contracts_added", added));
    else if (from == to)
        printf("schema is at version %d: nothing to do\n", to);
    else
        printf("schema migrated from version %d to %d\n", from, to);
    return 0;
}

static int cmd_backup(struct cli *c)
{
    struct store *st;
    struct err e = {0};
    int rc;

    if (c->nargs != 1)
        return usage_error(c, "backup: expected a destination file");
    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    rc = store_backup(st, c->args[0], &e);
    store_close(st);
    if (rc)
        return die("%s", e.msg);
    printf("backed up to %s\n", c->args[0]);
    return 0;
}

static int cmd_config(struct cli *c)
{
    struct buf b;

    buf_init(&b);
    printf("; data directory: %s\n; file: %s\n\n", c->data_dir,
           c->cfg.path[0] ? c->cfg.path : "(none: defaults)");
    config_dump(&c->cfg, &b);
    fputs(b.p, stdout);
    buf_release(&b);
    return 0;
}

const struct cli_cmd cli_cmd_migrate = {
    "migrate",
    cmd_migrate,
    NULL,
    0,
    NULL,
    0,
    "  migrate               apply pending store migrations\n",
    "usage: engage migrate\n\nApplies pending schema migrations to DATA/engage.db "
    "and stores any shipped contract\nthe store does not have yet. Refuses a store "
    "newer than this binary.\n",
};

const struct cli_cmd cli_cmd_backup = {
    "backup",
    cmd_backup,
    NULL,
    0,
    NULL,
    0,
    "  backup FILE           online copy of the store to a new file\n",
    "usage: engage backup FILE\n\nCopies the store to FILE (which must not exist) "
    "with SQLite's online backup:\nsafe while 'engage serve' runs.\n",
};

const struct cli_cmd cli_cmd_config = {
    "config",
    cmd_config,
    " listen= ",
    0,
    NULL,
    0,
    "  config                print the effective configuration\n",
    "usage: engage config\n\nPrints the effective configuration (defaults, file, "
    "environment, flags);\nsecrets are shown as their references.\n",
};

static int cmd_version(struct cli *c)
{
    printf("engage %s\n", ENGAGE_VERSION);
    return 0;
}

const struct cli_cmd cli_cmd_version = {
    "version",
    cmd_version,
    NULL,
    0,
    NULL,
    CLI_NO_SETUP,
    "  version               print the version\n",
    "usage: engage version\n",
};
/* ---- audit ------------------------------------------------------------------------------ */

/* A row of the audit log as a line, from the JSON auth formats for the API and --json. */
static void print_audit(const json_t *a)
{
    const json_t *after = json_object_get(a, "after");
    /* as audit_record stored it */
    char *text = after && !json_is_null(after)
                     ? json_dumps(after, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)
                     : NULL;

    printf("%-6lld %s  %-28s %-18s %s %s  %s\n",
           (long long)json_integer_value(json_object_get(a, "id")),
           json_string_value(json_object_get(a, "at")),
           json_string_value(json_object_get(a, "actor")),
           json_string_value(json_object_get(a, "action")),
           json_string_value(json_object_get(a, "entity")),
           json_string_value(json_object_get(a, "entity_id")), text ? text : "");
    free(text);
}

static int cmd_audit(struct cli *c)
{
    struct store *st;
    struct err e = {0};
    const char *v;
    int64_t limit = 50, last_id;
    json_t *items;
    int rc;

    if (c->nargs > 1 || (c->nargs == 1 && strcmp(c->args[0], "list")))
        return usage_error(c, "audit: expected 'list'");
    if ((v = opt(c, "limit")) && (parse_i64(v, strlen(v), &limit) || limit < 1 || limit > 100000))
        return usage_error(c, "--limit: expected an integer from 1 to 100000, got \"%s\"", v);
    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    rc = audit_list_json(st, 0, (int)limit, NULL, &items, &last_id, &e);
    store_close(st);
    if (rc)
        return die("%s", e.msg);
    print_items(c, items, print_audit, NULL);
    return 0;
}

const struct cli_cmd cli_cmd_audit = {
    "audit",
    cmd_audit,
    " limit= ",
    0,
    NULL,
    0,
    "  audit list            the audit log, newest first\n",
    "usage: engage audit list [--limit N]\n\nThe audit log, newest first: who changed "
    "what (keys, contracts, consent,\nreplays), when, before and after (secrets masked). "
    "Default limit 50.\n",
};
