/* cli/import.c -- engage import (contacts, events, status) and engage rejected.
 *
 * DESIGN: parse the line, call ingest, print: the import's report as lines or JSON,
 * the dead letters as ingest's rejected_json() formats them for the API too. */
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void print_report(const struct import_opts *o, const struct import_report *rep)
{
    const struct ingest_stats *s = &rep->stats;
    const char *reason;
    json_t *r;

    printf("imported %s: %lld row%s in %.2f s (%.0f rows/s)\n", o->path, (long long)s->read,
           s->read == 1 ? "" : "s", rep->seconds,
           rep->seconds > 0 ? (double)s->read / rep->seconds : 0.0);
    printf("  inserted               %lld\n  updated                %lld\n"
           "  unchanged (duplicates) %lld\n",
           (long long)s->inserted, (long long)s->updated, (long long)s->duplicates);
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
        printf("    %s: %lld\n", reason,
               (long long)json_integer_value(json_object_get(r, "count")));
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
                     "duplicates", (json_int_t)s->duplicates, "unchanged",
                     (json_int_t)s->duplicates, "rejected", (json_int_t)s->rejected, "consent_kept",
                     (json_int_t)s->consent_kept, "unvalidated", (json_int_t)s->unvalidated,
                     "seconds", rep->seconds, "rejected_by_reason", rep->rejected_by_reason);
}

int run_import(struct cli *c, struct store *st, enum import_kind kind, const char *path, int quiet,
               struct import_report *rep)
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

static int print_import(void *ctx, const struct store_import *im)
{
    char st[32];

    (void)ctx;
    time_format_iso(im->started_at, st);
    printf("%-5lld %s  %-8s %-7s %10lld read %10lld inserted %8lld rejected  %s\n",
           (long long)im->id, st, im->kind, im->status, (long long)im->read,
           (long long)im->inserted, (long long)im->rejected, im->file);
    return 0;
}

/* engage import status: the latest imports; "running" for one that is going on now or
 * that died (its committed batches are kept: run it again to finish). */
static int import_status(struct cli *c)
{
    json_t *items = NULL;
    struct store *st;
    struct err e = {0};
    int rc;

    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    if (c->json)
        rc = import_list_json(st, 20, &items, &e);
    else
        rc = import_list(st, 20, print_import, NULL, &e);
    if (rc == 0 && c->json)
        print_json(json_pack("{s:O}", "items", items));
    json_decref(items);
    store_close(st);
    return rc ? die("%s", e.msg) : 0;
}

/* engage import contacts|events FILE */
static int import_file(struct cli *c, enum import_kind kind)
{
    struct import_report rep = {0};
    struct store *st;
    int rc;

    if ((rc = open_store(c, &st, OPEN_MIGRATE | OPEN_CREATE)))
        return rc;
    rc = run_import(c, st, kind, c->args[1], 0, &rep);
    if (rc == 0 && rep.stats.rejected)
        rc = 3;
    import_report_release(&rep);
    store_close(st);
    return rc;
}

static int import_contacts(struct cli *c)
{
    return import_file(c, IMPORT_CONTACTS);
}

static int import_events(struct cli *c)
{
    return import_file(c, IMPORT_EVENTS);
}

/* A line that names no import. */
static int import_usage(struct cli *c)
{
    if (c->nargs != 2)
        return usage_error(c, "import: expected 'contacts FILE', 'events FILE' or 'status'");
    return usage_error(c, "import: expected contacts or events, got \"%s\"", c->args[0]);
}

static const struct cli_cmd import_subs[] = {
    CLI_SUB("contacts", import_contacts, " batch= no-progress ", 1),
    CLI_SUB("events", import_events, " batch= no-progress ", 1),
    CLI_SUB("status", import_status, NULL, 0),
    {0},
};

const struct cli_cmd cli_cmd_import = {
    "import",
    import_usage,
    NULL,
    0,
    import_subs,
    0,
    "  import contacts FILE  import contacts from CSV ('-' = stdin)\n"
    "  import events FILE    import events from CSV\n"
    "  import status         the latest imports and their counts\n",
    "usage: engage import contacts|events FILE [--batch N] [--no-progress]\n"
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
    "now or one that was killed (its committed batches are kept; run it again).\n",
};

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

/* engage rejected show ID */
static int rejected_show(struct cli *c)
{
    struct store *st;
    struct err e = {0};
    json_t *item;
    int64_t id;
    int rc;

    if (parse_i64(c->args[1], strlen(c->args[1]), &id) || id < 1)
        return usage_error(c, "rejected show: expected a record id, got \"%s\"", c->args[1]);
    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    rc = rejected_get_json(st, id, &item, &e);
    store_close(st);
    if (rc)
        return die("%s", e.msg);
    print_json(item);
    return 0;
}

/* The filter options of list, replay and dismiss (status: status when not given; "all"
 * becomes NULL), checked by ingest's rules; 0 or a usage error. */
static int rejected_filter(struct cli *c, struct store_rejected_filter *f, const char *status)
{
    struct rejected_problem p;
    struct err e = {0};
    const char *v;
    int64_t n;

    memset(f, 0, sizeof *f);
    f->reason = opt(c, "reason");
    f->source = opt(c, "source");
    f->kind = opt(c, "kind");
    f->status = opt(c, "status") ? opt(c, "status") : status;
    if (rejected_filter_check(f, &p, &e))
        return p.allowed ? usage_error(c, "--%s: expected %s, got \"%s\"", p.filter, p.allowed,
                                       opt(c, p.filter))
                         : usage_error(c, "%s", e.msg);
    if ((v = opt(c, "limit")) && (parse_i64(v, strlen(v), &n) || n < 1 || n > 1000000))
        return usage_error(c, "--limit: expected an integer from 1 to 1000000, got \"%s\"", v);
    f->limit = v ? (int)n : 0;
    if ((v = opt(c, "id")) && (parse_i64(v, strlen(v), &f->id) || f->id < 1))
        return usage_error(c, "--id: expected a record id, got \"%s\"", v);
    return 0;
}

/* engage rejected list [filters] [--status S] [--limit N] */
static int rejected_list(struct cli *c)
{
    struct store_rejected_filter f;
    struct list_out lo = {c, NULL, 0};
    struct store *st;
    struct err e = {0};
    int rc;

    if ((rc = rejected_filter(c, &f, "pending")) || (rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    f.raw_max = c->json ? REJECTED_RAW_PREVIEW : 1; /* the text lines show no raw */
    rc = rejected_each(st, &f, print_rejected, &lo, &e);
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
    store_close(st);
    return rc;
}

/* engage rejected dismiss (--id N | --reason R | --source S | --kind K) */
static int rejected_dismiss_cmd(struct cli *c)
{
    struct store_rejected_filter f;
    struct ingest in;
    struct store *st;
    struct err e = {0};
    int64_t n;
    int rc;

    if ((rc = rejected_filter(c, &f, NULL)))
        return rc;
    if (rejected_dismiss_check(&f, &e))
        return usage_error(c, "rejected dismiss: %s (--id, --reason, --source or --kind)", e.msg);
    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    ingest_init(&in, st, &c->cfg);
    rc = rejected_dismiss(&in, &f, c->actor, "", &n, &e);
    ingest_release(&in);
    if (rc)
        rc = die("%s", e.msg);
    else if (c->json)
        print_json(json_pack("{s:I}", "dismissed", (json_int_t)n));
    else
        printf("dismissed %lld record%s (kept, never replayed)\n", (long long)n, n == 1 ? "" : "s");
    store_close(st);
    return rc;
}

/* engage rejected replay [filters] */
static int rejected_replay_cmd(struct cli *c)
{
    struct store_rejected_filter f;
    struct replay_stats rs;
    struct ingest in;
    struct store *st;
    struct err e = {0};
    int rc;

    if ((rc = rejected_filter(c, &f, NULL)) || (rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
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
                   "them\n",
                   (long long)rs.not_replayable, STORE_REJECTED_MAX_RAW / 1024);
    }
    store_close(st);
    return rc;
}

static int rejected_usage(struct cli *c)
{
    return usage_error(c, "rejected: expected list, show, replay or dismiss");
}

static const struct cli_cmd rejected_subs[] = {
    CLI_SUB("list", rejected_list, " reason= source= kind= status= limit= id= ", 0),
    CLI_SUB("show", rejected_show, NULL, 1),
    CLI_SUB("replay", rejected_replay_cmd, " reason= source= kind= id= ", 0),
    CLI_SUB("dismiss", rejected_dismiss_cmd, " reason= source= kind= id= ", 0),
    {0},
};

const struct cli_cmd cli_cmd_rejected = {
    "rejected",
    rejected_usage,
    NULL,
    0,
    rejected_subs,
    0,
    "  rejected list         show records in the ingestion dead-letter store\n"
    "  rejected show ID      one record, with all that was kept of its payload\n"
    "  rejected replay       re-validate rejected records and ingest those that now pass\n"
    "  rejected dismiss      set rejected records aside (kept, never replayed)\n",
    "usage: engage rejected list [--reason R] [--source S] [--kind contact|event]\n"
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
    "'show' all that was kept.\n",
};
