/* store/sqlite/contracts.c -- event and contact contracts: every version kept, the
 * latest one in force. */
#include "sqlite_int.h"

static const struct sq_def q_maxv = {
    SQ_CONTRACT_MAXV, "SELECT coalesce(max(version), 0) FROM contracts WHERE name = ?1"};
static const struct sq_def q_put = {
    SQ_CONTRACT_PUT, "INSERT INTO contracts(name, version, kind, body, created_at, created_by)"
                     " VALUES(?1,?2,?3,?4,?5,?6)"};
static const struct sq_def q_latest = {
    SQ_CONTRACTS_LATEST, "SELECT c.name, c.version, c.kind, c.body, c.created_at, c.created_by"
                         " FROM contracts c WHERE c.version = (SELECT max(version) FROM"
                         " contracts d WHERE d.name = c.name) ORDER BY c.name"};
static const struct sq_def q_versions = {
    SQ_CONTRACT_VERSIONS, "SELECT name, version, kind, body, created_at, created_by FROM"
                          " contracts WHERE name = ?1 ORDER BY version DESC"};
static const struct sq_def q_stamp = {SQ_CONTRACTS_STAMP, "SELECT count(*) FROM contracts"};

int store_contract_put(struct store *st, const char *name, const char *kind, const char *body,
                       const char *created_by, int *version, struct err *e)
{
    struct sq q;
    int64_t v;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, &q_maxv, e)))
        return rc;
    sq_text(&q, 1, name);
    rc = sq_step(&q, "read contract version", e);
    if (rc == 0)
        rc = sq_err(st, e, SQLITE_DONE, "read contract version");
    v = rc > 0 ? sqlite3_column_int(q.s, 0) + 1 : 0;
    sq_done(&q);
    if (rc < 0)
        return rc;
    if ((rc = sq_prep(&q, st, &q_put, e)))
        return rc;
    sq_text(&q, 1, name);
    sq_int(&q, 2, (int)v);
    sq_text(&q, 3, kind);
    sq_text(&q, 4, body);
    sq_i64(&q, 5, clock_now_ms());
    sq_text(&q, 6, created_by);
    rc = sq_exec(&q, "store contract", e);
    if (rc == 0)
        *version = (int)v;
    return rc;
}

struct contract_visit {
    store_contract_fn fn;
    void *ctx;
};

static int row_contract(sqlite3_stmt *s, void *ctx)
{
    struct contract_visit *v = ctx;
    struct store_contract c = {
        .name = sq_col_text(s, 0),
        .version = sqlite3_column_int(s, 1),
        .kind = sq_col_text(s, 2),
        .body = sq_col_text(s, 3),
        .created_at = sqlite3_column_int64(s, 4),
        .created_by = sq_col_text(s, 5),
    };

    return v->fn(v->ctx, &c);
}

int store_contracts_latest(struct store *st, store_contract_fn fn, void *ctx, struct err *e)
{
    struct contract_visit v = {fn, ctx};
    struct sq q;
    int rc = sq_prep(&q, st, &q_latest, e);

    return rc ? rc : sq_each(&q, "read contracts", row_contract, &v, NULL, e);
}

int store_contract_versions(struct store *st, const char *name, store_contract_fn fn, void *ctx,
                            struct err *e)
{
    struct contract_visit v = {fn, ctx};
    struct sq q;
    int n, rc = sq_prep(&q, st, &q_versions, e);

    if (rc)
        return rc;
    sq_text(&q, 1, name);
    rc = sq_each(&q, "read contracts", row_contract, &v, &n, e);
    if (rc == 0 && n == 0)
        rc = ERR(e, E_NOTFOUND, "no contract named '%s'", name);
    return rc;
}

int store_contracts_stamp(struct store *st, int64_t *out, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_stamp, e);

    return rc ? rc : sq_ints(&q, out, NULL, "query", e);
}
