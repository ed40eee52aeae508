/* store/store_int.h -- what the store's two SQLite files share (sqlite.c: connections,
 * transactions, every table but events; events.c: the event blocks). Not for other
 * modules. */
#ifndef ENGAGE_STORE_INT_H
#define ENGAGE_STORE_INT_H

#include <sqlite3.h>

#include "store.h"

/* ---- sqlite.c, for events.c ---- */
sqlite3 *store_sql_db(struct store *st);
int store_sql_err(struct store *st, struct err *e, int rc, const char *what);
/* 1 inside store_begin() .. commit/rollback (a write transaction), else 0. */
int store_sql_writing(const struct store *st);
/* The next event sequence number; valid in a write transaction. */
int64_t *store_sql_event_seq(struct store *st);
const char *store_sql_path(const struct store *st);
/* Binds text (NULL binds null); the text must live until the statement has stepped. */
void store_sql_bind_text(sqlite3_stmt *s, int i, const char *v);
struct evstate;
struct evstate **store_sql_evstate(struct store *st);

/* ---- events.c, for sqlite.c ---- */
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

#endif
