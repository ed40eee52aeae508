/* store/sqlite/rejected.c -- the ingestion dead-letter store: records refused, kept
 * once per fingerprint while pending, listed and dismissed by filter, replayed. */
#include <string.h>

#include "sqlite_int.h"

/* A record rejected again with the same raw payload while still pending is kept once. */
static const struct sq_def q_add = {
    SQ_REJ_ADD, "INSERT INTO rejected(created_at, source, kind, reason, field, message, origin,"
                " raw, fingerprint, truncated, raw_bytes) SELECT ?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,"
                "?11 WHERE NOT EXISTS (SELECT 1 FROM rejected WHERE fingerprint = ?9 AND"
                " status = 'pending')"};
/* ... or ever (a row read again, whose letter may have been dismissed or replayed). */
static const struct sq_def q_add_once = {
    SQ_REJ_ADD_ONCE, "INSERT INTO rejected(created_at, source, kind, reason, field, message,"
                     " origin, raw, fingerprint, truncated, raw_bytes) SELECT ?1,?2,?3,?4,?5,?6,"
                     "?7,?8,?9,?10,?11 WHERE NOT EXISTS (SELECT 1 FROM rejected WHERE"
                     " fingerprint = ?9)"};
static const struct sq_def q_update = {
    SQ_REJ_UPDATE,
    "UPDATE rejected SET status=?2, reason=coalesce(?3, reason), field=coalesce(?4, field),"
    " message=coalesce(?5, message), attempts=attempts+1, resolved_at=?6 WHERE id=?1"};
static const struct sq_def q_counts = {
    SQ_REJ_COUNTS, "SELECT reason, count(*) FROM rejected WHERE status = 'pending'"
                   " GROUP BY reason ORDER BY reason"};
static const struct sq_def q_long = {SQ_REJ_LONG,
                                     "SELECT id, raw FROM rejected WHERE raw_bytes > ?1"};
static const struct sq_def q_cut = {SQ_REJ_CUT,
                                    "UPDATE rejected SET raw = ?2, truncated = 1 WHERE id = ?1"};

int store_rejected_add(struct store *st, const struct store_rejected *r, int64_t *id, struct err *e)
{
    size_t n = strlen(r->raw), kept = utf8_prefix(r->raw, n, STORE_REJECTED_MAX_RAW);
    struct sq q;
    int rc = sq_prep(&q, st, r->once ? &q_add_once : &q_add, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, r->created_at);
    sq_text(&q, 2, r->source);
    sq_text(&q, 3, r->kind);
    sq_text(&q, 4, r->reason);
    sq_text(&q, 5, r->field ? r->field : "");
    sq_text(&q, 6, r->message);
    sq_text(&q, 7, r->origin ? r->origin : "");
    sq_textn(&q, 8, r->raw, kept, 0);
    sq_text(&q, 9, r->fingerprint);
    sq_int(&q, 10, r->truncated || kept < n);
    sq_i64(&q, 11, r->raw_bytes > 0 ? r->raw_bytes : (int64_t)n);
    rc = sq_exec(&q, "store rejected record", e);
    if (rc == 0 && id)
        *id = sq_changes(st) ? sq_last_id(st) : 0;
    return rc;
}

/* Migration 9 -> 10: letters kept whole before (a 300 MB CSV line, say) keep what new
 * ones keep. Updating the rows being read is fine: cutting again changes nothing. */
int rejected_cut_old(struct store *st, struct err *e)
{
    struct sq sel = {0}, upd = {0};
    int rc;

    if ((rc = sq_prep(&sel, st, &q_long, e)) || (rc = sq_prep(&upd, st, &q_cut, e)))
        goto out;
    sq_i64(&sel, 1, STORE_REJECTED_MAX_RAW);
    while ((rc = sq_step(&sel, "cut dead letters", e)) > 0) {
        const char *raw = sq_col_text(sel.s, 1);
        size_t n = (size_t)sqlite3_column_bytes(sel.s, 1);

        sq_i64(&upd, 1, sqlite3_column_int64(sel.s, 0));
        raw = raw ? raw : "";
        sq_textn(&upd, 2, raw, utf8_prefix(raw, n, STORE_REJECTED_MAX_RAW), 1);
        rc = sq_step(&upd, "cut dead letters", e);
        sq_reset(&upd);
        if (rc < 0)
            break;
    }
out:
    sq_done(&sel);
    sq_done(&upd);
    return rc;
}

/* The WHERE clause of a dead-letter filter: fixed fragments, values always bound
 * (?1 after_id … ?8 until), shared by list and dismiss. */
static void rejected_where(struct buf *sql, const struct store_rejected_filter *f)
{
    buf_adds(sql, " WHERE id > ?1");
    if (f->id)
        buf_adds(sql, " AND id = ?2");
    if (f->status)
        buf_adds(sql, " AND status = ?3");
    if (f->reason)
        buf_adds(sql, " AND reason = ?4");
    if (f->source)
        buf_adds(sql, " AND source = ?5");
    if (f->kind)
        buf_adds(sql, " AND kind = ?6");
    if (f->since)
        buf_adds(sql, " AND created_at >= ?7");
    if (f->until)
        buf_adds(sql, " AND created_at < ?8");
    if (f->replayable_only)
        buf_adds(sql, " AND reason NOT IN ('bad_row', 'invalid_encoding')");
}

static void rejected_bind(struct sq *q, const struct store_rejected_filter *f)
{
    sq_i64(q, 1, f->after_id);
    sq_i64(q, 2, f->id);
    sq_text(q, 3, f->status);
    sq_text(q, 4, f->reason);
    sq_text(q, 5, f->source);
    sq_text(q, 6, f->kind);
    sq_i64(q, 7, f->since);
    sq_i64(q, 8, f->until);
}

struct rejected_visit {
    store_rejected_fn fn;
    void *ctx;
};

static int row_rejected(sqlite3_stmt *s, void *ctx)
{
    struct rejected_visit *v = ctx;
    struct store_rejected r = {
        .id = sqlite3_column_int64(s, 0),
        .created_at = sqlite3_column_int64(s, 1),
        .source = sq_col_text(s, 2),
        .kind = sq_col_text(s, 3),
        .reason = sq_col_text(s, 4),
        .field = sq_col_text(s, 5),
        .message = sq_col_text(s, 6),
        .origin = sq_col_text(s, 7),
        .raw = sq_col_text(s, 8),
        .status = sq_col_text(s, 9),
        .attempts = sqlite3_column_int(s, 10),
        .resolved_at = sqlite3_column_int64(s, 11),
        .truncated = sqlite3_column_int(s, 12),
        .raw_bytes = sqlite3_column_int64(s, 13),
    };

    return v->fn(v->ctx, &r);
}

int store_rejected_list(struct store *st, const struct store_rejected_filter *f,
                        store_rejected_fn fn, void *ctx, struct err *e)
{
    struct rejected_visit v = {fn, ctx};
    struct buf sql;
    struct sq q;
    int rc;

    buf_init(&sql);
    buf_adds(&sql, "SELECT id, created_at, source, kind, reason, field, message, origin,");
    if (f->raw_max)
        buf_printf(&sql, " substr(raw, 1, %zu),", f->raw_max + 1);
    else
        buf_adds(&sql, " raw,");
    buf_adds(&sql, " status, attempts, resolved_at, truncated, raw_bytes FROM rejected");
    rejected_where(&sql, f);
    buf_adds(&sql, " ORDER BY id LIMIT ?9");
    rc = sq_prep_sql(&q, st, sql.p, e);
    buf_release(&sql);
    if (rc)
        return rc;
    rejected_bind(&q, f);
    sq_i64(&q, 9, f->limit > 0 ? f->limit : -1);
    return sq_each(&q, "list rejected", row_rejected, &v, NULL, e);
}

int store_rejected_set_status(struct store *st, const struct store_rejected_filter *f,
                              const char *status, int64_t at, int64_t *changed, struct err *e)
{
    struct buf sql;
    struct sq q;
    int rc;

    buf_init(&sql);
    buf_adds(&sql, "UPDATE rejected SET status = ?10, resolved_at = ?11");
    rejected_where(&sql, f);
    rc = sq_prep_sql(&q, st, sql.p, e);
    buf_release(&sql);
    if (rc)
        return rc;
    rejected_bind(&q, f);
    sq_text(&q, 10, status);
    sq_i64(&q, 11, at);
    rc = sq_exec(&q, "update rejected", e);
    if (rc == 0)
        *changed = sq_changes(st);
    return rc;
}

int store_rejected_update(struct store *st, int64_t id, const char *status, const char *reason,
                          const char *field, const char *message, int64_t at, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_update, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, id);
    sq_text(&q, 2, status);
    sq_text(&q, 3, reason);
    sq_text(&q, 4, field);
    sq_text(&q, 5, message);
    sq_i64(&q, 6, at);
    return sq_exec(&q, "update rejected record", e);
}

int store_rejected_counts(struct store *st, store_count_fn fn, void *ctx, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_counts, e);

    return rc ? rc : sq_counts(&q, "count rejected", fn, ctx, e);
}
