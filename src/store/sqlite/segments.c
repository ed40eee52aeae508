/* store/sqlite/segments.c -- saved segments and their versions, evaluations and the
 * membership snapshots they keep. */
#include <stdlib.h>
#include <string.h>

#include "sqlite_int.h"

#define SEGMENT_COLS                                                                               \
    "s.id, s.name, s.description, s.created_by, v.rules, v.plan, s.version,"                       \
    " s.schedule_minutes, s.next_run_at, s.created_at, s.updated_at, s.deleted"
#define SEGMENT_JOIN                                                                               \
    " FROM segments s JOIN segment_versions v ON v.segment_id = s.id AND v.version = s.version"
#define EVAL_COLS                                                                                  \
    "id, segment_id, version, trigger, status, error, as_of, started_at,"                          \
    " finished_at, member_count, took_ms"

static const struct sq_def q_insert = {
    SQ_SEG_INSERT,
    "INSERT INTO segments(name, description, version, schedule_minutes,"
    " next_run_at, created_at, updated_at, created_by) VALUES(?1,?2,?3,?4,?5,?6,?7,?8)"};
static const struct sq_def q_version_add = {
    SQ_SEG_VERSION_ADD, "INSERT INTO segment_versions(segment_id, version, rules, plan,"
                        " created_at, created_by) VALUES(?1,?2,?3,?4,?5,?6)"};
static const struct sq_def q_update = {
    SQ_SEG_UPDATE, "UPDATE segments SET name=?2, description=?3, version=?4, schedule_minutes=?5,"
                   " next_run_at=?6, updated_at=?7, deleted=?8 WHERE id=?1"};
static const struct sq_def q_get = {SQ_SEG_GET, "SELECT " SEGMENT_COLS SEGMENT_JOIN
                                                " WHERE s.id = ?1 AND s.deleted = 0"};
static const struct sq_def q_list = {SQ_SEG_LIST, "SELECT " SEGMENT_COLS SEGMENT_JOIN
                                                  " WHERE s.id > ?1 AND s.deleted = 0"
                                                  " ORDER BY s.id LIMIT ?2"};
static const struct sq_def q_versions = {
    SQ_SEG_VERSIONS, "SELECT s.id, s.name, s.description, v.created_by, v.rules, v.plan, v.version,"
                     " s.schedule_minutes, s.next_run_at, v.created_at, v.created_at, s.deleted"
                     " FROM segment_versions v JOIN segments s ON s.id = v.segment_id"
                     " WHERE v.segment_id = ?1 ORDER BY v.version DESC"};
static const struct sq_def q_due = {
    SQ_SEG_DUE, "SELECT " SEGMENT_COLS SEGMENT_JOIN " WHERE s.schedule_minutes > 0"
                " AND s.deleted = 0 AND s.next_run_at <= ?1 ORDER BY s.next_run_at LIMIT 100"};
static const struct sq_def q_next_run = {SQ_SEG_NEXT_RUN,
                                         "UPDATE segments SET next_run_at = ?2 WHERE id = ?1"};
static const struct sq_def q_eval_begin = {
    SQ_EVAL_BEGIN, "INSERT INTO segment_evaluations(segment_id, version, trigger, status, as_of,"
                   " started_at) VALUES(?1,?2,?3,'running',?4,?5)"};
static const struct sq_def q_eval_finish = {
    SQ_EVAL_FINISH, "UPDATE segment_evaluations SET status=?2, finished_at=?3, member_count=?4,"
                    " took_ms=?5, error=?6 WHERE id=?1"};
static const struct sq_def q_eval_list = {
    SQ_EVAL_LIST, "SELECT " EVAL_COLS " FROM segment_evaluations WHERE segment_id = ?1 AND id < ?2"
                  " ORDER BY id DESC LIMIT ?3"};
static const struct sq_def q_eval_get = {
    SQ_EVAL_GET, "SELECT " EVAL_COLS " FROM segment_evaluations WHERE segment_id = ?1 AND id = ?2"};
static const struct sq_def q_eval_latest = {
    SQ_EVAL_LATEST, "SELECT " EVAL_COLS " FROM segment_evaluations WHERE segment_id = ?1"
                    " AND status = 'succeeded' ORDER BY id DESC LIMIT 1"};
static const struct sq_def q_snap_put = {
    SQ_SNAP_PUT, "INSERT INTO segment_snapshots(evaluation_id, format, members)"
                 " VALUES(?1,'roaring-portable',?2)"};
static const struct sq_def q_snap_get = {
    SQ_SNAP_GET, "SELECT members FROM segment_snapshots WHERE evaluation_id = ?1"};
static const struct sq_def q_eval_interrupt = {
    SQ_EVAL_INTERRUPT, "UPDATE segment_evaluations SET status='failed', finished_at=?1,"
                       " error='interrupted: the process stopped during the evaluation'"
                       " WHERE status = 'running'"};
static const struct sq_def q_eval_counts = {
    SQ_EVAL_COUNTS,
    "SELECT status, count(*) FROM segment_evaluations GROUP BY status ORDER BY status"};

/* ---- segments --------------------------------------------------------------------- */

int store_segment_insert(struct store *st, struct store_segment *sg, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, &q_insert, e)))
        return rc;
    sq_text(&q, 1, sg->name);
    sq_text(&q, 2, sg->description ? sg->description : "");
    sq_int(&q, 3, sg->version);
    sq_int(&q, 4, sg->schedule_minutes);
    sq_i64(&q, 5, sg->next_run_at);
    sq_i64(&q, 6, sg->created_at);
    sq_i64(&q, 7, sg->updated_at);
    sq_text(&q, 8, sg->created_by);
    rc = sq_exec(&q, "insert segment", e);
    if (rc)
        return rc;
    sg->id = sq_last_id(st);
    return store_segment_update(st, sg, 1, e);
}

int store_segment_update(struct store *st, const struct store_segment *sg, int add_version,
                         struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, &q_update, e)))
        return rc;
    sq_i64(&q, 1, sg->id);
    sq_text(&q, 2, sg->name);
    sq_text(&q, 3, sg->description ? sg->description : "");
    sq_int(&q, 4, sg->version);
    sq_int(&q, 5, sg->schedule_minutes);
    sq_i64(&q, 6, sg->next_run_at);
    sq_i64(&q, 7, sg->updated_at);
    sq_int(&q, 8, sg->deleted);
    rc = sq_exec(&q, "update segment", e);
    if (rc || !add_version)
        return rc;
    if ((rc = sq_prep(&q, st, &q_version_add, e)))
        return rc;
    sq_i64(&q, 1, sg->id);
    sq_int(&q, 2, sg->version);
    sq_text(&q, 3, sg->rules);
    sq_text(&q, 4, sg->plan);
    sq_i64(&q, 5, sg->updated_at);
    sq_text(&q, 6, sg->created_by);
    return sq_exec(&q, "add segment version", e);
}

struct segment_visit {
    store_segment_fn fn;
    void *ctx;
};

static int row_segment(sqlite3_stmt *s, void *ctx)
{
    struct segment_visit *v = ctx;
    struct store_segment sg = {
        .id = sqlite3_column_int64(s, 0),
        .name = sq_col_text(s, 1),
        .description = sq_col_text(s, 2),
        .created_by = sq_col_text(s, 3),
        .rules = sq_col_text(s, 4),
        .plan = sq_col_text(s, 5),
        .version = sqlite3_column_int(s, 6),
        .schedule_minutes = sqlite3_column_int(s, 7),
        .next_run_at = sqlite3_column_int64(s, 8),
        .created_at = sqlite3_column_int64(s, 9),
        .updated_at = sqlite3_column_int64(s, 10),
        .deleted = sqlite3_column_int(s, 11),
    };

    return v->fn(v->ctx, &sg);
}

/* Runs a prepared segment query with its one parameter bound. */
static int read_segments(struct sq *q, store_segment_fn fn, void *ctx, int must_find, struct err *e)
{
    struct segment_visit v = {fn, ctx};
    int n, rc = sq_each(q, "read segments", row_segment, &v, &n, e);

    if (rc == 0 && must_find && n == 0)
        return ERR(e, E_NOTFOUND, "no such segment");
    return rc;
}

static int segments_by(struct store *st, const struct sq_def *def, int64_t key, int limit,
                       store_segment_fn fn, void *ctx, int must_find, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, def, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, key);
    if (limit)
        sq_int(&q, 2, limit > 0 ? limit : -1);
    return read_segments(&q, fn, ctx, must_find, e);
}

int store_segment_get(struct store *st, int64_t id, store_segment_fn fn, void *ctx, struct err *e)
{
    return segments_by(st, &q_get, id, 0, fn, ctx, 1, e);
}

int store_segments_list(struct store *st, int64_t after_id, int limit, store_segment_fn fn,
                        void *ctx, struct err *e)
{
    return segments_by(st, &q_list, after_id, limit > 0 ? limit : -1, fn, ctx, 0, e);
}

int store_segment_versions(struct store *st, int64_t id, store_segment_fn fn, void *ctx,
                           struct err *e)
{
    return segments_by(st, &q_versions, id, 0, fn, ctx, 1, e);
}

/* Due segments are collected first (the callback may write), then each one's next run
 * moves a period on. */
struct due {
    int64_t *ids;
    int *every;
    int n;
};

static int collect_due(void *ctx, const struct store_segment *sg)
{
    struct due *d = ctx;

    d->ids = xrealloc(d->ids, (size_t)(d->n + 1) * sizeof *d->ids);
    d->every = xrealloc(d->every, (size_t)(d->n + 1) * sizeof *d->every);
    d->ids[d->n] = sg->id;
    d->every[d->n] = sg->schedule_minutes;
    d->n++;
    return 0;
}

int store_segments_claim_due(struct store *st, int64_t now, store_segment_fn fn, void *ctx,
                             struct err *e)
{
    struct due d = {0};
    struct sq q;
    int rc, i;

    ASSERT(st->in_tx);
    rc = segments_by(st, &q_due, now, 0, collect_due, &d, 0, e);
    for (i = 0; rc == 0 && i < d.n; i++) {
        struct store_segment sg = {.id = d.ids[i], .schedule_minutes = d.every[i]};
        if ((rc = sq_prep(&q, st, &q_next_run, e)))
            break;
        sq_i64(&q, 1, d.ids[i]);
        sg.next_run_at = now + (int64_t)d.every[i] * MIN_MS;
        sq_i64(&q, 2, sg.next_run_at);
        rc = sq_exec(&q, "claim segment", e);
        if (rc == 0)
            rc = fn(ctx, &sg);
    }
    free(d.ids);
    free(d.every);
    return rc;
}

/* ---- evaluations and snapshots ----------------------------------------------------- */

int store_evaluation_begin(struct store *st, struct store_evaluation *ev, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, &q_eval_begin, e)))
        return rc;
    sq_i64(&q, 1, ev->segment_id);
    sq_int(&q, 2, ev->version);
    sq_text(&q, 3, ev->trigger);
    sq_i64(&q, 4, ev->as_of);
    sq_i64(&q, 5, ev->started_at);
    rc = sq_exec(&q, "begin evaluation", e);
    if (rc == 0)
        ev->id = sq_last_id(st);
    return rc;
}

int store_evaluation_finish(struct store *st, const struct store_evaluation *ev,
                            const void *members, size_t members_len, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, &q_eval_finish, e)))
        return rc;
    sq_i64(&q, 1, ev->id);
    sq_text(&q, 2, ev->status);
    sq_i64(&q, 3, ev->finished_at);
    sq_i64(&q, 4, ev->member_count);
    sq_double(&q, 5, ev->took_ms);
    sq_text(&q, 6, ev->error ? ev->error : "");
    rc = sq_exec(&q, "finish evaluation", e);
    if (rc || members == NULL)
        return rc;
    if ((rc = sq_prep(&q, st, &q_snap_put, e)))
        return rc;
    sq_i64(&q, 1, ev->id);
    sq_blob(&q, 2, members, members_len);
    return sq_exec(&q, "store snapshot", e);
}

struct evaluation_visit {
    store_evaluation_fn fn;
    void *ctx;
};

static int row_evaluation(sqlite3_stmt *s, void *ctx)
{
    struct evaluation_visit *v = ctx;
    struct store_evaluation ev = {
        .id = sqlite3_column_int64(s, 0),
        .segment_id = sqlite3_column_int64(s, 1),
        .version = sqlite3_column_int(s, 2),
        .trigger = sq_col_text(s, 3),
        .status = sq_col_text(s, 4),
        .error = sq_col_text(s, 5),
        .as_of = sqlite3_column_int64(s, 6),
        .started_at = sqlite3_column_int64(s, 7),
        .finished_at = sqlite3_column_int64(s, 8),
        .member_count = sqlite3_column_int64(s, 9),
        .took_ms = sqlite3_column_double(s, 10),
    };

    return v->fn(v->ctx, &ev);
}

int store_evaluations_list(struct store *st, int64_t segment_id, int64_t before_id, int limit,
                           store_evaluation_fn fn, void *ctx, struct err *e)
{
    struct evaluation_visit v = {fn, ctx};
    struct sq q;
    int rc = sq_prep(&q, st, &q_eval_list, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, segment_id);
    sq_i64(&q, 2, before_id > 0 ? before_id : INT64_MAX);
    sq_int(&q, 3, limit > 0 ? limit : -1);
    return sq_each(&q, "list evaluations", row_evaluation, &v, NULL, e);
}

int store_evaluation_get(struct store *st, int64_t segment_id, int64_t id, store_evaluation_fn fn,
                         void *ctx, struct err *e)
{
    struct evaluation_visit v = {fn, ctx};
    struct sq q;
    int n, rc = sq_prep(&q, st, id ? &q_eval_get : &q_eval_latest, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, segment_id);
    if (id)
        sq_i64(&q, 2, id);
    rc = sq_each(&q, "read evaluation", row_evaluation, &v, &n, e);
    if (rc == 0 && n == 0)
        return ERR(e, E_NOTFOUND,
                   id ? "no such evaluation of this segment"
                      : "this segment has no successful evaluation yet");
    return rc;
}

int store_snapshot_get(struct store *st, int64_t evaluation_id, void **out, size_t *len,
                       struct err *e)
{
    struct sq q;
    int rc;

    *out = NULL;
    *len = 0;
    if ((rc = sq_prep(&q, st, &q_snap_get, e)))
        return rc;
    sq_i64(&q, 1, evaluation_id);
    rc = sq_step(&q, "read snapshot", e);
    if (rc > 0) {
        *len = (size_t)sqlite3_column_bytes(q.s, 0);
        *out = xmalloc(*len ? *len : 1);
        if (*len)
            memcpy(*out, sqlite3_column_blob(q.s, 0), *len);
        rc = 0;
    } else if (rc == 0) {
        rc = ERR(e, E_NOTFOUND, "evaluation %lld has no snapshot", (long long)evaluation_id);
    }
    sq_done(&q);
    return rc;
}

int store_evaluation_counts(struct store *st, store_count_fn fn, void *ctx, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_eval_counts, e);

    return rc ? rc : sq_counts(&q, "count evaluations", fn, ctx, e);
}

int store_evaluations_interrupt(struct store *st, int64_t at, int64_t *count, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, &q_eval_interrupt, e)))
        return rc;
    sq_i64(&q, 1, at);
    rc = sq_exec(&q, "interrupt evaluations", e);
    if (count)
        *count = rc == 0 ? sq_changes(st) : 0;
    return rc;
}
