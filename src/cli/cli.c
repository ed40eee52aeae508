/* cli/cli.c -- the `engage` command: parsing, the command table, dispatch, shared helpers.
 *
 * Global options (anywhere on the line): --data DIR, --config FILE, --json,
 * --now ISO, --log-level L, --help. Precedence: flag > environment > file >
 * default. Errors are one line on stderr naming the file, line and field; exit
 * codes: 0 ok, 1 error, 2 usage, 3 import finished with rejected rows.
 *
 * DESIGN: the command table below lists each command's row (defined in its family's
 * file): the row carries its handler, its options and its help, and its subcommands
 * as a sub-table. Options may come anywhere on the line, before the command too, so
 * whether --x takes a value is looked up in every row; once the command is known, an
 * option its row (and the chosen subcommand's) does not list is refused. */
#include <pwd.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

const char *prog = "engage";

/* Options every command takes. */
static const char *const global_opts = " data= config= now= log-level= json help version ";

/* In the order of 'engage --help'. */
static const struct cli_cmd *const commands[] = {
    &cli_cmd_serve,     &cli_cmd_demo,    &cli_cmd_migrate, &cli_cmd_import,  &cli_cmd_rejected,
    &cli_cmd_contracts, &cli_cmd_contact, &cli_cmd_events,  &cli_cmd_segment, &cli_cmd_campaign,
    &cli_cmd_audit,     &cli_cmd_apikey,  &cli_cmd_sync,    &cli_cmd_backup,  &cli_cmd_config,
    &cli_cmd_bench,     &cli_cmd_version,
};
#define NCOMMANDS (sizeof commands / sizeof *commands)

/* ---- options ------------------------------------------------------------------------- */

/* 1 if list (" a b= c ") holds name, *valued set to whether it takes a value. */
static int opt_listed(const char *list, const char *name, int *valued)
{
    size_t n = strlen(name);
    const char *p = list;

    while (p && (p = strstr(p, name)) != NULL) {
        if (p > list && p[-1] == ' ' && (p[n] == ' ' || (p[n] == '=' && p[n + 1] == ' '))) {
            if (valued)
                *valued = p[n] == '=';
            return 1;
        }
        p += n;
    }
    return 0;
}

/* 1 if some row of the table (or below it) lists name; *valued as opt_listed. */
static int opt_in_rows(const struct cli_cmd *rows, size_t nrows, const struct cli_cmd *const *ptrs,
                       const char *name, int *valued)
{
    size_t i;

    for (i = 0; ptrs ? i < nrows : rows[i].name != NULL; i++) {
        const struct cli_cmd *r = ptrs ? ptrs[i] : &rows[i];
        if ((r->opts && opt_listed(r->opts, name, valued)) ||
            (r->subs && opt_in_rows(r->subs, 0, NULL, name, valued)))
            return 1;
    }
    return 0;
}

/* 1 if name is an option of any command; *valued whether it takes a value. */
static int opt_known(const char *name, int *valued)
{
    return opt_listed(global_opts, name, valued) ||
           opt_in_rows(NULL, NCOMMANDS, commands, name, valued);
}

const char *opt(const struct cli *c, const char *name)
{
    int i;

    for (i = 0; i < c->nopts; i++)
        if (strcmp(c->opts[i].name, name) == 0)
            return c->opts[i].value;
    return NULL;
}

int die(const char *fmt, ...)
{
    va_list ap;

    fputs("engage: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int usage_error(const struct cli *c, const char *fmt, ...)
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

/* label: the words that named the command ("import status"), for the message. */
static int check_opts_of(const struct cli *c, const char *allowed, const char *label)
{
    int i;

    for (i = 0; i < c->nopts; i++)
        if (!opt_listed(global_opts, c->opts[i].name, NULL) &&
            (allowed == NULL || !opt_listed(allowed, c->opts[i].name, NULL)))
            return usage_error(c, "%s: unknown option --%s", label, c->opts[i].name);
    return 0;
}

int check_opts(const struct cli *c, const char *allowed)
{
    return check_opts_of(c, allowed, c->cmd);
}

static const struct cli_cmd *command_find(const char *name)
{
    size_t i;

    for (i = 0; name && i < NCOMMANDS; i++)
        if (strcmp(commands[i]->name, name) == 0)
            return commands[i];
    return NULL;
}

static int parse_args(struct cli *c, int argc, char **argv)
{
    int i, valued;

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
            if (!eq && !opt_known(name, &valued))
                return usage_error(c, "unknown option --%s", name);
            if (!eq && valued && i + 1 >= argc)
                return usage_error(c, "option --%s needs a value", name);
            c->opts[c->nopts].name = strdup(name);
            c->opts[c->nopts].value = eq ? eq + 1 : valued ? argv[++i] : "1";
            c->nopts++;
        } else if (strcmp(a, "-h") == 0) {
            if (c->nopts == MAX_OPTS)
                return usage_error(c, "too many options");
            c->opts[c->nopts].name = strdup("help");
            c->opts[c->nopts++].value = "1";
        } else if (c->cmd == NULL) {
            c->cmd = a;
            c->known = command_find(a) != NULL;
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

/* ---- set-up ---------------------------------------------------------------------------- */

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
    /* --data is a store location (a directory, or sqlite:DIR); the files beside the store
     * (engage.conf, secret.key, demo/) live in its directory, whichever form named it. */
    {
        enum store_kind kind;
        const char *where;
        if (store_location_parse(v, &kind, &where, &e))
            return die("%s", e.msg);
        if (kind != STORE_SQLITE)
            return die("store: '%s': the PostgreSQL backend is not built yet", v);
        snprintf(c->data_dir, sizeof c->data_dir, "%s", where);
    }
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
            return usage_error(c, "--log-level: expected error, warn, info or debug, got \"%s\"",
                               v);
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

int open_store(struct cli *c, struct store **st, int how)
{
    /* CLI commands are bulk work (imports, replays): a large page cache pays off. */
    struct store_opts so = {.busy_timeout_ms = c->cfg.busy_timeout_ms,
                            .migrate = (how & OPEN_MIGRATE) != 0,
                            .cache_mb = 512,
                            .bulk = 1};
    struct err e = {0};
    int added = 0, exists = 0;

    if (store_exists(c->data_dir, &exists, &e))
        return die("%s", e.msg);
    if (!exists) {
        if (!(how & OPEN_CREATE))
            return die("no store in %s (pass --data, set ENGAGE_DATA, or run from the folder "
                       "that holds engage-data)",
                       c->data_dir);
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

void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));

    puts(s);
    free(s);
    json_decref(j);
}

void print_items(const struct cli *c, json_t *items, void (*line)(const json_t *item),
                 const char *none)
{
    size_t i;

    if (c->json) {
        print_json(json_pack("{s:o}", "items", items));
        return;
    }
    if (none && json_array_size(items) == 0)
        fputs(none, stdout);
    for (i = 0; i < json_array_size(items); i++)
        line(json_array_get(items, i));
    json_decref(items);
}

int list_items(struct cli *c, int (*list)(struct store *st, json_t **items, struct err *e),
               void (*line)(const json_t *item), const char *none)
{
    struct store *st;
    struct err e = {0};
    json_t *items;
    int rc;

    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    rc = list(st, &items, &e);
    store_close(st);
    if (rc)
        return die("%s", e.msg);
    print_items(c, items, line, none);
    return 0;
}

void print_problems(const char *path, const struct errlist *errs)
{
    int i;

    for (i = 0; i < errs->n; i++)
        fprintf(stderr, "engage: %s: %s: %s\n", path,
                errs->items[i].path[0] ? errs->items[i].path : "/", errs->items[i].msg);
    if (errs->dropped)
        fprintf(stderr, "engage: %s: … and %d more\n", path, errs->dropped);
}

/* ---- help ------------------------------------------------------------------------------ */

static const char *const help_head =
    "usage: engage [global options] COMMAND [arguments]\n"
    "\n"
    "EqueEngage: contacts and events in (CSV, Segment-spec SDKs, CRM databases), checked\n"
    "by contracts, rejected records kept and replayable, segments evaluated in\n"
    "milliseconds, email campaigns sent to them, and what became of each message (opens,\n"
    "clicks, provider webhooks, conversions) in funnels and time series; a JSON API.\n"
    "\n"
    "commands:\n";

static const char *const help_tail =
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

static int show_help(const char *cmd)
{
    const struct cli_cmd *row = command_find(cmd);
    size_t i;

    if (row) {
        fputs(row->help, stdout);
        return 0;
    }
    fputs(help_head, stdout);
    for (i = 0; i < NCOMMANDS; i++)
        fputs(commands[i]->summary, stdout);
    fputs(help_tail, stdout);
    return 0;
}

/* ---- dispatch -------------------------------------------------------------------------- */

/* Appends row's options and its subcommands' to b. */
static void opts_collect(const struct cli_cmd *row, struct buf *b)
{
    const struct cli_cmd *s;

    if (row->opts)
        buf_adds(b, row->opts);
    for (s = row->subs; s && s->name; s++)
        opts_collect(s, b);
}

/* Picks the subcommand the words name, checks the options against the rows on the
 * way to it, and runs it. A line that names no subcommand runs the last row matched,
 * which says what it expected. */
static int dispatch(struct cli *c, const struct cli_cmd *row)
{
    struct buf allowed;
    int depth = 0, rc;

    buf_init(&allowed);
    buf_adds(&allowed, " ");
    if (row->opts)
        buf_adds(&allowed, row->opts);
    while (row->subs) {
        const struct cli_cmd *s = NULL, *t;
        if (depth < c->nargs)
            for (t = row->subs; t->name && s == NULL; t++)
                if (strcmp(t->name, c->args[depth]) == 0 &&
                    (t->subs || t->nargs < 0 || c->nargs == depth + 1 + t->nargs))
                    s = t;
        if (s == NULL) {
            opts_collect(row, &allowed);
            break;
        }
        row = s;
        depth++;
        if (row->opts)
            buf_adds(&allowed, row->opts);
    }
    c->sub = depth ? c->args[0] : NULL;
    {
        struct buf label;
        int k;
        buf_init(&label);
        buf_adds(&label, c->cmd);
        for (k = 0; k < depth; k++)
            buf_printf(&label, " %s", c->args[k]);
        rc = check_opts_of(c, allowed.p, label.p);
        buf_release(&label);
    }
    buf_release(&allowed);
    return rc ? rc : row->run(c);
}

int main(int argc, char **argv)
{
    const struct cli_cmd *row;
    struct cli c;
    int rc;

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
        rc = cli_cmd_version.run(&c);
        goto out;
    }
    if (c.cmd == NULL || opt(&c, "help") || strcmp(c.cmd, "help") == 0) {
        rc = show_help(c.cmd && strcmp(c.cmd, "help") ? c.cmd : (c.nargs ? c.args[0] : NULL));
        if (c.cmd == NULL && !opt(&c, "help"))
            rc = 2;
        goto out;
    }
    row = command_find(c.cmd);
    if (row == NULL) {
        rc = usage_error(&c, "unknown command \"%s\"", c.cmd);
        goto out;
    }
    rc = row->flags & CLI_NO_SETUP ? 0 : setup(&c, (row->flags & CLI_SERVER) != 0);
    if (rc == 0)
        rc = dispatch(&c, row);
out:
    config_release(&c.cfg);
    free_opts(&c);
    return rc;
}
