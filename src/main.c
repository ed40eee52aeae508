/* main.c -- the `engage` command: subcommands, shared options, wiring, signals.
 *
 * Global options (anywhere on the line): --data DIR, --config FILE, --json,
 * --now ISO, --log-level L, --help. Precedence: flag > environment > file >
 * default. Errors are one line on stderr naming the file, line and field; exit
 * codes: 0 ok, 1 error, 2 usage, 3 import finished with rejected rows. */
#include <errno.h>
#include <jansson.h>
#include <pwd.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth.h"
#include "core/config.h"
#include "core/secret.h"
#include "demo/demo.h"
#include "http/http.h"
#include "ingest/ingest.h"
#include "store/store.h"

#define ENGAGE_VERSION "0.1.0"
#define MAX_OPTS 32

struct opt {
    const char *name, *value;
};

struct cli {
    const char *cmd, *sub;
    const char *args[8];
    int nargs;
    struct opt opts[MAX_OPTS];
    int nopts;
    int json;
    struct config cfg;
    char data_dir[1024];
    char actor[96];
};

/* Options that take no value. */
static const char *flags[] = {"json", "help", "members", "no-progress", "no-serve", "version",
                              "bad-rows", NULL};

static int is_flag(const char *n)
{
    int i;

    for (i = 0; flags[i]; i++)
        if (strcmp(flags[i], n) == 0)
            return 1;
    return 0;
}

static const char *opt(const struct cli *c, const char *name)
{
    int i;

    for (i = 0; i < c->nopts; i++)
        if (strcmp(c->opts[i].name, name) == 0)
            return c->opts[i].value;
    return NULL;
}

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int die(const char *fmt, ...)
{
    va_list ap;

    fputs("engage: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

static int usage_error(const struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const struct cli *c, const char *fmt, ...)
{
    va_list ap;

    fputs("engage: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'engage %s%s--help')\n", c->cmd ? c->cmd : "", c->cmd ? " " : "");
    return 2;
}

/* Every option of a command must be one of allowed (a space-separated list) or global. */
static int check_opts(const struct cli *c, const char *allowed)
{
    static const char *global = " data config json now log-level help ";
    int i;

    for (i = 0; i < c->nopts; i++) {
        char pat[80];
        snprintf(pat, sizeof pat, " %s ", c->opts[i].name);
        if (strstr(global, pat) == NULL && (allowed == NULL || strstr(allowed, pat) == NULL))
            return usage_error(c, "%s: unknown option --%s", c->cmd, c->opts[i].name);
    }
    return 0;
}

static int parse_args(struct cli *c, int argc, char **argv)
{
    int i;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) == 0 && a[2]) {
            const char *eq = strchr(a + 2, '=');
            char name[64];
            size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            if (n >= sizeof name || c->nopts == MAX_OPTS)
                return usage_error(c, "option %s is not known", a);
            memcpy(name, a + 2, n);
            name[n] = '\0';
            c->opts[c->nopts].name = strdup(name);
            if (eq) {
                c->opts[c->nopts].value = eq + 1;
            } else if (is_flag(name)) {
                c->opts[c->nopts].value = "1";
            } else {
                if (i + 1 >= argc)
                    return usage_error(c, "option --%s needs a value", name);
                c->opts[c->nopts].value = argv[++i];
            }
            c->nopts++;
        } else if (strcmp(a, "-h") == 0) {
            if (c->nopts == MAX_OPTS)
                return usage_error(c, "too many options");
            c->opts[c->nopts].name = strdup("help");
            c->opts[c->nopts++].value = "1";
        } else if (c->cmd == NULL) {
            c->cmd = a;
        } else if (c->nargs < 8) {
            c->args[c->nargs++] = a;
        } else {
            return usage_error(c, "too many arguments");
        }
    }
    return 0;
}

static void free_opts(struct cli *c)
{
    int i;

    for (i = 0; i < c->nopts; i++)
        free((char *)c->opts[i].name);
}

/* Resolves the data directory, configuration and clock. */
static int setup(struct cli *c)
{
    struct err e = {0};
    const char *v, *cfg_path;
    char defcfg[1100];
    int explicit_cfg;
    enum log_level ll;

    v = opt(c, "data");
    if (v == NULL || *v == '\0')
        v = getenv("ENGAGE_DATA");
    if (v == NULL || *v == '\0')
        v = "./engage-data";
    snprintf(c->data_dir, sizeof c->data_dir, "%s", v);
    config_defaults(&c->cfg, c->data_dir);
    cfg_path = opt(c, "config");
    if (cfg_path == NULL || *cfg_path == '\0')
        cfg_path = getenv("ENGAGE_CONFIG");
    explicit_cfg = cfg_path && *cfg_path;
    if (!explicit_cfg) {
        snprintf(defcfg, sizeof defcfg, "%s/engage.conf", c->data_dir);
        cfg_path = defcfg;
    }
    if (config_load_file(&c->cfg, cfg_path, explicit_cfg, &e) || config_apply_env(&c->cfg, &e))
        return die("%s", e.msg);
    if ((v = opt(c, "listen")))
        snprintf(c->cfg.listen, sizeof c->cfg.listen, "%s", v);
    if ((v = opt(c, "log-level"))) {
        if (log_level_parse(v, &ll))
            return usage_error(c, "--log-level: expected error, warn, info or debug, got \"%s\"", v);
        c->cfg.log_level = (int)ll;
    }
    if (config_check(&c->cfg, &e))
        return die("%s", e.msg);
    log_level_current = c->cfg.log_level;
    v = opt(c, "now");
    if (v == NULL)
        v = getenv("ENGAGE_NOW");
    if (v && *v) {
        int64_t ms;
        if (time_parse_iso(v, strlen(v), &ms))
            return die("%s: expected an ISO-8601 instant such as 2026-01-31T12:00:00Z, got \"%s\"",
                       opt(c, "now") ? "--now" : "ENGAGE_NOW", v);
        clock_start_at(ms);
    }
    {
        struct passwd *pw = getpwuid(getuid());
        snprintf(c->actor, sizeof c->actor, "cli:%s", pw ? pw->pw_name : "unknown");
    }
    return 0;
}

static int open_store(struct cli *c, struct store **st, int migrate)
{
    /* CLI commands are bulk work (imports, replays): a large page cache pays off. */
    struct store_opts so = {.busy_timeout_ms = c->cfg.busy_timeout_ms, .migrate = migrate,
                            .cache_mb = 512};
    struct err e = {0};
    int added = 0;

    if (store_open(st, c->data_dir, &so, &e))
        return die("%s", e.msg);
    if (migrate && contracts_seed(*st, &added, &e)) {
        store_close(*st);
        *st = NULL;
        return die("%s", e.msg);
    }
    if (added)
        log_info("store", "stored %d shipped contract%s", added, added == 1 ? "" : "s");
    return 0;
}

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));

    puts(s);
    free(s);
    json_decref(j);
}

/* ---- help ------------------------------------------------------------------------- */

static const char *help_main =
    "usage: engage [global options] COMMAND [arguments]\n"
    "\n"
    "EqueEngage: contacts and events in, segments, email campaigns, analytics.\n"
    "\n"
    "commands:\n"
    "  serve                 run the HTTP server and background workers\n"
    "  demo                  load a demo data set, create an admin key, then serve\n"
    "  migrate               apply pending store migrations\n"
    "  import contacts FILE  import contacts from CSV ('-' = stdin)\n"
    "  import events FILE    import events from CSV\n"
    "  rejected list         show records in the ingestion dead-letter store\n"
    "  rejected replay       re-validate rejected records and ingest those that now pass\n"
    "  contracts list|show NAME|put NAME FILE   event and contact contracts\n"
    "  contact show ID       a contact: attributes, consent history, recent events\n"
    "  apikey create|list|revoke                API keys\n"
    "  backup FILE           online copy of the store to a new file\n"
    "  config                print the effective configuration\n"
    "  bench gen             write seeded contacts/events CSVs of any size\n"
    "  version               print the version\n"
    "\n"
    "global options:\n"
    "  --data DIR        data directory (env ENGAGE_DATA; default ./engage-data)\n"
    "  --config FILE     configuration file (env ENGAGE_CONFIG; default DATA/engage.conf)\n"
    "  --json            machine-readable output\n"
    "  --now ISO         start the clock at this instant (env ENGAGE_NOW)\n"
    "  --log-level L     error, warn, info or debug (env ENGAGE_LOG_LEVEL)\n"
    "\n"
    "'engage COMMAND --help' describes one command. Documentation: docs/.\n";

static const struct {
    const char *cmd, *text;
} help_cmds[] = {
    {"serve", "usage: engage serve [--listen ADDR:PORT]\n\n"
              "Runs the HTTP API (/api/v1, /healthz, /readyz, /metrics).\n"
              "  --listen ADDR:PORT  where to listen (env ENGAGE_LISTEN; default 127.0.0.1:8080;\n"
              "                      port 0 picks a free port)\n"
              "Prints 'engage: listening on URL' on stdout once ready; logs are JSON lines on\n"
              "stderr. SIGINT or SIGTERM stops it cleanly.\n"},
    {"demo", "usage: engage demo [--contacts N] [--seed S] [--no-serve] [--listen ADDR:PORT]\n\n"
             "Writes a demo CRM data set (contacts with city, plan, signup date and LTV; orders,\n"
             "calls, WhatsApp messages, email opens, and a few invalid rows) under DATA/demo,\n"
             "imports it, creates an admin API key, prints the URL and the key, and serves.\n"
             "Running it again imports nothing twice.\n"
             "  --contacts N  demo size (default 2000)\n  --seed S  generator seed (default 42)\n"
             "  --no-serve    stop after loading\n"},
    {"migrate", "usage: engage migrate\n\nApplies pending schema migrations to DATA/engage.db "
                "and stores any shipped contract\nthe store does not have yet. Refuses a store "
                "newer than this binary.\n"},
    {"import", "usage: engage import contacts|events FILE [--batch N] [--no-progress]\n\n"
               "Streams a CSV file ('-' = stdin) into the store in batches, each committed\n"
               "before the next is read. Re-importing a file changes nothing.\n"
               "contacts: external_id (required), email, email_consent, every other column an\n"
               "          attribute.\n"
               "events:   external_id (or anonymous_id), event, occurred_at (required columns),\n"
               "          event_id (optional), every other column a property.\n"
               "An empty cell is absent. Rejected rows go to the dead-letter store with their\n"
               "line, field and reason ('engage rejected list').\n"
               "  --batch N       rows per transaction (default [ingest] import_batch_rows)\n"
               "  --no-progress   no progress bar even on a terminal\n"
               "Exit status: 0 all rows stored, 3 some rows rejected, 1 error.\n"},
    {"rejected", "usage: engage rejected list [--reason R] [--source S] [--kind K] [--status S]\n"
                 "                             [--limit N]\n"
                 "       engage rejected replay [--reason R] [--source S] [--kind K] [--id N]\n\n"
                 "The ingestion dead-letter store: every rejected contact or event with its raw\n"
                 "payload, source, origin (file:line), reason, field and message. 'replay'\n"
                 "re-validates pending records against the current contracts and ingests those\n"
                 "that pass now.\n"},
    {"contracts", "usage: engage contracts list\n       engage contracts show NAME\n"
                  "       engage contracts put NAME FILE\n\n"
                  "Versioned contracts (docs/contracts.md). 'put' stores a new version; old\n"
                  "versions are kept and every stored event records the version it passed.\n"},
    {"contact", "usage: engage contact show EXTERNAL_ID\n\nPrints a contact: attributes, "
                "consent and its history, and recent events.\n"},
    {"apikey", "usage: engage apikey create --role ROLE --name NAME\n"
               "       engage apikey list\n       engage apikey revoke ID\n\n"
               "Roles: admin, marketer, analyst, ingest. The key is shown once, at creation;\n"
               "the store keeps only its hash. Send it as 'Authorization: Bearer KEY'.\n"},
    {"backup", "usage: engage backup FILE\n\nCopies the store to FILE (which must not exist) "
               "with SQLite's online backup:\nsafe while 'engage serve' runs.\n"},
    {"config", "usage: engage config\n\nPrints the effective configuration (defaults, file, "
               "environment, flags);\nsecrets are shown as their references.\n"},
    {"bench", "usage: engage bench gen --contacts N [--events M] [--seed S] --out DIR\n\n"
              "Writes DIR/contacts.csv and DIR/events.csv shaped like the demo CRM. The same\n"
              "seed, sizes and day (UTC, or --now) give identical files. Events default to 12\n"
              "per contact and fall in the 400 days before that day.\n"},
    {"version", "usage: engage version\n"},
};

static int show_help(const char *cmd)
{
    size_t i;

    if (cmd) {
        for (i = 0; i < sizeof help_cmds / sizeof *help_cmds; i++) {
            if (strcmp(help_cmds[i].cmd, cmd) == 0) {
                fputs(help_cmds[i].text, stdout);
                return 0;
            }
        }
    }
    fputs(help_main, stdout);
    return 0;
}

/* ---- import ------------------------------------------------------------------------- */

static void print_report(const struct import_opts *o, const struct import_report *rep)
{
    const struct ingest_stats *s = &rep->stats;
    const char *reason;
    json_t *r;

    printf("imported %s: %lld rows in %.2f s (%.0f rows/s)\n", o->path, (long long)s->read,
           rep->seconds, rep->seconds > 0 ? (double)s->read / rep->seconds : 0.0);
    printf("  inserted    %lld\n  updated     %lld\n  unchanged   %lld\n  rejected    %lld\n",
           (long long)s->inserted, (long long)s->updated, (long long)s->duplicates,
           (long long)s->rejected);
    if (s->consent_kept)
        printf("  consent kept (opt-outs are sticky): %lld\n", (long long)s->consent_kept);
    if (s->unvalidated)
        printf("  events without a contract (stored unvalidated): %lld\n", (long long)s->unvalidated);
    json_object_foreach(rep->rejected_by_reason, reason, r) {
        size_t i;
        json_t *ex;
        printf("    %s: %lld\n", reason, (long long)json_integer_value(json_object_get(r, "count")));
        json_array_foreach(json_object_get(r, "examples"), i, ex) {
            const char *field = json_string_value(json_object_get(ex, "field"));
            printf("      %s:%lld: %s%s%s\n", o->path,
                   (long long)json_integer_value(json_object_get(ex, "line")), field ? field : "",
                   field && *field ? ": " : "", json_string_value(json_object_get(ex, "message")));
        }
    }
    if (s->rejected)
        printf("  see them with: engage rejected list\n");
}

static json_t *report_json(const struct import_report *rep)
{
    const struct ingest_stats *s = &rep->stats;

    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:O}", "read", (json_int_t)s->read,
                     "inserted", (json_int_t)s->inserted, "updated", (json_int_t)s->updated,
                     "duplicates", (json_int_t)s->duplicates, "rejected", (json_int_t)s->rejected,
                     "consent_kept", (json_int_t)s->consent_kept, "unvalidated",
                     (json_int_t)s->unvalidated, "seconds", rep->seconds, "rejected_by_reason",
                     rep->rejected_by_reason);
}

static int run_import(struct cli *c, struct store *st, enum import_kind kind, const char *path,
                      int quiet, struct import_report *rep)
{
    struct import_opts o = {.kind = kind, .path = path, .batch_rows = c->cfg.import_batch_rows};
    struct ingest in;
    struct err e = {0};
    const char *b = opt(c, "batch");
    int rc;

    if (b) {
        int64_t n;
        if (parse_i64(b, strlen(b), &n) || n < 1 || n > 1000000)
            return usage_error(c, "--batch: expected an integer from 1 to 1000000, got \"%s\"", b);
        o.batch_rows = (int)n;
    }
    o.progress = !quiet && !c->json && !opt(c, "no-progress") && isatty(STDERR_FILENO);
    ingest_init(&in, st, &c->cfg);
    rc = import_csv(&in, &o, rep, &e);
    ingest_release(&in);
    if (rc) {
        log_debug("import", "stopped at %s:%d", e.file ? e.file : "?", e.line);
        return die("%s", e.msg);
    }
    if (!quiet) {
        if (c->json)
            print_json(report_json(rep));
        else
            print_report(&o, rep);
    }
    return 0;
}

static int cmd_import(struct cli *c)
{
    struct import_report rep = {0};
    struct store *st;
    enum import_kind kind;
    int rc;

    if ((rc = check_opts(c, " batch no-progress ")))
        return rc;
    if (c->nargs != 2)
        return usage_error(c, "import: expected 'contacts FILE' or 'events FILE'");
    if (strcmp(c->args[0], "contacts") == 0)
        kind = IMPORT_CONTACTS;
    else if (strcmp(c->args[0], "events") == 0)
        kind = IMPORT_EVENTS;
    else
        return usage_error(c, "import: expected contacts or events, got \"%s\"", c->args[0]);
    if ((rc = open_store(c, &st, 1)))
        return rc;
    rc = run_import(c, st, kind, c->args[1], 0, &rep);
    if (rc == 0 && rep.stats.rejected)
        rc = 3;
    import_report_release(&rep);
    store_close(st);
    return rc;
}

/* ---- rejected ------------------------------------------------------------------------ */

static int print_rejected(void *ctx, const struct store_rejected *r)
{
    struct cli *c = ctx;
    char ts[32];

    time_format_iso(r->created_at, ts);
    if (c->json) {
        json_t *raw = json_loads(r->raw, 0, NULL);
        json_t *j = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:s,s:i}", "id",
                              (json_int_t)r->id, "created_at", ts, "source", r->source, "kind",
                              r->kind, "reason", r->reason, "field", r->field, "message",
                              r->message, "origin", r->origin, "raw",
                              raw ? raw : json_string(r->raw), "status", r->status, "attempts",
                              r->attempts);
        char *s = json_dumps(j, JSON_COMPACT);
        puts(s);
        free(s);
        json_decref(j);
    } else {
        printf("%-6lld %s  %-8s %-7s %-18s %s%s%s  [%s] %s\n", (long long)r->id, ts, r->source,
               r->kind, r->reason, r->field, *r->field ? ": " : "", r->message, r->origin,
               r->status);
    }
    return 0;
}

static int cmd_rejected(struct cli *c)
{
    struct store_rejected_filter f = {0};
    struct store *st;
    struct err e = {0};
    const char *v;
    int rc;

    if ((rc = check_opts(c, " reason source kind status limit id ")))
        return rc;
    if (c->nargs != 1 || (strcmp(c->args[0], "list") && strcmp(c->args[0], "replay")))
        return usage_error(c, "rejected: expected list or replay");
    f.reason = opt(c, "reason");
    f.source = opt(c, "source");
    f.kind = opt(c, "kind");
    f.status = opt(c, "status");
    if ((v = opt(c, "limit")) && (parse_i64(v, strlen(v), &(int64_t){0}) || atoi(v) < 1))
        return usage_error(c, "--limit: expected a positive integer, got \"%s\"", v);
    f.limit = v ? (int)strtol(v, NULL, 10) : 0;
    if ((v = opt(c, "id")) && parse_i64(v, strlen(v), &f.id))
        return usage_error(c, "--id: expected an integer, got \"%s\"", v);
    if ((rc = open_store(c, &st, 1)))
        return rc;
    if (strcmp(c->args[0], "list") == 0) {
        if (f.status == NULL)
            f.status = "pending";
        if (strcmp(f.status, "all") == 0)
            f.status = NULL;
        rc = store_rejected_list(st, &f, print_rejected, c, &e);
        if (rc)
            rc = die("%s", e.msg);
    } else {
        struct ingest in;
        struct replay_stats rs;
        ingest_init(&in, st, &c->cfg);
        rc = rejected_replay(&in, &f, c->actor, "", &rs, &e);
        ingest_release(&in);
        if (rc) {
            rc = die("%s", e.msg);
        } else if (c->json) {
            print_json(json_pack("{s:I,s:I,s:I}", "tried", (json_int_t)rs.tried, "ingested",
                                 (json_int_t)rs.ingested, "still_rejected",
                                 (json_int_t)rs.still_rejected));
        } else {
            printf("replayed %lld: %lld ingested, %lld still rejected\n", (long long)rs.tried,
                   (long long)rs.ingested, (long long)rs.still_rejected);
        }
    }
    store_close(st);
    return rc;
}

/* ---- contracts ------------------------------------------------------------------------- */

static int print_contract(void *ctx, const struct store_contract *k)
{
    struct cli *c = ctx;
    char ts[32];

    time_format_iso(k->created_at, ts);
    if (c->json) {
        json_t *doc = json_loads(k->body, 0, NULL);
        print_json(json_pack("{s:s,s:s,s:i,s:s,s:s,s:o}", "name", k->name, "kind", k->kind,
                             "version", k->version, "created_at", ts, "created_by", k->created_by,
                             "contract", doc ? doc : json_null()));
    } else if (c->sub && strcmp(c->sub, "show") == 0) {
        printf("%s version %d (%s, %s by %s)\n%s\n", k->name, k->version, k->kind, ts,
               k->created_by, k->body);
    } else {
        printf("%-24s v%-4d %-8s %s  %s\n", k->name, k->version, k->kind, ts, k->created_by);
    }
    return 0;
}

static int cmd_contracts(struct cli *c)
{
    struct store *st;
    struct err e = {0};
    int rc;

    if ((rc = check_opts(c, NULL)))
        return rc;
    if (c->nargs < 1)
        return usage_error(c, "contracts: expected list, show NAME or put NAME FILE");
    c->sub = c->args[0];
    if ((rc = open_store(c, &st, 1)))
        return rc;
    if (strcmp(c->sub, "list") == 0 && c->nargs == 1) {
        rc = store_contracts_latest(st, print_contract, c, &e);
    } else if (strcmp(c->sub, "show") == 0 && c->nargs == 2) {
        rc = store_contract_versions(st, c->args[1], print_contract, c, &e);
    } else if (strcmp(c->sub, "put") == 0 && c->nargs == 3) {
        struct errlist errs = {0};
        struct contract *k = NULL;
        char *text = NULL;
        size_t n;
        int version, i;
        rc = file_read_all(c->args[2], 1 << 20, &text, &n, &e);
        if (rc == 0 && contract_compile(text, n, c->args[1], 0, &k, &errs, &e)) {
            for (i = 0; i < errs.n; i++)
                fprintf(stderr, "engage: %s: %s: %s\n", c->args[2],
                        errs.items[i].path[0] ? errs.items[i].path : "/", errs.items[i].msg);
            free(text);
            store_close(st);
            return 1;
        }
        if (rc == 0)
            rc = store_begin(st, &e);
        if (rc == 0)
            rc = store_contract_put(st, c->args[1], contract_kind(k), text, c->actor, &version, &e);
        if (rc == 0) {
            json_t *after = json_loads(text, 0, NULL);
            char ent[160];
            snprintf(ent, sizeof ent, "%s@%d", c->args[1], version);
            rc = audit_record(st, c->actor, "contract.put", "contract", ent, NULL, after, "", &e);
            json_decref(after);
        }
        if (rc == 0)
            rc = store_commit(st, &e);
        else
            store_rollback(st);
        if (rc == 0) {
            if (c->json)
                print_json(json_pack("{s:s,s:i}", "name", c->args[1], "version", version));
            else
                printf("contract %s is now version %d\n", c->args[1], version);
        }
        contract_free(k);
        free(text);
    } else {
        store_close(st);
        return usage_error(c, "contracts: expected list, show NAME or put NAME FILE");
    }
    if (rc)
        rc = die("%s", e.msg);
    store_close(st);
    return rc;
}

/* ---- contact show ------------------------------------------------------------------------ */

static int add_consent(void *ctx, const struct store_consent_change *ch)
{
    char ts[32];

    time_format_iso(ch->at, ts);
    json_array_append_new(ctx, json_pack("{s:s,s:s,s:s,s:s,s:s}", "at", ts, "from",
                                         ch->from < 0 ? "" : consent_name(ch->from), "to",
                                         consent_name(ch->to), "source", ch->source, "reason",
                                         ch->reason ? ch->reason : ""));
    return 0;
}

static int add_event(void *ctx, const struct store_event *ev)
{
    char ts[32];
    json_t *props = json_loads(ev->props, 0, NULL);

    time_format_iso(ev->occurred_at, ts);
    json_array_append_new(ctx, json_pack("{s:s,s:s,s:s,s:s,s:i,s:o}", "event", ev->name,
                                         "occurred_at", ts, "event_id", ev->event_id, "source",
                                         ev->source, "contract_version", ev->contract_version,
                                         "properties", props ? props : json_object()));
    return 0;
}

static int cmd_contact(struct cli *c)
{
    struct store_contact k;
    struct store *st;
    struct err e = {0};
    json_t *hist, *events, *j;
    char cts[32], uts[32];
    int rc;

    if ((rc = check_opts(c, NULL)))
        return rc;
    if (c->nargs != 2 || strcmp(c->args[0], "show") != 0)
        return usage_error(c, "contact: expected 'show EXTERNAL_ID'");
    if ((rc = open_store(c, &st, 1)))
        return rc;
    store_contact_init(&k);
    rc = store_contact_get_by_xid(st, c->args[1], &k, &e);
    if (rc) {
        store_close(st);
        return die("contact '%s': %s", c->args[1], e.msg);
    }
    hist = json_array();
    events = json_array();
    rc = store_consent_history(st, k.id, add_consent, hist, &e);
    if (rc == 0)
        rc = store_events_of_contact(st, k.id, 20, add_event, events, &e);
    time_format_iso(k.created_at, cts);
    time_format_iso(k.updated_at, uts);
    j = json_pack("{s:s,s:s?,s:O,s:s,s:o,s:s,s:s,s:b,s:o}", "external_id", k.external_id, "email",
                  k.email, "attributes", k.attrs, "email_consent", consent_name(k.consent),
                  "consent_history", hist, "created_at", cts, "updated_at", uts, "deleted",
                  k.deleted, "recent_events", events);
    if (rc == 0)
        print_json(j);
    else
        json_decref(j);
    store_contact_release(&k);
    store_close(st);
    return rc ? die("%s", e.msg) : 0;
}

/* ---- apikeys ------------------------------------------------------------------------------ */

static int print_key(void *ctx, const struct store_apikey *k)
{
    struct cli *c = ctx;
    char ts[32];

    time_format_iso(k->created_at, ts);
    if (c->json) {
        json_t *j = json_pack("{s:I,s:s,s:s,s:s,s:s,s:b}", "id", (json_int_t)k->id, "name",
                              k->name, "role", k->role, "prefix", k->prefix, "created_at", ts,
                              "revoked", k->revoked_at != 0);
        char *s = json_dumps(j, JSON_COMPACT);
        puts(s);
        free(s);
        json_decref(j);
    } else {
        printf("%-4lld %-20s %-9s %s…  %s%s\n", (long long)k->id, k->name, k->role, k->prefix, ts,
               k->revoked_at ? "  revoked" : "");
    }
    return 0;
}

static int cmd_apikey(struct cli *c)
{
    struct store *st;
    struct err e = {0};
    int rc;

    if ((rc = check_opts(c, " role name ")))
        return rc;
    if (c->nargs < 1)
        return usage_error(c, "apikey: expected create, list or revoke ID");
    if ((rc = open_store(c, &st, 1)))
        return rc;
    if (strcmp(c->args[0], "create") == 0 && c->nargs == 1) {
        const char *rs = opt(c, "role"), *name = opt(c, "name");
        enum role r;
        char *key = NULL;
        int64_t id;
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
                print_json(json_pack("{s:I,s:s,s:s,s:s}", "id", (json_int_t)id, "name", name,
                                     "role", rs, "key", key));
            else
                printf("%s\n(api key %lld, role %s: shown once, keep it safe)\n", key,
                       (long long)id, rs);
            secret_free(key);
        }
    } else if (strcmp(c->args[0], "list") == 0 && c->nargs == 1) {
        rc = store_apikeys(st, print_key, c, &e);
    } else if (strcmp(c->args[0], "revoke") == 0 && c->nargs == 2) {
        int64_t id;
        if (parse_i64(c->args[1], strlen(c->args[1]), &id)) {
            store_close(st);
            return usage_error(c, "apikey revoke: expected a key id, got \"%s\"", c->args[1]);
        }
        rc = auth_apikey_revoke(st, id, c->actor, "", &e);
        if (rc == 0 && !c->json)
            printf("api key %lld revoked\n", (long long)id);
    } else {
        store_close(st);
        return usage_error(c, "apikey: expected create, list or revoke ID");
    }
    store_close(st);
    return rc ? die("%s", e.msg) : 0;
}

/* ---- serve and demo -------------------------------------------------------------------------- */

static int serve(struct cli *c, const char *banner_key)
{
    struct store_opts so = {.busy_timeout_ms = c->cfg.busy_timeout_ms, .migrate = 0};
    struct app app = {.cfg = &c->cfg, .version = ENGAGE_VERSION};
    struct http_server *srv = NULL;
    struct store *st;
    struct err e = {0};
    sigset_t set;
    int port, sig, rc;

    if ((rc = open_store(c, &st, 1)))
        return rc;
    store_close(st);
    if (store_pool_new(&app.pool, c->data_dir, c->cfg.http_threads + 1, &so, &e))
        return die("%s", e.msg);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* server threads inherit the mask */
    signal(SIGPIPE, SIG_IGN);
    app.started_at = clock_now_ms();
    if (http_start(&srv, &app, &port, &e)) {
        store_pool_free(app.pool);
        return die("%s", e.msg);
    }
    app.ready = 1;
    {
        char host[256];
        int p;
        config_parse_listen(c->cfg.listen, host, sizeof host, &p);
        log_info("serve", "listening on http://%s:%d (data %s)", host, port, c->data_dir);
        printf("engage: listening on http://%s%s%s:%d\n", strchr(host, ':') ? "[" : "", host,
               strchr(host, ':') ? "]" : "", port);
        if (banner_key)
            printf("\n  API:         http://%s:%d/api/v1/contracts\n"
                   "  Admin key:   %s\n"
                   "  Try:         curl -H 'Authorization: Bearer %s' http://%s:%d/api/v1/rejected\n"
                   "  Metrics:     http://%s:%d/metrics\n\n  Stop with Ctrl-C.\n",
                   host, port, banner_key, banner_key, host, port, host, port);
        fflush(stdout);
    }
    sigwait(&set, &sig);
    log_info("serve", "signal %d: stopping", sig);
    app.ready = 0;
    http_stop(srv);
    store_pool_free(app.pool);
    return 0;
}

static int cmd_serve(struct cli *c)
{
    int rc = check_opts(c, " listen ");

    return rc ? rc : serve(c, NULL);
}

static int cmd_demo(struct cli *c)
{
    struct gen_opts g = {.contacts = 2000, .seed = 42, .bad_rows = 1};
    struct import_report rep;
    struct store *st;
    struct err e = {0};
    char *dir, *cpath, *epath, *key = NULL;
    const char *v;
    int64_t id;
    int rc;

    if ((rc = check_opts(c, " contacts seed no-serve listen ")))
        return rc;
    if ((v = opt(c, "contacts")) && (parse_i64(v, strlen(v), &g.contacts) || g.contacts < 1))
        return usage_error(c, "--contacts: expected a positive integer, got \"%s\"", v);
    if ((v = opt(c, "seed")) && parse_i64(v, strlen(v), &id))
        return usage_error(c, "--seed: expected an integer, got \"%s\"", v);
    if (v)
        g.seed = (uint64_t)id;
    dir = xasprintf("%s/demo", c->data_dir);
    g.out_dir = dir;
    /* Stable demo clock: the data set is the same whenever it is made on a given day. */
    g.now_ms = clock_now_ms() - clock_now_ms() % 86400000;
    if (demo_generate(&g, &e)) {
        free(dir);
        return die("%s", e.msg);
    }
    if ((rc = open_store(c, &st, 1))) {
        free(dir);
        return rc;
    }
    cpath = xasprintf("%s/contacts.csv", dir);
    epath = xasprintf("%s/events.csv", dir);
    printf("engage demo: loading %s and %s\n", cpath, epath);
    rc = run_import(c, st, IMPORT_CONTACTS, cpath, 0, &rep);
    import_report_release(&rep);
    if (rc == 0) {
        rc = run_import(c, st, IMPORT_EVENTS, epath, 0, &rep);
        import_report_release(&rep);
    }
    if (rc == 0 && auth_apikey_create(st, "demo-admin", ROLE_ADMIN, c->actor, "", &key, &id, &e))
        rc = die("%s", e.msg);
    store_close(st);
    free(cpath);
    free(epath);
    free(dir);
    if (rc == 0 && opt(c, "no-serve")) {
        printf("admin key: %s\n", key);
    } else if (rc == 0) {
        rc = serve(c, key);
    }
    secret_free(key);
    return rc;
}

/* ---- small commands --------------------------------------------------------------------------- */

static int cmd_migrate(struct cli *c)
{
    struct store_opts so = {.busy_timeout_ms = c->cfg.busy_timeout_ms, .migrate = 0};
    struct store *st = NULL;
    struct err e = {0};
    int from, to, rc, added = 0;

    if ((rc = check_opts(c, NULL)))
        return rc;
    /* Open without migrating, so an old schema can be reported and then upgraded. */
    if (store_open(&st, c->data_dir, &so, &e) && e.code != E_CONFLICT)
        return die("%s", e.msg);
    if (st == NULL) {
        err_clear(&e);
        so.migrate = 1;
        if (store_open(&st, c->data_dir, &so, &e))
            return die("%s", e.msg);
    }
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

    if ((rc = check_opts(c, NULL)))
        return rc;
    if (c->nargs != 1)
        return usage_error(c, "backup: expected a destination file");
    if ((rc = open_store(c, &st, 1)))
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
    int rc;

    if ((rc = check_opts(c, " listen ")))
        return rc;
    buf_init(&b);
    printf("; data directory: %s\n; file: %s\n\n", c->data_dir,
           c->cfg.path[0] ? c->cfg.path : "(none: defaults)");
    config_dump(&c->cfg, &b);
    fputs(b.p, stdout);
    buf_release(&b);
    return 0;
}

static int cmd_bench(struct cli *c)
{
    struct gen_opts g = {.seed = 42};
    struct err e = {0};
    const char *v;
    int rc;

    if ((rc = check_opts(c, " contacts events seed out ")))
        return rc;
    if (c->nargs != 1 || strcmp(c->args[0], "gen") != 0)
        return usage_error(c, "bench: expected 'gen'");
    if ((v = opt(c, "contacts")) == NULL || parse_i64(v, strlen(v), &g.contacts) || g.contacts < 1)
        return usage_error(c, "bench gen: --contacts must be a positive integer");
    if ((v = opt(c, "events")) && (parse_i64(v, strlen(v), &g.events) || g.events < 0))
        return usage_error(c, "bench gen: --events must be a non-negative integer");
    if ((v = opt(c, "seed")) && parse_i64(v, strlen(v), (int64_t *)&g.seed))
        return usage_error(c, "bench gen: --seed must be an integer");
    if ((g.out_dir = opt(c, "out")) == NULL)
        return usage_error(c, "bench gen: --out DIR is required");
    /* Events fall in the 400 days before today (UTC midnight, or --now's day): the same
     * seed and sizes give the same files all day. */
    g.now_ms = clock_now_ms() - clock_now_ms() % 86400000;
    if (demo_generate(&g, &e))
        return die("%s", e.msg);
    if (!c->json)
        printf("wrote %s/contacts.csv and %s/events.csv\n", g.out_dir, g.out_dir);
    return 0;
}

int main(int argc, char **argv)
{
    struct cli c;
    int rc;
    size_t i;
    static const struct {
        const char *name;
        int (*fn)(struct cli *);
    } cmds[] = {
        {"serve", cmd_serve},     {"demo", cmd_demo},       {"migrate", cmd_migrate},
        {"import", cmd_import},   {"rejected", cmd_rejected}, {"contracts", cmd_contracts},
        {"contact", cmd_contact}, {"apikey", cmd_apikey},   {"backup", cmd_backup},
        {"config", cmd_config},   {"bench", cmd_bench},
    };

    memset(&c, 0, sizeof c);
    if (sodium_init() < 0)
        return die("libsodium failed to initialise");
    rc = parse_args(&c, argc, argv);
    if (rc)
        goto out;
    c.json = opt(&c, "json") != NULL;
    if (opt(&c, "version") || (c.cmd && strcmp(c.cmd, "version") == 0)) {
        printf("engage %s\n", ENGAGE_VERSION);
        goto out;
    }
    if (c.cmd == NULL || opt(&c, "help") || strcmp(c.cmd, "help") == 0) {
        rc = show_help(c.cmd && strcmp(c.cmd, "help") ? c.cmd : (c.nargs ? c.args[0] : NULL));
        if (c.cmd == NULL && !opt(&c, "help"))
            rc = 2;
        goto out;
    }
    for (i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        if (strcmp(cmds[i].name, c.cmd) == 0) {
            rc = setup(&c);
            if (rc == 0)
                rc = cmds[i].fn(&c);
            goto out;
        }
    }
    rc = usage_error(&c, "unknown command \"%s\"", c.cmd);
out:
    config_release(&c.cfg);
    free_opts(&c);
    return rc;
}
