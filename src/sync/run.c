/* sync/run.c -- a sync pass: every mapped table of a source, from its checkpoint on.
 *
 * DESIGN: a batch of rows is read, turned into contact or event records, and stored
 * through the ingest module in one transaction, which also moves the table's
 * checkpoint to the batch's last settled row (sync.h): a kill at any moment leaves the
 * checkpoint with exactly the rows stored, and a re-read row is stored once (contacts
 * are upserts by external id, events keep the id "<source>:<table>:<key>"). The source
 * owns what it wrote: a changed row updates its event, a soft-deleted row deletes its
 * event or contact. A row its contract refuses goes to the dead-letter store with
 * origin "<table>:<key>" and the checkpoint moves past it (a replay takes it later). */
#include <stdlib.h>
#include <string.h>

#include "../ingest/ingest.h"
#include "sync.h"

static const json_t *value(const struct sync_batch *b, const struct sync_row *r, const char *col)
{
    int i;

    if (col[0] == '\0')
        return NULL;
    for (i = 0; i < b->ncolumns; i++)
        if (strcmp(b->columns[i], col) == 0)
            return json_array_get(r->values, (size_t)i);
    return NULL;
}

/* An id as text: a string as it is, an integer in decimal; NULL for anything else. */
static const char *id_text(const json_t *v, char *buf, size_t n)
{
    if (json_is_string(v) && json_string_length(v) > 0)
        return json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(buf, n, "%lld", (long long)json_integer_value(v));
        return buf;
    }
    return NULL;
}

/* A soft-delete column says deleted when it holds anything but null or false. */
static int is_deleted(const json_t *v)
{
    return v && !json_is_null(v) && !json_is_false(v) &&
           !(json_is_integer(v) && json_integer_value(v) == 0);
}

/* An opt-in column: booleans (and 0/1) mean subscribed/unsubscribed; text is passed on
 * for the contract to check. */
static json_t *consent_of(const json_t *v)
{
    if (json_is_boolean(v))
        return json_string(json_is_true(v) ? "subscribed" : "unsubscribed");
    if (json_is_integer(v))
        return json_string(json_integer_value(v) ? "subscribed" : "unsubscribed");
    return json_is_string(v) ? json_incref((json_t *)v) : NULL;
}

static json_t *mapped(const struct sync_table *t, const struct sync_batch *b,
                      const struct sync_row *r)
{
    json_t *o = json_object();
    int i;

    for (i = 0; i < t->ncols; i++) {
        const json_t *v = value(b, r, t->cols[i].column);
        if (v && !json_is_null(v))
            json_object_set(o, t->cols[i].name, (json_t *)v);
    }
    return o;
}

struct pass {
    struct ingest in;
    struct ingest_ctx cx;
    struct sync_report *rep;
    char label[160], origin[400];
    const char *source;
};

static void count(struct pass *p, enum ingest_outcome o, int events)
{
    if (o == INGEST_REJECTED)
        p->rep->rejected++;
    else if (o == INGEST_UNCHANGED)
        p->rep->unchanged++;
    else if (events)
        p->rep->events++;
    else
        p->rep->contacts++;
}

static int store_row(struct pass *p, const struct sync_table *t, const struct sync_batch *b,
                     const struct sync_row *r, struct err *e)
{
    char kbuf[32], xbuf[32], event_id[600];
    const char *keytext = id_text(value(b, r, t->key), kbuf, sizeof kbuf);
    const char *xid = id_text(value(b, r, t->external_id), xbuf, sizeof xbuf);
    const json_t *v;
    enum ingest_outcome o = INGEST_UNCHANGED;
    json_t *rec;
    int rc, deleted = 0;

    snprintf(p->origin, sizeof p->origin, "%s:%s", t->table, keytext ? keytext : "?");
    p->cx.origin = p->origin;
    if (t->into == SYNC_CONTACTS) {
        if (is_deleted(value(b, r, t->deleted))) {
            rc = xid ? ingest_contact_delete(&p->in, &p->cx, xid, &deleted, e) : 0;
            p->rep->deleted += deleted;
            return rc;
        }
        rec = json_object();
        if (xid)
            json_object_set_new(rec, "external_id", json_string(xid));
        if ((v = value(b, r, t->email)) && !json_is_null(v))
            json_object_set(rec, "email", (json_t *)v);
        if ((v = value(b, r, t->consent)) && !json_is_null(v)) {
            json_t *c = consent_of(v);
            json_object_set_new(rec, "email_consent", c ? c : json_incref((json_t *)v));
        }
        json_object_set_new(rec, "attributes", mapped(t, b, r));
        rc = ingest_contact(&p->in, &p->cx, rec, &o, e);
        json_decref(rec);
        if (rc == 0)
            count(p, o, 0);
        return rc;
    }
    snprintf(event_id, sizeof event_id, "%s:%s:%s", p->source, t->table, keytext ? keytext : "");
    if (is_deleted(value(b, r, t->deleted))) {
        rc = ingest_event_delete(&p->in, &p->cx, event_id, &deleted, e);
        p->rep->deleted += deleted;
        return rc;
    }
    rec = json_object();
    json_object_set_new(rec, "event_id", json_string(event_id));
    if (t->event[0])
        json_object_set_new(rec, "event", json_string(t->event));
    else if ((v = value(b, r, t->event_column)) && !json_is_null(v))
        json_object_set(rec, "event", (json_t *)v);
    if (xid)
        json_object_set_new(rec, "external_id", json_string(xid));
    if ((v = value(b, r, t->occurred_at)) && !json_is_null(v))
        json_object_set(rec, "occurred_at", (json_t *)v);
    json_object_set_new(rec, "properties", mapped(t, b, r));
    rc = ingest_event(&p->in, &p->cx, rec, &o, e);
    json_decref(rec);
    if (rc == 0)
        count(p, o, 1);
    return rc;
}

/* One table from its checkpoint to its end (or to a row not settled yet). */
static int sync_table(struct pass *p, struct store *st, struct sync_conn *c, int64_t source_id,
                      const struct sync_table *t, int batch, const struct sync_opts *o,
                      struct err *e)
{
    struct store_sync_checkpoint cp;
    char *cursor, *key;
    int rc = store_sync_checkpoint_get(st, source_id, t->table, &cp, e);

    if (rc)
        return rc;
    cursor = cp.cursor;
    key = cp.key;
    cp.cursor = cp.key = NULL;
    store_sync_checkpoint_release(&cp);
    for (;;) {
        struct sync_batch b;
        int i, settled = 0, n;
        rc = sync_read(c, t, cursor, key, batch, &b, e);
        if (rc || b.n == 0) {
            if (rc == 0)
                sync_batch_release(&b);
            break;
        }
        while (settled < b.n && b.rows[settled].settled)
            settled++;
        rc = ingest_begin(&p->in, e);
        for (i = 0; rc == 0 && i < b.n; i++)
            rc = store_row(p, t, &b, &b.rows[i], e);
        if (rc == 0 && settled)
            rc = store_sync_checkpoint_set(st, source_id, t->table, b.rows[settled - 1].cursor,
                                           b.rows[settled - 1].key, settled, e);
        if (rc == 0)
            rc = ingest_commit(&p->in, e);
        else
            ingest_rollback(&p->in);
        n = b.n;
        if (rc == 0 && o && o->on_batch)
            o->on_batch(o->ctx, t, &b, clock_now_ms());
        if (rc == 0) {
            p->rep->read += b.n;
            free(cursor);
            free(key);
            cursor = xstrdup(b.rows[b.n - 1].cursor);
            key = xstrdup(b.rows[b.n - 1].key);
        }
        sync_batch_release(&b);
        /* Done: an error, the table's end, or a row whose transaction may not be the last
         * to commit before it (read again next pass, from the checkpoint). */
        if (rc || n < batch || settled < n)
            break;
    }
    free(cursor);
    free(key);
    return rc;
}

static int record_status(struct store *st, int64_t id, const char *error)
{
    struct err e = {0};
    int rc = store_begin(st, &e);

    if (rc == 0)
        rc = store_sync_source_status(st, id, error, &e);
    return store_finish(st, rc, &e);
}

int sync_pass(struct store *st, const struct config *cfg, const char *source,
              const struct sync_opts *o, struct sync_report *rep, struct err *e)
{
    struct store_sync_source src;
    struct sync_mapping m;
    struct errlist errs = {0};
    struct sync_conn *c = NULL;
    struct pass p;
    int rc, i, batch = o && o->batch > 0 ? o->batch : 5000;

    memset(rep, 0, sizeof *rep);
    rc = store_sync_source_get(st, source, &src, e);
    if (rc)
        return rc;
    rc = sync_mapping_parse(src.mapping, &m, &errs, e);
    if (rc) {
        rc = ERR(e, E_INVAL, "source %s: its mapping has problems: %s: %s", source,
                 errs.n ? errs.items[0].path : "", errs.n ? errs.items[0].msg : e->msg);
        store_sync_source_release(&src);
        return rc;
    }
    for (i = 0; o && o->table && i < m.ntables && strcmp(m.tables[i].table, o->table); i++)
        ;
    if (o && o->table && i == m.ntables) {
        rc = ERR(e, E_NOTFOUND, "source %s maps no table \"%s\"", source, o->table);
        goto out;
    }
    rc = sync_connect(&src, cfg, &c, e);
    if (rc)
        goto out;
    memset(&p, 0, sizeof p);
    p.rep = rep;
    p.source = src.name;
    snprintf(p.label, sizeof p.label, "sync:%s", src.name);
    p.cx.kind = SRC_SYNC;
    p.cx.source = p.label;
    p.cx.owns_rows = 1;
    p.cx.received_at = clock_now_ms();
    ingest_init(&p.in, st, cfg);
    for (i = 0; rc == 0 && i < m.ntables; i++) {
        if (o && o->table && strcmp(m.tables[i].table, o->table))
            continue;
        rc = sync_table(&p, st, c, src.id, &m.tables[i], batch, o, e);
        rep->tables++;
    }
    ingest_release(&p.in);
out:
    sync_disconnect(c);
    record_status(st, src.id, rc ? e->msg : NULL);
    sync_mapping_release(&m);
    store_sync_source_release(&src);
    return rc;
}
