/* tests/unit/ingest.c -- contact upserts, sticky consent, events, contracts, replay, identity. */
#include "ingest_fixture.h"

static void get_contact(struct fx *f, const char *xid, struct store_contact *c)
{
    store_contact_init(c);
    cr_assert_eq(store_contact_get_by_xid(f->st, xid, c, &f->e), 0, "%s: %s", xid, f->e.msg);
}

UTEST(contacts, insert_update_unchanged)
{
    struct fx f;
    struct store_contact c;
    fx_open(&f);
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 0,
                           "{\"external_id\":\"c1\",\"email\":\"a@x.io\","
                           "\"attributes\":{\"city\":\"Pune\",\"ltv\":\"10.5\","
                           "\"vip\":\"true\",\"zip\":\"01234\"}}"),
                 INGEST_INSERTED);
    get_contact(&f, "c1", &c);
    cr_assert_str_eq(c.email, "a@x.io");
    cr_assert_eq(json_real_value(json_object_get(c.attrs, "ltv")), 10.5, "typed by the contract");
    cr_assert(json_is_true(json_object_get(c.attrs, "vip")), "inferred boolean");
    cr_assert_str_eq(json_string_value(json_object_get(c.attrs, "zip")), "01234",
                     "a leading zero keeps it a string");
    cr_assert_eq(c.consent, CONSENT_SUBSCRIBED);
    store_contact_release(&c);
    cr_assert_eq(
        fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"c1\",\"attributes\":{\"city\":\"Pune\"}}"),
        INGEST_UNCHANGED);
    cr_assert_eq(
        fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"c1\",\"attributes\":{\"city\":\"Goa\"}}"),
        INGEST_UPDATED);
    get_contact(&f, "c1", &c);
    cr_assert_str_eq(json_string_value(json_object_get(c.attrs, "city")), "Goa");
    cr_assert_eq(json_real_value(json_object_get(c.attrs, "ltv")), 10.5, "absent keys are kept");
    store_contact_release(&c);
    fx_close(&f);
}

UTEST(contacts, rejections_go_to_the_dead_letter_store)
{
    struct fx f;
    struct store_counts n;
    fx_open(&f);
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 0, "{\"email\":\"a@x.io\"}"), INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_reason, "missing_field");
    cr_assert_str_eq(f.in.last_field, "external_id");
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"c2\",\"email\":\"nope\"}"),
                 INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_reason, "invalid_email");
    cr_assert_eq(
        fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"c3\",\"attributes\":{\"ltv\":\"lots\"}}"),
        INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_reason, "invalid_type");
    cr_assert_str_eq(f.in.last_field, "ltv");
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 0,
                           "{\"external_id\":\"c4\",\"attributes\":{\"signup_at\":\"soon\"}}"),
                 INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_reason, "invalid_timestamp");
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"c5\",\"email_consent\":\"maybe\"}"),
                 INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_field, "email_consent");
    /* The refused name is reported after the attributes it came from are freed (a
     * use-after-free once, found by fuzzing: ASan fails this test if it comes back). */
    cr_assert_eq(
        fx_ingest(&f, SRC_CSV, 0,
                  "{\"external_id\":\"c6\",\"attributes\":{\"city\":\"x\",\"bad\\u0001name\":1}}"),
        INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_reason, "invalid_name");
    cr_assert_str_eq(f.in.last_field, "bad\001name");
    cr_assert_eq(store_counts(f.st, &n, &f.e), 0);
    cr_assert_eq(n.rejected_pending, 6);
    cr_assert_eq(n.contacts, 0, "nothing half-stored");
    fx_close(&f);
}

UTEST(contacts, inferred_attribute_type_is_fixed_at_first_sight)
{
    struct fx f;
    fx_open(&f);
    cr_assert_eq(
        fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"a\",\"attributes\":{\"score\":\"7\"}}"),
        INGEST_INSERTED);
    cr_assert_eq(
        fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"b\",\"attributes\":{\"score\":\"high\"}}"),
        INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_field, "score");
    cr_assert(strstr(f.in.last_msg, "typed number by its first value"), "%s", f.in.last_msg);
    fx_close(&f);
}

UTEST(consent, opt_outs_are_sticky_for_bulk_sources)
{
    struct fx f;
    struct store_contact c;
    enum consent_state before;
    fx_open(&f);
    fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"c1\",\"email_consent\":\"unsubscribed\"}");
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 0,
                           "{\"external_id\":\"c1\",\"email_consent\":\"subscribed\","
                           "\"attributes\":{\"city\":\"Delhi\"}}"),
                 INGEST_UPDATED, "the rest of the row still applies");
    cr_assert_eq(f.in.stats.consent_kept, 1);
    get_contact(&f, "c1", &c);
    cr_assert_eq(c.consent, CONSENT_UNSUBSCRIBED);
    cr_assert_str_eq(json_string_value(json_object_get(c.attrs, "city")), "Delhi");
    store_contact_release(&c);
    /* Sync and SDK traits are bulk too. */
    fx_ingest(&f, SRC_SYNC, 0, "{\"external_id\":\"c1\",\"email_consent\":\"subscribed\"}");
    fx_ingest(&f, SRC_SDK, 0, "{\"external_id\":\"c1\",\"email_consent\":\"subscribed\"}");
    get_contact(&f, "c1", &c);
    cr_assert_eq(c.consent, CONSENT_UNSUBSCRIBED);
    store_contact_release(&c);
    /* Bounced and complained are sticky the same way; moving between opt-outs is allowed. */
    fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"c1\",\"email_consent\":\"bounced\"}");
    get_contact(&f, "c1", &c);
    cr_assert_eq(c.consent, CONSENT_BOUNCED);
    store_contact_release(&c);
    /* Only an explicit change with a reason lifts it. */
    cr_assert_eq(store_begin(f.st, &f.e), 0);
    cr_assert_eq(ingest_set_consent(&f.in, "c1", CONSENT_SUBSCRIBED, "api", "", &before, &f.e),
                 E_INVAL);
    err_clear(&f.e);
    cr_assert_eq(ingest_set_consent(&f.in, "c1", CONSENT_SUBSCRIBED, "api",
                                    "customer asked by phone", &before, &f.e),
                 0);
    cr_assert_eq(store_commit(f.st, &f.e), 0);
    cr_assert_eq(before, CONSENT_BOUNCED);
    get_contact(&f, "c1", &c);
    cr_assert_eq(c.consent, CONSENT_SUBSCRIBED);
    store_contact_release(&c);
    fx_close(&f);
}

static int count_changes(void *ctx, const struct store_consent_change *ch)
{
    (void)ch;
    ++*(int *)ctx;
    return 0;
}

UTEST(consent, every_change_is_recorded)
{
    struct fx f;
    struct store_contact c;
    int n = 0;
    fx_open(&f);
    fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"c1\"}");
    fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"c1\",\"email_consent\":\"unsubscribed\"}");
    fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"c1\",\"email_consent\":\"subscribed\"}");
    get_contact(&f, "c1", &c);
    cr_assert_eq(store_consent_history(f.st, c.id, count_changes, &n, &f.e), 0);
    cr_assert_eq(n, 2, "initial state + the opt-out; the refused re-subscribe changes nothing");
    store_contact_release(&c);
    fx_close(&f);
}

static const char *order(const char *eid, const char *amount)
{
    static char buf[512];
    snprintf(buf, sizeof buf,
             "{\"external_id\":\"c9\",\"event\":\"order_created\",\"event_id\":\"%s\","
             "\"properties\":{\"order_id\":\"o1\",\"amount\":\"%s\",\"currency\":\"INR\","
             "\"created_at\":\"2026-01-05T10:00:00Z\"}}",
             eid, amount);
    return buf;
}

static int grab_event(void *ctx, const struct store_event *ev)
{
    struct store_event *out = ctx;
    *out = *ev;
    out->props = strdup(ev->props);
    return 0;
}

UTEST(events, typed_versioned_and_deduplicated)
{
    struct fx f;
    struct store_event ev = {0};
    struct store_contact c;
    fx_open(&f);
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 1, order("e1", "99.5")), INGEST_INSERTED);
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 1, order("e1", "1.0")), INGEST_UNCHANGED,
                 "first write wins");
    cr_assert_eq(store_event_get(f.st, "e1", grab_event, &ev, &f.e), 0);
    cr_assert_eq(ev.contract_version, 1);
    cr_assert(strstr(ev.props, "\"amount\":99.5"), "%s", ev.props);
    cr_assert_eq(ev.occurred_at, 1767607200000LL, "occurred_at from the contract's created_at");
    free((char *)ev.props);
    get_contact(&f, "c9", &c);
    cr_assert_eq(c.id, ev.contact_id, "an event for an unknown external_id creates the contact");
    store_contact_release(&c);
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 1, order("e2", "-1")), INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_reason, "constraint");
    cr_assert_str_eq(f.in.last_field, "amount");
    fx_close(&f);
}

UTEST(events, derived_key_ignores_member_order)
{
    struct fx f;
    fx_open(&f);
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 1,
                           "{\"external_id\":\"c1\",\"event\":\"visit\",\"occurred_at\":"
                           "\"2026-01-01T00:00:00Z\",\"properties\":{\"a\":\"1\",\"b\":\"2\"}}"),
                 INGEST_INSERTED);
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 1,
                           "{\"properties\":{\"b\":\"2\",\"a\":\"1\",\"c\":\"\"},"
                           "\"occurred_at\":\"2026-01-01T05:30:00+05:30\","
                           "\"event\":\"visit\",\"external_id\":\"c1\"}"),
                 INGEST_UNCHANGED, "same content: same key, whatever the order or empty cells");
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 1,
                           "{\"external_id\":\"c1\",\"event\":\"visit\",\"occurred_at\":"
                           "\"2026-01-01T00:00:00Z\",\"properties\":{\"a\":\"1\",\"b\":\"3\"}}"),
                 INGEST_INSERTED);
    fx_close(&f);
}

UTEST(events, unknown_event_policy)
{
    struct fx f;
    const char *ev =
        "{\"external_id\":\"c1\",\"event\":\"page_viewed\",\"occurred_at\":\"2026-01-01\"}";
    fx_open(&f);
    f.cfg.unknown_events_reject = 1;
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 1, ev), INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_reason, "unknown_event");
    f.cfg.unknown_events_reject = 0;
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 1, ev), INGEST_INSERTED);
    cr_assert_eq(f.in.stats.unvalidated, 1);
    /* Once stored, the name is known: accepted (unvalidated) even under reject. */
    f.cfg.unknown_events_reject = 1;
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 1,
                           "{\"external_id\":\"c1\",\"event\":\"page_viewed\","
                           "\"occurred_at\":\"2026-01-02\"}"),
                 INGEST_INSERTED);
    fx_close(&f);
}

static void put_contract(struct fx *f, const char *name, const char *body)
{
    int v;
    cr_assert_eq(store_begin(f->st, &f->e), 0);
    cr_assert_eq(store_contract_put(f->st, name, "event", body, "test", &v, &f->e), 0, "%s",
                 f->e.msg);
    cr_assert_eq(store_commit(f->st, &f->e), 0);
}

UTEST(contracts, new_version_then_replay)
{
    struct fx f;
    struct store_rejected_filter flt = {0};
    struct replay_stats rs;
    struct store_event ev = {0};
    fx_open(&f);
    /* Currency "rupees" fails v1's ^[A-Z]{3}$ */
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 1,
                           "{\"external_id\":\"c1\",\"event\":\"order_created\","
                           "\"event_id\":\"r1\",\"properties\":{\"order_id\":\"o\","
                           "\"amount\":\"5\",\"currency\":\"rupees\","
                           "\"created_at\":\"2026-01-01\"}}"),
                 INGEST_REJECTED);
    cr_assert_eq(rejected_replay(&f.in, &flt, "test", "", &rs, &f.e), 0);
    cr_assert_eq(rs.tried, 1);
    cr_assert_eq(rs.still_rejected, 1, "same contract: still rejected");
    put_contract(&f, "order_created",
                 "{\"name\":\"order_created\",\"occurred_at\":\"created_at\",\"properties\":{"
                 "\"order_id\":{\"type\":\"string\",\"required\":true},"
                 "\"amount\":{\"type\":\"number\",\"required\":true,\"minimum\":0},"
                 "\"currency\":{\"type\":\"string\",\"required\":true},"
                 "\"created_at\":{\"type\":\"timestamp\",\"required\":true}}}");
    cr_assert_eq(rejected_replay(&f.in, &flt, "test", "", &rs, &f.e), 0, "%s", f.e.msg);
    cr_assert_eq(rs.ingested, 1);
    cr_assert_eq(store_event_get(f.st, "r1", grab_event, &ev, &f.e), 0);
    cr_assert_eq(ev.contract_version, 2, "the event records the version that accepted it");
    free((char *)ev.props);
    cr_assert_eq(rejected_replay(&f.in, &flt, "test", "", &rs, &f.e), 0);
    cr_assert_eq(rs.tried, 0, "nothing pending any more");
    fx_close(&f);
}

static int grab_letter(void *ctx, const struct store_rejected *r)
{
    struct store_rejected *out = ctx;
    *out = *r;
    out->raw = strdup(r->raw);
    out->reason = NULL;
    return 0;
}

/* Whatever the source, a letter keeps the first 64 KiB of its record (cut between
 * characters), says it was cut, and is never replayed. */
UTEST(rejected, a_letter_keeps_64_kib_and_a_cut_one_is_never_replayed)
{
    struct fx f;
    struct store_rejected_filter flt = {0};
    struct store_rejected got = {0};
    struct replay_stats rs;
    struct buf rec;
    int i;
    fx_open(&f);
    buf_init(&rec);
    buf_adds(&rec, "{\"external_id\":\"c1\",\"email\":\"nope\",\"attributes\":{\"bio\":\"");
    for (i = 0; i < 50000; i++)
        buf_adds(&rec, "\xc3\xa9"); /* é: a cut at 64 KiB falls inside one */
    buf_adds(&rec, "x\"}}");
    cr_assert_eq(fx_ingest(&f, SRC_API, 0, rec.p), INGEST_REJECTED);
    cr_assert_eq(store_rejected_list(f.st, &flt, grab_letter, &got, &f.e), 0);
    cr_assert(got.truncated);
    cr_assert_gt(got.raw_bytes, 100000, "the whole record's size: %lld", (long long)got.raw_bytes);
    cr_assert_leq(strlen(got.raw), STORE_REJECTED_MAX_RAW);
    cr_assert_gt(strlen(got.raw), STORE_REJECTED_MAX_RAW - 4);
    cr_assert(utf8_valid(got.raw, strlen(got.raw)), "cut between characters");
    free((char *)got.raw);
    cr_assert_eq(rejected_replay(&f.in, &flt, "test", "", &rs, &f.e), 0, "%s", f.e.msg);
    cr_assert_eq(rs.tried, 0, "the first 64 KiB of a record is not the record");
    cr_assert_eq(rs.not_replayable, 1);
    buf_release(&rec);
    fx_close(&f);
}

/* A code_checked event: its "code" must match pattern (JSON-escaped) unless it is empty. */
static void put_checked(struct fx *f, const char *pattern_json, int via_store)
{
    struct errlist errs = {0};
    char doc[512];
    int version, unchanged;
    snprintf(doc, sizeof doc,
             "{\"name\":\"code_checked\",\"properties\":{\"code\":{\"type\":"
             "\"string\",\"required\":true,\"pattern\":\"%s\"}}}",
             pattern_json);
    if (via_store) /* as if stored when it was valid */
        put_contract(f, "code_checked", doc);
    else
        cr_assert_eq(contract_put(f->st, "code_checked", doc, strlen(doc), "test", "", &version,
                                  &unchanged, &errs, &f->e),
                     0, "%s", errs.n ? errs.items[0].msg : "");
}

static enum ingest_outcome ingest_code(struct fx *f, const char *id, char fill, size_t n,
                                       const char *end)
{
    struct buf b;
    enum ingest_outcome o;
    size_t i;
    buf_init(&b);
    buf_printf(&b,
               "{\"external_id\":\"c1\",\"event\":\"code_checked\",\"event_id\":\"%s\","
               "\"occurred_at\":\"2026-01-01\",\"properties\":{\"code\":\"",
               id);
    for (i = 0; i < n; i++)
        buf_addc(&b, fill);
    buf_printf(&b, "%s\"}}", end);
    o = fx_ingest(f, SRC_API, 1, b.p);
    buf_release(&b);
    return o;
}

UTEST(contracts, a_pattern_past_its_limits_is_a_dead_letter_with_the_reason)
{
    struct fx f;
    fx_open(&f);
    put_checked(&f, "(a+)+$", 0);
    cr_assert_eq(ingest_code(&f, "ok", 'a', 10, ""), INGEST_INSERTED);
    cr_assert_eq(ingest_code(&f, "long", 'a', 30000, "b"), INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_reason, "pattern_limit");
    cr_assert_str_eq(f.in.last_field, "code");
    cr_assert(strstr(f.in.last_msg, "value of 30001 bytes is longer than the 4096 bytes"), "%s",
              f.in.last_msg);
    cr_assert_eq(ingest_code(&f, "steps", 'a', 4000, "b"), INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_reason, "pattern_limit");
    cr_assert(strstr(f.in.last_msg, "gave up after 100000 steps: simplify the pattern"), "%s",
              f.in.last_msg);
    cr_assert_eq(fx_sql_int(&f, "SELECT count(*) FROM rejected WHERE reason = 'pattern_limit' "
                                "AND field = 'code' AND status = 'pending'"),
                 2, "both kept as dead letters, for a replay once the pattern is simpler");
    fx_close(&f);
}

UTEST(contracts, the_value_cap_is_read_from_the_configuration)
{
    struct fx f;
    fx_open(&f);
    f.cfg.pattern_max_value_bytes = 65536; /* before the session loads the contracts */
    put_checked(&f, "(a+)+$", 0);
    cr_assert_eq(ingest_code(&f, "long", 'a', 30000, "b"), INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_reason, "pattern_limit");
    cr_assert(strstr(f.in.last_msg, "gave up after 100000 steps"),
              "matched, not refused by "
              "length: %s",
              f.in.last_msg);
    cr_assert_eq(ingest_code(&f, "longer", 'a', 70000, ""), INGEST_REJECTED);
    cr_assert(strstr(f.in.last_msg, "longer than the 65536 bytes"), "%s", f.in.last_msg);
    fx_close(&f);
}

/* A pattern stored when patterns were POSIX EREs, which PCRE2 refuses ("a**"): the other
 * contracts load and work; this property's values wait as dead letters until a new
 * version is stored, then a replay takes them. */
UTEST(contracts, a_stored_pattern_that_no_longer_compiles_refuses_only_its_values)
{
    struct fx f;
    struct store_rejected_filter flt = {0};
    struct replay_stats rs;
    fx_open(&f);
    put_checked(&f, "^x**$", 1);
    cr_assert_eq(ingest_code(&f, "old", 'x', 3, ""), INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_reason, "pattern_invalid");
    cr_assert_str_eq(f.in.last_msg,
                     "contract code_checked v1: /properties/code/pattern is not a "
                     "valid regular expression: quantifier does not follow a "
                     "repeatable item at offset 3; store a new version of the "
                     "contract",
                     "%s", f.in.last_msg);
    cr_assert_eq(fx_ingest(&f, SRC_API, 1, order("o-1", "5")), INGEST_INSERTED,
                 "the other contracts are unaffected");
    put_checked(&f, "^x*$", 0);
    cr_assert_eq(rejected_replay(&f.in, &flt, "test", "", &rs, &f.e), 0, "%s", f.e.msg);
    cr_assert_eq(rs.ingested, 1);
    fx_close(&f);
}

UTEST(identity, anonymous_events_merge_on_identify)
{
    struct fx f;
    struct store_contact u, a;
    struct ingest_ctx cx = {.kind = SRC_SDK, .source = "sdk", .received_at = clock_now_ms()};
    struct store_event ev = {0};
    fx_open(&f);
    cr_assert_eq(fx_ingest(&f, SRC_SDK, 1,
                           "{\"anonymous_id\":\"anon-1\",\"event\":\"visit\","
                           "\"event_id\":\"v1\"}"),
                 INGEST_INSERTED);
    cr_assert_eq(fx_ingest(&f, SRC_SDK, 1,
                           "{\"external_id\":\"u1\",\"event\":\"visit\","
                           "\"event_id\":\"v2\"}"),
                 INGEST_INSERTED);
    cr_assert_eq(fx_sql_int(&f, "SELECT count(*) FROM event_anon"), 1,
                 "only the anonymous contact's event is listed for the merge");
    cr_assert_eq(ingest_begin(&f.in, &f.e), 0);
    cr_assert_eq(ingest_link_anonymous(&f.in, &cx, "anon-1", "u1", &f.e), 0, "%s", f.e.msg);
    cr_assert_eq(ingest_commit(&f.in, &f.e), 0);
    cr_assert_eq(fx_sql_int(&f, "SELECT count(*) FROM event_anon"), 0,
                 "the merge empties the list");
    get_contact(&f, "u1", &u);
    cr_assert_eq(store_event_get(f.st, "v1", grab_event, &ev, &f.e), 0);
    cr_assert_eq(ev.contact_id, u.id, "the anonymous event now belongs to the user");
    free((char *)ev.props);
    store_contact_init(&a);
    cr_assert_eq(store_contact_get_by_anon(f.st, "anon-1", &a, &f.e), 0);
    cr_assert_eq(a.id, u.id, "the anonymous id now points at the user");
    store_contact_release(&a);
    /* Later anonymous events go straight to the user. */
    cr_assert_eq(fx_ingest(&f, SRC_SDK, 1,
                           "{\"anonymous_id\":\"anon-1\",\"event\":\"visit\","
                           "\"event_id\":\"v3\"}"),
                 INGEST_INSERTED);
    cr_assert_eq(store_event_get(f.st, "v3", grab_event, &ev, &f.e), 0);
    cr_assert_eq(ev.contact_id, u.id);
    free((char *)ev.props);
    store_contact_release(&u);
    fx_close(&f);
}

UTEST(identity, anonymous_contact_becomes_the_user)
{
    struct fx f;
    struct store_contact u;
    struct ingest_ctx cx = {.kind = SRC_SDK, .source = "sdk", .received_at = clock_now_ms()};
    struct store_event ev = {0};
    fx_open(&f);
    fx_ingest(&f, SRC_SDK, 1,
              "{\"anonymous_id\":\"anon-2\",\"event\":\"visit\",\"event_id\":\"w1\"}");
    cr_assert_eq(ingest_begin(&f.in, &f.e), 0);
    cr_assert_eq(ingest_link_anonymous(&f.in, &cx, "anon-2", "u2", &f.e), 0, "%s", f.e.msg);
    cr_assert_eq(ingest_commit(&f.in, &f.e), 0);
    cr_assert_eq(fx_sql_int(&f, "SELECT count(*) FROM event_anon"), 0,
                 "an anonymous contact that becomes the user leaves the list");
    get_contact(&f, "u2", &u);
    cr_assert_eq(store_event_get(f.st, "w1", grab_event, &ev, &f.e), 0);
    cr_assert_eq(ev.contact_id, u.id);
    free((char *)ev.props);
    store_contact_release(&u);
    fx_close(&f);
}

UTEST(contacts, deleted_contacts_are_not_revived_by_bulk_data)
{
    struct fx f;
    struct store_contact c;
    fx_open(&f);
    fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"gone\"}");
    get_contact(&f, "gone", &c);
    c.deleted = 1;
    cr_assert_eq(store_begin(f.st, &f.e), 0);
    cr_assert_eq(store_contact_update(f.st, &c, &f.e), 0);
    cr_assert_eq(store_commit(f.st, &f.e), 0);
    store_contact_release(&c);
    cr_assert_eq(
        fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"gone\",\"attributes\":{\"city\":\"X\"}}"),
        INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_reason, "contact_deleted");
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 1,
                           "{\"external_id\":\"gone\",\"event\":\"visit\","
                           "\"occurred_at\":\"2026-01-01\"}"),
                 INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_reason, "contact_deleted");
    fx_close(&f);
}

UTEST(ingest, rollback_forgets_uncommitted_ids)
{
    struct fx f;
    struct ingest_ctx cx = {
        .kind = SRC_CSV, .source = "csv", .text_mode = 1, .received_at = clock_now_ms()};
    enum ingest_outcome o;
    json_t *rec = json_pack("{s:s,s:s,s:s}", "external_id", "tmp", "event", "visit", "occurred_at",
                            "2026-01-01");
    struct store_event ev = {0};
    struct store_contact c;
    fx_open(&f);
    cr_assert_eq(ingest_begin(&f.in, &f.e), 0);
    cr_assert_eq(ingest_event(&f.in, &cx, rec, &o, &f.e), 0);
    ingest_rollback(&f.in);
    /* Another contact takes the id the rolled-back one had. */
    fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"other\"}");
    cr_assert_eq(ingest_begin(&f.in, &f.e), 0);
    cr_assert_eq(ingest_event(&f.in, &cx, rec, &o, &f.e), 0);
    cr_assert_eq(ingest_commit(&f.in, &f.e), 0);
    get_contact(&f, "tmp", &c);
    (void)ev;
    cr_assert_neq(c.id, 1, "the event's contact is the new 'tmp', not a stale cached id");
    store_contact_release(&c);
    json_decref(rec);
    fx_close(&f);
}

UTEST(events, a_source_that_owns_its_rows_updates_and_deletes_them)
{
    struct fx f;
    struct ingest_ctx sync = {
        .kind = SRC_SYNC, .source = "sync:crm", .owns_rows = 1, .received_at = clock_now_ms()};
    struct ingest_ctx sdk = {.kind = SRC_SDK, .source = "sdk", .received_at = clock_now_ms()};
    struct store_event ev = {0};
    enum ingest_outcome o;
    json_t *v1 =
        json_pack("{s:s,s:s,s:s,s:s,s:{s:s}}", "external_id", "c1", "event", "visit", "event_id",
                  "crm:visits:7", "occurred_at", "2026-01-01", "properties", "page", "/a");
    json_t *v2 =
        json_pack("{s:s,s:s,s:s,s:s,s:{s:s}}", "external_id", "c1", "event", "visit", "event_id",
                  "crm:visits:7", "occurred_at", "2026-01-01", "properties", "page", "/b");
    int64_t seq1;
    int deleted;
    fx_open(&f);
    cr_assert_eq(ingest_begin(&f.in, &f.e), 0);
    cr_assert_eq(ingest_event(&f.in, &sync, v1, &o, &f.e), 0, "%s", f.e.msg);
    cr_assert_eq(o, INGEST_INSERTED);
    cr_assert_eq(ingest_event(&f.in, &sync, v1, &o, &f.e), 0);
    cr_assert_eq(o, INGEST_UNCHANGED, "reading the same row twice stores it once");
    cr_assert_eq(ingest_commit(&f.in, &f.e), 0);
    cr_assert_eq(store_event_get(f.st, "crm:visits:7", grab_event, &ev, &f.e), 0);
    seq1 = ev.seq;
    free((char *)ev.props);

    cr_assert_eq(ingest_begin(&f.in, &f.e), 0);
    cr_assert_eq(ingest_event(&f.in, &sync, v2, &o, &f.e), 0);
    cr_assert_eq(o, INGEST_UPDATED, "a changed row updates its event");
    cr_assert_eq(ingest_event(&f.in, &sdk, v1, &o, &f.e), 0);
    cr_assert_eq(o, INGEST_UNCHANGED, "another source cannot overwrite it (first write wins)");
    cr_assert_eq(ingest_commit(&f.in, &f.e), 0);
    cr_assert_eq(store_event_get(f.st, "crm:visits:7", grab_event, &ev, &f.e), 0);
    cr_assert(strstr(ev.props, "/b"), "%s", ev.props);
    cr_assert_gt(ev.seq, seq1, "the update takes a new change sequence");
    seq1 = ev.seq;
    free((char *)ev.props);

    cr_assert_eq(ingest_begin(&f.in, &f.e), 0);
    cr_assert_eq(ingest_event_delete(&f.in, &sdk, "crm:visits:7", &deleted, &f.e), E_FORBIDDEN);
    err_clear(&f.e);
    cr_assert_eq(ingest_event_delete(&f.in, &sync, "crm:visits:7", &deleted, &f.e), 0);
    cr_assert_eq(deleted, 1);
    cr_assert_eq(ingest_commit(&f.in, &f.e), 0);
    cr_assert_eq(store_event_get(f.st, "crm:visits:7", grab_event, &ev, &f.e), 0);
    cr_assert_eq(ev.deleted, 1, "deleted rows keep their place, flagged");
    cr_assert_gt(ev.seq, seq1, "readers catching up see the delete");
    free((char *)ev.props);
    json_decref(v1);
    json_decref(v2);
    fx_close(&f);
}

UTEST(events, a_name_is_known_only_once_an_event_has_it)
{
    struct fx f;
    struct ingest_ctx cx = {.kind = SRC_SYNC, .source = "sync:crm", .origin = "t", .owns_rows = 1};
    enum ingest_outcome o;
    int64_t id;
    json_t *rec;

    fx_open(&f);
    cx.received_at = clock_now_ms();
    cr_assert_eq(fx_ingest(&f, SRC_SDK, 1,
                           "{\"external_id\":\"c1\",\"event\":\"visit\",\"event_id\":\"x1\"}"),
                 INGEST_INSERTED);
    /* The same event_id under a new name is a duplicate: the new name stays unknown. */
    cr_assert_eq(fx_ingest(&f, SRC_SDK, 1,
                           "{\"external_id\":\"c1\",\"event\":\"visit_typo\",\"event_id\":\"x1\"}"),
                 INGEST_UNCHANGED);
    cr_assert_eq(store_event_name_id(f.st, "visit_typo", 0, &id, &f.e), 0);
    cr_expect_eq(id, 0, "a duplicate registered its name");
    /* An owning source's conflict (the id is the SDK's) registers nothing either. */
    rec = json_pack("{s:s,s:s,s:s,s:s}", "external_id", "c1", "event", "crm_only", "event_id", "x1",
                    "occurred_at", "2026-01-01T00:00:00Z");
    cr_assert_eq(ingest_begin(&f.in, &f.e), 0);
    cr_assert_eq(ingest_event(&f.in, &cx, rec, &o, &f.e), 0, "%s", f.e.msg);
    cr_assert_eq(o, INGEST_REJECTED);
    /* ... and a later event of that batch with the name still gets a good id. */
    json_object_set_new(rec, "event_id", json_string("x2"));
    cr_assert_eq(ingest_event(&f.in, &cx, rec, &o, &f.e), 0, "%s", f.e.msg);
    cr_assert_eq(o, INGEST_INSERTED, "%s: %s", f.in.last_reason, f.in.last_msg);
    cr_assert_eq(ingest_commit(&f.in, &f.e), 0);
    cr_assert_eq(store_event_name_id(f.st, "crm_only", 0, &id, &f.e), 0);
    cr_expect_neq(id, 0);
    cr_assert_eq(store_event_name_id(f.st, "visit", 0, &id, &f.e), 0);
    cr_expect_neq(id, 0);
    json_decref(rec);
    fx_close(&f);
}

/* ---- the tracking API's two ways in ---- */

#include "core/jtree.h"
#include "rnd_json.h"

/* A random tracking message as text: mostly the common case the fast path takes, with
 * the variations it must either map exactly as the general path or leave to it. */
static char *rnd_message(void)
{
    static const char *types[] = {"track",    "track", "track", "page", "screen",
                                  "identify", "group", "alias", "nope"};
    static const char *stamps[] = {"2026-01-02T03:04:05.678Z", "2026-01-02T08:34:05+05:30",
                                   "1969-07-20T20:17:40Z", "yesterday", "2026-02-30"};
    json_t *m = json_object(), *props;
    char *text, id[64];
    int i, n;

    if (rnd(10))
        json_object_set_new(m, "type", json_string(types[rnd(sizeof types / sizeof *types)]));
    switch (rnd(6)) {
    case 0:
        break;
    case 1:
        json_object_set_new(m, "userId", json_integer((json_int_t)rnd(100000)));
        break;
    case 2:
        json_object_set_new(m, "userId", json_string(""));
        break;
    case 3:
        json_object_set_new(m, "userId", json_real(1.5));
        break;
    default:
        snprintf(id, sizeof id, "u%u", rnd(1000));
        json_object_set_new(m, "userId", json_string(id));
    }
    if (rnd(3) == 0) {
        snprintf(id, sizeof id, "anon-%u", rnd(1000));
        json_object_set_new(m, "anonymousId", rnd(8) ? json_string(id) : json_null());
    }
    if (rnd(8)) {
        char *t = rnd_text();
        json_object_set_new(m, "event",
                            rnd(6) ? json_string(rnd(2) ? "app_opened" : t) : json_integer(7));
        free(t);
    }
    if (rnd(10)) {
        snprintf(id, sizeof id, "msg-%u", rnd(1u << 30));
        json_object_set_new(m, "messageId", rnd(12) ? json_string(id) : json_string("a\x01"));
    }
    if (rnd(2))
        json_object_set_new(m, "timestamp",
                            json_string(stamps[rnd(sizeof stamps / sizeof *stamps)]));
    else if (rnd(2))
        json_object_set_new(m, "originalTimestamp",
                            json_string(stamps[rnd(sizeof stamps / sizeof *stamps)]));
    if (rnd(3) == 0)
        json_object_set_new(m, "sentAt", json_string(stamps[rnd(2)]));
    if (rnd(3) == 0)
        json_object_set_new(m, "name", rnd(4) ? json_string("Home") : json_integer(1));
    if (rnd(4) == 0)
        json_object_set_new(m, "category", json_string("Docs"));
    if (rnd(6)) {
        props = json_object();
        n = (int)rnd(5);
        for (i = 0; i < n; i++) {
            char *k = rnd(3) ? rnd_text() : strdup(rnd(2) ? "name" : "category");
            json_object_set_new(props, k, rnd(5) ? rnd_value(0) : json_null());
            free(k);
        }
        json_object_set_new(m, "properties", props);
    } else if (rnd(2)) {
        json_object_set_new(m, "properties", rnd(2) ? json_null() : json_string("x"));
    }
    json_object_set_new(m, "context", json_pack("{s:{s:s}}", "library", "name", "test"));
    text = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    return text;
}

UTEST(tracking, the_fast_path_maps_as_the_general_path)
{
    struct contract_set *cs;
    struct arena a;
    struct buf scratch;
    struct err e = {0};
    struct fx f;
    int round, fast = 0, general = 0;
    const int64_t received_at = 1790000000000LL;

    fx_open(&f);
    cr_assert_eq(contract_set_load(f.st, &f.cfg, &cs, &e), 0, "%s", e.msg);
    arena_init(&a);
    buf_init(&scratch);
    for (round = 0; round < 10000; round++) {
        char *text = rnd_message();
        /* A duplicate key now and then, as JSON text allows: the last one counts. */
        char *dup = rnd(10) ? NULL : strstr(text, "\"properties\":{");
        /* The smallest [ingest] max_value_bytes now and then: both paths under one cap */
        size_t maxv = rnd(4) ? 0 : 256;
        struct ingest_ctx cx = {
            .kind = SRC_SDK, .source = "sdk", .received_at = received_at, .max_value_bytes = maxv};
        enum tracking_type type = rnd(4) ? TRACK_NONE : (enum tracking_type)(1 + rnd(3));
        const char *sent = rnd(2) ? "2026-01-02T03:04:06Z" : NULL;
        struct ingest_item fi, gi;
        struct jt *t;
        struct jt_error je;
        json_t *j;

        if (dup && dup[14] != '}') {
            char *x = malloc(strlen(text) + 32);
            size_t at = (size_t)(dup - text) + 14;
            memcpy(x, text, at);
            snprintf(x + at, strlen(text) + 32 - at, "\"zz\":1,\"zz\":null,%s", text + at);
            free(text);
            text = x;
        }
        arena_reset(&a);
        cr_assert_eq(jt_parse(&a, text, strlen(text), &t, &je), 0, "%s: %s", text, je.text);
        j = json_loads(text, 0, NULL);
        tracking_map(j, type, received_at, sent, &gi);
        if (gi.event && !gi.rejected)
            ingest_event_prepare(cs, &cx, gi.event, &gi.prep), gi.prepared = 1;
        memset(&fi, 0, sizeof fi);
        if (tracking_map_fast(t, type, received_at, sent, cs, maxv, &a, &scratch, &fi)) {
            struct prepared_event *p = &fi.prep, *q = &gi.prep;
            char *raw;
            json_t *back;
            fast++;
            cr_assert(gi.prepared && !gi.rejected && !q->rejected,
                      "%s: the general path refused it", text);
            cr_assert_str_eq(p->name, q->name, "%s", text);
            cr_assert_str_eq(p->event_id, q->event_id, "%s", text);
            cr_assert_str_eq(p->props, q->props, "%s", text);
            cr_assert_eq(p->occurred_at, q->occurred_at, "%s", text);
            cr_assert_eq(p->unvalidated, q->unvalidated, "%s", text);
            cr_assert_eq(!p->xid, !q->xid, "%s", text);
            cr_assert(!p->xid || strcmp(p->xid, q->xid) == 0, "%s", text);
            cr_assert_eq(!p->anon, !q->anon, "%s", text);
            cr_assert(!p->anon || strcmp(p->anon, q->anon) == 0, "%s", text);
            cr_assert_eq(p->xid_hash, q->xid_hash);
            cr_assert_eq(p->key_hash, q->key_hash);
            cr_assert_eq(!fi.link_anon, !gi.link_anon, "%s", text);
            cr_assert(!fi.link_anon || (strcmp(fi.link_anon, gi.link_anon) == 0 &&
                                        strcmp(fi.link_user, gi.link_user) == 0),
                      "%s", text);
            /* A dead letter of it holds the general path's record. */
            raw = p->raw_fn(p->raw_ctx, p);
            back = json_loads(raw, 0, NULL);
            cr_assert(json_equal(back, gi.event), "%s: %s", text, raw);
            json_decref(back);
            free(raw);
        } else {
            general++;
        }
        ingest_item_release(&fi);
        ingest_item_release(&gi);
        json_decref(j);
        free(text);
    }
    cr_assert_gt(fast, 1000, "the fast path must take the common case (%d)", fast);
    cr_assert_gt(general, 1000, "and leave the rest (%d)", general);
    buf_release(&scratch);
    arena_release(&a);
    contract_set_free(cs);
    fx_close(&f);
}

/* A record whose string values are given: {"external_id":"c1",BAG:{...}} plus, for an
 * event, its name and instant; big is a string of n 'x'. */
static json_t *record_with(const char *bag, const char *key, size_t n, int nested)
{
    char *big = malloc(n + 1);
    json_t *rec, *v;
    memset(big, 'x', n);
    big[n] = '\0';
    v = json_string(big);
    free(big);
    if (nested)
        v = json_pack("{s:o}", "line1", v);
    rec = json_pack("{s:s,s:{s:o}}", "external_id", "c1", bag, key, v);
    if (strcmp(bag, "properties") == 0) {
        json_object_set_new(rec, "event", json_string("visit"));
        json_object_set_new(rec, "occurred_at", json_string("2026-01-01T00:00:00Z"));
    }
    return rec;
}

/* [ingest] max_value_bytes is one rule for every source: a string value past it refuses
 * its record with the same reason and sentence, whichever path it takes (an API stored a
 * 3 MB attribute that the CSV import refused). */
UTEST(values, a_value_over_max_value_bytes_is_refused_the_same_way_everywhere)
{
    const char *want = "value of 3145728 bytes exceeds [ingest] max_value_bytes (1048576)";
    struct ingest_ctx api = {
        .kind = SRC_API, .source = "api", .origin = "t", .received_at = clock_now_ms()};
    struct ingest_ctx sync = {.kind = SRC_SYNC,
                              .source = "sync:crm",
                              .origin = "t",
                              .owns_rows = 1,
                              .received_at = clock_now_ms()};
    struct prepared_event p;
    struct ingest_parts parts = {.name = "visit", .xid = "c1", .event_id = "e1", .occurred_at = 1};
    enum ingest_outcome o;
    struct fx f;
    json_t *rec;
    char props[1100];

    fx_open(&f);
    /* Contacts: the native API, and CRM sync (both ingest_contact). */
    cr_assert_eq(ingest_begin(&f.in, &f.e), 0);
    rec = record_with("attributes", "bio", 3 << 20, 0);
    cr_assert_eq(ingest_contact(&f.in, &api, rec, &o, &f.e), 0);
    cr_assert_eq(o, INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_reason, "value_too_large");
    cr_assert_str_eq(f.in.last_field, "bio", "named as the CSV column is");
    cr_assert_str_eq(f.in.last_msg, want);
    cr_assert_eq(ingest_contact(&f.in, &sync, rec, &o, &f.e), 0);
    cr_assert_str_eq(f.in.last_msg, want);
    json_decref(rec);
    /* Events: the native API (ingest_event, as the server's writer and replays), a nested
     * value, and an id. */
    rec = record_with("properties", "note", 3 << 20, 0);
    cr_assert_eq(ingest_event(&f.in, &api, rec, &o, &f.e), 0);
    cr_assert_eq(o, INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_reason, "value_too_large");
    cr_assert_str_eq(f.in.last_field, "note");
    cr_assert_str_eq(f.in.last_msg, want);
    json_decref(rec);
    rec = record_with("properties", "address", 3 << 20, 1);
    cr_assert_eq(ingest_event(&f.in, &api, rec, &o, &f.e), 0);
    cr_assert_str_eq(f.in.last_field, "address/line1");
    json_decref(rec);
    cr_assert_eq(ingest_commit(&f.in, &f.e), 0);
    cr_assert_eq(fx_sql_int(&f, "SELECT count(*) FROM contacts"), 0, "nothing stored");
    cr_assert_eq(fx_sql_int(&f, "SELECT count(*) FROM rejected WHERE reason = 'value_too_large'"),
                 4);

    /* Prepared on a request's or a reader's thread: the configured cap, not the default. */
    api.max_value_bytes = 1000;
    rec = record_with("properties", "note", 1001, 0);
    ingest_event_prepare(NULL, &api, rec, &p);
    cr_assert(p.rejected);
    cr_assert_str_eq(p.reason, "value_too_large");
    cr_assert_str_eq(p.msg, "value of 1001 bytes exceeds [ingest] max_value_bytes (1000)");
    prepared_event_release(&p);
    json_decref(rec);
    /* The fast path (tracking calls, CRM rows) leaves a record that may hold a value past
     * the cap to the general path, which refuses it as above. */
    memset(props, 'x', sizeof props - 1);
    props[sizeof props - 1] = '\0';
    memcpy(props, "{\"note\":\"", 9);
    memcpy(props + sizeof props - 3, "\"}", 2);
    parts.props = props;
    parts.max_value_bytes = 1000;
    cr_assert_eq(ingest_event_prepare_fast(NULL, &parts, &p), 0);
    parts.max_value_bytes = 0; /* the default, 1 MiB */
    cr_assert_eq(ingest_event_prepare_fast(NULL, &parts, &p), 1);
    fx_close(&f);
}

UTEST(tracking, an_instant_before_1970_is_kept_not_dropped)
{
    struct ingest_item m;
    json_t *msg = json_pack("{s:s,s:s,s:s,s:s}", "type", "track", "userId", "u1", "event",
                            "moon_landing", "timestamp", "1969-07-20T20:17:40Z");

    tracking_map(msg, TRACK_NONE, clock_now_ms(), NULL, &m);
    cr_assert(!m.rejected);
    cr_assert_not_null(m.event, "once mapped to nothing at all, and answered as accepted");
    cr_assert_str_eq(json_string_value(json_object_get(m.event, "occurred_at")),
                     "1969-07-20T20:17:40.000Z");
    ingest_item_release(&m);
    json_decref(msg);
}

/* ---- the server's writer ---- */

#include <pthread.h>

#include "core/worker.h"

static void job_of_events(struct ingest_job *job, const char *prefix, int n)
{
    int i;

    memset(job, 0, sizeof *job);
    job->kind = SRC_SDK;
    job->source = "sdk";
    job->origin = "test";
    job->received_at = clock_now_ms();
    job->items = xcalloc((size_t)n, sizeof *job->items);
    job->n = (size_t)n;
    for (i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        job->items[i].index = (size_t)i;
        job->items[i].event =
            json_pack("{s:s,s:s,s:s,s:s}", "event", "app_opened", "external_id",
                      i % 2 ? "u1" : "u2", "event_id", id, "occurred_at", "2026-01-01T00:00:00Z");
    }
}

static void job_release(struct ingest_job *job)
{
    size_t i;

    for (i = 0; i < job->n; i++) {
        cr_assert_eq(job->items[i].outcome, INGEST_INSERTED, "item %zu", i);
        ingest_item_release(&job->items[i]);
    }
    free(job->items);
}

struct sender {
    struct ingest_queue *q;
    const struct contract_set *cs;
    int stop, sent;
};

static void *send_singles(void *arg)
{
    struct sender *s = arg;
    struct err e = {0};
    char prefix[32];

    while (!__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) {
        struct ingest_job job;
        snprintf(prefix, sizeof prefix, "single-%d", s->sent);
        job_of_events(&job, prefix, 1);
        ingest_job_prepare(&job, s->cs);
        cr_assert_eq(ingest_queue_run(s->q, &job, &e), 0, "%s", e.msg);
        job_release(&job);
        s->sent++;
    }
    return NULL;
}

UTEST(queue, single_calls_pass_a_big_batch_and_every_event_is_stored_once)
{
    struct ingest_queue_stats qs = {0};
    struct contract_set *cs;
    struct store_counts c;
    struct sender s = {0};
    struct worker_set *ws;
    pthread_t tid;
    struct fx f;
    int rounds = 0;

    fx_open(&f);
    worker_set_new(&ws, f.dir, f.cfg.busy_timeout_ms);
    cr_assert_eq(ingest_queue_start(&s.q, ws, &f.cfg, &f.e), 0, "%s", f.e.msg);
    cr_assert_eq(ingest_queue_contracts(s.q, f.st, &cs, &f.e), 0, "%s", f.e.msg);
    s.cs = cs;
    cr_assert_eq(pthread_create(&tid, NULL, send_singles, &s), 0);
    /* Big batches while single calls keep coming, until the writer has let one through
     * in the middle of a batch (a matter of timing; it takes one or two rounds). */
    while (rounds < 50 && qs.yields == 0) {
        struct ingest_job big;
        char prefix[32];
        snprintf(prefix, sizeof prefix, "big-%d", rounds++);
        job_of_events(&big, prefix, 2500);
        ingest_job_prepare(&big, cs);
        cr_assert_eq(ingest_queue_run(s.q, &big, &f.e), 0, "%s", f.e.msg);
        job_release(&big);
        ingest_queue_stats(s.q, &qs);
    }
    __atomic_store_n(&s.stop, 1, __ATOMIC_RELAXED);
    pthread_join(tid, NULL);
    ingest_queue_stats(s.q, &qs);
    cr_assert_gt(qs.yields, 0, "a big batch was committed in parts for the single calls");
    cr_assert_eq(qs.pending, 0);
    ingest_queue_stop(s.q);
    worker_set_free(ws);
    contract_set_free(cs);
    cr_assert_eq(store_counts(f.st, &c, &f.e), 0, "%s", f.e.msg);
    cr_assert_eq(c.events, (int64_t)rounds * 2500 + s.sent, "every event stored, once");
    fx_close(&f);
}
