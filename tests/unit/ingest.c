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
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"c1\",\"email\":\"a@x.io\","
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
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"c1\",\"attributes\":{\"city\":\"Pune\"}}"),
                 INGEST_UNCHANGED);
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"c1\",\"attributes\":{\"city\":\"Goa\"}}"),
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
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"c2\",\"email\":\"nope\"}"), INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_reason, "invalid_email");
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"c3\",\"attributes\":{\"ltv\":\"lots\"}}"),
                 INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_reason, "invalid_type");
    cr_assert_str_eq(f.in.last_field, "ltv");
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"c4\",\"attributes\":{\"signup_at\":\"soon\"}}"),
                 INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_reason, "invalid_timestamp");
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"c5\",\"email_consent\":\"maybe\"}"),
                 INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_field, "email_consent");
    /* The refused name is reported after the attributes it came from are freed (a
     * use-after-free once, found by fuzzing: ASan fails this test if it comes back). */
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 0,
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
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"a\",\"attributes\":{\"score\":\"7\"}}"),
                 INGEST_INSERTED);
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"b\",\"attributes\":{\"score\":\"high\"}}"),
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
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"c1\",\"email_consent\":\"subscribed\","
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
    cr_assert_eq(ingest_set_consent(&f.in, "c1", CONSENT_SUBSCRIBED, "api", "", &before, &f.e), E_INVAL);
    err_clear(&f.e);
    cr_assert_eq(ingest_set_consent(&f.in, "c1", CONSENT_SUBSCRIBED, "api",
                                    "customer asked by phone", &before, &f.e), 0);
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
    snprintf(buf, sizeof buf, "{\"external_id\":\"c9\",\"event\":\"order_created\",\"event_id\":\"%s\","
             "\"properties\":{\"order_id\":\"o1\",\"amount\":\"%s\",\"currency\":\"INR\","
             "\"created_at\":\"2026-01-05T10:00:00Z\"}}", eid, amount);
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
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 1, order("e1", "1.0")), INGEST_UNCHANGED, "first write wins");
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
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 1, "{\"external_id\":\"c1\",\"event\":\"visit\",\"occurred_at\":"
                                           "\"2026-01-01T00:00:00Z\",\"properties\":{\"a\":\"1\",\"b\":\"2\"}}"),
                 INGEST_INSERTED);
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 1, "{\"properties\":{\"b\":\"2\",\"a\":\"1\",\"c\":\"\"},"
                                           "\"occurred_at\":\"2026-01-01T05:30:00+05:30\","
                                           "\"event\":\"visit\",\"external_id\":\"c1\"}"),
                 INGEST_UNCHANGED, "same content: same key, whatever the order or empty cells");
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 1, "{\"external_id\":\"c1\",\"event\":\"visit\",\"occurred_at\":"
                                           "\"2026-01-01T00:00:00Z\",\"properties\":{\"a\":\"1\",\"b\":\"3\"}}"),
                 INGEST_INSERTED);
    fx_close(&f);
}

UTEST(events, unknown_event_policy)
{
    struct fx f;
    const char *ev = "{\"external_id\":\"c1\",\"event\":\"page_viewed\",\"occurred_at\":\"2026-01-01\"}";
    fx_open(&f);
    f.cfg.unknown_events_reject = 1;
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 1, ev), INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_reason, "unknown_event");
    f.cfg.unknown_events_reject = 0;
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 1, ev), INGEST_INSERTED);
    cr_assert_eq(f.in.stats.unvalidated, 1);
    /* Once stored, the name is known: accepted (unvalidated) even under reject. */
    f.cfg.unknown_events_reject = 1;
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 1, "{\"external_id\":\"c1\",\"event\":\"page_viewed\","
                                           "\"occurred_at\":\"2026-01-02\"}"),
                 INGEST_INSERTED);
    fx_close(&f);
}

static void put_contract(struct fx *f, const char *name, const char *body)
{
    int v;
    cr_assert_eq(store_begin(f->st, &f->e), 0);
    cr_assert_eq(store_contract_put(f->st, name, "event", body, "test", &v, &f->e), 0, "%s", f->e.msg);
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
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 1, "{\"external_id\":\"c1\",\"event\":\"order_created\","
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

UTEST(identity, anonymous_events_merge_on_identify)
{
    struct fx f;
    struct store_contact u, a;
    struct ingest_ctx cx = {.kind = SRC_SDK, .source = "sdk", .received_at = clock_now_ms()};
    struct store_event ev = {0};
    fx_open(&f);
    cr_assert_eq(fx_ingest(&f, SRC_SDK, 1, "{\"anonymous_id\":\"anon-1\",\"event\":\"visit\","
                                           "\"event_id\":\"v1\"}"),
                 INGEST_INSERTED);
    cr_assert_eq(fx_ingest(&f, SRC_SDK, 1, "{\"external_id\":\"u1\",\"event\":\"visit\","
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
    cr_assert_eq(fx_ingest(&f, SRC_SDK, 1, "{\"anonymous_id\":\"anon-1\",\"event\":\"visit\","
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
    fx_ingest(&f, SRC_SDK, 1, "{\"anonymous_id\":\"anon-2\",\"event\":\"visit\",\"event_id\":\"w1\"}");
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
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 0, "{\"external_id\":\"gone\",\"attributes\":{\"city\":\"X\"}}"),
                 INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_reason, "contact_deleted");
    cr_assert_eq(fx_ingest(&f, SRC_CSV, 1, "{\"external_id\":\"gone\",\"event\":\"visit\","
                                           "\"occurred_at\":\"2026-01-01\"}"),
                 INGEST_REJECTED);
    cr_assert_str_eq(f.in.last_reason, "contact_deleted");
    fx_close(&f);
}

UTEST(ingest, rollback_forgets_uncommitted_ids)
{
    struct fx f;
    struct ingest_ctx cx = {.kind = SRC_CSV, .source = "csv", .text_mode = 1,
                            .received_at = clock_now_ms()};
    enum ingest_outcome o;
    json_t *rec = json_pack("{s:s,s:s,s:s}", "external_id", "tmp", "event", "visit",
                            "occurred_at", "2026-01-01");
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
    struct ingest_ctx sync = {.kind = SRC_SYNC, .source = "sync:crm", .owns_rows = 1,
                              .received_at = clock_now_ms()};
    struct ingest_ctx sdk = {.kind = SRC_SDK, .source = "sdk", .received_at = clock_now_ms()};
    struct store_event ev = {0};
    enum ingest_outcome o;
    json_t *v1 = json_pack("{s:s,s:s,s:s,s:s,s:{s:s}}", "external_id", "c1", "event", "visit",
                           "event_id", "crm:visits:7", "occurred_at", "2026-01-01", "properties",
                           "page", "/a");
    json_t *v2 = json_pack("{s:s,s:s,s:s,s:s,s:{s:s}}", "external_id", "c1", "event", "visit",
                           "event_id", "crm:visits:7", "occurred_at", "2026-01-01", "properties",
                           "page", "/b");
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
