/* cli/serve.c -- engage serve and engage demo.
 *
 * DESIGN: serve() starts the store pool, the workers and the HTTP server, prints the
 * URL once ready and waits for SIGINT or SIGTERM; demo loads a generated data set
 * (and, with --crm, a demo CRM as a sync source) before serving it, and once it serves,
 * a thread sends the demo campaign through the real dispatcher and makes its engagement
 * (demo_drive_main). */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "auth/auth.h"
#include "core/secret.h"
#include "campaign/campaign.h"
#include "delivery/delivery.h"
#include "demo/demo.h"
#include "http/http.h"
#include "ingest/ingest.h"
#include "store/store.h"
#include "cli.h"

/* ---- the demo's sent campaign ---------------------------------------------------------- */

#define DEMO_CAMPAIGN "Thank repeat buyers in Pune"

/* What the demo's driver thread needs of the running server. */
struct demo_drive {
    struct app *app;
    pthread_t tid;
    _Atomic int stop;
};

static int find_demo_campaign(void *ctx, const struct store_campaign *c)
{
    struct store_campaign *out = ctx;

    if (strcmp(c->name, DEMO_CAMPAIGN) == 0 && strcmp(c->state, "draft") == 0)
        out->id = c->id;
    return 0;
}

static int run_state(void *ctx, const struct store_run *r)
{
    snprintf(ctx, 16, "%s", r->state);
    return 0;
}

/* A deterministic draw in [0, 1) for message (run, contact) and what. */
static double draw(int64_t run, int64_t contact, int what)
{
    uint64_t k[3] = {(uint64_t)run, (uint64_t)contact, (uint64_t)what};

    return (double)(hash64(k, sizeof k) >> 11) / 9007199254740992.0;
}

struct demo_msgs {
    int64_t *contact;
    size_t n, cap;
};

static int keep_sent(void *ctx, const struct store_msg *m)
{
    struct demo_msgs *l = ctx;

    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->contact = xrealloc(l->contact, l->cap * sizeof *l->contact);
    }
    l->contact[l->n++] = m->contact_id;
    return 0;
}

static struct store *demo_store(void *ctx)
{
    return ctx;
}

/* A click on the message's first link, as a mail client follows it. */
static int demo_click(struct tracker *t, struct store *st, const char *token, struct err *e)
{
    struct buf url;
    int recorded, rc;

    buf_init(&url);
    rc = tracker_click(t, demo_store, st, token, "Mozilla/5.0 (demo mail client)", &url, &recorded,
                       e);
    buf_release(&url);
    return rc;
}

/* What a provider would report of the demo's messages (applied as source "demo"), opens
 * and clicks through the real tracking path (the journal), and orders after some of the
 * clicks (real contact events, which the conversion goal counts). */
static int demo_engagement(struct demo_drive *d, struct store *st, int64_t run, struct demo_msgs *l,
                           struct err *e)
{
    const struct send_env *env = d->app->send;
    struct ingest in;
    struct engagement *g;
    size_t i;
    int rc = 0, orders = 0;

    ingest_init(&in, st, d->app->cfg);
    g = engagement_new(&in);
    /* the provider's word: delivered, or bounced; a few complaints */
    for (i = 0; rc == 0 && i < l->n; i++) {
        int64_t c = l->contact[i], now = clock_now_ms();
        enum engagement_outcome out;
        struct mev ev = {.at_ms = now};
        char sid[64], mid[48];
        if (i % 200 == 0)
            rc = ingest_begin(&in, e);
        store_message_id(run, c, mid, sizeof mid);
        ev.message_id = mid;
        ev.source_id = sid;
        ev.kind = draw(run, c, 0) < 0.015 ? MEV_BOUNCED_HARD : MEV_DELIVERED;
        ev.reason = ev.kind == MEV_BOUNCED_HARD ? "550 5.1.1 user unknown (demo)" : NULL;
        snprintf(sid, sizeof sid, "demo-%s-%d", mid, (int)ev.kind);
        if (rc == 0)
            rc = engagement_apply(g, "demo", &ev, now, &out, e);
        if (rc == 0 && ev.kind == MEV_DELIVERED && draw(run, c, 1) < 0.004) {
            ev.kind = MEV_COMPLAINED;
            snprintf(sid, sizeof sid, "demo-%s-%d", mid, (int)ev.kind);
            rc = engagement_apply(g, "demo", &ev, now, &out, e);
        }
        if (rc || i % 200 == 199 || i + 1 == l->n)
            rc = engagement_finish(g, rc, e);
    }
    /* the recipients: opens and clicks as a mail client makes them, orders after some */
    for (i = 0; rc == 0 && i < l->n; i++) {
        int64_t c = l->contact[i], now = clock_now_ms();
        char tok[TOKEN_MAX];
        if (draw(run, c, 0) < 0.015) /* bounced */
            continue;
        if (draw(run, c, 2) < 0.46) {
            int opens = 1 + (int)(draw(run, c, 3) * 3);
            token_make(env->token_key, 'o', run, c, 0, tok);
            for (int k = 0; k < opens && rc == 0; k++)
                rc = tracker_open(d->app->tracker, tok,
                                  draw(run, c, 10 + k) < 0.1 ? "Mozilla/5.0"
                                                             : "Mozilla/5.0 (demo mail client)",
                                  e);
        }
        if (rc == 0 && draw(run, c, 4) < 0.12) {
            token_make(env->token_key, 'c', run, c, 0, tok);
            rc = demo_click(d->app->tracker, st, tok, e);
            if (rc == 0 && draw(run, c, 5) < 0.3 && orders < 100) {
                struct ingest_ctx cx = {.kind = SRC_API, .source = "demo", .received_at = now};
                struct store_contact sc;
                enum ingest_outcome io;
                char oid[64], when[32];
                json_t *rec = NULL;
                store_contact_init(&sc);
                if (store_contact_get(st, c, &sc, e) == 0 && sc.external_id) {
                    snprintf(oid, sizeof oid, "demo-order-%lld-%lld", (long long)run, (long long)c);
                    time_format_iso(now, when);
                    rec = json_pack("{s:s,s:s,s:s,s:{s:s,s:f,s:s,s:s}}", "external_id",
                                    sc.external_id, "event", "order_created", "event_id", oid,
                                    "properties", "order_id", oid, "amount",
                                    500 + (double)(int)(draw(run, c, 6) * 4500), "currency", "INR",
                                    "created_at", when);
                    rc = ingest_begin(&in, e);
                    if (rc == 0)
                        rc = ingest_event(&in, &cx, rec, &io, e);
                    if (rc == 0)
                        rc = ingest_commit(&in, e);
                    else
                        ingest_rollback(&in);
                    orders++;
                }
                if (rc == 0)
                    err_clear(e);
                json_decref(rec);
                store_contact_release(&sc);
            }
        }
    }
    engagement_free(g);
    ingest_release(&in);
    return rc;
}

/* Sends the demo campaign (a draft: the first demo run) once the server is up, waits for
 * its run to end, then makes its engagement. */
static void *demo_drive_main(void *arg)
{
    struct demo_drive *d = arg;
    struct store_campaign found = {0};
    struct demo_msgs l = {0};
    struct store *st = store_pool_get(d->app->pool);
    struct err e = {0};
    json_t *run = NULL;
    int64_t run_id = 0;
    char state[16] = "";
    int rc;

    rc = store_campaigns_list(st, 0, 0, find_demo_campaign, &found, &e);
    if (rc || found.id == 0)
        goto out;
    rc = campaign_send(d->app->send, st, found.id, "demo", "demo", &run, &e);
    if (rc)
        goto out;
    run_id = json_integer_value(json_object_get(run, "id"));
    dispatcher_wake(d->app->dispatcher);
    for (int i = 0; i < 1200 && !d->stop; i++) {
        if (store_run_get(st, run_id, run_state, state, &e) == 0 &&
            (strcmp(state, "completed") == 0 || strcmp(state, "failed") == 0 ||
             strcmp(state, "cancelled") == 0))
            break;
        usleep(100 * 1000);
    }
    if (d->stop || strcmp(state, "completed") != 0)
        goto out;
    rc = store_messages_list(st, run_id, MSG_SENT, 0, 0, keep_sent, &l, &e);
    if (rc == 0)
        rc = demo_engagement(d, st, run_id, &l, &e);
    if (rc == 0)
        log_info("demo",
                 "campaign \"%s\" sent (run %lld, %zu messages to DATA/outbox/) and "
                 "its engagement made: GET /api/v1/campaign-runs/%lld/funnel",
                 DEMO_CAMPAIGN, (long long)run_id, l.n, (long long)run_id);
out:
    if (rc)
        log_warn("demo", "the demo campaign's send: %s", e.msg);
    free(l.contact);
    json_decref(run);
    store_pool_put(d->app->pool, st);
    return NULL;
}

static int serve(struct cli *c, const char *banner_key)
{
    struct app app = {.cfg = &c->cfg, .location = c->data_dir, .version = ENGAGE_VERSION};
    struct demo_drive drive = {0};
    int driving = 0;
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
    drive.app = &app;
    if (banner_key && pthread_create(&drive.tid, NULL, demo_drive_main, &drive) == 0)
        driving = 1;
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
    drive.stop = 1;
    if (driving)
        pthread_join(drive.tid, NULL);
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

/* A template and a draft campaign (with a conversion goal) to the first demo segment,
 * which the demo sends once the server is up (to the outbox: the default provider when
 * none is configured); a second run finds their names taken. */
static int demo_campaign(struct cli *c, struct store *st, struct err *e)
{
    static const char *const tpl =
        "{\"name\":\"Thank you, repeat buyers\","
        "\"subject\":\"{{ first_name | default: \\\"Friend\\\" }}, a thank-you from {{ city }}\","
        "\"html\":\"<html><body><h1>Thank you, {{ first_name | default: \\\"friend\\\" }}!</h1>"
        "<p>You ordered twice this quarter. Here is 10% off your next order in {{ city }}.</p>"
        "<p><a href=\\\"https://shop.demo.example/offers?city={{ city }}\\\">See the offers</a></p>"
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
    body = json_pack("{s:s,s:I,s:I,s:{s:s,s:i,s:s}}", "name", DEMO_CAMPAIGN, "segment_id",
                     (json_int_t)seg, "template_id", (json_int_t)tid, "conversion", "event",
                     "order_created", "within_days", 7, "value_property", "amount");
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
    "It also saves two segments, a template and a campaign to the first segment, which\n"
    "it sends once the server is up (with no [provider:...] configured, messages go to\n"
    "DATA/outbox/), then makes its engagement: deliveries and bounces as a provider\n"
    "reports them, opens and clicks through its tracking links, orders it converts.\n"
    "Each run revokes the previous run's demo-admin key and creates a new one.\n"
    "  --contacts N        demo size (default 2000)\n"
    "  --seed S            generator seed (default 42)\n"
    "  --no-serve          stop after loading\n"
    "  --crm FILE          a CRM database in SQLite (make demo seeds demo/crm/'s) to add\n"
    "                      as sync source 'crm' and sync; serve keeps it in step\n"
    "  --mapping FILE      its mapping (demo/crm/mapping.json)\n"
    "  --listen ADDR:PORT  where to serve (default [server] listen)\n",
};
