/* cli/contacts.c -- engage contact show|consent|restore and engage events export.
 *
 * DESIGN: parse the line, call ingest, print what it returns. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

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
    rc = contact_consent_change(st, &c->cfg, c->args[1], to, "cli", reason, c->actor, "", &before,
                                &e);
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

/* engage contact consent ID --state S --reason R */
static int contact_consent_cmd(struct cli *c)
{
    struct store *st;
    int rc;

    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    rc = contact_consent(c, st);
    store_close(st);
    return rc;
}

/* engage contact show ID, or restore ID [--reason R]: the contact, or undoing its
 * deletion. */
static int contact_get(struct cli *c, int restore)
{
    struct store *st;
    struct err e = {0};
    json_t *j;
    int rc;

    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    rc = restore ? contact_restore(st, c->args[1], opt(c, "reason"), c->actor, "", &j, &e)
                 : contact_view(st, c->args[1], 20, NULL, 0, &j, &e);
    store_close(st);
    if (rc)
        return die("contact '%s': %s", c->args[1], e.msg);
    if (!restore || c->json) {
        print_json(j);
        return 0;
    }
    json_decref(j);
    printf("contact %s restored; its events refused meanwhile are in the dead-letter "
           "store: 'engage rejected replay --reason contact_deleted' brings them back\n",
           c->args[1]);
    return 0;
}

static int contact_show(struct cli *c)
{
    return contact_get(c, 0);
}

static int contact_restore_cmd(struct cli *c)
{
    return contact_get(c, 1);
}

static int contact_usage(struct cli *c)
{
    return usage_error(c, "contact: expected 'show EXTERNAL_ID', 'consent EXTERNAL_ID "
                          "--state S --reason R' or 'restore EXTERNAL_ID [--reason R]'");
}

static const struct cli_cmd contact_subs[] = {
    CLI_SUB("show", contact_show, NULL, 1),
    CLI_SUB("consent", contact_consent_cmd, " state= reason= ", 1),
    CLI_SUB("restore", contact_restore_cmd, " reason= ", 1),
    {0},
};

const struct cli_cmd cli_cmd_contact = {
    "contact",
    contact_usage,
    NULL,
    0,
    contact_subs,
    0,
    "  contact show ID       a contact: attributes, consent history, recent events\n"
    "  contact consent ID    change email consent explicitly (--state S --reason R; audited)\n"
    "  contact restore ID    undo a contact's deletion (audited)\n",
    "usage: engage contact show EXTERNAL_ID\n"
    "       engage contact consent EXTERNAL_ID --state STATE --reason TEXT\n"
    "       engage contact restore EXTERNAL_ID [--reason TEXT]\n\n"
    "'show' prints a contact (JSON): attributes, consent and its history, recent\n"
    "events. 'consent' changes email consent explicitly, recorded with the reason in\n"
    "the consent history and the audit log: the only way to re-subscribe a contact\n"
    "that opted out, bounced or complained (imports never can). 'restore' undoes a\n"
    "deletion (audited): the contact takes data and is in segments again; its\n"
    "events refused meanwhile come back with 'engage rejected replay --reason\n"
    "contact_deleted'.\n",
};

/* ---- events export ------------------------------------------------------------------------ */

/* Writes a line to stdout; *ctx keeps errno of a failed write. */
static int write_line(void *ctx, const char *line, size_t len)
{
    if (fwrite(line, 1, len, stdout) == len)
        return 0;
    *(int *)ctx = errno;
    return E_IO;
}

/* engage events export [--since SEQ] [--limit N] */
static int events_export(struct cli *c)
{
    struct store *st;
    struct err e = {0};
    int64_t since = 0, limit = 0;
    const char *v;
    int rc, werr = 0;

    if (((v = opt(c, "since")) && parse_i64(v, strlen(v), &since)) ||
        ((v = opt(c, "limit")) && parse_i64(v, strlen(v), &limit)) || since < 0 || limit < 0)
        return usage_error(c, "events export: --since and --limit take a number >= 0");
    if ((rc = open_store(c, &st, 0)))
        return rc;
    rc = ingest_events_export(st, since, limit, write_line, &werr, &e);
    if (rc == E_IO && e.msg[0] == '\0')
        ERR(&e, E_IO, "events export: cannot write to stdout: %s", strerror(werr));
    store_close(st);
    if (fflush(stdout) != 0 && rc == 0)
        rc = ERR(&e, E_IO, "events export: cannot write to stdout: %s", strerror(errno));
    return rc ? die("%s", e.msg) : 0;
}

static int events_usage(struct cli *c)
{
    return usage_error(c, "events: expected 'export'");
}

static const struct cli_cmd events_subs[] = {
    CLI_SUB("export", events_export, " since= limit= ", 0),
    {0},
};

const struct cli_cmd cli_cmd_events = {
    "events",
    events_usage,
    NULL,
    0,
    events_subs,
    0,
    "  events export         every live event as NDJSON (--since SEQ, --limit N)\n",
    "usage: engage events export [--since SEQ] [--limit N]\n\n"
    "Writes every live event (its current version; deleted ones left out) to stdout,\n"
    "one JSON object a line, in change-sequence order: seq, event_id, event,\n"
    "external_id (null for an anonymous contact), contact_id, occurred_at,\n"
    "received_at, source, contract_version, properties. --since SEQ starts after\n"
    "that sequence number (the last line's seq resumes an export).\n",
};
