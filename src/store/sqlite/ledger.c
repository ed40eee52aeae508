/* store/sqlite/ledger.c -- the send ledger (store.h, "the send ledger"): one row per
 * recipient per run in table messages, claimed under leases (promise 3).
 *
 * DESIGN: SQLite has one writer at a time, and every function here that writes runs
 * inside store_begin()'s BEGIN IMMEDIATE, so a claim is a SELECT of the due ids followed
 * by an UPDATE of each, under the write lock: no other connection can claim between the
 * two, and a row is taken by one claimer only. PostgreSQL will do the same in one
 * statement with FOR UPDATE SKIP LOCKED.
 *
 * Indexes (schema 11): (run_id, state) lists each state of a run in id order (the rowid
 * ends every entry), so a claim seeks each due state and merges at most `limit` rows of
 * each, never sorting the run; retry rows have a partial index on (run_id, next_at)
 * (the earliest due first; next_due is one probe), dead rows one of their own (the
 * dead-letter list across runs pages through it). The claimed rows are read back
 * one by one with their contact through a cached statement, so a claim allocates
 * nothing per row: the callback sees SQLite's own column memory. */
#include <stdlib.h>
#include <string.h>

#include "sqlite_int.h"

/* A claim of up to this many rows keeps its ids on the stack. */
#define CLAIM_STACK 256

#define MSG_COLS                                                                                   \
    "m.id, m.run_id, m.contact_id, m.state, m.attempts, m.next_at, m.updated_at, m.last_error,"    \
    " m.provider_message_id, c.external_id, c.email, c.attrs, c.consent, coalesce(c.deleted, 1),"  \
    " m.events"
#define MSG_FROM " FROM messages m LEFT JOIN contacts c ON c.id = m.contact_id"
/* The first page (ids above ?2, at most ?3) of the run's rows in one state. */
#define PAGE_OF(s)                                                                                 \
    "SELECT id FROM (SELECT id FROM messages WHERE run_id = ?1 AND state = " #s " AND id > ?2"     \
    " ORDER BY id LIMIT ?3)"

static const struct sq_def q_insert = {
    SQ_MSG_INSERT, "INSERT OR IGNORE INTO messages(run_id, contact_id, state, updated_at)"
                   " VALUES(?1, ?2, 0, ?3)"};
static const struct sq_def q_cursor = {
    SQ_MSG_CURSOR, "UPDATE campaign_runs SET cursor = ?2, ledgered = ?3, updated_at = ?4"
                   " WHERE id = ?1"};
/* Due rows of a run, with the state each is in: the lowest queued ids, the retries due
 * earliest (their index's order: a sort of every due retry after an outage would cost
 * each claim as much), and the lowest sending ids whose lease ran out; each branch read
 * in index order up to the limit, the lowest ids of the union taken. */
static const struct sq_def q_due = {
    SQ_MSG_DUE,
    "SELECT id, state FROM ("
    " SELECT id, state FROM (SELECT id, state FROM messages WHERE run_id = ?1 AND state = 0"
    "  ORDER BY id LIMIT ?3)"
    " UNION ALL SELECT id, state FROM (SELECT id, state FROM messages WHERE run_id = ?1"
    "  AND state = 3 AND next_at <= ?2 ORDER BY next_at LIMIT ?3)"
    " UNION ALL SELECT id, state FROM (SELECT id, state FROM messages WHERE run_id = ?1"
    "  AND state = 1 AND lease_until <= ?2 ORDER BY id LIMIT ?3))"
    " ORDER BY id LIMIT ?3"};
static const struct sq_def q_take = {
    SQ_MSG_TAKE, "UPDATE messages SET state = 1, lease_owner = ?2, lease_until = ?3,"
                 " attempts = attempts + 1, next_at = 0, updated_at = ?4 WHERE id = ?1"};
static const struct sq_def q_dups = {
    SQ_MSG_DUPS,
    "UPDATE campaign_runs SET possible_duplicates = possible_duplicates + ?2 WHERE id = ?1"};
static const struct sq_def q_claimed = {SQ_MSG_CLAIMED,
                                        "SELECT " MSG_COLS MSG_FROM " WHERE m.id = ?1"};
static const struct sq_def q_renew = {SQ_MSG_RENEW,
                                      "UPDATE messages SET lease_until = ?3"
                                      " WHERE run_id = ?1 AND state = 1 AND lease_owner = ?2"};
static const struct sq_def q_complete = {
    SQ_MSG_COMPLETE,
    "UPDATE messages SET state = ?3, next_at = ?4, last_error = ?5, provider_message_id = ?6,"
    " lease_owner = NULL, lease_until = 0, updated_at = ?7,"
    " attempts = attempts - (?3 = 0)" /* released unsent: the claim was no attempt */
    " WHERE id = ?1 AND state = 1 AND lease_owner = ?2"};
/* Each run's sending rows through the index, rather than a scan of every message. */
static const struct sq_def q_recover = {
    SQ_MSG_RECOVER, "UPDATE messages SET lease_until = min(lease_until, ?2)"
                    " WHERE run_id IN (SELECT id FROM campaign_runs) AND state = 1"
                    " AND substr(lease_owner, 1, length(?1)) = ?1"};
static const struct sq_def q_move = {
    SQ_MSG_MOVE,
    "UPDATE messages SET state = ?3, last_error = coalesce(?4, last_error),"
    " attempts = CASE WHEN ?3 = 0 THEN 0 ELSE attempts END,"
    " next_at = CASE WHEN ?3 = 3 THEN next_at ELSE 0 END,"
    " lease_owner = NULL, lease_until = 0, updated_at = ?5 WHERE run_id = ?1 AND state = ?2"
    " AND (state != 1 OR lease_until <= ?5)"}; /* a sending row: only once its lease ran out */
/* The triggers of schema 11 keep run_counts. */
static const struct sq_def q_count = {SQ_MSG_COUNT,
                                      "SELECT state, n FROM run_counts WHERE run_id = ?1"};
static const struct sq_def q_next_due = {
    SQ_MSG_NEXT_DUE, "SELECT min(next_at) FROM messages WHERE run_id = ?1 AND state = 3"};
static const struct sq_def q_list_state = {
    SQ_MSG_LIST_STATE, "SELECT " MSG_COLS MSG_FROM " WHERE m.run_id = ?1 AND m.state = ?4"
                       " AND m.id > ?2 ORDER BY m.id LIMIT ?3"};
static const struct sq_def q_list_any =
    {SQ_MSG_LIST_ANY,
     "SELECT " MSG_COLS
         MSG_FROM " WHERE m.id IN (" PAGE_OF(0) " UNION ALL " PAGE_OF(1) " UNION ALL " PAGE_OF(2) " UNION ALL " PAGE_OF(
             3) " UNION ALL " PAGE_OF(4) " UNION ALL " PAGE_OF(5) " UNION ALL " PAGE_OF(6) ") "
                                                                                           "ORDER "
                                                                                           "BY "
                                                                                           "m.id "
                                                                                           "LIMIT "
                                                                                           "?3"};
#define DEAD_WHERE                                                                                 \
    " m.state = 5 AND m.id > ?2 AND (?4 IS NULL OR instr(m.last_error, ?4) > 0)"                   \
    " ORDER BY m.id LIMIT ?3"
static const struct sq_def q_dead_run = {SQ_MSG_DEAD_RUN, "SELECT " MSG_COLS MSG_FROM
                                                          " WHERE m.run_id = ?1 AND" DEAD_WHERE};
static const struct sq_def q_dead_all = {SQ_MSG_DEAD_ALL,
                                         "SELECT " MSG_COLS MSG_FROM " WHERE" DEAD_WHERE};
static const struct sq_def q_dead_runs = {
    SQ_MSG_DEAD_RUNS, "SELECT run_id, count(*) FROM messages WHERE state = 5"
                      " AND (?1 = 0 OR run_id = ?1) AND (?2 IS NULL OR instr(last_error, ?2) > 0)"
                      " AND run_id NOT IN (SELECT id FROM campaign_runs WHERE state = 'cancelled')"
                      " GROUP BY run_id ORDER BY run_id"};
/* A page of a run's rows by id, filtered: state (-1 any), every bit of an events mask, a
 * substring of the last error. The drill-down of a run: it walks the run's rows in id
 * order (messages_run_contact seeks the run), so a rare filter costs a scan of the run. */
static const struct sq_def q_list_filter = {
    SQ_MSG_LIST_FILTER, "SELECT " MSG_COLS MSG_FROM " WHERE m.run_id = ?1 AND m.id > ?2"
                        " AND (?4 < 0 OR m.state = ?4) AND (m.events & ?5) = ?5"
                        " AND (?6 IS NULL OR instr(m.last_error, ?6) > 0) ORDER BY m.id LIMIT ?3"};
/* The run's rows that did not go out, by their last error. */
static const struct sq_def q_reasons = {
    SQ_MSG_REASONS,
    "SELECT state, last_error, count(*) FROM messages WHERE run_id = ?1 AND state IN (3, 4, 5, 6)"
    " GROUP BY state, last_error ORDER BY count(*) DESC LIMIT ?2"};
static const struct sq_def q_replay = {
    SQ_MSG_REPLAY, "UPDATE messages SET state = 0, attempts = 0, next_at = 0, lease_owner = NULL,"
                   " lease_until = 0, updated_at = ?3 WHERE run_id = ?1 AND state = 5"
                   " AND (?2 IS NULL OR instr(last_error, ?2) > 0)"};

/* ---- rows to the callers ---------------------------------------------------------- */

/* A row of MSG_COLS; with_contact adds what only claims carry. */
static void msg_of_row(sqlite3_stmt *s, int with_contact, struct store_msg *m)
{
    memset(m, 0, sizeof *m);
    m->id = sqlite3_column_int64(s, 0);
    m->run_id = sqlite3_column_int64(s, 1);
    m->contact_id = sqlite3_column_int64(s, 2);
    m->state = sqlite3_column_int(s, 3);
    m->attempts = sqlite3_column_int(s, 4);
    m->next_at = sqlite3_column_int64(s, 5);
    m->updated_at = sqlite3_column_int64(s, 6);
    m->last_error = sq_col_text(s, 7);
    m->provider_message_id = sq_col_text(s, 8);
    m->external_id = sq_col_text(s, 9);
    m->email = sq_col_text(s, 10);
    m->events = (unsigned)sqlite3_column_int64(s, 14);
    if (!with_contact)
        return;
    m->attrs_json = sq_col_text(s, 11);
    m->consent = (enum consent_state)sqlite3_column_int(s, 12);
    m->contact_deleted = sqlite3_column_int(s, 13);
}

struct msg_visit {
    store_msg_fn fn;
    void *ctx;
};

static int row_msg(sqlite3_stmt *s, void *ctx)
{
    struct msg_visit *v = ctx;
    struct store_msg m;

    msg_of_row(s, 0, &m);
    return v->fn(v->ctx, &m);
}

/* ---- creating and claiming ---------------------------------------------------------- */

int store_messages_create(struct store *st, int64_t run_id, const int64_t *contact_ids, size_t n,
                          int64_t cursor, int ledgered, int64_t now, int64_t *created,
                          struct err *e)
{
    struct sq q;
    size_t i;
    int rc;

    ASSERT(st->in_tx);
    *created = 0;
    if ((rc = sq_prep(&q, st, &q_insert, e)))
        return rc;
    for (i = 0; i < n; i++) {
        sq_i64(&q, 1, run_id);
        sq_i64(&q, 2, contact_ids[i]);
        sq_i64(&q, 3, now);
        rc = sq_step(&q, "create ledger rows", e);
        if (rc < 0)
            break;
        *created += sq_changes(st);
        sq_reset(&q);
    }
    sq_done(&q);
    if (rc < 0)
        return rc;
    if ((rc = sq_prep(&q, st, &q_cursor, e)))
        return rc;
    sq_i64(&q, 1, run_id);
    sq_i64(&q, 2, cursor);
    sq_int(&q, 3, ledgered);
    sq_i64(&q, 4, now);
    return sq_exec(&q, "move the run's cursor", e);
}

/* Up to cap due ids of run (lowest first) into ids, with 1 in redo for a row whose
 * lease ran out; *n of them. */
static int due_ids(struct store *st, int64_t run_id, int64_t now, int cap, int64_t *ids,
                   unsigned char *redo, int *n, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_due, e);

    *n = 0;
    if (rc)
        return rc;
    sq_i64(&q, 1, run_id);
    sq_i64(&q, 2, now);
    sq_int(&q, 3, cap);
    while ((rc = sq_step(&q, "find due ledger rows", e)) > 0 && *n < cap) {
        ids[*n] = sqlite3_column_int64(q.s, 0);
        redo[*n] = sqlite3_column_int(q.s, 1) == MSG_SENDING;
        ++*n;
    }
    sq_done(&q);
    return rc < 0 ? rc : 0;
}

/* Takes ids[0..n) for owner until `until`; *redone counts those that were redeliveries. */
static int take_ids(struct store *st, const int64_t *ids, const unsigned char *redo, int n,
                    const char *owner, int64_t until, int64_t now, int64_t *redone, struct err *e)
{
    struct sq q;
    int i, rc = sq_prep(&q, st, &q_take, e);

    *redone = 0;
    for (i = 0; rc == 0 && i < n; i++) {
        sq_i64(&q, 1, ids[i]);
        sq_text(&q, 2, owner);
        sq_i64(&q, 3, until);
        sq_i64(&q, 4, now);
        rc = sq_step(&q, "claim a ledger row", e);
        *redone += redo[i];
        sq_reset(&q);
    }
    sq_done(&q);
    return rc < 0 ? rc : 0;
}

/* Shows the claimed rows ids[0..n) to fn, each with its contact as it is now. */
static int show_claimed(struct store *st, const int64_t *ids, const unsigned char *redo, int n,
                        store_msg_fn fn, void *ctx, struct err *e)
{
    struct store_msg m;
    struct sq q;
    int i, rc = sq_prep(&q, st, &q_claimed, e);

    for (i = 0; rc == 0 && i < n; i++) {
        sq_i64(&q, 1, ids[i]);
        rc = sq_step(&q, "read a claimed ledger row", e);
        if (rc == 0)
            rc = ERR(e, E_INTERNAL, "store: claimed ledger row %lld vanished", (long long)ids[i]);
        if (rc < 0)
            break;
        msg_of_row(q.s, 1, &m);
        m.redelivery = redo[i];
        rc = fn(ctx, &m);
        sq_reset(&q);
    }
    sq_done(&q);
    return rc;
}

int store_messages_claim(struct store *st, int64_t run_id, const char *owner, int64_t now,
                         int64_t lease_ms, int limit, store_msg_fn fn, void *ctx, struct err *e)
{
    int64_t stack_ids[CLAIM_STACK], *ids = stack_ids, redone;
    unsigned char stack_redo[CLAIM_STACK], *redo = stack_redo;
    struct sq q;
    int n, rc;

    ASSERT(st->in_tx);
    if (owner == NULL || owner[0] == '\0' || lease_ms <= 0)
        return ERR(e, E_INVAL, "store: a claim needs an owner and a lease");
    if (limit <= 0)
        return 0;
    if (limit > CLAIM_STACK) { /* one allocation per claim, never one per row */
        ids = xmalloc((size_t)limit * sizeof *ids);
        redo = xmalloc((size_t)limit);
    }
    rc = due_ids(st, run_id, now, limit, ids, redo, &n, e);
    if (rc == 0)
        rc = take_ids(st, ids, redo, n, owner, now + lease_ms, now, &redone, e);
    if (rc == 0 && redone > 0 && (rc = sq_prep(&q, st, &q_dups, e)) == 0) {
        sq_i64(&q, 1, run_id);
        sq_i64(&q, 2, redone);
        rc = sq_exec(&q, "count possible duplicates", e);
    }
    if (rc == 0)
        rc = show_claimed(st, ids, redo, n, fn, ctx, e);
    if (ids != stack_ids) {
        free(ids);
        free(redo);
    }
    return rc;
}

int store_messages_renew(struct store *st, int64_t run_id, const char *owner, int64_t now,
                         int64_t lease_ms, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, &q_renew, e)))
        return rc;
    sq_i64(&q, 1, run_id);
    sq_text(&q, 2, owner);
    sq_i64(&q, 3, now + lease_ms);
    return sq_exec(&q, "renew leases", e);
}

/* The owner that still holds the row may write its outcome even after its lease ran
 * out, as long as nobody reclaimed it: the send happened, and refusing the result
 * would only send it again. */
int store_message_complete(struct store *st, const char *owner, const struct store_msg *m,
                           int64_t now, int *held, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    *held = 0;
    if (m->state < 0 || m->state >= MSG_STATES || m->state == MSG_SENDING)
        return ERR(e, E_INVAL, "store: a ledger row cannot end in state %d", m->state);
    if ((rc = sq_prep(&q, st, &q_complete, e)))
        return rc;
    sq_i64(&q, 1, m->id);
    sq_text(&q, 2, owner);
    sq_int(&q, 3, m->state);
    sq_i64(&q, 4, m->state == MSG_RETRY ? m->next_at : 0);
    sq_text(&q, 5, m->last_error);
    sq_text(&q, 6, m->provider_message_id);
    sq_i64(&q, 7, now);
    rc = sq_exec(&q, "complete a ledger row", e);
    if (rc == 0)
        *held = sq_changes(st) > 0;
    return rc;
}

int store_messages_recover(struct store *st, const char *owner_prefix, int64_t now, int64_t *count,
                           struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    *count = 0;
    if (owner_prefix == NULL)
        return ERR(e, E_INVAL, "store: recovering leases needs an owner prefix");
    if ((rc = sq_prep(&q, st, &q_recover, e)))
        return rc;
    sq_text(&q, 1, owner_prefix);
    sq_i64(&q, 2, now);
    rc = sq_exec(&q, "recover leases", e);
    if (rc == 0)
        *count = sq_changes(st);
    return rc;
}

/* ---- moving, counting, listing ------------------------------------------------------ */

/* One UPDATE per state in mask, each through the (run_id, state) index. */
int store_messages_move(struct store *st, int64_t run_id, unsigned mask, int to, const char *reason,
                        int64_t now, int64_t *count, struct err *e)
{
    struct sq q;
    int s, rc = 0;

    ASSERT(st->in_tx);
    *count = 0;
    if (to < 0 || to >= MSG_STATES)
        return ERR(e, E_INVAL, "store: no ledger state %d", to);
    for (s = 0; rc == 0 && s < MSG_STATES; s++) {
        if (!(mask & (1u << s)) || s == to)
            continue;
        if ((rc = sq_prep(&q, st, &q_move, e)))
            break;
        sq_i64(&q, 1, run_id);
        sq_int(&q, 2, s);
        sq_int(&q, 3, to);
        sq_text(&q, 4, reason);
        sq_i64(&q, 5, now);
        rc = sq_exec(&q, "move ledger rows", e);
        if (rc == 0)
            *count += sq_changes(st);
    }
    return rc;
}

int store_messages_filter(struct store *st, int64_t run_id, int state, unsigned events,
                          const char *reason, int64_t after_id, int limit, store_msg_fn fn,
                          void *ctx, struct err *e)
{
    struct msg_visit v = {fn, ctx};
    struct sq q;
    int rc = sq_prep(&q, st, &q_list_filter, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, run_id);
    sq_i64(&q, 2, after_id);
    sq_int(&q, 3, limit > 0 ? limit : -1);
    sq_int(&q, 4, state);
    sq_i64(&q, 5, events);
    sq_text(&q, 6, reason);
    return sq_each(&q, "filter a run's ledger", row_msg, &v, NULL, e);
}

struct reason_visit {
    int (*fn)(void *ctx, int state, const char *reason, int64_t n);
    void *ctx;
};

static int row_reason(sqlite3_stmt *s, void *ctx)
{
    struct reason_visit *v = ctx;

    return v->fn(v->ctx, sqlite3_column_int(s, 0), sq_col_text(s, 1), sqlite3_column_int64(s, 2));
}

int store_messages_reasons(struct store *st, int64_t run_id, int limit,
                           int (*fn)(void *ctx, int state, const char *reason, int64_t n),
                           void *ctx, struct err *e)
{
    struct reason_visit v = {fn, ctx};
    struct sq q;
    int rc = sq_prep(&q, st, &q_reasons, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, run_id);
    sq_int(&q, 2, limit > 0 ? limit : -1);
    return sq_each(&q, "count a run's reasons", row_reason, &v, NULL, e);
}

int store_messages_count(struct store *st, int64_t run_id, int64_t counts[MSG_STATES],
                         struct err *e)
{
    struct sq q;
    int s, rc = sq_prep(&q, st, &q_count, e);

    memset(counts, 0, MSG_STATES * sizeof *counts);
    if (rc)
        return rc;
    sq_i64(&q, 1, run_id);
    while ((rc = sq_step(&q, "count ledger rows", e)) > 0) {
        s = sqlite3_column_int(q.s, 0);
        if (s >= 0 && s < MSG_STATES)
            counts[s] = sqlite3_column_int64(q.s, 1);
    }
    sq_done(&q);
    return rc;
}

int store_messages_next_due(struct store *st, int64_t run_id, int64_t *at, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_next_due, e);

    *at = 0;
    if (rc)
        return rc;
    sq_i64(&q, 1, run_id);
    return sq_ints(&q, at, NULL, "find the next retry", e);
}

int store_messages_list(struct store *st, int64_t run_id, int state, int64_t after_id, int limit,
                        store_msg_fn fn, void *ctx, struct err *e)
{
    struct msg_visit v = {fn, ctx};
    struct sq q;
    int rc;

    if (state >= MSG_STATES)
        return ERR(e, E_INVAL, "store: no ledger state %d", state);
    rc = sq_prep(&q, st, state < 0 ? &q_list_any : &q_list_state, e);
    if (rc)
        return rc;
    sq_i64(&q, 1, run_id);
    sq_i64(&q, 2, after_id);
    sq_int(&q, 3, limit > 0 ? limit : -1);
    if (state >= 0)
        sq_int(&q, 4, state);
    return sq_each(&q, "list ledger rows", row_msg, &v, NULL, e);
}

/* ---- dead letters ------------------------------------------------------------------- */

int store_messages_dead(struct store *st, int64_t run_id, const char *reason, int64_t after_id,
                        int limit, store_msg_fn fn, void *ctx, struct err *e)
{
    struct msg_visit v = {fn, ctx};
    struct sq q;
    int rc = sq_prep(&q, st, run_id ? &q_dead_run : &q_dead_all, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, run_id);
    sq_i64(&q, 2, after_id);
    sq_int(&q, 3, limit > 0 ? limit : -1);
    sq_text(&q, 4, reason);
    return sq_each(&q, "list dead ledger rows", row_msg, &v, NULL, e);
}

struct run_counts {
    int64_t *run, *count;
    size_t n, cap;
};

static int add_run_count(sqlite3_stmt *s, void *ctx)
{
    struct run_counts *runs = ctx;

    if (runs->n == runs->cap) {
        runs->cap = runs->cap ? runs->cap * 2 : 16;
        runs->run = xrealloc(runs->run, runs->cap * sizeof *runs->run);
        runs->count = xrealloc(runs->count, runs->cap * sizeof *runs->count);
    }
    runs->run[runs->n] = sqlite3_column_int64(s, 0);
    runs->count[runs->n++] = sqlite3_column_int64(s, 1);
    return 0;
}

/* The runs touched are found first, then each run's rows are moved through the index
 * and reported (the callback may write: it sees a run after its rows have moved). */
int store_messages_replay_dead(struct store *st, int64_t run_id, const char *reason, int64_t now,
                               int (*fn)(void *ctx, int64_t run_id, int64_t count), void *ctx,
                               struct err *e)
{
    struct run_counts runs = {0};
    struct sq q;
    size_t i;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, &q_dead_runs, e)))
        return rc;
    sq_i64(&q, 1, run_id);
    sq_text(&q, 2, reason);
    rc = sq_each(&q, "find dead ledger rows", add_run_count, &runs, NULL, e);
    for (i = 0; rc == 0 && i < runs.n; i++) {
        if ((rc = sq_prep(&q, st, &q_replay, e)))
            break;
        sq_i64(&q, 1, runs.run[i]);
        sq_text(&q, 2, reason);
        sq_i64(&q, 3, now);
        rc = sq_exec(&q, "replay dead ledger rows", e);
        runs.count[i] = sq_changes(st);
    }
    for (i = 0; rc == 0 && fn && i < runs.n; i++)
        rc = fn(ctx, runs.run[i], runs.count[i]);
    free(runs.run);
    free(runs.count);
    return rc;
}
