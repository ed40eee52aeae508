/* cli/sync.c -- engage sync source add|list|remove|test, run, backfill, reconcile.
 *
 * DESIGN: parse the line, call src/sync, print its reports as lines or JSON. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* ---- sync ------------------------------------------------------------------------------ */

/* A source as a line, from the JSON src/sync formats for the API and --json alike. */
static void print_source(const json_t *s)
{
    const char *ok = json_string_value(json_object_get(s, "last_ok_at"));
    int64_t failures = json_integer_value(json_object_get(s, "failures"));

    printf("%-20s %-9s last ok %-24s %s%s\n", json_string_value(json_object_get(s, "name")),
           json_string_value(json_object_get(s, "kind")), ok ? ok : "never",
           failures ? "failing: " : "",
           failures ? json_string_value(json_object_get(s, "last_error")) : "");
}

static int sync_source_add(struct cli *c, struct store *st, struct err *e)
{
    const char *mpath = opt(c, "mapping"), *penv = opt(c, "password-env");
    const char *pfile = opt(c, "password-file");
    struct sync_source_spec spec = {.name = opt(c, "name"),
                                    .kind = opt(c, "kind"),
                                    .dsn = opt(c, "dsn"),
                                    .origin = SYNC_ORIGIN_CLI};
    struct errlist errs = {0};
    char *mapping, *ref = NULL, line[1024];
    size_t n;
    int rc, i;

    if (!spec.name || !spec.kind || !spec.dsn || !mpath)
        return usage_error(c, "sync source add: --name, --kind, --dsn and --mapping are required");
    if ((penv != NULL) + (pfile != NULL) + (opt(c, "password-stdin") != NULL) > 1)
        return usage_error(c, "sync source add: one of --password-env, --password-file or "
                              "--password-stdin");
    if (file_read_all(mpath, 1 << 20, &mapping, &n, e))
        return die("%s", e->msg);
    spec.mapping = mapping;
    if (penv || pfile)
        spec.password_ref = ref = xasprintf("%s:%s", penv ? "env" : "file", penv ? penv : pfile);
    if (opt(c, "password-stdin")) {
        size_t len = fgets(line, sizeof line, stdin) ? strlen(line) : 0;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        spec.password = line;
    }
    rc = sync_source_create(st, &c->cfg, &spec, c->actor, "", &errs, e);
    sodium_memzero(line, sizeof line);
    free(mapping);
    free(ref);
    if (rc == E_INVAL && errs.n) {
        for (i = 0; i < errs.n; i++) {
            const char *path = errs.items[i].path;
            if (strncmp(path, "/mapping", 8) == 0)
                fprintf(stderr, "engage: %s: %s: %s\n", mpath, path[8] ? path + 8 : "/",
                        errs.items[i].msg);
            else
                fprintf(stderr, "engage: sync source add: --%s: %s\n",
                        strcmp(path + 1, "password_ref") == 0
                            ? penv ? "password-env" : "password-file"
                        : strcmp(path + 1, "password") == 0 ? "password-stdin"
                                                            : path + 1,
                        errs.items[i].msg);
        }
        return 1;
    }
    if (rc)
        return die("%s", e->msg);
    if (!c->json)
        printf("sync source %s added (%s); run 'engage sync source test %s' to check it\n",
               spec.name, spec.kind, spec.name);
    return 0;
}

/* sync source test: a line a table; *ctx counts the tables that failed. */
static int print_check(void *ctx, const char *table, const char *error, int rows)
{
    if (error) {
        printf("%-24s FAIL  %s\n", table, error);
        ++*(int *)ctx;
    } else {
        printf("%-24s ok    %s\n", table,
               rows ? "columns read" : "columns read (the table is empty)");
    }
    return 0;
}

void print_sync_report(const struct cli *c, const char *verb, const char *name,
                       const struct sync_report *rep, double secs, const char *read_how,
                       const char *tail)
{
    char again[96] = "";

    if (c->json) {
        print_json(json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "source", name, "read",
                             (json_int_t)rep->read, "contacts", (json_int_t)rep->contacts, "events",
                             (json_int_t)rep->events, "deleted", (json_int_t)rep->deleted,
                             "unchanged", (json_int_t)rep->unchanged, "rejected",
                             (json_int_t)rep->rejected, "reread", (json_int_t)rep->reread, "late",
                             (json_int_t)rep->late, "seconds", secs));
        return;
    }
    if (rep->reread)
        snprintf(again, sizeof again, "; %lld read again behind the checkpoint, %lld of them late",
                 (long long)rep->reread, (long long)rep->late);
    printf("%s %s: %lld rows%s: %lld contacts and %lld events stored, %lld deleted, %lld "
           "unchanged, %lld rejected%s (%.1f s)%s\n",
           verb, name, (long long)rep->read, read_how, (long long)rep->contacts,
           (long long)rep->events, (long long)rep->deleted, (long long)rep->unchanged,
           (long long)rep->rejected, again, secs, tail);
}

/* engage sync backfill --source S [--table T] [--since ISO] [--batch N] */
static int sync_backfill(struct cli *c)
{
    const char *name = opt(c, "source"), *since = opt(c, "since"), *v = opt(c, "batch");
    struct sync_opts o = {.table = opt(c, "table"), .backfill = 1};
    struct sync_report rep;
    struct store *st;
    struct err e = {0};
    char *since_json = NULL;
    double t0 = clock_mono_ms();
    int64_t ms, bn = 0;
    int rc;

    if (name == NULL)
        return usage_error(c, "sync backfill: --source is required");
    if (since && time_parse_iso(since, strlen(since), &ms))
        return usage_error(c,
                           "sync backfill: --since: expected an ISO-8601 instant such as "
                           "2026-01-31T00:00:00Z, got \"%s\"",
                           since);
    if (v && (parse_i64(v, strlen(v), &bn) || bn < 1 || bn > 100000))
        return usage_error(c, "sync backfill: --batch takes 1 to 100000 rows");
    o.batch = (int)bn;
    o.progress = !c->json && isatty(STDERR_FILENO);
    if (since) {
        char iso[32];
        json_t *s;
        time_format_iso(ms, iso);
        s = json_string(iso);
        since_json = json_dumps(s, JSON_ENCODE_ANY);
        json_decref(s);
        o.since = since_json;
    }
    if ((rc = open_store(c, &st, OPEN_MIGRATE))) {
        free(since_json);
        return rc;
    }
    rc = sync_pass(st, &c->cfg, name, &o, &rep, &e);
    store_close(st);
    free(since_json);
    if (rc)
        return die("sync backfill %s: %s", name, e.msg);
    print_sync_report(c, "backfill", name, &rep, (clock_mono_ms() - t0) / 1000, " read again",
                      "; live checkpoints untouched");
    return 0;
}

/* What sync run and reconcile do with each source. */
struct per_source {
    struct cli *c;
    struct store *st;
    const struct sync_opts *o;
    int failed;
};

static int reconcile_one(void *ctx, const char *name)
{
    struct per_source *ps = ctx;
    struct cli *c = ps->c;
    struct store *st = ps->st;
    struct err e = {0};
    json_t *rep;
    int64_t mismatches;
    size_t i;

    if (sync_reconcile(st, &c->cfg, name, opt(c, "repair") != NULL, &rep, &mismatches, &e)) {
        fprintf(stderr, "engage: sync reconcile %s: %s\n", name, e.msg);
        ps->failed++;
        return 0;
    }
    if (c->json) {
        print_json(json_incref(rep));
    } else {
        json_t *tables = json_object_get(rep, "tables");
        for (i = 0; i < json_array_size(tables); i++) {
            json_t *t = json_array_get(tables, i), *days = json_object_get(t, "days");
            size_t d;
            if (json_object_get(t, "skipped")) {
                printf("%s %s: skipped (%s)\n", name,
                       json_string_value(json_object_get(t, "table")),
                       json_string_value(json_object_get(t, "skipped")));
                continue;
            }
            printf("%s %s: %lld source rows, %lld stored, %lld refused (dead letters), %lld "
                   "missing, %lld extra%s\n",
                   name, json_string_value(json_object_get(t, "table")),
                   (long long)json_integer_value(json_object_get(t, "source_rows")),
                   (long long)json_integer_value(json_object_get(t, "stored")),
                   (long long)json_integer_value(json_object_get(t, "refused")),
                   (long long)json_integer_value(json_object_get(t, "missing")),
                   (long long)json_integer_value(json_object_get(t, "extra")),
                   json_array_size(days) && opt(c, "repair") ? " (repaired)" : "");
            for (d = 0; d < json_array_size(days); d++) {
                json_t *dy = json_array_get(days, d);
                char *miss = json_dumps(json_object_get(dy, "missing"), JSON_COMPACT);
                char *ext = json_dumps(json_object_get(dy, "extra"), JSON_COMPACT);
                printf("  %s: %lld in the source, %lld stored; missing %s, extra %s\n",
                       json_string_value(json_object_get(dy, "day")),
                       (long long)json_integer_value(json_object_get(dy, "source_rows")),
                       (long long)json_integer_value(json_object_get(dy, "stored")), miss, ext);
                free(miss);
                free(ext);
            }
        }
        if (mismatches && !opt(c, "repair"))
            printf("%s: %lld mismatches; 'engage sync reconcile --source %s --repair' fixes them\n",
                   name, (long long)mismatches, name);
    }
    json_decref(rep);
    return 0;
}

/* engage sync reconcile [--source S] [--repair] */
static int sync_reconcile_cmd(struct cli *c)
{
    struct per_source ps = {c, NULL, NULL, 0};
    struct err e = {0};
    int rc;

    if ((rc = open_store(c, &ps.st, OPEN_MIGRATE)))
        return rc;
    rc = sync_sources_each(ps.st, opt(c, "source"), reconcile_one, &ps, &e);
    store_close(ps.st);
    if (rc)
        return die("%s", e.msg);
    return ps.failed ? 1 : 0;
}

static int sync_one(void *ctx, const char *name)
{
    struct per_source *ps = ctx;
    struct sync_report rep;
    struct err pe = {0};
    double t0 = clock_mono_ms();

    if (sync_pass(ps->st, &ps->c->cfg, name, ps->o, &rep, &pe)) {
        fprintf(stderr, "engage: sync %s: %s\n", name, pe.msg);
        ps->failed++;
        return 0;
    }
    print_sync_report(ps->c, "sync", name, &rep, (clock_mono_ms() - t0) / 1000, "", "");
    return 0;
}

/* engage sync run [--source NAME [--table TABLE]] [--batch N] */
static int sync_run_cmd(struct cli *c)
{
    const char *v = opt(c, "batch");
    struct sync_opts o = {.table = opt(c, "table")};
    struct per_source ps = {c, NULL, &o, 0};
    struct err e = {0};
    int64_t bn = 0;
    int rc;

    if ((rc = open_store(c, &ps.st, OPEN_MIGRATE)))
        return rc;
    if (v && (parse_i64(v, strlen(v), &bn) || bn < 1 || bn > 100000)) {
        store_close(ps.st);
        return usage_error(c, "sync run: --batch takes 1 to 100000 rows");
    }
    o.batch = (int)bn;
    if (o.table && !opt(c, "source")) {
        store_close(ps.st);
        return usage_error(c, "sync run: --table needs --source");
    }
    rc = sync_sources_each(ps.st, opt(c, "source"), sync_one, &ps, &e);
    store_close(ps.st);
    if (rc)
        return die("%s", e.msg);
    return ps.failed ? 1 : 0;
}

/* engage sync source add --name N --kind K --dsn DSN --mapping FILE [password] */
static int sync_source_add_cmd(struct cli *c)
{
    struct store *st;
    struct err e = {0};
    int rc;

    /* Adding the first source may make the store; nothing else here does. */
    if ((rc = open_store(c, &st, OPEN_MIGRATE | OPEN_CREATE)))
        return rc;
    rc = sync_source_add(c, st, &e);
    store_close(st);
    return rc;
}

/* engage sync source list */
static int sync_source_list(struct cli *c)
{
    return list_items(c, sync_sources_list_json, print_source,
                      "no sync sources (add one with 'engage sync source add')\n");
}

/* engage sync source remove NAME */
static int sync_source_remove(struct cli *c)
{
    struct store *st;
    struct err e = {0};
    int rc;

    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    rc = sync_source_delete(st, c->args[2], c->actor, "", &e);
    if (rc == 0 && !c->json)
        printf("sync source %s removed (what it stored stays)\n", c->args[2]);
    store_close(st);
    return rc ? die("%s", e.msg) : 0;
}

/* engage sync source test NAME */
static int sync_source_test_cmd(struct cli *c)
{
    struct store *st;
    struct err e = {0};
    int rc, bad = 0;

    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    rc = sync_source_check(st, &c->cfg, c->args[2], print_check, &bad, &e);
    store_close(st);
    if (rc)
        return die("%s", e.msg);
    return bad ? 1 : 0;
}

static int sync_usage(struct cli *c)
{
    return usage_error(c, "sync: expected 'source add|list|remove|test', 'run', 'backfill' "
                          "or 'reconcile'");
}

/* 'sync source' and a word that names no subcommand. */
static int sync_source_usage(struct cli *c)
{
    if (c->nargs < 2)
        return sync_usage(c);
    return usage_error(c, "sync source: expected add, list, remove NAME or test NAME");
}

static const struct cli_cmd sync_source_subs[] = {
    CLI_SUB("add", sync_source_add_cmd,
            " name= kind= dsn= mapping= password-env= password-file= password-stdin ", 0),
    CLI_SUB("list", sync_source_list, NULL, 0),
    CLI_SUB("remove", sync_source_remove, NULL, 1),
    CLI_SUB("test", sync_source_test_cmd, NULL, 1),
    {0},
};

static const struct cli_cmd sync_subs[] = {
    {.name = "source", .run = sync_source_usage, .subs = sync_source_subs},
    CLI_SUB("run", sync_run_cmd, " source= table= batch= ", -1),
    CLI_SUB("backfill", sync_backfill, " source= table= since= batch= ", -1),
    CLI_SUB("reconcile", sync_reconcile_cmd, " source= repair ", -1),
    {0},
};

const struct cli_cmd cli_cmd_sync = {
    "sync",
    sync_usage,
    NULL,
    0,
    sync_subs,
    0,
    "  sync source add|list|remove|test        CRM databases to sync from (docs/sync.md)\n"
    "  sync run              one sync pass over every source (or --source S)\n"
    "  sync backfill         read a source's history again (--source S, --since ISO)\n"
    "  sync reconcile        compare sources with what was stored (--repair fixes)\n",
    "usage: engage sync source add --name NAME --kind postgres|sqlite --dsn DSN\n"
    "                         --mapping FILE [--password-env VAR | --password-file PATH |\n"
    "                         --password-stdin]\n"
    "       engage sync source list\n"
    "       engage sync source remove NAME\n"
    "       engage sync source test NAME\n"
    "       engage sync run [--source NAME [--table TABLE]] [--batch N]\n"
    "       engage sync backfill --source NAME [--table TABLE] [--since ISO] [--batch N]\n"
    "       engage sync reconcile [--source NAME] [--repair]\n\n"
    "A source is a CRM database read directly: PostgreSQL (DSN: a libpq connection\n"
    "string without the password, e.g. 'host=db port=5432 dbname=crm user=engage')\n"
    "or SQLite (DSN: the file). The password is a reference ($VAR or a file, read\n"
    "at each connection) or, with --password-stdin, kept sealed with the secrets\n"
    "key; it is never printed, and sent over TLS only (sslmode=require or stronger,\n"
    "unless [sync] allow_insecure_tls). The mapping (JSON, docs/sync.md) says which\n"
    "tables become contacts or events. 'run' reads every table from its checkpoint\n"
    "on and prints what it stored; 'test' connects and checks every mapped column.\n"
    "'backfill' reads the tables again (from --since on, by the cursor column), beside\n"
    "the live sync if need be: rows are stored once, live checkpoints are not moved.\n"
    "'reconcile' compares each events table with what was stored from it, day by\n"
    "day (counts and key checksums), lists missing and extra keys and keeps the\n"
    "report; --repair deletes the extra events and stores the missing rows.\n",
};
