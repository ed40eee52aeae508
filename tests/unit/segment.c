/* tests/unit/segment.c -- the segment engine: validation messages, case folding,
 * window edges, catch-up after writes. The randomized comparison against a
 * reference evaluator is tests/unit/segment_random.c. */
#include "ingest_fixture.h"
#include "segment/segment.h"

#define T0 1767225600000LL /* 2026-01-01T00:00:00Z */
#define DAY DAY_MS

struct sx {
    struct fx f;
    struct audience_index *ix;
    struct contract_set *cs;
    struct segment_limits lim;
};

static void sx_open(struct sx *s)
{
    fx_open(&s->f);
    audience_index_new(&s->ix);
    segment_limits_from_config(&s->f.cfg, &s->lim);
    s->cs = NULL;
}

static void sx_close(struct sx *s)
{
    contract_set_free(s->cs);
    audience_index_free(s->ix);
    fx_close(&s->f);
}

static int add_id(void *ctx, int64_t id, const char *xid)
{
    struct buf *b = ctx;

    (void)id;
    buf_printf(b, "%s%s", b->len ? "," : "", xid);
    return 0;
}

/* Members walked in pages of 1,000, as the API does: identifiers from the store unless a
 * rule loaded them into the index. */
struct paged {
    struct buf *out;
    int64_t last, n;
};

static int add_paged(void *ctx, int64_t id, const char *xid)
{
    struct paged *p = ctx;

    p->last = id;
    p->n++;
    return add_id(p->out, id, xid);
}

/* Members (in id order, comma-separated) of rules at now; "ERR" and the messages if invalid. */
static char *members(struct sx *s, int64_t now, const char *rules_json)
{
    struct segment_plan *p = NULL;
    struct segment_result r = {0};
    struct errlist errs = {0};
    struct buf out;
    json_error_t je;
    json_t *rules = json_loads(rules_json, 0, &je);
    int rc, i;

    cr_assert_not_null(rules, "bad test JSON: %s", je.text);
    buf_init(&out);
    cr_assert_eq(audience_index_catch_up(s->ix, s->f.st, &s->f.e), 0, "%s", s->f.e.msg);
    contract_set_free(s->cs);
    cr_assert_eq(contract_set_load(s->f.st, NULL, &s->cs, &s->f.e), 0, "%s", s->f.e.msg);
    rc = segment_compile(s->ix, s->f.st, s->cs, rules, &s->lim, &p, &errs, &s->f.e);
    if (rc == E_INVAL) {
        buf_adds(&out, "ERR");
        for (i = 0; i < errs.n; i++)
            buf_printf(&out, "|%s: %s", errs.items[i].path, errs.items[i].msg);
        err_clear(&s->f.e);
    } else {
        cr_assert_eq(rc, 0, "%s", s->f.e.msg);
        cr_assert_eq(segment_eval(s->ix, p, now, &s->lim, &r, &s->f.e), 0, "%s", s->f.e.msg);
        struct paged pg = {&out, 0, 0};
        do {
            pg.n = 0;
            cr_assert_eq(
                segment_members(s->ix, s->f.st, &r, pg.last, 1000, add_paged, &pg, &s->f.e), 0,
                "%s", s->f.e.msg);
        } while (pg.n == 1000);
        segment_result_release(&r);
    }
    segment_plan_free(p);
    json_decref(rules);
    if (out.p == NULL)
        buf_adds(&out, "");
    return buf_take(&out);
}

static void expect(struct sx *s, int64_t now, const char *rules, const char *want)
{
    char *got = members(s, now, rules);
    cr_expect_str_eq(got, want, "rules %s: got [%s], want [%s]", rules, got, want);
    free(got);
}

static void contact(struct sx *s, const char *json)
{
    cr_assert_neq(fx_ingest(&s->f, SRC_API, 0, json), INGEST_REJECTED, "%s: %s", json,
                  s->f.in.last_msg);
}

static void event(struct sx *s, const char *xid, const char *name, int64_t at, const char *props)
{
    char iso[32], *text;
    json_t *rec, *p = json_loads(props, 0, NULL);

    cr_assert_not_null(p, "bad test JSON %s", props);
    time_format_iso(at, iso);
    if (strcmp(name, "order_created") == 0) /* its contract requires created_at */
        json_object_set_new(p, "created_at", json_string(iso));
    rec = json_pack("{s:s,s:s,s:s,s:o}", "external_id", xid, "event", name, "occurred_at", iso,
                    "properties", p);
    text = json_dumps(rec, JSON_COMPACT);
    cr_assert_neq(fx_ingest(&s->f, SRC_API, 1, text), INGEST_REJECTED, "%s: %s", text,
                  s->f.in.last_msg);
    free(text);
    json_decref(rec);
}

UTEST(segment, casefold_is_simple_folding)
{
    struct buf b;

    buf_init(&b);
    casefold_utf8("ΣΑΣ σας İstanbul STRASSE Straße ǅ ＡＢ K",
                  strlen("ΣΑΣ σας İstanbul STRASSE Straße ǅ ＡＢ K"), &b);
    /* Σ→σ, final ς→σ; İ has only a full/Turkic fold, so it stays; ß stays (full fold
     * only); ǅ→ǆ; fullwidth letters fold; KELVIN SIGN K→k. */
    cr_expect(strstr(b.p, "σασ σασ") == b.p, "got %s", b.p);
    cr_expect(strstr(b.p, "İstanbul") != NULL, "İ has no simple fold: %s", b.p);
    cr_expect(strstr(b.p, "straße") != NULL, "%s", b.p);
    cr_expect(strstr(b.p, "ǆ") != NULL, "%s", b.p);
    cr_expect(strstr(b.p, "ａｂ") != NULL, "%s", b.p);
    cr_expect(b.p[b.len - 1] == 'k', "%s", b.p);
    cr_expect_eq(casefold_cp(0x212A), 'k');
    cr_expect_eq(casefold_cp('Q'), 'q');
    cr_expect_eq(casefold_cp(0x1E9E), 0xDF); /* ẞ → ß */
    buf_release(&b);
}

UTEST(segment, validation_reports_every_problem_with_pointers)
{
    struct sx s;
    char *got;

    sx_open(&s);
    contact(&s, "{\"external_id\":\"a\",\"attributes\":{\"city\":\"Pune\",\"ltv\":10}}");
    got = members(
        &s, T0,
        "{\"op\":\"AND\",\"rules\":["
        "{\"type\":\"attribute\",\"field\":\"cty\",\"op\":\"eq\",\"value\":\"Pune\"},"
        "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\","
        "\"within_days\":0},"
        "{\"type\":\"attribute\",\"field\":\"ltv\",\"op\":\"contains\",\"value\":\"1\"},"
        "{\"type\":\"behavior\",\"event\":\"order_craeted\",\"op\":\"did_not_event\","
        "\"within_days\":3,\"count_gte\":2},"
        "{\"op\":\"OR\",\"rules\":[]},"
        "{\"type\":\"attribute\",\"field\":\"signup_at\",\"op\":\"gte\",\"value\":\"soon\"},"
        "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"in\",\"value\":[\"x\",2]}"
        "]}");
    cr_expect(strstr(got, "|/rules/0/field: unknown field 'cty'; did you mean 'city'?") != NULL,
              "%s", got);
    cr_expect(strstr(got, "|/rules/1/within_days: must be an integer from 1 to 730") != NULL, "%s",
              got);
    cr_expect(strstr(got, "|/rules/2/op: contains applies to strings only: 'ltv' is a number") !=
                  NULL,
              "%s", got);
    cr_expect(strstr(got, "|/rules/3/event: unknown event 'order_craeted'; did you mean "
                          "'order_created'?") != NULL,
              "%s", got);
    cr_expect(strstr(got, "|/rules/3/count_gte: did_not_event takes no count_gte") != NULL, "%s",
              got);
    cr_expect(strstr(got, "|/rules/4/rules: must be a non-empty array") != NULL, "%s", got);
    cr_expect(strstr(got, "|/rules/5/value: must be an ISO-8601 date") != NULL, "%s", got);
    cr_expect(strstr(got, "|/rules/6/value/1: must be a string") != NULL, "%s", got);
    free(got);
    sx_close(&s);
}

/* A rule that lost its "type" gets that one problem, not the four a group would find. */
UTEST(segment, rule_without_type)
{
    struct sx s;
    char *got;

    sx_open(&s);
    contact(&s, "{\"external_id\":\"a\",\"attributes\":{\"city\":\"Pune\"}}");
    got = members(&s, T0,
                  "{\"op\":\"AND\",\"rules\":["
                  "{\"field\":\"city\",\"op\":\"eq\",\"value\":\"Pune\"},"
                  "{\"event\":\"order_created\",\"op\":\"did_event\",\"within_days\":3},"
                  "{\"op\":\"AND\"}]}");
    cr_expect_str_eq(got,
                     "ERR|/rules/0/type: is required: attribute (with field, op, value) or "
                     "behavior (with event, op, within_days)"
                     "|/rules/1/type: is required: attribute (with field, op, value) or "
                     "behavior (with event, op, within_days)"
                     "|/rules/2/rules: must be a non-empty array of rules and groups",
                     "%s", got);
    free(got);
    sx_close(&s);
}

UTEST(segment, guardrails)
{
    struct sx s;
    struct buf deep;
    char *got;
    int i;

    sx_open(&s);
    contact(&s, "{\"external_id\":\"a\",\"attributes\":{\"city\":\"Pune\"}}");
    buf_init(&deep);
    for (i = 0; i < 6; i++)
        buf_adds(&deep, "{\"op\":\"AND\",\"rules\":[");
    buf_adds(&deep, "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"eq\",\"value\":\"x\"}");
    for (i = 0; i < 6; i++)
        buf_adds(&deep, "]}");
    got = members(&s, T0, deep.p);
    cr_expect(strstr(got, "/rules/0/rules/0/rules/0/rules/0/rules/0: groups nest at most 5 deep") !=
                  NULL,
              "%s", got);
    free(got);
    buf_reset(&deep);
    buf_adds(&deep, "{\"op\":\"OR\",\"rules\":[");
    for (i = 0; i < 51; i++)
        buf_printf(&deep,
                   "%s{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"eq\",\"value\":\"x\"}",
                   i ? "," : "");
    buf_adds(&deep, "]}");
    got = members(&s, T0, deep.p);
    cr_expect(strstr(got, "|/rules/50: is rule 51; at most 50 rules are allowed") != NULL, "%s",
              got);
    free(got);
    expect(&s, T0,
           "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\","
           "\"within_days\":731}",
           "ERR|/within_days: must be an integer from 1 to 730");
    buf_release(&deep);
    sx_close(&s);
}

UTEST(segment, attribute_semantics)
{
    struct sx s;

    sx_open(&s);
    contact(&s, "{\"external_id\":\"a\",\"email\":\"a@x.io\",\"attributes\":{\"city\":\"Pune\","
                "\"ltv\":10,\"vip\":true,\"nick\":\"\"}}");
    contact(&s, "{\"external_id\":\"b\",\"attributes\":{\"city\":\"PUNE west\",\"ltv\":10.5,"
                "\"vip\":false,\"signup_at\":\"2025-12-31T23:59:59Z\"}}");
    contact(&s, "{\"external_id\":\"c\",\"attributes\":{\"ltv\":-1,\"nick\":\"Σίσυφος\"}}");
    expect(&s, T0, "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"eq\",\"value\":\"Pune\"}",
           "a");
    /* missing never matches eq/contains/gte/lte, always matches neq */
    expect(&s, T0, "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"neq\",\"value\":\"Pune\"}",
           "b,c");
    expect(&s, T0,
           "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"contains\",\"value\":\"pUnE\"}",
           "a,b");
    expect(&s, T0, "{\"type\":\"attribute\",\"field\":\"ltv\",\"op\":\"gte\",\"value\":10}", "a,b");
    expect(&s, T0, "{\"type\":\"attribute\",\"field\":\"ltv\",\"op\":\"in\",\"value\":[10.5,-1]}",
           "b,c");
    expect(&s, T0, "{\"type\":\"attribute\",\"field\":\"vip\",\"op\":\"neq\",\"value\":true}",
           "b,c");
    /* an empty string is a value */
    expect(&s, T0, "{\"type\":\"attribute\",\"field\":\"nick\",\"op\":\"eq\",\"value\":\"\"}", "a");
    expect(&s, T0,
           "{\"type\":\"attribute\",\"field\":\"nick\",\"op\":\"contains\",\"value\":\"ΣΊΣΥΦΟΣ\"}",
           "c");
    expect(
        &s, T0,
        "{\"type\":\"attribute\",\"field\":\"signup_at\",\"op\":\"lte\",\"value\":\"2026-01-01\"}",
        "b");
    expect(&s, T0,
           "{\"type\":\"attribute\",\"field\":\"email\",\"op\":\"neq\",\"value\":\"a@x.io\"}",
           "b,c");
    expect(&s, T0,
           "{\"type\":\"attribute\",\"field\":\"email_consent\",\"op\":\"eq\",\"value\":"
           "\"subscribed\"}",
           "a,b,c");
    expect(&s, T0,
           "{\"type\":\"attribute\",\"field\":\"external_id\",\"op\":\"gte\",\"value\":\"b\"}",
           "b,c");
    sx_close(&s);
}

UTEST(segment, window_edges_and_counts)
{
    struct sx s;
    char props[128];

    sx_open(&s);
    contact(&s, "{\"external_id\":\"edge_start\"}");
    contact(&s, "{\"external_id\":\"edge_now\"}");
    contact(&s, "{\"external_id\":\"outside\"}");
    contact(&s, "{\"external_id\":\"future\"}");
    contact(&s, "{\"external_id\":\"twice\"}");
#define ORDER(x, at, id)                                                                           \
    snprintf(props, sizeof props, "{\"order_id\":\"%s\",\"amount\":5,\"currency\":\"EUR\"}", id);  \
    event(&s, x, "order_created", at, props)
    ORDER("edge_start", T0 - 30 * DAY, "1");
    ORDER("edge_now", T0, "2");
    ORDER("outside", T0 - 30 * DAY - 1, "3");
    ORDER("future", T0 + 1, "4");
    ORDER("twice", T0 - DAY, "5");
    ORDER("twice", T0 - 2 * DAY, "6");
    expect(&s, T0,
           "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\","
           "\"within_days\":30}",
           "edge_start,edge_now,twice");
    expect(&s, T0,
           "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\","
           "\"within_days\":30,\"count_gte\":2}",
           "twice");
    expect(&s, T0,
           "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_not_event\","
           "\"within_days\":30}",
           "outside,future");
    expect(&s, T0,
           "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\","
           "\"within_days\":30,\"where\":[{\"field\":\"order_id\",\"op\":\"in\",\"value\":[\"1\","
           "\"6\"]}]}",
           "edge_start,twice");
    /* declared in the contract, no events yet: did_not_event matches everyone */
    expect(&s, T0,
           "{\"type\":\"behavior\",\"event\":\"call_logged\",\"op\":\"did_not_event\","
           "\"within_days\":30}",
           "edge_start,edge_now,outside,future,twice");
#undef ORDER
    sx_close(&s);
}

UTEST(segment, catch_up_sees_later_writes)
{
    struct sx s;
    const char *r =
        "{\"op\":\"AND\",\"rules\":[{\"type\":\"attribute\",\"field\":\"plan\","
        "\"op\":\"eq\",\"value\":\"pro\"},{\"type\":\"behavior\",\"event\":\"app_open\","
        "\"op\":\"did_event\",\"within_days\":7,\"where\":[{\"field\":\"screen\","
        "\"op\":\"eq\",\"value\":\"home\"}]}]}";
    struct ingest_ctx cx = {.kind = SRC_SYNC, .source = "sync:crm", .origin = "t", .owns_rows = 1};
    struct store_contact k;
    int deleted;

    sx_open(&s);
    contact(&s, "{\"external_id\":\"a\",\"attributes\":{\"plan\":\"pro\"}}");
    contact(&s, "{\"external_id\":\"b\",\"attributes\":{\"plan\":\"free\"}}");
    event(&s, "a", "app_open", T0 - DAY, "{\"screen\":\"home\"}");
    event(&s, "b", "app_open", T0 - DAY, "{\"screen\":\"home\"}");
    expect(&s, T0, r, "a");
    /* b upgrades; a's only event is now out of the window for where (another screen) */
    contact(&s, "{\"external_id\":\"b\",\"attributes\":{\"plan\":\"pro\"}}");
    expect(&s, T0, r, "a,b");
    /* an owned event, later rewritten and then deleted by its source */
    contact(&s, "{\"external_id\":\"c\",\"attributes\":{\"plan\":\"pro\"}}");
    cx.received_at = T0;
    {
        json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:{s:s}}", "external_id", "c", "event",
                                "app_open", "event_id", "crm-1", "occurred_at",
                                "2025-12-31T00:00:00Z", "properties", "screen", "home");
        enum ingest_outcome o;
        cr_assert_eq(ingest_begin(&s.f.in, &s.f.e), 0);
        cr_assert_eq(ingest_event(&s.f.in, &cx, rec, &o, &s.f.e), 0, "%s", s.f.e.msg);
        cr_assert_eq(ingest_commit(&s.f.in, &s.f.e), 0);
        expect(&s, T0, r, "a,b,c");
        json_object_set_new(json_object_get(rec, "properties"), "screen", json_string("cart"));
        cr_assert_eq(ingest_begin(&s.f.in, &s.f.e), 0);
        cr_assert_eq(ingest_event(&s.f.in, &cx, rec, &o, &s.f.e), 0, "%s", s.f.e.msg);
        cr_assert_eq(ingest_commit(&s.f.in, &s.f.e), 0);
        cr_expect_eq(o, INGEST_UPDATED);
        expect(&s, T0, r, "a,b");
        json_object_set_new(json_object_get(rec, "properties"), "screen", json_string("home"));
        cr_assert_eq(ingest_begin(&s.f.in, &s.f.e), 0);
        cr_assert_eq(ingest_event(&s.f.in, &cx, rec, &o, &s.f.e), 0, "%s", s.f.e.msg);
        cr_assert_eq(ingest_commit(&s.f.in, &s.f.e), 0);
        expect(&s, T0, r, "a,b,c");
        cr_assert_eq(ingest_begin(&s.f.in, &s.f.e), 0);
        cr_assert_eq(ingest_event_delete(&s.f.in, &cx, "crm-1", &deleted, &s.f.e), 0);
        cr_assert_eq(ingest_commit(&s.f.in, &s.f.e), 0);
        cr_expect_eq(deleted, 1);
        expect(&s, T0, r, "a,b");
        json_decref(rec);
    }
    /* a deleted contact leaves every audience */
    store_contact_init(&k);
    cr_assert_eq(store_contact_get_by_xid(s.f.st, "a", &k, &s.f.e), 0);
    cr_assert_eq(store_begin(s.f.st, &s.f.e), 0);
    k.deleted = 1;
    cr_assert_eq(store_contact_update(s.f.st, &k, &s.f.e), 0);
    cr_assert_eq(store_commit(s.f.st, &s.f.e), 0);
    store_contact_release(&k);
    expect(&s, T0, r, "b");
    sx_close(&s);
}

UTEST(segment, anonymous_events_follow_identify)
{
    struct sx s;
    struct ingest_ctx cx = {.kind = SRC_SDK, .source = "sdk", .origin = "t"};
    const char *r = "{\"type\":\"behavior\",\"event\":\"page_viewed\",\"op\":\"did_event\","
                    "\"within_days\":7}";

    sx_open(&s);
    fx_ingest(&s.f, SRC_SDK, 1,
              "{\"anonymous_id\":\"anon-1\",\"event\":\"page_viewed\","
              "\"occurred_at\":\"2025-12-31T00:00:00Z\",\"properties\":{}}");
    contact(&s, "{\"external_id\":\"u1\"}");
    expect(&s, T0, r, ""); /* the anonymous contact is no member */
    cr_assert_eq(ingest_begin(&s.f.in, &s.f.e), 0);
    cr_assert_eq(ingest_link_anonymous(&s.f.in, &cx, "anon-1", "u1", &s.f.e), 0, "%s", s.f.e.msg);
    cr_assert_eq(ingest_commit(&s.f.in, &s.f.e), 0);
    expect(&s, T0, r, "u1");
    sx_close(&s);
}

UTEST(segment, deadline_gives_no_result)
{
    struct sx s;
    struct segment_plan *p = NULL;
    struct segment_result r = {0};
    struct errlist errs = {0};
    json_t *rules = json_pack("{s:s,s:s,s:s,s:s}", "type", "attribute", "field", "external_id",
                              "op", "neq", "value", "x");

    sx_open(&s);
    contact(&s, "{\"external_id\":\"a\"}");
    cr_assert_eq(audience_index_catch_up(s.ix, s.f.st, &s.f.e), 0);
    cr_assert_eq(segment_compile(s.ix, s.f.st, NULL, rules, &s.lim, &p, &errs, &s.f.e), 0);
    s.lim.timeout_ms = -1; /* already passed */
    cr_expect_eq(segment_eval(s.ix, p, T0, &s.lim, &r, &s.f.e), E_BUSY);
    cr_expect_null(r.bits);
    segment_plan_free(p);
    json_decref(rules);
    sx_close(&s);
}

/* Found in review: a contract that changes an attribute's type makes the index reload;
 * with rows rewritten since the last merge that once computed a negative count. */
UTEST(segment, reload_after_a_type_change_with_rewritten_rows)
{
    struct sx s;
    struct segment_plan *old = NULL;
    struct segment_result r = {0};
    struct ingest_ctx cx = {.kind = SRC_SYNC, .source = "sync:crm", .origin = "t", .owns_rows = 1};
    struct errlist errs = {0};
    enum ingest_outcome o;
    int version, unchanged;
    json_t *rec;
    char *contract;
    size_t i;

    sx_open(&s);
    cx.received_at = T0;
    contact(&s, "{\"external_id\":\"a\",\"attributes\":{\"score\":5}}");
    rec =
        json_pack("{s:s,s:s,s:s,s:s,s:{s:s}}", "external_id", "a", "event", "app_open", "event_id",
                  "crm-1", "occurred_at", "2025-12-31T00:00:00Z", "properties", "screen", "home");
    cr_assert_eq(ingest_begin(&s.f.in, &s.f.e), 0);
    cr_assert_eq(ingest_event(&s.f.in, &cx, rec, &o, &s.f.e), 0);
    cr_assert_eq(ingest_commit(&s.f.in, &s.f.e), 0);
    expect(&s, T0, "{\"type\":\"attribute\",\"field\":\"score\",\"op\":\"eq\",\"value\":5}", "a");
    json_object_set_new(json_object_get(rec, "properties"), "screen", json_string("cart"));
    cr_assert_eq(ingest_begin(&s.f.in, &s.f.e), 0);
    cr_assert_eq(ingest_event(&s.f.in, &cx, rec, &o, &s.f.e), 0);
    cr_assert_eq(ingest_commit(&s.f.in, &s.f.e), 0);
    expect(&s, T0, "{\"type\":\"attribute\",\"field\":\"score\",\"op\":\"eq\",\"value\":5}", "a");
    /* Declare score a string: the index starts again from the store. */
    for (i = 0; i < (size_t)shipped_contracts_count; i++)
        if (strcmp(shipped_contracts[i].file, "contact.json") == 0)
            break;
    cr_assert_lt(i, (size_t)shipped_contracts_count);
    contract = xstrdup(shipped_contracts[i].text);
    {
        char *at = strstr(contract, "\"attributes\": {");
        struct buf b;
        cr_assert_not_null(at);
        buf_init(&b);
        buf_add(&b, contract, (size_t)(at - contract) + strlen("\"attributes\": {"));
        buf_adds(&b, "\n    \"score\": {\"type\": \"string\"},");
        buf_adds(&b, at + strlen("\"attributes\": {"));
        free(contract);
        contract = buf_take(&b);
    }
    { /* a plan compiled before the reset, with a rule that loads the email column */
        json_t *rules = json_loads("{\"type\":\"attribute\",\"field\":\"email\",\"op\":"
                                   "\"neq\",\"value\":\"x\"}",
                                   0, NULL);
        cr_assert_eq(audience_index_catch_up(s.ix, s.f.st, &s.f.e), 0);
        cr_assert_eq(segment_compile(s.ix, s.f.st, s.cs, rules, &s.lim, &old, &errs, &s.f.e), 0);
        json_decref(rules);
    }
    cr_assert_eq(contract_put(s.f.st, "contact", contract, strlen(contract), "test", "", &version,
                              &unchanged, &errs, &s.f.e),
                 0, "%s", s.f.e.msg);
    free(contract);
    cr_assert_eq(audience_index_catch_up(s.ix, s.f.st, &s.f.e), 0, "%s", s.f.e.msg);
    cr_assert_eq(segment_eval(s.ix, old, T0, &s.lim, &r, &s.f.e), E_INTERNAL,
                 "a plan from before the reload is refused, not run on columns gone since");
    err_clear(&s.f.e);
    segment_plan_free(old);
    expect(&s, T0,
           "{\"type\":\"behavior\",\"event\":\"app_open\",\"op\":\"did_event\",\"within_days\":7,"
           "\"where\":[{\"field\":\"screen\",\"op\":\"eq\",\"value\":\"cart\"}]}",
           "a");
    json_decref(rec);
    sx_close(&s);
}

/* Found in review: an e-mail cleared and set again kept the fold of nothing. */
UTEST(segment, contains_sees_an_email_set_again)
{
    struct sx s;
    struct store_contact k;
    const char *r =
        "{\"type\":\"attribute\",\"field\":\"email\",\"op\":\"contains\",\"value\":\"BOB@\"}";

    sx_open(&s);
    contact(&s, "{\"external_id\":\"a\",\"email\":\"bob@x.io\"}");
    /* Loaded without folds (no contains yet); the folds are made while the e-mail is unset. */
    expect(&s, T0,
           "{\"type\":\"attribute\",\"field\":\"email\",\"op\":\"eq\",\"value\":\"bob@x.io\"}",
           "a");
    store_contact_init(&k);
    cr_assert_eq(store_contact_get_by_xid(s.f.st, "a", &k, &s.f.e), 0);
    free(k.email);
    k.email = NULL;
    cr_assert_eq(store_begin(s.f.st, &s.f.e), 0);
    cr_assert_eq(store_contact_update(s.f.st, &k, &s.f.e), 0);
    cr_assert_eq(store_commit(s.f.st, &s.f.e), 0);
    expect(&s, T0, r, "");
    k.email = xstrdup("bob@x.io");
    cr_assert_eq(store_begin(s.f.st, &s.f.e), 0);
    cr_assert_eq(store_contact_update(s.f.st, &k, &s.f.e), 0);
    cr_assert_eq(store_commit(s.f.st, &s.f.e), 0);
    expect(&s, T0, r, "a");
    store_contact_release(&k);
    sx_close(&s);
}

/* Contact and event records (JSON arrays, either may be NULL) stored in one transaction;
 * the arrays are consumed. */
static void store_all(struct sx *s, json_t *contacts, json_t *events)
{
    struct ingest_ctx cx = {.kind = SRC_API, .source = "api", .origin = "test", .received_at = T0};
    enum ingest_outcome o;
    size_t i;

    cr_assert_eq(ingest_begin(&s->f.in, &s->f.e), 0, "%s", s->f.e.msg);
    for (i = 0; i < json_array_size(contacts); i++)
        cr_assert_eq(ingest_contact(&s->f.in, &cx, json_array_get(contacts, i), &o, &s->f.e), 0,
                     "%s", s->f.e.msg);
    for (i = 0; i < json_array_size(events); i++)
        cr_assert_eq(ingest_event(&s->f.in, &cx, json_array_get(events, i), &o, &s->f.e), 0, "%s",
                     s->f.e.msg);
    cr_assert_eq(ingest_commit(&s->f.in, &s->f.e), 0, "%s", s->f.e.msg);
    json_decref(contacts);
    json_decref(events);
}

/* Contacts c<from>..c<to - 1> with city "city-<i>", each with an event "visit" whose
 * "page" property is "p<i>". */
static void bulk(struct sx *s, int from, int to)
{
    json_t *contacts = json_array(), *events = json_array();
    int i;

    for (i = from; i < to; i++) {
        char xid[32], city[32], page[32], iso[32];
        snprintf(xid, sizeof xid, "c%d", i);
        snprintf(city, sizeof city, "city-%d", i);
        snprintf(page, sizeof page, "p%d", i);
        time_format_iso(T0 + i, iso);
        json_array_append_new(
            contacts, json_pack("{s:s,s:{s:s}}", "external_id", xid, "attributes", "city", city));
        json_array_append_new(events, json_pack("{s:s,s:s,s:s,s:s,s:{s:s}}", "external_id", xid,
                                                "event", "visit", "event_id", xid, "occurred_at",
                                                iso, "properties", "page", page));
    }
    store_all(s, contacts, events);
}

UTEST(segment, dictionary_codes_widen_as_values_grow)
{
    struct sx s;
    const int64_t now = T0 + 10 * DAY;
    const char *page = "{\"type\":\"behavior\",\"event\":\"visit\",\"op\":\"did_event\","
                       "\"within_days\":30,\"where\":[{\"field\":\"page\",\"op\":\"eq\","
                       "\"value\":\"%s\"}]}";
    char rules[512];

    sx_open(&s);
    /* Codes of one byte (200 values), then two (the index catches up to 300 values,
     * the earlier codes kept), then four (66,000): each value still finds its contact. */
    bulk(&s, 0, 200);
    expect(&s, now,
           "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"eq\",\"value\":\"city-7\"}", "c7");
    snprintf(rules, sizeof rules, page, "p199");
    expect(&s, now, rules, "c199"); /* the property column is loaded: one byte a code */
    audience_index_set_merge_min(s.ix, 1000000); /* new events stay pending a while */
    bulk(&s, 200, 300);
    expect(&s, now,
           "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"in\",\"value\":[\"city-5\",\"city-"
           "299\"]}",
           "c5,c299");
    snprintf(rules, sizeof rules, page, "p298");
    expect(&s, now, rules, "c298"); /* a pending entry, its column wider than the loaded one */
    snprintf(rules, sizeof rules, page, "p3");
    expect(&s, now, rules, "c3");
    audience_index_set_merge_min(s.ix, 0); /* merged: the codes of both columns kept */
    bulk(&s, 300, 66000);
    expect(&s, now,
           "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"eq\",\"value\":\"city-65999\"}",
           "c65999");
    expect(&s, now,
           "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"eq\",\"value\":\"city-250\"}",
           "c250");
    expect(&s, now,
           "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"eq\",\"value\":\"city-0\"}", "c0");
    snprintf(rules, sizeof rules, page, "p298");
    expect(&s, now, rules, "c298");
    snprintf(rules, sizeof rules, page, "p65432");
    expect(&s, now, rules, "c65432");
    snprintf(rules, sizeof rules, page, "p12");
    expect(&s, now, rules, "c12");
    sx_close(&s);
}

/* n "tick" events of contact xid, a second apart from at, in one transaction. */
static void ticks(struct sx *s, const char *xid, int n, int64_t at)
{
    json_t *events = json_array();
    int i;

    for (i = 0; i < n; i++) {
        char iso[32], id[64];
        time_format_iso(at + i * 1000LL, iso);
        snprintf(id, sizeof id, "%s-%lld-%d", xid, (long long)at, i);
        json_array_append_new(events,
                              json_pack("{s:s,s:s,s:s,s:s,s:{}}", "external_id", xid, "event",
                                        "tick", "event_id", id, "occurred_at", iso, "properties"));
    }
    store_all(s, NULL, events);
}

UTEST(segment, a_contact_with_more_events_than_two_byte_offsets_hold)
{
    struct sx s;
    const int64_t now = T0 + 10 * DAY;
    const char *tick = "{\"type\":\"behavior\",\"event\":\"tick\",\"op\":\"did_event\","
                       "\"within_days\":30,\"count_gte\":%d}";
    char rules[256];

    sx_open(&s);
    contact(&s, "{\"external_id\":\"a\"}");
    contact(&s, "{\"external_id\":\"heavy\"}");
    ticks(&s, "a", 2, T0);
    ticks(&s, "heavy", 70000, T0);          /* its block of contacts needs 4-byte offsets */
    contact(&s, "{\"external_id\":\"b\"}"); /* after it, in the same block */
    ticks(&s, "b", 3, T0);
    snprintf(rules, sizeof rules, tick, 70000);
    expect(&s, now, rules, "heavy");
    snprintf(rules, sizeof rules, tick, 70001);
    expect(&s, now, rules, "");
    snprintf(rules, sizeof rules, tick, 2);
    expect(&s, now, rules, "a,heavy,b");
    snprintf(rules, sizeof rules, tick, 3);
    expect(&s, now, rules, "heavy,b");
    /* Contacts added after the wide block, with and without events, merged again. */
    contact(&s, "{\"external_id\":\"c\"}");
    contact(&s, "{\"external_id\":\"d\"}");
    audience_index_set_merge_min(s.ix, 0);
    ticks(&s, "d", 4, T0 + DAY);
    ticks(&s, "a", 1, T0 + DAY);
    snprintf(rules, sizeof rules, tick, 3);
    expect(&s, now, rules, "a,heavy,b,d");
    snprintf(rules, sizeof rules, tick, 4);
    expect(&s, now, rules, "heavy,d");
    expect(&s, now,
           "{\"type\":\"behavior\",\"event\":\"tick\",\"op\":\"did_not_event\",\"within_days\":30}",
           "c");
    /* The window's edge inside the heavy contact's entries (one a second from T0): from
     * T0 + 1 h on, both ends included, 66,400 of them. */
    expect(&s, T0 + DAY + HOUR_MS,
           "{\"type\":\"behavior\",\"event\":\"tick\",\"op\":\"did_event\","
           "\"within_days\":1,\"count_gte\":66400}",
           "heavy");
    expect(&s, T0 + DAY + HOUR_MS,
           "{\"type\":\"behavior\",\"event\":\"tick\",\"op\":\"did_event\","
           "\"within_days\":1,\"count_gte\":66401}",
           "");
    expect(&s, T0 + DAY,
           "{\"type\":\"behavior\",\"event\":\"tick\",\"op\":\"did_event\","
           "\"within_days\":1,\"count_gte\":70000}",
           "heavy");
    sx_close(&s);
}

static int add_xid_or_none(void *ctx, int64_t id, const char *xid)
{
    (void)id;
    return add_id(ctx, 0, xid ? xid : "(none)");
}

UTEST(segment, identifiers_are_read_from_the_store_until_a_rule_needs_them)
{
    struct sx s;
    struct segment_plan *p = NULL;
    struct segment_result r = {0};
    struct audience_stats st0, st1;
    struct errlist errs = {0};
    struct buf page, all;
    json_t *rules = json_loads("{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"neq\","
                               "\"value\":\"nowhere\"}",
                               0, NULL);

    sx_open(&s);
    bulk(&s, 0, 30);
    buf_init(&page);
    buf_init(&all);
    cr_assert_eq(audience_index_catch_up(s.ix, s.f.st, &s.f.e), 0, "%s", s.f.e.msg);
    cr_assert_eq(contract_set_load(s.f.st, NULL, &s.cs, &s.f.e), 0);
    cr_assert_eq(segment_compile(s.ix, s.f.st, s.cs, rules, &s.lim, &p, &errs, &s.f.e), 0);
    cr_assert_eq(segment_eval(s.ix, p, T0, &s.lim, &r, &s.f.e), 0, "%s", s.f.e.msg);
    audience_index_stats(s.ix, &st0);
    /* A page (the preview's sample, say): from the store, the index left as it is. */
    cr_assert_eq(segment_members(s.ix, s.f.st, &r, 3, 5, add_xid_or_none, &page, &s.f.e), 0);
    cr_assert_str_eq(page.p, "c3,c4,c5,c6,c7");
    audience_index_stats(s.ix, &st1);
    cr_assert_eq(st1.bytes, st0.bytes, "no identifier column loaded for a page");
    /* A rule on an identifier loads its column, kept current after. */
    expect(&s, T0,
           "{\"type\":\"attribute\",\"field\":\"external_id\",\"op\":\"in\","
           "\"value\":[\"c3\",\"c29\"]}",
           "c3,c29");
    audience_index_stats(s.ix, &st1);
    cr_assert_gt(st1.bytes, st0.bytes);
    contact(&s, "{\"external_id\":\"late\",\"email\":\"Late@Example.com\"}");
    expect(&s, T0,
           "{\"type\":\"attribute\",\"field\":\"external_id\",\"op\":\"eq\",\"value\":\"late\"}",
           "late");
    expect(&s, T0,
           "{\"type\":\"attribute\",\"field\":\"email\",\"op\":\"contains\",\"value\":\"late@\"}",
           "late");
    /* The whole walk: the same identifiers as the page. */
    cr_assert_eq(segment_members(s.ix, s.f.st, &r, 3, 0, add_xid_or_none, &all, &s.f.e), 0);
    cr_assert(strncmp(all.p, "c3,c4,c5,c6,c7,", 15) == 0, "%s", all.p);
    buf_release(&page);
    buf_release(&all);
    segment_result_release(&r);
    segment_plan_free(p);
    json_decref(rules);
    sx_close(&s);
}

/* Sets contact xid's email, in its own transaction. */
static void email_of(struct sx *s, int i, int version)
{
    char rec[128];

    snprintf(rec, sizeof rec, "{\"external_id\":\"c%d\",\"email\":\"v%d.user%d@example.com\"}", i,
             version, i);
    contact(s, rec);
}

/* Version v of the emails of contacts from..to - 1, then: email op value (%d: v) is want. */
static void rewrite(struct sx *s, int from, int to, int v, const char *op, const char *value,
                    const char *want)
{
    char rules[256], val[64];
    int i;

    for (i = from; i < to; i++)
        email_of(s, i, v);
    snprintf(val, sizeof val, value, v);
    snprintf(rules, sizeof rules,
             "{\"type\":\"attribute\",\"field\":\"email\",\"op\":\"%s\","
             "\"value\":\"%s\"}",
             op, val);
    expect(s, T0, rules, want);
}

UTEST(segment, identifier_text_compacted_and_widened_past_its_offsets_reach)
{
    struct sx s;
    int i, v;

    setenv("ENGAGE_SEGMENT_ARENA_LIMIT", "4000", 1); /* 4-byte offsets "reach" 4,000 bytes */
    sx_open(&s);
    for (i = 0; i < 100; i++) /* about 2,400 bytes of text */
        email_of(&s, i, 0);
    expect(&s, T0,
           "{\"type\":\"attribute\",\"field\":\"email\",\"op\":\"eq\",\"value\":\"v0.user7@example."
           "com\"}",
           "c7");
    /* Rewrites past the limit with a text mostly dead: compacted, offsets still 4 bytes
     * (the index catching up after each round). */
    for (v = 1; v <= 3; v++)
        rewrite(&s, 0, 40, v, "eq", "v%d.user39@example.com", "c39");
    expect(&s, T0,
           "{\"type\":\"attribute\",\"field\":\"email\",\"op\":\"eq\",\"value\":\"v3.user7@example."
           "com\"}",
           "c7");
    expect(&s, T0,
           "{\"type\":\"attribute\",\"field\":\"email\",\"op\":\"eq\",\"value\":\"v0.user7@example."
           "com\"}",
           "");
    expect(
        &s, T0,
        "{\"type\":\"attribute\",\"field\":\"email\",\"op\":\"contains\",\"value\":\"V0.USER99@\"}",
        "c99");
    /* Live text past the limit: the offsets widen to 8 bytes, folds and all. */
    for (i = 100; i < 400; i++)
        email_of(&s, i, 0);
    for (i = 0; i < 400; i += 57) {
        char value[32], want[16];
        snprintf(value, sizeof value, "USER%d@", i);
        snprintf(want, sizeof want, "c%d", i);
        rewrite(&s, 0, 0, 0, "contains", value, want);
    }
    /* And rewrites at 8 bytes are compacted too, the answers the same. */
    for (v = 4; v <= 8; v++)
        rewrite(&s, 100, 160, v, "contains", "V%d.USER101@", "c101");
    expect(&s, T0,
           "{\"type\":\"attribute\",\"field\":\"email\",\"op\":\"in\",\"value\":[\"v8.user150@"
           "example.com\",\"v0.user399@example.com\",\"v3.user39@example.com\"]}",
           "c39,c150,c399");
    expect(&s, T0,
           "{\"type\":\"attribute\",\"field\":\"email\",\"op\":\"contains\",\"value\":\"v7.\"}",
           "");
    sx_close(&s);
}
