/* cli/contracts.c -- engage contracts list|show|put.
 *
 * DESIGN: parse the line, call the contracts module, print. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- contracts ------------------------------------------------------------------------- */

static int print_contract(void *ctx, const struct store_contract *k)
{
    struct list_out *lo = ctx;
    char ts[32];

    if (lo->c->sub && strcmp(lo->c->sub, "show") == 0) {
        /* The latest document alone: save it, edit it, put it back. */
        if (!lo->shown)
            puts(k->body); /* versions come newest first */
        lo->shown = 1;
    } else {
        time_format_iso(k->created_at, ts);
        printf("%-24s v%-4d %-8s %s  %s\n", k->name, k->version, k->kind, ts, k->created_by);
    }
    return 0;
}

/* engage contracts list, or show NAME: the latest versions, or one contract's */
static int contracts_print(struct cli *c)
{
    struct list_out lo = {c, NULL, 0};
    const char *name = c->nargs > 1 ? c->args[1] : NULL;
    struct store *st;
    struct err e = {0};
    int rc;

    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    if (c->json)
        rc = contract_records_json(st, name, &lo.items, &e);
    else
        rc = contract_records_each(st, name, print_contract, &lo, &e);
    if (rc == 0 && c->json)
        print_json(name ? json_pack("{s:s,s:O}", "name", name, "versions", lo.items)
                        : json_pack("{s:O}", "items", lo.items));
    json_decref(lo.items);
    store_close(st);
    return rc ? die("%s", e.msg) : 0;
}

/* engage contracts put NAME FILE */
static int contracts_put(struct cli *c)
{
    struct errlist errs = {0};
    struct store *st;
    struct err e = {0};
    char *text = NULL;
    size_t n;
    int version, unchanged, rc;

    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    rc = file_read_all(c->args[2], 1 << 20, &text, &n, &e);
    if (rc == 0)
        rc = contract_put(st, c->args[1], text, n, c->actor, "", &version, &unchanged, &errs, &e);
    free(text);
    store_close(st);
    if (rc == E_INVAL && errs.n) {
        print_problems(c->args[2], &errs);
        return 1;
    }
    if (rc)
        return die("%s", e.msg);
    if (c->json)
        print_json(json_pack("{s:s,s:i,s:b}", "name", c->args[1], "version", version, "unchanged",
                             unchanged));
    else if (unchanged)
        printf("contract %s is unchanged: version %d already holds this document\n", c->args[1],
               version);
    else
        printf("contract %s is now version %d\n", c->args[1], version);
    return 0;
}

static int contracts_usage(struct cli *c)
{
    return usage_error(c, "contracts: expected list, show NAME or put NAME FILE");
}

static const struct cli_cmd contracts_subs[] = {
    CLI_SUB("list", contracts_print, NULL, 0),
    CLI_SUB("show", contracts_print, NULL, 1),
    CLI_SUB("put", contracts_put, NULL, 2),
    {0},
};

const struct cli_cmd cli_cmd_contracts = {
    "contracts",
    contracts_usage,
    NULL,
    0,
    contracts_subs,
    0,
    "  contracts list|show NAME|put NAME FILE   event and contact contracts\n",
    "usage: engage contracts list\n       engage contracts show NAME\n"
    "       engage contracts put NAME FILE\n\n"
    "Versioned contracts (docs/contracts.md). 'put' stores a new version; old\n"
    "versions are kept and every stored event records the version it passed.\n",
};
