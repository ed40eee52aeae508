/* sync/source.c -- reading a CRM's tables: PostgreSQL (libpq) and SQLite.
 *
 * DESIGN: one query per batch, `SELECT cols FROM t WHERE (cursor, key) > (?, ?) ORDER
 * BY cursor, key LIMIT n` (a row comparison, which an index on (cursor, key) serves).
 * The checkpoint keeps the last row's cursor and key as the source compares them: for
 * PostgreSQL the text it printed (given back as untyped parameters, which the server
 * types from the columns), for SQLite the typed value. PostgreSQL rows also say
 * whether their writing transaction is older than every transaction still running
 * (xmin below the snapshot's xmin): a checkpoint never moves past a row that is not, so
 * a transaction that began earlier but commits later is still read. Values become JSON:
 * numbers, booleans, text; timestamps as ISO-8601 UTC (the session runs in UTC); json
 * and jsonb parsed. */
#include <libpq-fe.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "../core/secret.h"
#include "sync.h"

struct sync_conn {
    int pg;
    PGconn *pgc;
    sqlite3 *db;
    char name[128];
};

/* ---- passwords ------------------------------------------------------------------- */

int sync_password(const struct config *cfg, const char *ref, char **out, struct err *e)
{
    *out = NULL;
    if (ref == NULL || *ref == '\0')
        return 0;
    if (strncmp(ref, "env:", 4) == 0 || strncmp(ref, "file:", 5) == 0) {
        char msg[300];
        int env = ref[0] == 'e';
        if (config_secret_resolve(env ? "env" : "file", ref + (env ? 4 : 5), out, msg, sizeof msg))
            return ERR(e, E_INVAL, "the source's password: %s", msg);
        return 0;
    }
    if (strncmp(ref, "sb1:", 4) == 0) {
        unsigned char key[SECRET_KEY_BYTES];
        size_t n;
        int rc = secret_key_load(cfg, key, e);
        if (rc == 0)
            rc = secret_open(key, ref, out, &n, e);
        sodium_memzero(key, sizeof key);
        return rc;
    }
    return ERR(e, E_INVAL, "a password reference is env:VAR, file:PATH or a sealed value");
}

/* ---- connections ------------------------------------------------------------------- */

int sync_connect(const struct store_sync_source *src, const struct config *cfg,
                 struct sync_conn **out, struct err *e)
{
    struct sync_conn *c = xcalloc(1, sizeof *c);
    char *password = NULL;
    int rc;

    *out = NULL;
    snprintf(c->name, sizeof c->name, "%s", src->name);
    if (strcmp(src->kind, "sqlite") == 0) {
        rc = sqlite3_open_v2(src->dsn, &c->db, SQLITE_OPEN_READONLY, NULL);
        if (rc != SQLITE_OK) {
            rc = ERR(e, E_IO, "source %s: cannot open %s: %s", src->name, src->dsn,
                     c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
            sqlite3_close(c->db);
            free(c);
            return rc;
        }
        sqlite3_busy_timeout(c->db, 5000);
        *out = c;
        return 0;
    }
    if (strcmp(src->kind, "postgres") != 0) {
        free(c);
        return ERR(e, E_INVAL, "source %s: unknown kind \"%s\"", src->name, src->kind);
    }
    rc = sync_password(cfg, src->password, &password, e);
    if (rc) {
        free(c);
        return rc;
    }
    {
        const char *keys[] = {"dbname", "password", "connect_timeout", "application_name", NULL};
        const char *vals[] = {src->dsn, password, "10", "engage-sync", NULL};
        c->pg = 1;
        c->pgc = PQconnectdbParams(keys, vals, 1);
    }
    secret_free(password);
    if (PQstatus(c->pgc) != CONNECTION_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(c->pgc));
        msg[strcspn(msg, "\n")] = '\0';
        PQfinish(c->pgc);
        free(c);
        return ERR(e, E_IO, "source %s: cannot connect: %s", src->name, msg);
    }
    {
        PGresult *r = PQexec(c->pgc, "SET TIME ZONE 'UTC'; SET datestyle = 'ISO, YMD';"
                                     " SET default_transaction_read_only = on");
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok) {
            rc = ERR(e, E_IO, "source %s: cannot set up the session: %s", src->name,
                     PQerrorMessage(c->pgc));
            PQfinish(c->pgc);
            free(c);
            return rc;
        }
    }
    *out = c;
    return 0;
}

void sync_disconnect(struct sync_conn *c)
{
    if (c == NULL)
        return;
    if (c->pgc)
        PQfinish(c->pgc);
    if (c->db)
        sqlite3_close(c->db);
    free(c);
}

void sync_batch_release(struct sync_batch *b)
{
    int i;

    for (i = 0; i < b->n; i++) {
        json_decref(b->rows[i].values);
        free(b->rows[i].cursor);
        free(b->rows[i].key);
    }
    free(b->rows);
    for (i = 0; i < b->ncolumns; i++)
        free(b->columns[i]);
    free(b->columns);
    memset(b, 0, sizeof *b);
}

/* ---- queries ---------------------------------------------------------------------------- */

static void add_column(struct sync_batch *b, const char *col)
{
    int i;

    if (col[0] == '\0')
        return;
    for (i = 0; i < b->ncolumns; i++)
        if (strcmp(b->columns[i], col) == 0)
            return;
    b->columns = xrealloc(b->columns, (size_t)(b->ncolumns + 1) * sizeof *b->columns);
    b->columns[b->ncolumns++] = xstrdup(col);
}

/* "name" or "schema"."name": names are checked identifiers (mapping.c), quoted anyway. */
static void quoted(struct buf *q, const char *name)
{
    const char *dot = strchr(name, '.');

    if (dot) {
        buf_printf(q, "\"%.*s\".", (int)(dot - name), name);
        name = dot + 1;
    }
    buf_printf(q, "\"%s\"", name);
}

static void build_query(struct buf *q, const struct sync_table *t, struct sync_batch *b, int pg,
                        int after, int limit)
{
    int i;

    add_column(b, t->key);
    add_column(b, t->cursor);
    add_column(b, t->external_id);
    add_column(b, t->email);
    add_column(b, t->consent);
    add_column(b, t->deleted);
    add_column(b, t->occurred_at);
    add_column(b, t->event_column);
    for (i = 0; i < t->ncols; i++)
        add_column(b, t->cols[i].column);
    buf_adds(q, "SELECT ");
    for (i = 0; i < b->ncolumns; i++) {
        if (i)
            buf_adds(q, ", ");
        quoted(q, b->columns[i]);
    }
    if (pg)
        buf_adds(q, ", xmin::text, pg_snapshot_xmin(pg_current_snapshot())::text");
    buf_adds(q, " FROM ");
    quoted(q, t->table);
    if (after == 2) { /* from a cursor value on, inclusive (a backfill's --since) */
        buf_adds(q, " WHERE ");
        quoted(q, t->cursor);
        buf_adds(q, pg ? " >= $1" : " >= ?1");
    } else if (after) {
        buf_adds(q, " WHERE (");
        quoted(q, t->cursor);
        buf_adds(q, ", ");
        quoted(q, t->key);
        buf_adds(q, pg ? ") > ($1, $2)" : ") > (?1, ?2)");
    }
    buf_adds(q, " ORDER BY ");
    quoted(q, t->cursor);
    buf_adds(q, ", ");
    quoted(q, t->key);
    buf_printf(q, " LIMIT %d", limit);
}

/* PostgreSQL's text for a timestamp, in UTC ("2026-11-01 10:00:00.5+00"), as ISO-8601. */
static json_t *pg_timestamp(const char *v, int with_tz)
{
    char iso[64];
    size_t n = strlen(v);

    if (n >= sizeof iso - 2)
        return json_string(v);
    memcpy(iso, v, n + 1);
    if (n > 10 && iso[10] == ' ')
        iso[10] = 'T';
    if (with_tz && n > 3 && strcmp(iso + n - 3, "+00") == 0)
        memcpy(iso + n - 3, "Z", 2);
    else if (!with_tz && n > 10)
        memcpy(iso + n, "Z", 2); /* a timestamp without zone is taken as UTC */
    return json_string(iso);
}

static json_t *pg_value(const PGresult *r, int row, int col)
{
    const char *v;
    json_t *j;

    if (PQgetisnull(r, row, col))
        return json_null();
    v = PQgetvalue(r, row, col);
    switch (PQftype(r, col)) {
    case 16: /* bool */
        return json_boolean(v[0] == 't');
    case 20: case 21: case 23: /* int8, int2, int4 */
        return json_integer(strtoll(v, NULL, 10));
    case 700: case 701: case 1700: /* float4, float8, numeric */
        return json_real(strtod(v, NULL));
    case 1114: /* timestamp */
        return pg_timestamp(v, 0);
    case 1184: /* timestamptz */
        return pg_timestamp(v, 1);
    case 114: case 3802: /* json, jsonb */
        j = json_loads(v, JSON_DECODE_ANY, NULL);
        return j ? j : json_string(v);
    default:
        return json_string(v);
    }
}

/* A wrapping comparison of 32-bit transaction ids (as PostgreSQL's TransactionIdPrecedes):
 * frozen (2) and bootstrap (1) ids precede everything. */
static int xid_before(unsigned long long a, unsigned long long b)
{
    if (a < 3)
        return 1;
    return (int32_t)((uint32_t)a - (uint32_t)b) < 0;
}

static int read_pg(struct sync_conn *c, const struct sync_table *t, const char *cursor,
                   const char *key, int limit, struct sync_batch *b, struct err *e)
{
    struct buf q;
    const char *params[2];
    json_t *cj = NULL, *kj = NULL;
    PGresult *r;
    int i, k, rc = 0, nrows;

    buf_init(&q);
    build_query(&q, t, b, 1, cursor == NULL ? 0 : key == NULL ? 2 : 1, limit);
    if (cursor) { /* the checkpoint keeps PostgreSQL's own text of both */
        cj = json_loads(cursor, JSON_DECODE_ANY, NULL);
        kj = key ? json_loads(key, JSON_DECODE_ANY, NULL) : json_string("");
        if (!json_is_string(cj) || !json_is_string(kj)) {
            json_decref(cj);
            json_decref(kj);
            buf_release(&q);
            return ERR(e, E_CORRUPT, "source %s, table %s: the checkpoint is not PostgreSQL "
                                     "text (was the source's kind changed?)", c->name, t->table);
        }
        params[0] = json_string_value(cj);
        params[1] = json_string_value(kj);
    }
    r = PQexecParams(c->pgc, q.p, cursor ? key ? 2 : 1 : 0, NULL, cursor ? params : NULL, NULL,
                     NULL, 0);
    buf_release(&q);
    json_decref(cj);
    json_decref(kj);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
        msg[strcspn(msg, "\n")] = '\0';
        PQclear(r);
        return ERR(e, PQstatus(c->pgc) == CONNECTION_OK ? E_INVAL : E_IO,
                   "source %s, table %s: %s", c->name, t->table, msg);
    }
    nrows = PQntuples(r);
    b->rows = xcalloc((size_t)(nrows ? nrows : 1), sizeof *b->rows);
    for (i = 0; i < nrows; i++) {
        struct sync_row *row = &b->rows[i];
        unsigned long long xmin = strtoull(PQgetvalue(r, i, b->ncolumns), NULL, 10);
        unsigned long long snap = strtoull(PQgetvalue(r, i, b->ncolumns + 1), NULL, 10);
        row->values = json_array();
        for (k = 0; k < b->ncolumns; k++)
            json_array_append_new(row->values, pg_value(r, i, k));
        for (k = 0; k < b->ncolumns; k++) {
            char **slot = strcmp(b->columns[k], t->cursor) == 0 ? &row->cursor
                          : strcmp(b->columns[k], t->key) == 0  ? &row->key
                                                                : NULL;
            if (slot) {
                json_t *s = json_string(PQgetisnull(r, i, k) ? "" : PQgetvalue(r, i, k));
                *slot = json_dumps(s, JSON_ENCODE_ANY);
                json_decref(s);
            }
        }
        row->settled = xid_before(xmin, snap);
        b->n++;
    }
    PQclear(r);
    return rc;
}

static json_t *sqlite_value(sqlite3_stmt *s, int col)
{
    switch (sqlite3_column_type(s, col)) {
    case SQLITE_INTEGER: return json_integer(sqlite3_column_int64(s, col));
    case SQLITE_FLOAT: return json_real(sqlite3_column_double(s, col));
    case SQLITE_NULL: return json_null();
    default:
        return json_stringn_nocheck((const char *)sqlite3_column_text(s, col),
                                    (size_t)sqlite3_column_bytes(s, col));
    }
}

static void bind_json(sqlite3_stmt *s, int i, const char *text)
{
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);

    if (json_is_integer(v))
        sqlite3_bind_int64(s, i, json_integer_value(v));
    else if (json_is_real(v))
        sqlite3_bind_double(s, i, json_real_value(v));
    else if (json_is_string(v))
        sqlite3_bind_text(s, i, json_string_value(v), -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
    json_decref(v);
}

static int read_sqlite(struct sync_conn *c, const struct sync_table *t, const char *cursor,
                       const char *key, int limit, struct sync_batch *b, struct err *e)
{
    sqlite3_stmt *s = NULL;
    struct buf q;
    int rc, k, cap = 0;

    buf_init(&q);
    build_query(&q, t, b, 0, cursor == NULL ? 0 : key == NULL ? 2 : 1, limit);
    rc = sqlite3_prepare_v2(c->db, q.p, -1, &s, NULL);
    buf_release(&q);
    if (rc != SQLITE_OK)
        return ERR(e, E_INVAL, "source %s, table %s: %s", c->name, t->table, sqlite3_errmsg(c->db));
    if (cursor) {
        bind_json(s, 1, cursor);
        if (key)
            bind_json(s, 2, key);
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct sync_row *row;
        if (b->n == cap) {
            cap = cap ? cap * 2 : 256;
            b->rows = xrealloc(b->rows, (size_t)cap * sizeof *b->rows);
        }
        row = &b->rows[b->n++];
        memset(row, 0, sizeof *row);
        row->values = json_array();
        for (k = 0; k < b->ncolumns; k++)
            json_array_append_new(row->values, sqlite_value(s, k));
        for (k = 0; k < b->ncolumns; k++) {
            if (strcmp(b->columns[k], t->cursor) == 0)
                row->cursor = json_dumps(json_array_get(row->values, (size_t)k), JSON_ENCODE_ANY);
            if (strcmp(b->columns[k], t->key) == 0)
                row->key = json_dumps(json_array_get(row->values, (size_t)k), JSON_ENCODE_ANY);
        }
        row->settled = 1;
    }
    if (rc != SQLITE_DONE)
        rc = ERR(e, E_IO, "source %s, table %s: %s", c->name, t->table, sqlite3_errmsg(c->db));
    else
        rc = 0;
    sqlite3_finalize(s);
    return rc;
}

int sync_read(struct sync_conn *c, const struct sync_table *t, const char *cursor,
              const char *key, int limit, struct sync_batch *out, struct err *e)
{
    int rc;

    memset(out, 0, sizeof *out);
    rc = c->pg ? read_pg(c, t, cursor, key, limit, out, e)
               : read_sqlite(c, t, cursor, key, limit, out, e);
    if (rc)
        sync_batch_release(out);
    return rc;
}
