/* tests/unit/events.c -- the store's conformance suite, part 2 (store.c is part 1): the
 * events of store.h, against the backend named by ENGAGE_TEST_STORE (store_loc.h).
 * First write wins (in one batch, across batches, across processes), versions and
 * what readers see of them, counts, anonymous moves, large batches; and the property
 * reader (store_props_find) against jansson. SQLite's damaged blocks and its v3
 * migration are in store_sqlite.c. */
#include <sys/wait.h>

#include "helpers.h"
#include "store/store.h"
#include "store_fixture.h"

UTEST(events, first_write_wins_within_and_across_batches)
{
    char *d = test_store_location();
    struct store *st = open_at(d);
    int64_t nm;
    struct got g;

    begin(st);
    nm = name_id(st, "order");
    cr_assert_eq(put(st, "a", 1, nm, 10), 1);
    cr_assert_eq(put(st, "b", 1, nm, 20), 1);
    cr_assert_eq(put(st, "a", 2, nm, 30), 0, "the same id again in the same batch");
    commit(st);
    begin(st);
    cr_assert_eq(put(st, "a", 3, nm, 40), 0, "and in a later batch");
    cr_assert_eq(put(st, "c", 3, nm, 50), 1);
    commit(st);
    g = get(st, "a");
    cr_assert_eq(g.n, 1);
    cr_assert_eq(g.ev.contact_id, 1, "the first write is kept");
    cr_assert_eq(g.ev.occurred_at, 10);
    cr_assert_str_eq(g.props, "{\"n\":1}");
    cr_assert_str_eq(g.source, "csv");
    cr_assert_str_eq(g.name, "order");
    cr_assert_eq(get(st, "zzz").n, 0, "an unknown id is not found");
    cr_assert_eq(counts(st).events, 3);
    cr_assert_eq(counts(st).event_seq, 3, "one version per stored event");
    store_close(st);
    free(d);
}

UTEST(events, a_rolled_back_batch_leaves_no_key_behind)
{
    char *d = test_store_location();
    struct store *st = open_at(d);
    int64_t nm;

    begin(st);
    nm = name_id(st, "order");
    cr_assert_eq(put(st, "kept", 1, nm, 10), 1);
    commit(st);
    begin(st);
    cr_assert_eq(put(st, "lost", 1, nm, 20), 1);
    store_rollback(st);
    begin(st);
    cr_assert_eq(put(st, "lost", 1, nm, 20), 1, "the rolled-back key is free again");
    cr_assert_eq(put(st, "kept", 1, nm, 20), 0);
    commit(st);
    cr_assert_eq(counts(st).events, 2);
    store_close(st);
    free(d);
}

/* A second process writes blocks this one's key map has not seen. */
UTEST(events, another_process_writes_are_seen_before_deciding)
{
    char *d = test_store_location();
    struct store *st = open_at(d);
    int64_t nm;
    pid_t pid;
    int status;

    begin(st);
    nm = name_id(st, "order");
    cr_assert_eq(put(st, "mine", 1, nm, 10), 1);
    commit(st); /* this process's map is built and current */
    pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        struct store_opts o = {.busy_timeout_ms = 5000};
        struct store *other = NULL;
        struct store_event ev = ev_of("theirs", 2, nm, 20, "{}");
        struct err e = {0};
        int ins = 0, ok;
        /* A fresh process: exec would be closer, but a forked child with its own
         * connection and its own copy of the map writes blocks all the same. */
        ok = store_open(&other, d, &o, &e) == 0 && store_begin(other, &e) == 0 &&
             store_event_insert(other, &ev, &ins, &e) == 0 && store_commit(other, &e) == 0;
        store_close(other);
        _exit(ok && ins == 1 ? 0 : 1);
    }
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child stored its event");
    begin(st);
    cr_assert_eq(put(st, "theirs", 1, nm, 30), 0, "the other process's key is known here");
    cr_assert_eq(put(st, "mine", 1, nm, 30), 0);
    commit(st);
    cr_assert_eq(get(st, "theirs").ev.contact_id, 2);
    cr_assert_eq(counts(st).events, 2);
    store_close(st);
    free(d);
}

UTEST(events, two_connections_share_one_key_map)
{
    char *d = test_store_location();
    struct store *a = open_at(d), *b = open_at(d);
    int64_t nm;

    begin(a);
    nm = name_id(a, "order");
    cr_assert_eq(put(a, "x", 1, nm, 10), 1);
    commit(a);
    begin(b);
    cr_assert_eq(put(b, "x", 2, nm, 20), 0);
    cr_assert_eq(put(b, "y", 2, nm, 20), 1);
    commit(b);
    begin(a);
    cr_assert_eq(put(a, "y", 1, nm, 30), 0);
    commit(a);
    store_close(a);
    store_close(b);
    free(d);
}

UTEST(events, owned_rewrite_delete_and_return_are_versions)
{
    char *d = test_store_location();
    struct store *st = open_at(d);
    struct store_event ev;
    struct err e = {0};
    struct since s = {0};
    int64_t nm;
    int out, del;

    begin(st);
    nm = name_id(st, "visit");
    ev = ev_of("v", 1, nm, 10, "{\"n\":1}");
    ev.source = "sync:crm";
    cr_assert_eq(store_event_upsert_owned(st, &ev, &out, &e), 0, "%s", e.msg);
    cr_assert_eq(out, 1, "inserted");
    cr_assert_eq(ev.id, 1);
    commit(st);
    begin(st);
    cr_assert_eq(store_event_upsert_owned(st, &ev, &out, &e), 0);
    cr_assert_eq(out, 0, "the same content: unchanged, no version");
    ev.props = "{\"n\":2}";
    cr_assert_eq(store_event_upsert_owned(st, &ev, &out, &e), 0);
    cr_assert_eq(out, 2, "updated");
    cr_assert_eq(ev.id, 2, "a new version with the next seq");
    ev.source = "csv";
    cr_assert_eq(store_event_upsert_owned(st, &ev, &out, &e), E_CONFLICT,
                 "another source cannot rewrite it");
    cr_assert_str_eq(e.msg, "event 'v' belongs to source 'sync:crm'");
    err_clear(&e);
    cr_assert_eq(store_event_delete_owned(st, "v", "csv", &del, &e), 0);
    cr_assert_eq(del, 0, "nor delete it");
    cr_assert_eq(store_event_delete_owned(st, "v", "sync:crm", &del, &e), 0);
    cr_assert_eq(del, 1);
    cr_assert_eq(store_event_delete_owned(st, "v", "sync:crm", &del, &e), 0);
    cr_assert_eq(del, 0, "deleting twice changes nothing");
    commit(st);
    cr_assert_eq(counts(st).events, 0, "a deleted event is not counted");
    cr_assert(get(st, "v").ev.deleted, "get shows the tombstone");
    begin(st);
    ev.source = "sync:crm";
    cr_assert_eq(store_event_upsert_owned(st, &ev, &out, &e), 0);
    cr_assert_eq(out, 2, "a deleted event comes back as an update");
    commit(st);
    cr_assert_eq(counts(st).events, 1);
    cr_assert_eq(store_events_since(st, 0, 0, 0, on_version, &s, &e), 0, "%s", e.msg);
    cr_assert_eq(s.n, 4, "insert, rewrite, tombstone, return");
    cr_assert_eq(s.prev[0], 0);
    cr_assert_eq(s.prev[1], 1);
    cr_assert_eq(s.prev[2], 2);
    cr_assert(s.deleted[2]);
    cr_assert_eq(s.prev[3], 3);
    memset(&s, 0, sizeof s);
    cr_assert_eq(store_events_since(st, 2, 1, 1, on_version, &s, &e), 0);
    cr_assert_eq(s.n, 1, "after seq 2, at most one");
    cr_assert_eq(s.id[0], 3);
    store_close(st);
    free(d);
}

UTEST(events, a_contacts_events_newest_first_and_the_live_export)
{
    char *d = test_store_location();
    struct store *st = open_at(d);
    struct list l = {0};
    struct err e = {0};
    int64_t nm;
    int del;

    begin(st);
    nm = name_id(st, "order");
    put(st, "old", 7, nm, 100);
    put(st, "new", 7, nm, 300);
    put(st, "mid", 7, nm, 200);
    put(st, "other", 8, nm, 250);
    commit(st);
    cr_assert_eq(store_events_of_contact(st, 7, 2, on_listed, &l, &e), 0, "%s", e.msg);
    cr_assert_eq(l.n, 2, "the limit");
    cr_assert_str_eq(l.ids[0], "new");
    cr_assert_str_eq(l.ids[1], "mid");
    begin(st);
    {
        struct store_event ev = ev_of("gone", 7, nm, 400, "{}");
        int out;
        ev.source = "sync:crm";
        cr_assert_eq(store_event_upsert_owned(st, &ev, &out, &e), 0);
        cr_assert_eq(store_event_delete_owned(st, "gone", "sync:crm", &del, &e), 0);
    }
    commit(st);
    memset(&l, 0, sizeof l);
    cr_assert_eq(store_events_of_contact(st, 7, 10, on_listed, &l, &e), 0);
    cr_assert_eq(l.n, 3, "deleted events are left out");
    memset(&l, 0, sizeof l);
    cr_assert_eq(store_events_live(st, 0, on_listed, &l, &e), 0);
    cr_assert_eq(l.n, 4, "the export: live events only");
    cr_assert_str_eq(l.ids[0], "old", "in seq order");
    memset(&l, 0, sizeof l);
    cr_assert_eq(store_events_live(st, 2, on_listed, &l, &e), 0);
    cr_assert_eq(l.n, 2, "after seq 2");
    store_close(st);
    free(d);
}

UTEST(events, anonymous_events_move_and_leave_the_list)
{
    char *d = test_store_location();
    struct store *st = open_at(d);
    struct store_event ev;
    struct err e = {0};
    struct list l = {0};
    int64_t nm, moved = -1;
    int ins;

    begin(st);
    nm = name_id(st, "visit");
    ev = ev_of("anon-1", 5, nm, 10, "{}");
    ev.anonymous = 1;
    cr_assert_eq(store_event_insert(st, &ev, &ins, &e), 0);
    ev = ev_of("anon-2", 5, nm, 20, "{}");
    ev.anonymous = 1;
    cr_assert_eq(store_event_insert(st, &ev, &ins, &e), 0);
    put(st, "known", 6, nm, 30);
    /* Moved in the same transaction that wrote them: read back from memory. */
    cr_assert_eq(store_events_move(st, 5, 6, &moved, &e), 0, "%s", e.msg);
    cr_assert_eq(moved, 2);
    commit(st);
    cr_assert_eq(get(st, "anon-1").ev.contact_id, 6);
    cr_assert_eq(counts(st).events, 3, "a move replaces, it does not add");
    begin(st);
    cr_assert_eq(store_events_move(st, 5, 6, &moved, &e), 0);
    cr_assert_eq(moved, 0, "nothing is left to move");
    commit(st);
    cr_assert_eq(store_events_of_contact(st, 6, 10, on_listed, &l, &e), 0);
    cr_assert_eq(l.n, 3);
    memset(&l, 0, sizeof l);
    cr_assert_eq(store_events_of_contact(st, 5, 10, on_listed, &l, &e), 0);
    cr_assert_eq(l.n, 0, "the anonymous contact has none left");
    store_close(st);
    free(d);
}

UTEST(events, large_batches_split_into_blocks_and_the_map_grows)
{
    char *d = test_store_location();
    struct store *st = open_at(d);
    char id[32];
    int64_t nm;
    int i, b;

    begin(st);
    nm = name_id(st, "order");
    for (i = 0; i < 70000; i++) { /* more than one block's 65,536 */
        snprintf(id, sizeof id, "big-%d", i);
        cr_assert_eq(put(st, id, 1 + i % 100, nm, i), 1);
    }
    cr_assert_eq(put(st, "big-3", 1, nm, 0), 0, "a duplicate across the block boundary");
    commit(st);
    for (b = 0; b < 5; b++) { /* batches past the map's three quarters: rebuilt bigger */
        begin(st);
        for (i = 0; i < 30000; i++) {
            snprintf(id, sizeof id, "more-%d-%d", b, i);
            cr_assert_eq(put(st, id, 1, nm, i), 1);
        }
        snprintf(id, sizeof id, "big-%d", 69999 - b);
        cr_assert_eq(put(st, id, 1, nm, 0), 0, "old keys survive each rebuild");
        commit(st);
    }
    cr_assert_eq(counts(st).events, 70000 + 5 * 30000);
    cr_assert_eq(get(st, "big-65536").ev.occurred_at, 65536, "read from the second block");
    store_close(st);
    st = open_at(d);
    begin(st);
    cr_assert_eq(put(st, "more-4-29999", 1, nm, 0), 0, "a new process builds the map from blocks");
    commit(st);
    store_close(st);
    free(d);
}

/* ---- the property reader against jansson ---- */

#include <jansson.h>

#include "store/store.h"

#include "rnd_json.h"

UTEST(props, the_reader_agrees_with_jansson_on_random_objects)
{
    struct buf scratch;
    int round, checked = 0;

    buf_init(&scratch);
    for (round = 0; round < 4000; round++) {
        json_t *o = json_object(), *keys = json_array();
        const char *names[STORE_MAX_PROPS];
        struct store_prop_value pv[STORE_MAX_PROPS];
        size_t flags = rnd(3) == 0 ? JSON_INDENT(2)
                       : rnd(2)    ? JSON_COMPACT | JSON_ENSURE_ASCII
                                   : JSON_COMPACT;
        char *text;
        int i, n, nk = 1 + (int)rnd(6);

        for (i = 0; i < nk; i++) {
            char *k = rnd_text();
            json_object_set_new(o, k, rnd_value(0));
            json_array_append_new(keys, json_string(k));
            free(k);
        }
        json_array_append_new(keys, json_string("absent key")); /* asked, never there */
        text = json_dumps(o, flags | JSON_SORT_KEYS);
        n = 1 + (int)rnd(STORE_MAX_PROPS);
        for (i = 0; i < n; i++)
            names[i] =
                json_string_value(json_array_get(keys, rnd((unsigned)json_array_size(keys))));
        store_props_find(text, names, n, pv, &scratch);
        for (i = 0; i < n; i++) {
            json_t *x = json_object_get(o, names[i]);
            if (json_is_string(x)) {
                cr_assert_eq(pv[i].kind, STORE_PROP_TEXT, "%s: '%s'", text, names[i]);
                cr_assert_eq(pv[i].len, json_string_length(x), "%s: '%s'", text, names[i]);
                cr_assert(memcmp(pv[i].text, json_string_value(x), pv[i].len) == 0, "%s", text);
            } else if (json_is_number(x)) {
                cr_assert_eq(pv[i].kind, STORE_PROP_NUMBER, "%s: '%s'", text, names[i]);
                cr_assert_eq(pv[i].num, json_number_value(x), "%s: '%s'", text, names[i]);
            } else if (json_is_boolean(x)) {
                cr_assert_eq(pv[i].kind, json_is_true(x) ? STORE_PROP_TRUE : STORE_PROP_FALSE,
                             "%s: '%s'", text, names[i]);
            } else {
                cr_assert_eq(pv[i].kind, STORE_PROP_OTHER, "%s: '%s'", text, names[i]);
            }
            checked++;
        }
        free(text);
        json_decref(o);
        json_decref(keys);
    }
    cr_assert_gt(checked, 20000);
    buf_release(&scratch);
}

UTEST(props, broken_text_reads_as_absent_never_past_its_end)
{
    static const char *bad[] = {"",
                                "[1]",
                                "{",
                                "{\"a\"",
                                "{\"a\":",
                                "{\"a\":\"x",
                                "{\"a\":\"\\u12\"}",
                                "{\"a\":\"\\ud800\"}",
                                "{\"b\":{\"c\":[}",
                                "nonsense",
                                "{\"a\" 1}",
                                "{\"b\":\"open,\"a\":1}"};
    const char *names[] = {"a"};
    struct store_prop_value pv[1];
    struct buf scratch;
    size_t i;

    buf_init(&scratch);
    for (i = 0; i < sizeof bad / sizeof *bad; i++) {
        store_props_find(bad[i], names, 1, pv, &scratch);
        cr_assert_eq(pv[0].kind, STORE_PROP_OTHER, "'%s'", bad[i]);
    }
    cr_assert_eq(store_props_find("{\"a\":1,", names, 1, pv, &scratch), 1,
                 "what was read before the text broke off counts");
    cr_assert_eq(store_props_find("{\"a\":1,\"a\":2}", names, 1, pv, &scratch), 1);
    cr_assert_eq(pv[0].num, 1, "the first of duplicate keys counts, as in SQLite");
    buf_release(&scratch);
}

UTEST(events, one_version_by_seq_short_and_long_texts)
{
    char *d = test_store_location();
    struct store *st = open_at(d);
    struct err e = {0};
    char *big = malloc(5000);
    struct store_event ev;
    struct got g = {0};
    int64_t nm;
    int ins;

    memcpy(big, "{\"note\":\"", 9);
    memset(big + 9, 'x', 4980);
    memcpy(big + 4989, "\"}", 3);
    begin(st);
    nm = name_id(st, "order");
    put(st, "short", 1, nm, 10);
    ev = ev_of("long", 2, nm, 20, big);
    ev.source = "sync:crm";
    cr_assert_eq(store_event_insert(st, &ev, &ins, &e), 0);
    commit(st);
    cr_assert_eq(store_event_by_seq(st, 1, grab, &g, &e), 0, "%s", e.msg);
    cr_assert_str_eq(g.event_id, "short");
    cr_assert_str_eq(g.props, "{\"n\":1}");
    cr_assert_str_eq(g.source, "csv");
    cr_assert_str_eq(g.name, "order");
    memset(&g, 0, sizeof g);
    cr_assert_eq(store_event_by_seq(st, 2, grab, &g, &e), 0, "%s", e.msg);
    cr_assert_str_eq(g.event_id, "long");
    cr_assert_str_eq(g.source, "sync:crm");
    cr_assert_eq(g.ev.contact_id, 2, "a long text is read from the whole block");
    cr_assert(strncmp(g.props, "{\"note\":\"xxxx", 13) == 0, "%s", g.props);
    cr_assert_eq(store_event_by_seq(st, 3, grab, &g, &e), E_NOTFOUND);
    free(big);
    store_close(st);
    free(d);
}

/* A transaction that writes a block before its first key lookup (a large move, here)
 * and is rolled back must not leave the key map believing in its versions: the seqs
 * are handed out again, and the next transaction's keys must still be found. */
UTEST(events, a_rolled_back_block_does_not_blind_the_key_map)
{
    char *d = test_store_location();
    struct store *st = open_at(d);
    struct store_event ev;
    struct err e = {0};
    char id[32];
    int64_t nm, moved;
    int i, ins;

    begin(st);
    nm = name_id(st, "visit");
    for (i = 0; i < 66000; i++) {
        snprintf(id, sizeof id, "a-%d", i);
        ev = ev_of(id, 5, nm, i, "{}");
        ev.anonymous = 1;
        cr_assert_eq(store_event_insert(st, &ev, &ins, &e), 0, "%s", e.msg);
    }
    commit(st);
    begin(st);
    cr_assert_eq(store_events_move(st, 5, 6, &moved, &e), 0, "%s", e.msg); /* writes a block */
    cr_assert_eq(put(st, "x", 6, nm, 1), 1);
    store_rollback(st);
    begin(st);
    cr_assert_eq(put(st, "y", 6, nm, 1), 1);
    commit(st);
    begin(st);
    cr_assert_eq(put(st, "y", 6, nm, 2), 0, "the key of the next committed block is known");
    commit(st);
    cr_assert_eq(counts(st).events, 66001);
    store_close(st);
    free(d);
}
