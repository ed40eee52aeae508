/* cli/cli.h -- the `engage` command's internals, shared by its command families.
 *
 * DESIGN: one row per command (struct cli_cmd): its name, its handler, the options it
 * takes and its help text, so nothing has to be kept in step with a second table. A
 * command with subcommands (`sync source add`, `rejected replay`) has a sub-table of
 * rows with their own handlers and options; the dispatcher picks the row by the words
 * that follow the command. Each command family lives in one file (import.c, sync.c …)
 * and exports its rows; cli.c parses the line, sets up the configuration and
 * dispatches. The helpers keep the short names main.c gave them (die, opt,
 * usage_error, open_store): they are internal to src/cli/. */
#ifndef ENGAGE_CLI_H
#define ENGAGE_CLI_H

#include <jansson.h>

#include "core/config.h"
#include "ingest/ingest.h"
#include "segment/segment.h"
#include "store/store.h"
#include "sync/sync.h"

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
    int known; /* cmd names a command */
};

/* A command, or a subcommand in its command's sub-table (NULL name ends a sub-table).
 * opts lists the options the row takes beside the global ones, each between spaces,
 * a valued one with a trailing '=': " batch= no-progress ". A subcommand row matches
 * when args[depth] is its name and it is followed by nargs words (-1: any number); a
 * command row with subs whose line matches none of them runs its own handler, which
 * says what was expected. */
#define CLI_SERVER 1   /* setup as a server: logs at info, the --now clock runs */
#define CLI_NO_SETUP 2 /* needs no data directory or configuration (version) */

struct cli_cmd {
    const char *name;
    int (*run)(struct cli *c);
    const char *opts;
    int nargs;
    const struct cli_cmd *subs;
    int flags;
    const char *summary; /* its lines in 'engage --help' (commands only) */
    const char *help;    /* 'engage CMD --help' (commands only) */
};

/* A subcommand's row. */
#define CLI_SUB(name_, run_, opts_, nargs_)                                                        \
    {                                                                                              \
        .name = (name_), .run = (run_), .opts = (opts_), .nargs = (nargs_)                         \
    }

/* The command rows, one per family file, in the order of 'engage --help'. */
extern const struct cli_cmd cli_cmd_serve, cli_cmd_demo, cli_cmd_migrate, cli_cmd_import,
    cli_cmd_rejected, cli_cmd_contracts, cli_cmd_contact, cli_cmd_events, cli_cmd_segment,
    cli_cmd_campaign, cli_cmd_audit, cli_cmd_apikey, cli_cmd_sync, cli_cmd_backup, cli_cmd_config,
    cli_cmd_bench, cli_cmd_version;

/* How the user ran us (./build/engage, engage): hints quote it back. */
extern const char *prog;

/* The value of option name, or NULL. */
const char *opt(const struct cli *c, const char *name);
/* "engage: …" on stderr; returns 1. */
int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "engage: … (see 'engage CMD --help')" on stderr; returns 2. */
int usage_error(const struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Every option of c must be one of allowed (" a b ", NULL: none) or global; else a usage
 * error. */
int check_opts(const struct cli *c, const char *allowed);

/* open_store's flags. Only the commands that bring data in (serve, import, demo, sync
 * source add) and migrate may create a store: any other command pointed at a folder
 * without one (a typo in --data, run from elsewhere) says so rather than answer from
 * an empty store it just made. */
#define OPEN_MIGRATE 1
#define OPEN_CREATE 2
/* Opens the store of --data; 0, or what to exit with (the error printed). */
int open_store(struct cli *c, struct store **st, int how);
/* Prints j indented and frees it. */
void print_json(json_t *j);
/* A listing its module formatted: with --json one document {"items":[…]}, else a line
 * an item by line(), or none (if not NULL) when there is no item. Takes items. */
void print_items(const struct cli *c, json_t *items, void (*line)(const json_t *item),
                 const char *none);
/* Opens the store, lists with list() and prints it with print_items(); 0, or what to
 * exit with. */
int list_items(struct cli *c, int (*list)(struct store *st, json_t **items, struct err *e),
               void (*line)(const json_t *item), const char *none);
/* Validation problems of a file, one line each: "engage: FILE: /pointer: why". */
void print_problems(const char *path, const struct errlist *errs);

/* Accumulates a listing: the rows' JSON (with --json), or prints them as lines. */
struct list_out {
    struct cli *c;
    json_t *items; /* --json: one document {"items":[…]} */
    int shown;     /* contracts show: the newest version was printed */
};

/* import.c: imports one CSV file with the command's --batch and --no-progress; prints
 * its report unless quiet. */
int run_import(struct cli *c, struct store *st, enum import_kind kind, const char *path, int quiet,
               struct import_report *rep);
/* sync.c: a pass's report: a line, or with --json a JSON object. */
void print_sync_report(const struct cli *c, const char *verb, const char *name,
                       const struct sync_report *rep, double secs, const char *read_how,
                       const char *tail);

#endif
