/* store/sqlite/sqlite_int.h -- what the files of the SQLite backend share: the
 * connection (struct store), the statement helper (stmt.c) and the hooks between the
 * event blocks (events.c) and the transactions (conn.c). Not for other modules.
 *
 * DESIGN: every statement the backend runs goes through the helper below. A fixed
 * statement is a `struct sq_def` (an id from enum sq_id and its SQL), written in the
 * file that owns its table; each connection prepares it on first use and keeps it
 * (SQLITE_PREPARE_PERSISTENT), so a hot path costs a bind, a step and a reset. SQL
 * built at run time (a filter's WHERE clause) is prepared for the one call and
 * finalized by the same sq_done(). Bind failures are kept in the handle and reported
 * by the step that follows, once, with ERR(). */
#ifndef ENGAGE_STORE_SQLITE_INT_H
#define ENGAGE_STORE_SQLITE_INT_H

#include <sqlite3.h>

#include "../store_int.h"

/* Every fixed statement of the backend, grouped by the file that owns it. */
enum sq_id {
    /* conn.c */
    SQ_USER_VERSION,
    SQ_COUNT_REJ,
    /* contacts.c */
    SQ_CONTACT_GET,
    SQ_CONTACT_BY_XID,
    SQ_CONTACT_BY_ANON,
    SQ_CONTACT_LOOKUP,
    SQ_CONTACT_IDS,
    SQ_CONTACT_INSERT,
    SQ_CONTACT_UPDATE,
    SQ_CONSENT_LOG,
    SQ_CONSENT_HISTORY,
    SQ_ANON_LINK,
    SQ_CONTACTS_SINCE,
    SQ_CONTACTS_LIST,
    SQ_CONTACTS_BY_EMAIL,
    SQ_MAXSEQ_C,
    SQ_COUNT_C,
    SQ_ATTR_TYPES,
    SQ_ATTR_PUT,
    SQ_ATTR_GET,
    /* events.c */
    SQ_NAME_GET,
    SQ_NAME_PUT,
    SQ_NAMES,
    SQ_NAME_DROP,
    SQ_NAME_OF,
    SQ_BLOCK_ADD,
    SQ_BLOCK_AT,
    SQ_TOTALS_ADD,
    SQ_TOTALS,
    SQ_MAXSEQ_E,
    SQ_SUPERSEDE,
    SQ_ANON_ADD,
    SQ_ANON_DEL,
    SQ_ANON_OF,
    SQ_ANON_CLEAR,
    SQ_DEAD,
    SQ_SUM,
    SQ_COLS_AFTER,
    SQ_BLOCK_OF,
    SQ_OLD_EVENTS,
    /* contracts.c */
    SQ_CONTRACT_MAXV,
    SQ_CONTRACT_PUT,
    SQ_CONTRACTS_LATEST,
    SQ_CONTRACT_VERSIONS,
    SQ_CONTRACTS_STAMP,
    /* rejected.c */
    SQ_REJ_ADD,
    SQ_REJ_ADD_ONCE,
    SQ_REJ_UPDATE,
    SQ_REJ_COUNTS,
    SQ_REJ_LONG,
    SQ_REJ_CUT,
    /* auth.c */
    SQ_KEY_ADD,
    SQ_KEY_BY_HASH,
    SQ_KEY_TOUCH,
    SQ_KEYS,
    SQ_KEY_REVOKE,
    SQ_AUDIT_ADD,
    SQ_AUDIT_LIST,
    /* imports.c */
    SQ_IMPORT_BEGIN,
    SQ_IMPORT_PROGRESS,
    SQ_IMPORTS,
    /* segments.c */
    SQ_SEG_INSERT,
    SQ_SEG_VERSION_ADD,
    SQ_SEG_UPDATE,
    SQ_SEG_GET,
    SQ_SEG_LIST,
    SQ_SEG_VERSIONS,
    SQ_SEG_DUE,
    SQ_SEG_NEXT_RUN,
    SQ_EVAL_BEGIN,
    SQ_EVAL_FINISH,
    SQ_EVAL_LIST,
    SQ_EVAL_GET,
    SQ_EVAL_LATEST,
    SQ_SNAP_PUT,
    SQ_SNAP_GET,
    SQ_EVAL_INTERRUPT,
    SQ_EVAL_COUNTS,
    /* templates.c */
    SQ_TPL_INSERT,
    SQ_TPL_UPDATE,
    SQ_TPL_VERSION_ADD,
    SQ_TPL_GET,
    SQ_TPL_VERSION_GET,
    SQ_TPL_LIST,
    SQ_TPL_VERSIONS,
    /* sync.c */
    SQ_SRC_ADD,
    SQ_SRC_GET,
    SQ_SRCS,
    SQ_SRC_DEL_CHECKPOINTS,
    SQ_SRC_DEL,
    SQ_SRC_FAILED,
    SQ_SRC_OK,
    SQ_CKPT_GET,
    SQ_CKPT_SET,
    SQ_RECON_ADD,
    SQ_RECON_LAST,
    SQ_RECONS,
    /* campaigns.c */
    SQ_CAMP_INSERT,
    SQ_CAMP_UPDATE,
    SQ_CAMP_GET,
    SQ_CAMP_LIST,
    SQ_RUN_INSERT,
    SQ_RUN_UPDATE,
    SQ_RUN_GET,
    SQ_RUNS_LIST,
    SQ_RUNS_ACTIVE,
    /* ledger.c */
    SQ_MSG_INSERT,
    SQ_MSG_CURSOR,
    SQ_MSG_DUE,
    SQ_MSG_TAKE,
    SQ_MSG_DUPS,
    SQ_MSG_CLAIMED,
    SQ_MSG_RENEW,
    SQ_MSG_COMPLETE,
    SQ_MSG_RECOVER,
    SQ_MSG_MOVE,
    SQ_MSG_COUNT,
    SQ_MSG_NEXT_DUE,
    SQ_MSG_LIST_STATE,
    SQ_MSG_LIST_ANY,
    SQ_MSG_DEAD_RUN,
    SQ_MSG_DEAD_ALL,
    SQ_MSG_DEAD_RUNS,
    SQ_MSG_REPLAY,
    SQ_MSG_LIST_FILTER,
    SQ_MSG_REASONS,
    SQ_MEV_INSERT,
    SQ_MEV_LIST_RUN,
    SQ_MEV_LIST_RUN_KIND,
    SQ_MEV_LIST_UNKNOWN,
    SQ_JOURNAL_GET,
    SQ_RUN_LOG_ADD,
    SQ_RUN_LOG_LIST,
    SQ_JOURNAL_SET,
    SQ_ENG_BY_RUN_CONTACT,
    SQ_ENG_BY_QUEUE_ID,
    SQ_ENG_LATEST,
    SQ_ENG_OF_CONTACT,
    SQ_ENG_SET_EVENTS,
    SQ_STAT_RUN,
    SQ_STAT_MINUTE,
    SQ_STAT_OF_RUN,
    SQ_STAT_MINUTES_RUN,
    SQ_STAT_MINUTES_ALL,
    SQ_INBOX_INSERT,
    SQ_INBOX_DUE,
    SQ_INBOX_TAKE,
    SQ_INBOX_READ,
    SQ_INBOX_FINISH,
    SQ_INBOX_STATS,
    SQ_INBOX_RETRY_ONE,
    SQ_INBOX_RETRY_ALL,
    SQ_INBOX_PRUNE,
    SQ_Q_LEDGER,
    SQ_Q_OLDEST,
    SQ_Q_RETRY,
    SQ__N
};

/* A fixed statement: its slot in each connection's cache and its SQL. */
struct sq_def {
    enum sq_id id;
    const char *sql;
};

struct ckpt;    /* conn.c */
struct evstate; /* events.c */

struct store {
    sqlite3 *db;
    struct ckpt *ckpt;
    sqlite3_stmt *stmts[SQ__N];       /* the statement cache: prepared on first use */
    const struct sq_def *defs[SQ__N]; /* what each slot was prepared from */
    int in_tx, writing;
    struct evstate *ev;                       /* events.c */
    int64_t next_contact_seq, next_event_seq; /* valid inside a write transaction */
    int busy_timeout_ms;
    char path[1024];
};

/* ---- the statement helper (stmt.c) ---- */

/* One statement in use: cached (reset by sq_done) or made for this call (finalized). */
struct sq {
    struct store *st;
    sqlite3_stmt *s;
    int own;  /* prepared by sq_prep_sql: finalized by sq_done */
    int bind; /* the first failed bind's SQLite code, 0 if none */
};

/* Maps a SQLite result code to an E_* code and records it (what: the action). */
int sq_err(struct store *st, struct err *e, int rc, const char *what);
/* The cached statement of def, ready to bind. */
int sq_prep(struct sq *q, struct store *st, const struct sq_def *def, struct err *e);
/* A statement from SQL built for this call (finalized by sq_done). */
int sq_prep_sql(struct sq *q, struct store *st, const char *sql, struct err *e);
/* Resets a cached statement (and clears its bindings) or finalizes an own one. NULL-safe
 * (a handle whose prepare failed). */
void sq_done(struct sq *q);
/* One step: 1 a row, 0 done, else the error (recorded). The statement stays open. */
int sq_step(struct sq *q, const char *what, struct err *e);
/* Runs it to its end (rows ignored), then sq_done(). */
int sq_exec(struct sq *q, const char *what, struct err *e);
/* As sq_exec, but a constraint failure returns E_CONFLICT unrecorded: the caller
 * names what clashed. */
int sq_exec_unique(struct sq *q, const char *what, struct err *e);
/* Steps through every row, calling row(s, ctx); a non-zero return stops the loop and
 * is returned unchanged. Then sq_done(). *rows (if not NULL) counts the rows seen. */
typedef int (*sq_row_fn)(sqlite3_stmt *s, void *ctx);
int sq_each(struct sq *q, const char *what, sq_row_fn row, void *ctx, int *rows, struct err *e);
/* Rows of (key, count) to a store_count_fn, as sq_each. */
int sq_counts(struct sq *q, const char *what, store_count_fn fn, void *ctx, struct err *e);
/* Makes a statement ready to run again (bindings cleared), keeping it. */
void sq_reset(struct sq *q);
/* The first row's integer columns 0 (and 1 if b): 0 when there is no row. Then sq_done(). */
int sq_ints(struct sq *q, int64_t *a, int64_t *b, const char *what, struct err *e);
/* Runs a script of statements without results (BEGIN, COMMIT, PRAGMAs, migrations). */
int sq_script(struct store *st, const char *sql, struct err *e);
/* Ends the open transaction, if any, without a word: a failed rollback leaves nothing
 * to do (SQLite has rolled back already, or the connection is closing). */
void sq_rollback(struct store *st);

static inline void sq_keep(struct sq *q, int rc)
{
    if (rc != SQLITE_OK && q->bind == 0)
        q->bind = rc;
}

static inline void sq_i64(struct sq *q, int i, int64_t v)
{
    sq_keep(q, sqlite3_bind_int64(q->s, i, v));
}

static inline void sq_int(struct sq *q, int i, int v)
{
    sq_keep(q, sqlite3_bind_int(q->s, i, v));
}

static inline void sq_double(struct sq *q, int i, double v)
{
    sq_keep(q, sqlite3_bind_double(q->s, i, v));
}

/* Text that lives until the statement has stepped; NULL binds null. */
static inline void sq_text(struct sq *q, int i, const char *v)
{
    sq_keep(q, v ? sqlite3_bind_text(q->s, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(q->s, i));
}

/* The first n bytes of v; copy: SQLite keeps its own copy (v may go before the step). */
static inline void sq_textn(struct sq *q, int i, const char *v, size_t n, int copy)
{
    sq_keep(q, sqlite3_bind_text64(q->s, i, v, n, copy ? SQLITE_TRANSIENT : SQLITE_STATIC,
                                   SQLITE_UTF8));
}

static inline void sq_blob(struct sq *q, int i, const void *p, size_t n)
{
    sq_keep(q, sqlite3_bind_blob64(q->s, i, p, n, SQLITE_STATIC));
}

/* A text column, or NULL. */
static inline const char *sq_col_text(sqlite3_stmt *s, int i)
{
    return (const char *)sqlite3_column_text(s, i);
}

/* A copy of a text column (caller frees), or NULL. */
char *sq_col_dup(sqlite3_stmt *s, int i);

static inline int64_t sq_last_id(struct store *st)
{
    return sqlite3_last_insert_rowid(st->db);
}

static inline int64_t sq_changes(struct store *st)
{
    return sqlite3_changes(st->db);
}

/* ---- conn.c ---- */

/* 1 inside store_begin() .. commit/rollback (a write transaction), else 0. */
static inline int sqlite_writing(const struct store *st)
{
    return st->in_tx && st->writing;
}

/* The migrations, in order: entry i takes the schema from version i to i + 1 (schema.c). */
extern const char *const sqlite_migrations[STORE_SCHEMA_VERSION];

/* Schema 9 -> 10: dead letters kept whole before are cut (rejected.c). */
int rejected_cut_old(struct store *st, struct err *e);
/* The contacts' highest change sequence (contacts.c). */
int contacts_max_seq(struct store *st, int64_t *out, struct err *e);
int contacts_totals(struct store *st, int64_t *count, int64_t *deleted, int64_t *max_seq,
                    struct err *e);

/* ---- events.c, for conn.c ---- */

/* The newest event seq stored (0 for none). */
int events_max_seq(struct store *st, int64_t *out, struct err *e);
int events_totals(struct store *st, int64_t *live, int64_t *unvalidated, struct err *e);
/* Writes the transaction's pending versions as blocks; before COMMIT. */
int events_flush(struct store *st, struct err *e);
/* After COMMIT (the shared key map learns the transaction's keys) or ROLLBACK. */
void events_end(struct store *st, int committed);
void events_close(struct store *st);
/* Schema 3 -> 4: moves the rows of the old events table into blocks. */
int events_migrate_blocks(struct store *st, struct err *e);
/* The optional capabilities of store.h (store_caps()), as the event blocks offer them. */
void events_reserve(struct store *st, int64_t versions);
void events_prefetch(struct store *st, uint64_t key_hash);

#endif
