/* cli/serve.c -- engage serve and engage demo.
 *
 * DESIGN: serve() starts the store pool, the workers and the HTTP server, prints the
 * URL once ready and waits for SIGINT or SIGTERM; demo loads a generated data set
 * (and, with --crm, a demo CRM as a sync source) before serving it. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "auth/auth.h"
#include "core/secret.h"
#include "campaign/campaign.h"
#include "demo/demo.h"
#include "http/http.h"
#include "cli.h"

static int serve(struct cli *c, const char *banner_key)
{
    struct app app = {.cfg = &c->cfg, .location = c->data_dir, .version = ENGAGE_VERSION};
    struct store *st;
    struct err e = {0};
    sigset_t set;
    int port, sig, rc, lfd;

    /* The port first: taken, it is said at once, before minutes of migration or loading. */
    if (http_listen(&c->cfg, &lfd, &port, &e))
        return die("%s", e.msg);
    if ((rc = open_store(c, &st, OPEN_MIGRATE | OPEN_CREATE))) {
        close(lfd);
        return rc;
    }
    store_close(st);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* server threads inherit the mask */
    signal(SIGPIPE, SIG_IGN);
    if (app_start(&app, lfd, &e))
        return die("%s", e.msg);
    {
        char host[256];
        int p;
        config_parse_listen(c->cfg.listen, host, sizeof host, &p);
        log_info("serve", "listening on http://%s:%d (data %s)", host, port, c->data_dir);
        printf("engage: listening on http://%s%s%s:%d\n", strchr(host, ':') ? "[" : "", host,
               strchr(host, ':') ? "]" : "", port);
        if (banner_key)
            printf(
                "\n  API:         http://%s:%d/api/v1/contracts\n"
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
    app_stop(&app);
    return 0;
}

static int cmd_serve(struct cli *c)
{
    int rc = check_opts(c, " listen ");

    return rc ? rc : serve(c, NULL);
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
        "{\"name\":\"Quiet pro customers\",\"description\":\"pro or enterprise, no call in 30 "
        "days\","
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

static int find_segment(void *ctx, const struct store_segment *s)
{
    int64_t *id = ctx;

    if (strcmp(s->name, "Pune repeat buyers") == 0)
        *id = s->id;
    return 0;
}

/* A template and a draft campaign to the first demo segment, sendable to the outbox (the
 * default provider when none is configured); a second run finds their names taken. */
static int demo_campaign(struct cli *c, struct store *st, struct err *e)
{
    static const char *const tpl =
        "{\"name\":\"Thank you, repeat buyers\","
        "\"subject\":\"{{ first_name | default: \\\"Friend\\\" }}, a thank-you from {{ city }}\","
        "\"html\":\"<html><body><h1>Thank you, {{ first_name | default: \\\"friend\\\" }}!</h1>"
        "<p>You ordered twice this quarter. Here is 10% off your next order in {{ city }}.</p>"
        "<p><a href=\\\"{{ unsubscribe_url }}\\\">Unsubscribe</a></p></body></html>\","
        "\"from_email\":\"hello@demo.example\",\"from_name\":\"EqueEngage Demo\"}";
    struct send_env env = {0};
    struct errlist errs = {0};
    json_t *body = NULL;
    int64_t seg = 0, tid = 0, cid;
    char url[300];
    int rc;

    rc = store_segments_list(st, 0, 1000, find_segment, &seg, e);
    if (rc || seg == 0)
        return rc;
    body = json_loads(tpl, 0, NULL);
    ASSERT(body != NULL);
    rc = template_create(st, body, c->actor, "", &tid, &errs, e);
    json_decref(body);
    if (rc == E_CONFLICT) { /* made by an earlier run, with its campaign */
        err_clear(e);
        return 0;
    }
    if (rc)
        return rc;
    snprintf(url, sizeof url, "http://%s", c->cfg.listen);
    rc = send_env_init(&env, &c->cfg, url, NULL, e);
    if (rc)
        return rc;
    body = json_pack("{s:s,s:I,s:I}", "name", "Thank repeat buyers in Pune", "segment_id",
                     (json_int_t)seg, "template_id", (json_int_t)tid);
    rc = campaign_create(&env, st, body, c->actor, "", &cid, &errs, e);
    if (rc == E_CONFLICT) {
        err_clear(e);
        rc = 0;
    }
    json_decref(body);
    send_env_release(&env);
    return rc;
}

/* The demo CRM (a SQLite file, demo/crm/): added as sync source "crm" (kept when it is
 * there already) and synced once; `engage serve`'s worker keeps it in step after. */
static int demo_crm(struct cli *c, struct store *st, const char *file, const char *mpath,
                    struct err *e)
{
    struct sync_source_spec spec = {
        .name = "crm", .kind = "sqlite", .dsn = file, .origin = SYNC_ORIGIN_CLI};
    struct errlist errs = {0};
    struct sync_report rep;
    json_t *existing;
    char *mapping;
    double t0;
    int rc;

    rc = sync_source_get_json(st, "crm", &existing, e);
    json_decref(existing);
    if (rc != 0) {
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
        int revoked;
        rc = auth_apikey_revoke_named(st, "demo-admin", c->actor, "", &revoked, &e);
        if (rc == 0)
            rc = auth_apikey_create(st, "demo-admin", ROLE_ADMIN, c->actor, "", &key, &id, &e);
        if (rc == 0)
            rc = demo_segments(c, st, &e);
        if (rc == 0)
            rc = demo_campaign(c, st, &e);
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

const struct cli_cmd cli_cmd_serve = {
    "serve",
    cmd_serve,
    " listen= ",
    0,
    NULL,
    CLI_SERVER,
    "  serve                 run the HTTP server and background workers\n",
    "usage: engage serve [--listen ADDR:PORT]\n\n"
    "Runs the HTTP API (/api/v1, /healthz, /readyz, /metrics).\n"
    "  --listen ADDR:PORT  where to listen (env ENGAGE_LISTEN; default 127.0.0.1:8080;\n"
    "                      port 0 picks a free port)\n"
    "Prints 'engage: listening on URL' on stdout once ready; logs are JSON lines on\n"
    "stderr. SIGINT or SIGTERM stops it cleanly.\n",
};

const struct cli_cmd cli_cmd_demo = {
    "demo",
    cmd_demo,
    " contacts= seed= no-serve listen= crm= mapping= ",
    0,
    NULL,
    CLI_SERVER,
    "  demo                  load a demo data set, create an admin key, then serve\n",
    "usage: engage demo [--contacts N] [--seed S] [--no-serve] [--listen ADDR:PORT]\n"
    "                   [--crm FILE --mapping FILE]\n\n"
    "Writes a demo CRM data set (contacts with city, plan, signup date and LTV; orders,\n"
    "calls, WhatsApp messages, email opens, and a few invalid rows) under DATA/demo,\n"
    "imports it, creates an admin API key, prints the URL and the key, and serves.\n"
    "Running it again imports nothing twice.\n"
    "It also saves two segments, a template and a draft campaign to the first segment\n"
    "(sendable at once: with no [provider:...] configured, messages go to DATA/outbox/).\n"
    "Each run revokes the previous run's demo-admin key and creates a new one.\n"
    "  --contacts N        demo size (default 2000)\n"
    "  --seed S            generator seed (default 42)\n"
    "  --no-serve          stop after loading\n"
    "  --crm FILE          a CRM database in SQLite (make demo seeds demo/crm/'s) to add\n"
    "                      as sync source 'crm' and sync; serve keeps it in step\n"
    "  --mapping FILE      its mapping (demo/crm/mapping.json)\n"
    "  --listen ADDR:PORT  where to serve (default [server] listen)\n",
};
