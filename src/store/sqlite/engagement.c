/* store/sqlite/engagement.c -- message events, the counters kept from them, and the
 * webhook inbox (store.h, "engagement"; schema 12).
 *
 * DESIGN: an event is one row of message_events; its uniqueness on (source, source_id)
 * is a partial unique index, so a duplicate is an INSERT OR IGNORE that changes nothing.
 * Counters are plain rows, run_stats per (run, metric) and run_minutes per (run, minute,
 * metric), added to by upserts inside the transaction that stored the events they count
 * (the caller adds a batch's deltas once per key), so a counter never disagrees with the
 * events committed. The send outcomes reach run_minutes through a trigger on the ledger
 * (schema 12). The inbox is claimed like the ledger: under the write lock, a SELECT of the
 * due ids, then an UPDATE of each. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite_int.h"

#define MEV_COLS                                                                                   \
    "id, source, source_id, kind, coalesce(run_id, 0), coalesce(contact_id, 0),"                   \
    " coalesce(message_row, 0), queue_id, email, at, received_at, reason, url, user_agent,"        \
    " machine, coalesce(value, 0)"
#define ENG_COLS                                                                                   \
    "m.id, m.run_id, m.contact_id, coalesce(r.campaign_id, 0), m.state, m.events, m.updated_at,"   \
    " c.external_id, c.email"
#define ENG_FROM                                                                                   \
    " FROM messages m LEFT JOIN campaign_runs r ON r.id = m.run_id"                                \
    " LEFT JOIN contacts c ON c.id = m.contact_id"
#define INBOX_COLS "id, hook, dedupe, body, received_at, state, attempts, events, error"

static const struct sq_def q_mev_insert = {
    SQ_MEV_INSERT,
    "INSERT OR IGNORE INTO message_events(source, source_id, kind, run_id, contact_id,"
    " message_row, queue_id, email, at, received_at, reason, url, user_agent, machine, value)"
    " VALUES(?1, ?2, ?3, nullif(?4, 0), nullif(?5, 0), nullif(?6, 0), ?7, ?8, ?9, ?10, ?11,"
    " ?12, ?13, ?14, ?15)"};
static const struct sq_def q_mev_list_run = {
    SQ_MEV_LIST_RUN, "SELECT " MEV_COLS " FROM message_events WHERE run_id = ?1 AND id > ?2"
                     " ORDER BY id LIMIT ?3"};
static const struct sq_def q_mev_list_run_kind = {
    SQ_MEV_LIST_RUN_KIND, "SELECT " MEV_COLS " FROM message_events WHERE run_id = ?1"
                          " AND kind = ?4 AND id > ?2 ORDER BY id LIMIT ?3"};
static const struct sq_def q_mev_list_unknown = {
    SQ_MEV_LIST_UNKNOWN, "SELECT " MEV_COLS " FROM message_events WHERE run_id IS NULL"
                         " AND id > ?2 AND (?4 = 0 OR kind = ?4) ORDER BY id LIMIT ?3"};
static const struct sq_def q_run_log_add = {
    SQ_RUN_LOG_ADD,
    "INSERT INTO run_log(run_id, at, kind, detail, count) VALUES(?1, ?2, ?3, ?4, ?5)"};
static const struct sq_def q_run_log_list = {
    SQ_RUN_LOG_LIST, "SELECT id, run_id, at, kind, detail, count FROM run_log"
                     " WHERE run_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"};
static const struct sq_def q_journal_get = {SQ_JOURNAL_GET,
                                            "SELECT applied FROM journals WHERE name = ?1"};
static const struct sq_def q_journal_set = {SQ_JOURNAL_SET,
                                            "INSERT INTO journals(name, applied) VALUES(?1, ?2)"
                                            " ON CONFLICT(name) DO UPDATE SET applied = ?2"};
static const struct sq_def q_eng_by_run_contact = {SQ_ENG_BY_RUN_CONTACT,
                                                   "SELECT " ENG_COLS ENG_FROM
                                                   " WHERE m.run_id = ?1 AND m.contact_id = ?2"};
static const struct sq_def q_eng_by_queue_id = {
    SQ_ENG_BY_QUEUE_ID, "SELECT " ENG_COLS ENG_FROM " WHERE m.provider_message_id = ?1"
                        " ORDER BY m.id DESC LIMIT 1"};
static const struct sq_def q_eng_latest = {
    SQ_ENG_LATEST, "SELECT " ENG_COLS ENG_FROM " WHERE m.contact_id = ?1 AND m.updated_at >= ?2"
                   " AND (m.events & ?3) = ?3 ORDER BY m.id DESC LIMIT 1"};
static const struct sq_def q_eng_of_contact = {
    SQ_ENG_OF_CONTACT, "SELECT " ENG_COLS ENG_FROM " WHERE m.contact_id = ?1 AND m.id < ?2"
                       " ORDER BY m.id DESC LIMIT ?3"};
static const struct sq_def q_eng_set_events = {SQ_ENG_SET_EVENTS,
                                               "UPDATE messages SET events = ?2 WHERE id = ?1"};
static const struct sq_def q_stat_run = {
    SQ_STAT_RUN, "INSERT INTO run_stats(run_id, metric, n, x) VALUES(?1, ?2, ?3, ?4)"
                 " ON CONFLICT(run_id, metric) DO UPDATE SET n = n + ?3, x = x + ?4"};
static const struct sq_def q_stat_minute = {
    SQ_STAT_MINUTE,
    "INSERT INTO run_minutes(run_id, minute, metric, n, x) VALUES(?1, ?2, ?3, ?4, ?5)"
    " ON CONFLICT(run_id, minute, metric) DO UPDATE SET n = n + ?4, x = x + ?5"};
static const struct sq_def q_stat_of_run = {
    SQ_STAT_OF_RUN, "SELECT metric, n, x FROM run_stats WHERE run_id = ?1 ORDER BY metric"};
static const struct sq_def q_stat_minutes_run = {
    SQ_STAT_MINUTES_RUN, "SELECT run_id, minute, metric, n, x FROM run_minutes"
                         " WHERE run_id = ?1 AND minute >= ?2 AND minute < ?3 ORDER BY minute"};
static const struct sq_def q_stat_minutes_all = {
    SQ_STAT_MINUTES_ALL, "SELECT run_id, minute, metric, n, x FROM run_minutes"
                         " WHERE minute >= ?1 AND minute < ?2 ORDER BY minute"};
static const struct sq_def q_inbox_insert = {
    SQ_INBOX_INSERT,
    "INSERT INTO webhook_inbox(hook, dedupe, body, received_at) VALUES(?1, ?2, ?3, ?4)"};
static const struct sq_def q_inbox_due = {
    SQ_INBOX_DUE, "SELECT id FROM webhook_inbox WHERE state = 0 AND lease_until <= ?1"
                  " ORDER BY id LIMIT ?2"};
static const struct sq_def q_inbox_take = {
    SQ_INBOX_TAKE, "UPDATE webhook_inbox SET lease_owner = ?2, lease_until = ?3,"
                   " attempts = attempts + 1 WHERE id = ?1"};
static const struct sq_def q_inbox_read = {SQ_INBOX_READ, "SELECT " INBOX_COLS
                                                          " FROM webhook_inbox WHERE id = ?1"};
static const struct sq_def q_inbox_finish = {
    SQ_INBOX_FINISH, "UPDATE webhook_inbox SET state = ?3, events = ?4, error = ?5, done_at = ?6,"
                     " lease_owner = NULL, lease_until = 0"
                     " WHERE id = ?1 AND state = 0 AND lease_owner = ?2"};
static const struct sq_def q_inbox_stats = {
    SQ_INBOX_STATS, "SELECT (SELECT count(*) FROM webhook_inbox WHERE state = 0),"
                    " coalesce((SELECT min(received_at) FROM webhook_inbox WHERE state = 0), 0),"
                    " (SELECT count(*) FROM webhook_inbox WHERE state = 2)"};
static const struct sq_def q_inbox_retry_one = {
    SQ_INBOX_RETRY_ONE,
    "UPDATE webhook_inbox SET state = 0, error = NULL, lease_until = 0, done_at = 0"
    " WHERE id = ?1 AND state = 2"};
static const struct sq_def q_inbox_retry_all = {
    SQ_INBOX_RETRY_ALL, "UPDATE webhook_inbox SET state = 0, error = NULL, lease_until = 0,"
                        " done_at = 0 WHERE state = 2"};
static const struct sq_def q_inbox_prune = {
    SQ_INBOX_PRUNE, "DELETE FROM webhook_inbox WHERE state = 1 AND done_at < ?1"};

static const struct sq_def q_q_ledger = {SQ_Q_LEDGER,
                                         "SELECT state, sum(n) FROM run_counts GROUP BY state"};
/* The lowest queued id of each run that may send is its oldest queued row: one seek each. */
static const struct sq_def q_q_oldest = {
    SQ_Q_OLDEST, "SELECT coalesce(min((SELECT m.updated_at FROM messages m WHERE m.run_id = r.id"
                 " AND m.state = 0 ORDER BY m.id LIMIT 1)), 0) FROM campaign_runs r"
                 " WHERE r.state IN ('scheduled', 'running', 'paused')"};
static const struct sq_def q_q_retry = {
    SQ_Q_RETRY, "SELECT count(*), coalesce(min(next_at), 0) FROM messages WHERE state = 3"};

/* ---- message events ------------------------------------------------------------------ */

int store_mevent_insert(struct store *st, struct store_mevent *ev, int *inserted, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    *inserted = 0;
    if ((rc = sq_prep(&q, st, &q_mev_insert, e)))
        return rc;
    sq_text(&q, 1, ev->source);
    sq_text(&q, 2, ev->source_id);
    sq_int(&q, 3, ev->kind);
    sq_i64(&q, 4, ev->run_id);
    sq_i64(&q, 5, ev->contact_id);
    sq_i64(&q, 6, ev->message_row);
    sq_text(&q, 7, ev->queue_id);
    sq_text(&q, 8, ev->email);
    sq_i64(&q, 9, ev->at);
    sq_i64(&q, 10, ev->received_at);
    sq_text(&q, 11, ev->reason);
    sq_text(&q, 12, ev->url);
    sq_text(&q, 13, ev->user_agent);
    sq_int(&q, 14, ev->machine);
    if (ev->value != 0)
        sq_double(&q, 15, ev->value);
    else
        sq_keep(&q, sqlite3_bind_null(q.s, 15));
    rc = sq_exec(&q, "store a message event", e);
    if (rc == 0 && sq_changes(st) > 0) {
        *inserted = 1;
        ev->id = sq_last_id(st);
    }
    return rc;
}

struct mev_visit {
    store_mevent_fn fn;
    void *ctx;
};

static int row_mevent(sqlite3_stmt *s, void *ctx)
{
    struct mev_visit *v = ctx;
    struct store_mevent ev = {
        .id = sqlite3_column_int64(s, 0),
        .source = sq_col_text(s, 1),
        .source_id = sq_col_text(s, 2),
        .kind = sqlite3_column_int(s, 3),
        .run_id = sqlite3_column_int64(s, 4),
        .contact_id = sqlite3_column_int64(s, 5),
        .message_row = sqlite3_column_int64(s, 6),
        .queue_id = sq_col_text(s, 7),
        .email = sq_col_text(s, 8),
        .at = sqlite3_column_int64(s, 9),
        .received_at = sqlite3_column_int64(s, 10),
        .reason = sq_col_text(s, 11),
        .url = sq_col_text(s, 12),
        .user_agent = sq_col_text(s, 13),
        .machine = sqlite3_column_int(s, 14),
        .value = sqlite3_column_double(s, 15),
    };

    return v->fn(v->ctx, &ev);
}

int store_mevents_list(struct store *st, int64_t run_id, int kind, int64_t after_id, int limit,
                       store_mevent_fn fn, void *ctx, struct err *e)
{
    struct mev_visit v = {fn, ctx};
    const struct sq_def *def = run_id == 0 ? &q_mev_list_unknown
                               : kind      ? &q_mev_list_run_kind
                                           : &q_mev_list_run;
    struct sq q;
    int rc = sq_prep(&q, st, def, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, run_id);
    sq_i64(&q, 2, after_id);
    sq_int(&q, 3, limit > 0 ? limit : -1);
    if (def != &q_mev_list_run)
        sq_int(&q, 4, kind);
    return sq_each(&q, "list message events", row_mevent, &v, NULL, e);
}

int store_run_log_add(struct store *st, int64_t run_id, int64_t at, const char *kind,
                      const char *detail, int64_t count, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, &q_run_log_add, e)))
        return rc;
    sq_i64(&q, 1, run_id);
    sq_i64(&q, 2, at);
    sq_text(&q, 3, kind);
    sq_text(&q, 4, detail);
    sq_i64(&q, 5, count);
    return sq_exec(&q, "add to a run's log", e);
}

struct log_visit {
    int (*fn)(void *ctx, const struct store_run_log *l);
    void *ctx;
};

static int row_log(sqlite3_stmt *s, void *ctx)
{
    struct log_visit *v = ctx;
    struct store_run_log l = {
        .id = sqlite3_column_int64(s, 0),
        .run_id = sqlite3_column_int64(s, 1),
        .at = sqlite3_column_int64(s, 2),
        .kind = sq_col_text(s, 3),
        .detail = sq_col_text(s, 4),
        .count = sqlite3_column_int64(s, 5),
    };

    return v->fn(v->ctx, &l);
}

int store_run_log_list(struct store *st, int64_t run_id, int64_t after_id, int limit,
                       int (*fn)(void *ctx, const struct store_run_log *l), void *ctx,
                       struct err *e)
{
    struct log_visit v = {fn, ctx};
    struct sq q;
    int rc = sq_prep(&q, st, &q_run_log_list, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, run_id);
    sq_i64(&q, 2, after_id);
    sq_int(&q, 3, limit > 0 ? limit : -1);
    return sq_each(&q, "read a run's log", row_log, &v, NULL, e);
}

static int row_first_int(sqlite3_stmt *s, void *ctx)
{
    *(int64_t *)ctx = sqlite3_column_int64(s, 0);
    return 0;
}

int store_journal_applied(struct store *st, const char *name, int64_t *out, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_journal_get, e);

    int n = 0;

    *out = 0;
    if (rc)
        return rc;
    sq_text(&q, 1, name);
    rc = sq_each(&q, "read a journal's checkpoint", row_first_int, out, &n, e);
    if (rc == 0 && n == 0)
        return ERR(e, E_NOTFOUND, "no checkpoint of %s yet", name);
    return rc;
}

int store_journal_set(struct store *st, const char *name, int64_t applied, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, &q_journal_set, e)))
        return rc;
    sq_text(&q, 1, name);
    sq_i64(&q, 2, applied);
    return sq_exec(&q, "write a journal's checkpoint", e);
}

/* ---- the ledger as engagement sees it ------------------------------------------------ */

struct eng_visit {
    struct store_msg_engagement *out;
    int (*fn)(void *ctx, const struct store_msg_engagement *m);
    void *ctx;
};

static int row_engagement(sqlite3_stmt *s, void *ctx)
{
    struct eng_visit *v = ctx;
    struct store_msg_engagement m = {
        .id = sqlite3_column_int64(s, 0),
        .run_id = sqlite3_column_int64(s, 1),
        .contact_id = sqlite3_column_int64(s, 2),
        .campaign_id = sqlite3_column_int64(s, 3),
        .state = sqlite3_column_int(s, 4),
        .events = (unsigned)sqlite3_column_int64(s, 5),
        .updated_at = sqlite3_column_int64(s, 6),
    };
    const char *xid = sq_col_text(s, 7), *email = sq_col_text(s, 8);

    snprintf(m.external_id, sizeof m.external_id, "%s", xid ? xid : "");
    snprintf(m.email, sizeof m.email, "%s", email ? email : "");
    if (v->fn)
        return v->fn(v->ctx, &m);
    *v->out = m;
    return 0;
}

/* Runs q (bound) for one row into out: E_NOTFOUND when there is none. */
static int one_row(struct sq *q, const char *what, struct store_msg_engagement *out, struct err *e)
{
    struct eng_visit v = {.out = out};
    int n = 0, rc = sq_each(q, what, row_engagement, &v, &n, e);

    if (rc == 0 && n == 0)
        return ERR(e, E_NOTFOUND, "no such message");
    return rc;
}

int store_message_engagement(struct store *st, int64_t run_id, int64_t contact_id,
                             struct store_msg_engagement *out, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_eng_by_run_contact, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, run_id);
    sq_i64(&q, 2, contact_id);
    return one_row(&q, "find a message", out, e);
}

int store_message_by_queue_id(struct store *st, const char *queue_id,
                              struct store_msg_engagement *out, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_eng_by_queue_id, e);

    if (rc)
        return rc;
    sq_text(&q, 1, queue_id);
    return one_row(&q, "find a message by its queue id", out, e);
}

int store_message_latest_of_contact(struct store *st, int64_t contact_id, int64_t since,
                                    unsigned need, struct store_msg_engagement *out, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_eng_latest, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, contact_id);
    sq_i64(&q, 2, since);
    sq_i64(&q, 3, need);
    return one_row(&q, "find a contact's latest message", out, e);
}

int store_messages_of_contact(struct store *st, int64_t contact_id, int64_t before_id, int limit,
                              int (*fn)(void *ctx, const struct store_msg_engagement *m), void *ctx,
                              struct err *e)
{
    struct eng_visit v = {.fn = fn, .ctx = ctx};
    struct sq q;
    int rc = sq_prep(&q, st, &q_eng_of_contact, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, contact_id);
    sq_i64(&q, 2, before_id > 0 ? before_id : INT64_MAX);
    sq_int(&q, 3, limit > 0 ? limit : -1);
    return sq_each(&q, "list a contact's messages", row_engagement, &v, NULL, e);
}

int store_message_set_events(struct store *st, int64_t id, unsigned events, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, &q_eng_set_events, e)))
        return rc;
    sq_i64(&q, 1, id);
    sq_i64(&q, 2, events);
    return sq_exec(&q, "set a message's events", e);
}

/* ---- counters ------------------------------------------------------------------------ */

int store_stat_add(struct store *st, int64_t run_id, int metric, int64_t n, double x, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, &q_stat_run, e)))
        return rc;
    sq_i64(&q, 1, run_id);
    sq_int(&q, 2, metric);
    sq_i64(&q, 3, n);
    sq_double(&q, 4, x);
    return sq_exec(&q, "add to a run's counter", e);
}

int store_stat_minute_add(struct store *st, int64_t run_id, int metric, int64_t minute, int64_t n,
                          double x, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, &q_stat_minute, e)))
        return rc;
    sq_i64(&q, 1, run_id);
    sq_i64(&q, 2, minute);
    sq_int(&q, 3, metric);
    sq_i64(&q, 4, n);
    sq_double(&q, 5, x);
    return sq_exec(&q, "add to a run's minute counter", e);
}

struct stat_visit {
    int (*fn)(void *ctx, int metric, int64_t n, double x);
    int (*mfn)(void *ctx, int64_t run_id, int64_t minute, int metric, int64_t n, double x);
    void *ctx;
};

static int row_stat(sqlite3_stmt *s, void *ctx)
{
    struct stat_visit *v = ctx;

    return v->fn(v->ctx, sqlite3_column_int(s, 0), sqlite3_column_int64(s, 1),
                 sqlite3_column_double(s, 2));
}

static int row_minute(sqlite3_stmt *s, void *ctx)
{
    struct stat_visit *v = ctx;

    return v->mfn(v->ctx, sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1),
                  sqlite3_column_int(s, 2), sqlite3_column_int64(s, 3),
                  sqlite3_column_double(s, 4));
}

int store_stats_of_run(struct store *st, int64_t run_id,
                       int (*fn)(void *ctx, int metric, int64_t n, double x), void *ctx,
                       struct err *e)
{
    struct stat_visit v = {.fn = fn, .ctx = ctx};
    struct sq q;
    int rc = sq_prep(&q, st, &q_stat_of_run, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, run_id);
    return sq_each(&q, "read a run's counters", row_stat, &v, NULL, e);
}

int store_stats_minutes(struct store *st, const int64_t *run_ids, size_t nruns, int64_t from,
                        int64_t to,
                        int (*fn)(void *ctx, int64_t run_id, int64_t minute, int metric, int64_t n,
                                  double x),
                        void *ctx, struct err *e)
{
    struct stat_visit v = {.mfn = fn, .ctx = ctx};
    struct sq q;
    size_t i;
    int rc = 0;

    if (nruns == 0) {
        if ((rc = sq_prep(&q, st, &q_stat_minutes_all, e)))
            return rc;
        sq_i64(&q, 1, from);
        sq_i64(&q, 2, to);
        return sq_each(&q, "read minute counters", row_minute, &v, NULL, e);
    }
    /* One run after another: each read is a range of the primary key. */
    for (i = 0; rc == 0 && i < nruns; i++) {
        if ((rc = sq_prep(&q, st, &q_stat_minutes_run, e)))
            return rc;
        sq_i64(&q, 1, run_ids[i]);
        sq_i64(&q, 2, from);
        sq_i64(&q, 3, to);
        rc = sq_each(&q, "read a run's minute counters", row_minute, &v, NULL, e);
    }
    return rc;
}

/* ---- the queues ------------------------------------------------------------------------ */

static int row_ledger(sqlite3_stmt *s, void *ctx)
{
    int64_t *ledger = ctx;
    int state = sqlite3_column_int(s, 0);

    if (state >= 0 && state < MSG_STATES)
        ledger[state] = sqlite3_column_int64(s, 1);
    return 0;
}

int store_queues(struct store *st, struct store_queues *out, struct err *e)
{
    struct sq q;
    int rc;

    memset(out, 0, sizeof *out);
    if ((rc = sq_prep(&q, st, &q_q_ledger, e)) ||
        (rc = sq_each(&q, "count the ledger", row_ledger, out->ledger, NULL, e)))
        return rc;
    if ((rc = sq_prep(&q, st, &q_q_oldest, e)) ||
        (rc = sq_ints(&q, &out->oldest_queued_at, NULL, "find the oldest queued row", e)))
        return rc;
    if ((rc = sq_prep(&q, st, &q_q_retry, e)) ||
        (rc = sq_ints(&q, &out->retry, &out->next_retry_at, "count retry rows", e)))
        return rc;
    return store_inbox_stats(st, &out->inbox_pending, &out->inbox_oldest_at, &out->inbox_failed, e);
}

/* ---- the webhook inbox ------------------------------------------------------------- */

int store_inbox_insert(struct store *st, const char *hook, const char *dedupe, const char *body,
                       size_t len, int64_t now, int64_t *id, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, &q_inbox_insert, e)))
        return rc;
    sq_text(&q, 1, hook);
    sq_text(&q, 2, dedupe);
    sq_blob(&q, 3, body, len);
    sq_i64(&q, 4, now);
    rc = sq_exec_unique(&q, "store a webhook body", e);
    if (rc == E_CONFLICT)
        return ERR(e, E_CONFLICT, "this webhook delivery (%s) was received before", dedupe);
    if (rc == 0)
        *id = sq_last_id(st);
    return rc;
}

struct inbox_visit {
    store_inbox_fn fn;
    void *ctx;
};

static int row_inbox(sqlite3_stmt *s, void *ctx)
{
    struct inbox_visit *v = ctx;
    struct store_inbox b = {
        .id = sqlite3_column_int64(s, 0),
        .hook = sq_col_text(s, 1),
        .dedupe = sq_col_text(s, 2),
        .body = sqlite3_column_blob(s, 3),
        .len = (size_t)sqlite3_column_bytes(s, 3),
        .received_at = sqlite3_column_int64(s, 4),
        .state = sqlite3_column_int(s, 5),
        .attempts = sqlite3_column_int(s, 6),
        .events = sqlite3_column_int64(s, 7),
        .error = sq_col_text(s, 8),
    };

    if (b.body == NULL)
        b.body = "";
    return v->fn(v->ctx, &b);
}

#define INBOX_CLAIM_MAX 256

static int row_id(sqlite3_stmt *s, void *ctx)
{
    int64_t **p = ctx;

    *(*p)++ = sqlite3_column_int64(s, 0);
    return 0;
}

int store_inbox_claim(struct store *st, const char *owner, int64_t now, int64_t lease_ms, int limit,
                      store_inbox_fn fn, void *ctx, struct err *e)
{
    struct inbox_visit v = {fn, ctx};
    int64_t ids[INBOX_CLAIM_MAX], *end = ids;
    struct sq q;
    int i, n, rc;

    ASSERT(st->in_tx);
    if (limit < 1 || limit > INBOX_CLAIM_MAX)
        limit = INBOX_CLAIM_MAX;
    if ((rc = sq_prep(&q, st, &q_inbox_due, e)))
        return rc;
    sq_i64(&q, 1, now);
    sq_int(&q, 2, limit);
    rc = sq_each(&q, "find due webhook bodies", row_id, &end, NULL, e);
    n = (int)(end - ids);
    for (i = 0; rc == 0 && i < n; i++) {
        if ((rc = sq_prep(&q, st, &q_inbox_take, e)))
            break;
        sq_i64(&q, 1, ids[i]);
        sq_text(&q, 2, owner);
        sq_i64(&q, 3, now + lease_ms);
        rc = sq_exec(&q, "claim a webhook body", e);
    }
    for (i = 0; rc == 0 && i < n; i++) {
        if ((rc = sq_prep(&q, st, &q_inbox_read, e)))
            break;
        sq_i64(&q, 1, ids[i]);
        rc = sq_each(&q, "read a webhook body", row_inbox, &v, NULL, e);
    }
    return rc;
}

int store_inbox_finish(struct store *st, int64_t id, const char *owner, int state, int64_t events,
                       const char *error, int64_t now, int *held, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    *held = 0;
    if (state != INBOX_DONE && state != INBOX_FAILED)
        return ERR(e, E_INVAL, "store: a webhook body cannot end in state %d", state);
    if ((rc = sq_prep(&q, st, &q_inbox_finish, e)))
        return rc;
    sq_i64(&q, 1, id);
    sq_text(&q, 2, owner);
    sq_int(&q, 3, state);
    sq_i64(&q, 4, events);
    sq_text(&q, 5, error);
    sq_i64(&q, 6, now);
    rc = sq_exec(&q, "finish a webhook body", e);
    if (rc == 0)
        *held = sq_changes(st) > 0;
    return rc;
}

static int row_three(sqlite3_stmt *s, void *ctx)
{
    int64_t **out = ctx;

    for (int i = 0; i < 3; i++)
        *out[i] = sqlite3_column_int64(s, i);
    return 0;
}

int store_inbox_stats(struct store *st, int64_t *pending, int64_t *oldest_at, int64_t *failed,
                      struct err *e)
{
    int64_t *out[3] = {pending, oldest_at, failed};
    struct sq q;
    int rc = sq_prep(&q, st, &q_inbox_stats, e);

    *pending = *oldest_at = *failed = 0;
    return rc ? rc : sq_each(&q, "count webhook bodies", row_three, out, NULL, e);
}

int store_inbox_retry(struct store *st, int64_t id, int64_t *count, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    *count = 0;
    if ((rc = sq_prep(&q, st, id ? &q_inbox_retry_one : &q_inbox_retry_all, e)))
        return rc;
    if (id)
        sq_i64(&q, 1, id);
    rc = sq_exec(&q, "retry failed webhook bodies", e);
    if (rc == 0)
        *count = sq_changes(st);
    return rc;
}

int store_inbox_prune(struct store *st, int64_t before, int64_t *count, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    *count = 0;
    if ((rc = sq_prep(&q, st, &q_inbox_prune, e)))
        return rc;
    sq_i64(&q, 1, before);
    rc = sq_exec(&q, "prune webhook bodies", e);
    if (rc == 0)
        *count = sq_changes(st);
    return rc;
}
