/* cli/campaign.c -- engage campaign list|show|send|pause|resume|cancel.
 *
 * DESIGN: the same calls as the API (campaign/campaign.h), on the store of --data, with
 * the CLI's actor in the audit log. The CLI does not send: it changes the records, and
 * the dispatcher of the `engage serve` on that data directory sees the change within a
 * second (it re-reads runs while it works, and ticks once a second when idle). */
#include <string.h>

#include "campaign/campaign.h"
#include "cli.h"

/* A campaign as one line. */
static void print_campaign(const json_t *j)
{
    const json_t *run = json_object_get(j, "last_run_id");

    printf("%-5lld %-24s %-10s segment %-5lld template %-5lld",
           (long long)json_integer_value(json_object_get(j, "id")),
           json_string_value(json_object_get(j, "name")),
           json_string_value(json_object_get(j, "state")),
           (long long)json_integer_value(json_object_get(j, "segment_id")),
           (long long)json_integer_value(json_object_get(j, "template_id")));
    if (json_is_integer(run))
        printf("  last run %lld", (long long)json_integer_value(run));
    printf("\n");
}

static void print_run(const json_t *r)
{
    const json_t *k = json_object_get(r, "counts");
    const char *reason = json_string_value(json_object_get(r, "reason"));

    printf("run %lld: %s%s%s\n  audience %lld (evaluation %lld)\n"
           "  queued %lld  sending %lld  sent %lld  retry %lld  failed %lld  dead %lld  "
           "skipped %lld\n  possible duplicates %lld\n",
           (long long)json_integer_value(json_object_get(r, "id")),
           json_string_value(json_object_get(r, "state")), reason ? ": " : "", reason ? reason : "",
           (long long)json_integer_value(json_object_get(r, "audience")),
           (long long)json_integer_value(json_object_get(r, "evaluation_id")),
           (long long)json_integer_value(json_object_get(k, "queued")),
           (long long)json_integer_value(json_object_get(k, "sending")),
           (long long)json_integer_value(json_object_get(k, "sent")),
           (long long)json_integer_value(json_object_get(k, "retry")),
           (long long)json_integer_value(json_object_get(k, "failed")),
           (long long)json_integer_value(json_object_get(k, "dead")),
           (long long)json_integer_value(json_object_get(k, "skipped")),
           (long long)json_integer_value(json_object_get(r, "possible_duplicates")));
}

/* The campaign id of the command line (its one argument). */
static int campaign_arg(struct cli *c, int64_t *id)
{
    const char *s = c->args[1];

    if (parse_i64(s, strlen(s), id) || *id < 1)
        return usage_error(c, "campaign %s: expected a campaign id, got '%s'", c->sub, s);
    return 0;
}

static int list_all(struct store *st, json_t **items, struct err *e)
{
    json_t *all = json_array(), *page = NULL;
    int64_t cursor = 0, next;
    int rc;

    do {
        rc = campaign_list(st, cursor, 1000, &page, &next, e);
        if (rc)
            break;
        json_array_extend(all, page);
        json_decref(page);
        cursor = next;
    } while (next);
    if (rc)
        json_decref(all);
    *items = rc ? NULL : all;
    return rc;
}

static int campaign_list_cmd(struct cli *c)
{
    return list_items(c, list_all, print_campaign, "no campaigns");
}

/* engage campaign show ID: the campaign and its latest run. */
static int campaign_show_cmd(struct cli *c)
{
    struct store *st;
    struct err e = {0};
    json_t *camp = NULL, *run = NULL;
    int64_t id;
    int rc;

    if ((rc = campaign_arg(c, &id)) || (rc = open_store(c, &st, 0)))
        return rc;
    rc = campaign_get(st, id, &camp, &e);
    if (rc == 0 && json_is_integer(json_object_get(camp, "last_run_id")))
        rc = run_get(st, json_integer_value(json_object_get(camp, "last_run_id")), &run, &e);
    store_close(st);
    if (rc) {
        json_decref(camp);
        return die("campaign %lld: %s", (long long)id, e.msg);
    }
    if (c->json) {
        json_object_set_new(camp, "last_run", run ? run : json_null());
        print_json(camp);
        return 0;
    }
    print_campaign(camp);
    if (run)
        print_run(run);
    json_decref(camp);
    json_decref(run);
    return 0;
}

/* engage campaign send ID */
static int campaign_send_cmd(struct cli *c)
{
    struct send_env env = {0};
    struct store *st;
    struct err e = {0};
    json_t *run = NULL;
    char listen_url[300];
    int64_t id;
    int rc;

    if ((rc = campaign_arg(c, &id)))
        return rc;
    snprintf(listen_url, sizeof listen_url, "http://%s", c->cfg.listen);
    if (send_env_init(&env, &c->cfg, listen_url, NULL, &e))
        return die("%s", e.msg);
    if ((rc = open_store(c, &st, 0))) {
        send_env_release(&env);
        return rc;
    }
    rc = campaign_send(&env, st, id, c->actor, "", &run, &e);
    store_close(st);
    send_env_release(&env);
    if (rc)
        return die("campaign %lld: %s", (long long)id, e.msg);
    if (c->json)
        print_json(run);
    else {
        printf("campaign %lld: run %lld created; `engage serve` on this data directory sends "
               "it\n",
               (long long)id, (long long)json_integer_value(json_object_get(run, "id")));
        json_decref(run);
    }
    return 0;
}

static int campaign_act_cmd(struct cli *c, enum campaign_action a)
{
    struct store *st;
    struct err e = {0};
    json_t *run = NULL;
    int64_t id;
    int rc;

    if ((rc = campaign_arg(c, &id)) || (rc = open_store(c, &st, 0)))
        return rc;
    rc = campaign_act(st, id, a, c->actor, "", &run, &e);
    store_close(st);
    if (rc)
        return die("campaign %lld: %s", (long long)id, e.msg);
    if (c->json)
        print_json(run);
    else {
        print_run(run);
        json_decref(run);
    }
    return 0;
}

static int campaign_pause_cmd(struct cli *c)
{
    return campaign_act_cmd(c, CAMPAIGN_PAUSE);
}

static int campaign_resume_cmd(struct cli *c)
{
    return campaign_act_cmd(c, CAMPAIGN_RESUME);
}

static int campaign_cancel_cmd(struct cli *c)
{
    return campaign_act_cmd(c, CAMPAIGN_CANCEL);
}

static int campaign_usage(struct cli *c)
{
    return usage_error(c, "campaign: expected list, show ID, send ID, pause ID, resume ID or "
                          "cancel ID");
}

static const struct cli_cmd campaign_subs[] = {
    CLI_SUB("list", campaign_list_cmd, NULL, 0),
    CLI_SUB("show", campaign_show_cmd, NULL, 1),
    CLI_SUB("send", campaign_send_cmd, NULL, 1),
    CLI_SUB("pause", campaign_pause_cmd, NULL, 1),
    CLI_SUB("resume", campaign_resume_cmd, NULL, 1),
    CLI_SUB("cancel", campaign_cancel_cmd, NULL, 1),
    {0},
};

const struct cli_cmd cli_cmd_campaign = {
    "campaign",
    campaign_usage,
    NULL,
    0,
    campaign_subs,
    0,
    "  campaign list|show|send|pause|resume|cancel  email campaigns and their runs "
    "(docs/campaigns.md)\n",
    "usage: engage campaign list\n"
    "       engage campaign show ID\n"
    "       engage campaign send|pause|resume|cancel ID\n\n"
    "list prints the campaigns; show one campaign and its latest run's ledger counts.\n"
    "send creates a run (at the campaign's scheduled_at, or at once); pause, resume and\n"
    "cancel act on the campaign's latest run. These change the records only: the\n"
    "`engage serve` on the same data directory does the sending and sees the change\n"
    "within a second. Every change is in the audit log. --json prints the API's JSON.\n",
};
