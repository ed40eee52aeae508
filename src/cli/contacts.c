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

/* engage contact restore ID [--reason R] */
static int contact_restore_cmd(struct cli *c)
{
    struct store *st;
    struct err e = {0};
    json_t *j;
    int rc;

    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    rc = contact_restore(st, c->args[1], opt(c, "reason"), c->actor, "", &j, &e);
    store_close(st);
    if (rc)
        return die("contact '%s': %s", c->args[1], e.msg);
    if (c->json) {
        print_json(j);
    } else {
        json_decref(j);
        printf("contact %s restored; its events refused meanwhile are in the dead-letter "
               "store: 'engage rejected replay --reason contact_deleted' brings them back\n",
               c->args[1]);
    }
    return 0;
}

/* engage contact show ID */
static int contact_show(struct cli *c)
{
    struct store *st;
    struct err e = {0};
    json_t *j;
    int rc;

    if ((rc = open_store(c, &st, OPEN_MIGRATE)))
        return rc;
    rc = contact_view(st, c->args[1], 20, NULL, 0, &j, &e);
    store_close(st);
    if (rc)
        return die("contact '%s': %s", c->args[1], e.msg);
    print_json(j);
    return 0;
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
    "contact", contact_usage, NULL, 0, contact_subs, 0,
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

/* engage events export [--since SEQ] [--limit N] */
static int events_export(struct cli *c)
{
    struct exporter x = {0};
    struct store *st;
    struct err e = {0};
    int64_t since = 0;
    size_t i;
    int rc;
    const char *v;

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


static int events_usage(struct cli *c)
{
    return usage_error(c, "events: expected 'export'");
}

static const struct cli_cmd events_subs[] = {
    CLI_SUB("export", events_export, " since= limit= ", 0),
    {0},
};

const struct cli_cmd cli_cmd_events = {
    "events", events_usage, NULL, 0, events_subs, 0,
    "  events export         every live event as NDJSON (--since SEQ, --limit N)\n",
    "usage: engage events export [--since SEQ] [--limit N]\n\n"
    "Writes every live event (its current version; deleted ones left out) to stdout,\n"
    "one JSON object a line, in change-sequence order: seq, event_id, event,\n"
    "external_id (null for an anonymous contact), contact_id, occurred_at,\n"
    "received_at, source, contract_version, properties. --since SEQ starts after\n"
    "that sequence number (the last line's seq resumes an export).\n",
};
