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
#include <errno.h>
#include <libpq-fe.h>
#include <math.h>
#include <poll.h>
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

/* The source's password: none, a reference (checked again for its origin: policy.c), or
 * a value sealed with the secrets key. Caller frees with secret_free. */
static int source_password(const struct store_sync_source *src, const struct config *cfg,
                           char **out, struct err *e)
{
    const char *ref = src->password;
    unsigned char key[SECRET_KEY_BYTES];
    size_t n;
    int rc;

    *out = NULL;
    if (ref == NULL || *ref == '\0')
        return 0;
    if (strncmp(ref, "sb1:", 4) != 0) {
        rc = sync_ref_read(ref, sync_origin_of(src), cfg, out, e);
    } else {
        rc = secret_key_load(cfg, key, e);
        if (rc == 0)
            rc = secret_open(key, ref, out, &n, e);
        sodium_memzero(key, sizeof key);
    }
    if (rc == 0 && **out == '\0') { /* libpq would take it for none, and look for its own */
        secret_free(*out);
        *out = NULL;
        return ERR(e, E_INVAL, "the password (%s) is empty",
                   strncmp(ref, "sb1:", 4) ? ref : "sealed");
    }
    return rc;
}

/* ---- connections ------------------------------------------------------------------- */

/* libpq's last error on pg, its first line, in buf. */
static const char *pq_error(PGconn *pg, char *buf, size_t n)
{
    snprintf(buf, n, "%s", PQerrorMessage(pg));
    buf[strcspn(buf, "\n")] = '\0';
    return buf;
}

/* Drives a connection from PQconnectStartParams to its end one step at a time, so that
 * the state before each step is seen: a password goes out only inside the step that
 * reads the server's answer to the startup packet (CONNECTION_AWAITING_RESPONSE), and
 * libpq returns to us after sending that packet, on every host it tries. Before such a
 * step the connection is dropped when libpq holds a password (PQpass: the source's, or
 * one it found itself in PGPASSWORD, a password file or a service file) and
 *  - the connection is not encrypted (no TLS, no GSS) and clear_ok is not set: the
 *    server could ask for it in clear text (libpq before 16 cannot refuse that);
 *  - from_api is set and the source gave none: a source added over the API uses only
 *    the password it names, whatever the host.
 * PQconnectdb's connect_timeout is its own loop's: each host gets timeout_ms here. */
static int pg_connect_steps(PGconn *pg, const char *name, int clear_ok, int from_api,
                            int own_password, double timeout_ms, struct err *e)
{
    PostgresPollingStatusType step = PGRES_POLLING_WRITING;
    const char *host = PQhost(pg);
    double deadline = clock_mono_ms() + timeout_ms, left;
    char msg[300];

    while (step != PGRES_POLLING_OK) {
        struct pollfd p = {.fd = PQsocket(pg),
                           .events = step == PGRES_POLLING_READING ? POLLIN : POLLOUT};
        const char *pw;
        int ready;
        if (step == PGRES_POLLING_FAILED || PQstatus(pg) == CONNECTION_BAD)
            return ERR(e, E_IO, "source %s: cannot connect: %s", name,
                       pq_error(pg, msg, sizeof msg));
        if (PQhost(pg) != host) { /* the next host: its own time */
            host = PQhost(pg);
            deadline = clock_mono_ms() + timeout_ms;
        }
        left = deadline - clock_mono_ms();
        ready = poll(&p, 1, left > 0 ? (int)left : 0);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0)
            return ERR(e, E_IO, "source %s: cannot connect: %s", name,
                       ready ? strerror(errno) : "timed out");
        pw = PQpass(pg);
        if (PQstatus(pg) == CONNECTION_AWAITING_RESPONSE && pw && *pw) {
            if (from_api && !own_password)
                return ERR(e, E_INVAL,
                           "source %s: libpq found a password of its own for %s "
                           "(PGPASSWORD, a password file or a service file): a "
                           "source added over the API uses only the password it "
                           "names",
                           name, PQhost(pg));
            if (!clear_ok && !PQsslInUse(pg) && !PQgssEncInUse(pg))
                return ERR(e, E_INVAL,
                           "source %s: %s did not use TLS: refusing to send the "
                           "password without it (sslmode=require, or [sync] "
                           "allow_insecure_tls = true)",
                           name, PQhost(pg));
        }
        step = PQconnectPoll(pg);
    }
    return 0;
}

/* Opens a PostgreSQL source into c: its rules checked again, its password resolved, the
 * connection made step by step (pg_connect_steps) and the session set up. */
static int pg_open(struct sync_conn *c, const struct store_sync_source *src,
                   const struct config *cfg, struct err *e)
{
    enum sync_origin origin = sync_origin_of(src);
    const char *who = origin == SYNC_ORIGIN_API ? " (added over the API)" : "";
    int rc, clear_ok, has_password = src->password && *src->password;
    struct errlist errs = {0};
    struct err pe = {0};
    char *password = NULL;
    PGresult *r;

    /* The rules of its origin again: the settings may have changed since it was added,
     * and a source stored before these rules never met them. */
    sync_dsn_check(src->dsn, origin, has_password, cfg, "dsn", &errs);
    if (errs.n)
        return ERR(e, E_INVAL, "source %s%s: %s: %s", src->name, who, errs.items[0].path,
                   errs.items[0].msg);
    rc = source_password(src, cfg, &password, &pe);
    if (rc)
        return ERR(e, rc, "source %s%s: %s", src->name, who, pe.msg);
    /* TLS below require: libpq 16 and later refuse a clear-text password request
     * themselves; before 16, pg_connect_steps drops the connection first. */
    clear_ok = cfg->sync_allow_insecure_tls || sync_dsn_tls(src->dsn) >= SYNC_TLS_REQUIRE;
    {
        /* client_encoding: a LATIN1 (or any) database's text arrives converted to UTF-8 */
        const char *keys[] = {"dbname",          "password", "application_name",
                              "client_encoding", NULL,       NULL};
        const char *vals[] = {src->dsn, password, "engage-sync", "UTF8", NULL, NULL};
        if (!clear_ok && PQlibVersion() >= 160000) {
            keys[4] = "require_auth";
            vals[4] = "!password";
            clear_ok = 1;
        }
        c->pg = 1;
        c->pgc = PQconnectStartParams(keys, vals, 1);
    }
    secret_free(password);
    if (c->pgc == NULL)
        return ERR(e, E_NOMEM, "source %s: cannot connect: out of memory", src->name);
    rc = pg_connect_steps(c->pgc, src->name, clear_ok, origin == SYNC_ORIGIN_API, has_password,
                          10000, e); /* 10 s a host, as connect_timeout=10 was */
    if (rc)
        return rc;
    r = PQexec(c->pgc, "SET TIME ZONE 'UTC'; SET datestyle = 'ISO, YMD';"
                       " SET default_transaction_read_only = on");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        rc = ERR(e, E_IO, "source %s: cannot set up the session: %s", src->name,
                 PQerrorMessage(c->pgc));
    PQclear(r);
    return rc;
}

int sync_connect(const struct store_sync_source *src, const struct config *cfg,
                 struct sync_conn **out, struct err *e)
{
    struct sync_conn *c = xcalloc(1, sizeof *c);
    int rc;

    *out = NULL;
    snprintf(c->name, sizeof c->name, "%s", src->name);
    if (strcmp(src->kind, "sqlite") == 0) {
        /* Checked again at each connection: a source added over the API before [sync]
         * sqlite_dir was set (or narrowed) opens nothing outside it. */
        char path[PATH_MAX], msg[300];
        int api = sync_origin_of(src) == SYNC_ORIGIN_API;
        if (sync_sqlite_path(src->dsn, sync_origin_of(src), cfg, path, msg, sizeof msg)) {
            rc = ERR(e, E_INVAL, "source %s (added over the API): dsn: %s", src->name, msg);
        } else {
            rc = sqlite3_open_v2(path, &c->db,
                                 SQLITE_OPEN_READONLY | (api ? SQLITE_OPEN_NOFOLLOW : 0), NULL);
            if (rc != SQLITE_OK)
                rc = ERR(e, E_IO, "source %s: cannot open %s: %s", src->name, src->dsn,
                         c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
            else
                sqlite3_busy_timeout(c->db, 5000);
        }
    } else if (strcmp(src->kind, "postgres") == 0) {
        rc = pg_open(c, src, cfg, e);
    } else {
        rc = ERR(e, E_INVAL, "source %s: unknown kind \"%s\"", src->name, src->kind);
    }
    if (rc) {
        sync_disconnect(c);
        return rc;
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

    free(b->rows);
    for (i = 0; i < b->ncolumns; i++)
        free(b->columns[i]);
    free(b->columns);
    free(b->at.mapped);
    arena_release(&b->arena);
    memset(b, 0, sizeof *b);
}

const char *sync_key_text(const struct jt *v)
{
    if (v == NULL)
        return NULL;
    if (v->type == JT_STR)
        return v->u.s;
    return v->type == JT_INT || v->type == JT_REAL ? v->src : NULL;
}

const char *sync_id_text(const struct jt *v, char *buf, size_t n)
{
    if (v && v->type == JT_STR && v->n > 0)
        return v->u.s;
    if (v && v->type == JT_INT) {
        snprintf(buf, n, "%lld", v->u.i);
        return buf;
    }
    return NULL;
}

int sync_is_deleted(const struct jt *v)
{
    return v && v->type != JT_NULL && v->type != JT_FALSE && !(v->type == JT_INT && v->u.i == 0);
}

/* ---- queries ---------------------------------------------------------------------------- */

/* The column's index among those read, added if new; -1 for an unmapped one (""). */
static int add_column(struct sync_batch *b, const char *col)
{
    int i;

    if (col[0] == '\0')
        return -1;
    for (i = 0; i < b->ncolumns; i++)
        if (strcmp(b->columns[i], col) == 0)
            return i;
    b->columns = xrealloc(b->columns, (size_t)(b->ncolumns + 1) * sizeof *b->columns);
    b->columns[b->ncolumns] = xstrdup(col);
    return b->ncolumns++;
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

/* after: 0 from the first row, 1 after (cursor, key) ($1, $2), 2 from cursor $1 on;
 * until: and up to (cursor, key) ($3, $4) included. */
static void build_query(struct buf *q, const struct sync_table *t, struct sync_batch *b, int pg,
                        int after, int until, int limit)
{
    struct sync_columns *at = &b->at;
    int i;

    at->key = add_column(b, t->key);
    at->cursor = add_column(b, t->cursor);
    at->external_id = add_column(b, t->external_id);
    at->email = add_column(b, t->email);
    at->consent = add_column(b, t->consent);
    at->deleted = add_column(b, t->deleted);
    at->occurred_at = add_column(b, t->occurred_at);
    at->event = add_column(b, t->event_column);
    at->mapped = xmalloc((size_t)(t->ncols ? t->ncols : 1) * sizeof *at->mapped);
    for (i = 0; i < t->ncols; i++)
        at->mapped[i] = add_column(b, t->cols[i].column);
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
    if (until) {
        buf_adds(q, after ? " AND (" : " WHERE (");
        quoted(q, t->cursor);
        buf_adds(q, ", ");
        quoted(q, t->key);
        buf_adds(q, pg ? ") <= ($3, $4)" : ") <= (?3, ?4)");
    }
    buf_adds(q, " ORDER BY ");
    quoted(q, t->cursor);
    buf_adds(q, ", ");
    quoted(q, t->key);
    buf_printf(q, " LIMIT %d", limit);
}

static void set_str(struct arena *a, struct jt *v, const char *s, size_t n)
{
    v->type = JT_STR;
    v->n = (uint32_t)n;
    v->u.s = arena_strndup(a, s, n);
}

/* A scalar JSON value (jsonb may hold one), read into the arena; -1 if it is not JSON. */
static int parse_any(struct arena *a, const char *text, size_t n, struct jt *out)
{
    struct jt_error err;
    struct jt *doc;
    char *wrapped = arena_alloc(a, n + 3);

    wrapped[0] = '[';
    memcpy(wrapped + 1, text, n);
    wrapped[n + 1] = ']';
    if (jt_parse(a, wrapped, n + 2, &doc, &err) || doc->n != 1)
        return -1;
    *out = doc->u.items[0];
    return 0;
}

/* PostgreSQL's text of a value as JSON (v->src: that text). Timestamps ("2026-11-01
 * 10:00:00.5+00", the session being in UTC) become ISO-8601 ("…T10:00:00.5Z"). */
static void pg_value(struct arena *a, const PGresult *r, int row, int col, struct jt *v)
{
    const char *text;
    size_t n;
    char iso[64];

    memset(v, 0, sizeof *v);
    if (PQgetisnull(r, row, col))
        return; /* JT_NULL */
    text = PQgetvalue(r, row, col);
    n = (size_t)PQgetlength(r, row, col);
    v->src = text = arena_strndup(a, text, n);
    v->srclen = n;
    if (!utf8_valid(text, n)) /* a database in SQL_ASCII holds any bytes */
        utf8_sanitize_n((char *)text, n);
    switch (PQftype(r, col)) {
    case 16: /* bool */
        v->type = text[0] == 't' ? JT_TRUE : JT_FALSE;
        return;
    case 20:
    case 21:
    case 23: /* int8, int2, int4 */
        v->type = JT_INT;
        v->u.i = strtoll(text, NULL, 10);
        return;
    case 700:
    case 701:
    case 1700: /* float4, float8, numeric */
        v->u.d = strtod(text, NULL);
        if (!isfinite(v->u.d))
            break; /* NaN, Infinity, or past a double: JSON has no such number, the text */
        v->type = JT_REAL;
        return;
    case 1114:
    case 1184: /* timestamp (taken as UTC), timestamptz */
        if (n + 2 >= sizeof iso)
            break;
        memcpy(iso, text, n + 1);
        if (n > 10 && iso[10] == ' ')
            iso[10] = 'T';
        if (PQftype(r, col) == 1184 && n > 3 && strcmp(iso + n - 3, "+00") == 0)
            memcpy(iso + n - 3, "Z", 2), n -= 2;
        else if (PQftype(r, col) == 1114 && n > 10)
            memcpy(iso + n, "Z", 2), n++;
        set_str(a, v, iso, n);
        return;
    case 114:
    case 3802: /* json, jsonb */
        if (parse_any(a, text, n, v) == 0) {
            v->src = text;
            v->srclen = n;
            return;
        }
        break;
    }
    v->type = JT_STR;
    v->n = (uint32_t)n;
    v->u.s = text;
}

/* A wrapping comparison of 32-bit transaction ids (as PostgreSQL's TransactionIdPrecedes):
 * frozen (2) and bootstrap (1) ids precede everything. */
static int xid_before(unsigned long long a, unsigned long long b)
{
    if (a < 3)
        return 1;
    return (int32_t)((uint32_t)a - (uint32_t)b) < 0;
}

/* A JSON value's text, in the arena. */
static const char *json_text(struct arena *a, struct buf *scratch, const struct jt *v)
{
    buf_reset(scratch);
    jt_dump(scratch, v, 0);
    return arena_strndup(a, scratch->p, scratch->len);
}

/* PostgreSQL's own text of a column as a JSON string ("" for null): a checkpoint part. */
static const char *pg_text_json(struct arena *a, struct buf *scratch, const PGresult *r, int row,
                                int col)
{
    struct jt s = {.type = JT_STR};

    s.u.s = PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col);
    s.n = (uint32_t)strlen(s.u.s);
    return json_text(a, scratch, &s);
}

static int read_pg(struct sync_conn *c, const struct sync_table *t, const struct sync_range *rg,
                   int limit, struct sync_batch *b, struct err *e)
{
    struct buf q;
    const char *texts[4] = {rg->cursor, rg->key, rg->until_cursor, rg->until_key}, *params[4] = {0};
    json_t *pj[4] = {0};
    PGresult *r;
    int i, k, nrows, nparams = rg->until_cursor ? 4 : rg->key ? 2 : rg->cursor ? 1 : 0;

    buf_init(&q);
    build_query(&q, t, b, 1,
                rg->cursor == NULL ? 0
                : rg->key == NULL  ? 2
                                   : 1,
                rg->until_cursor != NULL, limit);
    for (i = 0; i < nparams; i++) { /* checkpoints keep PostgreSQL's own text */
        pj[i] = json_loads(texts[i] ? texts[i] : "\"\"", JSON_DECODE_ANY, NULL);
        if (!json_is_string(pj[i])) {
            for (k = 0; k <= i; k++)
                json_decref(pj[k]);
            buf_release(&q);
            return ERR(e, E_CORRUPT,
                       "source %s, table %s: the checkpoint is not PostgreSQL "
                       "text (was the source's kind changed?)",
                       c->name, t->table);
        }
        params[i] = json_string_value(pj[i]);
    }
    r = PQexecParams(c->pgc, q.p, nparams, NULL, nparams ? params : NULL, NULL, NULL, 0);
    for (i = 0; i < nparams; i++)
        json_decref(pj[i]);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
        msg[strcspn(msg, "\n")] = '\0';
        PQclear(r);
        buf_release(&q);
        return ERR(e, PQstatus(c->pgc) == CONNECTION_OK ? E_INVAL : E_IO, "source %s, table %s: %s",
                   c->name, t->table, msg);
    }
    nrows = PQntuples(r);
    b->rows = xcalloc((size_t)(nrows ? nrows : 1), sizeof *b->rows);
    for (i = 0; i < nrows; i++) { /* q serves as scratch from here */
        struct sync_row *row = &b->rows[i];
        unsigned long long xmin = strtoull(PQgetvalue(r, i, b->ncolumns), NULL, 10);
        unsigned long long snap = strtoull(PQgetvalue(r, i, b->ncolumns + 1), NULL, 10);
        row->values = arena_alloc(&b->arena, (size_t)b->ncolumns * sizeof *row->values);
        for (k = 0; k < b->ncolumns; k++)
            pg_value(&b->arena, r, i, k, &row->values[k]);
        row->cursor = pg_text_json(&b->arena, &q, r, i, b->at.cursor);
        row->key = pg_text_json(&b->arena, &q, r, i, b->at.key);
        row->settled = xid_before(xmin, snap);
        b->n++;
    }
    PQclear(r);
    buf_release(&q);
    return 0;
}

/* SQLite's value of a column (v->src: its text, as sqlite3_column_text gives it). */
static void sqlite_value(struct arena *a, sqlite3_stmt *s, int col, struct jt *v)
{
    int type = sqlite3_column_type(s, col);
    const char *text;
    size_t n;

    memset(v, 0, sizeof *v);
    if (type == SQLITE_NULL)
        return;
    if (type == SQLITE_INTEGER) {
        v->type = JT_INT;
        v->u.i = sqlite3_column_int64(s, col);
    } else if (type == SQLITE_FLOAT && isfinite(sqlite3_column_double(s, col))) {
        v->type = JT_REAL; /* (±Inf: JSON has no such number, the text) */
        v->u.d = sqlite3_column_double(s, col);
    }
    text = (const char *)sqlite3_column_text(s, col);
    n = (size_t)sqlite3_column_bytes(s, col);
    v->src = arena_strndup(a, text ? text : "", n);
    v->srclen = n;
    if (!utf8_valid(v->src, n) || memchr(v->src, '\0', n)) { /* SQLite keeps any bytes */
        char *z = (char *)v->src, *nul;
        utf8_sanitize_n(z, n); /* what is not UTF-8 text becomes '?', and so does a NUL */
        while ((nul = memchr(z, '\0', n - (size_t)(z - v->src))) != NULL)
            *nul = '?', z = nul + 1;
    }
    if (v->type == JT_NULL) { /* text (and blobs, as their bytes) */
        v->type = JT_STR;
        v->n = (uint32_t)n;
        v->u.s = v->src;
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

static int read_sqlite(struct sync_conn *c, const struct sync_table *t, const struct sync_range *rg,
                       int limit, struct sync_batch *b, struct err *e)
{
    sqlite3_stmt *s = NULL;
    struct buf q;
    int rc, k, cap = 0;

    buf_init(&q);
    build_query(&q, t, b, 0,
                rg->cursor == NULL ? 0
                : rg->key == NULL  ? 2
                                   : 1,
                rg->until_cursor != NULL, limit);
    rc = sqlite3_prepare_v2(c->db, q.p, -1, &s, NULL);
    if (rc != SQLITE_OK) {
        buf_release(&q);
        return ERR(e, E_INVAL, "source %s, table %s: %s", c->name, t->table, sqlite3_errmsg(c->db));
    }
    if (rg->cursor) {
        bind_json(s, 1, rg->cursor);
        if (rg->key)
            bind_json(s, 2, rg->key);
    }
    if (rg->until_cursor) {
        bind_json(s, 3, rg->until_cursor);
        bind_json(s, 4, rg->until_key ? rg->until_key : "null");
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) { /* q serves as scratch from here */
        struct sync_row *row;
        if (b->n == cap) {
            cap = cap ? cap * 2 : 256;
            b->rows = xrealloc(b->rows, (size_t)cap * sizeof *b->rows);
        }
        row = &b->rows[b->n++];
        memset(row, 0, sizeof *row);
        row->values = arena_alloc(&b->arena, (size_t)b->ncolumns * sizeof *row->values);
        for (k = 0; k < b->ncolumns; k++)
            sqlite_value(&b->arena, s, k, &row->values[k]);
        row->cursor = json_text(&b->arena, &q, &row->values[b->at.cursor]);
        row->key = json_text(&b->arena, &q, &row->values[b->at.key]);
        row->settled = 1;
    }
    if (rc != SQLITE_DONE)
        rc = ERR(e, E_IO, "source %s, table %s: %s", c->name, t->table, sqlite3_errmsg(c->db));
    else
        rc = 0;
    sqlite3_finalize(s);
    buf_release(&q);
    return rc;
}

int sync_read_range(struct sync_conn *c, const struct sync_table *t, const struct sync_range *rg,
                    int limit, struct sync_batch *out, struct err *e)
{
    struct arena a = out->arena;
    int rc;

    memset(out, 0, sizeof *out);
    out->arena = a;
    rc = c->pg ? read_pg(c, t, rg, limit, out, e) : read_sqlite(c, t, rg, limit, out, e);
    if (rc)
        sync_batch_release(out);
    return rc;
}

int sync_read(struct sync_conn *c, const struct sync_table *t, const char *cursor, const char *key,
              int limit, struct sync_batch *out, struct err *e)
{
    struct sync_range rg = {cursor, key, NULL, NULL};

    return sync_read_range(c, t, &rg, limit, out, e);
}

int sync_count(struct sync_conn *c, const struct sync_table *t, const char *since, int64_t *out,
               struct err *e)
{
    struct buf q;
    int rc = 0;

    *out = 0;
    buf_init(&q);
    buf_adds(&q, "SELECT count(*) FROM ");
    quoted(&q, t->table);
    if (since) {
        buf_adds(&q, " WHERE ");
        quoted(&q, t->cursor);
        buf_adds(&q, c->pg ? " >= $1" : " >= ?1");
    }
    if (c->pg) {
        json_t *s = since ? json_loads(since, JSON_DECODE_ANY, NULL) : NULL;
        const char *p = json_string_value(s);
        PGresult *r =
            PQexecParams(c->pgc, q.p, since ? 1 : 0, NULL, since ? &p : NULL, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            *out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        else
            rc = ERR(e, E_IO, "source %s, table %s: cannot count its rows", c->name, t->table);
        PQclear(r);
        json_decref(s);
    } else {
        sqlite3_stmt *s = NULL;
        if (sqlite3_prepare_v2(c->db, q.p, -1, &s, NULL) == SQLITE_OK) {
            if (since)
                bind_json(s, 1, since);
            if (sqlite3_step(s) == SQLITE_ROW)
                *out = sqlite3_column_int64(s, 0);
            else
                rc = ERR(e, E_IO, "source %s, table %s: %s", c->name, t->table,
                         sqlite3_errmsg(c->db));
        } else {
            rc = ERR(e, E_IO, "source %s, table %s: %s", c->name, t->table, sqlite3_errmsg(c->db));
        }
        sqlite3_finalize(s);
    }
    buf_release(&q);
    return rc;
}
