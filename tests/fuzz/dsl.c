/* tests/fuzz/dsl.c -- libFuzzer: segment rules documents.
 *
 * A store with the shipped contracts, a few contacts and events (some with
 * properties) is made once; each input is parsed as JSON, validated and compiled
 * against it and, when valid, evaluated. Any input must give members or a clean
 * E_INVAL with its problems listed, never a crash or a leak. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "ingest/ingest.h"
#include "segment/segment.h"

static struct store *st;
static struct audience_index *ix;
static struct contract_set *cs;
static struct config cfg;
static struct segment_limits lim;

static void add(struct ingest *in, int is_event, const char *json)
{
    struct ingest_ctx cx = {
        .kind = SRC_API, .source = "api", .origin = "fuzz", .received_at = 1767225600000LL};
    enum ingest_outcome o;
    struct err e = {0};
    json_t *rec = json_loads(json, 0, NULL);

    if (rec == NULL || ingest_begin(in, &e) ||
        (is_event ? ingest_event(in, &cx, rec, &o, &e) : ingest_contact(in, &cx, rec, &o, &e)) ||
        ingest_commit(in, &e))
        abort();
    json_decref(rec);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct store_opts o = {.busy_timeout_ms = 2000, .migrate = 1};
    char dir[] = "/tmp/engage-fuzz-dsl-XXXXXX";
    struct ingest in;
    struct err e = {0};

    (void)argc;
    (void)argv;
    log_level_current = LOG_ERROR;
    if (mkdtemp(dir) == NULL)
        abort();
    config_defaults(&cfg, dir);
    segment_limits_from_config(&cfg, &lim);
    lim.threads = 1;
    if (store_open(&st, dir, &o, &e) || contracts_seed(st, NULL, &e))
        abort();
    ingest_init(&in, st, &cfg);
    add(&in, 0,
        "{\"external_id\":\"a\",\"email\":\"A@x.io\",\"attributes\":{\"city\":\"Pune\","
        "\"ltv\":10,\"vip\":true,\"nick\":\"ΣΊΣ\"}}");
    add(&in, 0,
        "{\"external_id\":\"b\",\"attributes\":{\"city\":\"\",\"signup_at\":\"2025-01-01\"}}");
    add(&in, 1,
        "{\"external_id\":\"a\",\"event\":\"app_open\",\"occurred_at\":\"2025-12-31\","
        "\"properties\":{\"screen\":\"home\",\"n\":3,\"ok\":false}}");
    add(&in, 1,
        "{\"external_id\":\"b\",\"event\":\"order_created\",\"properties\":{\"order_id\":"
        "\"o1\",\"amount\":5,\"currency\":\"INR\",\"created_at\":\"2025-12-30T10:00:00Z\"}}");
    ingest_release(&in);
    audience_index_new(&ix);
    if (audience_index_catch_up(ix, st, &e) || contract_set_load(st, NULL, &cs, &e))
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct segment_plan *plan = NULL;
    struct segment_result res = {0};
    struct errlist errs = {0};
    struct err e = {0};
    json_t *rules = json_loadb((const char *)data, size, 0, NULL);
    int rc;

    if (rules == NULL)
        return 0;
    rc = segment_compile(ix, st, cs, rules, &lim, &plan, &errs, &e);
    if (rc == 0) {
        json_decref(segment_plan_explain(plan));
        if (segment_eval(ix, plan, 1767225600000LL, &lim, &res, &e) != 0)
            abort();
        segment_result_release(&res);
    } else if (rc != E_INVAL || errs.n == 0) {
        abort(); /* a refusal must say why */
    }
    segment_plan_free(plan);
    json_decref(rules);
    return 0;
}
