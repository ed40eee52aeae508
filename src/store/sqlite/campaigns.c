/* store/sqlite/campaigns.c -- campaigns and their runs (store.h, "campaigns and their
 * runs"; docs/campaigns.md has the states).
 *
 * DESIGN: plain rows. A campaign's name is unique among the live ones (a partial unique
 * index), so a deleted campaign frees its name. A run's counters that the ledger keeps
 * (possible_duplicates) are written by ledger.c alone; store_run_update rewrites the
 * rest. The dispatcher's question "what has work?" is one scan of the partial index
 * campaign_runs_active, which holds only the scheduled and running runs. */
#include <stdlib.h>
#include <string.h>

#include "sqlite_int.h"

#define CAMPAIGN_COLS                                                                              \
    "id, name, segment_id, template_id, provider, throttle_per_second, scheduled_at, state,"       \
    " last_run_id, created_at, updated_at, created_by, deleted, track_opens, track_clicks,"        \
    " conversion"
#define RUN_COLS                                                                                   \
    "id, campaign_id, state, reason, provider, segment_id, template_id, template_version,"         \
    " throttle_per_second, evaluation_id, audience, cursor, ledgered, possible_duplicates,"        \
    " start_at, created_at, started_at, finished_at, updated_at, created_by, track_opens,"         \
    " track_clicks"

static const struct sq_def q_camp_insert = {
    SQ_CAMP_INSERT,
    "INSERT INTO campaigns(name, segment_id, template_id, provider, throttle_per_second,"
    " scheduled_at, state, last_run_id, created_at, updated_at, created_by, deleted,"
    " track_opens, track_clicks, conversion)"
    " VALUES(?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)"};
static const struct sq_def q_camp_update = {
    SQ_CAMP_UPDATE, "UPDATE campaigns SET name=?2, segment_id=?3, template_id=?4, provider=?5,"
                    " throttle_per_second=?6, scheduled_at=?7, state=?8, last_run_id=?9,"
                    " created_at=?10, updated_at=?11, created_by=?12, deleted=?13, track_opens=?14,"
                    " track_clicks=?15, conversion=?16 WHERE id=?1"};
static const struct sq_def q_camp_get = {
    SQ_CAMP_GET, "SELECT " CAMPAIGN_COLS " FROM campaigns WHERE id = ?1 AND deleted = 0"};
static const struct sq_def q_camp_list = {SQ_CAMP_LIST,
                                          "SELECT " CAMPAIGN_COLS " FROM campaigns"
                                          " WHERE id > ?1 AND deleted = 0 ORDER BY id LIMIT ?2"};
static const struct sq_def q_run_insert = {
    SQ_RUN_INSERT,
    "INSERT INTO campaign_runs(campaign_id, state, reason, provider, segment_id, template_id,"
    " template_version, throttle_per_second, evaluation_id, audience, cursor, ledgered,"
    " possible_duplicates, start_at, created_at, started_at, finished_at, updated_at,"
    " created_by, track_opens, track_clicks)"
    " VALUES(?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22)"};
static const struct sq_def q_run_update = {
    SQ_RUN_UPDATE,
    "UPDATE campaign_runs SET state=?2, reason=?3, provider=?4, template_version=?5,"
    " evaluation_id=?6, audience=?7, cursor=?8, ledgered=?9, started_at=?10, finished_at=?11,"
    " updated_at=?12, segment_id=?13, template_id=?14, throttle_per_second=?15, start_at=?16,"
    " track_opens=?17, track_clicks=?18 WHERE id=?1"};
static const struct sq_def q_run_get = {SQ_RUN_GET,
                                        "SELECT " RUN_COLS " FROM campaign_runs WHERE id = ?1"};
static const struct sq_def q_runs_list = {
    SQ_RUNS_LIST, "SELECT " RUN_COLS " FROM campaign_runs WHERE campaign_id = ?1 AND id < ?2"
                  " ORDER BY id DESC LIMIT ?3"};
/* The first condition is the partial index's own, so that the index serves. */
static const struct sq_def q_runs_active = {
    SQ_RUNS_ACTIVE, "SELECT " RUN_COLS " FROM campaign_runs"
                    " WHERE state IN ('scheduled', 'running')"
                    " AND (state = 'running' OR start_at <= ?1) ORDER BY id"};

/* ---- reading ------------------------------------------------------------------------ */

/* Runs def with its integer parameters args[0..nargs) and row for each row (ctx: the
 * visit); notfound (the thing's name) makes no row an E_NOTFOUND naming args[0]. */
static int read_rows(struct store *st, const struct sq_def *def, const int64_t *args, int nargs,
                     sq_row_fn row, void *ctx, const char *notfound, struct err *e)
{
    struct sq q;
    int i, n, rc = sq_prep(&q, st, def, e);

    if (rc)
        return rc;
    for (i = 0; i < nargs; i++)
        sq_i64(&q, i + 1, args[i]);
    rc = sq_each(&q, "read campaigns or runs", row, ctx, &n, e);
    if (rc == 0 && n == 0 && notfound)
        return ERR(e, E_NOTFOUND, "no %s %lld", notfound, (long long)args[0]);
    return rc;
}

/* ---- campaigns ------------------------------------------------------------------- */

/* Binds every column of c to ?1 (id) .. ?13 of q_camp_insert or q_camp_update. */
static void bind_campaign(struct sq *q, const struct store_campaign *c)
{
    sq_i64(q, 1, c->id);
    sq_text(q, 2, c->name);
    sq_i64(q, 3, c->segment_id);
    sq_i64(q, 4, c->template_id);
    sq_text(q, 5, c->provider);
    sq_int(q, 6, c->throttle_per_second);
    sq_i64(q, 7, c->scheduled_at);
    sq_text(q, 8, c->state);
    sq_i64(q, 9, c->last_run_id);
    sq_i64(q, 10, c->created_at);
    sq_i64(q, 11, c->updated_at);
    sq_text(q, 12, c->created_by);
    sq_int(q, 13, c->deleted);
    sq_int(q, 14, c->track_opens);
    sq_int(q, 15, c->track_clicks);
    sq_text(q, 16, c->conversion);
}

/* Runs an insert or update of c; a clash on the name is an E_CONFLICT naming it. */
static int write_campaign(struct store *st, const struct sq_def *def,
                          const struct store_campaign *c, const char *what, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, def, e)))
        return rc;
    bind_campaign(&q, c);
    rc = sq_exec_unique(&q, what, e);
    if (rc == E_CONFLICT)
        return ERR(e, E_CONFLICT, "a campaign named \"%s\" exists", c->name ? c->name : "");
    return rc;
}

int store_campaign_insert(struct store *st, struct store_campaign *c, struct err *e)
{
    int rc = write_campaign(st, &q_camp_insert, c, "insert campaign", e);

    if (rc == 0)
        c->id = sq_last_id(st);
    return rc;
}

int store_campaign_update(struct store *st, const struct store_campaign *c, struct err *e)
{
    int rc = write_campaign(st, &q_camp_update, c, "update campaign", e);

    if (rc == 0 && sq_changes(st) == 0)
        return ERR(e, E_NOTFOUND, "no campaign %lld", (long long)c->id);
    return rc;
}

struct campaign_visit {
    store_campaign_fn fn;
    void *ctx;
};

static int row_campaign(sqlite3_stmt *s, void *ctx)
{
    struct campaign_visit *v = ctx;
    struct store_campaign c = {
        .id = sqlite3_column_int64(s, 0),
        .name = sq_col_text(s, 1),
        .segment_id = sqlite3_column_int64(s, 2),
        .template_id = sqlite3_column_int64(s, 3),
        .provider = sq_col_text(s, 4),
        .throttle_per_second = sqlite3_column_int(s, 5),
        .scheduled_at = sqlite3_column_int64(s, 6),
        .state = sq_col_text(s, 7),
        .last_run_id = sqlite3_column_int64(s, 8),
        .created_at = sqlite3_column_int64(s, 9),
        .updated_at = sqlite3_column_int64(s, 10),
        .created_by = sq_col_text(s, 11),
        .deleted = sqlite3_column_int(s, 12),
        .track_opens = sqlite3_column_int(s, 13),
        .track_clicks = sqlite3_column_int(s, 14),
        .conversion = sq_col_text(s, 15),
    };

    return v->fn(v->ctx, &c);
}

int store_campaign_get(struct store *st, int64_t id, store_campaign_fn fn, void *ctx, struct err *e)
{
    struct campaign_visit v = {fn, ctx};

    return read_rows(st, &q_camp_get, &id, 1, row_campaign, &v, "campaign", e);
}

int store_campaigns_list(struct store *st, int64_t after_id, int limit, store_campaign_fn fn,
                         void *ctx, struct err *e)
{
    struct campaign_visit v = {fn, ctx};
    int64_t args[2] = {after_id, limit > 0 ? limit : -1};

    return read_rows(st, &q_camp_list, args, 2, row_campaign, &v, NULL, e);
}

/* ---- runs ------------------------------------------------------------------------- */

int store_run_insert(struct store *st, struct store_run *r, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, &q_run_insert, e)))
        return rc;
    sq_i64(&q, 2, r->campaign_id);
    sq_text(&q, 3, r->state);
    sq_text(&q, 4, r->reason);
    sq_text(&q, 5, r->provider);
    sq_i64(&q, 6, r->segment_id);
    sq_i64(&q, 7, r->template_id);
    sq_int(&q, 8, r->template_version);
    sq_int(&q, 9, r->throttle_per_second);
    sq_i64(&q, 10, r->evaluation_id);
    sq_i64(&q, 11, r->audience);
    sq_i64(&q, 12, r->cursor);
    sq_int(&q, 13, r->ledgered);
    sq_i64(&q, 14, r->possible_duplicates);
    sq_i64(&q, 15, r->start_at);
    sq_i64(&q, 16, r->created_at);
    sq_i64(&q, 17, r->started_at);
    sq_i64(&q, 18, r->finished_at);
    sq_i64(&q, 19, r->updated_at);
    sq_text(&q, 20, r->created_by);
    sq_int(&q, 21, r->track_opens);
    sq_int(&q, 22, r->track_clicks);
    rc = sq_exec(&q, "insert run", e);
    if (rc == 0)
        r->id = sq_last_id(st);
    return rc;
}

int store_run_update(struct store *st, const struct store_run *r, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, &q_run_update, e)))
        return rc;
    sq_i64(&q, 1, r->id);
    sq_text(&q, 2, r->state);
    sq_text(&q, 3, r->reason);
    sq_text(&q, 4, r->provider);
    sq_int(&q, 5, r->template_version);
    sq_i64(&q, 6, r->evaluation_id);
    sq_i64(&q, 7, r->audience);
    sq_i64(&q, 8, r->cursor);
    sq_int(&q, 9, r->ledgered);
    sq_i64(&q, 10, r->started_at);
    sq_i64(&q, 11, r->finished_at);
    sq_i64(&q, 12, r->updated_at);
    sq_i64(&q, 13, r->segment_id);
    sq_i64(&q, 14, r->template_id);
    sq_int(&q, 15, r->throttle_per_second);
    sq_i64(&q, 16, r->start_at);
    sq_int(&q, 17, r->track_opens);
    sq_int(&q, 18, r->track_clicks);
    rc = sq_exec(&q, "update run", e);
    if (rc == 0 && sq_changes(st) == 0)
        return ERR(e, E_NOTFOUND, "no run %lld", (long long)r->id);
    return rc;
}

struct run_visit {
    store_run_fn fn;
    void *ctx;
};

static int row_run(sqlite3_stmt *s, void *ctx)
{
    struct run_visit *v = ctx;
    struct store_run r = {
        .id = sqlite3_column_int64(s, 0),
        .campaign_id = sqlite3_column_int64(s, 1),
        .state = sq_col_text(s, 2),
        .reason = sq_col_text(s, 3),
        .provider = sq_col_text(s, 4),
        .segment_id = sqlite3_column_int64(s, 5),
        .template_id = sqlite3_column_int64(s, 6),
        .template_version = sqlite3_column_int(s, 7),
        .throttle_per_second = sqlite3_column_int(s, 8),
        .evaluation_id = sqlite3_column_int64(s, 9),
        .audience = sqlite3_column_int64(s, 10),
        .cursor = sqlite3_column_int64(s, 11),
        .ledgered = sqlite3_column_int(s, 12),
        .possible_duplicates = sqlite3_column_int64(s, 13),
        .start_at = sqlite3_column_int64(s, 14),
        .created_at = sqlite3_column_int64(s, 15),
        .started_at = sqlite3_column_int64(s, 16),
        .finished_at = sqlite3_column_int64(s, 17),
        .updated_at = sqlite3_column_int64(s, 18),
        .created_by = sq_col_text(s, 19),
        .track_opens = sqlite3_column_int(s, 20),
        .track_clicks = sqlite3_column_int(s, 21),
    };

    return v->fn(v->ctx, &r);
}

int store_run_get(struct store *st, int64_t id, store_run_fn fn, void *ctx, struct err *e)
{
    struct run_visit v = {fn, ctx};

    return read_rows(st, &q_run_get, &id, 1, row_run, &v, "run", e);
}

int store_runs_list(struct store *st, int64_t campaign_id, int64_t before_id, int limit,
                    store_run_fn fn, void *ctx, struct err *e)
{
    struct run_visit v = {fn, ctx};
    int64_t args[3] = {campaign_id, before_id > 0 ? before_id : INT64_MAX, limit > 0 ? limit : -1};

    return read_rows(st, &q_runs_list, args, 3, row_run, &v, NULL, e);
}

int store_runs_active(struct store *st, int64_t now, store_run_fn fn, void *ctx, struct err *e)
{
    struct run_visit v = {fn, ctx};

    return read_rows(st, &q_runs_active, &now, 1, row_run, &v, NULL, e);
}
