/* main.c -- the `engage` command: subcommands, shared options, wiring, signals.
 *
 * Global options (anywhere on the line): --data DIR, --config FILE, --json,
 * --now ISO, --log-level L, --help. Precedence: flag > environment > file >
 * default. Errors are one line on stderr naming the file, line and field; exit
 * codes: 0 ok, 1 error, 2 usage, 3 import finished with rejected rows. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <malloc.h>
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
#include "segment/segment.h"
#include "sync/sync.h"
#include "store/store.h"

#define ENGAGE_VERSION "0.1.0"

/* How the user ran us (./build/engage, engage): hints quote it back. */
static const char *prog = "engage";
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
    int known; /* cmd names a command */
    int sync_failed; /* sync reconcile: sources that failed */
};

/* Options that take no value. */
static const char *flags[] = {"json", "help", "members", "no-progress", "no-serve", "version",
                              "bad-rows", "password-stdin", "repair", NULL};

/* Options that take a value, in any command. */
static const char *valued[] = {"data", "since", "config", "now", "log-level", "listen", "batch", "reason",
                               "source", "kind", "status", "limit", "id", "role", "name",
                               "contacts", "seed", "events", "out", "state", "rules", "runs",
                               "dsn", "mapping", "password-env", "password-file", "table", "crm", NULL};

/* 1 if n is in the NULL-terminated list. */
static int in_list(const char *const *list, const char *n)
{
    int i;

    for (i = 0; list[i]; i++)
        if (strcmp(list[i], n) == 0)
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
    fprintf(stderr, " (see 'engage %s%s--help')\n", c->cmd && c->known ? c->cmd : "",
            c->cmd && c->known ? " " : "");
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
            } else if (in_list(flags, name)) {
                c->opts[c->nopts].value = "1";
            } else if (!in_list(valued, name)) {
                free((char *)c->opts[c->nopts].name);
                return usage_error(c, "unknown option --%s", name);
            } else {
                if (i + 1 >= argc) {
                    free((char *)c->opts[c->nopts].name);
                    return usage_error(c, "option --%s needs a value", name);
                }
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
            {
                char pat[64];
                snprintf(pat, sizeof pat, " %.60s ", a);
                c->known = strstr(" serve demo migrate import rejected contracts contact apikey "
                                  "backup config bench audit version help ", pat) != NULL;
            }
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
static int setup(struct cli *c, int is_server)
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
    /* A server logs its life at info; a CLI command only warnings (it prints its own report). */
    if (!is_server)
        c->cfg.log_level = LOG_WARN;
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
        /* A command sees exactly that instant (an evaluation's window edges are where
         * the user put them); a server starts there and lets time pass. */
        if (is_server)
            clock_start_at(ms);
        else
            clock_pin(ms);
    }
    {
        struct passwd *pw = getpwuid(getuid());
        snprintf(c->actor, sizeof c->actor, "cli:%s", pw ? pw->pw_name : "unknown");
    }
    return 0;
}

/* open_store's flags. Only the commands that bring data in (serve, import, demo, sync
 * source add) and migrate may create a store: any other command pointed at a folder
 * without one (a typo in --data, run from elsewhere) says so rather than answer from
 * an empty store it just made. */
#define OPEN_MIGRATE 1
#define OPEN_CREATE 2

static int open_store(struct cli *c, struct store **st, int how)
{
    /* CLI commands are bulk work (imports, replays): a large page cache pays off. */
    struct store_opts so = {.busy_timeout_ms = c->cfg.busy_timeout_ms,
                            .migrate = (how & OPEN_MIGRATE) != 0, .cache_mb = 512, .bulk = 1};
    struct err e = {0};
    int added = 0;
    char dbpath[1100];

    snprintf(dbpath, sizeof dbpath, "%s/engage.db", c->data_dir);
    if (access(dbpath, F_OK) != 0) {
        if (!(how & OPEN_CREATE))
            return die("no store in %s (pass --data, set ENGAGE_DATA, or run from the folder "
                       "that holds engage-data)", c->data_dir);
        fprintf(stderr, "engage: creating a new store in %s\n", c->data_dir);
    }
    if (store_open(st, c->data_dir, &so, &e))
        return die("%s", e.msg);
    if ((how & OPEN_MIGRATE) && contracts_seed(*st, &added, &e)) {
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
    "EqueEngage: contacts and events in (CSV, Segment-spec SDKs, CRM databases), checked\n"
    "by contracts, rejected records kept and replayable, segments evaluated in\n"
    "milliseconds, all over a JSON API. Email campaigns and analytics are not built yet.\n"
    "\n"
    "commands:\n"
    "  serve                 run the HTTP server and background workers\n"
    "  demo                  load a demo data set, create an admin key, then serve\n"
    "  migrate               apply pending store migrations\n"
    "  import contacts FILE  import contacts from CSV ('-' = stdin)\n"
    "  import events FILE    import events from CSV\n"
    "  import status         the latest imports and their counts\n"
    "  rejected list         show records in the ingestion dead-letter store\n"
    "  rejected show ID      one record, with all that was kept of its payload\n"
    "  rejected replay       re-validate rejected records and ingest those that now pass\n"
    "  rejected dismiss      set rejected records aside (kept, never replayed)\n"
    "  contracts list|show NAME|put NAME FILE   event and contact contracts\n"
    "  contact show ID       a contact: attributes, consent history, recent events\n"
    "  contact consent ID    change email consent explicitly (--state S --reason R; audited)\n"
    "  contact restore ID    undo a contact's deletion (audited)\n"
    "  events export         every live event as NDJSON (--since SEQ, --limit N)\n"
    "  segment eval|explain  evaluate or explain a rules file (docs/dsl.md)\n"
    "  audit list            the audit log, newest first\n"
    "  apikey create|list|revoke                API keys\n"
    "  sync source add|list|remove|test        CRM databases to sync from (docs/sync.md)\n"
    "  sync run              one sync pass over every source (or --source S)\n"
    "  sync backfill         read a source's history again (--source S, --since ISO)\n"
    "  sync reconcile        compare sources with what was stored (--repair fixes)\n"
    "  backup FILE           online copy of the store to a new file\n"
    "  config                print the effective configuration\n"
    "  bench gen             write seeded contacts/events CSVs of any size\n"
    "  version               print the version\n"
    "\n"
    "global options:\n"
    "  --data DIR        data directory (env ENGAGE_DATA; default ./engage-data)\n"
    "  --config FILE     configuration file (env ENGAGE_CONFIG; default DATA/engage.conf)\n"
    "  --json            machine-readable output\n"
    "  --now ISO         the clock's instant: pinned for a command, the start for serve\n"
    "                    and demo (env ENGAGE_NOW)\n"
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
    {"demo", "usage: engage demo [--contacts N] [--seed S] [--no-serve] [--listen ADDR:PORT]\n"
             "                   [--crm FILE --mapping FILE]\n\n"
             "Writes a demo CRM data set (contacts with city, plan, signup date and LTV; orders,\n"
             "calls, WhatsApp messages, email opens, and a few invalid rows) under DATA/demo,\n"
             "imports it, creates an admin API key, prints the URL and the key, and serves.\n"
             "Running it again imports nothing twice.\n"
             "Each run revokes the previous run's demo-admin key and creates a new one.\n"
             "  --contacts N        demo size (default 2000)\n"
             "  --seed S            generator seed (default 42)\n"
             "  --no-serve          stop after loading\n"
             "  --crm FILE          a CRM database in SQLite (make demo seeds demo/crm/'s) to add\n"
             "                      as sync source 'crm' and sync; serve keeps it in step\n"
             "  --mapping FILE      its mapping (demo/crm/mapping.json)\n"
             "  --listen ADDR:PORT  where to serve (default [server] listen)\n"},
    {"migrate", "usage: engage migrate\n\nApplies pending schema migrations to DATA/engage.db "
                "and stores any shipped contract\nthe store does not have yet. Refuses a store "
                "newer than this binary.\n"},
    {"import", "usage: engage import contacts|events FILE [--batch N] [--no-progress]\n"
               "       engage import status\n\n"
               "Streams a CSV file ('-' = stdin) into the store in batches, each committed\n"
               "before the next is read. Re-importing a file changes nothing.\n"
               "contacts: external_id (required), email, email_consent, every other column an\n"
               "          attribute.\n"
               "events:   external_id (or anonymous_id) and event (required columns), occurred_at\n"
               "          (or the contract's time property, e.g. created_at), event_id\n"
               "          (optional), every other column a property.\n"
               "An empty cell is absent; spaces are kept (RFC 4180), but not around a number,\n"
               "boolean or timestamp. Rejected rows go to the dead-letter store with their\n"
               "line, field and reason ('engage rejected list'), a row with a cell over\n"
               "[ingest] max_value_bytes or over [ingest] max_row_bytes too: the import goes on.\n"
               "  --batch N       rows per transaction (default [ingest] import_batch_rows)\n"
               "  --no-progress   no progress bar even on a terminal\n"
               "Exit status: 0 all rows stored, 3 some rows rejected, 1 error, 2 usage error.\n"
               "'status' lists the latest imports with their counts: 'running' is one going on\n"
               "now or one that was killed (its committed batches are kept; run it again).\n"},
    {"rejected", "usage: engage rejected list [--reason R] [--source S] [--kind contact|event]\n"
                 "                             [--status pending|replayed|dismissed|all] [--limit N]\n"
                 "       engage rejected show ID\n"
                 "       engage rejected replay [--reason R] [--source S] [--kind K] [--id N]\n"
                 "       engage rejected dismiss (--id N | --reason R | --source S | --kind K)\n\n"
                 "The ingestion dead-letter store: every rejected contact or event with its raw\n"
                 "payload, source, origin (file:line), reason, field and message. 'list' shows\n"
                 "pending records unless --status says otherwise. 'replay' re-validates pending\n"
                 "records against the current contracts and ingests those that pass now (rows\n"
                 "that are not records, reasons bad_row and invalid_encoding, only when named by\n"
                 "--reason or --id). 'dismiss' sets records aside: kept, never replayed. Replays\n"
                 "and dismissals are audited. --json prints one document {\"items\":[…]}.\n"
                 "A record keeps at most the first 64 KiB of its payload (\"truncated\": true\n"
                 "past it; such a record is never replayed: fix it at the source and import it\n"
                 "again); 'list --json' shows the first 4 KiB of each (\"raw_preview\": true),\n"
                 "'show' all that was kept.\n"},
    {"contracts", "usage: engage contracts list\n       engage contracts show NAME\n"
                  "       engage contracts put NAME FILE\n\n"
                  "Versioned contracts (docs/contracts.md). 'put' stores a new version; old\n"
                  "versions are kept and every stored event records the version it passed.\n"},
    {"contact", "usage: engage contact show EXTERNAL_ID\n"
                "       engage contact consent EXTERNAL_ID --state STATE --reason TEXT\n"
                "       engage contact restore EXTERNAL_ID [--reason TEXT]\n\n"
                "'show' prints a contact (JSON): attributes, consent and its history, recent\n"
                "events. 'consent' changes email consent explicitly, recorded with the reason in\n"
                "the consent history and the audit log: the only way to re-subscribe a contact\n"
                "that opted out, bounced or complained (imports never can). 'restore' undoes a\n"
                "deletion (audited): the contact takes data and is in segments again; its\n"
                "events refused meanwhile come back with 'engage rejected replay --reason\n"
                "contact_deleted'.\n"},
    {"events", "usage: engage events export [--since SEQ] [--limit N]\n\n"
               "Writes every live event (its current version; deleted ones left out) to stdout,\n"
               "one JSON object a line, in change-sequence order: seq, event_id, event,\n"
               "external_id (null for an anonymous contact), contact_id, occurred_at,\n"
               "received_at, source, contract_version, properties. --since SEQ starts after\n"
               "that sequence number (the last line's seq resumes an export).\n"},
    {"audit", "usage: engage audit list [--limit N]\n\nThe audit log, newest first: who changed "
              "what (keys, contracts, consent,\nreplays), when, before and after (secrets masked). "
              "Default limit 50.\n"},
    {"apikey", "usage: engage apikey create --role ROLE --name NAME\n"
               "       engage apikey list\n       engage apikey revoke ID\n\n"
               "Roles: admin, marketer, analyst, ingest. The key is shown once, at creation;\n"
               "the store keeps only its hash. Send it as 'Authorization: Bearer KEY'.\n"},
    {"backup", "usage: engage backup FILE\n\nCopies the store to FILE (which must not exist) "
               "with SQLite's online backup:\nsafe while 'engage serve' runs.\n"},
    {"config", "usage: engage config\n\nPrints the effective configuration (defaults, file, "
               "environment, flags);\nsecrets are shown as their references.\n"},
    {"bench", "usage: engage bench gen --contacts N [--events M] [--seed S] --out DIR\n"
              "       engage bench segments --rules DIR [--runs N]\n\n"
              "gen writes DIR/contacts.csv and DIR/events.csv shaped like the demo CRM. The\n"
              "same seed, sizes and day (UTC, or --now) give identical files. Events default\n"
              "to 12 per contact and fall in the 400 days before that day.\n"
              "segments loads the audience index once, evaluates every DIR/*.json N times\n"
              "(default 20) at the clock's now, and prints the index's load time and size and\n"
              "each segment's member count and median, p95 and fastest evaluation time.\n"},
    {"segment", "usage: engage segment eval --rules FILE.json [--members]\n"
                "       engage segment explain --rules FILE.json\n\n"
                "eval loads the audience index from the store, evaluates the rules (docs/dsl.md)\n"
                "at the clock's now (--now ISO pins it) and prints the member count; with\n"
                "--members, the members' external ids one per line in byte order. explain prints\n"
                "the compiled plan. Invalid rules: one line per problem, 'FILE: /pointer: why'.\n"},
    {"sync", "usage: engage sync source add --name NAME --kind postgres|sqlite --dsn DSN\n"
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
             "report; --repair deletes the extra events and stores the missing rows.\n"},
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

    printf("imported %s: %lld row%s in %.2f s (%.0f rows/s)\n", o->path, (long long)s->read,
           s->read == 1 ? "" : "s", rep->seconds,
           rep->seconds > 0 ? (double)s->read / rep->seconds : 0.0);
    printf("  inserted               %lld\n  updated                %lld\n"
           "  unchanged (duplicates) %lld\n", (long long)s->inserted, (long long)s->updated,
           (long long)s->duplicates);
    if (s->consent_kept)
        printf("  consent kept           %lld  (opt-outs are sticky: a file cannot re-subscribe)\n",
               (long long)s->consent_kept);
    if (s->unvalidated)
        printf("  stored unvalidated     %lld  (events with no contract)\n",
               (long long)s->unvalidated);
    printf("  rejected               %lld\n", (long long)s->rejected);
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
        printf("  see them with: %s rejected list\n", prog);
}

static json_t *report_json(const struct import_report *rep)
{
    const struct ingest_stats *s = &rep->stats;

    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:O}", "read", (json_int_t)s->read,
                     "inserted", (json_int_t)s->inserted, "updated", (json_int_t)s->updated,
                     "duplicates", (json_int_t)s->duplicates, "unchanged", (json_int_t)s->duplicates,
                     "rejected", (json_int_t)s->rejected,
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

struct list_out {
    struct cli *c;
    json_t *items; /* --json: one document {"items":[…]} */
    int shown;     /* contracts show: the newest version was printed */
};

static int print_import(void *ctx, const struct store_import *im)
{
    struct list_out *lo = ctx;
    char st[32], fin[32];

    time_format_iso(im->started_at, st);
    time_format_iso(im->finished_at, fin);
    if (lo->items) {
        json_array_append_new(lo->items,
                              json_pack("{s:I,s:s,s:s,s:s,s:s,s:s?,s:I,s:I,s:I,s:I,s:I}", "id",
                                        (json_int_t)im->id, "kind", im->kind, "file", im->file,
                                        "status", im->status, "started_at", st, "finished_at",
                                        im->finished_at ? fin : NULL, "read", (json_int_t)im->read,
                                        "inserted", (json_int_t)im->inserted, "updated",
                                        (json_int_t)im->updated, "duplicates",
                                        (json_int_t)im->duplicates, "rejected",
                                        (json_int_t)im->rejected));
    } else {
        printf("%-5lld %s  %-8s %-7s %10lld read %10lld inserted %8lld rejected  %s\n",
               (long long)im->id, st, im->kind, im->status, (long long)im->read,
               (long long)im->inserted, (long long)im->rejected, im->file);
    }
    return 0;
}

/* engage import status: the latest imports; "running" for one that is going on now or
 * that died (its committed batches are kept: run it again to finish). */
static int import_status(struct cli *c)
{
    struct list_out lo = {c, c->json ? json_array() : NULL, 0};
    struct store *st;
    struct err e = {0};
    int rc;

    if ((rc = open_store(c, &st, OPEN_MIGRATE))) {
        json_decref(lo.items);
        return rc;
    }
    rc = store_imports(st, 20, print_import, &lo, &e);
    if (rc == 0 && c->json)
        print_json(json_pack("{s:O}", "items", lo.items));
    json_decref(lo.items);
    store_close(st);
    return rc ? die("%s", e.msg) : 0;
}

static int cmd_import(struct cli *c)
{
    struct import_report rep = {0};
    struct store *st;
    enum import_kind kind;
    int rc;

    if ((rc = check_opts(c, " batch no-progress ")))
        return rc;
    if (c->nargs == 1 && strcmp(c->args[0], "status") == 0)
        return import_status(c);
    if (c->nargs != 2)
        return usage_error(c, "import: expected 'contacts FILE', 'events FILE' or 'status'");
    if (strcmp(c->args[0], "contacts") == 0)
        kind = IMPORT_CONTACTS;
    else if (strcmp(c->args[0], "events") == 0)
        kind = IMPORT_EVENTS;
    else
        return usage_error(c, "import: expected contacts or events, got \"%s\"", c->args[0]);
    if ((rc = open_store(c, &st, OPEN_MIGRATE | OPEN_CREATE)))
        return rc;
    rc = run_import(c, st, kind, c->args[1], 0, &rep);
    if (rc == 0 && rep.stats.rejected)
        rc = 3;
    import_report_release(&rep);
    store_close(st);
    return rc;
}

/* ---- rejected ------------------------------------------------------------------------ */

/* rejected list: a line a letter, or with --json one document {"items":[…]} written as
 * the letters are read (each raw a preview), so memory does not grow with the list. */
static int print_rejected(void *ctx, const struct store_rejected *r)
{
    struct list_out *lo = ctx;
    char ts[32];

    if (lo->c->json) {
        json_t *item = rejected_json(r, REJECTED_RAW_PREVIEW);
        char *s = json_dumps(item, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s%s", lo->shown++ ? ",\n" : "{\"items\": [\n", s);
        free(s);
        json_decref(item);
    } else {
        if (lo->shown++ == 0)
            printf("%-6s %-24s  %-8s %-7s %-18s %s\n", "ID", "RECEIVED", "SOURCE", "KIND", "REASON",
                   "FIELD: MESSAGE  [ORIGIN] STATUS");
        time_format_iso(r->created_at, ts);
        printf("%-6lld %s  %-8s %-7s %-18s %s%s%s  [%s] %s%s\n", (long long)r->id, ts, r->source,
               r->kind, r->reason, r->field, *r->field ? ": " : "", r->message, r->origin,
               r->status, r->truncated ? ", truncated" : "");
    }
    return 0;
}

static int show_rejected(void *ctx, const struct store_rejected *r)
{
    struct list_out *lo = ctx;

    lo->shown = 1;
    print_json(rejected_json(r, 0));
    return 0;
}

static int cmd_rejected(struct cli *c)
{
    struct store_rejected_filter f = {0};
    struct list_out lo = {c, NULL, 0};
    struct store *st;
    struct err e = {0};
    const char *v, *sub;
    int64_t n;
    int rc;

    if (c->nargs == 2 && strcmp(c->args[0], "show") == 0) {
        if (parse_i64(c->args[1], strlen(c->args[1]), &f.id) || f.id < 1)
            return usage_error(c, "rejected show: expected a record id, got \"%s\"", c->args[1]);
        if ((rc = check_opts(c, " ")) || (rc = open_store(c, &st, OPEN_MIGRATE)))
            return rc;
        f.limit = 1;
        rc = store_rejected_list(st, &f, show_rejected, &lo, &e);
        store_close(st);
        if (rc)
            return die("%s", e.msg);
        return lo.shown ? 0 : die("no dead letter %lld", (long long)f.id);
    }
    if (c->nargs != 1 || (strcmp(c->args[0], "list") && strcmp(c->args[0], "replay") &&
                          strcmp(c->args[0], "dismiss")))
        return usage_error(c, "rejected: expected list, show, replay or dismiss");
    sub = c->args[0];
    if ((rc = check_opts(c, strcmp(sub, "list") == 0 ? " reason source kind status limit id "
                                                      : " reason source kind id ")))
        return rc;
    f.reason = opt(c, "reason");
    f.source = opt(c, "source");
    f.kind = opt(c, "kind");
    f.status = opt(c, "status");
    if (f.kind && strcmp(f.kind, "contact") && strcmp(f.kind, "event"))
        return usage_error(c, "--kind: expected contact or event, got \"%s\"", f.kind);
    if (f.status && strcmp(f.status, "pending") && strcmp(f.status, "replayed") &&
        strcmp(f.status, "dismissed") && strcmp(f.status, "all"))
        return usage_error(c, "--status: expected pending, replayed, dismissed or all, got \"%s\"",
                           f.status);
    if ((v = opt(c, "limit")) && (parse_i64(v, strlen(v), &n) || n < 1 || n > 1000000))
        return usage_error(c, "--limit: expected an integer from 1 to 1000000, got \"%s\"", v);
    f.limit = v ? (int)n : 0;
    if ((v = opt(c, "id")) && (parse_i64(v, strlen(v), &f.id) || f.id < 1))
        return usage_error(c, "--id: expected a record id, got \"%s\"", v);
    if (strcmp(sub, "dismiss") == 0 && !f.reason && !f.id && !f.source && !f.kind)
        return usage_error(c, "rejected dismiss: name what to dismiss (--id, --reason, --source "
                              "or --kind)");
    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    if (strcmp(sub, "list") == 0) {
        if (f.status == NULL)
            f.status = "pending";
        if (strcmp(f.status, "all") == 0)
            f.status = NULL;
        f.raw_max = c->json ? REJECTED_RAW_PREVIEW : 1; /* the text lines show no raw */
        rc = store_rejected_list(st, &f, print_rejected, &lo, &e);
        if (c->json)
            printf(lo.shown ? "\n]}\n" : "{\"items\": []}\n");
        if (rc)
            rc = die("%s", e.msg);
        else if (!c->json)
            printf("%s%lld%s%s record%s%s%s\n", lo.shown ? "\n" : "", (long long)lo.shown,
                   f.status ? " " : "", f.status ? f.status : "", lo.shown == 1 ? "" : "s",
                   f.limit && lo.shown == f.limit ? " (the --limit; there may be more)" : "",
                   f.status && strcmp(f.status, "pending") == 0
                       ? " (--status all shows replayed and dismissed ones too)"
                       : "");
    } else if (strcmp(sub, "dismiss") == 0) {
        struct ingest in;
        ingest_init(&in, st, &c->cfg);
        rc = rejected_dismiss(&in, &f, c->actor, "", &n, &e);
        ingest_release(&in);
        if (rc)
            rc = die("%s", e.msg);
        else if (c->json)
            print_json(json_pack("{s:I}", "dismissed", (json_int_t)n));
        else
            printf("dismissed %lld record%s (kept, never replayed)\n", (long long)n,
                   n == 1 ? "" : "s");
    } else {
        struct ingest in;
        struct replay_stats rs;
        ingest_init(&in, st, &c->cfg);
        rc = rejected_replay(&in, &f, c->actor, "", &rs, &e);
        ingest_release(&in);
        if (rc) {
            rc = die("%s", e.msg);
        } else if (c->json) {
            print_json(json_pack("{s:I,s:I,s:I,s:I}", "tried", (json_int_t)rs.tried, "ingested",
                                 (json_int_t)rs.ingested, "still_rejected",
                                 (json_int_t)rs.still_rejected, "not_replayable",
                                 (json_int_t)rs.not_replayable));
        } else {
            printf("replayed %lld: %lld ingested, %lld still rejected\n", (long long)rs.tried,
                   (long long)rs.ingested, (long long)rs.still_rejected);
            if (rs.not_replayable)
                printf("%lld cannot be replayed: only the first %d KiB of their records were kept "
                       "(truncated); fix them at the source, import them again, then dismiss "
                       "them\n", (long long)rs.not_replayable, STORE_REJECTED_MAX_RAW / 1024);
        }
    }
    store_close(st);
    return rc;
}

/* ---- contracts ------------------------------------------------------------------------- */

static int print_contract(void *ctx, const struct store_contract *k)
{
    struct list_out *lo = ctx;
    char ts[32];

    time_format_iso(k->created_at, ts);
    if (lo->items) {
        json_t *doc = json_loads(k->body, 0, NULL);
        json_array_append_new(lo->items, json_pack("{s:s,s:s,s:i,s:s,s:s,s:o}", "name", k->name,
                                                   "kind", k->kind, "version", k->version,
                                                   "created_at", ts, "created_by", k->created_by,
                                                   "contract", doc ? doc : json_null()));
    } else if (lo->c->sub && strcmp(lo->c->sub, "show") == 0) {
        /* The latest document alone: save it, edit it, put it back. */
        if (!lo->shown)
            puts(k->body); /* versions come newest first */
        lo->shown = 1;
    } else {
        printf("%-24s v%-4d %-8s %s  %s\n", k->name, k->version, k->kind, ts, k->created_by);
    }
    return 0;
}

/* Validation problems of a file, one line each: "engage: FILE: /pointer: why". */
static void print_problems(const char *path, const struct errlist *errs)
{
    int i;

    for (i = 0; i < errs->n; i++)
        fprintf(stderr, "engage: %s: %s: %s\n", path,
                errs->items[i].path[0] ? errs->items[i].path : "/", errs->items[i].msg);
    if (errs->dropped)
        fprintf(stderr, "engage: %s: … and %d more\n", path, errs->dropped);
}

static int cmd_contracts(struct cli *c)
{
    struct list_out lo = {c, NULL, 0};
    struct store *st;
    struct err e = {0};
    int rc;

    if ((rc = check_opts(c, NULL)))
        return rc;
    if (c->nargs < 1)
        return usage_error(c, "contracts: expected list, show NAME or put NAME FILE");
    c->sub = c->args[0];
    if ((strcmp(c->sub, "list") == 0 && c->nargs != 1) ||
        (strcmp(c->sub, "show") == 0 && c->nargs != 2) ||
        (strcmp(c->sub, "put") == 0 && c->nargs != 3) ||
        (strcmp(c->sub, "list") && strcmp(c->sub, "show") && strcmp(c->sub, "put")))
        return usage_error(c, "contracts: expected list, show NAME or put NAME FILE");
    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    if (c->json)
        lo.items = json_array();
    if (strcmp(c->sub, "list") == 0) {
        rc = store_contracts_latest(st, print_contract, &lo, &e);
        if (rc == 0 && c->json)
            print_json(json_pack("{s:O}", "items", lo.items));
    } else if (strcmp(c->sub, "show") == 0) {
        rc = store_contract_versions(st, c->args[1], print_contract, &lo, &e);
        if (rc == 0 && c->json)
            print_json(json_pack("{s:s,s:O}", "name", c->args[1], "versions", lo.items));
    } else {
        struct errlist errs = {0};
        char *text = NULL;
        size_t n;
        int version, unchanged;
        rc = file_read_all(c->args[2], 1 << 20, &text, &n, &e);
        if (rc == 0)
            rc = contract_put(st, c->args[1], text, n, c->actor, "", &version, &unchanged, &errs, &e);
        free(text);
        if (rc == E_INVAL && errs.n) {
            print_problems(c->args[2], &errs);
            json_decref(lo.items);
            store_close(st);
            return 1;
        }
        if (rc == 0) {
            if (c->json)
                print_json(json_pack("{s:s,s:i,s:b}", "name", c->args[1], "version", version,
                                     "unchanged", unchanged));
            else if (unchanged)
                printf("contract %s is unchanged: version %d already holds this document\n",
                       c->args[1], version);
            else
                printf("contract %s is now version %d\n", c->args[1], version);
        }
    }
    json_decref(lo.items);
    if (rc)
        rc = die("%s", e.msg);
    store_close(st);
    return rc;
}

/* ---- contact show ------------------------------------------------------------------------ */

/* engage contact consent ID --state S --reason R: the explicit, audited change that is
 * the only way back to subscribed. */
static int contact_consent(struct cli *c, struct store *st)
{
    const char *state = opt(c, "state"), *reason = opt(c, "reason");
    enum consent_state to, before;
    struct err e = {0};
    int rc;

    if (state == NULL || consent_parse(state, &to))
        return usage_error(c, "contact consent: --state must be subscribed, unsubscribed, bounced "
                              "or complained");
    if (reason == NULL || *reason == '\0')
        return usage_error(c, "contact consent: --reason is required (it is kept in the history "
                              "and the audit log)");
    rc = contact_consent_change(st, &c->cfg, c->args[1], to, "cli", reason, c->actor, "",
                                &before, &e);
    if (rc)
        return die("contact '%s': %s", c->args[1], e.msg);
    if (c->json)
        print_json(json_pack("{s:s,s:s,s:s}", "external_id", c->args[1], "from",
                             consent_name(before), "to", consent_name(to)));
    else
        printf("contact %s: email consent %s -> %s\n", c->args[1], consent_name(before),
               consent_name(to));
    return 0;
}

static int cmd_contact(struct cli *c)
{
    struct store *st;
    struct err e = {0};
    json_t *j;
    int rc;

    if ((rc = check_opts(c, " state reason ")))
        return rc;
    if (c->nargs != 2 || (strcmp(c->args[0], "show") && strcmp(c->args[0], "consent") &&
                          strcmp(c->args[0], "restore")))
        return usage_error(c, "contact: expected 'show EXTERNAL_ID', 'consent EXTERNAL_ID "
                              "--state S --reason R' or 'restore EXTERNAL_ID [--reason R]'");
    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    if (strcmp(c->args[0], "consent") == 0) {
        rc = contact_consent(c, st);
        store_close(st);
        return rc;
    }
    if (strcmp(c->args[0], "restore") == 0) {
        rc = contact_restore(st, c->args[1], opt(c, "reason"), c->actor, "", &j, &e);
        store_close(st);
        if (rc)
            return die("contact '%s': %s", c->args[1], e.msg);
        if (c->json)
            print_json(j);
        else {
            json_decref(j);
            printf("contact %s restored; its events refused meanwhile are in the dead-letter "
                   "store: 'engage rejected replay --reason contact_deleted' brings them back\n",
                   c->args[1]);
        }
        return 0;
    }
    rc = contact_view(st, c->args[1], 20, NULL, 0, &j, &e);
    store_close(st);
    if (rc)
        return die("contact '%s': %s", c->args[1], e.msg);
    print_json(j);
    return 0;
}

/* ---- events export ------------------------------------------------------------------------ */

struct exporter {
    char **names, **xids; /* by event name id, by contact id */
    size_t nnames, nxids;
    int64_t limit, count;
    struct buf line;
};

static int export_name(void *ctx, int64_t id, const char *name)
{
    struct exporter *x = ctx;

    if (id < 0 || id > 10000000)
        return 0;
    if ((size_t)id >= x->nnames) {
        x->names = xrealloc(x->names, (size_t)(id + 1) * sizeof *x->names);
        memset(x->names + x->nnames, 0, ((size_t)id + 1 - x->nnames) * sizeof *x->names);
        x->nnames = (size_t)id + 1;
    }
    x->names[id] = xstrdup(name);
    return 0;
}

static int export_xid(void *ctx, const char *xid, int64_t id, int deleted)
{
    struct exporter *x = ctx;

    (void)deleted;
    if (id <= 0)
        return 0;
    if ((size_t)id >= x->nxids) {
        size_t cap = (size_t)id + 1 > x->nxids * 2 ? (size_t)id + 1 : x->nxids * 2;
        x->xids = xrealloc(x->xids, cap * sizeof *x->xids);
        memset(x->xids + x->nxids, 0, (cap - x->nxids) * sizeof *x->xids);
        x->nxids = cap;
    }
    x->xids[id] = xstrdup(xid);
    return 0;
}

static int export_event(void *ctx, const struct store_event *ev)
{
    struct exporter *x = ctx;
    const char *name = ev->name_id >= 0 && (size_t)ev->name_id < x->nnames ? x->names[ev->name_id] : NULL;
    const char *xid = ev->contact_id > 0 && (size_t)ev->contact_id < x->nxids ? x->xids[ev->contact_id] : NULL;
    char occ[32], rec[32];
    struct buf *b = &x->line;

    time_format_iso(ev->occurred_at, occ);
    time_format_iso(ev->received_at, rec);
    buf_reset(b);
    buf_printf(b, "{\"seq\":%lld,\"event_id\":", (long long)ev->seq);
    buf_add_json_str(b, ev->event_id, strlen(ev->event_id));
    buf_adds(b, ",\"event\":");
    buf_add_json_str(b, name ? name : "", name ? strlen(name) : 0);
    buf_adds(b, ",\"external_id\":");
    if (xid)
        buf_add_json_str(b, xid, strlen(xid));
    else
        buf_adds(b, "null");
    buf_printf(b, ",\"contact_id\":%lld,\"occurred_at\":\"%s\",\"received_at\":\"%s\",\"source\":",
               (long long)ev->contact_id, occ, rec);
    buf_add_json_str(b, ev->source, strlen(ev->source));
    buf_printf(b, ",\"contract_version\":%d,\"properties\":%s}\n", ev->contract_version, ev->props);
    if (fwrite(b->p, 1, b->len, stdout) != b->len)
        return E_IO;
    return x->limit > 0 && ++x->count >= x->limit ? 1 : 0;
}

static int cmd_events(struct cli *c)
{
    struct exporter x = {0};
    struct store *st;
    struct err e = {0};
    int64_t since = 0;
    size_t i;
    int rc;
    const char *v;

    if ((rc = check_opts(c, " since limit ")))
        return rc;
    if (c->nargs != 1 || strcmp(c->args[0], "export"))
        return usage_error(c, "events: expected 'export'");
    if (((v = opt(c, "since")) && parse_i64(v, strlen(v), &since)) ||
        ((v = opt(c, "limit")) && parse_i64(v, strlen(v), &x.limit)) || since < 0 || x.limit < 0)
        return usage_error(c, "events export: --since and --limit take a number >= 0");
    if ((rc = open_store(c, &st, 0)))
        return rc;
    buf_init(&x.line);
    rc = store_read_begin(st, &e); /* one snapshot: names, contacts and events agree */
    if (rc == 0)
        rc = store_event_names(st, export_name, &x, &e);
    if (rc == 0)
        rc = store_contact_ids(st, export_xid, &x, &e);
    if (rc == 0)
        rc = store_events_live(st, since, export_event, &x, &e);
    if (rc == 1)
        rc = 0; /* the limit */
    if (rc == E_IO && e.msg[0] == '\0')
        ERR(&e, E_IO, "events export: cannot write to stdout: %s", strerror(errno));
    store_rollback(st);
    store_close(st);
    for (i = 0; i < x.nnames; i++)
        free(x.names[i]);
    for (i = 0; i < x.nxids; i++)
        free(x.xids[i]);
    free(x.names);
    free(x.xids);
    buf_release(&x.line);
    if (fflush(stdout) != 0 && rc == 0)
        rc = ERR(&e, E_IO, "events export: cannot write to stdout: %s", strerror(errno));
    return rc ? die("%s", e.msg) : 0;
}

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

static int cmd_apikey(struct cli *c)
{
    struct store *st;
    struct err e = {0};
    int rc;

    if ((rc = check_opts(c, " role name ")))
        return rc;
    if (c->nargs < 1)
        return usage_error(c, "apikey: expected create, list or revoke ID");
    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
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
        struct list_out lo = {c, c->json ? json_array() : NULL, 0};
        rc = store_apikeys(st, print_key, &lo, &e);
        if (rc == 0 && c->json)
            print_json(json_pack("{s:O}", "items", lo.items));
        json_decref(lo.items);
    } else if (strcmp(c->args[0], "revoke") == 0 && c->nargs == 2) {
        int64_t id;
        if (parse_i64(c->args[1], strlen(c->args[1]), &id)) {
            store_close(st);
            return usage_error(c, "apikey revoke: expected a key id, got \"%s\"", c->args[1]);
        }
        rc = auth_apikey_revoke(st, id, c->actor, "", &e);
        if (rc == 0 && !c->json)
            printf("api key %lld revoked\n", (long long)id);
    } else if (strcmp(c->args[0], "revoke") == 0) {
        store_close(st);
        return usage_error(c, "apikey revoke: expected one key id (see 'engage apikey list')");
    } else {
        store_close(st);
        return usage_error(c, "apikey: expected create, list or revoke ID");
    }
    store_close(st);
    return rc ? die("%s", e.msg) : 0;
}

/* ---- sync ------------------------------------------------------------------------------ */

static int print_source(void *ctx, const struct store_sync_source *s)
{
    struct list_out *lo = ctx;

    if (lo->items) {
        json_array_append_new(lo->items, sync_source_json(s));
    } else {
        char ok[32] = "never";
        if (s->last_ok_at)
            time_format_iso(s->last_ok_at, ok);
        printf("%-20s %-9s last ok %-24s %s%s\n", s->name, s->kind, ok,
               s->failures ? "failing: " : "", s->failures ? s->last_error : "");
    }
    lo->shown++;
    return 0;
}

static int sync_source_add(struct cli *c, struct store *st, struct err *e)
{
    const char *mpath = opt(c, "mapping"), *penv = opt(c, "password-env");
    const char *pfile = opt(c, "password-file");
    struct sync_source_spec spec = {.name = opt(c, "name"), .kind = opt(c, "kind"),
                                    .dsn = opt(c, "dsn"), .origin = SYNC_ORIGIN_CLI};
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

static int sync_source_test(struct cli *c, struct store *st, const char *name, struct err *e)
{
    struct store_sync_source src;
    struct sync_mapping m;
    struct errlist errs = {0};
    struct sync_conn *conn = NULL;
    int rc = store_sync_source_get(st, name, &src, e), i, bad = 0, parsed;

    if (rc)
        return die("%s", e->msg);
    rc = sync_mapping_parse(src.mapping, &m, &errs, e);
    parsed = rc == 0;
    if (rc == 0)
        rc = sync_connect(&src, &c->cfg, &conn, e);
    for (i = 0; rc == 0 && i < m.ntables; i++) {
        struct sync_batch b = {0};
        struct err te = {0};
        /* One row read through the mapping's own query checks the table and columns. */
        if (sync_read(conn, &m.tables[i], NULL, NULL, 1, &b, &te)) {
            printf("%-24s FAIL  %s\n", m.tables[i].table, te.msg);
            bad++;
        } else {
            printf("%-24s ok    %s\n", m.tables[i].table,
                   b.n ? "columns read" : "columns read (the table is empty)");
            sync_batch_release(&b);
        }
    }
    sync_disconnect(conn);
    if (parsed)
        sync_mapping_release(&m);
    store_sync_source_release(&src);
    if (rc)
        return die("%s", e->msg);
    return bad ? 1 : 0;
}

/* A pass's report: a line, or with --json a JSON object. */
static void print_sync_report(const struct cli *c, const char *verb, const char *name,
                              const struct sync_report *rep, double secs, const char *read_how,
                              const char *tail)
{
    char again[96] = "";

    if (c->json) {
        print_json(json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "source", name, "read",
                             (json_int_t)rep->read, "contacts", (json_int_t)rep->contacts,
                             "events", (json_int_t)rep->events, "deleted",
                             (json_int_t)rep->deleted, "unchanged", (json_int_t)rep->unchanged,
                             "rejected", (json_int_t)rep->rejected, "reread",
                             (json_int_t)rep->reread, "late", (json_int_t)rep->late, "seconds",
                             secs));
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
        return usage_error(c, "sync backfill: --since: expected an ISO-8601 instant such as "
                              "2026-01-31T00:00:00Z, got \"%s\"", since);
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
    print_sync_report(c, "backfill", name, &rep, (clock_mono_ms() - t0) / 1000,
                      " read again", "; live checkpoints untouched");
    return 0;
}

static int reconcile_one(struct cli *c, struct store *st, const char *name)
{
    struct err e = {0};
    json_t *rep;
    int64_t mismatches;
    size_t i;

    if (sync_reconcile(st, &c->cfg, name, opt(c, "repair") != NULL, &rep, &mismatches, &e)) {
        fprintf(stderr, "engage: sync reconcile %s: %s\n", name, e.msg);
        c->sync_failed++;
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
                   "missing, %lld extra%s\n", name, json_string_value(json_object_get(t, "table")),
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
    struct list_out lo = {c, json_array(), 0};
    struct store *st;
    struct err e = {0};
    size_t i;
    int rc;

    if ((rc = open_store(c, &st, OPEN_MIGRATE))) {
        json_decref(lo.items);
        return rc;
    }
    if (opt(c, "source")) {
        struct store_sync_source s;
        rc = store_sync_source_get(st, opt(c, "source"), &s, &e);
        store_sync_source_release(&s);
    }
    if (rc == 0) /* the names first: no statement open while reconciling writes */
        rc = store_sync_sources(st, print_source, &lo, &e);
    for (i = 0; rc == 0 && i < json_array_size(lo.items); i++) {
        const char *name = json_string_value(json_object_get(json_array_get(lo.items, i), "name"));
        if (!opt(c, "source") || strcmp(opt(c, "source"), name) == 0)
            reconcile_one(c, st, name);
    }
    json_decref(lo.items);
    store_close(st);
    if (rc)
        return die("%s", e.msg);
    return c->sync_failed ? 1 : 0;
}

static int cmd_sync(struct cli *c)
{
    struct store *st;
    struct err e = {0};
    int rc;

    if ((rc = check_opts(c, " name kind dsn mapping password-env password-file password-stdin "
                            "source table batch since repair ")))
        return rc;
    if (c->nargs < 1 ||
        (strcmp(c->args[0], "source") && strcmp(c->args[0], "run") &&
         strcmp(c->args[0], "backfill") && strcmp(c->args[0], "reconcile")) ||
        (strcmp(c->args[0], "source") == 0 && c->nargs < 2))
        return usage_error(c, "sync: expected 'source add|list|remove|test', 'run', 'backfill' "
                              "or 'reconcile'");
    if (strcmp(c->args[0], "backfill") == 0)
        return sync_backfill(c);
    if (strcmp(c->args[0], "reconcile") == 0)
        return sync_reconcile_cmd(c);
    /* Adding the first source may make the store; nothing else here does. */
    if ((rc = open_store(c, &st, strcmp(c->args[0], "source") == 0 && strcmp(c->args[1], "add") == 0
                                     ? OPEN_MIGRATE | OPEN_CREATE
                                     : OPEN_MIGRATE)))
        return rc;
    if (strcmp(c->args[0], "run") == 0) {
        const char *only = opt(c, "source"), *v = opt(c, "batch");
        struct sync_opts o = {.table = opt(c, "table")};
        struct list_out lo = {c, json_array(), 0};
        size_t i;
        int failed = 0;
        int64_t bn = 0;
        if (v && (parse_i64(v, strlen(v), &bn) || bn < 1 || bn > 100000)) {
            json_decref(lo.items);
            store_close(st);
            return usage_error(c, "sync run: --batch takes 1 to 100000 rows");
        }
        o.batch = (int)bn;
        if (o.table && !only) {
            json_decref(lo.items);
            store_close(st);
            return usage_error(c, "sync run: --table needs --source");
        }
        if (only) {
            struct store_sync_source s;
            rc = store_sync_source_get(st, only, &s, &e);
            store_sync_source_release(&s);
        }
        if (rc == 0)
            rc = store_sync_sources(st, print_source, &lo, &e);
        for (i = 0; rc == 0 && i < json_array_size(lo.items); i++) {
            const char *name = json_string_value(json_object_get(json_array_get(lo.items, i), "name"));
            struct sync_report rep;
            struct err pe = {0};
            double t0 = clock_mono_ms();
            if (only && strcmp(only, name))
                continue;
            if (sync_pass(st, &c->cfg, name, &o, &rep, &pe)) {
                fprintf(stderr, "engage: sync %s: %s\n", name, pe.msg);
                failed++;
                continue;
            }
            print_sync_report(c, "sync", name, &rep, (clock_mono_ms() - t0) / 1000, "", "");
        }
        json_decref(lo.items);
        store_close(st);
        if (rc)
            return die("%s", e.msg);
        return failed ? 1 : 0;
    }
    if (strcmp(c->args[1], "add") == 0 && c->nargs == 2) {
        rc = sync_source_add(c, st, &e);
    } else if (strcmp(c->args[1], "list") == 0 && c->nargs == 2) {
        struct list_out lo = {c, c->json ? json_array() : NULL, 0};
        rc = store_sync_sources(st, print_source, &lo, &e);
        if (rc == 0 && c->json)
            print_json(json_pack("{s:O}", "items", lo.items));
        else if (rc == 0 && lo.shown == 0)
            printf("no sync sources (add one with 'engage sync source add')\n");
        json_decref(lo.items);
        rc = rc ? die("%s", e.msg) : 0;
    } else if (strcmp(c->args[1], "remove") == 0 && c->nargs == 3) {
        rc = sync_source_delete(st, c->args[2], c->actor, "", &e);
        if (rc == 0 && !c->json)
            printf("sync source %s removed (what it stored stays)\n", c->args[2]);
        rc = rc ? die("%s", e.msg) : 0;
    } else if (strcmp(c->args[1], "test") == 0 && c->nargs == 3) {
        rc = sync_source_test(c, st, c->args[2], &e);
    } else {
        rc = usage_error(c, "sync source: expected add, list, remove NAME or test NAME");
    }
    store_close(st);
    return rc;
}

/* ---- serve and demo -------------------------------------------------------------------------- */

static int serve(struct cli *c, const char *banner_key)
{
    struct store_opts so = {.busy_timeout_ms = c->cfg.busy_timeout_ms, .migrate = 0};
    struct app app = {.cfg = &c->cfg, .version = ENGAGE_VERSION};
    struct segment_scheduler *sched = NULL;
    struct http_server *srv = NULL;
    struct store *st;
    struct err e = {0};
    sigset_t set;
    int port, sig, rc, lfd;

    /* Blocks of 256 KiB and more (request bodies, read arenas) are mapped and unmapped
     * on their own: freed, they go back to the system at once. glibc otherwise raises
     * that threshold each time such a block is freed and serves the next ones from its
     * heaps, which keep them: 16 bodies of 4 MB at once left the server 46 MB larger. */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    /* The port first: taken, it is said at once, before minutes of migration or loading. */
    if (http_listen(&c->cfg, &lfd, &port, &e))
        return die("%s", e.msg);
    if ((rc = open_store(c, &st, OPEN_MIGRATE | OPEN_CREATE))) {
        close(lfd);
        return rc;
    }
    store_close(st);
    /* Store connections lent to requests: with a thread per connection, up to 8 at
     * once (a request holds one while it runs; ingestion gives it back before
     * waiting for the writer); with a pool of N threads, N + 2. */
    if (store_pool_new(&app.pool, c->data_dir,
                       c->cfg.http_threads ? c->cfg.http_threads + 2 : 8, &so, &e)) {
        close(lfd);
        return die("%s", e.msg);
    }
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* server threads inherit the mask */
    signal(SIGPIPE, SIG_IGN);
    app.started_at = clock_now_ms();
    segment_service_new(&app.segments, &c->cfg);
    if (ingest_queue_start(&app.ingest, c->data_dir, &c->cfg, &e) ||
        segment_scheduler_start(&sched, app.segments, app.pool, &e) ||
        sync_worker_start(&app.sync, c->data_dir, &c->cfg, &e) ||
        http_start(&srv, &app, lfd, &e)) {
        sync_worker_stop(app.sync);
        segment_scheduler_stop(sched);
        ingest_queue_stop(app.ingest);
        segment_service_free(app.segments);
        store_pool_free(app.pool);
        return die("%s", e.msg);
    }
    app.http = srv;
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
                   "  Try:         curl -H 'Authorization: Bearer %s' http://%s:%d/api/v1/segments\n"
                   "  Metrics:     http://%s:%d/metrics\n"
                   "  Tracking:    point a Segment or RudderStack SDK at http://%s:%d with a write "
                   "key\n               from '%s --data %s apikey create --role ingest --name app'\n"
                   "  CLI:         %s --help   (same data directory: %s)\n\n  Stop with Ctrl-C.\n",
                   host, port, banner_key, banner_key, host, port, host, port, host, port, prog,
                   c->data_dir, prog, c->data_dir);
        fflush(stdout);
    }
    sigwait(&set, &sig);
    log_info("serve", "signal %d: stopping", sig);
    app.ready = 0;
    http_stop(srv); /* in-flight requests are answered first */
    sync_worker_stop(app.sync); /* a pass in progress finishes its batch */
    ingest_queue_stop(app.ingest);
    segment_scheduler_stop(sched);
    segment_service_free(app.segments);
    store_pool_free(app.pool);
    return 0;
}

static int cmd_serve(struct cli *c)
{
    int rc = check_opts(c, " listen ");

    return rc ? rc : serve(c, NULL);
}

struct demo_keys {
    int64_t ids[64];
    int n;
};

static int find_demo_keys(void *ctx, const struct store_apikey *k)
{
    struct demo_keys *dk = ctx;

    if (strcmp(k->name, "demo-admin") == 0 && k->revoked_at == 0 && dk->n < 64)
        dk->ids[dk->n++] = k->id;
    return 0;
}

/* A few saved segments to look at; a second run finds their names taken and adds none. */
static int demo_segments(struct cli *c, struct store *st, struct err *e)
{
    static const char *const docs[] = {
        "{\"name\":\"Pune repeat buyers\",\"description\":\"two orders or more in 90 days\","
        "\"rules\":{\"op\":\"AND\",\"rules\":[{\"type\":\"attribute\",\"field\":\"city\","
        "\"op\":\"eq\",\"value\":\"Pune\"},{\"type\":\"behavior\",\"event\":\"order_created\","
        "\"op\":\"did_event\",\"within_days\":90,\"count_gte\":2}]},"
        "\"schedule\":{\"every_minutes\":60}}",
        "{\"name\":\"Quiet pro customers\",\"description\":\"pro or enterprise, no call in 30 days\","
        "\"rules\":{\"op\":\"AND\",\"rules\":[{\"type\":\"attribute\",\"field\":\"plan\","
        "\"op\":\"in\",\"value\":[\"pro\",\"enterprise\"]},{\"type\":\"behavior\","
        "\"event\":\"call_logged\",\"op\":\"did_not_event\",\"within_days\":30}]}}",
    };
    struct segment_service *sv;
    size_t i;
    int rc = 0;

    segment_service_new(&sv, &c->cfg);
    for (i = 0; rc == 0 && i < sizeof docs / sizeof *docs; i++) {
        struct errlist errs = {0};
        json_t *body = json_loads(docs[i], 0, NULL);
        int64_t id;
        ASSERT(body != NULL);
        rc = segment_create(sv, st, body, c->actor, "", &id, &errs, e);
        if (rc == E_CONFLICT) {
            err_clear(e);
            rc = 0;
        }
        json_decref(body);
    }
    segment_service_free(sv);
    return rc;
}

/* The demo CRM (a SQLite file, demo/crm/): added as sync source "crm" (kept when it is
 * there already) and synced once; `engage serve`'s worker keeps it in step after. */
static int demo_crm(struct cli *c, struct store *st, const char *file, const char *mpath,
                    struct err *e)
{
    struct sync_source_spec spec = {.name = "crm", .kind = "sqlite", .dsn = file,
                                    .origin = SYNC_ORIGIN_CLI};
    struct store_sync_source existing;
    struct errlist errs = {0};
    struct sync_report rep;
    char *mapping;
    double t0;
    int rc;

    if (store_sync_source_get(st, "crm", &existing, e) == 0) {
        store_sync_source_release(&existing);
    } else {
        size_t n;
        err_clear(e);
        if ((rc = file_read_all(mpath, 1 << 20, &mapping, &n, e)))
            return rc;
        spec.mapping = mapping;
        rc = sync_source_create(st, &c->cfg, &spec, c->actor, "", &errs, e);
        free(mapping);
        if (rc) {
            if (errs.n)
                ERR(e, E_INVAL, "%s: %s: %s", mpath, errs.items[0].path, errs.items[0].msg);
            return rc;
        }
    }
    printf("engage demo: syncing the demo CRM %s (source crm)\n", file);
    t0 = clock_mono_ms();
    rc = sync_pass(st, &c->cfg, "crm", NULL, &rep, e);
    if (rc == 0)
        print_sync_report(c, "sync", "crm", &rep, (clock_mono_ms() - t0) / 1000, "", "");
    return rc;
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

    if ((rc = check_opts(c, " contacts seed no-serve listen crm mapping ")))
        return rc;
    if (!opt(c, "crm") != !opt(c, "mapping"))
        return usage_error(c, "demo: --crm FILE and --mapping FILE go together");
    if ((v = opt(c, "contacts")) && (parse_i64(v, strlen(v), &g.contacts) || g.contacts < 1))
        return usage_error(c, "--contacts: expected a positive integer, got \"%s\"", v);
    if ((v = opt(c, "seed")) && parse_i64(v, strlen(v), &id))
        return usage_error(c, "--seed: expected an integer, got \"%s\"", v);
    if (v)
        g.seed = (uint64_t)id;
    dir = xasprintf("%s/demo", c->data_dir);
    g.out_dir = dir;
    /* Stable demo clock: the data set is the same whenever it is made on a given day. */
    g.now_ms = clock_now_ms() - clock_now_ms() % DAY_MS;
    if (demo_generate(&g, &e)) {
        free(dir);
        return die("%s", e.msg);
    }
    if ((rc = open_store(c, &st, OPEN_MIGRATE | OPEN_CREATE))) {
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
    if (rc == 0) {
        /* One live demo key: the previous run's is revoked (its secret was shown once). */
        struct demo_keys dk = {{0}, 0};
        int k;
        rc = store_apikeys(st, find_demo_keys, &dk, &e);
        for (k = 0; rc == 0 && k < dk.n; k++)
            rc = auth_apikey_revoke(st, dk.ids[k], c->actor, "", &e);
        if (rc == 0)
            rc = auth_apikey_create(st, "demo-admin", ROLE_ADMIN, c->actor, "", &key, &id, &e);
        if (rc == 0)
            rc = demo_segments(c, st, &e);
        if (rc == 0 && opt(c, "crm"))
            rc = demo_crm(c, st, opt(c, "crm"), opt(c, "mapping"), &e);
        if (rc)
            rc = die("%s", e.msg);
    }
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

/* ---- audit ------------------------------------------------------------------------------ */

static int print_audit(void *ctx, const struct store_audit *a)
{
    struct list_out *lo = ctx;
    char ts[32];

    time_format_iso(a->at, ts);
    if (lo->items) {
        json_array_append_new(lo->items, audit_json(a));
    } else {
        printf("%-6lld %s  %-28s %-18s %s %s  %s\n", (long long)a->id, ts, a->actor, a->action,
               a->entity, a->entity_id, a->after ? a->after : "");
    }
    return 0;
}

static int cmd_audit(struct cli *c)
{
    struct list_out lo = {c, NULL, 0};
    struct store *st;
    struct err e = {0};
    const char *v;
    int64_t limit = 50;
    int rc;

    if ((rc = check_opts(c, " limit ")))
        return rc;
    if (c->nargs > 1 || (c->nargs == 1 && strcmp(c->args[0], "list")))
        return usage_error(c, "audit: expected 'list'");
    if ((v = opt(c, "limit")) && (parse_i64(v, strlen(v), &limit) || limit < 1 || limit > 100000))
        return usage_error(c, "--limit: expected an integer from 1 to 100000, got \"%s\"", v);
    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    if (c->json)
        lo.items = json_array();
    rc = store_audit_list(st, 0, (int)limit, NULL, print_audit, &lo, &e);
    if (rc == 0 && c->json)
        print_json(json_pack("{s:O}", "items", lo.items));
    json_decref(lo.items);
    store_close(st);
    return rc ? die("%s", e.msg) : 0;
}

/* ---- segment eval / explain ------------------------------------------------------------------ */

struct members_out {
    char **ids;
    size_t n, cap;
};

static int collect_member(void *ctx, int64_t id, const char *xid)
{
    struct members_out *m = ctx;

    (void)id;
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 1024;
        m->ids = xrealloc(m->ids, m->cap * sizeof *m->ids);
    }
    m->ids[m->n++] = xstrdup(xid);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void print_members(struct cli *c, const struct segment_result *res,
                          const struct audience_stats *ixs, struct members_out *m)
{
    size_t i;

    if (c->json) {
        json_t *o = json_pack("{s:I, s:f, s:{s:I, s:I, s:I, s:f}}", "count",
                              (json_int_t)res->count, "took_ms", res->took_ms, "index", "members",
                              (json_int_t)ixs->members, "events", (json_int_t)ixs->events,
                              "bytes", (json_int_t)ixs->bytes, "load_ms", ixs->load_ms);
        if (opt(c, "members")) {
            json_t *a = json_array();
            for (i = 0; i < m->n; i++)
                json_array_append_new(a, json_string(m->ids[i]));
            json_object_set_new(o, "members", a);
        }
        print_json(o);
    } else if (opt(c, "members")) {
        for (i = 0; i < m->n; i++)
            printf("%s\n", m->ids[i]);
    } else {
        printf("%lld member%s of %lld contacts (%.2f ms; index of %lld events loaded in %.0f ms)\n",
               (long long)res->count, res->count == 1 ? "" : "s", (long long)ixs->members,
               res->took_ms, (long long)ixs->events, ixs->load_ms);
    }
}

/* A fresh audience index loaded from the store, and the segment limits. */
static int load_index(struct cli *c, struct store *st, struct audience_index **ix,
                      struct segment_limits *lim, struct err *e)
{
    segment_limits_from_config(&c->cfg, lim);
    audience_index_new(ix);
    return audience_index_catch_up(*ix, st, e);
}

static int cmd_segment(struct cli *c)
{
    const char *path = opt(c, "rules");
    struct segment_limits lim;
    struct audience_index *ix = NULL;
    struct segment_plan *plan = NULL;
    struct segment_result res = {0};
    struct members_out m = {0};
    struct errlist errs = {0};
    struct audience_stats ixs;
    struct store *st;
    struct err e = {0};
    json_error_t je;
    json_t *rules;
    size_t i;
    int rc, eval;

    if ((rc = check_opts(c, " rules members ")))
        return rc;
    if (c->nargs != 1 || (strcmp(c->args[0], "eval") && strcmp(c->args[0], "explain")))
        return usage_error(c, "segment: expected 'eval' or 'explain'");
    eval = strcmp(c->args[0], "eval") == 0;
    if (path == NULL)
        return usage_error(c, "segment %s: --rules FILE.json is required", c->args[0]);
    rules = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (rules == NULL)
        return die("%s:%d:%d: %s", path, je.line, je.column, (json_error_tidy(&je), je.text));
    if ((rc = open_store(c, &st, OPEN_MIGRATE))) {
        json_decref(rules);
        return rc;
    }
    rc = load_index(c, st, &ix, &lim, &e);
    if (rc == 0)
        rc = segment_compile(ix, st, audience_index_contracts(ix), rules, &lim, &plan, &errs, &e);
    if (rc == E_INVAL && errs.n) {
        print_problems(path, &errs);
        rc = 1;
    } else if (rc == 0 && !eval) {
        print_json(segment_plan_explain(plan));
    } else if (rc == 0) {
        rc = segment_eval(ix, plan, clock_now_ms(), &lim, &res, &e);
        if (rc == 0 && opt(c, "members")) {
            rc = segment_members(ix, st, &res, 0, 0, collect_member, &m, &e);
            qsort(m.ids, m.n, sizeof *m.ids, cmp_str);
        }
        if (rc == 0) {
            audience_index_stats(ix, &ixs);
            print_members(c, &res, &ixs, &m);
        }
    }
    for (i = 0; i < m.n; i++)
        free(m.ids[i]);
    free(m.ids);
    segment_result_release(&res);
    segment_plan_free(plan);
    audience_index_free(ix);
    json_decref(rules);
    store_close(st);
    if (rc < 0)
        return die("segment %s: %s", c->args[0], e.msg);
    return rc;
}

/* ---- small commands --------------------------------------------------------------------------- */

static int cmd_migrate(struct cli *c)
{
    struct store_opts so = {.busy_timeout_ms = c->cfg.busy_timeout_ms, .any_version = 1};
    struct store *st = NULL;
    struct err e = {0};
    int from, to, rc, added = 0;

    if ((rc = check_opts(c, NULL)))
        return rc;
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

    if ((rc = check_opts(c, NULL)))
        return rc;
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

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static long rss_kb(void)
{
    char line[256];
    long kb = 0;
    FILE *f = fopen("/proc/self/status", "r");

    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

/* engage bench segments --rules DIR [--runs N]: loads the audience index once, then
 * evaluates every .json file of DIR N times; prints load time, memory and timings. */
static int bench_segments(struct cli *c)
{
    const char *dir = opt(c, "rules"), *v;
    struct segment_limits lim;
    struct audience_index *ix;
    struct audience_stats ixs;
    struct store *st;
    struct err e = {0};
    struct dirent **names = NULL;
    long rss0 = rss_kb();
    int64_t runs = 20, now = clock_now_ms(); /* one instant for every run: same windows */
    int n, i, rc;

    if (dir == NULL)
        return usage_error(c, "bench segments: --rules DIR is required");
    if ((v = opt(c, "runs")) && (parse_i64(v, strlen(v), &runs) || runs < 1 || runs > 10000))
        return usage_error(c, "bench segments: --runs must be an integer from 1 to 10000");
    n = scandir(dir, &names, NULL, alphasort);
    if (n < 0)
        return die("%s: %s", dir, strerror(errno));
    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        goto out;
    rc = load_index(c, st, &ix, &lim, &e);
    if (rc) {
        audience_index_free(ix);
        store_close(st);
        rc = die("bench segments: %s", e.msg);
        goto out;
    }
    audience_index_stats(ix, &ixs);
    printf("index: %lld contacts, %lld events, %.1f MB (%.1f bytes/event), loaded in %.0f ms, "
           "RSS +%.0f MB\n",
           (long long)ixs.members, (long long)ixs.events, (double)ixs.bytes / 1048576.0,
           ixs.events ? (double)ixs.bytes / (double)ixs.events : 0.0, ixs.load_ms,
           (double)(rss_kb() - rss0) / 1024.0);
    for (i = 0; i < n && rc == 0; i++) {
        struct segment_plan *plan = NULL;
        struct errlist errs = {0};
        char path[2048];
        json_error_t je;
        json_t *rules;
        double *t, first_ms = 0;
        int64_t count = 0, k;
        size_t len = strlen(names[i]->d_name);

        if (len < 6 || strcmp(names[i]->d_name + len - 5, ".json") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        rules = json_load_file(path, 0, &je);
        if (rules == NULL) {
            rc = die("%s:%d: %s", path, je.line, (json_error_tidy(&je), je.text));
            break;
        }
        {
            double t0 = (double)clock_now_ms();
            rc = segment_compile(ix, st, audience_index_contracts(ix), rules, &lim, &plan, &errs,
                                 &e);
            first_ms = (double)clock_now_ms() - t0; /* includes loading property columns */
        }
        json_decref(rules);
        if (rc) {
            rc = die("%s: %s %s", path, e.msg, errs.n ? errs.items[0].msg : "");
            break;
        }
        t = xcalloc((size_t)runs, sizeof *t);
        for (k = 0; k < runs && rc == 0; k++) {
            struct segment_result res = {0};
            rc = segment_eval(ix, plan, now, &lim, &res, &e);
            t[k] = res.took_ms;
            count = res.count;
            segment_result_release(&res);
        }
        if (rc == 0) {
            qsort(t, (size_t)runs, sizeof *t, cmp_double);
            printf("%-32s %9lld members  median %8.2f ms  p95 %8.2f ms  min %8.2f ms  (compile %.0f ms)\n",
                   names[i]->d_name, (long long)count, t[runs / 2],
                   t[(size_t)((double)runs * 0.95) < (size_t)runs ? (size_t)((double)runs * 0.95)
                                                                : (size_t)runs - 1],
                   t[0], first_ms);
        } else
            rc = die("%s: %s", path, e.msg);
        free(t);
        segment_plan_free(plan);
    }
    if (rc == 0) { /* with the columns the segments loaded on first use */
        audience_index_stats(ix, &ixs);
        printf("index after the segments: %.1f MB (columns loaded for them included)\n",
               (double)ixs.bytes / 1048576.0);
    }
    audience_index_free(ix);
    store_close(st);
out:
    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

static int cmd_bench(struct cli *c)
{
    struct gen_opts g = {.seed = 42};
    struct err e = {0};
    const char *v;
    int rc;

    if ((rc = check_opts(c, " contacts events seed out rules runs ")))
        return rc;
    if (c->nargs == 1 && strcmp(c->args[0], "segments") == 0)
        return bench_segments(c);
    if (c->nargs != 1 || strcmp(c->args[0], "gen") != 0)
        return usage_error(c, "bench: expected 'gen' or 'segments'");
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
    g.now_ms = clock_now_ms() - clock_now_ms() % DAY_MS;
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
        {"contact", cmd_contact}, {"events", cmd_events},   {"apikey", cmd_apikey},   {"backup", cmd_backup},
        {"config", cmd_config},   {"bench", cmd_bench},     {"audit", cmd_audit},
        {"segment", cmd_segment}, {"sync", cmd_sync},
    };

    memset(&c, 0, sizeof c);
    if (argc > 0 && argv[0] && strchr(argv[0], '/'))
        prog = argv[0];
    if (sodium_init() < 0)
        return die("libsodium failed to initialise");
    rc = parse_args(&c, argc, argv);
    if (rc)
        goto out;
    c.json = opt(&c, "json") != NULL;
    if (opt(&c, "version") || (c.cmd && strcmp(c.cmd, "version") == 0 && !opt(&c, "help"))) {
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
            c.known = 1;
            rc = setup(&c, strcmp(c.cmd, "serve") == 0 || strcmp(c.cmd, "demo") == 0);
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
